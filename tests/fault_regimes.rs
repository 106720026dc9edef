//! Fault regimes the rate limiter must tell apart, on Tokio's paused clock: 429s that no
//! limit of ours causes (a proxy, an overloaded pool) must not throttle the run, and the
//! mock's whole fault mix, at any rate, must end soon with every cluster accounted for.

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss)]

use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::report::LimitSource;
use dynbatch::{BatchPlan, Batcher, BatchingConfig, Cluster};
use dynbatch::{RunConfig, RunEvent};
use proptest::prelude::*;

use crate::runs;

use runs::{Outcome, one_per_batch, run};

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The same run with and without stray 429s at `rate`: (without, with).
fn with_and_without(
    rate: f64,
    seed: u64,
    n: usize,
    concurrency: usize,
    latency: Duration,
) -> (Outcome, Outcome) {
    let runtime = paused();
    let (clusters, plan) = one_per_batch::distinct(n);
    let config = RunConfig::builder()
        .concurrency(concurrency)
        .build()
        .unwrap();
    let clean = MockBackend::new().with_latency(latency, TokioTimer);
    let stray = MockBackend::new()
        .with_latency(latency, TokioTimer)
        .with_fault_mix(rate, seed, vec![MockStep::RateLimited(None)]);
    let without = runtime.block_on(run(&clusters, plan.clone(), &clean, config.clone()));
    let with = runtime.block_on(run(&clusters, plan, &stray, config));
    (without, with)
}

proptest! {
    // 24 cases in the suite; `PROPTEST_CASES=400` for a measurement.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    /// With up to half of all answers a bare 429 and no real limit behind them, the run
    /// takes at most half again as long as without them, and loses nothing.
    #[test]
    fn invariant_stray_429s_cost_at_most_half_again_the_time_and_lose_nothing(
        rate in 0.0f64..=0.5,
        seed in any::<u64>(),
        n in 60usize..240,
        concurrency in 2usize..17,
        latency_ms in 800u64..4000,
    ) {
        let (without, with) =
            with_and_without(rate, seed, n, concurrency, Duration::from_millis(latency_ms));
        prop_assert_eq!(with.report.outcome_counts(), (n, 0), "nothing lost");
        prop_assert_eq!(with.report.usage.extra_calls, 0, "429s spend no extra call");
        let ratio = with.elapsed.as_secs_f64() / without.elapsed.as_secs_f64();
        prop_assert!(
            ratio <= 1.5,
            "{ratio:.3}: {:?} against {:?}, {} 429s of {} calls, limits {:?}",
            with.elapsed,
            without.elapsed,
            with.report.usage.rate_limited,
            with.report.usage.calls_made,
            with.report.usage.rate_limits,
        );
    }
}

#[test]
fn a_third_of_answers_stray_429s_leave_the_pace_alone() {
    let (without, with) = with_and_without(0.33, 2, 200, 16, Duration::from_secs(1));
    assert_eq!(with.report.outcome_counts(), (200, 0));
    let u = &with.report.usage;
    assert!(u.rate_limited > 50, "{}", u.rate_limited);
    let ratio = with.elapsed.as_secs_f64() / without.elapsed.as_secs_f64();
    eprintln!(
        "stray 429s at 33%: {:.1?} against {:.1?} ({ratio:.3}), {} 429s, limits {:?}",
        with.elapsed, without.elapsed, u.rate_limited, u.rate_limits
    );
    assert!(ratio <= 1.3, "{ratio}");
    // Scattered 429s are no limit: none is inferred, and the concurrency never halves.
    assert_ne!(u.rate_limits.requests_source, Some(LimitSource::Inferred));
    assert!(
        !with
            .events
            .iter()
            .any(|e| matches!(e, RunEvent::ConcurrencyChanged { .. })),
        "the window never shrinks"
    );
}

/// The bundled sample through the `discover` example's settings: the mock's whole fault mix
/// at every rate from 0 to 1 ends within a minute, every cluster succeeded or failed.
#[test]
fn every_fault_rate_ends_within_a_minute_with_every_cluster_accounted() {
    let clusters: Vec<Cluster> =
        serde_json::from_str(include_str!("../examples/data/clusters.json")).unwrap();
    let plan = Batcher::new(BatchingConfig::default())
        .plan(&clusters)
        .unwrap()
        .into_owned();
    let batched = plan.batches.iter().map(|b| b.clusters.len()).sum::<usize>();
    for seed in [1, 2, 3] {
        for tenth in 0..=10 {
            let rate = f64::from(tenth) / 10.0;
            let mock = MockBackend::new()
                .with_latency(Duration::from_millis(400), TokioTimer)
                .with_faults(rate, seed);
            let config = RunConfig::builder().concurrency(4).build().unwrap();
            let out = paused().block_on(run(&clusters, plan.clone(), &mock, config));
            let (ok, failed) = out.report.outcome_counts();
            assert_eq!(ok + failed, batched, "rate {rate} seed {seed}");
            assert!(
                out.elapsed <= Duration::from_secs(60),
                "rate {rate} seed {seed}: {:?}, {ok} succeeded, {failed} failed, {} calls, {} 429s, limits {:?}",
                out.elapsed,
                out.report.usage.calls_made,
                out.report.usage.rate_limited,
                out.report.usage.rate_limits
            );
            if rate == 0.0 {
                assert_eq!(failed, 0);
            }
        }
    }
}

/// `n` clusters planned as one batch, the cluster at `tripping` titled with "forbidden".
fn one_batch_with_a_tripping_title(
    n: usize,
    tripping: usize,
) -> (Vec<Cluster>, BatchPlan<'static>) {
    let mut clusters = dynbatch::testing::distinct_clusters(n);
    clusters[tripping].videos[0].title = "A forbidden title".into();
    let config = BatchingConfig::builder()
        .min_batch_size(n)
        .max_batch_size(n)
        .max_total_calls(1)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap().into_owned();
    assert_eq!(plan.batches.len(), 1);
    (clusters, plan)
}

#[test]
fn a_content_filter_fails_only_the_cluster_that_trips_it() {
    for (n, tripping) in [(2, 1), (2, 0), (5, 3), (8, 0)] {
        let (clusters, plan) = one_batch_with_a_tripping_title(n, tripping);
        let mock = MockBackend::new().with_content_filter("forbidden");
        let out = paused().block_on(run(&clusters, plan, &mock, RunConfig::default()));
        assert_eq!(out.report.outcome_counts(), (n - 1, 1), "{n} clusters");
        let failed: Vec<_> = out
            .report
            .outcomes
            .iter()
            .filter(|o| o.status == dynbatch::report::OutcomeStatus::Failed)
            .collect();
        assert_eq!(failed[0].id, clusters[tripping].id);
        let reason = failed[0].reason.as_deref().unwrap();
        assert!(reason.starts_with("content_filter: "), "{reason}");
        assert_eq!(
            failed[0].failure,
            Some(dynbatch::report::Failure::Unusable {
                problem: dynbatch::report::AnswerProblem::Filtered
            })
        );
    }
}

#[test]
fn an_answer_cut_by_the_filter_is_split_too() {
    // The first call's answer is filtered; of its halves, the second is filtered again.
    let (clusters, plan) = one_batch_with_a_tripping_title(2, 1);
    let mock = MockBackend::scripted([MockStep::Filtered, MockStep::Answer, MockStep::Filtered]);
    let out = paused().block_on(run(&clusters, plan, &mock, RunConfig::default()));
    assert_eq!(out.report.outcome_counts(), (1, 1));
    assert_eq!(mock.remaining(), 0);
}

//! The runner at a binding rate limit and through outages, on Tokio's paused clock: pacing
//! within a few percent of the least time a limit allows (told, learnt from headers, or
//! inferred from bare 429s), 429s that never spend the extra-call budget, a burst of 5xx that
//! loses nothing, account-wide errors that stop all sending, and the patience bound.

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockRateLimit, MockStep};
use dynbatch::backend::{LimitStatus, RateLimitInfo};
use dynbatch::report::OutcomeStatus;
use dynbatch::report::{LimitKind, LimitSource};
use dynbatch::{BatchPlan, Batcher, BatchingConfig, Cluster};
use dynbatch::{RunConfig, RunEvent, Runner};
use tokio::time::Instant;

use crate::runs;

use runs::{Outcome, one_per_batch, run};

const LATENCY: Duration = Duration::from_millis(300);

/// `n` clusters with titles of their own, planned one per batch: `n` calls.
fn one_per_batch(n: usize) -> (Vec<Cluster>, BatchingConfig) {
    (
        dynbatch::testing::distinct_clusters(n),
        one_per_batch::config(n),
    )
}

fn plan(clusters: &[Cluster], config: &BatchingConfig) -> BatchPlan<'static> {
    let plan = Batcher::new(config.clone()).plan(clusters).unwrap();
    assert_eq!(plan.batches.len(), clusters.len());
    plan.into_owned()
}

/// The least time `n` calls take under a refilled bucket of `rpm`: a full bucket at once,
/// the rest at the refill rate, plus one call's latency.
fn least_time(n: usize, rpm: u32) -> Duration {
    let beyond = n.saturating_sub(rpm as usize) as f64;
    Duration::from_secs_f64(beyond * 60.0 / f64::from(rpm)) + LATENCY
}

async fn paced(limit: MockRateLimit, config: RunConfig) -> (Outcome, f64) {
    let (clusters, batching) = one_per_batch(301);
    let plan = plan(&clusters, &batching);
    let mock = MockBackend::new()
        .with_latency(LATENCY, TokioTimer)
        .with_rate_limit(limit, TokioTimer);
    let config = config.to_builder().concurrency(16).build().unwrap();
    let out = run(&clusters, plan, &mock, config).await;
    assert_eq!(out.report.outcome_counts(), (301, 0), "no cluster lost");
    assert_eq!(out.report.usage.extra_calls, 0, "429s spend no extra call");
    let ratio = out.elapsed.as_secs_f64() / least_time(301, 120).as_secs_f64();
    eprintln!(
        "{limit:?}: {:.1?} = {ratio:.3} × the least time, {} 429s, waited {:.1} s, limits {:?}",
        out.elapsed,
        out.report.usage.rate_limited,
        out.report.usage.rate_limit_wait_secs,
        out.report.usage.rate_limits
    );
    (out, ratio)
}

#[tokio::test(start_paused = true)]
async fn learnt_from_headers_the_pace_is_within_10_percent_of_the_least_time() {
    let (out, ratio) = paced(
        MockRateLimit::requests_per_minute(120),
        RunConfig::default(),
    )
    .await;
    assert!(ratio <= 1.1, "{ratio}");
    let u = &out.report.usage;
    assert!(
        u.rate_limited <= 2,
        "few 429s once learnt: {}",
        u.rate_limited
    );
    assert_eq!(u.rate_limits.requests_per_minute, Some(120));
    assert_eq!(u.rate_limits.requests_source, Some(LimitSource::Headers));
    assert!(out.events.iter().any(|e| matches!(
        e,
        RunEvent::LimitChanged {
            kind: LimitKind::Requests,
            per_minute: 120,
            source: LimitSource::Headers
        }
    )));
    assert!(u.rate_limit_wait_secs > 60.0, "{u:?}");
}

#[tokio::test(start_paused = true)]
async fn told_the_limit_the_pace_is_within_10_percent_and_draws_no_429() {
    let config = RunConfig::builder()
        .requests_per_minute(Some(120))
        .build()
        .unwrap();
    let limit = MockRateLimit::requests_per_minute(120)
        .with_headers(false)
        .with_retry_after(false);
    let (out, ratio) = paced(limit, config).await;
    assert!(ratio <= 1.1, "{ratio}");
    assert_eq!(out.report.usage.rate_limited, 0);
}

#[tokio::test(start_paused = true)]
async fn from_bare_429s_with_retry_after_the_limit_is_inferred() {
    let limit = MockRateLimit::requests_per_minute(120).with_headers(false);
    let (out, ratio) = paced(limit, RunConfig::default()).await;
    assert!(ratio <= 1.1, "{ratio}");
    let u = &out.report.usage;
    assert_eq!(u.rate_limits.requests_source, Some(LimitSource::Inferred));
    // The first burst's in-flight requests, then no herd: sending resumes paced.
    assert!(u.rate_limited <= 10, "{}", u.rate_limited);
}

#[tokio::test(start_paused = true)]
async fn from_429s_that_say_nothing_the_limit_is_inferred() {
    let limit = MockRateLimit::requests_per_minute(120)
        .with_headers(false)
        .with_retry_after(false);
    let (out, ratio) = paced(limit, RunConfig::default()).await;
    assert!(ratio <= 1.1, "{ratio}");
    assert!(out.report.usage.rate_limited <= 10);
    assert_eq!(
        out.report.usage.rate_limits.requests_source,
        Some(LimitSource::Inferred)
    );
}

#[tokio::test(start_paused = true)]
async fn a_tokens_per_minute_limit_is_learnt_and_kept() {
    let (clusters, batching) = one_per_batch(60);
    let plan = plan(&clusters, &batching);
    // Each request costs ~300 (max_tokens) + its prompt/4 tokens: 6,000 a minute allow ~17.
    let mock = MockBackend::new()
        .with_latency(LATENCY, TokioTimer)
        .with_rate_limit(MockRateLimit::tokens_per_minute(6_000), TokioTimer);
    let config = RunConfig::builder().concurrency(8).build().unwrap();
    let out = run(&clusters, plan, &mock, config).await;
    assert_eq!(out.report.outcome_counts(), (60, 0));
    let u = &out.report.usage;
    assert_eq!(u.rate_limits.tokens_per_minute, Some(6_000));
    assert_eq!(u.rate_limits.tokens_source, Some(LimitSource::Headers));
    // What the bucket allows: 6,000 at once, then 100 a second.
    let cost: u64 = mock
        .requests()
        .iter()
        .map(|r| {
            let chars: usize = r.messages.iter().map(|m| m.content.len()).sum();
            (chars / 4) as u64 + u64::from(r.max_tokens)
        })
        .sum::<u64>()
        / mock.calls();
    let least = (cost * 60).saturating_sub(6_000) as f64 / 100.0;
    let ratio = out.elapsed.as_secs_f64() / least;
    eprintln!(
        "tokens: {:.1?} for a least {least:.1} s: {ratio:.3}, {} 429s",
        out.elapsed, u.rate_limited
    );
    assert!(ratio <= 1.1, "{ratio}");
    assert!(u.rate_limited <= 3, "{}", u.rate_limited);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_server_errors_at_the_start_loses_nothing() {
    // Six 500s then three 503s, as the first answers of a 40-call run at concurrency 16.
    let (clusters, batching) = one_per_batch(40);
    let plan = plan(&clusters, &batching);
    let mut script = vec![MockStep::ServerError; 6];
    script.extend(vec![MockStep::Unavailable(None); 3]);
    let mock = MockBackend::scripted(script)
        .then_answer()
        .with_latency(LATENCY, TokioTimer);
    let config = RunConfig::builder().concurrency(16).build().unwrap();
    let out = run(&clusters, plan, &mock, config).await;
    assert_eq!(out.report.outcome_counts(), (40, 0));
    let u = &out.report.usage;
    assert!(u.extra_calls <= 9 && u.circuit_opened >= 1, "{u:?}");
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, RunEvent::CircuitOpened { .. }))
    );
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, RunEvent::CircuitClosed))
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_pauses_and_probes_instead_of_burning_every_retry() {
    // 40 failures in a row: without the breaker, 16 requests in flight would burn the whole
    // budget in a few seconds; with it, one probe at a time, with growing pauses.
    let (clusters, batching) = one_per_batch(20);
    let plan = plan(&clusters, &batching);
    let mock = MockBackend::scripted(vec![MockStep::ServerError; 40])
        .then_answer()
        .with_latency(LATENCY, TokioTimer);
    let config = RunConfig::builder()
        .concurrency(16)
        .max_extra_calls(40)
        .build()
        .unwrap();
    let out = run(&clusters, plan, &mock, config).await;
    assert_eq!(out.report.outcome_counts(), (20, 0));
    // At most 16 went before the first failures came back; after that, one probe at a time.
    let opened = out
        .events
        .iter()
        .filter(|e| matches!(e, RunEvent::CircuitOpened { .. }))
        .count();
    assert!(opened >= 10, "{opened}");
}

#[tokio::test(start_paused = true)]
async fn account_wide_errors_stop_all_sending() {
    for (step, kind) in [
        (MockStep::Unauthorized, "authentication"),
        (MockStep::NotFound, "not_found"),
        (MockStep::QuotaExhausted, "quota_exhausted"),
    ] {
        let (clusters, batching) = one_per_batch(40);
        let plan = plan(&clusters, &batching);
        let mock = MockBackend::scripted(vec![step; 40]).with_latency(LATENCY, TokioTimer);
        let config = RunConfig::builder()
            .concurrency(4)
            // Four in flight from the first request (`Auto` would send one alone first).
            .request_with(|r| {
                r.output = dynbatch::prompt::OutputMode::JsonObject;
            })
            .build()
            .unwrap();
        let out = run(&clusters, plan, &mock, config).await;
        assert_eq!(out.report.outcome_counts(), (0, 40));
        // Only what was in flight when the first answer came.
        assert_eq!(mock.calls(), 4, "{kind}");
        for o in &out.report.outcomes {
            let reason = o.reason.as_deref().unwrap();
            assert!(reason.starts_with(&format!("{kind}: ")), "{reason}");
            assert_eq!(o.status, OutcomeStatus::Failed);
        }
        let stopped = out
            .events
            .iter()
            .filter(|e| matches!(e, RunEvent::Stopped { .. }))
            .count();
        assert_eq!(stopped, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_that_never_lifts_ends_after_the_patience() {
    let (clusters, batching) = one_per_batch(10);
    let plan = plan(&clusters, &batching);
    let mock = MockBackend::scripted(vec![
        MockStep::RateLimited(Some(Duration::from_secs(1)));
        1000
    ]);
    let config = RunConfig::builder()
        .rate_limit_patience(Duration::from_secs(30))
        .max_extra_calls(0)
        .build()
        .unwrap();
    let out = run(&clusters, plan, &mock, config).await;
    assert_eq!(out.report.outcome_counts(), (0, 10));
    assert!(
        out.elapsed >= Duration::from_secs(29) && out.elapsed <= Duration::from_secs(31),
        "{:?}",
        out.elapsed
    );
    for o in &out.report.outcomes {
        let reason = o.reason.as_deref().unwrap();
        assert!(reason.contains("(rate_limit_patience)"), "{reason}");
    }
    assert_eq!(out.report.usage.extra_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn one_request_waiting_out_a_long_retry_after_blocks_no_other() {
    let (clusters, batching) = one_per_batch(6);
    let plan = plan(&clusters, &batching);
    let mock = MockBackend::scripted([MockStep::Unavailable(Some(Duration::from_secs(60)))])
        .then_answer()
        .with_latency(LATENCY, TokioTimer);
    let config = RunConfig::builder().concurrency(2).build().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let start = Instant::now();
    let runner = Runner::new(mock.clone(), TokioTimer)
        .with_config(config)
        .on_event(move |e| {
            if let RunEvent::Succeeded { batch, .. } = e {
                sink.lock().unwrap().push((*batch, start.elapsed()));
            }
        });
    let report = runner.run(plan, &clusters, "x").await.unwrap();
    assert_eq!(report.outcome_counts(), (6, 0));
    let done = events.lock().unwrap().clone();
    // Batches 1..=5 finish two at a time while batch 0 waits its 60 s.
    for (batch, at) in &done {
        if *batch == 0 {
            assert!(*at >= Duration::from_secs(60), "{at:?}");
        } else {
            assert!(*at <= LATENCY * 4, "batch {batch} at {at:?}");
        }
    }
}

/// A 429 step: with or without retry-after, with or without limits.
fn arb_429() -> impl proptest::strategy::Strategy<Value = MockStep> {
    use proptest::prelude::*;
    prop_oneof![
        (0u64..30).prop_map(|s| MockStep::RateLimited(Some(Duration::from_secs(s)))),
        Just(MockStep::RateLimited(None)),
        (1u64..200, 0u64..3, 0u64..20).prop_map(|(limit, remaining, reset)| MockStep::Limited {
            retry_after: None,
            limits: {
                let mut limits = RateLimitInfo::default();
                limits.requests = LimitStatus::new(
                    Some(limit),
                    Some(remaining),
                    Some(Duration::from_secs(reset)),
                );
                limits
            },
        }),
        Just(MockStep::Answer),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    #[test]
    fn invariant_429s_never_spend_the_budget_and_never_lose_a_cluster(
        script in proptest::collection::vec(arb_429(), 0..60),
        n in 1usize..25,
        concurrency in 1usize..8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (clusters, batching) = one_per_batch(n);
        let plan = plan(&clusters, &batching);
        let mock = MockBackend::scripted(script).then_answer();
        // Patience long enough for any script: the property is about what a 429 is while it
        // lasts (a long streak of 429s narrows the inferred limit, and the patience, 10
        // minutes by default, then ends the wait: `a_rate_limit_that_never_lifts_…`).
        let config = RunConfig::builder()
.concurrency(concurrency)
.max_extra_calls(0)
.rate_limit_patience(Duration::from_secs(86_400))
.build()
.unwrap();
        let out = runtime.block_on(run(&clusters, plan, &mock, config));
        let u = &out.report.usage;
        // Every cluster succeeds: a 429 is never a failure while the patience lasts.
        let reasons: Vec<_> = out.report.outcomes.iter().filter_map(|o| o.reason.clone()).collect();
        proptest::prop_assert_eq!(out.report.outcome_counts(), (n, 0), "{:?}", reasons);
        proptest::prop_assert_eq!(u.extra_calls, 0);
        proptest::prop_assert_eq!(u.retries, 0);
        proptest::prop_assert_eq!(u.calls_made, u.calls_planned + u.rate_limited);
        let limited = out.events.iter().filter(|e| matches!(e, RunEvent::RateLimited { .. })).count() as u64;
        proptest::prop_assert_eq!(limited, u.rate_limited);
    }
}

#[tokio::test(start_paused = true)]
async fn absurd_waits_from_a_server_or_a_config_never_panic() {
    let (clusters, batching) = one_per_batch(3);
    for step in [
        MockStep::RateLimited(Some(Duration::MAX)),
        MockStep::Unavailable(Some(Duration::MAX)),
        MockStep::ServerError,
    ] {
        let plan = plan(&clusters, &batching);
        let mock = MockBackend::scripted([step.clone()]).then_answer();
        let config = RunConfig::builder()
            .base_delay(Duration::MAX)
            .max_delay(Duration::MAX)
            .max_retry_after(Duration::MAX)
            .rate_limit_patience(Duration::from_secs(60))
            .build()
            .unwrap();
        let report = tokio::time::timeout(
            Duration::from_secs(200_000),
            run(&clusters, plan, &mock, config),
        )
        .await
        .map(|out| out.report.outcome_counts());
        // A day at most, then an answer or a reason: never a panic, never a hang.
        let (ok, failed) = report.unwrap();
        assert_eq!(ok + failed, 3, "{step:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_slow_answers_the_pace_still_holds() {
    // 5 s per answer: the limit's 2 a second needs 10 in flight, so halving the bound on a
    // 429 must not cost the pace for long.
    let (clusters, batching) = one_per_batch(301);
    for limit in [
        MockRateLimit::requests_per_minute(120),
        MockRateLimit::requests_per_minute(120)
            .with_headers(false)
            .with_retry_after(false),
    ] {
        let plan = plan(&clusters, &batching);
        let latency = Duration::from_secs(5);
        let mock = MockBackend::new()
            .with_latency(latency, TokioTimer)
            .with_rate_limit(limit, TokioTimer);
        let config = RunConfig::builder().concurrency(16).build().unwrap();
        let out = run(&clusters, plan, &mock, config).await;
        assert_eq!(out.report.outcome_counts(), (301, 0));
        let least = least_time(301, 120).checked_sub(LATENCY).unwrap() + latency;
        let ratio = out.elapsed.as_secs_f64() / least.as_secs_f64();
        eprintln!(
            "slow {limit:?}: {:.1?}, {ratio:.3}, {} 429s",
            out.elapsed, out.report.usage.rate_limited
        );
        assert!(ratio <= 1.1, "{ratio}");
    }
}

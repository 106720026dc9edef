//! Property: whatever faults the backend throws, in whatever order, the runner never loses or
//! duplicates a cluster, and never exceeds its extra-call budget.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::report::OutcomeStatus;
use dynbatch::testing::{arb_clusters, arb_config};
use dynbatch::{Batcher, ClusterState};
use dynbatch::{RunConfig, Runner};
use proptest::prelude::*;

fn arb_step() -> impl Strategy<Value = MockStep> {
    prop_oneof![
        3 => Just(MockStep::Answer),
        1 => (0u64..200).prop_map(|s| MockStep::RateLimited(Some(Duration::from_secs(s)))),
        1 => Just(MockStep::RateLimited(None)),
        1 => Just(MockStep::ServerError),
        1 => Just(MockStep::Timeout),
        1 => Just(MockStep::Unauthorized),
        1 => Just(MockStep::Malformed),
        1 => Just(MockStep::Truncated),
        1 => (1i64..9).prop_map(|n| MockStep::Missing(vec![n])),
        1 => (0i64..20).prop_map(MockStep::UnknownCluster),
        1 => Just(MockStep::Refusal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariant_random_faults_never_lose_or_duplicate_a_cluster(
        config in arb_config(),
        clusters in arb_clusters(0..40),
        script in prop::collection::vec(arb_step(), 0..30),
        concurrency in 1usize..5,
        max_extra_calls in 0u64..12,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let mock = MockBackend::scripted(script).then_answer();
        let run_config = RunConfig::builder()
.concurrency(concurrency)
.max_extra_calls(max_extra_calls)
.build()
.unwrap();
        let runner = Runner::new(mock.clone(), TokioTimer).with_config(run_config);
        let report = runtime
            .block_on(Batcher::new(config).discover(&clusters, "x", &runner))
            .unwrap();

        let batched: Vec<&str> = report.plan.batches.iter().flat_map(|b| b.clusters.iter().map(AsRef::as_ref)).collect();
        let outcomes: Vec<&str> = report.outcomes.iter().map(|o| o.id.as_str()).collect();
        prop_assert_eq!(&outcomes, &batched);
        for entry in &report.plan.clusters {
            let n = outcomes.iter().filter(|id| **id == entry.id.as_ref()).count();
            prop_assert_eq!(n, usize::from(matches!(entry.state, ClusterState::Batched { .. })));
        }
        let succeeded: Vec<&str> = report.cluster_patterns.iter().map(|c| c.id.as_str()).collect();
        for o in &report.outcomes {
            prop_assert_eq!(o.status == OutcomeStatus::Succeeded, succeeded.contains(&o.id.as_str()));
            prop_assert_eq!(o.status == OutcomeStatus::Failed, o.reason.is_some());
        }
        report.check_accounting().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let u = &report.usage;
        prop_assert!(u.extra_calls <= max_extra_calls);
        prop_assert_eq!(u.calls_made, mock.calls());
        // 429s are neither planned nor extra calls.
        prop_assert!(u.calls_made <= u.calls_planned + u.extra_calls + u.rate_limited);
        prop_assert_eq!(u.rate_limited, mock.rate_limited());
    }
}

//! Runs on the mock for tests that count calls and time: plans of one cluster per batch (`n`
//! clusters, `n` calls), and a run that collects its events and checks its accounting.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::MockBackend;
use dynbatch::report::DiscoveryReport;
use dynbatch::{BatchPlan, Batcher, BatchingConfig, Cluster};
use dynbatch::{RunConfig, RunEvent, Runner};
use tokio::time::Instant;

/// Plans of one cluster per batch.
pub(crate) mod one_per_batch {
    use super::{BatchPlan, Batcher, BatchingConfig, Cluster};

    /// The batching config that plans `n` clusters one per batch.
    pub(crate) fn config(n: usize) -> BatchingConfig {
        BatchingConfig::builder()
            .min_batch_size(1)
            .max_batch_size(1)
            .max_total_calls(n)
            .build()
            .unwrap()
    }

    /// `clusters` planned one per batch.
    pub(crate) fn plan(clusters: &[Cluster]) -> BatchPlan<'static> {
        let plan = Batcher::new(config(clusters.len()))
            .plan(clusters)
            .unwrap()
            .into_owned();
        assert_eq!(plan.batches.len(), clusters.len());
        plan
    }

    /// `n` clusters with titles of their own, planned one per batch.
    pub(crate) fn distinct(n: usize) -> (Vec<Cluster>, BatchPlan<'static>) {
        let clusters = dynbatch::testing::distinct_clusters(n);
        let plan = plan(&clusters);
        (clusters, plan)
    }
}

/// A run's report, how long it took on the clock, and its events.
pub(crate) struct Outcome {
    pub(crate) report: DiscoveryReport<'static>,
    pub(crate) elapsed: Duration,
    pub(crate) events: Vec<RunEvent>,
}

/// Runs `plan` on `mock` (events printed with `TRACE_EVENTS` set), checking the report's
/// accounting and its call and 429 counts against the mock's.
pub(crate) async fn run(
    clusters: &[Cluster],
    plan: BatchPlan<'static>,
    mock: &MockBackend,
    config: RunConfig,
) -> Outcome {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let runner = Runner::new(mock.clone(), TokioTimer)
        .with_config(config)
        .on_event(move |e| {
            if std::env::var_os("TRACE_EVENTS").is_some()
                && !matches!(
                    e,
                    RunEvent::BatchStarted { .. } | RunEvent::Succeeded { .. }
                )
            {
                eprintln!("{:?} {e:?}", Instant::now());
            }
            sink.lock().unwrap().push(e.clone());
        });
    let start = Instant::now();
    let report = runner.run(plan, clusters, "x").await.unwrap().into_owned();
    let elapsed = start.elapsed();
    report.check_accounting().unwrap();
    assert_eq!(report.usage.calls_made, mock.calls());
    assert_eq!(report.usage.rate_limited, mock.rate_limited());
    let events = events.lock().unwrap().clone();
    Outcome {
        report,
        elapsed,
        events,
    }
}

//! The runner's own overhead: 64 batches against the mock with latency L on the real clock, at
//! concurrency C. The ideal wall time is ceil(64 / C) × L; everything above it is the runner
//! (rendering, parsing, validation, consolidation) plus the mock's own answer building.
//!
//! And its pacing: 620 one-cluster calls against a mock that enforces 600 requests per minute
//! (a continuously refilled bucket, as providers count), at concurrency 16, the runner not told
//! the limit. The least time the limit allows is (620 − 600) / 10 per second = 2 s, plus one
//! call's latency; the median over that is the pacing's overhead.
//!
//! ```text
//! cargo bench --bench runner --features mock,tokio
//! ```

#![allow(clippy::panic)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockRateLimit};
use dynbatch::{Batcher, BatchingConfig, Cluster, Video};
use dynbatch::{RunConfig, Runner};

const BATCHES: usize = 64;
const LATENCY: Duration = Duration::from_millis(250);

fn clusters(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let topic = [
                "Espresso",
                "Sourdough",
                "Chess",
                "Running",
                "Python",
                "Van Life",
            ][i % 6];
            let videos = (0..8)
                .map(|k| {
                    Video::new(
                        format!("I Tried {topic} Setup {k} for {} Days", 7 * (k + 1)),
                        5.0 - f64::from(k) * 0.2,
                    )
                })
                .collect();
            let mut c = Cluster::new(format!("c{i}"), videos);
            c.size = 20;
            c.avg_performance = 4.5;
            c.thread_sources = (0..5).map(|s| format!("source {s}")).collect();
            c
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = clusters(BATCHES * 3);
    let config = BatchingConfig::builder()
        .min_batch_size(3)
        .max_batch_size(3)
        .max_total_calls(BATCHES)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = Batcher::new(config)
        .plan(&input)
        .unwrap_or_else(|e| panic!("plan: {e}"));
    assert_eq!(plan.batches.len(), BATCHES);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("runner_64_batches_250ms");
    group.sample_size(10);
    for concurrency in [4usize, 16, 64] {
        let runner = Runner::new(
            MockBackend::new().with_latency(LATENCY, TokioTimer),
            TokioTimer,
        )
        .with_config(
            RunConfig::builder()
                .concurrency(concurrency)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        group.bench_with_input(
            BenchmarkId::new("concurrency", concurrency),
            &concurrency,
            |b, _| {
                b.to_async(&rt).iter(|| async {
                    let report = runner
                        .run(plan.clone(), &input, "hobbies")
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(report.outcome_counts().1, 0);
                    report.usage.calls_made
                });
            },
        );
    }
    group.finish();
}

const PACED_CALLS: usize = 620;
const PACED_RPM: u32 = 600;
const PACED_LATENCY: Duration = Duration::from_millis(50);

fn bench_pacing(c: &mut Criterion) {
    let input = clusters(PACED_CALLS);
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(PACED_CALLS)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = Batcher::new(config)
        .plan(&input)
        .unwrap_or_else(|e| panic!("plan: {e}"));
    assert_eq!(plan.batches.len(), PACED_CALLS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("runner_paced_620_calls_600rpm_least_2.05s");
    group.sample_size(10);
    for (name, limit) in [
        ("headers", MockRateLimit::requests_per_minute(PACED_RPM)),
        (
            "bare_429s",
            MockRateLimit::requests_per_minute(PACED_RPM)
                .with_headers(false)
                .with_retry_after(false),
        ),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                // A fresh account (a full bucket) and a runner that knows nothing, each time.
                let mock = MockBackend::new()
                    .with_latency(PACED_LATENCY, TokioTimer)
                    .with_rate_limit(limit, TokioTimer);
                let runner = Runner::new(mock, TokioTimer).with_config(
                    RunConfig::builder()
                        .concurrency(16)
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                );
                let report = runner
                    .run(plan.clone(), &input, "hobbies")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(report.outcome_counts().1, 0);
                report.usage.rate_limited
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_pacing);
criterion_main!(benches);

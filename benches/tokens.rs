//! Cost of estimating one cluster's prompt tokens: the design's formula against the exact,
//! tokenizer-backed estimator (`o200k_base`), on the bundled clusters under ADAPTIVE (6 videos).
//!
//! ```text
//! cargo bench --bench tokens --features tiktoken
//! ```

#![allow(clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dynbatch::{Cluster, SpecTokenEstimator, StrategySettings, TokenEstimator};
use dynbatch::{Encoding, TiktokenEstimator};

fn bench(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/clusters.json"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let clusters: Vec<Cluster> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let clusters: Vec<Cluster> = clusters
        .into_iter()
        .filter(|c| c.validate().is_ok())
        .collect();
    let strategy = StrategySettings::adaptive();
    let exact = TiktokenEstimator::new(Encoding::O200kBase, "home espresso")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("estimate_per_cluster");
    group.throughput(Throughput::Elements(clusters.len() as u64));
    group.bench_function("design", |b| {
        b.iter(|| {
            clusters
                .iter()
                .map(|c| SpecTokenEstimator.estimate(black_box(c), &strategy))
                .sum::<u32>()
        });
    });
    group.bench_function("tiktoken_o200k", |b| {
        b.iter(|| {
            clusters
                .iter()
                .map(|c| exact.estimate(black_box(c), &strategy))
                .sum::<u32>()
        });
    });
    group.bench_function("tiktoken_request_overhead", |b| {
        b.iter(|| exact.request_overhead(black_box(&strategy)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

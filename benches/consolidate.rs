//! Consolidation at scale: `patterns::consolidate` alone on 10k, 40k and 160k distinct
//! patterns (as real data from many niches gives: a few common words, many rare ones), the
//! floor of its work on the same inputs (every pattern copied out as a group), and the
//! whole mock `discover` (plan, run, consolidate) on 1k, 4k and 16k clusters whose titles share
//! little.
//!
//! ```text
//! cargo bench --bench consolidate --features mock,tokio
//! ```

#![allow(
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use dynbatch::TokioTimer;
use dynbatch::backend::mock::MockBackend;
use dynbatch::patterns::{ConsolidatedPattern, Support, consolidate};
use dynbatch::patterns::{Example, Pattern};
use dynbatch::{Batcher, BatchingConfig, Cluster, Video};
use dynbatch::{RunConfig, Runner};

const COMMON: [&str; 8] = ["i", "the", "for", "why", "[X]", "how", "best", "vs"];

/// A deterministic word: rare (one of 200,000) or common.
fn word(x: &mut u64) -> String {
    *x = x
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let r = *x >> 33;
    if r % 4 == 0 {
        COMMON[(r / 4 % 8) as usize].to_owned()
    } else {
        letters(r % 200_000)
    }
}

/// A number as letters (`normalize` would fold digits into one number token).
fn letters(mut n: u64) -> String {
    let mut s = String::from("q");
    loop {
        s.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

fn support(patterns: usize) -> Vec<Support> {
    let mut x = 7u64;
    (0..patterns / 4)
        .map(|c| Support {
            id: format!("c{c}"),
            priority: 1.0 - c as f64 / patterns as f64,
            avg_performance: 3.0,
            is_wide: c % 3 == 0,
            patterns: (0..4)
                .map(|_| {
                    let n = 4 + (x >> 60) as usize % 5;
                    let text: Vec<String> = (0..n).map(|_| word(&mut x)).collect();
                    Pattern {
                        pattern: text.join(" "),
                        template: Some(text.join(" ")),
                        examples: vec![Example {
                            title: text.join(" "),
                            grounded: true,
                        }],
                        rationale: None,
                        coverage: None,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Clusters whose titles share little with other clusters' (many niches): each cluster's
/// titles follow its own formula of rare words, so the mock finds one distinct pattern per
/// cluster, and a few common words connect them.
fn clusters(n: usize) -> Vec<Cluster> {
    let mut x = 11u64;
    (0..n)
        .map(|i| {
            let frame: Vec<String> = (0..4).map(|_| word(&mut x)).collect();
            let videos = (0..5)
                .map(|k| {
                    Video::new(
                        format!(
                            "{} {} {} {} {}",
                            frame[0],
                            frame[1],
                            word(&mut x),
                            frame[2],
                            frame[3]
                        ),
                        5.0 - f64::from(k) * 0.3,
                    )
                })
                .collect();
            let mut c = Cluster::new(format!("c{i}"), videos);
            c.size = 20;
            c.avg_performance = 4.0;
            c.thread_sources = (0..5).map(|s| format!("s{s}")).collect();
            c
        })
        .collect()
}

/// Every pattern as a group of its own, in input order: the floor of `consolidate`'s work.
fn copy_out(input: &[Support]) -> Vec<ConsolidatedPattern> {
    let mut out = Vec::with_capacity(input.iter().map(|s| s.patterns.len()).sum());
    for s in input {
        for p in &s.patterns {
            out.push(ConsolidatedPattern {
                pattern: p.pattern.clone(),
                template: p.template.clone(),
                clusters: vec![s.id.clone()],
                examples: p
                    .examples
                    .iter()
                    .filter(|e| e.grounded)
                    .map(|e| e.title.clone())
                    .collect(),
                evidence: s.priority * s.avg_performance,
                wide: s.is_wide,
                occurrences: 1,
                aliases: Vec::new(),
                coverage: None,
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("consolidate_distinct");
    group.sample_size(10);
    // Every input is built before the first measurement, each in one piece of a fresh heap:
    // built between benchmarks, the larger ones would be scattered by the smaller ones' churn.
    let inputs: Vec<(usize, Vec<Support>)> = [10_000usize, 40_000, 160_000]
        .into_iter()
        .map(|n| (n, support(n)))
        .collect();
    for (n, input) in &inputs {
        group.bench_with_input(BenchmarkId::from_parameter(n), input, |b, input| {
            // The groups are the caller's (the report keeps them): freed outside the timing,
            // after each call. Criterion's other ways keep a batch of outputs (12 MB each at
            // 40k) alive, so the timing would count the kernel zeroing pages for the bench.
            b.iter_batched(|| (), |()| consolidate(input, 0.6), BatchSize::PerIteration);
        });
    }
    group.finish();

    // What any consolidation does at least, on the same inputs: read every pattern and write
    // it out as a group of its own (the clones of its text, template, cluster id and example),
    // nothing else. How its time grows with the input is the host's, not the algorithm's: the
    // ratio `consolidate_distinct` is held to.
    let mut group = c.benchmark_group("consolidate_floor");
    group.sample_size(10);
    for (n, input) in &inputs {
        group.bench_with_input(BenchmarkId::from_parameter(n), input, |b, input| {
            b.iter_batched(|| (), |()| copy_out(input), BatchSize::PerIteration);
        });
    }
    group.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("mock_discover_distinct");
    group.sample_size(10);
    for n in [1_000usize, 4_000, 16_000] {
        let input = clusters(n);
        let config = BatchingConfig::builder()
            .max_total_calls(n)
            .quality_threshold(0.0)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let batcher = Batcher::new(config);
        let runner = Runner::new(MockBackend::new(), TokioTimer).with_config(
            RunConfig::builder()
                .concurrency(16)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| {
                let report = rt
                    .block_on(batcher.discover(input, "niches", &runner))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(report.outcome_counts().1, 0);
                report.patterns.len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

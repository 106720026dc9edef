//! Planning throughput: 1k, 10k and 100k synthetic clusters of ~10 videos, against the floor
//! for any planner — one plain pass that sums every video's `performance_ratio` over the same
//! data. Two configs: the defaults (10 calls, most clusters deferred) and a budget large enough
//! to batch every candidate (the packer's worst case).
//!
//! ```text
//! cargo bench --bench plan
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dynbatch::{Batcher, BatchingConfig, Cluster, Video};

/// Deterministic synthetic clusters (a small LCG, no extra dependency).
fn clusters(n: usize) -> Vec<Cluster> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    (0..n)
        .map(|i| {
            let videos: Vec<Video> = (0..8 + next() % 5)
                .map(|k| {
                    Video::new(
                        format!("Video {k} of cluster {i}"),
                        f64::from(next() % 900) / 100.0 + 0.1,
                    )
                })
                .collect();
            let mut c = Cluster::new(format!("cluster-{i}"), videos);
            c.size += next() % 40;
            c.thread_sources = (0..next() % 7).map(|s| format!("source {s}")).collect();
            c.is_wide = next() % 3 == 0;
            c
        })
        .collect()
}

fn floor(clusters: &[Cluster]) -> f64 {
    clusters
        .iter()
        .flat_map(|c| &c.videos)
        .map(|v| v.performance_ratio)
        .sum()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    for n in [1_000usize, 10_000, 100_000] {
        let data = clusters(n);
        group.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            group.sample_size(20);
        }
        group.bench_with_input(BenchmarkId::new("floor_sum_ratios", n), &data, |b, d| {
            b.iter(|| floor(black_box(d)));
        });
        let default = Batcher::default();
        group.bench_with_input(BenchmarkId::new("plan_default_config", n), &data, |b, d| {
            b.iter(|| default.plan(black_box(d)));
        });
        let all = Batcher::new(
            BatchingConfig::builder()
                .max_total_calls(n)
                .build()
                .unwrap_or_default(),
        );
        group.bench_with_input(
            BenchmarkId::new("plan_batch_everything", n),
            &data,
            |b, d| {
                b.iter(|| all.plan(black_box(d)));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Planning throughput: 1k, 10k and 100k synthetic clusters of ~10 videos, against the floor
//! for any planner — one plain pass that sums every video's `performance_ratio` over the same
//! data. Two configs: the defaults (10 calls, most clusters deferred) and a budget large enough
//! to batch every candidate (the packer's worst case).
//!
//! The `parse_and_plan` group reads the same clusters from pretty-printed JSON text (each video
//! with two fields the crate does not interpret, as upstream sends them) and plans them:
//! `serde_json::from_slice` of the whole text as the reference, `read_clusters` (one thread),
//! `read_clusters_parallel` (the machine's cores), each followed by the plan.
//!
//! ```text
//! cargo bench --bench plan
//! cargo bench --bench plan -- parse_and_plan
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

/// The clusters as upstream sends them: pretty-printed, each video with a `video_id` and
/// `views` the crate keeps in `extra`.
fn json(n: usize) -> Vec<u8> {
    let mut data = clusters(n);
    for (i, c) in data.iter_mut().enumerate() {
        for (k, v) in c.videos.iter_mut().enumerate() {
            v.extra
                .insert("video_id", serde_json::json!(format!("v{i:07}-{k:02}")));
            v.extra.insert("views", serde_json::json!(i * 31 + k * 7));
        }
    }
    serde_json::to_vec_pretty(&data).unwrap_or_default()
}

fn parse_and_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_and_plan");
    group.sample_size(10);
    let threads = std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
    let batcher = Batcher::default();
    // The clusters are dropped outside the timing: parse and plan only.
    let plan_of = |clusters: Vec<Cluster>| {
        let count = batcher.plan(&clusters).map(|p| p.batches.len());
        (clusters, count)
    };
    for n in [10_000usize, 100_000] {
        let text = json(n);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("serde_json_from_slice", n),
            &text,
            |b, t| {
                b.iter_with_large_drop(|| {
                    plan_of(serde_json::from_slice(black_box(t)).unwrap_or_default())
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("read_clusters", n), &text, |b, t| {
            b.iter_with_large_drop(|| {
                plan_of(dynbatch::read_clusters(black_box(&t[..])).unwrap_or_default())
            });
        });
        group.bench_with_input(
            BenchmarkId::new("read_clusters_parallel", n),
            &text,
            |b, t| {
                b.iter_with_large_drop(|| {
                    plan_of(
                        dynbatch::read_clusters_parallel(black_box(&t[..]), threads)
                            .unwrap_or_default(),
                    )
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench, parse_and_plan);
criterion_main!(benches);

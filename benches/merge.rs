//! Semantic grouping at scale: `patterns::group_by_similarity` on 10k and 100k vectors of 384
//! dimensions (all-MiniLM-L6-v2's), given: paraphrase-like groups of five (a shared direction
//! plus each its own noise) among a space of unrelated patterns, as embeddings of pattern names
//! from many niches give. The goal is 100k in at most 10 s on two cores.
//!
//! ```text
//! cargo bench --bench merge
//! ```

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dynbatch::patterns::group_by_similarity;

const DIM: usize = 384;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn noise(seed: u64) -> Vec<f32> {
    (0..DIM)
        .map(|k| {
            let x = splitmix(seed.wrapping_mul(1_000_003) ^ k as u64);
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// `n` vectors in groups of five: a group's direction plus noise of each vector's own.
fn vectors(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let center = noise((i / 5) as u64 + 1);
            let own = noise(1_000_000_000 + i as u64);
            center.iter().zip(own).map(|(c, o)| c + 0.6 * o).collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_by_similarity");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for n in [10_000usize, 100_000] {
        let input = vectors(n);
        let groups = group_by_similarity(&input, 0.65);
        let found = groups.iter().max().map_or(0, |g| g + 1);
        eprintln!("{n} vectors: {found} groups ({} true)", n / 5);
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| group_by_similarity(input, 0.65));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Semantic consolidation at scale: `SemanticMerger` over 10k and 100k patterns whose vectors
//! (given by a table, not a model) have 384
//! dimensions (all-MiniLM-L6-v2's), given: paraphrase-like groups of five (a shared direction
//! plus each its own noise) among a space of unrelated patterns, as embeddings of pattern names
//! from many niches give. The goal is 100k in at most 10 s on two cores.
//!
//! ```text
//! cargo bench --bench merge
//! ```

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dynbatch::backend::{BackendError, EmbedLimits, Embedder, Embeddings, async_trait};
use dynbatch::patterns::{PatternMerger, SemanticMerger, Support};

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

/// Vectors looked up by text: the embedding model's part, at no cost.
#[derive(Debug)]
struct Table(HashMap<String, Vec<f32>>);

#[async_trait]
impl Embedder for Table {
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, BackendError> {
        Ok(Embeddings::new(
            texts.iter().map(|t| self.0[t].clone()).collect(),
        ))
    }

    fn limits(&self) -> EmbedLimits {
        EmbedLimits::new(usize::MAX, usize::MAX)
    }
}

/// `n` patterns, one per cluster, named `p{i}`; pattern `i` has vector `i`.
fn support(n: usize) -> (Vec<Support>, Table) {
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let support = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::from_value::<dynbatch::patterns::Pattern>(serde_json::json!({
                "pattern": name, "template": null, "examples": [], "rationale": null
            }))
            .map(|pattern| Support {
                id: format!("c{i}"),
                priority: 1.0,
                avg_performance: 1.0,
                is_wide: false,
                patterns: vec![pattern],
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    let table = Table(names.into_iter().zip(vectors(n)).collect());
    (support, table)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("semantic_merge");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for n in [10_000usize, 100_000] {
        let (support, table) = support(n);
        let merger = SemanticMerger::new(table).with_threshold(0.65);
        let result = runtime
            .block_on(merger.merge(&support))
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{n} patterns: {} groups ({} true)",
            result.patterns.len(),
            n / 5
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &support, |b, support| {
            b.iter(|| runtime.block_on(merger.merge(support)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

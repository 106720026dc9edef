//! Equivalence with the design document: wherever the design's `createBatchesWithStrategy` +
//! `optimizeBatches`, as written (with `rebalanceBatches` as we define it), runs to the end
//! without its budget break and yields batches that satisfy every invariant, `Batcher` with the
//! defaults yields exactly the same batches.

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss)]

use std::cell::Cell;

use super::check::check_batch_shapes;
use crate::testing::{arb_clusters, arb_config};
use crate::{
    Batcher, BatchingConfig, Cluster, QualityScorer, SpecQualityScorer, SpecStrategySelector,
    SpecTokenEstimator, StrategySelector, TokenEstimator,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The design's batches (as candidate positions in priority order), and whether its budget
/// break fired while clusters remained.
fn design_batches(
    tokens: &[u32],
    batch_size: Option<usize>,
    config: &BatchingConfig,
) -> (Vec<Vec<usize>>, bool) {
    let cap = batch_size.unwrap_or(config.max_batch_size());
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_tokens = 0u64;
    let mut broke = false;
    for (i, &t) in tokens.iter().enumerate() {
        let would_exceed_tokens = current_tokens + u64::from(t) > config.target_tokens_per_batch();
        let would_exceed_size = current.len() >= cap;
        if !current.is_empty() && (would_exceed_tokens || would_exceed_size) {
            if current.len() >= config.min_batch_size() {
                batches.push(std::mem::take(&mut current));
            } else if let Some(last) = batches.last_mut() {
                last.append(&mut current);
            }
            current.clear();
            current_tokens = 0;
        }
        current.push(i);
        current_tokens += u64::from(t);
        if batches.len() + 1 >= config.max_total_calls() {
            broke = i + 1 < tokens.len();
            break;
        }
    }
    if !current.is_empty() {
        if current.len() >= config.min_batch_size() || batches.is_empty() {
            batches.push(current);
        } else if let Some(last) = batches.last_mut() {
            last.append(&mut current);
        }
    }
    (optimize(batches, tokens, config), broke)
}

/// `optimizeBatches`, with `rebalanceBatches` = same clusters, same count, contiguous, sizes
/// differing by at most one (larger first), kept only if every invariant still holds and no
/// more batches fall below the minimum than before.
fn optimize(batches: Vec<Vec<usize>>, tokens: &[u32], config: &BatchingConfig) -> Vec<Vec<usize>> {
    if batches.is_empty() {
        return batches;
    }
    let total: usize = batches.iter().map(Vec::len).sum();
    let avg = total as f64 / batches.len() as f64;
    let needs = batches
        .iter()
        .any(|b| b.len() as f64 > avg * 1.5 || (b.len() as f64) < avg * 0.5);
    if !(needs && batches.len() > 2) {
        return batches;
    }
    let flat: Vec<usize> = batches.iter().flatten().copied().collect();
    let k = batches.len();
    let mut out = Vec::new();
    let mut rest = &flat[..];
    for i in 0..k {
        let len = total / k + usize::from(i < total % k);
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    let small = |bs: &[Vec<usize>]| {
        bs.iter()
            .filter(|b| b.len() < config.min_batch_size())
            .count()
    };
    if shapes_ok(&out, tokens, config) && small(&out) <= small(&batches) {
        out
    } else {
        batches
    }
}

fn shapes_ok(batches: &[Vec<usize>], tokens: &[u32], config: &BatchingConfig) -> bool {
    let members: Vec<Vec<u32>> = batches
        .iter()
        .map(|b| b.iter().map(|&i| tokens[i]).collect())
        .collect();
    check_batch_shapes(&members, 0, config).is_ok()
}

/// Every invariant the design's output must meet for the equivalence to apply.
fn design_output_valid(batches: &[Vec<usize>], tokens: &[u32], config: &BatchingConfig) -> bool {
    let flat: Vec<usize> = batches.iter().flatten().copied().collect();
    flat == (0..tokens.len()).collect::<Vec<_>>()
        && batches.len() <= config.max_total_calls()
        && shapes_ok(batches, tokens, config)
}

#[test]
fn defaults_reproduce_the_design_wherever_it_is_valid() {
    let compared = Cell::new(0u32);
    let skipped = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(arb_config(), arb_clusters(0..70)),
            |(config, clusters): (BatchingConfig, Vec<Cluster>)| {
                // The design's pipeline, step by step, on the design's components.
                let mut scored: Vec<(usize, f64, f64)> = clusters
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let q = SpecQualityScorer.quality(c);
                        (i, q, SpecQualityScorer.priority(c, q))
                    })
                    .filter(|&(_, q, _)| q >= config.quality_threshold())
                    .collect();
                scored.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap());
                let views: Vec<crate::Scored<'_>> = scored
                    .iter()
                    .map(|&(index, quality, priority)| crate::Scored {
                        index,
                        cluster: &clusters[index],
                        quality,
                        priority,
                    })
                    .collect();
                let strategy = SpecStrategySelector.select(&views);
                let tokens: Vec<u32> = views
                    .iter()
                    .map(|s| SpecTokenEstimator.estimate(s.cluster, &strategy))
                    .collect();
                let (design, broke) = design_batches(&tokens, strategy.batch_size, &config);
                if broke || !design_output_valid(&design, &tokens, &config) {
                    skipped.set(skipped.get() + 1);
                    return Ok(());
                }
                compared.set(compared.get() + 1);
                let expected: Vec<Vec<String>> = design
                    .iter()
                    .map(|b| {
                        b.iter()
                            .map(|&k| clusters[views[k].index].id.clone())
                            .collect()
                    })
                    .collect();
                let plan = Batcher::new(config.clone()).plan(&clusters).unwrap();
                let actual: Vec<Vec<String>> = plan
                    .batches
                    .iter()
                    .map(|b| b.clusters.iter().map(ToString::to_string).collect())
                    .collect();
                prop_assert_eq!(actual, expected);
                Ok(())
            },
        )
        .unwrap();
    // The comparison must not be vacuous.
    println!(
        "compared {} cases, skipped {}",
        compared.get(),
        skipped.get()
    );
    assert!(
        compared.get() >= 100,
        "only {} of 500 cases were comparable",
        compared.get()
    );
}

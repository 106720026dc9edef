//! The design document's three "Expected Outcomes" scenarios, built as inputs and planned with
//! the defaults. The design's own figures do not all follow from its algorithm; the guide's
//! "Differences from the design document" sets them side by side with these.

#![allow(clippy::unwrap_used, clippy::panic)]

use dynbatch::{
    Batcher, BatchingConfig, Cluster, QualityScorer, SpecQualityScorer, StrategyKind, Video,
};

/// A cluster whose design quality lands in a chosen band: `High` ≈ 0.965, `Mid` ≈ 0.64,
/// `Low` ≈ 0.30. Sizes of 20 give the design's full 400 estimated tokens.
#[derive(Clone, Copy)]
enum Band {
    High,
    Mid,
    Low,
}

fn cluster(i: usize, band: Band) -> Cluster {
    let (size, avg, sources) = match band {
        Band::High => (20, 4.5, 5),
        Band::Mid => (20, 2.0, 2),
        Band::Low => (3, 1.0, 0),
    };
    let videos = (0..size.min(10))
        .map(|k| Video::new(format!("Title {k} of cluster {i}"), avg))
        .collect();
    let mut c = Cluster::new(format!("s{i:02}"), videos);
    c.size = size;
    c.avg_performance = avg;
    c.thread_sources = (0..sources).map(|s| format!("source {s}")).collect();
    c.is_wide = i % 4 == 0;
    c
}

fn sizes(plan: &dynbatch::BatchPlan<'_>) -> Vec<usize> {
    plan.batches.iter().map(|b| b.clusters.len()).collect()
}

fn tokens(plan: &dynbatch::BatchPlan<'_>) -> Vec<u64> {
    plan.batches.iter().map(|b| b.estimated_tokens).collect()
}

#[test]
fn bands_have_the_intended_quality() {
    let q = |b| SpecQualityScorer.quality(&cluster(1, b));
    assert!((q(Band::High) - 0.965).abs() < 1e-9);
    assert!((q(Band::Mid) - 0.64).abs() < 1e-9);
    assert!(q(Band::Low) < 0.5);
}

/// Design: THOROUGH, 3 batches (3, 3, 2), ~2500 tokens each. With a minimum of 3 the trailing
/// 2 is merged (as the design itself does): 2 batches, 3 and 5 clusters.
#[test]
fn scenario_1_few_high_quality_clusters() {
    let input: Vec<Cluster> = (0..8).map(|i| cluster(i, Band::High)).collect();
    let plan = Batcher::default().plan(&input).unwrap();
    assert_eq!(plan.strategy.kind, StrategyKind::Thorough);
    assert_eq!(sizes(&plan), vec![3, 5]);
    assert_eq!(tokens(&plan), vec![1200, 2000]);
    plan.check(&BatchingConfig::default()).unwrap();

    // The design's usage example budgets ceil(8 / 5) = 2 calls: still everything fits.
    let tight = BatchingConfig::builder()
        .max_total_calls(2)
        .build()
        .unwrap();
    let plan = Batcher::new(tight.clone()).plan(&input).unwrap();
    assert_eq!(sizes(&plan), vec![3, 5]);
    assert_eq!(plan.counts().deferred, 0);
    plan.check(&tight).unwrap();
}

/// Design: ADAPTIVE, 6 batches of 5-6, ~3500 tokens. Ours: batches fill to `max_batch_size`
/// (8 × 400 = 3200 tokens), 8/8/8/8/3, which the rebalance evens out to 5 batches of 7.
#[test]
fn scenario_2_many_mixed_clusters() {
    let input: Vec<Cluster> = (0..35)
        .map(|i| cluster(i, if i % 4 == 1 { Band::High } else { Band::Mid }))
        .collect();
    let high = input
        .iter()
        .filter(|c| SpecQualityScorer.quality(c) > 0.8)
        .count();
    assert!(high < 10, "{high}");
    let plan = Batcher::default().plan(&input).unwrap();
    assert_eq!(plan.strategy.kind, StrategyKind::Adaptive);
    assert_eq!(sizes(&plan), vec![7; 5]);
    assert_eq!(tokens(&plan), vec![2800; 5]);
    plan.check(&BatchingConfig::default()).unwrap();
}

/// Mixed in the other sense: 7 of the 35 below the threshold. 28 candidates pack as 8/8/8/4,
/// even enough to keep.
#[test]
fn scenario_2_with_low_quality_clusters_filtered() {
    let input: Vec<Cluster> = (0..35)
        .map(|i| match i % 5 {
            0 => Band::Low,
            1 => Band::High,
            _ => Band::Mid,
        })
        .enumerate()
        .map(|(i, b)| cluster(i, b))
        .collect();
    let plan = Batcher::default().plan(&input).unwrap();
    assert_eq!(plan.counts().below_threshold, 7);
    assert_eq!(plan.strategy.kind, StrategyKind::Adaptive);
    assert_eq!(sizes(&plan), vec![8, 8, 8, 4]);
}

/// Design: EFFICIENT, 4 batches of 6-7, ~3000 tokens. Ours agrees: 6/6/6/7 (the trailing 1 is
/// merged), 2400-2800 tokens.
#[test]
fn scenario_3_many_high_quality_clusters() {
    let input: Vec<Cluster> = (0..25).map(|i| cluster(i, Band::High)).collect();
    let plan = Batcher::default().plan(&input).unwrap();
    assert_eq!(plan.strategy.kind, StrategyKind::Efficient);
    assert_eq!(sizes(&plan), vec![6, 6, 6, 7]);
    assert_eq!(tokens(&plan), vec![2400, 2400, 2400, 2800]);
    plan.check(&BatchingConfig::default()).unwrap();
}

/// WIDE clusters and those above 4x come first: priority decides the batch order.
#[test]
fn wide_and_high_performing_clusters_lead() {
    let input: Vec<Cluster> = (0..25).map(|i| cluster(i, Band::High)).collect();
    let plan = Batcher::default().plan(&input).unwrap();
    let first: Vec<&str> = plan.batches[0].clusters.iter().map(AsRef::as_ref).collect();
    // i % 4 == 0 are WIDE: s00, s04, s08, s12, s16, s20, s24 — input order among equals.
    assert_eq!(first, vec!["s00", "s04", "s08", "s12", "s16", "s20"]);
}

/// The call budget: the design's usage example (budget ceil(n / 5)) on Scenario 3 allows 5
/// calls, enough; a budget of 3 makes batches grow to 8/8/8 and defers the last one by default,
/// or keeps batches of 6 and defers 7 with `OverBudget::Defer`.
#[test]
fn budget_grows_batches_before_deferring() {
    let input: Vec<Cluster> = (0..25).map(|i| cluster(i, Band::High)).collect();
    let grow = BatchingConfig::builder()
        .max_total_calls(3)
        .build()
        .unwrap();
    let plan = Batcher::new(grow.clone()).plan(&input).unwrap();
    assert_eq!(sizes(&plan), vec![8, 8, 8]);
    assert_eq!(plan.counts().deferred, 1);
    plan.check(&grow).unwrap();

    let defer = grow
        .to_builder()
        .over_budget(dynbatch::OverBudget::Defer)
        .build()
        .unwrap();
    let plan = Batcher::new(defer.clone()).plan(&input).unwrap();
    assert_eq!(sizes(&plan), vec![6, 6, 6]);
    assert_eq!(plan.counts().deferred, 7);
    plan.check(&defer).unwrap();

    let four = BatchingConfig::builder()
        .max_total_calls(4)
        .build()
        .unwrap();
    let plan = Batcher::new(four).plan(&input).unwrap();
    assert_eq!(plan.counts().deferred, 0);
    assert_eq!(sizes(&plan), vec![6, 6, 6, 7]);
}

//! Property tests of the plan's invariants, each stated by name, on generated realistic inputs
//! (including invalid clusters) and valid configs from `dynbatch::testing`. Each property
//! re-derives its invariant from the plan and the input, independently of `BatchPlan::check`;
//! `plan_check_and_check_plan_pass` runs the public checks themselves.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use dynbatch::testing::{arb_config, arb_dirty_clusters, check_plan, run_conformance};
use dynbatch::{Batcher, BatchingConfig, Cluster, ClusterState, QualityScorer};
use proptest::prelude::*;

fn plan<'a>(config: &BatchingConfig, clusters: &'a [Cluster]) -> dynbatch::BatchPlan<'a> {
    Batcher::new(config.clone()).plan(clusters).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn invariant_accounting_every_cluster_has_exactly_one_state(
        config in arb_config(), clusters in arb_dirty_clusters(0..60)
    ) {
        let plan = plan(&config, &clusters);
        prop_assert_eq!(plan.clusters.len(), clusters.len());
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (b, batch) in plan.batches.iter().enumerate() {
            for id in &batch.clusters {
                prop_assert!(seen.insert(id.as_ref(), b).is_none(), "{} batched twice", id);
            }
        }
        for (entry, cluster) in plan.clusters.iter().zip(&clusters) {
            prop_assert_eq!(&entry.id, &cluster.id);
            match &entry.state {
                ClusterState::Batched { batch } => prop_assert_eq!(seen.get(entry.id.as_ref()), Some(batch)),
                ClusterState::Rejected { rejection } => prop_assert!(!rejection.to_string().is_empty()),
                ClusterState::Deferred { reason }
                | ClusterState::BelowThreshold { reason } => prop_assert!(!reason.is_empty()),
                other => prop_assert!(false, "a state this test does not know: {}", other.name()),
            }
        }
        let batched = plan.clusters.iter().filter(|e| matches!(e.state, ClusterState::Batched { .. })).count();
        prop_assert_eq!(batched, seen.len());
    }

    #[test]
    fn invariant_sizes_within_bounds(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        let plan = plan(&config, &clusters);
        let tokens: HashMap<&str, u32> = plan.clusters.iter()
            .filter_map(|e| Some((e.id.as_ref(), e.estimated_tokens?))).collect();
        for (i, batch) in plan.batches.iter().enumerate() {
            let n = batch.clusters.len();
            prop_assert!(n >= 1 && n <= config.max_batch_size());
            if n < config.min_batch_size() {
                // Allowed only where no neighbour could merge with it or lend it the missing
                // clusters within max_batch_size, the token target and the neighbour's minimum.
                let (min, max, target) = (config.min_batch_size(), config.max_batch_size(), config.target_tokens_per_batch());
                let need = min - n;
                let sum = batch.estimated_tokens;
                let mut neighbours = Vec::new();
                if i > 0 {
                    let prev = &plan.batches[i - 1];
                    neighbours.push((prev, &prev.clusters[prev.clusters.len().saturating_sub(need)..]));
                }
                if let Some(next) = plan.batches.get(i + 1) {
                    neighbours.push((next, &next.clusters[..need.min(next.clusters.len())]));
                }
                for (other, lend) in neighbours {
                    let lend_tokens: u64 = lend.iter().map(|id| u64::from(tokens[id.as_ref()])).sum();
                    let merge = n + other.clusters.len() <= max && sum + other.estimated_tokens <= target;
                    let borrow = other.clusters.len() >= min + need && sum + lend_tokens <= target;
                    prop_assert!(!merge && !borrow, "batch {} of {} could reach the minimum", i, n);
                }
            }
        }
    }

    #[test]
    fn invariant_tokens_within_target(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        let plan = plan(&config, &clusters);
        for batch in &plan.batches {
            let over = batch.estimated_tokens > config.target_tokens_per_batch();
            prop_assert_eq!(over, batch.oversized);
            if over {
                prop_assert_eq!(batch.clusters.len(), 1);
            }
        }
    }

    #[test]
    fn invariant_budget_respected(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        let plan = plan(&config, &clusters);
        prop_assert!(plan.batches.len() <= config.max_total_calls());
        // Deferring happens only when the budget is used up.
        if plan.counts().deferred > 0 {
            prop_assert_eq!(plan.batches.len(), config.max_total_calls());
        }
    }

    #[test]
    fn invariant_order_priority_and_threshold(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        let plan = plan(&config, &clusters);
        let entry: HashMap<&str, &dynbatch::ClusterEntry> =
            plan.clusters.iter().filter(|e| e.priority.is_some()).map(|e| (e.id.as_ref(), e)).collect();
        let order: Vec<f64> = plan.batches.iter().flat_map(|b| &b.clusters)
            .map(|id| entry[id.as_ref()].priority.unwrap()).collect();
        prop_assert!(order.windows(2).all(|w| w[0] >= w[1]), "batched priorities rise: {:?}", order);
        let lowest = order.last().copied().unwrap_or(f64::INFINITY);
        for e in &plan.clusters {
            match e.state {
                ClusterState::Deferred { .. } => {
                    prop_assert!(e.priority.unwrap() <= lowest);
                    prop_assert!(e.quality.unwrap() >= config.quality_threshold());
                }
                ClusterState::Batched { .. } => prop_assert!(e.quality.unwrap() >= config.quality_threshold()),
                ClusterState::BelowThreshold { .. } => prop_assert!(e.quality.unwrap() < config.quality_threshold()),
                ClusterState::Rejected { .. } => prop_assert!(e.quality.is_none()),
                _ => prop_assert!(false, "a state this test does not know: {}", e.state.name()),
            }
        }
    }

    #[test]
    fn invariant_determinism_same_input_same_plan(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        prop_assert_eq!(plan(&config, &clusters), plan(&config, &clusters));
    }

    #[test]
    fn plan_check_and_check_plan_pass(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        check_plan(&Batcher::new(config), &clusters)?;
    }

    #[test]
    fn grow_batches_never_defers_more_than_defer(config in arb_config(), clusters in arb_dirty_clusters(0..60)) {
        let grow = plan(&config.to_builder().over_budget(dynbatch::OverBudget::GrowBatches).build().unwrap(), &clusters);
        let defer = plan(&config.to_builder().over_budget(dynbatch::OverBudget::Defer).build().unwrap(), &clusters);
        prop_assert!(grow.counts().deferred <= defer.counts().deferred);
    }
}

/// A custom scorer of the kind plug-in authors write: it reads an extra upstream field.
#[derive(Debug)]
struct EngagementScorer;

impl QualityScorer for EngagementScorer {
    fn quality(&self, cluster: &Cluster) -> f64 {
        let boost = cluster
            .extra
            .get("engagement")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        (cluster.avg_performance / 6.0).min(1.0) * 0.8 + boost.min(1.0) * 0.2
    }

    fn priority(&self, cluster: &Cluster, quality: f64) -> f64 {
        quality + if cluster.is_wide { 0.1 } else { 0.0 }
    }
}

#[test]
fn conformance_suite_passes_for_a_custom_scorer() {
    for config in [
        BatchingConfig::default(),
        BatchingConfig::builder()
            .max_total_calls(2)
            .min_batch_size(2)
            .build()
            .unwrap(),
        BatchingConfig::builder()
            .target_tokens_per_batch(900)
            .over_budget(dynbatch::OverBudget::Defer)
            .build()
            .unwrap(),
    ] {
        run_conformance(&Batcher::new(config).with_scorer(EngagementScorer), 64).unwrap();
    }
}

/// The suite must be able to fail: a scorer that returns garbage is caught by the planner
/// (rejected, not a broken plan), but a selector that returns an invalid strategy fails it.
#[test]
fn conformance_suite_catches_a_broken_selector() {
    #[derive(Debug)]
    struct Broken;
    impl dynbatch::StrategySelector for Broken {
        fn select(&self, _: &[dynbatch::Scored<'_>]) -> dynbatch::StrategySettings {
            dynbatch::StrategySettings::custom("BROKEN").with_batch_size(Some(0))
        }
    }
    let err = run_conformance(&Batcher::default().with_selector(Broken), 8).unwrap_err();
    assert!(err.to_string().contains("invalid strategy"), "{err}");
}

/// A scorer that reads an extra field the generated clusters lack batches nothing: the suite
/// says so instead of passing; with inputs that carry the field, it runs and passes.
#[test]
fn conformance_suite_refuses_to_pass_when_nothing_was_batched() {
    use proptest::prelude::*;
    #[derive(Debug)]
    struct ByComments;
    impl dynbatch::QualityScorer for ByComments {
        fn quality(&self, cluster: &Cluster) -> f64 {
            cluster
                .extra
                .get("comments")
                .and_then(|v| v.as_f64())
                .map_or(0.0, |c| (c / 100.0).min(1.0))
        }
    }
    let batcher = Batcher::default().with_scorer(ByComments);
    let err = run_conformance(&batcher, 16).unwrap_err();
    assert!(
        err.to_string()
            .contains("no generated input got a single cluster batched"),
        "{err}"
    );
    let with_comments = arb_dirty_clusters(1..30).prop_map(|mut clusters| {
        for (i, c) in clusters.iter_mut().enumerate() {
            c.extra.insert("comments", serde_json::json!(50 + i * 10));
        }
        clusters
    });
    dynbatch::testing::run_conformance_with(&batcher, 32, with_comments).unwrap();
}

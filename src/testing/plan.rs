//! [`check_plan`]: everything a plan owes its input, and the plug-in conformance suites that
//! run it over generated inputs.

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};

use super::arb_dirty_clusters;
use crate::model::Cluster;
use crate::plan::{BatchPlan, Batcher, ClusterState};
use crate::quality::QualityScorer;
use crate::strategy::StrategySelector;
use crate::tokens::TokenEstimator;

/// Plans `clusters` with `batcher` and checks everything a plan owes its input: planning
/// succeeds; one entry per input cluster, in input order, with its id; invalid input clusters
/// are rejected; [`BatchPlan::check`] passes; planning again gives the same plan
/// (determinism); the plan's JSON reads back as the same plan.
///
/// Returns the plan so callers can assert more. Use it inside `proptest!` with `?`.
///
/// # Errors
/// A [`TestCaseError`] saying which check failed and how.
pub fn check_plan<'a, Scorer, Estimator, Selector>(
    batcher: &Batcher<Scorer, Estimator, Selector>,
    clusters: &'a [Cluster],
) -> Result<BatchPlan<'a>, TestCaseError>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    let fail = |what: String| TestCaseError::fail(what);
    let plan = batcher
        .plan(clusters)
        .map_err(|e| fail(format!("planning failed: {e}")))?;
    if plan.clusters.len() != clusters.len() {
        return Err(fail(format!(
            "accounting: {} input clusters but {} plan entries",
            clusters.len(),
            plan.clusters.len()
        )));
    }
    for (i, (entry, cluster)) in plan.clusters.iter().zip(clusters).enumerate() {
        if entry.id != cluster.id {
            return Err(fail(format!(
                "accounting: entry {i} is {:?}, input cluster {i} is {:?}",
                entry.id, cluster.id
            )));
        }
        if cluster.validate().is_err() && !matches!(entry.state, ClusterState::Rejected { .. }) {
            return Err(fail(format!(
                "accounting: invalid input cluster {i} ({:?}) is {}",
                cluster.id,
                entry.state.name()
            )));
        }
    }
    plan.check(batcher.config())
        .map_err(|v| fail(format!("invariant violated: {v}")))?;
    let again = batcher
        .plan(clusters)
        .map_err(|e| fail(format!("planning failed the second time: {e}")))?;
    if again != plan {
        return Err(fail("determinism: planning twice gave two plans".into()));
    }
    let json = serde_json::to_string(&plan).map_err(|e| fail(format!("plan to JSON: {e}")))?;
    let back: BatchPlan<'static> =
        serde_json::from_str(&json).map_err(|e| fail(format!("plan from JSON: {e}")))?;
    if back != plan.clone().into_owned() {
        return Err(fail(
            "serde: the plan's JSON does not read back as the plan".into(),
        ));
    }
    Ok(plan)
}

/// The conformance suite for plug-ins: runs [`check_plan`] with `batcher` over `cases` generated
/// inputs ([`arb_dirty_clusters`] of 0 to 60 clusters), deterministically seeded, and returns the
/// smallest failing input found, if any. A plug-in that reads fields the generated clusters
/// lack (extra fields, say) should use [`run_conformance_with`] and its own generator.
///
/// # Errors
/// proptest's [`TestError`], whose `Display` names the failed check and the minimal input;
/// also when no generated input got a single cluster batched (nothing was tested).
pub fn run_conformance<Scorer, Estimator, Selector>(
    batcher: &Batcher<Scorer, Estimator, Selector>,
    cases: u32,
) -> Result<(), TestError<Vec<Cluster>>>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    run_conformance_with(batcher, cases, arb_dirty_clusters(0..60))
}

/// [`run_conformance`] over inputs of `clusters`, your own generator (with the extra fields
/// your scorer reads, for instance).
///
/// # Errors
/// As [`run_conformance`].
pub fn run_conformance_with<Scorer, Estimator, Selector>(
    batcher: &Batcher<Scorer, Estimator, Selector>,
    cases: u32,
    clusters: impl Strategy<Value = Vec<Cluster>>,
) -> Result<(), TestError<Vec<Cluster>>>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let total_batched = std::sync::atomic::AtomicUsize::new(0);
    runner.run(&clusters, |clusters| {
        let plan = check_plan(batcher, &clusters)?;
        total_batched.fetch_add(plan.counts().batched, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })?;
    if total_batched.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return Err(TestError::Fail(
            "no generated input got a single cluster batched, so no plan was tested: does the \
             scorer read fields the generated clusters lack? Pass inputs that have them to \
             run_conformance_with"
                .into(),
            Vec::new(),
        ));
    }
    Ok(())
}

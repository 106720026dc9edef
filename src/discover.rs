//! The whole pipeline, [`Batcher::discover`]: plan the clusters, then run the plan. It joins
//! the planner (`plan`) and the runner (`run`), so it belongs to neither.

use crate::backend::LlmBackend;
use crate::error::Error;
use crate::model::Cluster;
use crate::plan::Batcher;
use crate::quality::QualityScorer;
use crate::report::DiscoveryReport;
use crate::run::Runner;
use crate::strategy::StrategySelector;
use crate::timer::Timer;
use crate::tokens::TokenEstimator;

impl<Scorer, Estimator, Selector> Batcher<Scorer, Estimator, Selector>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    /// Plans `clusters` and runs the plan with `runner`: the whole pipeline.
    ///
    /// # Errors
    /// As [`Batcher::plan`]; backend failures are outcomes in the report, not errors.
    pub async fn discover<'a, Backend: LlmBackend, Clock: Timer>(
        &self,
        clusters: &'a [Cluster],
        concept: &str,
        runner: &Runner<Backend, Clock>,
    ) -> Result<DiscoveryReport<'a>, Error> {
        let plan = self.plan(clusters)?;
        runner.run(plan, clusters, concept).await
    }
}

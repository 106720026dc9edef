//! [`Batcher`]: scoring, filtering, ordering, strategy selection and packing, composed.

use std::borrow::Cow;

use crate::config::BatchingConfig;
use crate::error::PlanError;
use crate::model::{Cluster, Rejection, ScoreKind};
use crate::quality::{QualityScorer, Scored, SpecQualityScorer};
use crate::strategy::{SpecStrategySelector, StrategySelector};
use crate::tokens::{SpecTokenEstimator, TokenEstimator};

use super::order::{EMPTY_ID, first_occurrences, sort_by_priority};
use super::pack::Packer;
use super::types::{Batch, BatchPlan, ClusterEntry, ClusterState};

/// Composes a [`QualityScorer`], a [`TokenEstimator`] and a [`StrategySelector`] into a planner.
///
/// The defaults are the design document's. Each `with_*` method swaps one component, and with it
/// one type parameter:
///
/// ```
/// use dynbatch::{Batcher, BatchingConfig, Cluster, QualityScorer};
///
/// #[derive(Debug)]
/// struct ByPerformance;
/// impl QualityScorer for ByPerformance {
///     fn quality(&self, cluster: &Cluster) -> f64 {
///         (cluster.avg_performance / 5.0).min(1.0)
///     }
/// }
///
/// let batcher = Batcher::new(BatchingConfig::default()).with_scorer(ByPerformance);
/// let plan = batcher.plan(&[])?;
/// assert!(plan.batches.is_empty());
/// # Ok::<(), dynbatch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Batcher<
    Scorer = SpecQualityScorer,
    Estimator = SpecTokenEstimator,
    Selector = SpecStrategySelector,
> {
    config: BatchingConfig,
    scorer: Scorer,
    estimator: Estimator,
    selector: Selector,
}

impl Default for Batcher {
    /// The design's components and config.
    fn default() -> Self {
        Self::new(BatchingConfig::default())
    }
}

impl Batcher {
    /// A planner with the design's scorer, estimator and selector.
    pub fn new(config: BatchingConfig) -> Self {
        Self {
            config,
            scorer: SpecQualityScorer,
            estimator: SpecTokenEstimator,
            selector: SpecStrategySelector,
        }
    }
}

impl<Scorer, Estimator, Selector> Batcher<Scorer, Estimator, Selector> {
    /// Replaces the quality scorer.
    pub fn with_scorer<NewScorer: QualityScorer>(
        self,
        scorer: NewScorer,
    ) -> Batcher<NewScorer, Estimator, Selector> {
        Batcher {
            config: self.config,
            scorer,
            estimator: self.estimator,
            selector: self.selector,
        }
    }

    /// Replaces the token estimator.
    pub fn with_estimator<NewEstimator: TokenEstimator>(
        self,
        estimator: NewEstimator,
    ) -> Batcher<Scorer, NewEstimator, Selector> {
        Batcher {
            config: self.config,
            scorer: self.scorer,
            estimator,
            selector: self.selector,
        }
    }

    /// Replaces the strategy selector.
    pub fn with_selector<NewSelector: StrategySelector>(
        self,
        selector: NewSelector,
    ) -> Batcher<Scorer, Estimator, NewSelector> {
        Batcher {
            config: self.config,
            scorer: self.scorer,
            estimator: self.estimator,
            selector,
        }
    }

    /// Replaces the config.
    #[must_use]
    pub fn with_config(mut self, config: BatchingConfig) -> Self {
        self.config = config;
        self
    }

    /// The config.
    pub fn config(&self) -> &BatchingConfig {
        &self.config
    }
    /// The quality scorer.
    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }
    /// The token estimator.
    pub fn estimator(&self) -> &Estimator {
        &self.estimator
    }
    /// The strategy selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }
}

impl<Scorer: QualityScorer, Estimator: TokenEstimator, Selector: StrategySelector>
    Batcher<Scorer, Estimator, Selector>
{
    /// Plans `clusters` into batches. Every input cluster appears in the plan's `clusters`, in
    /// input order, with exactly one state.
    ///
    /// # Errors
    /// [`PlanError::InvalidStrategy`] when the selector returns a strategy that fails
    /// [`StrategySettings::validate`](crate::StrategySettings::validate): the only way planning fails. Invalid
    /// clusters are not errors: they are `rejected` entries.
    pub fn plan<'a>(&self, clusters: &'a [Cluster]) -> Result<BatchPlan<'a>, PlanError> {
        let threshold = self.config.quality_threshold();
        let mut entries = Vec::with_capacity(clusters.len());
        let first = first_occurrences(clusters);
        let mut candidates: Vec<Scored<'a>> = Vec::with_capacity(clusters.len());

        for (index, cluster) in clusters.iter().enumerate() {
            let mut entry = ClusterEntry {
                id: Cow::Borrowed(cluster.id.as_str()),
                state: ClusterState::Deferred {
                    reason: Cow::Borrowed(""),
                },
                quality: None,
                priority: None,
                estimated_tokens: None,
            };
            match self.score(index, cluster, first[index]) {
                Err(rejection) => {
                    entry.state = ClusterState::Rejected { rejection };
                }
                Ok(scored) => {
                    entry.quality = Some(scored.quality);
                    entry.priority = Some(scored.priority);
                    if scored.quality >= threshold {
                        candidates.push(scored);
                    } else {
                        entry.state = ClusterState::BelowThreshold {
                            reason: Cow::Borrowed(BELOW_THRESHOLD),
                        };
                    }
                }
            }
            entries.push(entry);
        }

        sort_by_priority(&mut candidates);
        let strategy = self.selector.select(&candidates);
        strategy.validate().map_err(PlanError::InvalidStrategy)?;

        let tokens: Vec<u32> = candidates
            .iter()
            .map(|c| self.estimator.estimate(c.cluster, &strategy))
            .collect();
        let overhead = self.estimator.request_overhead(&strategy);
        let packer = Packer::new(&tokens, overhead, &self.config);
        let spans = packer.pack(strategy.batch_size);

        let mut batches = Vec::with_capacity(spans.len());
        for (number, span) in spans.iter().enumerate() {
            let mut ids = Vec::with_capacity(span.len());
            for k in span.start..span.end {
                let entry = &mut entries[candidates[k].index];
                entry.state = ClusterState::Batched { batch: number };
                entry.estimated_tokens = Some(tokens[k]);
                ids.push(Cow::Borrowed(candidates[k].cluster.id.as_str()));
            }
            let estimated_tokens = u64::from(overhead) + packer.sum(*span);
            batches.push(Batch {
                clusters: ids,
                estimated_tokens,
                oversized: span.len() == 1
                    && estimated_tokens > self.config.target_tokens_per_batch(),
            });
        }
        let planned = spans.last().map_or(0, |s| s.end);
        for k in planned..candidates.len() {
            let entry = &mut entries[candidates[k].index];
            entry.estimated_tokens = Some(tokens[k]);
            entry.state = ClusterState::Deferred {
                reason: Cow::Borrowed(OVER_BUDGET),
            };
        }

        Ok(BatchPlan {
            strategy,
            request_overhead_tokens: overhead,
            batches,
            clusters: entries,
        })
    }

    fn score<'a>(
        &self,
        index: usize,
        cluster: &'a Cluster,
        first: usize,
    ) -> Result<Scored<'a>, Rejection> {
        if first == EMPTY_ID {
            return Err(Rejection::EmptyId);
        }
        if first != index {
            return Err(Rejection::DuplicateId { first_index: first });
        }
        cluster.validate_content()?;
        let quality = self.scorer.quality(cluster);
        if !quality.is_finite() {
            return Err(Rejection::ScorerOutput {
                what: ScoreKind::Quality,
                value: quality,
            });
        }
        let priority = self.scorer.priority(cluster, quality);
        if !priority.is_finite() {
            return Err(Rejection::ScorerOutput {
                what: ScoreKind::Priority,
                value: priority,
            });
        }
        Ok(Scored {
            index,
            cluster,
            quality,
            priority,
        })
    }
}

/// The reason given for every `below_threshold` cluster (its quality is in the entry).
pub(crate) const BELOW_THRESHOLD: &str = "quality is below quality_threshold";
/// The reason given for every `deferred` cluster.
pub(crate) const OVER_BUDGET: &str =
    "over the call budget: all max_total_calls calls go to higher-priority clusters";

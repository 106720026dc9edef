//! The plan: [`BatchPlan`], its batches, every cluster's state, and what can break.

use std::borrow::Cow;

use crate::model::Rejection;
use serde::{Deserialize, Serialize};

use crate::strategy::StrategySettings;

/// The result of planning: the strategy, the batches, and every input cluster's state.
///
/// A plan borrows its ids from the input clusters (planning allocates nothing per cluster);
/// [`BatchPlan::into_owned`] detaches it. A plan read from JSON owns its data. Its JSON form is
/// a public contract (see [the guide](crate::guide::reports)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchPlan<'a> {
    /// The strategy the batches are planned (and will be prompted) with.
    pub strategy: StrategySettings,
    /// Tokens every request carries besides its clusters, included in each batch's
    /// `estimated_tokens` (0 with the design's estimator).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub request_overhead_tokens: u32,
    /// The batches, highest priority first; each is one LLM call.
    pub batches: Vec<Batch<'a>>,
    /// Every input cluster, in input order, with its state.
    pub clusters: Vec<ClusterEntry<'a>>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One batch: one LLM call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Batch<'a> {
    /// Ids of the clusters, highest priority first.
    pub clusters: Vec<Cow<'a, str>>,
    /// Estimated prompt tokens: the request overhead plus the clusters' estimates.
    pub estimated_tokens: u64,
    /// A lone cluster that, with the request overhead, exceeds `target_tokens_per_batch`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oversized: bool,
}

/// One input cluster's place in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterEntry<'a> {
    /// The cluster's id.
    pub id: Cow<'a, str>,
    /// Its state: exactly one.
    #[serde(flatten)]
    pub state: ClusterState<'a>,
    /// Its quality, when it was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
    /// Its priority, when it was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<f64>,
    /// Its estimated prompt tokens, when it passed the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_tokens: Option<u32>,
}

/// The state of a cluster in a plan. In JSON, `"status"` plus `"batch"` or `"reason"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterState<'a> {
    /// In `batches[batch]`.
    Batched {
        /// Index into [`BatchPlan::batches`].
        batch: usize,
    },
    /// Quality below `quality_threshold`: not analysed.
    BelowThreshold {
        /// "quality is below `quality_threshold`" (the quality is in the entry).
        reason: Cow<'a, str>,
    },
    /// Passed the threshold but did not fit the call budget; the lowest priorities go first.
    Deferred {
        /// "over the call budget: all `max_total_calls` calls go to higher-priority clusters".
        reason: Cow<'a, str>,
    },
    /// Invalid input.
    Rejected {
        /// What is wrong and where; its `Display` is the text for people.
        rejection: Rejection,
    },
}

impl ClusterState<'_> {
    /// The state's name as in JSON: `batched`, `below_threshold`, `deferred` or `rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Batched { .. } => "batched",
            Self::BelowThreshold { .. } => "below_threshold",
            Self::Deferred { .. } => "deferred",
            Self::Rejected { .. } => "rejected",
        }
    }
}

/// How many clusters of a plan are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// In a batch.
    pub batched: usize,
    /// Below the quality threshold.
    pub below_threshold: usize,
    /// Over the call budget.
    pub deferred: usize,
    /// Invalid.
    pub rejected: usize,
}

/// A broken plan invariant, named by the invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantViolation {
    /// A cluster is missing, in two places, or its state disagrees with the batches.
    #[error("accounting: {0}")]
    Accounting(String),
    /// A batch is empty, too large, or too small where it could have reached the minimum.
    #[error("sizes: {0}")]
    Size(String),
    /// A batch exceeds the token target, or its token figures disagree.
    #[error("tokens: {0}")]
    Tokens(String),
    /// More batches than `max_total_calls`.
    #[error("budget: {batches} batches exceed max_total_calls {max}")]
    Budget {
        /// Batches in the plan.
        batches: usize,
        /// The budget.
        max: usize,
    },
    /// Batches out of priority order, or a deferred cluster outranks a batched one.
    #[error("order: {0}")]
    Order(String),
    /// A cluster on the wrong side of the quality threshold.
    #[error("threshold: {0}")]
    Threshold(String),
}

//! What a run leaves: the [`DiscoveryReport`] with every cluster's outcome (and, when it
//! failed, the typed [`Failure`]), the consolidated patterns, the requests, usage and cost at
//! the [`PriceTable`]'s prices, the rate limits the run paced by, and the check that every
//! cluster is accounted for. Live runs ([`Runner`](crate::Runner)) and batch runs
//! ([`batch`](crate::batch)) make the same report.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::plan::{BatchPlan, InvariantViolation};

mod failure;
mod limits;
mod price;
mod probe;

pub use failure::{AnswerProblem, Failure, SplitCause, StopCause};
pub use limits::{LimitKind, LimitSource, RateLimitSummary};
pub use price::{ModelPrice, PriceTable, PriceTier};
pub(crate) use probe::agreement;
pub use probe::{ProbedCluster, QualityProbe};

use crate::patterns::{ClusterPatterns, ConsolidatedPattern};

/// Calls, tokens and cost of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunUsage {
    /// Batches in the plan: one call each if nothing goes wrong.
    pub calls_planned: u64,
    /// Calls sent, retries included.
    pub calls_made: u64,
    /// Retries of retryable errors.
    pub retries: u64,
    /// Requests split in two after an unusable answer.
    pub splits: u64,
    /// Re-asks of clusters an answer left out.
    pub reasks: u64,
    /// Calls beyond one per planned batch, 429s not counted.
    pub extra_calls: u64,
    /// The cap on `extra_calls`.
    pub max_extra_calls: u64,
    /// The plan's estimate of the prompt tokens of all batches.
    pub estimated_prompt_tokens: u64,
    /// The completion tokens the planned requests may use at most (their `max_tokens`).
    pub estimated_completion_tokens: u64,
    /// Prompt tokens the backend reported.
    pub prompt_tokens: u64,
    /// Completion tokens the backend reported.
    pub completion_tokens: u64,
    /// Responses that reported usage.
    pub usage_reported: u64,
    /// How far the prompt estimate was off, over the requests that reported usage:
    /// (reported − estimated) / estimated. `None` without reported usage.
    pub prompt_estimate_error: Option<f64>,
    /// The model that answered (the one that reported the most tokens, when several did), as
    /// the server named it; the model asked for when no answer named one.
    pub model: String,
    /// Cost of the reported tokens, each answer at the price of the model that gave it (the
    /// model asked for, when the table has no price for it); `None` when neither has a price.
    pub estimated_cost_usd: Option<f64>,
    /// Calls answered with a 429. Not failures and not extra calls: each such request was
    /// sent again when the rate limit allowed.
    #[serde(default)]
    pub rate_limited: u64,
    /// Requests that used their retries on transient errors and went to the back of the queue.
    #[serde(default)]
    pub requeued: u64,
    /// How often many transient failures in a row paused all sending (the circuit breaker).
    #[serde(default)]
    pub circuit_opened: u64,
    /// Seconds in which a request was ready to go and only the rate limit held it back.
    #[serde(default)]
    pub rate_limit_wait_secs: f64,
    /// Seconds from the run's start to its end.
    #[serde(default)]
    pub elapsed_secs: f64,
    /// The rate limits the run paced by at its end, and where they came from.
    #[serde(default)]
    pub rate_limits: RateLimitSummary,
    /// Requests answered from the journal ([`RunStore`](crate::store::RunStore)) instead of a
    /// call: paid for by an earlier run. Not in `calls_made`.
    #[serde(default)]
    pub cached: u64,
    /// Prompt tokens of the answers from the journal (not in `prompt_tokens`).
    #[serde(default)]
    pub cached_prompt_tokens: u64,
    /// Completion tokens of the answers from the journal (not in `completion_tokens`).
    #[serde(default)]
    pub cached_completion_tokens: u64,
    /// What the answers from the journal would have cost again; `None` when the model has no
    /// price.
    #[serde(default)]
    pub saved_cost_usd: Option<f64>,
    /// Which prices the costs are at: the Batch API's are half the list prices.
    #[serde(default)]
    pub price_tier: PriceTier,
    /// The output mode the run's requests went in at its end: under
    /// [`OutputMode::Auto`](crate::prompt::OutputMode::Auto), what the server accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_mode: Option<crate::prompt::OutputMode>,
    /// What consolidation did and cost (its embedding and judge calls), apart from the
    /// discovery calls above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation: Option<crate::patterns::MergeUsage>,
}

/// One answered request: the plan's prompt estimate next to what the backend reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestRecord {
    /// Planned batch index.
    pub batch: usize,
    /// Clusters in the request (fewer than the batch after a split or for a re-ask).
    pub clusters: usize,
    /// The estimate: the plan's request overhead plus its clusters' estimates.
    pub estimated_prompt_tokens: u64,
    /// Prompt tokens the backend reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens the backend reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// The request's `max_tokens`.
    pub max_tokens: u32,
    /// The answer came from the journal ([`RunStore`](crate::store::RunStore)), not a call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// Final state of a batched cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutcomeStatus {
    /// Its patterns are in the report.
    Succeeded,
    /// No usable answer; see `reason`.
    Failed,
}

/// What became of one batched cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterOutcome {
    /// The cluster's id.
    pub id: String,
    /// Its planned batch.
    pub batch: usize,
    /// Succeeded or failed.
    pub status: OutcomeStatus,
    /// Why it failed, for people (with the server's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it failed, for code to match on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Calls that included it.
    pub attempts: u32,
}

/// Everything a run produced. Its JSON form is a public contract (see [the guide](crate::guide::reports)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiscoveryReport<'a> {
    /// The concept analysed.
    pub concept: String,
    /// The plan that was run.
    pub plan: BatchPlan<'a>,
    /// One per batched cluster, in plan order.
    pub outcomes: Vec<ClusterOutcome>,
    /// Consolidated patterns, by evidence.
    pub patterns: Vec<ConsolidatedPattern>,
    /// Patterns per succeeded cluster.
    pub cluster_patterns: Vec<ClusterPatterns>,
    /// Every answered request, by batch: estimated and reported tokens.
    pub requests: Vec<RequestRecord>,
    /// Calls, tokens, cost.
    pub usage: RunUsage,
    /// Things the answers got wrong that did not stop the run.
    pub warnings: Vec<String>,
    /// What the quality probe found, when the run had one
    /// ([`RunConfig::quality_probe`](crate::RunConfig::quality_probe)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_probe: Option<QualityProbe>,
}

impl DiscoveryReport<'_> {
    /// The outcome of the batched cluster `id`, if it was batched. A scan: for many lookups,
    /// index `outcomes` by id once.
    pub fn outcome(&self, id: &str) -> Option<&ClusterOutcome> {
        self.outcomes.iter().find(|o| o.id == id)
    }

    /// The consolidated pattern the cluster `id`'s pattern named `pattern` went to, if any
    /// (through its aliases).
    pub fn merged_into(&self, id: &str, pattern: &str) -> Option<&ConsolidatedPattern> {
        self.patterns.iter().find(|p| {
            p.aliases
                .iter()
                .any(|a| a.cluster == id && a.pattern == pattern)
        })
    }

    /// Detaches the report from the input its plan borrows ids from.
    pub fn into_owned(self) -> DiscoveryReport<'static> {
        DiscoveryReport {
            concept: self.concept,
            plan: self.plan.into_owned(),
            outcomes: self.outcomes,
            patterns: self.patterns,
            cluster_patterns: self.cluster_patterns,
            requests: self.requests,
            usage: self.usage,
            warnings: self.warnings,
            quality_probe: self.quality_probe,
        }
    }

    /// Checks the report's accounting: one outcome per batched cluster of the plan, in plan
    /// order, naming its batch; a reason exactly for the failed ones; patterns exactly for
    /// the succeeded ones. With the plan's own states, every input cluster then has exactly one
    /// final state.
    ///
    /// # Errors
    /// [`InvariantViolation::Accounting`] saying what is off.
    pub fn check_accounting(&self) -> Result<(), InvariantViolation> {
        let fail = |m: String| Err(InvariantViolation::Accounting(m));
        let planned: Vec<(usize, &str)> = self
            .plan
            .batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| batch.clusters.iter().map(move |id| (b, id.as_ref())))
            .collect();
        if planned.len() != self.outcomes.len() {
            return fail(format!(
                "{} batched clusters but {} outcomes",
                planned.len(),
                self.outcomes.len()
            ));
        }
        let with_patterns: BTreeSet<&str> = self
            .cluster_patterns
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        for ((batch, id), o) in planned.into_iter().zip(&self.outcomes) {
            if o.id != id || o.batch != batch {
                return fail(format!(
                    "outcome {:?} (batch {}) where the plan has {id:?} (batch {batch})",
                    o.id, o.batch
                ));
            }
            let succeeded = o.status == OutcomeStatus::Succeeded;
            if succeeded == o.reason.is_some() {
                return fail(format!(
                    "outcome {id:?} is {:?} with reason {:?}",
                    o.status, o.reason
                ));
            }
            if succeeded != with_patterns.contains(id) {
                return fail(format!(
                    "outcome {id:?} is {:?} but its patterns disagree",
                    o.status
                ));
            }
        }
        if with_patterns.len() != self.outcome_counts().0 {
            return fail("patterns listed for a cluster that is not a succeeded outcome".into());
        }
        Ok(())
    }

    /// Succeeded and failed batched clusters.
    pub fn outcome_counts(&self) -> (usize, usize) {
        let ok = self
            .outcomes
            .iter()
            .filter(|o| o.status == OutcomeStatus::Succeeded)
            .count();
        (ok, self.outcomes.len() - ok)
    }
}

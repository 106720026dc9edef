//! The planner: [`Batcher`] turns clusters into a [`BatchPlan`] — scoring, filtering, ordering,
//! strategy selection, token-bounded packing under a call budget, rebalancing — and
//! [`BatchPlan::check`] proves the plan's invariants.
//!
//! Planning is synchronous, pure and runtime-free, and borrows its input.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{BatchingConfig, OverBudget};
use crate::error::Error;
use crate::model::{Cluster, Rejection};
use crate::quality::{QualityScorer, Scored, SpecQualityScorer};
use crate::strategy::{SpecStrategySelector, Strategy, StrategySelector};
use crate::tokens::{SpecTokenEstimator, TokenEstimator};

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
pub struct Batcher<Q = SpecQualityScorer, T = SpecTokenEstimator, S = SpecStrategySelector> {
    config: BatchingConfig,
    scorer: Q,
    estimator: T,
    selector: S,
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

impl<Q, T, S> Batcher<Q, T, S> {
    /// Replaces the quality scorer.
    pub fn with_scorer<Q2: QualityScorer>(self, scorer: Q2) -> Batcher<Q2, T, S> {
        Batcher {
            config: self.config,
            scorer,
            estimator: self.estimator,
            selector: self.selector,
        }
    }

    /// Replaces the token estimator.
    pub fn with_estimator<T2: TokenEstimator>(self, estimator: T2) -> Batcher<Q, T2, S> {
        Batcher {
            config: self.config,
            scorer: self.scorer,
            estimator,
            selector: self.selector,
        }
    }

    /// Replaces the strategy selector.
    pub fn with_selector<S2: StrategySelector>(self, selector: S2) -> Batcher<Q, T, S2> {
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
    pub fn scorer(&self) -> &Q {
        &self.scorer
    }
    /// The token estimator.
    pub fn estimator(&self) -> &T {
        &self.estimator
    }
    /// The strategy selector.
    pub fn selector(&self) -> &S {
        &self.selector
    }
}

impl<Q: QualityScorer, T: TokenEstimator, S: StrategySelector> Batcher<Q, T, S> {
    /// Plans `clusters` into batches. Every input cluster appears in the plan's `clusters`, in
    /// input order, with exactly one state.
    ///
    /// # Errors
    /// [`Error::InvalidStrategy`] when the selector returns a strategy that fails
    /// [`Strategy::validate`]. Invalid clusters are not errors: they are `rejected` entries.
    pub fn plan<'a>(&self, clusters: &'a [Cluster]) -> Result<BatchPlan<'a>, Error> {
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
                    entry.state = ClusterState::Rejected {
                        reason: Cow::Owned(rejection.to_string()),
                    };
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
        strategy.validate().map_err(Error::InvalidStrategy)?;

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
                what: "quality",
                value: quality,
            });
        }
        let priority = self.scorer.priority(cluster, quality);
        if !priority.is_finite() {
            return Err(Rejection::ScorerOutput {
                what: "priority",
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
pub const BELOW_THRESHOLD: &str = "quality is below quality_threshold";
/// The reason given for every `deferred` cluster.
pub const OVER_BUDGET: &str =
    "over the call budget: all max_total_calls calls go to higher-priority clusters";

/// Orders `candidates` by priority, highest first; ties keep input order, as the design's stable
/// `Array.prototype.sort` does.
///
/// The key maps a finite priority to an integer with the same order (`-0.0` counts as `0.0`, as
/// in JavaScript) and the input index breaks ties, so keys are unique and the unstable sort
/// gives exactly the stable order, without its scratch buffer.
fn sort_by_priority(candidates: &mut [Scored<'_>]) {
    fn descending_key(priority: f64) -> u64 {
        let bits = (priority + 0.0).to_bits();
        let ascending = if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        };
        !ascending
    }
    candidates.sort_unstable_by_key(|c| (descending_key(c.priority), c.index));
}

/// [`first_occurrences`]' mark for an empty or blank id.
const EMPTY_ID: usize = usize::MAX;

/// For each cluster, the input index of the first cluster with its id (its own index when it is
/// the first), or [`EMPTY_ID`].
///
/// A pass of its own: reading each id is a cache miss the floor pass never pays, and a tight
/// loop lets the CPU overlap those misses.
fn first_occurrences(clusters: &[Cluster]) -> Vec<usize> {
    let mut first_seen: IdMap<'_> =
        HashMap::with_capacity_and_hasher(clusters.len(), foldhash::fast::RandomState::default());
    clusters
        .iter()
        .enumerate()
        .map(|(index, cluster)| {
            // Touch an id a few clusters ahead so its cache miss overlaps this one's work.
            std::hint::black_box(
                clusters
                    .get(index + 8)
                    .and_then(|c| c.id.as_bytes().first().copied()),
            );
            if crate::model::is_blank(&cluster.id) {
                EMPTY_ID
            } else {
                *first_seen.entry(cluster.id.as_str()).or_insert(index)
            }
        })
        .collect()
}

/// First input index of each id. foldhash: several times faster than `SipHash` on short ids, and
/// seeded per process, so crafted ids cannot force collisions; the plan never depends on the
/// map's iteration order.
type IdMap<'a> = HashMap<&'a str, usize, foldhash::fast::RandomState>;

/// A contiguous run of candidates (in priority order): one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn len(self) -> usize {
        self.end - self.start
    }
}

/// Packs candidates, given their token estimates in priority order, into contiguous batches.
struct Packer<'a> {
    tokens: &'a [u32],
    prefix: Vec<u64>,
    /// Tokens every request carries besides its clusters.
    overhead: u32,
    config: &'a BatchingConfig,
}

impl<'a> Packer<'a> {
    fn new(tokens: &'a [u32], overhead: u32, config: &'a BatchingConfig) -> Self {
        let mut prefix = Vec::with_capacity(tokens.len() + 1);
        let mut total = 0u64;
        prefix.push(0);
        for &t in tokens {
            total += u64::from(t);
            prefix.push(total);
        }
        Self {
            tokens,
            prefix,
            overhead,
            config,
        }
    }

    /// The token target left for clusters once the request's own overhead is paid.
    fn target(&self) -> u64 {
        self.config
            .target_tokens_per_batch()
            .saturating_sub(u64::from(self.overhead))
    }

    fn sum(&self, span: Span) -> u64 {
        self.prefix[span.end] - self.prefix[span.start]
    }

    /// The whole packing. First the design's algorithm as written (without its budget break);
    /// when its result satisfies every invariant, that is the plan. Otherwise the repaired
    /// algorithm: greedy fill at the strategy's batch size (clamped into the config's bounds)
    /// with small batches merged or topped up, the call budget, then the rebalance. Returns the
    /// batches; candidates after the last one are deferred.
    fn pack(&self, strategy_batch_size: Option<usize>) -> Vec<Span> {
        if let Some(spans) = self.as_designed(strategy_batch_size) {
            return spans;
        }
        let (min, max) = (self.config.min_batch_size(), self.config.max_batch_size());
        let calls = self.config.max_total_calls();
        let cap = strategy_batch_size.unwrap_or(max).clamp(min, max);
        let mut spans = self.greedy(cap, usize::MAX);
        if spans.len() > calls {
            let grow = self.config.over_budget() == OverBudget::GrowBatches && cap < max;
            let widest = if grow {
                self.greedy(max, usize::MAX)
            } else {
                Vec::new()
            };
            spans = if grow && widest.len() <= calls {
                // The smallest batch size that fits the budget: batches grow only as much as
                // needed. `hi` always fits, `lo` never does.
                let (mut lo, mut hi, mut best) = (cap, max, widest);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    let candidate = self.greedy(mid, usize::MAX);
                    if candidate.len() <= calls {
                        hi = mid;
                        best = candidate;
                    } else {
                        lo = mid;
                    }
                }
                best
            } else {
                // Fill the budget's batches, highest priority first; the rest is deferred.
                self.greedy(if grow { max } else { cap }, calls)
            };
        }
        self.rebalance(&spans).unwrap_or(spans)
    }

    /// The design's `createBatchesWithStrategy` and `optimizeBatches` exactly as written, but
    /// for the budget break; `None` unless the result keeps every candidate (the design drops a
    /// small first group), fits the budget and passes [`check_batch_shapes`].
    fn as_designed(&self, strategy_batch_size: Option<usize>) -> Option<Vec<Span>> {
        let min = self.config.min_batch_size();
        let target = self.target();
        let cap = strategy_batch_size.unwrap_or(self.config.max_batch_size());
        let n = self.tokens.len();
        let mut out: Vec<Span> = Vec::new();
        let (mut start, mut current) = (0, 0u64);
        for (i, &t) in self.tokens.iter().enumerate() {
            let len = i - start;
            if len > 0 && (current + u64::from(t) > target || len >= cap) {
                if len >= min {
                    out.push(Span { start, end: i });
                } else {
                    out.last_mut()?.end = i;
                }
                start = i;
                current = 0;
            }
            current += u64::from(t);
        }
        if start < n {
            match out.last_mut() {
                Some(last) if n - start < min => last.end = n,
                _ => out.push(Span { start, end: n }),
            }
        }
        let spans = self.rebalance(&out).unwrap_or(out);
        let members: Vec<&[u32]> = spans.iter().map(|s| &self.tokens[s.start..s.end]).collect();
        (spans.len() <= self.config.max_total_calls()
            && check_batch_shapes(&members, self.overhead, self.config).is_ok())
        .then_some(spans)
    }

    /// The repaired `createBatchesWithStrategy` loop: small groups handled by [`Packer::close`],
    /// and a stop once `limit` batches are closed (the rest is then deferred, and nothing
    /// deferred takes clusters from a batch that is kept).
    fn greedy(&self, cap: usize, limit: usize) -> Vec<Span> {
        let target = self.target();
        let mut out = Vec::new();
        let mut start = 0;
        let mut current = 0u64;
        for (i, &t) in self.tokens.iter().enumerate() {
            let len = i - start;
            if len > 0 && (current + u64::from(t) > target || len >= cap) {
                self.close(&mut out, Span { start, end: i });
                if out.len() >= limit {
                    return out;
                }
                start = i;
                current = 0;
            }
            current += u64::from(t);
        }
        if start < self.tokens.len() {
            self.close(
                &mut out,
                Span {
                    start,
                    end: self.tokens.len(),
                },
            );
        }
        out
    }

    /// Adds a finished group. A group below the minimum is merged into the previous batch when
    /// the result stays within `max_batch_size` and the token target (the design merges
    /// unconditionally); otherwise it takes the previous batch's last clusters, when that lets
    /// both keep the minimum within the target; otherwise it stays small (the design drops a
    /// small first group; we never drop).
    fn close(&self, out: &mut Vec<Span>, group: Span) {
        let (min, max) = (self.config.min_batch_size(), self.config.max_batch_size());
        let target = self.target();
        let Some(prev) = out.last_mut() else {
            out.push(group);
            return;
        };
        if group.len() >= min {
            out.push(group);
            return;
        }
        let merged = Span {
            start: prev.start,
            end: group.end,
        };
        if merged.len() <= max && self.sum(merged) <= target {
            *prev = merged;
            return;
        }
        let need = min - group.len();
        let grown = Span {
            start: group.start - need.min(group.start),
            end: group.end,
        };
        if prev.len() >= min + need && self.sum(grown) <= target {
            prev.end = grown.start;
            out.push(grown);
        } else {
            out.push(group);
        }
    }

    /// The design's `optimizeBatches` trigger, with `rebalanceBatches` defined: the same
    /// clusters, in order, in as many contiguous batches whose sizes differ by at most one
    /// (larger ones first); `None` to keep the batches as they are.
    fn rebalance(&self, spans: &[Span]) -> Option<Vec<Span>> {
        let (first, last) = (spans.first()?, spans.last()?);
        let count = spans.len();
        if count <= 2 {
            return None;
        }
        let total = last.end - first.start;
        #[allow(clippy::cast_precision_loss)] // batch sizes are far below 2^52
        let (avg, len_of) = (total as f64 / count as f64, |s: &Span| s.len() as f64);
        if !spans
            .iter()
            .any(|s| len_of(s) > avg * 1.5 || len_of(s) < avg * 0.5)
        {
            return None;
        }
        let (base, extra) = (total / count, total % count);
        let mut start = first.start;
        let balanced: Vec<Span> = (0..count)
            .map(|i| {
                let span = Span {
                    start,
                    end: start + base + usize::from(i < extra),
                };
                start = span.end;
                span
            })
            .collect();
        let members: Vec<&[u32]> = balanced
            .iter()
            .map(|s| &self.tokens[s.start..s.end])
            .collect();
        check_batch_shapes(&members, self.overhead, self.config).ok()?;
        // Evenness is not worth more batches below the minimum: [3, 3, 1] with a minimum and
        // maximum of 3 stays, rather than becoming [3, 2, 2].
        let small = |spans: &[Span]| {
            spans
                .iter()
                .filter(|s| s.len() < self.config.min_batch_size())
                .count()
        };
        (small(&balanced) <= small(spans)).then_some(balanced)
    }
}

/// Checks the size and token invariants of batches given as the token estimates of their
/// members, in plan order; each batch also carries `overhead` tokens (see
/// [`TokenEstimator::request_overhead`]).
///
/// - sizes: no batch is empty or above `max_batch_size`. A batch is below `min_batch_size` only
///   when it cannot reach the minimum with a neighbouring batch: merging with the previous or
///   next batch would exceed `max_batch_size` or the token target, and taking the missing
///   clusters from the end of the previous batch or the start of the next one would exceed the
///   target or leave that neighbour below the minimum. (So a lone batch may be small: fewer
///   candidates than the minimum, or a budget of one call.)
/// - tokens: no batch above `target_tokens_per_batch`, except a batch of one cluster whose own
///   estimate exceeds it.
///
/// # Errors
/// The first violation found.
pub fn check_batch_shapes<B: AsRef<[u32]>>(
    batches: &[B],
    overhead: u32,
    config: &BatchingConfig,
) -> Result<(), InvariantViolation> {
    let (min, max) = (config.min_batch_size(), config.max_batch_size());
    // Sums below are of the clusters only; the overhead is paid once per batch.
    let target = config
        .target_tokens_per_batch()
        .saturating_sub(u64::from(overhead));
    let sums: Vec<u64> = batches
        .iter()
        .map(|b| b.as_ref().iter().map(|&t| u64::from(t)).sum())
        .collect();
    let len = |i: usize| batches[i].as_ref().len();
    for i in 0..batches.len() {
        let (n, sum) = (len(i), sums[i]);
        if n == 0 {
            return Err(InvariantViolation::Size(format!("batch {i} is empty")));
        }
        if n > max {
            return Err(InvariantViolation::Size(format!(
                "batch {i} has {n} clusters, above max_batch_size {max}"
            )));
        }
        if sum > target && n > 1 {
            return Err(InvariantViolation::Tokens(format!(
                "batch {i} has {sum} estimated tokens in {n} clusters, above the target {target}"
            )));
        }
        if n >= min {
            continue;
        }
        let need = min - n;
        let mut neighbours = Vec::with_capacity(2);
        if i > 0 {
            let prev = batches[i - 1].as_ref();
            let tail = prev.len().saturating_sub(need);
            neighbours.push(("previous", prev, &prev[tail..], sums[i - 1]));
        }
        if let Some(next) = batches.get(i + 1) {
            let next = next.as_ref();
            neighbours.push(("next", next, &next[..need.min(next.len())], sums[i + 1]));
        }
        for (which, other, lend, other_sum) in neighbours {
            let lend_sum: u64 = lend.iter().map(|&t| u64::from(t)).sum();
            let can_merge = n + other.len() <= max && sum + other_sum <= target;
            let can_lend = other.len() >= min + need && sum + lend_sum <= target;
            if can_merge || can_lend {
                return Err(InvariantViolation::Size(format!(
                    "batch {i} has {n} clusters, below min_batch_size {min}, but could {} the \
                     {which} batch",
                    if can_merge {
                        "merge with"
                    } else {
                        "take clusters from"
                    }
                )));
            }
        }
    }
    Ok(())
}

/// The result of planning: the strategy, the batches, and every input cluster's state.
///
/// A plan borrows its ids from the input clusters (planning allocates nothing per cluster);
/// [`BatchPlan::into_owned`] detaches it. A plan read from JSON owns its data. Its JSON form is
/// a public contract (see the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchPlan<'a> {
    /// The strategy the batches are planned (and will be prompted) with.
    pub strategy: Strategy,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ClusterState<'a> {
    /// In `batches[batch]`.
    Batched {
        /// Index into [`BatchPlan::batches`].
        batch: usize,
    },
    /// Quality below `quality_threshold`: not analysed.
    BelowThreshold {
        /// [`BELOW_THRESHOLD`].
        reason: Cow<'a, str>,
    },
    /// Passed the threshold but did not fit the call budget; the lowest priorities go first.
    Deferred {
        /// [`OVER_BUDGET`].
        reason: Cow<'a, str>,
    },
    /// Invalid input.
    Rejected {
        /// What is wrong and where (the [`Rejection`]'s text).
        reason: Cow<'a, str>,
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

impl BatchPlan<'_> {
    /// Detaches the plan from the input it borrows its ids from.
    pub fn into_owned(self) -> BatchPlan<'static> {
        let owned = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        BatchPlan {
            strategy: self.strategy,
            request_overhead_tokens: self.request_overhead_tokens,
            batches: self
                .batches
                .into_iter()
                .map(|b| Batch {
                    clusters: b.clusters.into_iter().map(owned).collect(),
                    estimated_tokens: b.estimated_tokens,
                    oversized: b.oversized,
                })
                .collect(),
            clusters: self
                .clusters
                .into_iter()
                .map(|e| ClusterEntry {
                    id: owned(e.id),
                    state: match e.state {
                        ClusterState::Batched { batch } => ClusterState::Batched { batch },
                        ClusterState::BelowThreshold { reason } => ClusterState::BelowThreshold {
                            reason: owned(reason),
                        },
                        ClusterState::Deferred { reason } => ClusterState::Deferred {
                            reason: owned(reason),
                        },
                        ClusterState::Rejected { reason } => ClusterState::Rejected {
                            reason: owned(reason),
                        },
                    },
                    quality: e.quality,
                    priority: e.priority,
                    estimated_tokens: e.estimated_tokens,
                })
                .collect(),
        }
    }

    /// How many clusters are in each state.
    pub fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for entry in &self.clusters {
            match entry.state {
                ClusterState::Batched { .. } => counts.batched += 1,
                ClusterState::BelowThreshold { .. } => counts.below_threshold += 1,
                ClusterState::Deferred { .. } => counts.deferred += 1,
                ClusterState::Rejected { .. } => counts.rejected += 1,
            }
        }
        counts
    }

    /// Checks every invariant a plan made with `config` must satisfy:
    ///
    /// - accounting: ids of non-rejected clusters are unique; each batched cluster sits in
    ///   exactly one batch exactly once, the one its entry names; batches hold nothing else;
    /// - sizes and tokens: as [`check_batch_shapes`], and each batch's `estimated_tokens` and
    ///   `oversized` agree with its clusters;
    /// - budget: at most `max_total_calls` batches;
    /// - order: batches read in order give non-increasing priority, and no deferred cluster
    ///   outranks a batched one;
    /// - threshold: batched and deferred clusters have quality ≥ threshold, below-threshold ones
    ///   below it.
    ///
    /// Determinism (same input and config, same plan) is a property of the planner, checked by
    /// [`testing`](crate#features) helpers.
    ///
    /// # Errors
    /// The first violation found.
    pub fn check(&self, config: &BatchingConfig) -> Result<(), InvariantViolation> {
        let by_id = self.check_accounting()?;
        if self.batches.len() > config.max_total_calls() {
            return Err(InvariantViolation::Budget {
                batches: self.batches.len(),
                max: config.max_total_calls(),
            });
        }
        let mut members: Vec<Vec<u32>> = Vec::with_capacity(self.batches.len());
        let mut batched_priorities = Vec::new();
        for (b, batch) in self.batches.iter().enumerate() {
            let mut tokens = Vec::with_capacity(batch.clusters.len());
            for id in &batch.clusters {
                let entry = by_id[id.as_ref()];
                let (Some(t), Some(p)) = (entry.estimated_tokens, entry.priority) else {
                    return Err(InvariantViolation::Accounting(format!(
                        "batched cluster {id:?} has no token estimate or priority"
                    )));
                };
                tokens.push(t);
                batched_priorities.push(p);
            }
            let sum: u64 = u64::from(self.request_overhead_tokens)
                + tokens.iter().map(|&t| u64::from(t)).sum::<u64>();
            if sum != batch.estimated_tokens {
                return Err(InvariantViolation::Tokens(format!(
                    "batch {b} says {} estimated tokens, overhead and clusters sum to {sum}",
                    batch.estimated_tokens
                )));
            }
            let oversized = tokens.len() == 1 && sum > config.target_tokens_per_batch();
            if oversized != batch.oversized {
                return Err(InvariantViolation::Tokens(format!(
                    "batch {b} is flagged oversized = {} but should be {oversized}",
                    batch.oversized
                )));
            }
            members.push(tokens);
        }
        check_batch_shapes(&members, self.request_overhead_tokens, config)?;
        if let Some(w) = batched_priorities.windows(2).position(|w| w[0] < w[1]) {
            return Err(InvariantViolation::Order(format!(
                "priority rises from {} to {} at batched cluster {} in plan order",
                batched_priorities[w],
                batched_priorities[w + 1],
                w + 1
            )));
        }
        self.check_threshold_and_deferred(config, &batched_priorities)
    }

    fn check_accounting(&self) -> Result<HashMap<&str, &ClusterEntry<'_>>, InvariantViolation> {
        let mut by_id: HashMap<&str, &ClusterEntry<'_>> = HashMap::new();
        for entry in &self.clusters {
            if matches!(entry.state, ClusterState::Rejected { .. }) {
                continue;
            }
            if by_id.insert(entry.id.as_ref(), entry).is_some() {
                return Err(InvariantViolation::Accounting(format!(
                    "id {:?} appears twice outside rejected clusters",
                    entry.id
                )));
            }
        }
        let mut placed: HashSet<&str> = HashSet::new();
        for (b, batch) in self.batches.iter().enumerate() {
            for id in &batch.clusters {
                let Some(entry) = by_id.get(id.as_ref()) else {
                    return Err(InvariantViolation::Accounting(format!(
                        "batch {b} holds {id:?}, which is not a valid input cluster"
                    )));
                };
                if entry.state != (ClusterState::Batched { batch: b }) {
                    return Err(InvariantViolation::Accounting(format!(
                        "batch {b} holds {id:?}, whose state is {}",
                        entry.state.name()
                    )));
                }
                if !placed.insert(id.as_ref()) {
                    return Err(InvariantViolation::Accounting(format!(
                        "{id:?} sits in the batches more than once"
                    )));
                }
            }
        }
        if let Some(lost) = self.clusters.iter().find(|e| {
            matches!(e.state, ClusterState::Batched { .. }) && !placed.contains(e.id.as_ref())
        }) {
            return Err(InvariantViolation::Accounting(format!(
                "{:?} is batched but in no batch",
                lost.id
            )));
        }
        Ok(by_id)
    }

    fn check_threshold_and_deferred(
        &self,
        config: &BatchingConfig,
        batched_priorities: &[f64],
    ) -> Result<(), InvariantViolation> {
        let threshold = config.quality_threshold();
        let lowest_batched = batched_priorities.last().copied();
        for entry in &self.clusters {
            let passes = match entry.state {
                ClusterState::Rejected { .. } => continue,
                ClusterState::BelowThreshold { .. } => false,
                ClusterState::Batched { .. } | ClusterState::Deferred { .. } => true,
            };
            let Some(quality) = entry.quality else {
                return Err(InvariantViolation::Threshold(format!(
                    "{:?} is {} but has no quality",
                    entry.id,
                    entry.state.name()
                )));
            };
            if passes != (quality >= threshold) {
                return Err(InvariantViolation::Threshold(format!(
                    "{:?} has quality {quality} and is {} with threshold {threshold}",
                    entry.id,
                    entry.state.name()
                )));
            }
            if let (ClusterState::Deferred { .. }, Some(lowest), Some(p)) =
                (&entry.state, lowest_batched, entry.priority)
            {
                if p > lowest {
                    return Err(InvariantViolation::Order(format!(
                        "deferred {:?} has priority {p}, above batched priority {lowest}",
                        entry.id
                    )));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for BatchPlan<'_> {
    /// The design's console summary, then one line per batch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.counts();
        #[allow(clippy::cast_precision_loss)] // counts are far below 2^52
        let avg = if self.batches.is_empty() {
            0.0
        } else {
            counts.batched as f64 / self.batches.len() as f64
        };
        writeln!(f, "📊 Dynamic batching strategy:")?;
        writeln!(f, "    - Total clusters: {}", self.clusters.len())?;
        writeln!(f, "    - Quality clusters: {}", counts.batched)?;
        writeln!(f, "    - Batches created: {}", self.batches.len())?;
        writeln!(f, "    - Strategy: {}", self.strategy.kind)?;
        writeln!(f, "    - Avg clusters/batch: {avg:.1}")?;
        writeln!(
            f,
            "    - Not batched: {} below threshold, {} deferred by budget, {} rejected",
            counts.below_threshold, counts.deferred, counts.rejected
        )?;
        for (i, batch) in self.batches.iter().enumerate() {
            writeln!(
                f,
                "  batch {}: {} clusters, ~{} tokens{}: {}",
                i + 1,
                batch.clusters.len(),
                batch.estimated_tokens,
                if batch.oversized { " (oversized)" } else { "" },
                batch.clusters.join(", ")
            )?;
        }
        Ok(())
    }
}

//! The plan's invariants: [`check_batch_shapes`] and [`BatchPlan::check`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::config::BatchingConfig;

use super::types::{Batch, BatchPlan, ClusterEntry, ClusterState, InvariantViolation, StateCounts};

/// Checks the size and token invariants of batches given as the token estimates of their
/// members, in plan order; each batch also carries `overhead` tokens (see
/// [`TokenEstimator::request_overhead`](crate::TokenEstimator::request_overhead)).
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
pub(crate) fn check_batch_shapes<B: AsRef<[u32]>>(
    batches: &[B],
    overhead: u32,
    config: &BatchingConfig,
) -> Result<(), InvariantViolation> {
    let (min, max) = (config.min_batch_size(), config.max_batch_size());
    // Sums below are of the clusters only; the overhead is paid once per batch.
    let target = config.cluster_token_target(overhead);
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
                        ClusterState::Rejected { rejection } => {
                            ClusterState::Rejected { rejection }
                        }
                    },
                    quality: e.quality,
                    priority: e.priority,
                    estimated_tokens: e.estimated_tokens,
                })
                .collect(),
        }
    }

    /// The entry of the cluster `id` (its state, quality, priority), if the input had it. A
    /// scan: for many lookups, index `clusters` by id once.
    ///
    /// ```
    /// use dynbatch::{Batcher, Cluster, Video};
    /// let clusters = vec![Cluster::new("c1", vec![Video::new("I Tried Chess for 30 Days", 4.0)])];
    /// let plan = Batcher::default().plan(&clusters)?;
    /// assert!(plan.entry("c1").is_some());
    /// assert!(plan.entry("c2").is_none());
    /// # Ok::<(), dynbatch::Error>(())
    /// ```
    pub fn entry(&self, id: &str) -> Option<&ClusterEntry<'_>> {
        self.clusters.iter().find(|c| c.id == id)
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
    /// - sizes: no batch is empty or above `max_batch_size`; a batch is below `min_batch_size`
    ///   only when it cannot reach the minimum with a neighbour (merging with the previous or
    ///   next batch, or taking clusters from its end or start, would break a size, the token
    ///   target, or that neighbour's minimum);
    /// - tokens: no batch above `target_tokens_per_batch`, except one cluster whose own estimate
    ///   exceeds it; each batch's `estimated_tokens` and `oversized` agree with its clusters;
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
                let Some(&entry) = by_id.get(id.as_ref()) else {
                    return Err(InvariantViolation::Accounting(format!(
                        "batch {b} holds {id:?}, which has no entry"
                    )));
                };
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

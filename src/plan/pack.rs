//! Packing candidates into token-bounded batches under the call budget, and rebalancing.

use crate::config::{BatchingConfig, OverBudget};

use super::check::check_batch_shapes;

/// A contiguous run of candidates (in priority order): one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Span {
    pub(super) fn len(self) -> usize {
        self.end - self.start
    }
}

/// Packs candidates, given their token estimates in priority order, into contiguous batches.
pub(super) struct Packer<'a> {
    tokens: &'a [u32],
    prefix: Vec<u64>,
    /// Tokens every request carries besides its clusters.
    overhead: u32,
    config: &'a BatchingConfig,
}

impl<'a> Packer<'a> {
    pub(super) fn new(tokens: &'a [u32], overhead: u32, config: &'a BatchingConfig) -> Self {
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
    pub(super) fn target(&self) -> u64 {
        self.config.cluster_token_target(self.overhead)
    }

    pub(super) fn sum(&self, span: Span) -> u64 {
        self.prefix[span.end] - self.prefix[span.start]
    }

    /// The whole packing. First the design's algorithm as written (without its budget break);
    /// when its result satisfies every invariant, that is the plan. Otherwise the repaired
    /// algorithm: greedy fill at the strategy's batch size (clamped into the config's bounds)
    /// with small batches merged or topped up, the call budget, then the rebalance. Returns the
    /// batches; candidates after the last one are deferred.
    pub(super) fn pack(&self, strategy_batch_size: Option<usize>) -> Vec<Span> {
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
    pub(super) fn as_designed(&self, strategy_batch_size: Option<usize>) -> Option<Vec<Span>> {
        let min = self.config.min_batch_size();
        let cap = strategy_batch_size.unwrap_or(self.config.max_batch_size());
        let n = self.tokens.len();
        let mut out: Vec<Span> = Vec::new();
        for group in self.fill(cap) {
            if group.len() >= min {
                out.push(group);
            } else if let Some(last) = out.last_mut() {
                last.end = group.end;
            } else if group.end < n {
                // The design drops a small first group: not a plan we can keep.
                return None;
            } else {
                out.push(group);
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
    pub(super) fn greedy(&self, cap: usize, limit: usize) -> Vec<Span> {
        let mut out = Vec::new();
        for group in self.fill(cap) {
            self.close(&mut out, group);
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    /// The greedy fill both packings share (the design's `createBatchesWithStrategy` loop):
    /// consecutive groups of at most `cap` clusters, each ended before the cluster that would
    /// take it over the token target (a cluster alone may exceed it).
    fn fill(&self, cap: usize) -> impl Iterator<Item = Span> + '_ {
        let target = self.target();
        let n = self.tokens.len();
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= n {
                return None;
            }
            let mut current = 0u64;
            let mut end = start;
            for &t in &self.tokens[start..] {
                let len = end - start;
                if len > 0 && (current + u64::from(t) > target || len >= cap) {
                    break;
                }
                current += u64::from(t);
                end += 1;
            }
            let group = Span { start, end };
            start = end;
            Some(group)
        })
    }

    /// Adds a finished group. A group below the minimum is merged into the previous batch when
    /// the result stays within `max_batch_size` and the token target (the design merges
    /// unconditionally); otherwise it takes the previous batch's last clusters, when that lets
    /// both keep the minimum within the target; otherwise it stays small (the design drops a
    /// small first group; we never drop).
    pub(super) fn close(&self, out: &mut Vec<Span>, group: Span) {
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
    pub(super) fn rebalance(&self, spans: &[Span]) -> Option<Vec<Span>> {
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

//! [`TokenEstimator`]: how many prompt tokens one cluster costs, and the design's
//! [`SpecTokenEstimator`].

use std::sync::Arc;

use crate::model::Cluster;
use crate::strategy::Strategy;

/// Estimates the prompt tokens one cluster adds to a batch, given the run's strategy (a
/// tokenizer-backed estimator needs its videos per cluster; the design's ignores it).
///
/// The planner sums these per batch and compares the sum with `target_tokens_per_batch`.
pub trait TokenEstimator: Send + Sync {
    /// Estimated prompt tokens of `cluster` under `strategy`.
    fn estimate(&self, cluster: &Cluster, strategy: &Strategy) -> u32;

    /// Tokens every request carries whatever its clusters (system prompt, the user prompt's
    /// header and closing lines, the chat format's overhead). A batch's estimate is this plus
    /// its clusters' estimates. Defaults to 0, as in the design, whose per-cluster figure
    /// includes its share of the instructions.
    fn request_overhead(&self, strategy: &Strategy) -> u32 {
        let _ = strategy;
        0
    }
}

/// The design's `estimateTokensForCluster`: `200 + 25 × min(size, 8)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecTokenEstimator;

impl SpecTokenEstimator {
    /// Tokens for the per-cluster instructions.
    pub const BASE_TOKENS: u32 = 200;
    /// Tokens per video title.
    pub const TOKENS_PER_VIDEO: u32 = 25;
    /// Most videos counted.
    pub const MAX_VIDEOS: u32 = 8;
}

impl TokenEstimator for SpecTokenEstimator {
    fn estimate(&self, cluster: &Cluster, _strategy: &Strategy) -> u32 {
        Self::BASE_TOKENS + Self::TOKENS_PER_VIDEO * cluster.size.min(Self::MAX_VIDEOS)
    }
}

impl<T: TokenEstimator + ?Sized> TokenEstimator for &T {
    fn estimate(&self, cluster: &Cluster, strategy: &Strategy) -> u32 {
        (**self).estimate(cluster, strategy)
    }
    fn request_overhead(&self, strategy: &Strategy) -> u32 {
        (**self).request_overhead(strategy)
    }
}

impl<T: TokenEstimator + ?Sized> TokenEstimator for Box<T> {
    fn estimate(&self, cluster: &Cluster, strategy: &Strategy) -> u32 {
        (**self).estimate(cluster, strategy)
    }
    fn request_overhead(&self, strategy: &Strategy) -> u32 {
        (**self).request_overhead(strategy)
    }
}

impl<T: TokenEstimator + ?Sized> TokenEstimator for Arc<T> {
    fn estimate(&self, cluster: &Cluster, strategy: &Strategy) -> u32 {
        (**self).estimate(cluster, strategy)
    }
    fn request_overhead(&self, strategy: &Strategy) -> u32 {
        (**self).request_overhead(strategy)
    }
}

const _: Option<&dyn TokenEstimator> = None;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Video;

    #[test]
    fn design_formula() {
        let mut c = Cluster::new("c", vec![Video::new("t", 1.0)]);
        let s = Strategy::balanced();
        assert_eq!(SpecTokenEstimator.estimate(&c, &s), 225);
        c.size = 8;
        assert_eq!(SpecTokenEstimator.estimate(&c, &s), 400);
        c.size = u32::MAX;
        assert_eq!(SpecTokenEstimator.estimate(&c, &s), 400);
        let boxed: Box<dyn TokenEstimator> = Box::new(SpecTokenEstimator);
        assert_eq!(boxed.estimate(&c, &s), 400);
    }
}

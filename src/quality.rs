//! [`QualityScorer`]: how good and how urgent a cluster is, and the design's
//! [`SpecQualityScorer`] (`calculateClusterQuality` and `calculatePriority`).

use std::sync::Arc;

use crate::model::{Cluster, mean};

/// A valid cluster with its scores, as strategy selectors see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored<'a> {
    /// Position of the cluster in the planner's input.
    pub index: usize,
    /// The cluster.
    pub cluster: &'a Cluster,
    /// Its quality (`QualityScorer::quality`).
    pub quality: f64,
    /// Its priority (`QualityScorer::priority`).
    pub priority: f64,
}

/// Scores a valid cluster: its quality (compared with `quality_threshold`) and its priority
/// (the planning order, highest first).
///
/// The planner calls it only for clusters that passed [`Cluster::validate`]. A non-finite
/// return value rejects the cluster with a reason; it never panics the planner.
pub trait QualityScorer: Send + Sync {
    /// The cluster's quality; the design's scale is 0.0 to 1.0.
    fn quality(&self, cluster: &Cluster) -> f64;

    /// The cluster's priority given its quality. Defaults to the design's `calculatePriority`.
    fn priority(&self, cluster: &Cluster, quality: f64) -> f64 {
        spec_priority(cluster, quality)
    }
}

/// The four factors of the design's quality score, each in 0.0 to 1.0 for valid clusters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityFactors {
    /// `size / 10` up to 10 videos, 1.0 up to 30, then falling by 0.01 per video to 0.7.
    pub size: f64,
    /// `min(avg_performance / 5, 1)`.
    pub performance: f64,
    /// `min(thread_sources / 5, 1)`.
    pub diversity: f64,
    /// `1 - min(stddev / mean, 0.5)` of the videos' ratios (population standard deviation);
    /// 0.5 when the mean is 0, where the ratio is undefined.
    pub consistency: f64,
}

impl QualityFactors {
    /// The design's factors of a cluster.
    pub fn of(cluster: &Cluster) -> Self {
        let size = f64::from(cluster.size);
        let size_factor = if size <= 10.0 {
            size / 10.0
        } else if size <= 30.0 {
            1.0
        } else {
            (1.0 - (size - 30.0) / 100.0).max(0.7)
        };
        #[allow(clippy::cast_precision_loss)] // source counts are far below 2^52
        let sources = cluster.thread_sources.len() as f64;
        Self {
            size: size_factor,
            performance: (cluster.avg_performance / 5.0).min(1.0),
            diversity: (sources / 5.0).min(1.0),
            consistency: consistency(cluster),
        }
    }

    /// The weighted sum `.25 size + .35 performance + .25 diversity + .15 consistency`.
    pub fn quality(&self) -> f64 {
        self.size * 0.25 + self.performance * 0.35 + self.diversity * 0.25 + self.consistency * 0.15
    }
}

fn consistency(cluster: &Cluster) -> f64 {
    let ratios = || cluster.videos.iter().map(|v| v.performance_ratio);
    let Some(avg) = mean(ratios()) else {
        return 0.5;
    };
    if avg <= 0.0 || !avg.is_finite() {
        return 0.5;
    }
    let Some(variance) = mean(ratios().map(|r| (r - avg) * (r - avg))) else {
        return 0.5;
    };
    let ratio = variance.sqrt() / avg;
    if ratio.is_nan() {
        return 0.5;
    }
    1.0 - ratio.min(0.5)
}

/// The design's `calculatePriority`: quality × 1.5 for WIDE × 1.3 when `avg_performance > 4`.
pub(crate) fn spec_priority(cluster: &Cluster, quality: f64) -> f64 {
    let wide = if cluster.is_wide { 1.5 } else { 1.0 };
    let boost = if cluster.avg_performance > 4.0 {
        1.3
    } else {
        1.0
    };
    quality * wide * boost
}

/// The design's `calculateClusterQuality` and `calculatePriority`, exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecQualityScorer;

impl QualityScorer for SpecQualityScorer {
    fn quality(&self, cluster: &Cluster) -> f64 {
        QualityFactors::of(cluster).quality()
    }
}

impl<T: QualityScorer + ?Sized> QualityScorer for &T {
    fn quality(&self, cluster: &Cluster) -> f64 {
        (**self).quality(cluster)
    }
    fn priority(&self, cluster: &Cluster, quality: f64) -> f64 {
        (**self).priority(cluster, quality)
    }
}

impl<T: QualityScorer + ?Sized> QualityScorer for Box<T> {
    fn quality(&self, cluster: &Cluster) -> f64 {
        (**self).quality(cluster)
    }
    fn priority(&self, cluster: &Cluster, quality: f64) -> f64 {
        (**self).priority(cluster, quality)
    }
}

impl<T: QualityScorer + ?Sized> QualityScorer for Arc<T> {
    fn quality(&self, cluster: &Cluster) -> f64 {
        (**self).quality(cluster)
    }
    fn priority(&self, cluster: &Cluster, quality: f64) -> f64 {
        (**self).priority(cluster, quality)
    }
}

const _: Option<&dyn QualityScorer> = None;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Video;

    fn cluster(size: u32, avg: f64, sources: usize, ratios: &[f64]) -> Cluster {
        let mut c = Cluster::new(
            "c",
            ratios.iter().map(|&r| Video::new("title", r)).collect(),
        );
        c.size = size;
        c.avg_performance = avg;
        c.thread_sources = (0..sources).map(|i| format!("s{i}")).collect();
        c
    }

    #[test]
    fn size_factor_follows_the_design() {
        let f = |size| QualityFactors::of(&cluster(size, 1.0, 0, &[1.0])).size;
        assert!((f(5) - 0.5).abs() < 1e-12);
        assert!((f(10) - 1.0).abs() < 1e-12);
        assert!((f(30) - 1.0).abs() < 1e-12);
        assert!((f(50) - 0.8).abs() < 1e-12);
        assert!((f(500) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_quality_and_priority() {
        // ratios 2 and 4: mean 3, population sd 1, sd/mean = 1/3 -> consistency 2/3.
        let mut c = cluster(20, 4.5, 3, &[2.0, 4.0]);
        let f = QualityFactors::of(&c);
        assert!((f.performance - 0.9).abs() < 1e-12);
        assert!((f.diversity - 0.6).abs() < 1e-12);
        assert!((f.consistency - 2.0 / 3.0).abs() < 1e-12);
        let q = 0.25 + 0.9 * 0.35 + 0.6 * 0.25 + (2.0 / 3.0) * 0.15;
        assert!((SpecQualityScorer.quality(&c) - q).abs() < 1e-12);
        assert!((SpecQualityScorer.priority(&c, q) - q * 1.3).abs() < 1e-12);
        c.is_wide = true;
        assert!((SpecQualityScorer.priority(&c, q) - q * 1.3 * 1.5).abs() < 1e-12);
    }

    #[test]
    fn consistency_is_capped_and_defined_for_zero_mean() {
        assert!(
            (QualityFactors::of(&cluster(3, 1.0, 0, &[0.0, 0.0])).consistency - 0.5).abs() < 1e-12
        );
        assert!(
            (QualityFactors::of(&cluster(3, 1.0, 0, &[0.1, 10.0])).consistency - 0.5).abs() < 1e-12
        );
        assert!(
            (QualityFactors::of(&cluster(3, 1.0, 0, &[2.0, 2.0])).consistency - 1.0).abs() < 1e-12
        );
    }
}

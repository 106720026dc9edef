//! [`StrategySettings`] (what a batch of clusters is analysed with), [`StrategySelector`] (which strategy
//! a run uses) and the design's [`SpecStrategySelector`].

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::quality::Scored;

/// The name of a strategy. The four known ones serialize as `"THOROUGH"`, `"ADAPTIVE"`,
/// `"EFFICIENT"` and `"BALANCED"`; a custom one as its own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[non_exhaustive]
pub enum StrategyKind {
    /// Few clusters: small batches, many videos, many patterns.
    Thorough,
    /// Many clusters of mixed quality: batch size driven by tokens.
    Adaptive,
    /// Many high-quality clusters: large batches, the obvious patterns only.
    Efficient,
    /// Everything else.
    Balanced,
    /// A strategy from a custom selector.
    Custom(String),
}

impl StrategyKind {
    /// The name as the prompt and the JSON show it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Thorough => "THOROUGH",
            Self::Adaptive => "ADAPTIVE",
            Self::Efficient => "EFFICIENT",
            Self::Balanced => "BALANCED",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<StrategyKind> for String {
    fn from(kind: StrategyKind) -> Self {
        match kind {
            StrategyKind::Custom(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl From<String> for StrategyKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "THOROUGH" => Self::Thorough,
            "ADAPTIVE" => Self::Adaptive,
            "EFFICIENT" => Self::Efficient,
            "BALANCED" => Self::Balanced,
            _ => Self::Custom(name),
        }
    }
}

/// How many patterns to ask for per cluster, inclusive. Serializes as `[min, max]`, displays as
/// `min-max` (the design's `"5-8"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[u32; 2]", into = "[u32; 2]")]
pub struct PatternRange {
    /// Fewest patterns per cluster.
    pub min: u32,
    /// Most patterns per cluster.
    pub max: u32,
}

impl From<[u32; 2]> for PatternRange {
    fn from([min, max]: [u32; 2]) -> Self {
        Self { min, max }
    }
}

impl From<PatternRange> for [u32; 2] {
    fn from(r: PatternRange) -> Self {
        [r.min, r.max]
    }
}

impl fmt::Display for PatternRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// Everything a batch is planned and prompted with: the design's `Strategy` record (named
/// `StrategySettings` here so that it does not shadow proptest's `Strategy` trait in test code).
///
/// The four design strategies have constructors; a custom selector builds its own with
/// [`StrategySettings::custom`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StrategySettings {
    /// The strategy's name.
    pub kind: StrategyKind,
    /// Clusters per batch; `None` is the design's `'dynamic'`: as many as `max_batch_size` and
    /// the token target allow.
    pub batch_size: Option<usize>,
    /// Titles shown per cluster in the prompt.
    pub videos_per_cluster: usize,
    /// Patterns asked for per cluster.
    pub patterns_per_cluster: PatternRange,
    /// Sampling temperature for the LLM call.
    pub temperature: f64,
    /// An extra closing line for the prompt, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
}

impl StrategySettings {
    /// THOROUGH: batch 3, 10 videos, 5–8 patterns, temperature 0.8.
    pub fn thorough() -> Self {
        Self {
            kind: StrategyKind::Thorough,
            batch_size: Some(3),
            videos_per_cluster: 10,
            patterns_per_cluster: PatternRange { min: 5, max: 8 },
            temperature: 0.8,
            instruction: Some("Provide detailed analysis with multiple examples.".to_owned()),
        }
    }

    /// ADAPTIVE: dynamic batch size, 6 videos, 3–5 patterns, temperature 0.7.
    pub fn adaptive() -> Self {
        Self {
            kind: StrategyKind::Adaptive,
            batch_size: None,
            videos_per_cluster: 6,
            patterns_per_cluster: PatternRange { min: 3, max: 5 },
            temperature: 0.7,
            instruction: None,
        }
    }

    /// EFFICIENT: batch 6, 5 videos, 3–4 patterns, temperature 0.7.
    pub fn efficient() -> Self {
        Self {
            kind: StrategyKind::Efficient,
            batch_size: Some(6),
            videos_per_cluster: 5,
            patterns_per_cluster: PatternRange { min: 3, max: 4 },
            temperature: 0.7,
            instruction: Some("Focus on the most obvious patterns only.".to_owned()),
        }
    }

    /// BALANCED: batch 5, 8 videos, 4–6 patterns, temperature 0.7.
    pub fn balanced() -> Self {
        Self {
            kind: StrategyKind::Balanced,
            batch_size: Some(5),
            videos_per_cluster: 8,
            patterns_per_cluster: PatternRange { min: 4, max: 6 },
            temperature: 0.7,
            instruction: None,
        }
    }

    /// A custom strategy named `name`, starting from BALANCED's values.
    pub fn custom(name: impl Into<String>) -> Self {
        Self {
            kind: StrategyKind::Custom(name.into()),
            ..Self::balanced()
        }
    }

    /// Sets the batch size (`None` = dynamic).
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: Option<usize>) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// Sets the titles shown per cluster.
    #[must_use]
    pub fn with_videos_per_cluster(mut self, n: usize) -> Self {
        self.videos_per_cluster = n;
        self
    }
    /// Sets the patterns asked for per cluster.
    #[must_use]
    pub fn with_patterns_per_cluster(mut self, min: u32, max: u32) -> Self {
        self.patterns_per_cluster = PatternRange { min, max };
        self
    }
    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }
    /// Sets the extra closing line of the prompt.
    #[must_use]
    pub fn with_instruction(mut self, instruction: Option<String>) -> Self {
        self.instruction = instruction;
        self
    }

    /// Checks a strategy (the planner does this with every selector's answer).
    ///
    /// # Errors
    /// The [`StrategyError`] naming the field: a batch size or videos per cluster of 0, a
    /// pattern range with min 0 or min > max, a temperature outside `0.0..=2.0`.
    pub fn validate(&self) -> Result<(), StrategyError> {
        if self.batch_size == Some(0) {
            return Err(StrategyError::ZeroBatchSize);
        }
        if self.videos_per_cluster == 0 {
            return Err(StrategyError::ZeroVideosPerCluster);
        }
        let PatternRange { min, max } = self.patterns_per_cluster;
        if min == 0 || min > max {
            return Err(StrategyError::PatternRange { min, max });
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(StrategyError::Temperature(self.temperature));
        }
        Ok(())
    }
}

/// What is wrong with a [`StrategySettings`] ([`StrategySettings::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StrategyError {
    /// `batch_size` is `Some(0)`.
    #[error("batch_size is 0")]
    ZeroBatchSize,
    /// `videos_per_cluster` is 0.
    #[error("videos_per_cluster is 0")]
    ZeroVideosPerCluster,
    /// `patterns_per_cluster` has min 0 or min > max.
    #[error("patterns_per_cluster {min}-{max} is not a range of at least 1")]
    PatternRange {
        /// Its min.
        min: u32,
        /// Its max.
        max: u32,
    },
    /// `temperature` is outside `0.0..=2.0`.
    #[error("temperature {0} is outside 0.0..=2.0")]
    Temperature(f64),
}

/// Picks the strategy of a run from the clusters that passed the quality threshold.
///
/// `candidates` are in priority order, highest first. Implement it to plug in your own
/// strategies; [`SpecStrategySelector`] is the design's.
pub trait StrategySelector: Send + Sync {
    /// The strategy for these candidates (possibly none).
    fn select(&self, candidates: &[Scored<'_>]) -> StrategySettings;
}

/// The design's `determineStrategy`.
///
/// With `n` candidates and `hq` of them of quality above 0.8: `n ≤ 10` → THOROUGH;
/// `n > 20 && hq < 10` → ADAPTIVE; `n > 20 && hq ≥ 10` → EFFICIENT; otherwise BALANCED.
/// No candidates at all → THOROUGH (as the design's `0 ≤ 10`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecStrategySelector;

impl SpecStrategySelector {
    /// Quality strictly above this counts as high quality.
    pub const HIGH_QUALITY: f64 = 0.8;
}

impl StrategySelector for SpecStrategySelector {
    fn select(&self, candidates: &[Scored<'_>]) -> StrategySettings {
        let total = candidates.len();
        let high_quality = candidates
            .iter()
            .filter(|c| c.quality > Self::HIGH_QUALITY)
            .count();
        if total <= 10 {
            StrategySettings::thorough()
        } else if total > 20 && high_quality < 10 {
            StrategySettings::adaptive()
        } else if total > 20 {
            StrategySettings::efficient()
        } else {
            StrategySettings::balanced()
        }
    }
}

impl<T: StrategySelector + ?Sized> StrategySelector for &T {
    fn select(&self, candidates: &[Scored<'_>]) -> StrategySettings {
        (**self).select(candidates)
    }
}

impl<T: StrategySelector + ?Sized> StrategySelector for Box<T> {
    fn select(&self, candidates: &[Scored<'_>]) -> StrategySettings {
        (**self).select(candidates)
    }
}

impl<T: StrategySelector + ?Sized> StrategySelector for Arc<T> {
    fn select(&self, candidates: &[Scored<'_>]) -> StrategySettings {
        (**self).select(candidates)
    }
}

const _: Option<&dyn StrategySelector> = None;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cluster, Video};

    fn scored(cluster: &Cluster, qualities: &[f64]) -> Vec<Scored<'static>> {
        let cluster: &'static Cluster = Box::leak(Box::new(cluster.clone()));
        qualities
            .iter()
            .enumerate()
            .map(|(index, &quality)| Scored {
                index,
                cluster,
                quality,
                priority: quality,
            })
            .collect()
    }

    #[test]
    fn design_thresholds() {
        let c = Cluster::new("x", vec![Video::new("t", 1.0)]);
        let kind = |q: Vec<f64>| SpecStrategySelector.select(&scored(&c, &q)).kind;
        assert_eq!(kind(vec![]), StrategyKind::Thorough);
        assert_eq!(kind(vec![0.9; 10]), StrategyKind::Thorough);
        assert_eq!(kind(vec![0.9; 11]), StrategyKind::Balanced);
        assert_eq!(kind(vec![0.9; 20]), StrategyKind::Balanced);
        let mut mixed = vec![0.6; 12];
        mixed.extend(vec![0.9; 9]);
        assert_eq!(kind(mixed), StrategyKind::Adaptive);
        let mut many = vec![0.6; 11];
        many.extend(vec![0.81; 10]);
        assert_eq!(kind(many), StrategyKind::Efficient);
        // exactly 0.8 is not "high quality"
        assert_eq!(kind(vec![0.8; 25]), StrategyKind::Adaptive);
    }

    #[test]
    fn strategy_values_and_json() {
        let t = StrategySettings::thorough();
        assert_eq!((t.batch_size, t.videos_per_cluster), (Some(3), 10));
        assert!((t.temperature - 0.8).abs() < f64::EPSILON);
        assert!((StrategySettings::adaptive().temperature - 0.7).abs() < f64::EPSILON);
        assert_eq!(t.patterns_per_cluster.to_string(), "5-8");
        let json = serde_json::to_value(StrategySettings::adaptive()).unwrap();
        assert_eq!(json["kind"], "ADAPTIVE");
        assert_eq!(json["batch_size"], serde_json::Value::Null);
        assert_eq!(json["patterns_per_cluster"], serde_json::json!([3, 5]));
        let custom = StrategySettings::custom("TINY").with_batch_size(Some(2));
        let back: StrategySettings =
            serde_json::from_value(serde_json::to_value(&custom).unwrap()).unwrap();
        assert_eq!(back, custom);
        assert_eq!(back.kind.as_str(), "TINY");
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(
            StrategySettings::custom("x")
                .with_batch_size(Some(0))
                .validate()
                .is_err()
        );
        assert!(
            StrategySettings::custom("x")
                .with_patterns_per_cluster(5, 3)
                .validate()
                .is_err()
        );
        assert!(
            StrategySettings::custom("x")
                .with_temperature(f64::NAN)
                .validate()
                .is_err()
        );
        assert!(StrategySettings::efficient().validate().is_ok());
    }
}

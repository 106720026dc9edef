//! [`BatchingConfig`]: the planner's limits, their defaults (the design's) and their validation.
//!
//! A `BatchingConfig` is valid by construction: the only ways to get one are [`Default`], the
//! [`BatchingConfigBuilder`] and deserialization, and the last two validate.

use serde::{Deserialize, Serialize};

/// What the planner does when the strategy's batch size would need more calls than
/// `max_total_calls` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverBudget {
    /// Let batches grow toward `max_batch_size` (within the token target) before anything is
    /// left out; defer only what still does not fit. The default.
    #[default]
    GrowBatches,
    /// Keep the strategy's batch size and defer the lowest-priority clusters that do not fit.
    Defer,
}

/// The planner's limits. `Default` gives the design document's values.
///
/// | field | default | rule |
/// |---|---|---|
/// | `min_batch_size` | 3 | ≥ 1 |
/// | `max_batch_size` | 8 | ≥ `min_batch_size` |
/// | `target_tokens_per_batch` | 3500 | ≥ 1 |
/// | `max_total_calls` | 10 | ≥ 1 |
/// | `quality_threshold` | 0.5 | finite |
/// | `over_budget` | `grow_batches` | — |
///
/// In JSON every field is optional (missing ones take the default) and unknown fields are an
/// error, so a typo cannot pass silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConfigRepr", into = "ConfigRepr")]
pub struct BatchingConfig {
    min_batch_size: usize,
    max_batch_size: usize,
    target_tokens_per_batch: u64,
    max_total_calls: usize,
    quality_threshold: f64,
    over_budget: OverBudget,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            min_batch_size: 3,
            max_batch_size: 8,
            target_tokens_per_batch: 3500,
            max_total_calls: 10,
            quality_threshold: 0.5,
            over_budget: OverBudget::GrowBatches,
        }
    }
}

impl BatchingConfig {
    /// The tokens a batch's clusters may take once the request's own `overhead` is paid:
    /// `target_tokens_per_batch` less the overhead (0 if the overhead exceeds it).
    pub(crate) fn cluster_token_target(&self, overhead: u32) -> u64 {
        self.target_tokens_per_batch
            .saturating_sub(u64::from(overhead))
    }

    /// A builder starting from the defaults.
    pub fn builder() -> BatchingConfigBuilder {
        BatchingConfigBuilder(ConfigRepr::from(Self::default()))
    }

    /// A builder starting from this config, to change some fields.
    pub fn to_builder(&self) -> BatchingConfigBuilder {
        BatchingConfigBuilder(ConfigRepr::from(self.clone()))
    }

    /// Fewest clusters in a batch (where possible; see `BatchPlan::check`).
    pub fn min_batch_size(&self) -> usize {
        self.min_batch_size
    }
    /// Most clusters in a batch.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }
    /// Most estimated prompt tokens in a batch (a lone cluster above it goes alone, flagged).
    pub fn target_tokens_per_batch(&self) -> u64 {
        self.target_tokens_per_batch
    }
    /// Most batches, i.e. LLM calls, in a plan.
    pub fn max_total_calls(&self) -> usize {
        self.max_total_calls
    }
    /// Clusters with quality below this are not analysed.
    pub fn quality_threshold(&self) -> f64 {
        self.quality_threshold
    }
    /// What to do when the call budget is short.
    pub fn over_budget(&self) -> OverBudget {
        self.over_budget
    }
}

/// Builds a validated [`BatchingConfig`].
///
/// ```
/// use dynbatch::{BatchingConfig, OverBudget};
/// let config = BatchingConfig::builder()
///     .max_total_calls(4)
///     .over_budget(OverBudget::Defer)
///     .build()?;
/// assert_eq!(config.max_total_calls(), 4);
/// assert!(BatchingConfig::builder().min_batch_size(0).build().is_err());
/// # Ok::<(), dynbatch::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchingConfigBuilder(ConfigRepr);

impl BatchingConfigBuilder {
    /// Sets `min_batch_size`.
    #[must_use]
    pub fn min_batch_size(mut self, value: usize) -> Self {
        self.0.min_batch_size = value;
        self
    }
    /// Sets `max_batch_size`.
    #[must_use]
    pub fn max_batch_size(mut self, value: usize) -> Self {
        self.0.max_batch_size = value;
        self
    }
    /// Sets `target_tokens_per_batch`.
    #[must_use]
    pub fn target_tokens_per_batch(mut self, value: u64) -> Self {
        self.0.target_tokens_per_batch = value;
        self
    }
    /// Sets `max_total_calls`.
    #[must_use]
    pub fn max_total_calls(mut self, value: usize) -> Self {
        self.0.max_total_calls = value;
        self
    }
    /// Sets `quality_threshold`.
    #[must_use]
    pub fn quality_threshold(mut self, value: f64) -> Self {
        self.0.quality_threshold = value;
        self
    }
    /// Sets `over_budget`.
    #[must_use]
    pub fn over_budget(mut self, value: OverBudget) -> Self {
        self.0.over_budget = value;
        self
    }
    /// Validates and returns the config.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first invalid field and its value.
    pub fn build(self) -> Result<BatchingConfig, ConfigError> {
        BatchingConfig::try_from(self.0)
    }
}

/// An invalid configuration field, of a [`BatchingConfig`] or a
/// [`RunConfig`](crate::RunConfig) (their builders' `build`, their serde forms, and
/// [`RunConfig::validate`](crate::RunConfig::validate)). Its text names the field, the value
/// and the rule: `invalid config: min_batch_size = 0: must be at least 1`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid config: {field} = {value}: {rule}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The field's name, as in JSON.
    pub field: &'static str,
    /// The value given, as text.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigRepr {
    min_batch_size: usize,
    max_batch_size: usize,
    target_tokens_per_batch: u64,
    max_total_calls: usize,
    quality_threshold: f64,
    over_budget: OverBudget,
}

impl Default for ConfigRepr {
    fn default() -> Self {
        BatchingConfig::default().into()
    }
}

impl From<BatchingConfig> for ConfigRepr {
    fn from(c: BatchingConfig) -> Self {
        Self {
            min_batch_size: c.min_batch_size,
            max_batch_size: c.max_batch_size,
            target_tokens_per_batch: c.target_tokens_per_batch,
            max_total_calls: c.max_total_calls,
            quality_threshold: c.quality_threshold,
            over_budget: c.over_budget,
        }
    }
}

impl TryFrom<ConfigRepr> for BatchingConfig {
    type Error = ConfigError;

    fn try_from(r: ConfigRepr) -> Result<Self, ConfigError> {
        let fail = |field, value: &dyn ToString, rule| ConfigError {
            field,
            value: value.to_string(),
            rule,
        };
        if r.min_batch_size < 1 {
            return Err(fail(
                "min_batch_size",
                &r.min_batch_size,
                "must be at least 1",
            ));
        }
        if r.max_batch_size < r.min_batch_size {
            return Err(fail(
                "max_batch_size",
                &r.max_batch_size,
                "must be at least min_batch_size",
            ));
        }
        if r.target_tokens_per_batch < 1 {
            return Err(fail(
                "target_tokens_per_batch",
                &r.target_tokens_per_batch,
                "must be at least 1",
            ));
        }
        if r.max_total_calls < 1 {
            return Err(fail(
                "max_total_calls",
                &r.max_total_calls,
                "must be at least 1",
            ));
        }
        if !r.quality_threshold.is_finite() {
            return Err(fail(
                "quality_threshold",
                &r.quality_threshold,
                "must be a finite number",
            ));
        }
        Ok(Self {
            min_batch_size: r.min_batch_size,
            max_batch_size: r.max_batch_size,
            target_tokens_per_batch: r.target_tokens_per_batch,
            max_total_calls: r.max_total_calls,
            quality_threshold: r.quality_threshold,
            over_budget: r.over_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_designs() {
        let c = BatchingConfig::default();
        assert_eq!(
            (
                c.min_batch_size(),
                c.max_batch_size(),
                c.target_tokens_per_batch(),
                c.max_total_calls()
            ),
            (3, 8, 3500, 10)
        );
        assert!((c.quality_threshold() - 0.5).abs() < f64::EPSILON);
        assert_eq!(c.over_budget(), OverBudget::GrowBatches);
    }

    #[test]
    fn each_rule_names_field_and_value() {
        let e = BatchingConfig::builder()
            .min_batch_size(0)
            .build()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: min_batch_size = 0: must be at least 1"
        );
        let e = BatchingConfig::builder()
            .min_batch_size(5)
            .max_batch_size(4)
            .build()
            .unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("max_batch_size", "4"));
        let e = BatchingConfig::builder()
            .target_tokens_per_batch(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "target_tokens_per_batch");
        let e = BatchingConfig::builder()
            .max_total_calls(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field, "max_total_calls");
        let e = BatchingConfig::builder()
            .quality_threshold(f64::INFINITY)
            .build()
            .unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("quality_threshold", "inf"));
    }

    #[test]
    fn deserialization_validates_fills_defaults_and_rejects_typos() {
        let c: BatchingConfig = serde_json::from_str(r#"{"max_total_calls": 4}"#).unwrap();
        assert_eq!(c.max_total_calls(), 4);
        assert_eq!(c.max_batch_size(), 8);
        let e = serde_json::from_str::<BatchingConfig>(r#"{"min_batch_size": 0}"#).unwrap_err();
        assert!(e.to_string().contains("min_batch_size = 0"), "{e}");
        let e = serde_json::from_str::<BatchingConfig>(r#"{"max_calls": 4}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let c: BatchingConfig = serde_json::from_str(r#"{"over_budget": "defer"}"#).unwrap();
        assert_eq!(c.over_budget(), OverBudget::Defer);
        let round: BatchingConfig =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(round, c);
    }
}

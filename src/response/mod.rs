//! The model's answer: its schema ([`PatternResponse`]) here; `parse.rs`: reading it (a fenced
//! ```` ```json ```` block, prose around it and a cut-off answer are tolerated); `validate.rs`:
//! checking it against the batch that was asked.

use serde::{Deserialize, Serialize};

mod parse;
mod validate;

pub(crate) use crate::template::fold;
pub use crate::template::{Coverage, Template};
pub(crate) use parse::{parse, salvage};
pub use validate::Warning;
pub(crate) use validate::{MAX_EXAMPLES, shown_titles, validate};

/// What the model is asked to return (the system prompt describes it):
///
/// ```json
/// {"clusters": [{"cluster": 1, "patterns": [{"pattern": "...", "template": "...",
///   "examples": ["title", ...], "rationale": "..."}]}]}
/// ```
///
/// Only `clusters`, `cluster` and `pattern` are required; the rest may be missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PatternResponse {
    /// One entry per cluster answered.
    pub clusters: Vec<ClusterAnswer>,
}

/// The patterns found for one cluster of the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterAnswer {
    /// The number of the cluster's `CLUSTER n` header (1-based).
    pub cluster: i64,
    /// Its patterns.
    #[serde(default)]
    pub patterns: Vec<RawPattern>,
}

/// One pattern as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RawPattern {
    /// A short name of the pattern.
    pub pattern: String,
    /// The title formula, with placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Titles that follow it.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Why it performs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// How much a pattern whose template matches none of its cluster's shown titles counts as
/// evidence in consolidation, against 1 for any other.
pub(crate) const UNGROUNDED_WEIGHT: f64 = 0.5;

impl Pattern {
    /// What the pattern weighs as evidence in consolidation: [`UNGROUNDED_WEIGHT`] when its
    /// template matches none of its cluster's shown titles, else 1.
    pub(crate) fn evidence_weight(&self) -> f64 {
        if self.coverage.is_some_and(|c| c.is_ungrounded()) {
            UNGROUNDED_WEIGHT
        } else {
            1.0
        }
    }
}

/// An example title, checked against the cluster's titles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The title as the model wrote it.
    pub title: String,
    /// Whether it is one of the cluster's titles (ignoring case, white space and quotes).
    pub grounded: bool,
}

/// A validated pattern of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// A short name of the pattern.
    pub pattern: String,
    /// The title formula, with placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Example titles, each marked grounded or not.
    pub examples: Vec<Example>,
    /// Why it performs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// How many of the cluster's shown titles the template matches, computed by dynbatch;
    /// `None` without a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

//! What consolidation reads (each cluster's patterns, with what weighs them) and what it
//! makes (patterns with provenance).

use serde::{Deserialize, Serialize};

use crate::response::{Coverage, Pattern};

/// The validated patterns of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterPatterns {
    /// The cluster's id.
    pub id: String,
    /// Its patterns, as the model gave them.
    pub patterns: Vec<Pattern>,
}

/// A cluster's patterns with what consolidation weighs them by.
#[derive(Debug, Clone, PartialEq)]
pub struct Support {
    /// The cluster's id.
    pub id: String,
    /// Its priority in the plan.
    pub priority: f64,
    /// Its mean performance.
    pub avg_performance: f64,
    /// WIDE or DEEP.
    pub is_wide: bool,
    /// Its patterns.
    pub patterns: Vec<Pattern>,
}

/// A pattern after consolidation, with provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsolidatedPattern {
    /// The name of the first (highest-priority) occurrence.
    pub pattern: String,
    /// Its template: the most frequent among the patterns merged into it (on a tie, the one
    /// that reached the count first, in consolidation's order); `None` when none had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Ids of the supporting clusters, highest priority first.
    pub clusters: Vec<String>,
    /// Grounded example titles (real titles of supporting clusters), without repeats.
    pub examples: Vec<String>,
    /// Σ over supporting clusters of priority × mean performance.
    pub evidence: f64,
    /// Some supporting cluster is WIDE, or it spans several clusters.
    pub wide: bool,
    /// How many raw patterns were merged into it.
    pub occurrences: usize,
    /// Every raw pattern merged into it, in consolidation's order (clusters by priority, then
    /// id; each cluster's patterns as given): what a reader needs to see, or undo, a merge.
    /// Empty from [`consolidate`](super::consolidate()), which keeps no provenance beyond
    /// `clusters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Alias>,
    /// The template coverage of the patterns merged into it, summed: shown titles their
    /// templates match over titles shown. `None` when none had a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

impl ConsolidatedPattern {
    /// Adds a merged pattern's coverage to the sum.
    pub(crate) fn add_coverage(&mut self, coverage: Option<Coverage>) {
        if let Some(c) = coverage {
            let sum = self.coverage.get_or_insert_with(Coverage::default);
            sum.matched = sum.matched.saturating_add(c.matched);
            sum.shown = sum.shown.saturating_add(c.shown);
        }
    }
}

/// One raw pattern merged into a [`ConsolidatedPattern`]: its name and template as the model
/// gave them, the cluster it was found for, and the planned batch that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Alias {
    /// The name.
    pub pattern: String,
    /// The template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The cluster's id.
    pub cluster: String,
    /// The planned batch whose answer named it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

//! [`PatternMerger`]: consolidation as a replaceable stage. Each batch names its patterns in its
//! own words; a merger decides which of them are one pattern, and the runner reports the groups
//! with every name merged into them ([`Alias`](super::Alias)).
//!
//! Three mergers ship: [`LexicalMerger`] (the default: shared words, exactly
//! [`consolidate`](super::consolidate())), [`SemanticMerger`] (an [`Embedder`]'s vectors,
//! grouped by cosine similarity with average linkage, so a chain of close names cannot join
//! unrelated ones) and [`JudgedMerger`] (the vectors propose pairs, a model confirms them in
//! token-packed requests and names the merged pattern). `assemble.rs` turns groups into
//! [`ConsolidatedPattern`]s, one way for all three.
//!
//! [`Embedder`]: crate::backend::Embedder

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ConsolidatedPattern, Support};
use crate::error::Error;

mod assemble;
#[cfg(test)]
mod grouping_props;
mod judged;
mod semantic;

pub(crate) use assemble::{assemble, occurrences};
pub use judged::JudgedMerger;
pub use semantic::{DEFAULT_THRESHOLD, SemanticMerger};

/// Decides which patterns of a run are one pattern.
///
/// Implement `merge`; the runner calls it once, after the last answer, with every succeeded
/// cluster's patterns. It must account for every pattern it is given: each in exactly one
/// group. Object safe: `Arc<dyn PatternMerger>` works.
#[async_trait]
pub trait PatternMerger: Send + Sync + fmt::Debug {
    /// Groups the patterns of `support` into consolidated patterns, sorted by evidence.
    ///
    /// # Errors
    /// When the merger cannot do its work (an embedding server that stays down, say). The
    /// runner then falls back to the lexical merger and says so in a warning: nothing is lost.
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error>;
}

/// What a merger made: the patterns, what its calls cost, and what it noticed.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Merged {
    /// The consolidated patterns, by evidence.
    pub patterns: Vec<ConsolidatedPattern>,
    /// Calls the merger made (embeddings, judge), apart from the discovery calls.
    pub usage: MergeUsage,
    /// Things worth a reader's attention (unanswered questions, a fallback).
    pub warnings: Vec<String>,
}

impl Merged {
    /// Patterns with no calls made and nothing to say.
    pub fn new(patterns: Vec<ConsolidatedPattern>) -> Self {
        Self {
            patterns,
            ..Self::default()
        }
    }
}

/// The calls consolidation made, reported apart from the discovery calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MergeUsage {
    /// Which merger: `lexical`, `semantic` or `judged` (or a plug-in's name).
    pub merger: String,
    /// Distinct texts embedded.
    #[serde(default)]
    pub embedded: u64,
    /// Embedding requests sent (the journal's answers not counted).
    #[serde(default)]
    pub embedding_calls: u64,
    /// Embedding input tokens, as the server reported them.
    #[serde(default)]
    pub embedding_tokens: u64,
    /// Pairs proposed to the judge.
    #[serde(default)]
    pub questions: u64,
    /// Of them, answered.
    #[serde(default)]
    pub answered: u64,
    /// Judge requests sent.
    #[serde(default)]
    pub judge_calls: u64,
    /// The least number of judge requests the questions fit in, by their tokens.
    #[serde(default)]
    pub judge_calls_planned: u64,
    /// Judge prompt tokens, as the server reported them.
    #[serde(default)]
    pub judge_prompt_tokens: u64,
    /// Judge completion tokens, as the server reported them.
    #[serde(default)]
    pub judge_completion_tokens: u64,
    /// The model that judged, as it named itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_model: Option<String>,
    /// The judge's cost at the run's prices, when its model has one (the runner computes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
}

impl MergeUsage {
    /// No calls, by `merger`.
    pub fn of(merger: &str) -> Self {
        Self {
            merger: merger.to_owned(),
            ..Self::default()
        }
    }
}

/// The vectors of `texts` from `embedder`, one per text, or an error that says why not.
pub(crate) async fn embed_all(
    embedder: &dyn crate::backend::Embedder,
    texts: &[String],
) -> Result<crate::backend::Embeddings, Error> {
    let out = embedder
        .embed(texts)
        .await
        .map_err(|e| Error::Other(Box::new(e)))?;
    if out.vectors.len() != texts.len() {
        return Err(Error::Other(
            format!(
                "the embedder returned {} vectors for {} texts",
                out.vectors.len(),
                texts.len()
            )
            .into(),
        ));
    }
    Ok(out)
}

/// The default merger: patterns with the same normalised text, or whose word sets have a
/// Jaccard similarity of at least `threshold`, are one ([`consolidate`](super::consolidate())),
/// with every merged name kept as an alias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LexicalMerger {
    threshold: f64,
}

impl LexicalMerger {
    /// Merges at a Jaccard similarity of `threshold` (the runner's default is 0.6,
    /// [`RunConfig::merge_similarity`](crate::RunConfig::merge_similarity)).
    pub fn new(threshold: f64) -> Self {
        Self { threshold }
    }

    /// The groups [`consolidate`](super::consolidate()) forms, with aliases.
    pub fn merge_now(&self, support: &[Support]) -> Vec<ConsolidatedPattern> {
        let occurrences = occurrences(support);
        let assignment = super::consolidate::assign(support, self.threshold);
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, &g) in assignment.iter().enumerate() {
            if g == groups.len() {
                groups.push(Vec::new());
            }
            if let Some(group) = groups.get_mut(g) {
                group.push(i);
            }
        }
        assemble(&occurrences, &groups, &[])
    }
}

impl Default for LexicalMerger {
    fn default() -> Self {
        Self::new(0.6)
    }
}

#[async_trait]
impl PatternMerger for LexicalMerger {
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error> {
        Ok(Merged {
            patterns: self.merge_now(support),
            usage: MergeUsage::of("lexical"),
            warnings: Vec::new(),
        })
    }
}

#[async_trait]
impl<T: PatternMerger + ?Sized> PatternMerger for Arc<T> {
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error> {
        (**self).merge(support).await
    }
}

#[async_trait]
impl<T: PatternMerger + ?Sized> PatternMerger for Box<T> {
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error> {
        (**self).merge(support).await
    }
}

#[async_trait]
impl<T: PatternMerger + ?Sized> PatternMerger for &T {
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error> {
        (**self).merge(support).await
    }
}

/// `PatternMerger` stays object safe.
const _: Option<&dyn PatternMerger> = None;

//! Measuring the patterns (feature `eval`): a report scored against labelled titles.
//!
//! A **labelled set** is a clusters file and a labels file ([`LabelSet`]): each label a
//! formula, as a regex its titles match. [`evaluate`] reads a [`DiscoveryReport`] (it never
//! calls a backend) and says which labels its patterns find, with these rules:
//!
//! - **Shown titles** are those the prompt showed: in each batched cluster, the first
//!   `min(size, videos per cluster)` videos, in input order.
//! - **A template** matches a title as [`Template`](crate::patterns::Template) says: every
//!   placeholder (`[...]`, `{...}`, `<...>`, `…`, `...`) is a wildcard of one or more
//!   characters, the rest is literal, case and white space are ignored (zero-width characters
//!   too), and the whole title, trimmed, must match.
//! - **Where a label is looked for.** A label with a `cluster` is looked for among that
//!   cluster's patterns, over its shown titles; one without, among the consolidated patterns,
//!   over the shown titles of every batched cluster.
//! - **Eligible**: at least 2 of the label's titles were shown there.
//! - **Found**: some template matches at least half of the label's shown titles, and at least
//!   half of the titles it matches are the label's. A template without a literal word finds
//!   nothing, nor does one that matches every title there unless they all are the label's.
//!
//! The figures ([`Evaluation`]):
//!
//! - **recall**: found labels over eligible ones;
//! - **fragments per formula**: for each found label, the patterns that are mostly it (they
//!   match some of its titles, and at least half of what they match is it), averaged;
//! - **generic share**: the clusters' templates with fewer than 2 literal words;
//! - **grounded share**: the clusters' templates that match at least one shown title of their
//!   cluster;
//! - calls, tokens and cost, from the report;
//! - **recall by batch size and by position in the batch**: each label is also looked for in
//!   each cluster that shows at least 2 of its titles, among that cluster's own patterns over
//!   its own titles, and counted under the size of the cluster's planned batch and its
//!   position there (1-based).
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "tokio"))] {
//! use dynbatch::backend::formulas::FormulaFinder;
//! use dynbatch::eval::{LabelSet, evaluate};
//! use dynbatch::{Batcher, Cluster, Runner, TokioTimer, Video};
//!
//! let clusters: Vec<Cluster> = ["Sourdough", "Chess", "Running"]
//!     .iter()
//!     .map(|topic| {
//!         let mut c = Cluster::new(*topic, vec![
//!             Video::new(format!("7 {topic} Hacks That Actually Work"), 5.0),
//!             Video::new(format!("Why {topic} Is Overrated"), 4.0),
//!             Video::new(format!("12 {topic} Hacks That Actually Work"), 3.0),
//!         ]);
//!         (c.size, c.avg_performance) = (20, 4.0);
//!         c.thread_sources = vec!["a".into(), "b".into(), "c".into()];
//!         c
//!     })
//!     .collect();
//! let labels = LabelSet::from_json(r#"[
//!   {"name": "hacks", "regex": "^\\d+ .+ Hacks That Actually Work$"},
//!   {"name": "overrated", "regex": "^Why .+ Is Overrated$"}
//! ]"#)?;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! let runner = Runner::new(FormulaFinder::new(), TokioTimer);
//! let report = rt.block_on(Batcher::default().discover(&clusters, "hobbies", &runner))?;
//! let scored = evaluate(&report, &clusters, &labels);
//! assert_eq!(scored.recall, Some(1.0));
//! assert_eq!(scored.fragments_per_formula, Some(1.0));
//! println!("{scored}"); // a table
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::report::DiscoveryReport;

mod labels;
mod score;

pub use labels::{Label, LabelError, LabelSet};
pub use score::evaluate;

/// Where a label was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Universe {
    /// Among its cluster's patterns, over its cluster's shown titles.
    Cluster,
    /// Among the consolidated patterns, over every batched cluster's shown titles.
    Consolidated,
}

/// One label, scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LabelResult {
    /// Its name.
    pub name: String,
    /// Its cluster, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Where it was looked for.
    pub universe: Universe,
    /// Its shown titles there.
    pub shown: usize,
    /// At least 2 were shown.
    pub eligible: bool,
    /// The template that found it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_by: Option<String>,
    /// The patterns that are mostly it.
    pub fragments: usize,
}

impl LabelResult {
    fn new(
        label: &Label,
        target: &[bool],
        universe: Universe,
        found_by: Option<String>,
        fragments: usize,
    ) -> Self {
        let shown = target.iter().filter(|&&t| t).count();
        let eligible = shown >= 2;
        Self {
            name: label.name.clone(),
            cluster: label.cluster.clone(),
            universe,
            shown,
            eligible,
            found_by: found_by.filter(|_| eligible),
            fragments,
        }
    }
}

/// Recall over the labels of one batch size or one position in the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecallBucket {
    /// The batch size, or the position (1-based).
    pub key: usize,
    /// (label, cluster) pairs eligible there.
    pub eligible: usize,
    /// Of those, found.
    pub found: usize,
    /// `found / eligible`.
    pub recall: f64,
}

impl RecallBucket {
    fn new(key: usize, eligible: usize, found: usize) -> Self {
        Self {
            key,
            eligible,
            found,
            recall: ratio(found, eligible).unwrap_or(0.0),
        }
    }
}

/// A report scored against labels. See the module docs for what each figure is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Evaluation {
    /// Every label, in the labels file's order.
    pub labels: Vec<LabelResult>,
    /// Labels with at least 2 titles shown where they are looked for.
    pub eligible: usize,
    /// Eligible labels found.
    pub found: usize,
    /// `found / eligible`; `None` with no eligible label.
    pub recall: Option<f64>,
    /// Patterns that are mostly a found label, averaged over the found labels.
    pub fragments_per_formula: Option<f64>,
    /// Templates the clusters were given.
    pub templates: usize,
    /// Share of them with fewer than 2 literal words.
    pub generic_share: Option<f64>,
    /// Share of them that match at least one shown title of their cluster.
    pub grounded_share: Option<f64>,
    /// Calls made.
    pub calls: u64,
    /// Prompt tokens reported.
    pub prompt_tokens: u64,
    /// Completion tokens reported.
    pub completion_tokens: u64,
    /// The run's estimated cost.
    pub cost_usd: Option<f64>,
    /// Recall of (label, cluster) pairs by the size of the cluster's planned batch.
    pub by_batch_size: Vec<RecallBucket>,
    /// Recall of (label, cluster) pairs by the cluster's position in its batch (1-based).
    pub by_position: Vec<RecallBucket>,
    /// Things about the labels worth knowing (labels naming clusters the input lacks).
    pub warnings: Vec<String>,
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Evaluation {
    fn assemble(
        labels: Vec<LabelResult>,
        (templates, generic, grounded): (usize, usize, usize),
        (calls, prompt_tokens, completion_tokens, cost_usd): (u64, u64, u64, Option<f64>),
        by_batch_size: Vec<RecallBucket>,
        by_position: Vec<RecallBucket>,
        warnings: Vec<String>,
    ) -> Self {
        let eligible = labels.iter().filter(|l| l.eligible).count();
        let found: Vec<&LabelResult> = labels.iter().filter(|l| l.found_by.is_some()).collect();
        let fragments = found.iter().map(|l| l.fragments).sum();
        Self {
            eligible,
            found: found.len(),
            recall: ratio(found.len(), eligible),
            fragments_per_formula: ratio(fragments, found.len()),
            templates,
            generic_share: ratio(generic, templates),
            grounded_share: ratio(grounded, templates),
            calls,
            prompt_tokens,
            completion_tokens,
            cost_usd,
            by_batch_size,
            by_position,
            warnings,
            labels,
        }
    }

    /// Scores `report` (see [`evaluate`]).
    pub fn of(
        report: &DiscoveryReport<'_>,
        clusters: &[crate::Cluster],
        labels: &LabelSet,
    ) -> Self {
        evaluate(report, clusters, labels)
    }
}

fn share(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "recall {} ({} of {} eligible labels), {} fragments per formula",
            share(self.recall),
            self.found,
            self.eligible,
            share(self.fragments_per_formula)
        )?;
        writeln!(
            f,
            "templates {}: generic {}, grounded {}",
            self.templates,
            share(self.generic_share),
            share(self.grounded_share)
        )?;
        writeln!(
            f,
            "calls {}, tokens {} prompt + {} completion, cost {}",
            self.calls,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_usd
                .map_or_else(|| "unknown".to_owned(), |c| format!("${c:.5}"))
        )?;
        for (name, buckets) in [
            ("by batch size", &self.by_batch_size),
            ("by position", &self.by_position),
        ] {
            let cells: Vec<String> = buckets
                .iter()
                .map(|b| format!("{}: {:.2} ({}/{})", b.key, b.recall, b.found, b.eligible))
                .collect();
            writeln!(f, "recall {name}: {}", cells.join(", "))?;
        }
        for l in &self.labels {
            let place = l.cluster.as_deref().unwrap_or("(across clusters)");
            let verdict = match (&l.found_by, l.eligible) {
                (Some(t), _) => format!("found by {t:?}"),
                (None, true) => "not found".to_owned(),
                (None, false) => "not eligible".to_owned(),
            };
            writeln!(
                f,
                "  {:<32} {:<20} {:>4} shown  {} fragments  {verdict}",
                l.name, place, l.shown, l.fragments
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

//! A labels file: the formulas a clusters file is known to hold, each a regex its titles match.

use serde::{Deserialize, Serialize};

/// One labelled formula: its titles are those its `regex` matches somewhere (a search, not a
/// whole-title match). With a `cluster`, it is that cluster's formula, to be found by the
/// patterns of that cluster; without, a formula across clusters, to be found by a consolidated
/// pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Label {
    /// Its name, for reports.
    pub name: String,
    /// The regex its titles match (Rust's `regex` syntax; `(?i)` for case-insensitive).
    pub regex: String,
    /// The cluster it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl Label {
    /// A label across clusters.
    pub fn new(name: impl Into<String>, regex: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            regex: regex.into(),
            cluster: None,
        }
    }

    /// The label, belonging to `cluster`.
    #[must_use]
    pub fn in_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }
}

/// What is wrong with a labels file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The text is not a JSON array of labels.
    #[error("the labels are not a JSON array of {{\"name\", \"regex\", \"cluster\"?}}: {0}")]
    Json(#[from] serde_json::Error),
    /// No label at all: nothing to measure.
    #[error("the labels file has no label")]
    Empty,
    /// A label's regex does not compile.
    #[error("label {name:?}: its regex does not compile: {source}")]
    Regex {
        /// The label's name.
        name: String,
        /// The regex error.
        source: Box<regex::Error>,
    },
}

/// Labels with their regexes compiled: what [`evaluate`](super::evaluate) scores against.
#[derive(Debug, Clone)]
pub struct LabelSet {
    labels: Vec<(Label, regex::Regex)>,
}

impl LabelSet {
    /// Compiles `labels`.
    ///
    /// # Errors
    /// [`LabelError::Empty`] for no label, [`LabelError::Regex`] naming the first label whose
    /// regex does not compile.
    pub fn new(labels: Vec<Label>) -> Result<Self, LabelError> {
        if labels.is_empty() {
            return Err(LabelError::Empty);
        }
        let labels = labels
            .into_iter()
            .map(|label| match regex::Regex::new(&label.regex) {
                Ok(re) => Ok((label, re)),
                Err(e) => Err(LabelError::Regex {
                    name: label.name,
                    source: Box::new(e),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { labels })
    }

    /// Reads a labels file: a JSON array of `{"name": "...", "regex": "...", "cluster": "..."}`
    /// (`cluster` optional).
    ///
    /// # Errors
    /// [`LabelError::Json`] for text that is not such an array; otherwise as
    /// [`LabelSet::new`].
    pub fn from_json(text: &str) -> Result<Self, LabelError> {
        Self::new(serde_json::from_str(text)?)
    }

    /// The labels, in the file's order.
    pub fn labels(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter().map(|(l, _)| l)
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Never true: a set has a label at least.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub(super) fn compiled(&self) -> &[(Label, regex::Regex)] {
        &self.labels
    }
}

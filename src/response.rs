//! The model's answer: its schema ([`PatternResponse`]), parsing (a fenced ```` ```json ````
//! block is tolerated) and validation against the batch that was asked.

use serde::{Deserialize, Serialize};

use crate::model::Cluster;
use crate::strategy::PatternRange;

/// What the model is asked to return (see [`crate::prompt::system_prompt`]):
///
/// ```json
/// {"clusters": [{"cluster": 1, "patterns": [{"pattern": "...", "template": "...",
///   "examples": ["title", ...], "rationale": "..."}]}]}
/// ```
///
/// Only `clusters`, `cluster` and `pattern` are required; the rest may be missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternResponse {
    /// One entry per cluster answered.
    pub clusters: Vec<ClusterAnswer>,
}

/// The patterns found for one cluster of the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterAnswer {
    /// The number of the cluster's `CLUSTER n` header (1-based).
    pub cluster: i64,
    /// Its patterns.
    #[serde(default)]
    pub patterns: Vec<RawPattern>,
}

/// One pattern as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawPattern {
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
}

/// Why an answer could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON of the expected shape.
    #[error("the answer is not the requested JSON: {0}")]
    Invalid(String),
}

/// Parses an answer, tolerating white space and a fenced ```` ```json ```` block around it.
///
/// # Errors
/// [`ParseError::Invalid`] with serde's message.
pub fn parse(content: &str) -> Result<PatternResponse, ParseError> {
    let text = unfence(content);
    serde_json::from_str(text).map_err(|e| ParseError::Invalid(e.to_string()))
}

fn unfence(content: &str) -> &str {
    let text = content.trim();
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let body = rest.find('\n').map_or("", |i| &rest[i + 1..]);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// An answer checked against its batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validated {
    /// Patterns per position in the batch; `None` where the cluster was not answered.
    pub patterns: Vec<Option<Vec<Pattern>>>,
    /// Cluster numbers in the answer that the batch does not have (not used).
    pub unknown_clusters: Vec<i64>,
    /// Problems worth reporting that did not stop the answer from being used.
    pub warnings: Vec<Warning>,
}

/// A problem with an answer that did not stop it from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The cluster at this position of the batch got a pattern count outside the range asked.
    PatternCount {
        /// Position in the batch (0-based).
        position: usize,
        /// Patterns given.
        count: usize,
        /// The range asked for.
        range: PatternRange,
    },
    /// The cluster at this position was answered more than once; the answers were merged.
    AnsweredTwice {
        /// Position in the batch (0-based).
        position: usize,
    },
}

impl Warning {
    /// Position in the batch of the cluster concerned.
    pub fn position(&self) -> usize {
        match *self {
            Self::PatternCount { position, .. } | Self::AnsweredTwice { position } => position,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PatternCount { count, range, .. } => {
                write!(f, "{count} patterns, outside the {range} asked for")
            }
            Self::AnsweredTwice { .. } => f.write_str("answered twice; the answers were merged"),
        }
    }
}

impl Validated {
    /// Positions in the batch that were not answered.
    pub fn missing(&self) -> Vec<usize> {
        self.patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.is_none().then_some(i))
            .collect()
    }
}

/// Checks an answer against the batch it answers (`clusters` in prompt order): cluster numbers
/// must exist (others are reported, not used; a repeated number is merged into the first),
/// pattern counts outside `range` are kept with a warning, and each example is marked grounded
/// when it is one of that cluster's titles.
pub fn validate(
    response: PatternResponse,
    clusters: &[&Cluster],
    range: PatternRange,
) -> Validated {
    let mut out = Validated {
        patterns: vec![None; clusters.len()],
        ..Validated::default()
    };
    for answer in response.clusters {
        let slot = usize::try_from(answer.cluster)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < clusters.len());
        let Some(i) = slot else {
            out.unknown_clusters.push(answer.cluster);
            continue;
        };
        let titles: Vec<String> = clusters[i]
            .videos
            .iter()
            .map(|v| normalize_title(&v.title))
            .collect();
        let patterns: Vec<Pattern> = answer
            .patterns
            .into_iter()
            .filter(|p| !p.pattern.trim().is_empty())
            .map(|p| Pattern {
                examples: p
                    .examples
                    .into_iter()
                    .map(|title| Example {
                        grounded: titles.contains(&normalize_title(&title)),
                        title,
                    })
                    .collect(),
                pattern: p.pattern,
                template: p.template.filter(|t| !t.trim().is_empty()),
                rationale: p.rationale,
            })
            .collect();
        match &mut out.patterns[i] {
            Some(existing) => {
                out.warnings.push(Warning::AnsweredTwice { position: i });
                existing.extend(patterns);
            }
            slot @ None => *slot = Some(patterns),
        }
    }
    for (i, p) in out.patterns.iter().enumerate() {
        if let Some(p) = p {
            let n = u32::try_from(p.len()).unwrap_or(u32::MAX);
            if n < range.min || n > range.max {
                out.warnings.push(Warning::PatternCount {
                    position: i,
                    count: p.len(),
                    range,
                });
            }
        }
    }
    out
}

/// Lower case, quotes and surrounding punctuation dropped, white space collapsed: how examples
/// are matched to titles.
pub(crate) fn normalize_title(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    for word in title.split_whitespace() {
        let word = word.trim_matches(|c: char| matches!(c, '"' | '\'' | '“' | '”' | '‘' | '’'));
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Video;

    fn cluster(titles: &[&str]) -> Cluster {
        Cluster::new("c", titles.iter().map(|t| Video::new(*t, 1.0)).collect())
    }

    #[test]
    fn parses_plain_and_fenced_answers_with_missing_optional_fields() {
        let plain = r#"{"clusters": [{"cluster": 1, "patterns": [{"pattern": "Challenge"}]}]}"#;
        let fenced = format!("```json\n{plain}\n```");
        assert_eq!(parse(plain).unwrap(), parse(&fenced).unwrap());
        assert_eq!(
            parse(&format!("```\n{plain}```")).unwrap(),
            parse(plain).unwrap()
        );
        assert!(parse("{\"clusters\": [").is_err());
        assert!(parse("Sorry, I can't help with that.").is_err());
    }

    #[test]
    fn validation_reports_unknown_missing_counts_and_grounding() {
        let a = cluster(&["I Tried X for 30 Days", "I Tried Y for 30 Days"]);
        let b = cluster(&["Why Z Is Overrated"]);
        let response = parse(
            r#"{"clusters": [
              {"cluster": 1, "patterns": [{"pattern": "30-day challenge",
                 "examples": ["i tried x for 30  days", "I Tried Q for 30 Days"]}]},
              {"cluster": 7, "patterns": []}
            ]}"#,
        )
        .unwrap();
        let v = validate(response, &[&a, &b], PatternRange { min: 3, max: 5 });
        assert_eq!(v.unknown_clusters, vec![7]);
        assert_eq!(v.missing(), vec![1]);
        let p = &v.patterns[0].as_ref().unwrap()[0];
        assert!(p.examples[0].grounded);
        assert!(!p.examples[1].grounded);
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(v.warnings[0].position(), 0);
        assert_eq!(
            v.warnings[0].to_string(),
            "1 patterns, outside the 3-5 asked for"
        );
    }
}

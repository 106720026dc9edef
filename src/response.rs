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
pub(crate) enum ParseError {
    /// Not JSON of the expected shape.
    #[error("the answer is not the requested JSON: {0}")]
    Invalid(String),
}

/// Parses an answer in either shape: the design's `{"clusters": [{"cluster": 1, "patterns":
/// [...]}, ...]}`, or the per-batch schema's `{"c1": [...], "c2": [...]}` (see
/// [`batch_schema`](crate::prompt::batch_schema)). White space, a fenced ```` ```json ````
/// block, or prose around the one JSON object are tolerated (answers in
/// [`OutputMode::Text`](crate::prompt::OutputMode::Text) come like that).
///
/// # Errors
/// [`ParseError::Invalid`] with serde's message.
pub(crate) fn parse(content: &str) -> Result<PatternResponse, ParseError> {
    let text = unfence(content);
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            // Prose around the object; raw control characters in strings (some grammars let
            // a model write them, JSON does not).
            let object = embedded_object(text).unwrap_or(text);
            let cleaned: String = object
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            match serde_json::from_str(object).or_else(|_| serde_json::from_str(&cleaned)) {
                Ok(value) => value,
                Err(_) => return Err(ParseError::Invalid(e.to_string())),
            }
        }
    };
    if let serde_json::Value::Object(map) = &value {
        // `{}` answers no cluster, in either shape.
        if !map.contains_key("clusters") {
            return keyed(map);
        }
    }
    serde_json::from_value(value).map_err(|e| ParseError::Invalid(e.to_string()))
}

/// The clusters an answer cut off (at `max_tokens`) completed before the cut: the answer up to
/// its last complete cluster, closed. `None` when not even one cluster is complete. A cluster is
/// complete when its whole list of patterns is there (`"c3": [...]`, or `{"cluster": 3,
/// "patterns": [...]}` in the design's shape); the one being written when the cut came is left
/// out, never kept half done.
pub(crate) fn salvage(content: &str) -> Option<PatternResponse> {
    let text = content.trim_start();
    let text = match text.strip_prefix("```") {
        Some(rest) => rest.find('\n').map_or("", |i| &rest[i + 1..]),
        None => text,
    };
    let text = &text[text.find('{')?..];
    let array_shape = text[1..].trim_start().starts_with("\"clusters\"");
    let (mut stack, mut in_string, mut escaped) = (Vec::new(), false, false);
    let mut last: Option<(usize, Vec<u8>)> = None;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => stack.push(b),
            b'}' | b']' => {
                stack.pop();
                let cluster_done = if array_shape {
                    stack == [b'{', b'[']
                } else {
                    stack == [b'{']
                };
                if cluster_done {
                    last = Some((i + 1, stack.clone()));
                }
            }
            _ => {}
        }
    }
    let (end, open) = last?;
    let mut closed = text[..end].to_owned();
    closed.extend(
        open.iter()
            .rev()
            .map(|&b| if b == b'{' { '}' } else { ']' }),
    );
    parse(&closed).ok().filter(|p| !p.clusters.is_empty())
}

/// The text from the first `{` to the last `}`: the object in an answer with prose around it.
fn embedded_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

/// The per-batch schema's shape: one key per cluster, `c` and its number.
fn keyed(map: &serde_json::Map<String, serde_json::Value>) -> Result<PatternResponse, ParseError> {
    let mut clusters = Vec::with_capacity(map.len());
    for (key, patterns) in map {
        let number = key
            .strip_prefix(['c', 'C'])
            .unwrap_or(key)
            .parse::<i64>()
            .map_err(|_| {
                ParseError::Invalid(format!(
                    "the answer has neither \"clusters\" nor cluster keys (\"c1\", ...): found {key:?}"
                ))
            })?;
        let patterns = serde_json::from_value(patterns.clone())
            .map_err(|e| ParseError::Invalid(format!("{key}: {e}")))?;
        clusters.push(ClusterAnswer {
            cluster: number,
            patterns,
        });
    }
    Ok(PatternResponse { clusters })
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
pub(crate) struct Validated {
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
    #[deprecated(note = "reported as `AnsweredMoreThanOnce`, once per request")]
    AnsweredTwice {
        /// Position in the batch (0-based).
        position: usize,
    },
    /// The cluster at this position was answered `times` times in one answer; the answers were
    /// merged (reported once per request, however often it repeats).
    AnsweredMoreThanOnce {
        /// Position in the batch (0-based).
        position: usize,
        /// How often it was answered.
        times: usize,
    },
    /// The cluster at this position got more patterns than the most asked for: the first
    /// `kept` were kept, `dropped` more were not.
    PatternsDropped {
        /// Position in the batch (0-based).
        position: usize,
        /// Patterns kept (the most asked for).
        kept: usize,
        /// Patterns dropped.
        dropped: usize,
    },
}

impl Warning {
    /// Position in the batch of the cluster concerned.
    #[allow(deprecated)]
    pub fn position(&self) -> usize {
        match *self {
            Self::PatternCount { position, .. }
            | Self::AnsweredTwice { position }
            | Self::AnsweredMoreThanOnce { position, .. }
            | Self::PatternsDropped { position, .. } => position,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PatternCount { count, range, .. } => {
                write!(f, "{count} patterns, outside the {range} asked for")
            }
            #[allow(deprecated)]
            Self::AnsweredTwice { .. } => f.write_str("answered twice; the answers were merged"),
            Self::AnsweredMoreThanOnce { times, .. } => {
                write!(f, "answered {times} times; the answers were merged")
            }
            Self::PatternsDropped { kept, dropped, .. } => write!(
                f,
                "{} patterns, more than the {kept} asked for at most: {dropped} dropped",
                kept + dropped
            ),
        }
    }
}

impl Validated {
    /// Positions in the batch that were not answered.
    pub(crate) fn missing(&self) -> Vec<usize> {
        self.patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.is_none().then_some(i))
            .collect()
    }
}

/// Longest text kept of a pattern's name, template or rationale, and of an example title, in
/// characters; longer ones are cut with `…`. A model that loops cannot make a report huge.
pub(crate) const MAX_FIELD_CHARS: usize = 300;
/// Most examples kept per pattern.
pub(crate) const MAX_EXAMPLES: usize = 10;
/// Most unknown cluster numbers listed per answer (the rest are counted in none).
const MAX_UNKNOWN: usize = 20;

fn cap(text: String) -> String {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        None => text,
        Some((end, _)) => {
            let mut cut = text[..end].to_owned();
            cut.push('…');
            cut
        }
    }
}

/// Checks an answer against the batch it answers (`clusters` in prompt order): cluster numbers
/// must exist (others are reported, not used; a repeated number is merged into the first, with
/// one warning per cluster), at most `range.max` patterns are kept per cluster (the first; one
/// warning with the count dropped), fewer than `range.min` are kept with a warning, fields are
/// cut at [`MAX_FIELD_CHARS`] and examples at [`MAX_EXAMPLES`], and each example is marked
/// grounded when it is one of that cluster's titles.
pub(crate) fn validate(
    response: PatternResponse,
    clusters: &[&Cluster],
    range: PatternRange,
) -> Validated {
    let mut out = Validated {
        patterns: vec![None; clusters.len()],
        ..Validated::default()
    };
    let most = usize::try_from(range.max).unwrap_or(usize::MAX);
    let mut times = vec![0usize; clusters.len()];
    let mut dropped = vec![0usize; clusters.len()];
    for answer in response.clusters {
        let slot = usize::try_from(answer.cluster)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < clusters.len());
        let Some(i) = slot else {
            if out.unknown_clusters.len() < MAX_UNKNOWN
                && !out.unknown_clusters.contains(&answer.cluster)
            {
                out.unknown_clusters.push(answer.cluster);
            }
            continue;
        };
        times[i] += 1;
        let have = out.patterns[i].as_ref().map_or(0, Vec::len);
        let room = most.saturating_sub(have);
        let offered = answer
            .patterns
            .iter()
            .filter(|p| !p.pattern.trim().is_empty())
            .count();
        dropped[i] += offered.saturating_sub(room);
        if room == 0 {
            if out.patterns[i].is_none() {
                out.patterns[i] = Some(Vec::new());
            }
            continue;
        }
        let titles: Vec<String> = clusters[i]
            .videos
            .iter()
            .map(|v| normalize_title(&v.title))
            .collect();
        let patterns: Vec<Pattern> = answer
            .patterns
            .into_iter()
            .filter(|p| !p.pattern.trim().is_empty())
            .take(room)
            .map(|p| Pattern {
                examples: p
                    .examples
                    .into_iter()
                    .take(MAX_EXAMPLES)
                    .map(cap)
                    .map(|title| Example {
                        grounded: titles.contains(&normalize_title(&title)),
                        title,
                    })
                    .collect(),
                pattern: cap(p.pattern),
                template: p.template.filter(|t| !t.trim().is_empty()).map(cap),
                rationale: p.rationale.map(cap),
            })
            .collect();
        match &mut out.patterns[i] {
            Some(existing) => existing.extend(patterns),
            slot @ None => *slot = Some(patterns),
        }
    }
    for (i, p) in out.patterns.iter().enumerate() {
        if times[i] > 1 {
            out.warnings.push(Warning::AnsweredMoreThanOnce {
                position: i,
                times: times[i],
            });
        }
        if dropped[i] > 0 {
            out.warnings.push(Warning::PatternsDropped {
                position: i,
                kept: p.as_ref().map_or(0, Vec::len),
                dropped: dropped[i],
            });
        } else if let Some(p) = p {
            let n = u32::try_from(p.len()).unwrap_or(u32::MAX);
            if n < range.min {
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
        for c in word.chars() {
            // ASCII in place: `char::to_lowercase`'s iterator is most of the cost otherwise.
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        }
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
    fn salvage_keeps_only_the_clusters_completed_before_the_cut() {
        let p = r#"{"pattern": "P", "template": "t", "examples": ["a [x] b"], "rationale": "r"}"#;
        // The keyed shape, cut inside the third cluster's second pattern.
        let keyed =
            format!(r#"{{"c1": [{p}], "c2": [{p}, {p}], "c3": [{p}, {{"pattern": "Cut ]}}"#);
        let kept = salvage(&keyed).unwrap();
        assert_eq!(
            kept.clusters
                .iter()
                .map(|c| (c.cluster, c.patterns.len()))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 2)]
        );
        // The design's shape, fenced, cut inside the second cluster.
        let array = format!(
            "```json\n{{\"clusters\": [{{\"cluster\": 4, \"patterns\": [{p}]}}, {{\"cluster\": 5, \"patterns\": [{p}"
        );
        let kept = salvage(&array).unwrap();
        assert_eq!(kept.clusters.len(), 1);
        assert_eq!(kept.clusters[0].cluster, 4);
        // Nothing complete: nothing kept.
        assert!(salvage(&format!(r#"{{"c1": [{p}"#)).is_none());
        assert!(salvage("").is_none());
        assert!(salvage("no json at all").is_none());
    }

    #[test]
    fn control_characters_inside_strings_are_tolerated() {
        let raw = "{\"c1\": [{\"pattern\": \"a\u{1}b\", \"template\": \"t\", \"examples\": [], \"rationale\": \"r\tr\"}]}";
        let parsed = parse(raw).unwrap();
        assert_eq!(parsed.clusters[0].patterns[0].pattern, "a b");
    }

    #[test]
    fn parses_the_keyed_shape_and_json_inside_prose() {
        let keyed = r#"{"c2": [{"pattern": "B", "template": "t", "examples": [], "rationale": "r"}],
                        "c1": [{"pattern": "A", "template": "t", "examples": ["x"], "rationale": "r"}]}"#;
        let mut answer = parse(keyed).unwrap();
        answer.clusters.sort_by_key(|c| c.cluster);
        assert_eq!(
            answer
                .clusters
                .iter()
                .map(|c| (c.cluster, c.patterns[0].pattern.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "A"), (2, "B")]
        );
        let prose = format!("Here you go:\n{keyed}\nAnything else?");
        assert_eq!(parse(&prose).unwrap().clusters.len(), 2);
        let err = parse(r#"{"summary": []}"#).unwrap_err().to_string();
        assert!(err.contains("found \"summary\""), "{err}");
        let err = parse(r#"{"c1": "not a list"}"#).unwrap_err().to_string();
        assert!(
            err.starts_with("the answer is not the requested JSON: c1:"),
            "{err}"
        );
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

    #[test]
    fn a_looping_answer_keeps_what_was_asked_and_warns_once() {
        let a = cluster(&["I Tried X for 30 Days"]);
        let long = "x".repeat(1_000);
        let pattern = format!(
            r#"{{"pattern": "{long}", "template": "I Tried [X]", "examples": [{}], "rationale": "{long}"}}"#,
            vec![format!("\"{long}\""); 30].join(", ")
        );
        let entry = format!(
            r#"{{"cluster": 1, "patterns": [{}]}}"#,
            vec![pattern; 4].join(", ")
        );
        let text = format!(r#"{{"clusters": [{}]}}"#, vec![entry; 1_000].join(", "));
        let v = validate(
            parse(&text).unwrap(),
            &[&a],
            PatternRange { min: 3, max: 5 },
        );
        let kept = v.patterns[0].as_ref().unwrap();
        assert_eq!(kept.len(), 5, "the most asked for, the first ones");
        let p = &kept[0];
        assert_eq!(p.pattern.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(p.pattern.ends_with('…'));
        assert_eq!(
            p.rationale.as_ref().unwrap().chars().count(),
            MAX_FIELD_CHARS + 1
        );
        assert_eq!(p.examples.len(), MAX_EXAMPLES);
        assert_eq!(
            v.warnings,
            vec![
                Warning::AnsweredMoreThanOnce {
                    position: 0,
                    times: 1_000
                },
                Warning::PatternsDropped {
                    position: 0,
                    kept: 5,
                    dropped: 3_995
                }
            ]
        );
        assert_eq!(
            v.warnings[1].to_string(),
            "4000 patterns, more than the 5 asked for at most: 3995 dropped"
        );
    }
}

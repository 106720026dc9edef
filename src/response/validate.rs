//! Checking an answer against its batch: cluster numbers, pattern counts, field lengths, and
//! which examples are real titles.

use super::{Coverage, Example, Pattern, PatternResponse, RawPattern, Template, fold};
use crate::model::Cluster;
use crate::strategy::PatternRange;

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
    /// The template of the cluster's pattern at `pattern` (0-based, among those kept)
    /// matches none of the titles the prompt showed for it. The pattern is kept, and weighs
    /// less as evidence in consolidation.
    UngroundedTemplate {
        /// Position in the batch (0-based).
        position: usize,
        /// The pattern's index among the cluster's kept patterns.
        pattern: usize,
        /// Titles shown for the cluster.
        shown: u32,
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
            | Self::PatternsDropped { position, .. }
            | Self::UngroundedTemplate { position, .. } => position,
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
            Self::UngroundedTemplate { pattern, shown, .. } => write!(
                f,
                "the template of pattern {} matches none of the {shown} titles shown",
                pattern + 1
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
/// cut at [`MAX_FIELD_CHARS`] and examples at [`MAX_EXAMPLES`], each example is marked
/// grounded when it is one of that cluster's titles, and each template gets its
/// [`Coverage`] of the cluster's shown titles (the first `min(size, videos_per_cluster)`),
/// with one warning per template that matches none.
pub(crate) fn validate(
    response: PatternResponse,
    clusters: &[&Cluster],
    range: PatternRange,
    videos_per_cluster: usize,
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
        let patterns = kept_patterns(answer.patterns, clusters[i], room, videos_per_cluster);
        match &mut out.patterns[i] {
            Some(existing) => existing.extend(patterns),
            slot @ None => *slot = Some(patterns),
        }
    }
    let warnings = count_warnings(&out.patterns, &times, &dropped, range);
    out.warnings.extend(warnings);
    for (position, patterns) in out.patterns.iter().enumerate() {
        for (pattern, p) in patterns.iter().flatten().enumerate() {
            if let Some(c) = p.coverage.filter(Coverage::is_ungrounded) {
                out.warnings.push(Warning::UngroundedTemplate {
                    position,
                    pattern,
                    shown: c.shown,
                });
            }
        }
    }
    out
}

/// The titles the prompt shows for `cluster`, folded for template matching: the first
/// `min(size, videos_per_cluster)`, in input order.
pub(crate) fn shown_titles(cluster: &Cluster, videos_per_cluster: usize) -> Vec<String> {
    let shown = usize::try_from(cluster.size)
        .unwrap_or(usize::MAX)
        .min(videos_per_cluster);
    cluster
        .videos
        .iter()
        .take(shown)
        .map(|v| fold(&v.title))
        .collect()
}

/// The coverage of `template` over `shown` (folded titles).
pub(crate) fn coverage(template: &str, shown: &[String]) -> Coverage {
    let matched = Template::new(template).count_folded(shown.iter().map(String::as_str));
    Coverage::new(matched, u32::try_from(shown.len()).unwrap_or(u32::MAX))
}

/// The first `room` non-empty patterns of an answer for `cluster`, fields capped, examples
/// capped and marked grounded when they are the cluster's titles.
fn kept_patterns(
    answer: Vec<RawPattern>,
    cluster: &Cluster,
    room: usize,
    videos_per_cluster: usize,
) -> Vec<Pattern> {
    let titles: Vec<String> = cluster
        .videos
        .iter()
        .map(|v| normalize_title(&v.title))
        .collect();
    let shown = shown_titles(cluster, videos_per_cluster);
    answer
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
            coverage: p
                .template
                .as_deref()
                .filter(|t| !t.trim().is_empty())
                .map(|t| coverage(t, &shown)),
            template: p.template.filter(|t| !t.trim().is_empty()).map(cap),
            rationale: p.rationale.map(cap),
        })
        .collect()
}

/// The warnings on counts, per cluster: answered more than once, patterns dropped over the
/// range, fewer than the range asks.
fn count_warnings(
    patterns: &[Option<Vec<Pattern>>],
    times: &[usize],
    dropped: &[usize],
    range: PatternRange,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        if times[i] > 1 {
            warnings.push(Warning::AnsweredMoreThanOnce {
                position: i,
                times: times[i],
            });
        }
        if dropped[i] > 0 {
            warnings.push(Warning::PatternsDropped {
                position: i,
                kept: p.as_ref().map_or(0, Vec::len),
                dropped: dropped[i],
            });
        } else if let Some(p) = p {
            let n = u32::try_from(p.len()).unwrap_or(u32::MAX);
            if n < range.min {
                warnings.push(Warning::PatternCount {
                    position: i,
                    count: p.len(),
                    range,
                });
            }
        }
    }
    warnings
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
    use crate::response::parse;

    fn cluster(titles: &[&str]) -> Cluster {
        Cluster::new("c", titles.iter().map(|t| Video::new(*t, 1.0)).collect())
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
        let v = validate(response, &[&a, &b], PatternRange { min: 3, max: 5 }, 10);
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
            10,
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

//! Reading an answer: either shape, fenced or in prose, and what a cut-off answer completed.

use super::{ClusterAnswer, PatternResponse};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

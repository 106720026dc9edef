//! Reading a request back: the `CLUSTER n` blocks of the user prompt with their quoted titles,
//! and the "Identify a-b title patterns" range; writing the answer in the shape the request
//! asked for.

use std::fmt::Write as _;

/// A template and the titles that follow it.
pub(super) type Found = (String, Vec<String>);

/// Reads the `CLUSTER n` blocks and their quoted titles back out of a user prompt.
pub(super) fn read_clusters(prompt: &str) -> Vec<(i64, Vec<String>)> {
    let mut clusters: Vec<(i64, Vec<String>)> = Vec::new();
    for line in prompt.lines() {
        if let Some(rest) = line.strip_prefix("CLUSTER ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                clusters.push((n, Vec::new()));
            }
        } else if let (Some(title), Some(current)) = (quoted_title(line), clusters.last_mut()) {
            current.1.push(title);
        }
    }
    clusters
}

fn quoted_title(line: &str) -> Option<String> {
    let body = line.strip_prefix("- \"")?;
    let end = body.rfind("\" (")?;
    Some(body[..end].replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// The "Identify a-b title patterns" range of the prompt; 3-5 if absent.
pub(super) fn pattern_range(prompt: &str) -> (usize, usize) {
    prompt
        .lines()
        .find_map(|l| l.strip_prefix("Identify "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|range| range.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((3, 5))
}

/// The answer to `prompt` with `find` giving each cluster's patterns (from its titles and the
/// most asked for), in the design's shape or, for a request under a batch schema (`keyed`),
/// the schema's `{"c1": [...], ...}`. Clusters numbered in `missing` are left out; `extra`
/// adds an entry for a cluster number the batch does not have.
pub(super) fn answer(
    prompt: &str,
    missing: &[i64],
    extra: Option<i64>,
    keyed: bool,
    find: impl Fn(&[Vec<String>], usize) -> Vec<Vec<Found>>,
) -> String {
    let (_, most) = pattern_range(prompt);
    let mut out = String::from(if keyed { "{" } else { "{\"clusters\": [" });
    let mut first = true;
    let (numbers, titles): (Vec<i64>, Vec<Vec<String>>) = read_clusters(prompt).into_iter().unzip();
    let mut entries: Vec<(i64, Vec<Found>)> = numbers
        .into_iter()
        .zip(find(&titles, most))
        .filter(|(n, _)| !missing.contains(n))
        .collect();
    if let Some(n) = extra {
        entries.push((
            n,
            vec![("Invented [X]".into(), vec!["Not a real title".into()])],
        ));
    }
    for (n, patterns) in entries {
        if !first {
            out.push_str(", ");
        }
        first = false;
        if keyed {
            let _ = write!(out, "\"c{n}\": [");
        } else {
            let _ = write!(out, "{{\"cluster\": {n}, \"patterns\": [");
        }
        let rendered: Vec<String> = patterns
            .iter()
            .map(|(template, examples)| {
                serde_json::json!({
                    "pattern": name(template),
                    "template": template,
                    "examples": examples,
                    "rationale": format!("Shared by {} of the cluster's titles shown", examples.len()),
                })
                .to_string()
            })
            .collect();
        out.push_str(&rendered.join(", "));
        out.push_str(if keyed { "]" } else { "]}" });
    }
    out.push_str(if keyed { "}" } else { "]}" });
    out
}

/// A pattern's name: its template with every slot written `…`.
fn name(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut depth = 0usize;
    for c in template.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push('…');
                }
                depth += 1;
            }
            ']' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clusters_back_from_a_prompt() {
        let prompt = "Analyze 2 video clusters for \"x\":\n\nCLUSTER 1 [WIDE] - Quality: 90%\nTop performers:\n- \"A \\\"quoted\\\" title\" (2.0x)\n---\nCLUSTER 2 [DEEP] - Quality: 60%\n- \"B\" (1.0x)\n\nIdentify 3-5 title patterns per cluster.";
        let c = read_clusters(prompt);
        assert_eq!(
            c,
            vec![
                (1, vec!["A \"quoted\" title".to_owned()]),
                (2, vec!["B".to_owned()])
            ]
        );
        assert_eq!(pattern_range(prompt), (3, 5));
        assert_eq!(name("[N] [Topic] Hacks"), "… … Hacks");
    }
}

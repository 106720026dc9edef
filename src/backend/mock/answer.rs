//! How the mock answers: it reads the `CLUSTER` blocks back out of the prompt and returns, per
//! cluster, the word skeletons its titles share (differing words become `[X]`).

use std::fmt::Write as _;

/// Reads the `CLUSTER n` blocks and their quoted titles back out of a user prompt.
fn read_clusters(prompt: &str) -> Vec<(i64, Vec<String>)> {
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
fn pattern_range(prompt: &str) -> (usize, usize) {
    prompt
        .lines()
        .find_map(|l| l.strip_prefix("Identify "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|range| range.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((3, 5))
}

/// Patterns of one cluster: for each pair of titles, their longest common subsequence of words
/// (ignoring case), with `[X]` wherever either title has words in between; ranked by how many
/// titles follow the skeleton, then by how many words it fixes.
fn skeletons(titles: &[String], most: usize) -> Vec<(String, Vec<String>)> {
    let words: Vec<Vec<&str>> = titles
        .iter()
        .map(|t| t.split_whitespace().collect())
        .collect();
    let mut found: Vec<(String, Vec<String>, usize)> = Vec::new();
    for (i, a) in words.iter().enumerate() {
        for b in &words[i + 1..] {
            let parts = skeleton(a, b);
            let fixed = parts.iter().filter(|p| **p != "[X]").count();
            if fixed < 2 || !parts.contains(&"[X]") {
                continue;
            }
            let template = parts.join(" ");
            if found.iter().any(|f| f.0 == template) {
                continue;
            }
            let examples: Vec<String> = titles
                .iter()
                .zip(&words)
                .filter(|(_, w)| matches_skeleton(w, &parts))
                .map(|(t, _)| t.clone())
                .collect();
            found.push((template, examples, fixed));
        }
    }
    found.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });
    let mut out: Vec<(String, Vec<String>)> = found
        .into_iter()
        .take(most)
        .map(|(t, e, _)| (t, e))
        .collect();
    if out.is_empty() {
        if let Some(first) = titles.first() {
            let lead: Vec<&str> = first.split_whitespace().take(2).collect();
            out.push((format!("{} [X]", lead.join(" ")), vec![first.clone()]));
        }
    }
    out
}

/// A template and the titles that follow it.
type Skeleton = (String, Vec<String>);

/// The longest common subsequence of two word lists, with `[X]` for the gaps.
#[allow(clippy::many_single_char_names)] // the textbook LCS names
fn skeleton<'w>(a: &[&'w str], b: &[&str]) -> Vec<&'w str> {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // table[i * width + j]: LCS length of a[i..] and b[j..].
    let mut table = vec![0usize; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * width + j] = if a[i].eq_ignore_ascii_case(b[j]) {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut parts: Vec<&'w str> = Vec::new();
    let mut gap = false;
    while i < n && j < m {
        if a[i].eq_ignore_ascii_case(b[j]) {
            if gap && parts.last() != Some(&"[X]") {
                parts.push("[X]");
            }
            gap = false;
            parts.push(a[i]);
            i += 1;
            j += 1;
        } else {
            gap = true;
            if table[(i + 1) * width + j] >= table[i * width + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    if (gap || i < n || j < m) && parts.last() != Some(&"[X]") {
        parts.push("[X]");
    }
    parts
}

fn matches_skeleton(words: &[&str], parts: &[&str]) -> bool {
    // Fixed words must appear in order; a placeholder stands for one or more words.
    let fixed: Vec<&str> = parts.iter().copied().filter(|p| *p != "[X]").collect();
    let mut it = words.iter();
    fixed.iter().all(|f| it.any(|w| w.eq_ignore_ascii_case(f)))
}

/// The mock's answer to `prompt`, in the design's shape or, for a request under a batch
/// schema (`keyed`), the schema's `{"c1": [...], ...}`.
pub(super) fn answer_from_prompt(
    prompt: &str,
    missing: &[i64],
    extra: Option<i64>,
    keyed: bool,
) -> String {
    let (_, most) = pattern_range(prompt);
    let mut out = String::from(if keyed { "{" } else { "{\"clusters\": [" });
    let mut first = true;
    let mut entries: Vec<(i64, Vec<Skeleton>)> = read_clusters(prompt)
        .into_iter()
        .filter(|(n, _)| !missing.contains(n))
        .map(|(n, titles)| (n, skeletons(&titles, most)))
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
                    "pattern": template.replace("[X]", "…"),
                    "template": template,
                    "examples": examples,
                    "rationale": format!("Shared by {} of the cluster's top titles", examples.len()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_find_shared_words() {
        let titles: Vec<String> = [
            "I Tried the Flair 58 for 30 Days",
            "I Tried the Gaggia Classic for 100 Days",
            "Why Your Espresso Tastes Sour",
        ]
        .map(String::from)
        .to_vec();
        let s = skeletons(&titles, 5);
        assert_eq!(s[0].0, "I Tried the [X] for [X] Days");
        assert_eq!(s[0].1.len(), 2);
        let a = ["I", "Tried", "Chess", "for", "30", "Days"];
        let b = ["I", "Tried", "Chess", "Gear", "for", "100", "Days"];
        assert_eq!(skeleton(&a, &b).join(" "), "I Tried Chess [X] for [X] Days");
    }

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
    }
}

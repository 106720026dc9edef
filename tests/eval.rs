//! Patterns measured (`dynbatch::eval`): the offline finder against planted formulas across
//! topic clusters and real per-channel formulas, truthful answers from a loopback server, an
//! independent scorer of the same rule, and bad labels.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::sync::Mutex;

use dynbatch::backend::LlmBackend;
use dynbatch::backend::formulas::FormulaFinder;
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::eval::{Evaluation, LabelError, LabelSet, evaluate};
use dynbatch::prompt::OutputMode;
use dynbatch::report::DiscoveryReport;
use dynbatch::{Batcher, Cluster, RunConfig, Runner, TokioTimer};
use regex::Regex;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn data(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/examples/data/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn set(name: &str) -> (Vec<Cluster>, LabelSet, Vec<Value>) {
    let clusters = serde_json::from_str(&data(&format!("{name}-clusters.json"))).unwrap();
    let labels_text = data(&format!("{name}-labels.json"));
    let raw: Vec<Value> = serde_json::from_str(&labels_text).unwrap();
    (clusters, LabelSet::from_json(&labels_text).unwrap(), raw)
}

async fn run<B: LlmBackend>(clusters: &[Cluster], backend: B) -> DiscoveryReport<'_> {
    let config = RunConfig::builder()
        .request_with(|r| r.output = OutputMode::JsonObject)
        .build()
        .unwrap();
    let runner = Runner::new(backend, TokioTimer).with_config(config);
    Batcher::default()
        .discover(clusters, "videos", &runner)
        .await
        .unwrap()
}

/// The rule of the `eval` module's docs, written again from its text with the `regex` crate,
/// sharing no code with the library: what `evaluate`'s figures must agree with.
mod independent {
    use super::{Cluster, DiscoveryReport, Regex, Value};

    /// A template as a regex: placeholders are `.+`, white space `\s+`, the rest literal, the
    /// whole title, any case.
    pub(super) fn template_regex(template: &str) -> Regex {
        let placeholder =
            Regex::new(r"\[[^\[\]\{\}<>]*\]|\{[^\[\]\{\}<>]*\}|<[^\[\]\{\}<>]*>|…|\.{3,}").unwrap();
        let mut pattern = String::from("(?is)^");
        let mut last = 0;
        let literal = |text: &str, out: &mut String| {
            let mut gap = false;
            for c in text.chars() {
                if c.is_whitespace() {
                    gap = true;
                    continue;
                }
                if gap {
                    out.push_str(r"\s+");
                    gap = false;
                }
                out.push_str(&regex::escape(&c.to_string()));
            }
            if gap {
                out.push_str(r"\s+");
            }
        };
        let text = template.trim();
        let mut previous_wild = false;
        for m in placeholder.find_iter(text) {
            let between = &text[last..m.start()];
            if !(previous_wild && between.is_empty()) {
                literal(between, &mut pattern);
                pattern.push_str(".+");
            }
            previous_wild = true;
            last = m.end();
        }
        literal(&text[last..], &mut pattern);
        pattern.push('$');
        Regex::new(&pattern).unwrap()
    }

    /// Literal words: runs of letters and digits once placeholders are removed.
    pub(super) fn literal_words(template: &str) -> usize {
        let placeholder =
            Regex::new(r"\[[^\[\]\{\}<>]*\]|\{[^\[\]\{\}<>]*\}|<[^\[\]\{\}<>]*>|…|\.{3,}").unwrap();
        placeholder
            .replace_all(template, " ")
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .count()
    }

    /// Titles as the rule compares them: trimmed, zero-width characters dropped.
    fn clean(title: &str) -> String {
        title
            .chars()
            .filter(|c| !matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'))
            .collect::<String>()
            .trim()
            .to_owned()
    }

    pub(super) struct Figures {
        pub(super) recall: f64,
        pub(super) fragments: f64,
        pub(super) generic: f64,
        pub(super) grounded: f64,
    }

    fn finds(re: &Regex, literal: usize, titles: &[String], label: &[bool]) -> (bool, bool) {
        let matched: Vec<bool> = titles.iter().map(|t| re.is_match(&clean(t))).collect();
        let m = matched.iter().filter(|&&x| x).count();
        let l = label.iter().filter(|&&x| x).count();
        let both = matched
            .iter()
            .zip(label)
            .filter(|(a, b)| **a && **b)
            .count();
        let everything = m == titles.len() && l < titles.len();
        let found = literal > 0 && l > 0 && 2 * both >= l && 2 * both >= m && !everything;
        let mostly = literal > 0 && both > 0 && 2 * both >= m;
        (found, mostly)
    }

    pub(super) fn score(
        report: &DiscoveryReport<'_>,
        clusters: &[Cluster],
        labels: &[Value],
    ) -> Figures {
        let vpc = report.plan.strategy.videos_per_cluster;
        let mut shown: Vec<(String, Vec<String>)> = Vec::new();
        for batch in &report.plan.batches {
            for id in &batch.clusters {
                let c = clusters.iter().find(|c| c.id == id.as_ref()).unwrap();
                let n = (c.size as usize).min(vpc);
                let titles = c.videos.iter().take(n).map(|v| v.title.clone()).collect();
                shown.push((c.id.clone(), titles));
            }
        }
        let own = |id: &str| -> Vec<String> {
            report
                .cluster_patterns
                .iter()
                .filter(|c| c.id == id)
                .flat_map(|c| c.patterns.iter().filter_map(|p| p.template.clone()))
                .collect()
        };
        let consolidated: Vec<String> = report
            .patterns
            .iter()
            .filter_map(|p| p.template.clone())
            .collect();
        let all: Vec<String> = shown.iter().flat_map(|(_, t)| t.clone()).collect();
        let (mut eligible, mut found, mut fragments) = (0, 0, 0);
        for label in labels {
            let re = Regex::new(label["regex"].as_str().unwrap()).unwrap();
            let (titles, templates) = match label["cluster"].as_str() {
                Some(id) => match shown.iter().find(|(c, _)| c == id) {
                    Some((_, t)) => (t.clone(), own(id)),
                    None => continue,
                },
                None => (all.clone(), consolidated.clone()),
            };
            let target: Vec<bool> = titles.iter().map(|t| re.is_match(t)).collect();
            if target.iter().filter(|&&t| t).count() < 2 {
                continue;
            }
            eligible += 1;
            let verdicts: Vec<(bool, bool)> = templates
                .iter()
                .map(|t| finds(&template_regex(t), literal_words(t), &titles, &target))
                .collect();
            if verdicts.iter().any(|v| v.0) {
                found += 1;
                fragments += verdicts.iter().filter(|v| v.1).count();
            }
        }
        let (mut templates, mut generic, mut grounded) = (0, 0, 0);
        for (id, titles) in &shown {
            for t in own(id) {
                templates += 1;
                generic += usize::from(literal_words(&t) < 2);
                let re = template_regex(&t);
                grounded += usize::from(titles.iter().any(|x| re.is_match(&clean(x))));
            }
        }
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Figures {
            recall: ratio(found, eligible),
            fragments: ratio(fragments, found),
            generic: ratio(generic, templates),
            grounded: ratio(grounded, templates),
        }
    }
}

/// `evaluate`'s figures agree with the independent scorer's within ±0.02.
fn agree(
    report: &DiscoveryReport<'_>,
    clusters: &[Cluster],
    labels: &LabelSet,
    raw: &[Value],
) -> Evaluation {
    let ours = evaluate(report, clusters, labels);
    let theirs = independent::score(report, clusters, raw);
    for (name, a, b) in [
        ("recall", ours.recall.unwrap_or(0.0), theirs.recall),
        (
            "fragments",
            ours.fragments_per_formula.unwrap_or(0.0),
            theirs.fragments,
        ),
        ("generic", ours.generic_share.unwrap_or(0.0), theirs.generic),
        (
            "grounded",
            ours.grounded_share.unwrap_or(0.0),
            theirs.grounded,
        ),
    ] {
        assert!(
            (a - b).abs() <= 0.02,
            "{name}: evaluate {a:.3}, independent {b:.3}"
        );
    }
    ours
}

#[tokio::test]
async fn offline_the_planted_formulas_are_found_across_topics() {
    for name in ["planted/tune", "planted/holdout"] {
        let (clusters, labels, raw) = set(name);
        let report = run(&clusters, FormulaFinder::new()).await;
        let e = agree(&report, &clusters, &labels, &raw);
        assert!(e.recall.unwrap() >= 0.9, "{name}: {e}");
        assert!(e.fragments_per_formula.unwrap() <= 1.3, "{name}: {e}");
        assert!(e.generic_share.unwrap() <= 0.1, "{name}: {e}");
        assert_eq!(e.grounded_share, Some(1.0), "{name}: {e}");
    }
}

#[tokio::test]
async fn offline_real_per_channel_formulas_are_found_no_worse_than_the_finder_before() {
    // Recall of the finder this one replaced (per-cluster word skeletons), measured with
    // `evaluate --report` on its reports: 16 of 18 and 11 of 13 labels.
    for (name, before) in [("real/tune", 16.0 / 18.0), ("real/holdout", 11.0 / 13.0)] {
        let (clusters, labels, raw) = set(name);
        let report = run(&clusters, FormulaFinder::new()).await;
        let e = agree(&report, &clusters, &labels, &raw);
        assert!(e.recall.unwrap() >= before - 1e-9, "{name}: {e}");
    }
}

/// A loopback OpenAI-compatible server that answers every cluster with the true formulas of
/// its shown titles, its slots named differently per cluster.
struct Truthful {
    formulas: Vec<(Regex, &'static str)>,
    calls: Mutex<usize>,
}

impl Respond for Truthful {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let prompt = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect::<String>();
        *self.calls.lock().unwrap() += 1;
        let mut answers = Vec::new();
        let mut current: Option<(u64, Vec<String>)> = None;
        for line in prompt.lines().chain(std::iter::once("CLUSTER 0")) {
            if let Some(rest) = line.strip_prefix("CLUSTER ") {
                if let Some((n, titles)) = current.take() {
                    let slot = ["Topic", "Hobby", "X"][n as usize % 3];
                    let patterns: Vec<Value> = self
                        .formulas
                        .iter()
                        .filter(|(re, _)| titles.iter().any(|t| re.is_match(t)))
                        .map(|(re, template)| {
                            let examples: Vec<&String> =
                                titles.iter().filter(|t| re.is_match(t)).collect();
                            json!({"pattern": template.replace("{topic}", "…"),
                                   "template": template.replace("{topic}", &format!("[{slot}]")),
                                   "examples": examples})
                        })
                        .collect();
                    answers.push(json!({"cluster": n, "patterns": patterns}));
                }
                current = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, Vec::new()));
            } else if let (Some(title), Some((_, titles))) = (
                line.strip_prefix("- \"")
                    .and_then(|l| l.rfind("\" (").map(|e| &l[..e])),
                current.as_mut(),
            ) {
                titles.push(title.replace("\\\"", "\""));
            }
        }
        let content = json!({"clusters": answers}).to_string();
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "t", "object": "chat.completion", "model": "truthful",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50}
        }))
    }
}

#[tokio::test]
async fn truthful_answers_score_full_recall_and_one_pattern_per_formula() {
    let (clusters, labels, raw) = set("planted/tune");
    // The planted formulas as the generator writes them, each with its label's regex.
    let templates = [
        ("hacks", "[N] {topic} Hacks That Actually Work"),
        ("overrated", "Why {topic} Is Overrated"),
        ("truth", "The Truth About {topic}"),
        ("tried", "I Tried {topic} for [N] Days"),
        (
            "beginners",
            "{topic} for Beginners: Everything You Need to Know",
        ),
        ("mistakes", "Stop Making These [N] {topic} Mistakes"),
        ("versus", "{topic} vs [Other]: Which Is Better?"),
        ("spent", "I Spent $[Amount] on {topic} So You Don't Have To"),
        (
            "minutes",
            "How to Get Better at {topic} in [N] Minutes a Day",
        ),
        ("tier", "{topic} Tier List ([Year] Edition)"),
        ("secret", "Nobody Talks About This {topic} Secret"),
        ("wish", "[N] Things I Wish I Knew Before Starting {topic}"),
    ];
    let formulas = templates
        .iter()
        .map(|(name, template)| {
            let label = raw.iter().find(|l| l["name"] == *name).unwrap();
            (
                Regex::new(label["regex"].as_str().unwrap()).unwrap(),
                *template,
            )
        })
        .collect();
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Truthful {
            formulas,
            calls: Mutex::new(0),
        })
        .mount(&server)
        .await;
    let backend = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap();
    let report = run(&clusters, backend).await;
    let e = agree(&report, &clusters, &labels, &raw);
    assert_eq!(e.recall, Some(1.0), "{e}");
    assert_eq!(e.fragments_per_formula, Some(1.0), "{e}");
    assert_eq!(e.generic_share, Some(0.0), "{e}");
}

#[tokio::test]
async fn a_scorer_of_the_same_rule_agrees_on_noisy_answers() {
    // Templates of every kind: generic, prose, partial, every placeholder form.
    let noisy = [
        "[X]",
        "The final five patterns are based on titles",
        "Why ... Is Overrated",
        "{n} <topic> Hacks That Actually Work",
        "… Tier List (… Edition)",
        "I Tried [X]",
        "[A][B] Days",
        "The Truth About [X]",
        "[X] vs [Y]: Which Is Better?",
    ];
    let (clusters, labels, raw) = set("planted/tune");
    let mut report = run(&clusters, FormulaFinder::new()).await;
    for (k, c) in report.cluster_patterns.iter_mut().enumerate() {
        for (j, p) in c.patterns.iter_mut().enumerate() {
            if (k + j) % 2 == 0 {
                p.template = Some(noisy[(k * 3 + j) % noisy.len()].to_owned());
            }
        }
    }
    for (k, p) in report.patterns.iter_mut().enumerate() {
        if k % 3 == 0 {
            p.template = Some(noisy[k % noisy.len()].to_owned());
        }
    }
    let e = agree(&report, &clusters, &labels, &raw);
    assert!(e.recall.unwrap() < 1.0, "{e}");
}

#[test]
fn bad_labels_are_errors_that_name_them_and_unknown_clusters_one_warning() {
    assert!(matches!(LabelSet::from_json("[]"), Err(LabelError::Empty)));
    assert!(matches!(
        LabelSet::from_json("{\"name\": 1}"),
        Err(LabelError::Json(_))
    ));
    let bad = LabelSet::from_json(
        r#"[{"name": "ok", "regex": "a"}, {"name": "broken", "regex": "(unclosed"}]"#,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("label \"broken\""), "{bad}");
    let (clusters, _, _) = set("real/tune");
    let labels = LabelSet::from_json(
        r#"[{"name": "a", "regex": "x", "cluster": "nowhere"}, {"name": "b", "regex": "x", "cluster": "elsewhere"},
            {"name": "c", "regex": "x", "cluster": "nfl"}]"#,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let report = rt.block_on(run(&clusters, FormulaFinder::new()));
    let e = evaluate(&report, &clusters, &labels);
    assert_eq!(e.warnings.len(), 1, "{:?}", e.warnings);
    assert!(
        e.warnings[0].contains("nowhere, elsewhere"),
        "{:?}",
        e.warnings
    );
}

#[test]
fn the_evaluate_example_prints_the_figures_and_names_a_bad_label() {
    use std::process::Command;
    let exe = crate::loopback::example("evaluate");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/real");
    let out = Command::new(&exe)
        .args([
            format!("{dir}/tune-clusters.json"),
            format!("{dir}/tune-labels.json"),
        ])
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (clusters, labels, _) = set("real/tune");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let report = rt.block_on(run(&clusters, FormulaFinder::new()));
    let ours = evaluate(&report, &clusters, &labels);
    assert_eq!(figures["found"], ours.found);
    assert_eq!(figures["eligible"], ours.eligible);
    let bad = std::env::temp_dir().join(format!("dynbatch-bad-labels-{}.json", std::process::id()));
    std::fs::write(&bad, r#"[{"name": "broken", "regex": "(oops"}]"#).unwrap();
    let out = Command::new(&exe)
        .arg(format!("{dir}/tune-clusters.json"))
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("label \"broken\""), "{stderr}");
}

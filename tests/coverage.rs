//! Template coverage in every report: how many of its cluster's shown titles each template
//! matches, computed by dynbatch (not the model's claim), in the JSON, the HTML page and the
//! consolidated patterns; one warning per template that matches none, and such a template
//! weighs less as evidence.

#![allow(clippy::unwrap_used)]

use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::html::{Page, to_html};
use dynbatch::patterns::Coverage;
use dynbatch::{Batcher, BatchingConfig, Cluster, RunConfig, Runner, TokioTimer, Video};

/// Two clusters of five titles, in one batch of two.
fn clusters() -> Vec<Cluster> {
    (0..2)
        .map(|i| {
            let topic = ["Sourdough", "Chess"][i];
            let mut c = Cluster::new(
                format!("c{i}"),
                vec![
                    Video::new(format!("I Tried {topic} for 30 Days"), 5.0),
                    Video::new(format!("I Tried {topic} for 100 Days"), 4.0),
                    Video::new(format!("Why {topic} Is Overrated"), 3.0),
                    Video::new(format!("The Truth About {topic}"), 2.0),
                    Video::new(format!("I Tried {topic} for 7 Days"), 1.0),
                ],
            );
            c.size = 40;
            c.avg_performance = 4.0;
            c.thread_sources = vec!["a".into(), "b".into(), "c".into()];
            c
        })
        .collect()
}

/// An answer: cluster 1 gets a grounded template and prose where a template should be;
/// cluster 2 gets the same formula, ungrounded in its words, and the same prose.
const ANSWER: &str = r#"{"clusters": [
  {"cluster": 1, "patterns": [
    {"pattern": "30-day", "template": "I Tried [X] for [N] Days", "examples": []},
    {"pattern": "prose", "template": "The final five patterns are based on specific titles", "examples": []}]},
  {"cluster": 2, "patterns": [
    {"pattern": "30-day", "template": "I Tried [X] for [N] Weeks", "examples": []},
    {"pattern": "prose", "template": "The final five patterns are based on specific titles", "examples": []}]}
]}"#;

#[tokio::test]
async fn coverage_is_computed_reported_warned_and_weighed() {
    let clusters = clusters();
    let config = BatchingConfig::builder().min_batch_size(2).build().unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap();
    assert_eq!(plan.batches.len(), 1);
    let shown = plan.strategy.videos_per_cluster.min(40).min(5);
    let shown = u32::try_from(shown).unwrap();
    let mock = MockBackend::scripted([MockStep::Content(ANSWER.into())]);
    let report = Runner::new(mock, TokioTimer)
        .with_config(RunConfig::default())
        .run(plan, &clusters, "hobbies")
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (2, 0));
    let coverage = |cluster: usize, pattern: usize| {
        let id = format!("c{cluster}");
        let patterns = &report
            .cluster_patterns
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .patterns;
        patterns[pattern].coverage.unwrap()
    };
    // "I Tried [X] for [N] Days" matches the three 'I Tried' titles of the five shown.
    assert_eq!(coverage(0, 0), Coverage::new(3.min(shown), shown));
    assert_eq!(coverage(1, 0), Coverage::new(0, shown));
    assert_eq!(coverage(0, 1), Coverage::new(0, shown));
    // One warning per template that matches nothing, naming it.
    let ungrounded: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("matches none of the"))
        .collect();
    assert_eq!(ungrounded.len(), 3, "{:?}", report.warnings);
    assert!(
        ungrounded
            .iter()
            .any(|w| w.contains("cluster c1") && w.contains("\"I Tried [X] for [N] Weeks\""))
    );
    // In the JSON.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["cluster_patterns"][0]["patterns"][0]["coverage"],
        serde_json::json!({"matched": 3, "shown": shown})
    );
    // Consolidated: coverage summed; an ungrounded template weighs half as evidence.
    let prose = report
        .patterns
        .iter()
        .find(|p| {
            p.template
                .as_deref()
                .is_some_and(|t| t.starts_with("The final"))
        })
        .unwrap();
    assert_eq!(prose.coverage, Some(Coverage::new(0, 2 * shown)));
    let tried = report
        .patterns
        .iter()
        .find(|p| p.template.as_deref() == Some("I Tried [X] for [N] Days"))
        .unwrap();
    let weeks = report
        .patterns
        .iter()
        .find(|p| p.template.as_deref() == Some("I Tried [X] for [N] Weeks"));
    if let Some(weeks) = weeks {
        // Not merged: the same cluster evidence, halved.
        let one = |id: &str| {
            let e = report.plan.entry(id).unwrap();
            e.priority.unwrap() * 4.0
        };
        assert!((tried.evidence - one("c0")).abs() < 1e-9);
        assert!((weeks.evidence - one("c1") * 0.5).abs() < 1e-9);
    } else {
        // Merged by shared words: the grounded one's evidence plus half the other's.
        assert_eq!(tried.clusters.len(), 2);
    }
    // On the page.
    let page = to_html(&report, &Page::new());
    assert!(page.contains("covers"));
    assert!(page.contains(&format!("<td class=\"n\">{}</td>", tried.coverage.unwrap())));
}

//! The quality probe (`RunConfig::quality_probe`): after the run, some batched clusters are
//! asked again alone, and the report says how far the batched answers agree with the single
//! ones, with the extra calls, in the JSON and on the page; a low agreement warns.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::html::{Page, to_html};
use dynbatch::{Batcher, BatchingConfig, Cluster, RunConfig, RunEvent, Runner, TokioTimer};

fn clusters() -> Vec<Cluster> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/planted/tune-clusters.json"
    ))
    .unwrap();
    let all: Vec<Cluster> = serde_json::from_str(&text).unwrap();
    all.into_iter().take(12).collect()
}

#[tokio::test]
async fn the_probe_asks_clusters_again_alone_and_reports_agreement() {
    let clusters = clusters();
    let config = BatchingConfig::builder().min_batch_size(3).build().unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap();
    let batches = plan.batches.len();
    let mock = MockBackend::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let report = Runner::new(mock.clone(), TokioTimer)
        .with_config(RunConfig::builder().quality_probe(4).build().unwrap())
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .run(plan, &clusters, "hobbies")
        .await
        .unwrap();
    let probe = report.quality_probe.as_ref().unwrap();
    assert_eq!(probe.clusters.len(), 4);
    assert_eq!(probe.calls, 4);
    assert_eq!(mock.calls(), batches as u64 + 4);
    // Every probed call is a request of one cluster, and it is one of the probed ones.
    let requests = mock.requests();
    for (request, probed) in requests[batches..].iter().zip(&probe.clusters) {
        let batch = request.batch.as_ref().unwrap();
        assert_eq!(batch.clusters, vec![probed.id.clone()]);
    }
    for c in &probe.clusters {
        assert!(
            c.batch_size >= 2 && (1..=c.batch_size).contains(&c.position),
            "{c:?}"
        );
    }
    assert!(probe.compared > 0);
    let agreement = probe.agreement.unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    // The probe's calls are not the run's: no event, no usage counted twice.
    let succeeded = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RunEvent::Succeeded { .. }))
        .count();
    assert_eq!(succeeded, batches);
    assert_eq!(report.usage.calls_made, batches as u64);
    // In the JSON and on the page.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["quality_probe"]["calls"], 4);
    let page = to_html(&report, &Page::new());
    assert!(page.contains("Quality probe"));
    assert!(page.contains(&probe.clusters[0].id));
}

#[tokio::test]
async fn batched_answers_that_disagree_with_single_ones_warn() {
    let clusters = clusters();
    let config = BatchingConfig::builder()
        .min_batch_size(12)
        .max_batch_size(12)
        .target_tokens_per_batch(100_000)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap();
    assert_eq!(plan.batches.len(), 1);
    // The batched call invents a formula for every cluster; alone, each is answered from its
    // titles.
    let entries: Vec<String> = (1..=12)
        .map(|n| format!(r#"{{"cluster": {n}, "patterns": [{{"pattern": "x", "template": "Invented [X] Formula"}}]}}"#))
        .collect();
    let invented = format!(r#"{{"clusters": [{}]}}"#, entries.join(", "));
    let mock = MockBackend::scripted([MockStep::Content(invented)]).then_answer();
    let report = Runner::new(mock, TokioTimer)
        .with_config(RunConfig::builder().quality_probe(3).build().unwrap())
        .run(plan, &clusters, "hobbies")
        .await
        .unwrap();
    let probe = report.quality_probe.as_ref().unwrap();
    assert_eq!(probe.agreement, Some(0.0), "{probe:?}");
    assert!(probe.is_low());
    let warned: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.starts_with("quality probe:"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", report.warnings);
    assert!(warned[0].contains("0%"), "{}", warned[0]);
}

#[test]
fn the_threshold_is_a_share() {
    assert!(
        RunConfig::builder()
            .quality_probe_threshold(1.5)
            .build()
            .is_err()
    );
    assert!(
        RunConfig::builder()
            .quality_probe_threshold(0.8)
            .build()
            .is_ok()
    );
}

//! Every input the fuzzers (`fuzz/`, `scripts/fuzz.sh`) ever flagged, kept under
//! `tests/fuzz_regressions/TARGET-N` and replayed here through the public API, so that what
//! was found stays fixed without a nightly toolchain.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::backend::openai::{OpenAiBuilder, read_batch_file};
use dynbatch::batch::{BatchInput, import};
use dynbatch::{Batcher, BatchingConfig, Cluster};
use dynbatch::{RunConfig, Runner};

fn findings(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{target}-")))
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    found.sort();
    found
}

fn three() -> (Vec<Cluster>, dynbatch::BatchPlan<'static>) {
    let clusters = dynbatch::testing::distinct_clusters(3);
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(3)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap().into_owned();
    (clusters, plan)
}

#[test]
fn batch_result_files_that_once_broke_an_invariant() {
    let (clusters, plan) = three();
    let encoder = OpenAiBuilder::default()
        .api_key("unused")
        .build_batches()
        .unwrap();
    let input = BatchInput::new(&plan, &clusters, "x", &RunConfig::default(), &encoder).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let found = findings("batch_lines");
    assert!(!found.is_empty());
    for (path, bytes) in found {
        let text = input.custom_ids().iter().enumerate().fold(
            String::from_utf8_lossy(&bytes).into_owned(),
            |t, (i, id)| t.replace(&format!("@{i}"), id),
        );
        // Read as the output file and as the error file, each imported into a report: every
        // cluster accounted for, whatever the lines say.
        for name in ["output", "errors"] {
            let report = runtime
                .block_on(import(
                    plan.clone(),
                    &clusters,
                    "x",
                    &RunConfig::default(),
                    read_batch_file(name, &text),
                ))
                .unwrap();
            report
                .check_accounting()
                .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(report.outcomes.len(), plan.counts().batched, "{path:?}");
        }
    }
}

#[test]
fn answers_that_once_broke_the_parser() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    for (path, bytes) in findings("response") {
        let (clusters, plan) = three();
        let content = String::from_utf8_lossy(&bytes).into_owned();
        let mock = MockBackend::scripted(vec![MockStep::Content(content); 3]).then_answer();
        let runner = Runner::new(mock, TokioTimer).with_config(
            RunConfig::builder()
                .max_retry_after(Duration::from_secs(1))
                .build()
                .unwrap(),
        );
        let report = runtime.block_on(runner.run(plan, &clusters, "x")).unwrap();
        report
            .check_accounting()
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    }
}

#[test]
fn cluster_files_that_once_split_the_readers() {
    for (path, bytes) in findings("read_clusters") {
        let expected: Result<Vec<Cluster>, _> = serde_json::from_slice(&bytes);
        let serial = dynbatch::read_clusters(&bytes[..]);
        let parallel =
            dynbatch::read_clusters_parallel(&bytes[..], std::num::NonZeroUsize::new(2).unwrap());
        match (expected, serial, parallel) {
            (Ok(e), Ok(s), Ok(p)) => assert!(e == s && e == p, "{path:?}"),
            (Err(_), Err(_), Err(_)) => {}
            (e, s, p) => panic!("{path:?}: {:?} {:?} {:?}", e.is_ok(), s.is_ok(), p.is_ok()),
        }
    }
}

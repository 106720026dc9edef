//! `OpenAI`'s Batch API (feature `openai`), for very large runs at a lower price: export a plan
//! to the Batch API's input JSONL, and import its output (and error) JSONL into the same
//! [`DiscoveryReport`] the runner produces.
//!
//! Import replays the results through the runner itself (one call per batch, no retries, splits
//! or re-asks, which would need another batch), so validation and consolidation are exactly the
//! runner's. Submitting, polling and downloading are left to the `OpenAI` CLI or dashboard.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::openai::{MaxTokensField, parse_response, request_body};
use super::{BackendError, ChatRequest, ChatResponse, LlmBackend};
use crate::error::Error;
use crate::model::Cluster;
use crate::patterns::DiscoveryReport;
use crate::plan::BatchPlan;
use crate::run::{RunConfig, Runner, render_requests};
use crate::timer::{Sleep, Timer};

/// The Batch API's discount on both prompt and completion tokens.
pub const BATCH_DISCOUNT: f64 = 0.5;

/// The stable, unique `custom_id` of a plan's batch: its index and a hash of its cluster ids,
/// so a re-export of the same plan gives the same ids and a different plan cannot match.
pub fn custom_id(plan: &BatchPlan<'_>, batch: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(plan.strategy.kind.as_str().as_bytes());
    if let Some(b) = plan.batches.get(batch) {
        for id in &b.clusters {
            eat(&[0x1f]);
            eat(id.as_bytes());
        }
    }
    format!("dynbatch-{batch:04}-{hash:016x}")
}

/// The Batch API input: one line per batch, `{"custom_id", "method": "POST", "url":
/// "/v1/chat/completions", "body": <the exact request the runner would send>}`.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub fn export(
    plan: &BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    config: &RunConfig,
    max_tokens_field: MaxTokensField,
) -> Result<String, Error> {
    let requests = render_requests(plan, clusters, concept, &config.request)?;
    let mut out = String::new();
    for (i, request) in requests.iter().enumerate() {
        let line = serde_json::json!({
            "custom_id": custom_id(plan, i),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": request_body(request, None, max_tokens_field),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct Line {
    custom_id: String,
    #[serde(default)]
    response: Option<LineResponse>,
    #[serde(default)]
    error: Option<LineError>,
}

#[derive(Debug, Deserialize)]
struct LineResponse {
    status_code: u16,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    body: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct LineError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone)]
enum Outcome {
    Response {
        status: u16,
        request_id: Option<String>,
        body: String,
    },
    Error(String),
}

/// Answers each rendered request from its Batch API result line.
#[derive(Debug)]
struct Replay {
    by_prompt: HashMap<String, (String, Option<Outcome>)>,
}

#[async_trait]
impl LlmBackend for Replay {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let prompt = request.user_text();
        let permanent = |m: String| BackendError::Other {
            retryable: false,
            source: m.into(),
        };
        match self.by_prompt.get(&prompt) {
            None => Err(permanent(
                "the request is not part of the exported batch".into(),
            )),
            Some((id, None)) => Err(permanent(format!(
                "no line for {id} in the Batch API output or error file"
            ))),
            Some((id, Some(Outcome::Error(message)))) => {
                Err(permanent(format!("the Batch API failed {id}: {message}")))
            }
            Some((
                _,
                Some(Outcome::Response {
                    status,
                    request_id,
                    body,
                }),
            )) => parse_response(
                *status,
                &HeaderMap::new(),
                body,
                request_id.clone(),
                &request.model,
            )
            // A line of a finished batch: nothing to wait for or stop, whatever its status.
            .map_err(|e| permanent(format!("{}: {e}", e.kind()))),
        }
    }
}

/// Replay never waits: no retries are made, and results are already there.
#[derive(Debug)]
struct NoWait;

impl Timer for NoWait {
    fn sleep(&self, _: Duration) -> Sleep {
        Box::pin(futures::future::pending())
    }
}

/// Imports Batch API results into a [`DiscoveryReport`]: `output` and `errors` are the
/// contents of the output and error files (JSONL; order does not matter). `plan`, `clusters`,
/// `concept` and `config.request` must be those of the export. Lines with errors and batches
/// with no line become failed clusters with reasons; unknown or repeated `custom_id`s and lines
/// that do not parse are reported as warnings. Costs use `config.prices` with the Batch API's
/// 50% discount.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub async fn import<'a>(
    plan: BatchPlan<'a>,
    clusters: &'a [Cluster],
    concept: &str,
    config: &RunConfig,
    output: &str,
    errors: Option<&str>,
) -> Result<DiscoveryReport<'a>, Error> {
    let requests = render_requests(&plan, clusters, concept, &config.request)?;
    let ids: Vec<String> = (0..plan.batches.len())
        .map(|i| custom_id(&plan, i))
        .collect();
    let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut results: HashMap<String, Outcome> = HashMap::new();
    let mut warnings = Vec::new();
    for (file, text) in [("output", Some(output)), ("error", errors)] {
        let Some(text) = text else { continue };
        for (n, raw) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let line: Line = match serde_json::from_str(raw) {
                Ok(line) => line,
                Err(e) => {
                    warnings.push(format!(
                        "{file} file line {}: not a Batch API result: {e}",
                        n + 1
                    ));
                    continue;
                }
            };
            if !known.contains(line.custom_id.as_str()) {
                warnings.push(format!(
                    "{file} file line {}: unknown custom_id {:?}",
                    n + 1,
                    line.custom_id
                ));
                continue;
            }
            let outcome = match (line.response, line.error) {
                (Some(r), _) => Outcome::Response {
                    status: r.status_code,
                    request_id: r.request_id,
                    body: r.body.to_string(),
                },
                (None, Some(e)) => Outcome::Error(format!(
                    "{}: {}",
                    e.code.unwrap_or_else(|| "error".into()),
                    e.message.unwrap_or_default()
                )),
                (None, None) => {
                    Outcome::Error("the line has neither a response nor an error".into())
                }
            };
            if results.insert(line.custom_id.clone(), outcome).is_some() {
                warnings.push(format!(
                    "{file} file line {}: {} appears again; the last one is used",
                    n + 1,
                    line.custom_id
                ));
            }
        }
    }
    let lines_found = ids.iter().filter(|id| results.contains_key(*id)).count() as u64;
    let mut by_prompt = HashMap::new();
    for (request, id) in requests.iter().zip(&ids) {
        by_prompt.insert(request.user_text(), (id.clone(), results.get(id).cloned()));
    }
    let mut replay_config = config.clone();
    replay_config.split_and_reask = false;
    replay_config.max_retries = 0;
    replay_config.max_extra_calls = 0;
    // Replay never waits: no pacing of answers that are already there.
    replay_config.requests_per_minute = None;
    replay_config.tokens_per_minute = None;
    replay_config.concurrency = plan.batches.len().max(1);
    for price in replay_config.prices.0.values_mut() {
        price.input_per_million *= BATCH_DISCOUNT;
        price.output_per_million *= BATCH_DISCOUNT;
    }
    let runner = Runner::new(Replay { by_prompt }, NoWait).with_config(replay_config);
    let mut report = runner.run(plan, clusters, concept).await?;
    report.usage.calls_made = lines_found;
    report.warnings.extend(warnings);
    Ok(report)
}

//! The Batch API's output and error files, read into per-request outcomes, and imported into
//! a [`DiscoveryReport`] through the runner itself.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::BATCH_DISCOUNT;
use super::input::BatchInput;
use crate::backend::openai::{MaxTokensField, parse_response};
use crate::backend::{BackendError, ChatRequest, ChatResponse, LlmBackend};
use crate::error::Error;
use crate::model::Cluster;
use crate::patterns::{DiscoveryReport, PriceTier};
use crate::plan::BatchPlan;
use crate::run::{RunConfig, Runner};
use crate::store::{RequestKey, RunStore, StoreError};
use crate::timer::{Sleep, Timer};

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

/// What became of one request.
#[derive(Debug, Clone)]
enum Outcome {
    /// The batch as a whole failed, expired or was cancelled with no line for the request.
    Batch { reason: String, retry: bool },
    /// A line of the error file.
    Error { code: String, message: String },
    /// A line of the output file.
    Response {
        status: u16,
        request_id: Option<String>,
        body: String,
    },
}

impl Outcome {
    /// Which of two outcomes of one request counts: an answer over a failed call, a line over
    /// what a batch's status says.
    fn rank(&self) -> u8 {
        match self {
            Self::Batch { .. } => 0,
            Self::Error { .. } => 1,
            Self::Response { status, .. } if !(200..300).contains(status) => 2,
            Self::Response { .. } => 3,
        }
    }

    /// Whether the same request in a new batch may get an answer.
    fn worth_another_batch(&self) -> bool {
        match self {
            Self::Batch { retry, .. } => *retry,
            Self::Error { code, .. } => {
                code == "batch_expired"
                    || code.contains("server_error")
                    || code.contains("rate_limit")
                    || code.contains("timeout")
            }
            Self::Response { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
        }
    }
}

/// Every request's outcome so far, read from result files (of one or several batches) and the
/// batches' statuses.
#[derive(Debug, Clone)]
pub struct BatchResults {
    index: HashMap<String, usize>,
    outcomes: Vec<Option<Outcome>>,
    warnings: Vec<String>,
}

impl BatchResults {
    /// No outcome yet for any request of `input`.
    pub fn new(input: &BatchInput) -> Self {
        Self {
            index: input
                .custom_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect(),
            outcomes: vec![None; input.len()],
            warnings: Vec::new(),
        }
    }

    /// Reads one output or error file (JSONL, any order; `name` says which in warnings). Lines
    /// that do not parse (a truncated file, say), unknown `custom_id`s and ids seen twice in
    /// one file become warnings; a line never replaces a better outcome (an answer beats an
    /// error, whichever file or batch it came from).
    pub fn add_file(&mut self, name: &str, text: &str) {
        let mut seen = vec![false; self.outcomes.len()];
        for (n, raw) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let line: Line = match serde_json::from_str(raw) {
                Ok(line) => line,
                Err(e) => {
                    self.warnings.push(format!(
                        "{name} line {}: not a Batch API result: {e}",
                        n + 1
                    ));
                    continue;
                }
            };
            let Some(&i) = self.index.get(&line.custom_id) else {
                self.warnings.push(format!(
                    "{name} line {}: unknown custom_id {:?}",
                    n + 1,
                    line.custom_id
                ));
                continue;
            };
            if std::mem::replace(&mut seen[i], true) {
                self.warnings.push(format!(
                    "{name} line {}: {} appears again; the better outcome is kept",
                    n + 1,
                    line.custom_id
                ));
            }
            let outcome = match (line.response, line.error) {
                (Some(r), _) => Outcome::Response {
                    status: r.status_code,
                    request_id: r.request_id,
                    body: r.body.to_string(),
                },
                (None, Some(e)) => Outcome::Error {
                    code: e.code.unwrap_or_else(|| "error".into()),
                    message: e.message.unwrap_or_default(),
                },
                (None, None) => Outcome::Error {
                    code: "malformed".into(),
                    message: "the line has neither a response nor an error".into(),
                },
            };
            self.offer(i, outcome);
        }
    }

    /// Sets what the requests `requests` (indices) end as when no file has a line for them:
    /// `reason`, and whether another batch may answer them.
    pub fn fail_requests(&mut self, requests: &[usize], reason: &str, retry: bool) {
        for &i in requests {
            self.offer(
                i,
                Outcome::Batch {
                    reason: reason.to_owned(),
                    retry,
                },
            );
        }
    }

    fn offer(&mut self, i: usize, outcome: Outcome) {
        if let Some(slot) = self.outcomes.get_mut(i) {
            if slot.as_ref().is_none_or(|old| outcome.rank() >= old.rank()) {
                *slot = Some(outcome);
            }
        }
    }

    /// Requests with an answer line (any status).
    pub fn answered(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Some(Outcome::Response { .. })))
            .count()
    }

    /// Requests with a line in a result file (an answer or an error).
    pub fn with_line(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Some(Outcome::Response { .. } | Outcome::Error { .. })))
            .count()
    }

    /// Requests (indices) worth another batch or a live call: no line at all, or a failure
    /// another try may mend (expiry, server errors, rate limits). Failures that would fail
    /// again (a bad request, a cancelled batch) are not among them.
    pub fn unanswered(&self) -> Vec<usize> {
        self.outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_ref().is_none_or(Outcome::worth_another_batch))
            .map(|(i, _)| i)
            .collect()
    }

    /// What the files said that is not an outcome: bad lines, unknown or repeated ids.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Records every usable answer (a 2xx line that is a chat completion) in `store` under its
    /// request's key, so a live run of the same plan with that store sends only the rest.
    /// Returns how many were recorded.
    ///
    /// # Errors
    /// The store's.
    pub fn record(&self, input: &BatchInput, store: &dyn RunStore) -> Result<usize, StoreError> {
        let mut recorded = 0;
        for (request, outcome) in input.requests.iter().zip(&self.outcomes) {
            if let Some(Outcome::Response {
                status,
                request_id,
                body,
            }) = outcome
            {
                if let Ok(answer) = parse_response(
                    *status,
                    &HeaderMap::new(),
                    body,
                    request_id.clone(),
                    &request.model,
                ) {
                    store.put(&RequestKey::of(request), &answer)?;
                    recorded += 1;
                }
            }
        }
        Ok(recorded)
    }
}

/// Answers each rendered request from its Batch API outcome.
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
            Some((id, Some(Outcome::Batch { reason, .. }))) => {
                Err(permanent(format!("{id}: {reason}")))
            }
            Some((id, Some(Outcome::Error { code, message }))) => Err(permanent(format!(
                "the Batch API failed {id}: {code}: {message}"
            ))),
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
    let input = BatchInput::new(
        &plan,
        clusters,
        concept,
        config,
        None,
        MaxTokensField::MaxTokens,
    )?;
    let mut results = BatchResults::new(&input);
    results.add_file("output file", output);
    if let Some(errors) = errors {
        results.add_file("error file", errors);
    }
    import_results(plan, clusters, concept, config, &input, &results).await
}

/// Imports the outcomes gathered in `results` (of `input`, made from the same `plan`,
/// `clusters`, `concept` and `config`) into a [`DiscoveryReport`], as [`import`] does.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`, or `input` has another
/// number of requests than `plan` has batches.
pub async fn import_results<'a>(
    plan: BatchPlan<'a>,
    clusters: &'a [Cluster],
    concept: &str,
    config: &RunConfig,
    input: &BatchInput,
    results: &BatchResults,
) -> Result<DiscoveryReport<'a>, Error> {
    if input.len() != plan.batches.len() || results.outcomes.len() != input.len() {
        return Err(crate::error::PlanMismatch::BatchCount {
            batches: plan.batches.len(),
            requests: input.len(),
            results: results.outcomes.len(),
        }
        .into());
    }
    let mut by_prompt = HashMap::new();
    for ((request, id), outcome) in input
        .requests
        .iter()
        .zip(&input.custom_ids)
        .zip(&results.outcomes)
    {
        by_prompt.insert(request.user_text(), (id.clone(), outcome.clone()));
    }
    let mut replay_config = config.clone();
    replay_config.split_and_reask = false;
    replay_config.max_retries = 0;
    replay_config.max_extra_calls = 0;
    // Replay never waits: no pacing of answers that are already there.
    replay_config.requests_per_minute = None;
    replay_config.tokens_per_minute = None;
    replay_config.concurrency = plan.batches.len().max(1);
    replay_config.prices = config.prices.at_discount(BATCH_DISCOUNT);
    let runner = Runner::new(Replay { by_prompt }, NoWait).with_config(replay_config);
    let mut report = runner.run(plan, clusters, concept).await?;
    report.usage.calls_made = results.with_line() as u64;
    report.usage.price_tier = PriceTier::Batch;
    report.warnings.extend(results.warnings.iter().cloned());
    Ok(report)
}

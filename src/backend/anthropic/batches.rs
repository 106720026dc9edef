//! [`AnthropicBatches`]: Anthropic's Message Batches as a [`BatchBackend`], and the reader of
//! its results ([`read_batch_results`]).

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::AnthropicBuilder;
use super::wire::{classify, parse_response, request_body};
use crate::backend::http::{Calls, Transport, timed};
use crate::backend::rate_limit::parse_rfc3339;
use crate::backend::{
    BackendError, BatchBackend, BatchInfo, BatchLimits, BatchOutput, BatchPage, BatchStatus,
    ChatRequest, LineOutcome, RequestCounts, ResultLine,
};
use crate::error::Error;

/// Anthropic's Message Batches over HTTP (feature `anthropic`): the requests go in the body of
/// `POST /v1/messages/batches` (no file to upload), the batch is polled at
/// `/v1/messages/batches/{id}`, and its results are read as JSONL from its `results_url` once it
/// has ended. Same configuration and auth as an [`AnthropicBackend`](super::AnthropicBackend):
/// build it with [`AnthropicBuilder::build_batches`] or [`AnthropicBatches::from_env`], and
/// drive it with [`BatchRunner`](crate::batch::BatchRunner). Results are kept 29 days.
///
/// Anthropic keeps no metadata on a batch: a create whose answer was lost is found by when it
/// was made and how many requests it holds ([`BatchRunner::submit`](crate::batch::BatchRunner::submit)).
#[derive(Debug, Clone)]
pub struct AnthropicBatches {
    http: Transport,
    config: AnthropicBuilder,
}

impl AnthropicBuilder {
    /// The Message Batches client of this configuration: the same base URL, key, version,
    /// betas and model.
    ///
    /// # Errors
    /// As [`AnthropicBuilder::build`].
    pub fn build_batches(self) -> Result<AnthropicBatches, Error> {
        Ok(AnthropicBatches {
            http: self.http_client()?,
            config: self,
        })
    }
}

impl AnthropicBatches {
    /// [`AnthropicBuilder::from_env`], built.
    ///
    /// # Errors
    /// As [`AnthropicBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        AnthropicBuilder::from_env().build_batches()
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        self.config.base()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/messages/batches{path}", self.config.base())
    }

    fn timeout(&self) -> Duration {
        self.config.timeout()
    }

    /// How calls are sent: a non-2xx answer is classified as a message's would be.
    fn calls(&self) -> Calls<'_> {
        Calls {
            transport: &self.http,
            timeout: self.timeout(),
            id_header: "request-id",
            classify,
        }
    }

    async fn batch_call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<BatchInfo, BackendError> {
        let batch: WireBatch = self.calls().json(request, "a message batch").await?;
        Ok(batch.into())
    }

    /// `results_url` resolved against the base URL as a browser would: Anthropic gives it
    /// absolute, proxies and test servers often as a path.
    fn resolve(&self, url: &str) -> Result<reqwest::Url, BackendError> {
        let base = format!("{}/", self.config.base());
        reqwest::Url::parse(&base)
            .and_then(|b| b.join(url))
            .map_err(|e| BackendError::Other {
                retryable: false,
                source: format!("the batch's results_url {url:?} is not a URL: {e}").into(),
            })
    }
}

#[async_trait]
impl BatchBackend for AnthropicBatches {
    fn limits(&self) -> BatchLimits {
        BatchLimits::ANTHROPIC
    }

    fn encode(&self, custom_id: &str, request: &ChatRequest) -> String {
        serde_json::json!({
            "custom_id": custom_id,
            "params": request_body(request, self.config.model.as_deref(), &self.config.version),
        })
        .to_string()
    }

    async fn create(&self, jsonl: &str, _key: &str) -> Result<BatchInfo, BackendError> {
        let mut body = String::with_capacity(jsonl.len() + 16);
        body.push_str("{\"requests\":[");
        for (n, line) in jsonl.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(line);
        }
        body.push_str("]}");
        self.batch_call(
            self.http
                .post(self.url(""))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    async fn get(&self, id: &str) -> Result<BatchInfo, BackendError> {
        self.batch_call(self.http.get(self.url(&format!("/{id}"))))
            .await
    }

    async fn results(&self, batch: &BatchInfo) -> Result<BatchOutput, BackendError> {
        let Some(url) = batch.location("results") else {
            return Ok(BatchOutput::default());
        };
        let name = format!("batch {} results", batch.id);
        let download = Calls {
            timeout: self.config.download_timeout_reported(),
            ..self.calls()
        };
        let request = timed(
            self.http.get(self.resolve(url)?),
            self.config.download_timeout,
        );
        let mut out: BatchOutput = download.read_lines(request, &name, read_line).await?.into();
        if let Some(model) = &self.config.model {
            for line in &mut out.lines {
                if let LineOutcome::Answered(answer) = &mut line.outcome {
                    if answer.model.is_empty() {
                        answer.model.clone_from(model);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn cancel(&self, id: &str) -> Result<BatchInfo, BackendError> {
        self.batch_call(self.http.post(self.url(&format!("/{id}/cancel"))))
            .await
    }

    async fn list(&self, after: Option<&str>) -> Result<BatchPage, BackendError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            data: Vec<WireBatch>,
            #[serde(default)]
            has_more: bool,
        }
        let mut request = self.http.get(self.url("")).query(&[("limit", "100")]);
        if let Some(after) = after {
            request = request.query(&[("after_id", after)]);
        }
        let page: Page = self
            .calls()
            .json(request, "a list of message batches")
            .await?;
        Ok(BatchPage {
            batches: page.data.into_iter().map(BatchInfo::from).collect(),
            has_more: page.has_more,
        })
    }
}

/// A message batch as the API returns it.
#[derive(Debug, Deserialize)]
struct WireBatch {
    id: String,
    #[serde(default)]
    processing_status: String,
    #[serde(default)]
    request_counts: WireCounts,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    cancel_initiated_at: Option<String>,
    #[serde(default)]
    results_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireCounts {
    #[serde(default)]
    processing: u64,
    #[serde(default)]
    succeeded: u64,
    #[serde(default)]
    errored: u64,
    #[serde(default)]
    canceled: u64,
    #[serde(default)]
    expired: u64,
}

impl From<WireBatch> for BatchInfo {
    fn from(w: WireBatch) -> Self {
        let c = &w.request_counts;
        let status = match w.processing_status.as_str() {
            "in_progress" => BatchStatus::InProgress,
            "canceling" => BatchStatus::Cancelling,
            "ended" if w.cancel_initiated_at.is_some() => BatchStatus::Cancelled,
            "ended" if c.expired > 0 => BatchStatus::Expired,
            "ended" => BatchStatus::Completed,
            _ => BatchStatus::Unknown,
        };
        let mut info = BatchInfo::new(w.id, status);
        info.request_counts = RequestCounts {
            total: c.processing + c.succeeded + c.errored + c.canceled + c.expired,
            completed: c.succeeded,
            failed: c.errored + c.canceled + c.expired,
        };
        info.created_at = w
            .created_at
            .as_deref()
            .and_then(parse_rfc3339)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        if let Some(url) = w.results_url.filter(|u| !u.is_empty()) {
            info.locations.insert("results".to_owned(), url);
        }
        info
    }
}

#[derive(Deserialize)]
struct Line {
    custom_id: String,
    result: LineResult,
}

#[derive(Deserialize)]
struct LineResult {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Reads Message Batches results (JSONL, any order; `name` says where in warnings):
/// `succeeded` lines are read as messages; `errored` ones keep their error type and message,
/// worth another batch when the server failed (`api_error`, `overloaded_error`,
/// `rate_limit_error`, `timeout_error`); `expired` lines are worth another batch, `canceled`
/// ones are not. A result type this version does not know is a failure, not worth another.
pub fn read_batch_results(name: &str, text: &str) -> BatchOutput {
    BatchOutput::read(name, text, read_line)
}

/// One line of a results file.
fn read_line(raw: &str) -> Result<ResultLine, String> {
    {
        let line: Line =
            serde_json::from_str(raw).map_err(|e| format!("not a message batch result: {e}"))?;
        let failed = |code: &str, message: String, retry: bool| LineOutcome::Failed {
            code: code.to_owned(),
            message,
            retry,
        };
        let outcome = match line.result.kind.as_str() {
            "succeeded" => {
                let body = line.result.message.unwrap_or_default().to_string();
                match parse_response(200, &HeaderMap::new(), &body, None, "") {
                    Ok(answer) => LineOutcome::Answered(Box::new(answer)),
                    Err(e) => failed("malformed", e.to_string(), false),
                }
            }
            "errored" => {
                // `{"type": "error", "error": {"type": ..., "message": ...}}`, or the inner
                // object alone.
                let error = line.result.error.unwrap_or_default();
                let inner = error.get("error").unwrap_or(&error);
                let kind = inner
                    .get("type")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("error");
                let message = inner
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                let retry = matches!(
                    kind,
                    "api_error" | "overloaded_error" | "rate_limit_error" | "timeout_error"
                );
                failed(kind, message.to_owned(), retry)
            }
            "expired" => failed(
                "expired",
                "the batch expired before the request ran".into(),
                true,
            ),
            "canceled" => failed(
                "canceled",
                "the batch was cancelled before the request ran".into(),
                false,
            ),
            other => failed(other, format!("result type {other:?}"), false),
        };
        Ok(ResultLine {
            custom_id: line.custom_id,
            outcome,
        })
    }
}

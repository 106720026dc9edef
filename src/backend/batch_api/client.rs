//! [`BatchApiClient`]: the Batch API's HTTP calls (files and batches) and the objects they
//! return.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize};

use super::event::BatchEvent;
use super::input::{BatchInput, BatchLimits};
use super::job::{PollConfig, Remainder};
use crate::backend::BackendError;
use crate::backend::openai::{OpenAiBuilder, classify};
use crate::error::Error;
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::run::RunConfig;
use crate::store::RunStore;
use crate::timer::{Timer, TokioTimer};

/// A batch's state, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchStatus {
    /// The input file is being checked.
    Validating,
    /// The input file failed validation: nothing was run.
    Failed,
    /// Running.
    InProgress,
    /// Done running; the result files are being written.
    Finalizing,
    /// Done: the result files are there.
    Completed,
    /// The completion window passed: the requests not run are in the error file.
    Expired,
    /// Being cancelled.
    Cancelling,
    /// Cancelled: what ran before is in the result files.
    Cancelled,
    /// A state this version does not know; treated as still running.
    #[serde(other)]
    Unknown,
}

impl BatchStatus {
    /// Whether the batch will change no more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Completed | Self::Expired | Self::Cancelled
        )
    }

    /// The provider's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch's request counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests in the batch.
    #[serde(default)]
    pub total: u64,
    /// Requests answered.
    #[serde(default)]
    pub completed: u64,
    /// Requests failed.
    #[serde(default)]
    pub failed: u64,
}

/// Why a batch failed (one of its `errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrorInfo {
    /// The provider's error code.
    #[serde(default)]
    pub code: Option<String>,
    /// What it says.
    #[serde(default)]
    pub message: Option<String>,
    /// The input file's line it is about, if one.
    #[serde(default)]
    pub line: Option<u64>,
}

impl fmt::Display for BatchErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_deref().unwrap_or("error"))?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// A batch, as `/v1/batches` returns it (the fields this crate reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchInfo {
    /// Its id (`batch_...`).
    pub id: String,
    /// Its state.
    pub status: BatchStatus,
    /// The input file.
    #[serde(default, deserialize_with = "null_default")]
    pub input_file_id: String,
    /// The output file, once there is one.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// The error file, once there is one.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Its request counts.
    #[serde(default, deserialize_with = "null_default")]
    pub request_counts: RequestCounts,
    /// Why it failed (validation errors).
    #[serde(default, deserialize_with = "error_list")]
    pub errors: Vec<BatchErrorInfo>,
    /// The metadata it was created with.
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: BTreeMap<String, String>,
    /// When it was created (Unix seconds).
    #[serde(default)]
    pub created_at: Option<u64>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn error_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BatchErrorInfo>, D::Error> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        data: Vec<BatchErrorInfo>,
    }
    Ok(Option::<List>::deserialize(d)?.map_or_else(Vec::new, |l| l.data))
}

/// The Batch API over HTTP (feature `openai`), with the configuration and auth of an
/// [`OpenAiBackend`](crate::backend::openai::OpenAiBackend): build it with
/// [`OpenAiBuilder::build_batch_api`] or [`BatchApiClient::from_env`]. See the
/// [module docs](super) for what [`BatchApiClient::run`] does.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dynbatch::{BatchApiClient, Remainder, RunConfig, SqliteStore};
/// use dynbatch::{Batcher, Cluster};
///
/// let clusters: Vec<Cluster> = serde_json::from_str(&std::fs::read_to_string("clusters.json")?)?;
/// let plan = Batcher::default().plan(&clusters)?;
/// let client = BatchApiClient::from_env()?
///     .with_store(SqliteStore::open("discovery.journal")?)
///     .with_remainder(Remainder::NewBatch { rounds: 2 })
///     .on_event(|event| eprintln!("{event}"));
/// let run = client.run(plan, &clusters, "home espresso", &RunConfig::default()).await?;
/// println!("batches {:?}; cost ${:.4}", run.job.batch_ids(),
///          run.report.usage.estimated_cost_usd.unwrap_or(0.0));
/// # Ok(()) }
/// ```
pub struct BatchApiClient {
    http: reqwest::Client,
    config: OpenAiBuilder,
    pub(super) limits: BatchLimits,
    pub(super) poll: PollConfig,
    pub(super) remainder: Remainder,
    pub(super) timer: Arc<dyn Timer>,
    pub(super) store: Option<Arc<dyn RunStore>>,
    events: Option<EventHandler>,
}

/// What [`BatchApiClient::on_event`] keeps.
type EventHandler = Arc<dyn Fn(&BatchEvent) + Send + Sync>;

impl fmt::Debug for BatchApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchApiClient")
            .field("base_url", &self.config.base())
            .field("limits", &self.limits)
            .field("poll", &self.poll)
            .field("remainder", &self.remainder)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A 2xx body that is not what the endpoint returns.
fn malformed(what: &str, e: &serde_json::Error, body: &str) -> BackendError {
    let cut: String = body.chars().take(200).collect();
    BackendError::Other {
        retryable: false,
        source: format!("the server's answer is not {what} ({e}): {cut}").into(),
    }
}

impl BatchApiClient {
    pub(crate) fn new(config: OpenAiBuilder) -> Result<Self, Error> {
        Ok(Self {
            http: config.http_client()?,
            config,
            limits: BatchLimits::default(),
            poll: PollConfig::default(),
            remainder: Remainder::default(),
            timer: Arc::new(TokioTimer),
            store: None,
            events: None,
        })
    }

    /// From the same environment variables as
    /// [`OpenAiBackend::from_env`](crate::backend::openai::OpenAiBackend::from_env).
    ///
    /// # Errors
    /// As [`OpenAiBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        Self::new(OpenAiBuilder::from_env())
    }

    /// The provider's limits per batch (default: `OpenAI`'s).
    #[must_use]
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How often to poll, and for how long.
    #[must_use]
    pub fn with_poll(mut self, poll: PollConfig) -> Self {
        self.poll = poll;
        self
    }

    /// What becomes of requests a batch left unanswered. Default: new batches, 2 rounds.
    #[must_use]
    pub fn with_remainder(mut self, remainder: Remainder) -> Self {
        self.remainder = remainder;
        self
    }

    /// The clock polls and back-offs wait on. Default: [`TokioTimer`].
    #[must_use]
    pub fn with_timer(mut self, timer: impl Timer + 'static) -> Self {
        self.timer = Arc::new(timer);
        self
    }

    /// Keeps every submission in `store` (a journal): each input file is looked up before it
    /// is uploaded, and recorded once uploaded and again once its batch exists, so running
    /// again with the same input attaches instead of paying twice. Default: none.
    #[must_use]
    pub fn with_store(mut self, store: impl RunStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Calls `handler` with every [`BatchEvent`] (uploads, submissions, polls, downloads).
    #[must_use]
    pub fn on_event(mut self, handler: impl Fn(&BatchEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(handler));
        self
    }

    pub(super) fn emit(&self, event: &BatchEvent) {
        if let Some(handler) = &self.events {
            handler(event);
        }
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        self.config.base()
    }

    /// The Batch API input of `plan`, with this client's model and `max_tokens` field.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
    pub fn input(
        &self,
        plan: &BatchPlan<'_>,
        clusters: &[Cluster],
        concept: &str,
        config: &RunConfig,
    ) -> Result<BatchInput, Error> {
        BatchInput::new(
            plan,
            clusters,
            concept,
            config,
            self.config.model_override(),
            self.config.tokens_field(),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.base())
    }

    /// Sends `request`; a non-2xx answer is classified as a chat completion's would be.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<String, BackendError> {
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let headers: HeaderMap = response.headers().clone();
        let body = response.text().await.map_err(|e| transport(&e))?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            let id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Err(classify(status, &headers, &body, id.as_deref()))
        }
    }

    async fn batch_call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<BatchInfo, BackendError> {
        let body = self.send(request).await?;
        serde_json::from_str(&body).map_err(|e| malformed("a batch", &e, &body))
    }

    /// Uploads an input file (`POST /files`, purpose `batch`); returns its id.
    ///
    /// # Errors
    /// The classified HTTP error, or a non-retryable one for an answer that is not a file.
    pub async fn upload(&self, filename: &str, jsonl: String) -> Result<String, BackendError> {
        #[derive(Deserialize)]
        struct File {
            id: String,
        }
        let part = reqwest::multipart::Part::text(jsonl)
            .file_name(filename.to_owned())
            .mime_str("application/jsonl")
            .map_err(|e| transport(&e))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let body = self
            .send(self.http.post(self.url("files")).multipart(form))
            .await?;
        serde_json::from_str::<File>(&body)
            .map(|f| f.id)
            .map_err(|e| malformed("a file", &e, &body))
    }

    /// Creates a batch of the uploaded `input_file_id` (`POST /batches`, endpoint
    /// `/v1/chat/completions`, window `24h`).
    ///
    /// # Errors
    /// The classified HTTP error, or a non-retryable one for an answer that is not a batch.
    pub async fn create(
        &self,
        input_file_id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<BatchInfo, BackendError> {
        let body = serde_json::json!({
            "input_file_id": input_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": metadata,
        });
        self.batch_call(
            self.http
                .post(self.url("batches"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// A batch's state (`GET /batches/{id}`).
    ///
    /// # Errors
    /// The classified HTTP error ([`BackendError::NotFound`] for an unknown id).
    pub async fn retrieve(&self, batch_id: &str) -> Result<BatchInfo, BackendError> {
        self.batch_call(self.http.get(self.url(&format!("batches/{batch_id}"))))
            .await
    }

    /// Cancels a batch (`POST /batches/{id}/cancel`): what already ran stays in its result
    /// files.
    ///
    /// # Errors
    /// The classified HTTP error.
    pub async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, BackendError> {
        self.batch_call(
            self.http
                .post(self.url(&format!("batches/{batch_id}/cancel"))),
        )
        .await
    }

    /// One page of the account's batches, newest first (`GET /batches`), and whether there
    /// are more after it.
    ///
    /// # Errors
    /// The classified HTTP error.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<BatchInfo>, bool), BackendError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            data: Vec<BatchInfo>,
            #[serde(default)]
            has_more: bool,
        }
        let mut request = self
            .http
            .get(self.url("batches"))
            .query(&[("limit", limit.to_string())]);
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        let body = self.send(request).await?;
        let page: Page =
            serde_json::from_str(&body).map_err(|e| malformed("a list of batches", &e, &body))?;
        Ok((page.data, page.has_more))
    }

    /// A file's content (`GET /files/{id}/content`).
    ///
    /// # Errors
    /// The classified HTTP error.
    pub async fn download(&self, file_id: &str) -> Result<String, BackendError> {
        self.send(self.http.get(self.url(&format!("files/{file_id}/content"))))
            .await
    }
}

fn transport(e: &reqwest::Error) -> BackendError {
    if e.is_timeout() {
        BackendError::Connection(format!("timed out: {e}"))
    } else {
        BackendError::Connection(e.to_string())
    }
}

//! [`BatchBackend`]: what differs between providers' batch APIs (`OpenAI`'s Files + Batches,
//! Anthropic's Message Batches): how a request is written down, and the five calls — create,
//! get, results, cancel, list. The workflow that drives them (split, journal, poll, collect,
//! resubmit, replay into a report) is provider-neutral and lives in [`batch`](crate::batch).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{BackendError, ChatRequest, ChatResponse};

/// A provider's batch API: the calls a batch workflow makes, on the provider's wire format.
///
/// Implementations keep only their wire types and HTTP calls; retries, the journal, polling
/// and the report belong to [`batch::BatchRunner`](crate::batch::BatchRunner). The crate ships
/// `OpenAiBatches` (feature `openai`) and `AnthropicBatches` (feature `anthropic`).
#[async_trait]
pub trait BatchBackend: Send + Sync + fmt::Debug {
    /// The provider's limits on one batch.
    fn limits(&self) -> BatchLimits {
        BatchLimits::default()
    }

    /// One request as a line of a batch (a JSON object on one line), under `custom_id` (at most
    /// 64 characters of `[A-Za-z0-9_-]`).
    fn encode(&self, custom_id: &str, request: &ChatRequest) -> String;

    /// Submits the requests of `jsonl` (lines made by [`encode`](Self::encode)) as one batch.
    /// `key` identifies the content; a provider that keeps metadata stores it, so
    /// [`BatchInfo::key`] finds the batch again after a lost answer.
    ///
    /// # Errors
    /// The classified HTTP error.
    async fn create(&self, jsonl: &str, key: &str) -> Result<BatchInfo, BackendError>;

    /// A batch's state.
    ///
    /// # Errors
    /// The classified HTTP error ([`BackendError::NotFound`] for an unknown id).
    async fn get(&self, id: &str) -> Result<BatchInfo, BackendError>;

    /// The result lines of a batch that has ended ([`BatchStatus::is_terminal`]).
    ///
    /// # Errors
    /// The classified HTTP error.
    async fn results(&self, batch: &BatchInfo) -> Result<BatchOutput, BackendError>;

    /// Cancels a batch; what already ran stays in its results.
    ///
    /// # Errors
    /// The classified HTTP error.
    async fn cancel(&self, id: &str) -> Result<BatchInfo, BackendError>;

    /// One page of the account's batches, newest first, starting after the batch `after`.
    ///
    /// # Errors
    /// The classified HTTP error.
    async fn list(&self, after: Option<&str>) -> Result<BatchPage, BackendError>;

    /// The `custom_id`s a batch holds, when the provider can say before it ends (`OpenAI` keeps
    /// the input file). `None` (the default): they are learnt from its results.
    ///
    /// # Errors
    /// The classified HTTP error, or a non-retryable one for an input that does not parse.
    async fn custom_ids(&self, batch: &BatchInfo) -> Result<Option<Vec<String>>, BackendError> {
        let _ = batch;
        Ok(None)
    }
}

/// A batch's state, in terms common to the providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchStatus {
    /// The input is being checked.
    Validating,
    /// The input failed validation: nothing was run.
    Failed,
    /// Running.
    InProgress,
    /// Done running; the results are being written.
    Finalizing,
    /// Ended: the results are there (Anthropic's `ended`; a line per request says how it
    /// ended).
    Completed,
    /// The completion window passed: what did not run is in the results as expired.
    Expired,
    /// Being cancelled.
    Cancelling,
    /// Cancelled: what ran before is in the results.
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

    /// Its name.
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
    /// Requests failed (errored, expired or cancelled).
    #[serde(default)]
    pub failed: u64,
}

/// Why a batch failed (one of its errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrorInfo {
    /// The provider's error code.
    #[serde(default)]
    pub code: Option<String>,
    /// What it says.
    #[serde(default)]
    pub message: Option<String>,
    /// The input line it is about, if one.
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

/// A batch, as the provider describes it (the fields the workflow reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BatchInfo {
    /// Its id.
    pub id: String,
    /// Its state.
    pub status: BatchStatus,
    /// Its request counts.
    pub request_counts: RequestCounts,
    /// When it was created (Unix seconds), when the provider says.
    pub created_at: Option<u64>,
    /// The `key` it was created with, when the provider keeps it (`OpenAI`'s metadata).
    pub key: Option<String>,
    /// Why it failed (validation errors).
    pub errors: Vec<BatchErrorInfo>,
    /// Where its input and results are: `input`, `output`, `errors` file ids for `OpenAI`,
    /// `results` URL for Anthropic.
    pub locations: BTreeMap<String, String>,
}

impl BatchInfo {
    /// A batch with `id` in `status`, nothing else known.
    pub fn new(id: impl Into<String>, status: BatchStatus) -> Self {
        Self {
            id: id.into(),
            status,
            request_counts: RequestCounts::default(),
            created_at: None,
            key: None,
            errors: Vec::new(),
            locations: BTreeMap::new(),
        }
    }

    /// The location named `name`, if the provider gave it.
    pub fn location(&self, name: &str) -> Option<&str> {
        self.locations.get(name).map(String::as_str)
    }
}

/// One page of [`BatchBackend::list`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchPage {
    /// The batches, newest first.
    pub batches: Vec<BatchInfo>,
    /// Whether there are more after the last.
    pub has_more: bool,
}

/// The provider's limits on one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchLimits {
    /// Requests per batch.
    pub max_requests: usize,
    /// Bytes per batch (the sum of its lines, one newline each).
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    /// `OpenAI`'s: 50,000 requests and 200 MB per input file.
    fn default() -> Self {
        Self::OPENAI
    }
}

impl BatchLimits {
    /// `OpenAI`'s: 50,000 requests and 200 MB per input file.
    pub const OPENAI: Self = Self {
        max_requests: 50_000,
        max_bytes: 200 * 1024 * 1024,
    };
    /// Anthropic's: 100,000 requests and 256 MB per batch.
    pub const ANTHROPIC: Self = Self {
        max_requests: 100_000,
        max_bytes: 256 * 1024 * 1024,
    };

    /// Limits of `max_requests` requests and `max_bytes` bytes per batch (each at least 1).
    pub fn new(max_requests: usize, max_bytes: usize) -> Self {
        Self {
            max_requests: max_requests.max(1),
            max_bytes: max_bytes.max(1),
        }
    }
}

/// What one result line says of its request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LineOutcome {
    /// An answer (it may still be truncated or refused: the runner reads it as a live one).
    Answered(Box<ChatResponse>),
    /// No answer: an error, an expiry, a cancellation.
    Failed {
        /// The provider's code (`batch_expired`, `expired`, `canceled`, `server_error`, an
        /// HTTP status…).
        code: String,
        /// What it says.
        message: String,
        /// Whether the same request in a new batch may get an answer.
        retry: bool,
    },
}

/// One line of a batch's results.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    /// The request's `custom_id`.
    pub custom_id: String,
    /// Its outcome.
    pub outcome: LineOutcome,
}

/// A batch's results, read: the lines, and what could not be read (a truncated file, say).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutput {
    /// The lines, in the provider's order (any order).
    pub lines: Vec<ResultLine>,
    /// Lines that did not parse, with where they were.
    pub warnings: Vec<String>,
    /// Bytes read.
    pub bytes: usize,
}

impl BatchOutput {
    /// Reads JSONL `text` (`name` says where it came from in warnings) with `line`, which
    /// reads one line or says why not.
    /// Blank lines are skipped; a line over 64 MiB is not read (a warning says so).
    pub fn read(name: &str, text: &str, line: impl Fn(&str) -> Result<ResultLine, String>) -> Self {
        let mut reader = super::lines::LineReader::new(name, super::lines::MAX_LINE, line);
        reader.feed(text.as_bytes());
        reader.finish().into()
    }

    /// Adds the lines and warnings of `other`.
    pub fn extend(&mut self, other: Self) {
        self.lines.extend(other.lines);
        self.warnings.extend(other.warnings);
        self.bytes += other.bytes;
    }
}

macro_rules! forward_batch_backend {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: BatchBackend + ?Sized> BatchBackend for $ty {
            fn limits(&self) -> BatchLimits {
                (**self).limits()
            }
            fn encode(&self, custom_id: &str, request: &ChatRequest) -> String {
                (**self).encode(custom_id, request)
            }
            async fn create(&self, jsonl: &str, key: &str) -> Result<BatchInfo, BackendError> {
                (**self).create(jsonl, key).await
            }
            async fn get(&self, id: &str) -> Result<BatchInfo, BackendError> {
                (**self).get(id).await
            }
            async fn results(&self, batch: &BatchInfo) -> Result<BatchOutput, BackendError> {
                (**self).results(batch).await
            }
            async fn cancel(&self, id: &str) -> Result<BatchInfo, BackendError> {
                (**self).cancel(id).await
            }
            async fn list(&self, after: Option<&str>) -> Result<BatchPage, BackendError> {
                (**self).list(after).await
            }
            async fn custom_ids(
                &self,
                batch: &BatchInfo,
            ) -> Result<Option<Vec<String>>, BackendError> {
                (**self).custom_ids(batch).await
            }
        }
    )*};
}

forward_batch_backend!(&T, Box<T>, Arc<T>);

/// `BatchBackend` stays object safe.
const _: Option<&dyn BatchBackend> = None;

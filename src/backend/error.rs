//! [`BackendError`]: a failed call, classified as the `OpenAI` SDKs do; [`ErrorKind`], its class
//! for code to match on; [`CallError`], its cloneable, serialisable summary for events and
//! reports.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RateLimitInfo;

/// A failed call. Retryable ones: rate limited, overloaded, timeout, connection. Permanent
/// ones: authentication, bad request, not found, quota exhausted, content filter. Of the
/// permanent ones, authentication, not found and quota exhausted concern the whole account
/// ([`BackendError::is_account_wide`]): the runner sends nothing more after one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// 429: too many requests. Not a failure of the request: the runner sends it again when
    /// its rate limiter (and `retry_after`, when the server gave one) allows.
    #[error("rate limited{}: {message}", fmt_after(*retry_after))]
    RateLimited {
        /// The server's requested delay.
        retry_after: Option<Duration>,
        /// The server's message.
        message: String,
        /// The account's limits as the server reported them with the 429, when it did
        /// (boxed: it is rarely there and keeps the error small).
        limits: Option<Box<RateLimitInfo>>,
    },
    /// 5xx or an overloaded server. Retryable.
    #[error("server error{}{}: {message}", status.map(|s| format!(" {s}")).unwrap_or_default(), fmt_after(*retry_after))]
    Overloaded {
        /// The HTTP status, if any.
        status: Option<u16>,
        /// The server's requested delay.
        retry_after: Option<Duration>,
        /// The server's message.
        message: String,
    },
    /// The request took too long. Retryable.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed (refused or reset, DNS, TLS, a body cut short). Retryable.
    #[error("connection failed: {source}")]
    Connection {
        /// The transport's error (for an HTTP backend, the `reqwest::Error`, with the URL).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// 401/403: bad or missing credentials. Permanent.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// 400 and other 4xx: the request itself is wrong. Permanent.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the model or the endpoint does not exist. Permanent, account-wide.
    #[error("not found: {0}")]
    NotFound(String),
    /// The server refused the request's output format (an error that names
    /// `response_format` or `json_schema`). Permanent for that format;
    /// [`OutputMode::Auto`](crate::prompt::OutputMode::Auto) falls back to the next one.
    #[error("output format refused: {0}")]
    UnsupportedFormat(String),
    /// 429 `insufficient_quota`: no credit left. Permanent.
    #[error("quota exhausted: {0}")]
    QuotaExhausted(String),
    /// The provider refused the content. Permanent.
    #[error("content filtered: {0}")]
    ContentFilter(String),
    /// The answer was larger than the backend reads (a server ignoring `max_tokens`, a model
    /// that loops). Not worth the same request again; the runner splits the request, as for an
    /// answer cut off at `max_tokens`.
    #[error("the answer is larger than {limit} bytes; not read further")]
    ResponseTooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The request is larger than the server takes (413 `request_too_large`, a prompt over
    /// the model's context window: `context_length_exceeded`). Not worth the same request
    /// again; the runner splits it, and fails a cluster too large alone.
    #[error("the request is too large: {0}")]
    RequestTooLarge(String),
    /// A 2xx answer that is not what the endpoint returns (not JSON, not a completion, not a
    /// batch): the server is up but speaks another protocol, or the body was cut. Permanent.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// Anything else, with whether retrying may help.
    #[error("{source}")]
    Other {
        /// Whether retrying may help.
        retryable: bool,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn fmt_after(after: Option<Duration>) -> String {
    after
        .map(|d| format!(" (retry after {d:?})"))
        .unwrap_or_default()
}

impl BackendError {
    /// Whether the runner may retry the call.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Overloaded { .. }
            | Self::Timeout(_)
            | Self::Connection { .. } => true,
            Self::Authentication(_)
            | Self::BadRequest(_)
            | Self::NotFound(_)
            | Self::UnsupportedFormat(_)
            | Self::QuotaExhausted(_)
            | Self::ContentFilter(_)
            | Self::ResponseTooLarge { .. }
            | Self::RequestTooLarge(_)
            | Self::InvalidResponse(_) => false,
            Self::Other { retryable, .. } => *retryable,
        }
    }

    /// Whether the error concerns the whole account rather than this request: a bad key
    /// (401/403), an unknown model or endpoint (404), no quota left. Every other request would
    /// fail the same way, so the runner stops sending.
    pub fn is_account_wide(&self) -> bool {
        matches!(
            self,
            Self::Authentication(_) | Self::NotFound(_) | Self::QuotaExhausted(_)
        )
    }

    /// The rate limits the server reported with a 429, if any.
    pub fn rate_limits(&self) -> Option<&RateLimitInfo> {
        match self {
            Self::RateLimited { limits, .. } => limits.as_deref(),
            _ => None,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Overloaded { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The error's class, for code to match on; its `Display` is the short name reports use
    /// (`rate_limited`, `overloaded`, `timeout`, ...).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Overloaded { .. } => ErrorKind::Overloaded,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Connection { .. } => ErrorKind::Connection,
            Self::Authentication(_) => ErrorKind::Authentication,
            Self::BadRequest(_) => ErrorKind::BadRequest,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::UnsupportedFormat(_) => ErrorKind::UnsupportedFormat,
            Self::QuotaExhausted(_) => ErrorKind::QuotaExhausted,
            Self::ContentFilter(_) => ErrorKind::ContentFilter,
            Self::ResponseTooLarge { .. } => ErrorKind::ResponseTooLarge,
            Self::RequestTooLarge(_) => ErrorKind::RequestTooLarge,
            Self::InvalidResponse(_) => ErrorKind::InvalidResponse,
            Self::Other { .. } => ErrorKind::Other,
        }
    }
}

/// The class of a [`BackendError`], for code to match on. Its `Display` and serde form are the
/// short snake-case name (`rate_limited`, `bad_request`, ...) used in reasons and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`BackendError::RateLimited`].
    RateLimited,
    /// [`BackendError::Overloaded`].
    Overloaded,
    /// [`BackendError::Timeout`].
    Timeout,
    /// [`BackendError::Connection`].
    Connection,
    /// [`BackendError::Authentication`].
    Authentication,
    /// [`BackendError::BadRequest`].
    BadRequest,
    /// [`BackendError::NotFound`].
    NotFound,
    /// [`BackendError::UnsupportedFormat`].
    UnsupportedFormat,
    /// [`BackendError::QuotaExhausted`].
    QuotaExhausted,
    /// [`BackendError::ContentFilter`].
    ContentFilter,
    /// [`BackendError::ResponseTooLarge`].
    ResponseTooLarge,
    /// [`BackendError::RequestTooLarge`].
    RequestTooLarge,
    /// [`BackendError::InvalidResponse`].
    InvalidResponse,
    /// [`BackendError::Other`].
    Other,
}

impl ErrorKind {
    /// The short snake-case name, as in reasons and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Authentication => "authentication",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::UnsupportedFormat => "unsupported_format",
            Self::QuotaExhausted => "quota_exhausted",
            Self::ContentFilter => "content_filter",
            Self::ResponseTooLarge => "response_too_large",
            Self::RequestTooLarge => "request_too_large",
            Self::InvalidResponse => "invalid_response",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`BackendError`] as events and reports carry it: its class, the server's delay and its
/// whole message (the error and each of its sources, joined by `": "`). Cloneable and
/// serialisable, which `BackendError` (holding any source error) is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallError {
    /// The class.
    pub kind: ErrorKind,
    /// The error's message with its source chain.
    pub message: String,
    /// The delay the server asked for, in milliseconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl From<&BackendError> for CallError {
    fn from(error: &BackendError) -> Self {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            let text = s.to_string();
            // `Other` displays its source already.
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        Self {
            kind: error.kind(),
            message,
            retry_after_ms: error
                .retry_after()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

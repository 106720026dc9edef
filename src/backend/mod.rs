//! [`LlmBackend`]: "a chat request in, a chat response out", and the types it speaks.
//!
//! A backend knows nothing of plans or clusters, so any LLM client becomes one in a few lines.
//! [`BackendError`] classifies failures the way the official `OpenAI` SDKs do, so the runner can
//! tell what to retry.

use std::fmt;
use std::sync::Arc;

/// The attribute [`LlmBackend`] implementations need (`#[async_trait]`), re-exported so a
/// backend crate needs no dependency of its own on `async-trait`.
pub use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(feature = "anthropic")]
pub mod anthropic;
mod batch;
mod embed;
mod error;
pub mod formulas;
#[cfg(any(feature = "openai", feature = "anthropic"))]
mod http;
mod lines;
#[cfg(feature = "mock")]
pub mod mock;
#[cfg(feature = "openai")]
pub mod openai;
mod rate_limit;

pub use batch::{
    BatchBackend, BatchErrorInfo, BatchInfo, BatchLimits, BatchOutput, BatchPage, BatchStatus,
    LineOutcome, RequestCounts, ResultLine,
};
pub use embed::{EmbedLimits, Embedder, Embeddings};
pub use error::{BackendError, CallError, ErrorKind};
#[cfg(feature = "openai")]
pub(crate) use rate_limit::parse_duration;
pub use rate_limit::{LimitStatus, RateLimitInfo};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions.
    System,
    /// The request.
    User,
    /// The model.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: String,
}

/// The output format asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResponseFormat {
    /// Any JSON object (`{"type": "json_object"}`), the design's choice.
    JsonObject,
    /// A JSON object constrained by a schema the way llama.cpp servers and llama-cpp-python
    /// take it: `{"type": "json_object", "schema": ...}`.
    JsonObjectWithSchema {
        /// The JSON schema.
        schema: serde_json::Value,
    },
    /// JSON matching a schema (`{"type": "json_schema", ...}`), strict or not.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON schema.
        schema: serde_json::Value,
        /// Whether the server must follow it exactly.
        strict: bool,
    },
    /// No `response_format`: the prompt alone asks for the JSON (for servers that refuse
    /// every format).
    Text,
}

/// A chat-completion request, as the runner sends it.
///
/// ```
/// use dynbatch::backend::{ChatMessage, ChatRequest, ResponseFormat, Role};
///
/// let hi = ChatMessage { role: Role::User, content: "Say hi".into() };
/// let request = ChatRequest::new("gpt-4o-mini", vec![hi])
///     .with_max_tokens(50)
///     .with_response_format(ResponseFormat::JsonObject);
/// assert_eq!(request.user_text(), "Say hi");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    /// Model name, e.g. `gpt-4o-mini`.
    pub model: String,
    /// System prompt, then user prompt.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// The output format.
    pub response_format: ResponseFormat,
    /// What the request asks about, beside its rendered messages: the batch's clusters and
    /// the number of patterns per cluster, so a backend needs not read them back from the
    /// prompt. `None` for a request not rendered from a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<RequestBatch>,
}

/// The batch a [`ChatRequest`] asks about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestBatch {
    /// The clusters' ids in prompt order: `clusters[0]` is `CLUSTER 1` (key `"c1"`).
    pub clusters: Vec<String>,
    /// Patterns asked for per cluster.
    pub patterns: crate::strategy::PatternRange,
}

impl RequestBatch {
    /// A batch of `clusters` (ids in prompt order), `patterns` asked for each.
    pub fn new(clusters: Vec<String>, patterns: crate::strategy::PatternRange) -> Self {
        Self { clusters, patterns }
    }
}

impl ChatRequest {
    /// A request for `messages` to `model`: temperature 0.7, at most 1,000 tokens, plain text,
    /// about no batch.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            temperature: 0.7,
            max_tokens: 1000,
            response_format: ResponseFormat::Text,
            batch: None,
        }
    }

    /// The request at sampling temperature `temperature`.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }

    /// The request with at most `max_tokens` tokens generated.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The request in output format `format`.
    #[must_use]
    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }

    /// The request about `batch`.
    #[must_use]
    pub fn with_batch(mut self, batch: RequestBatch) -> Self {
        self.batch = Some(batch);
        self
    }

    /// The user messages' text, concatenated: what identifies a request's content.
    pub fn user_text(&self) -> String {
        self.messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .collect()
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum FinishReason {
    /// It finished its answer. The default.
    #[default]
    Stop,
    /// It hit `max_tokens`: the answer is truncated.
    Length,
    /// A content filter cut it.
    ContentFilter,
    /// Anything else the server said.
    Other(String),
}

impl From<String> for FinishReason {
    fn from(s: String) -> Self {
        match s.as_str() {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "content_filter" => Self::ContentFilter,
            _ => Self::Other(s),
        }
    }
}

impl From<FinishReason> for String {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Stop => "stop".into(),
            FinishReason::Length => "length".into(),
            FinishReason::ContentFilter => "content_filter".into(),
            FinishReason::Other(s) => s,
        }
    }
}

/// Tokens a call used, as the server reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenUsage {
    /// Prompt tokens, cache writes and reads included.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Of the prompt tokens, those written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Of the prompt tokens, those read from the cache (Anthropic's
    /// `cache_read_input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TokenUsage {
    /// `prompt` prompt tokens and `completion` completion tokens, none cached.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Self::default()
        }
    }

    /// The usage with `write` of its prompt tokens written to the prompt cache and `read` read
    /// from it.
    #[must_use]
    pub fn with_cache(mut self, write: u64, read: u64) -> Self {
        self.cache_write_tokens = write;
        self.cache_read_tokens = read;
        self
    }

    /// The sum of two usages.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            cache_write_tokens: self.cache_write_tokens + other.cache_write_tokens,
            cache_read_tokens: self.cache_read_tokens + other.cache_read_tokens,
        }
    }
}

/// A chat-completion response. `Default` is an empty answer that stopped normally, for
/// building one with `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model's text.
    pub content: String,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Tokens used, when the server says.
    pub usage: Option<TokenUsage>,
    /// The model that answered.
    pub model: String,
    /// The model's refusal message, when it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// The server's request id (`x-request-id`), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The account's rate limits as the server reported them with this answer (the
    /// `x-ratelimit-*` headers); the runner paces its requests by them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitInfo>,
}

/// An LLM that answers chat requests.
///
/// One required method. Implementations are `Send + Sync + Debug`; `&T`, `Box<T>` and `Arc<T>`
/// forward to `T`, so `Arc<dyn LlmBackend>` works.
///
/// A canned backend that answers each cluster a request asks about (the clusters are in
/// [`ChatRequest::batch`]), and passes the conformance suite:
///
/// ```
/// use dynbatch::backend::{BackendError, ChatRequest, ChatResponse, LlmBackend, async_trait};
///
/// #[derive(Debug)]
/// struct Canned;
///
/// #[async_trait]
/// impl LlmBackend for Canned {
///     async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
///         let asked = request.batch.as_ref().map_or(0, |batch| batch.clusters.len());
///         let answers: Vec<String> = (1..=asked)
///             .map(|n| {
///                 format!(
///                     r#"{{"cluster": {n}, "patterns": [{{"pattern": "I tried X", "template": "I Tried [X]", "examples": [], "rationale": "a challenge"}}]}}"#
///                 )
///             })
///             .collect();
///         Ok(ChatResponse {
///             content: format!(r#"{{"clusters": [{}]}}"#, answers.join(",")),
///             model: request.model.clone(),
///             ..ChatResponse::default()
///         })
///     }
/// }
///
/// # #[cfg(feature = "testing")] {
/// let answered = futures::executor::block_on(dynbatch::testing::run_backend_conformance(&Canned))?;
/// assert_eq!(answered, 4); // one request per output mode
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[async_trait]
pub trait LlmBackend: Send + Sync + fmt::Debug {
    /// Sends one request.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError>;
}

#[async_trait]
impl<T: LlmBackend + ?Sized> LlmBackend for &T {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        (**self).complete(request).await
    }
}

#[async_trait]
impl<T: LlmBackend + ?Sized> LlmBackend for Box<T> {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        (**self).complete(request).await
    }
}

#[async_trait]
impl<T: LlmBackend + ?Sized> LlmBackend for Arc<T> {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        (**self).complete(request).await
    }
}

const _: Option<&dyn LlmBackend> = None;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn error_classes() {
        let after = Some(Duration::from_secs(2));
        let rl = BackendError::RateLimited {
            retry_after: after,
            message: "slow down".into(),
            limits: None,
        };
        assert!(rl.is_retryable());
        assert_eq!(rl.retry_after(), after);
        assert_eq!(rl.to_string(), "rate limited (retry after 2s): slow down");
        assert!(BackendError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(!BackendError::Authentication("no key".into()).is_retryable());
        assert!(!BackendError::QuotaExhausted("pay up".into()).is_retryable());
        assert!(BackendError::QuotaExhausted("pay up".into()).is_account_wide());
        assert!(BackendError::NotFound("no such model".into()).is_account_wide());
        assert!(!BackendError::BadRequest("too long".into()).is_account_wide());
        assert!(!rl.is_account_wide());
        let e = BackendError::Overloaded {
            status: Some(503),
            retry_after: None,
            message: "busy".into(),
        };
        assert_eq!(e.to_string(), "server error 503: busy");
    }

    #[test]
    fn finish_reason_round_trips() {
        for s in ["stop", "length", "content_filter", "tool_calls"] {
            let r = FinishReason::from(s.to_owned());
            assert_eq!(String::from(r), s);
        }
    }
}

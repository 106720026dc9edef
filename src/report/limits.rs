//! The rate limits a run paced by, as its report gives them.

use serde::{Deserialize, Serialize};

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute (prompt plus `max_tokens`).
    Tokens,
    /// Input (prompt) tokens per minute, where the server limits them apart (Anthropic).
    InputTokens,
    /// Output tokens per minute (`max_tokens`, counted when a request starts), where the
    /// server limits them apart (Anthropic).
    OutputTokens,
}

impl LimitKind {
    /// What it counts, in words: `requests`, `tokens`, `input tokens`, `output tokens`.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::InputTokens => "input tokens",
            Self::OutputTokens => "output tokens",
        }
    }
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.unit())
    }
}

/// Where a limit the runner paces by comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitSource {
    /// [`RunConfig`](crate::RunConfig).
    Configured,
    /// What the server reported: its `x-ratelimit-*` headers, or the limit a 429's message
    /// names (`OpenAI`'s "(RPM): Limit 120").
    Headers,
    /// Inferred from when the server answered 429.
    Inferred,
}

/// The limits a run paced by when it ended, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RateLimitSummary {
    /// Requests per minute, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Where `requests_per_minute` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_source: Option<LimitSource>,
    /// Tokens per minute, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Where `tokens_per_minute` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_source: Option<LimitSource>,
    /// Input tokens per minute, when the server limits them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_per_minute: Option<u64>,
    /// Where `input_tokens_per_minute` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_source: Option<LimitSource>,
    /// Output tokens per minute, when the server limits them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_minute: Option<u64>,
    /// Where `output_tokens_per_minute` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_source: Option<LimitSource>,
}

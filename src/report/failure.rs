//! [`Failure`]: why a cluster failed, typed, beside the `reason` text people read.

use serde::{Deserialize, Serialize};

use crate::backend::ErrorKind;

/// Why a cluster failed, for code to match on; the outcome's `reason` says the same for
/// people, with the server's message. In the report's JSON, `"failure": {"kind": "budget_exhausted", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// The backend failed the request for good: a permanent error (a bad request, a refused
    /// output format, content filtered) or an account-wide one (a bad key, an unknown model,
    /// no quota).
    Backend {
        /// The error's class, as [`BackendError::kind`](crate::backend::BackendError::kind)
        /// gives it.
        error: ErrorKind,
        /// Calls that carried the cluster.
        attempts: u32,
    },
    /// Transient errors or unusable answers used up the extra-call budget
    /// ([`RunConfig::max_extra_calls`](crate::RunConfig::max_extra_calls)).
    BudgetExhausted {
        /// The budget.
        cap: u64,
        /// The class of the request's last error, if it had one (an unusable answer has none).
        last_error: Option<ErrorKind>,
    },
    /// The server asked to wait longer than
    /// [`RunConfig::max_retry_after`](crate::RunConfig::max_retry_after).
    RetryAfterTooLong {
        /// What it asked, in milliseconds.
        after_ms: u64,
    },
    /// The answer could not be used, and the cluster was alone in its request (or
    /// `split_and_reask` is off).
    Unusable {
        /// What was wrong with it.
        problem: AnswerProblem,
    },
    /// Answers left the cluster out.
    NotAnswered {
        /// Whether it was asked again on its own first.
        asked_again: bool,
    },
    /// The request for the cluster alone is too big to send: over the model's context window
    /// or the account's tokens per minute, or refused by the server as too large (413).
    TooBigToSend,
    /// The run stopped sending before the cluster was answered.
    Stopped {
        /// Why.
        cause: StopCause,
        /// Whether a call for it had been made.
        sent: bool,
    },
}

/// What was wrong with an answer that could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnswerProblem {
    /// Cut off at `max_tokens`.
    CutOff,
    /// Not the requested JSON.
    NotJson,
    /// The model refused.
    Refused,
    /// Cut by a content filter.
    Filtered,
    /// Larger than the backend reads.
    TooLarge,
}

/// Why a run stopped sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopCause {
    /// An account-wide error: a bad key, an unknown model or endpoint, no quota.
    AccountWide {
        /// The error's class (`Authentication`, `NotFound`, `QuotaExhausted`).
        error: ErrorKind,
    },
    /// The rate limit gave no answer for
    /// [`RunConfig::rate_limit_patience`](crate::RunConfig::rate_limit_patience).
    RateLimitPatience,
    /// The caller's interrupt ([`Runner::run_until`](crate::Runner::run_until)).
    Interrupted,
    /// The runner found nothing left to wait for (a bug; never silent).
    Internal,
}

/// Why a request's clusters went out again in two halves ([`RunEvent::Split`]): what would
/// have failed a cluster alone in its request.
///
/// [`RunEvent::Split`]: crate::RunEvent::Split
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SplitCause {
    /// The answer could not be used.
    Unusable {
        /// What was wrong with it.
        problem: AnswerProblem,
    },
    /// The request is too big to send: over the model's context window or the account's
    /// tokens per minute, or refused by the server as too large (413).
    TooBigToSend,
}

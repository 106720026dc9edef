//! [`run_backend_conformance`]: the suite for `LlmBackend` implementations.

use super::distinct_clusters;
use crate::backend::{BackendError, ChatResponse, FinishReason};
use crate::prompt::OutputMode;

/// The conformance suite for [`LlmBackend`](crate::backend::LlmBackend) plug-ins: sends
/// `backend` the requests the runner renders for a small plan, once in every
/// [`OutputMode`](crate::prompt::OutputMode) it can be asked for, and checks that each answer
/// keeps the prompt's contract. Returns the number of requests answered.
///
/// Checked, per request:
/// - the call's future is `Send` (checked when this compiles: the runner spawns on any runtime);
/// - an answer parses (in either shape the prompt allows: the design's
///   `{"clusters": [...]}`, [`response_schema`](crate::prompt::response_schema), or a batch's keyed
///   schema), names only the request's clusters, and
///   answers at least one; its `finish_reason` is `stop`; its usage, when reported, has prompt
///   tokens;
/// - a failure is a [`BackendError`](crate::backend::BackendError) whose class agrees with
///   itself: a retryable error is not account-wide, and `retry_after` only comes with a
///   rate limit or an overload.
///
/// A backend that cannot take a mode says so with
/// [`BackendError::UnsupportedFormat`](crate::backend::BackendError::UnsupportedFormat),
/// which passes.
///
/// # Errors
/// The first broken rule, as a [`BackendConformanceError`] naming the output mode.
///
/// ```
/// # #[cfg(feature = "mock")] {
/// let mock = dynbatch::backend::mock::MockBackend::new();
/// let answered = futures::executor::block_on(dynbatch::testing::run_backend_conformance(&mock))?;
/// assert_eq!(answered, 4);
/// # }
/// # Ok::<(), dynbatch::testing::BackendConformanceError>(())
/// ```
pub async fn run_backend_conformance<B: crate::backend::LlmBackend>(
    backend: &B,
) -> Result<usize, BackendConformanceError> {
    use crate::prompt::{PromptCluster, RequestSettings};

    fn send<F: Send>(future: F) -> F {
        future
    }
    let clusters = distinct_clusters(3);
    let strategy = crate::strategy::StrategySettings::balanced();
    let prompt: Vec<PromptCluster<'_>> = clusters
        .iter()
        .map(|cluster| PromptCluster {
            cluster,
            quality: 0.9,
        })
        .collect();
    let mut answered = 0;
    for mode in OutputMode::fallbacks() {
        let settings = RequestSettings {
            output: mode,
            ..RequestSettings::default()
        };
        let request = settings.request("conformance", &strategy, &prompt);
        match send(backend.complete(&request)).await {
            Ok(response) => {
                check_answer(mode, &response)?;
                answered += 1;
            }
            Err(BackendError::UnsupportedFormat(_)) => {}
            Err(source) => return Err(check_failure(mode, source)),
        }
    }
    Ok(answered)
}

/// The rules an answer keeps.
fn check_answer(mode: OutputMode, response: &ChatResponse) -> Result<(), BackendConformanceError> {
    use BackendConformanceError as E;
    let parsed = crate::response::parse(&response.content).map_err(|e| E::Unparsable {
        mode,
        reason: e.to_string(),
        content: response.content.clone(),
    })?;
    if parsed.clusters.is_empty() {
        return Err(E::NoCluster { mode });
    }
    if let Some(cluster) = parsed
        .clusters
        .iter()
        .map(|c| c.cluster)
        .find(|n| !(1..=3).contains(n))
    {
        return Err(E::ForeignCluster { mode, cluster });
    }
    if response.finish_reason != FinishReason::Stop {
        return Err(E::NotStopped {
            mode,
            finish_reason: response.finish_reason.clone(),
        });
    }
    if response.usage.is_some_and(|u| u.prompt_tokens == 0) {
        return Err(E::NoPromptTokens { mode });
    }
    Ok(())
}

/// A failure: whose class contradicts itself, or which failed a request it should answer.
fn check_failure(mode: OutputMode, source: BackendError) -> BackendConformanceError {
    use BackendConformanceError as E;
    if source.is_retryable() && source.is_account_wide() {
        return E::Contradiction {
            mode,
            rule: "an error is either retryable or account-wide",
            source,
        };
    }
    if source.retry_after().is_some()
        && !matches!(
            source,
            BackendError::RateLimited { .. } | BackendError::Overloaded { .. }
        )
    {
        return E::Contradiction {
            mode,
            rule: "only a rate limit or an overload carries a retry-after",
            source,
        };
    }
    E::Failed { mode, source }
}

/// What an [`LlmBackend`](crate::backend::LlmBackend) did that breaks the prompt's contract,
/// as [`run_backend_conformance`] found it; each names the output mode of the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendConformanceError {
    /// The answer is not a patterns answer in any shape the prompt allows.
    #[error("output mode {mode}: {reason}: {content:?}")]
    Unparsable {
        /// The request's output mode.
        mode: OutputMode,
        /// Why it does not parse.
        reason: String,
        /// The answer's content.
        content: String,
    },
    /// The answer parses but answers no cluster.
    #[error("output mode {mode}: the answer names no cluster")]
    NoCluster {
        /// The request's output mode.
        mode: OutputMode,
    },
    /// The answer names a cluster the request did not ask about.
    #[error("output mode {mode}: the answer names cluster {cluster}; the request has 1-3")]
    ForeignCluster {
        /// The request's output mode.
        mode: OutputMode,
        /// The cluster number it named.
        cluster: i64,
    },
    /// A complete answer whose `finish_reason` is not `stop`.
    #[error("output mode {mode}: finish_reason {finish_reason:?} for a complete answer")]
    NotStopped {
        /// The request's output mode.
        mode: OutputMode,
        /// What the backend said.
        finish_reason: FinishReason,
    },
    /// Usage reported with no prompt tokens.
    #[error("output mode {mode}: usage reported with 0 prompt tokens")]
    NoPromptTokens {
        /// The request's output mode.
        mode: OutputMode,
    },
    /// An error whose classification contradicts itself.
    #[error("output mode {mode}: {source}: {rule}")]
    Contradiction {
        /// The request's output mode.
        mode: OutputMode,
        /// The rule it breaks.
        rule: &'static str,
        /// The error.
        source: BackendError,
    },
    /// The request failed (with an error other than
    /// [`BackendError::UnsupportedFormat`]).
    #[error("output mode {mode}: the request failed: {source}")]
    Failed {
        /// The request's output mode.
        mode: OutputMode,
        /// The error.
        source: BackendError,
    },
}

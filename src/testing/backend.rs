//! [`run_backend_conformance`]: the suite for `LlmBackend` implementations.

use super::distinct_clusters;

/// The conformance suite for [`LlmBackend`](crate::backend::LlmBackend) plug-ins: sends
/// `backend` the requests the runner renders for a small plan, once in every
/// [`OutputMode`](crate::prompt::OutputMode) it can be asked for, and checks that each answer
/// keeps the prompt's contract. Returns the number of requests answered.
///
/// Checked, per request:
/// - the call's future is `Send` (checked when this compiles: the runner spawns on any runtime);
/// - an answer parses (in either shape the prompt allows: [`PatternResponse`](crate::prompt::PatternResponse) or the keyed schema), names only the request's clusters, and
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
/// The first broken rule, naming the request and the output mode.
pub async fn run_backend_conformance<B: crate::backend::LlmBackend>(
    backend: &B,
) -> Result<usize, String> {
    use crate::backend::BackendError;
    use crate::prompt::{OutputMode, PromptCluster, RequestSettings};

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
    for output in OutputMode::fallbacks() {
        let settings = RequestSettings {
            output,
            ..RequestSettings::default()
        };
        let request = settings.request("conformance", &strategy, &prompt);
        let at = format!("output mode {output}");
        match send(backend.complete(&request)).await {
            Ok(response) => {
                let parsed = crate::response::parse(&response.content)
                    .map_err(|e| format!("{at}: {e}: {:?}", response.content))?;
                if parsed.clusters.is_empty() {
                    return Err(format!("{at}: the answer names no cluster"));
                }
                if let Some(n) = parsed
                    .clusters
                    .iter()
                    .map(|c| c.cluster)
                    .find(|n| !(1..=3).contains(n))
                {
                    return Err(format!(
                        "{at}: the answer names cluster {n}; the request has 1-3"
                    ));
                }
                if response.finish_reason != crate::backend::FinishReason::Stop {
                    return Err(format!(
                        "{at}: finish_reason {:?} for a complete answer",
                        response.finish_reason
                    ));
                }
                if response.usage.is_some_and(|u| u.prompt_tokens == 0) {
                    return Err(format!("{at}: usage reported with 0 prompt tokens"));
                }
                answered += 1;
            }
            Err(BackendError::UnsupportedFormat(_)) => {}
            Err(e) => {
                if e.is_retryable() && e.is_account_wide() {
                    return Err(format!("{at}: {e} is both retryable and account-wide"));
                }
                if e.retry_after().is_some()
                    && !matches!(
                        e,
                        BackendError::RateLimited { .. } | BackendError::Overloaded { .. }
                    )
                {
                    return Err(format!("{at}: {e} carries a retry-after"));
                }
                return Err(format!("{at}: the request failed: {e}"));
            }
        }
    }
    Ok(answered)
}

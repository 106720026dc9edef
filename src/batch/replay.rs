//! Batch results into a [`DiscoveryReport`], through the runner itself: a backend that answers
//! each rendered request from its outcome, so a batch run's report is a live run's, line for
//! line (validation, salvage, consolidation), at the batch price tier.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::BATCH_DISCOUNT;
use super::input::BatchInput;
use super::results::{BatchResults, Outcome};
use crate::backend::{
    BackendError, BatchOutput, ChatRequest, ChatResponse, LineOutcome, LlmBackend,
};
use crate::error::{Error, PlanMismatch};
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::report::{DiscoveryReport, PriceTier};
use crate::run::{RunConfig, Runner};
use crate::timer::{Sleep, Timer};

/// Answers each rendered request from its batch outcome.
#[derive(Debug)]
struct Replay {
    by_prompt: HashMap<String, (String, Option<Outcome>)>,
}

#[async_trait]
impl LlmBackend for Replay {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let permanent = |m: String| BackendError::Other {
            retryable: false,
            source: m.into(),
        };
        match self.by_prompt.get(&request.user_text()) {
            None => Err(permanent(
                "the request is not part of the batch input".into(),
            )),
            Some((id, None)) => Err(permanent(format!("no result line for {id}"))),
            Some((id, Some(Outcome::Batch { reason, .. }))) => {
                Err(permanent(format!("{id}: {reason}")))
            }
            Some((id, Some(Outcome::Line(line)))) => match line {
                // A line of a finished batch: nothing to wait for or stop, whatever it says.
                LineOutcome::Failed { code, message, .. } => Err(permanent(format!(
                    "the batch failed {id}: {code}: {message}"
                ))),
                LineOutcome::Answered(answer) => {
                    let mut answer = (**answer).clone();
                    if answer.model.is_empty() {
                        answer.model.clone_from(&request.model);
                    }
                    // Rate limits of a batch line say nothing of the live limits.
                    answer.rate_limits = None;
                    Ok(answer)
                }
            },
        }
    }
}

/// Replay's clock: results are already there, so a wait has nothing to wait for. Every sleep
/// completes at once and moves the clock on by its length, so no path can hang on it, and a
/// loop bounded in time (a patience, a deadline) still ends.
#[derive(Debug)]
struct Instantly {
    start: std::time::Instant,
    slept: std::sync::Mutex<Duration>,
}

impl Instantly {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            slept: std::sync::Mutex::new(Duration::ZERO),
        }
    }
}

impl Timer for Instantly {
    fn sleep(&self, duration: Duration) -> Sleep {
        let mut slept = crate::sync::lock(&self.slept);
        *slept = slept.saturating_add(duration);
        Box::pin(futures::future::ready(()))
    }

    fn now(&self) -> std::time::Instant {
        let slept = *crate::sync::lock(&self.slept);
        self.start.checked_add(slept).unwrap_or(self.start)
    }
}

/// Imports batch results read offline (e.g. `OpenAI`'s output and error files, read with
/// [`read_batch_file`](crate::backend::openai::read_batch_file)) into a [`DiscoveryReport`].
/// `plan`, `clusters`, `concept` and `config.request` must be those of the export. Failed
/// lines and requests with no line become failed clusters with reasons; unknown or repeated
/// `custom_id`s and lines that do not parse are reported as warnings. Costs use
/// `config.prices` less [`BATCH_DISCOUNT`].
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub async fn import<'a>(
    plan: BatchPlan<'a>,
    clusters: &'a [Cluster],
    concept: &str,
    config: &RunConfig,
    output: BatchOutput,
) -> Result<DiscoveryReport<'a>, Error> {
    let input = BatchInput::unencoded(&plan, clusters, concept, config)?;
    let mut results = BatchResults::new(&input);
    results.add("results", output);
    import_results(plan, clusters, concept, config, &input, &results).await
}

/// Imports the outcomes gathered in `results` (of `input`, made from the same `plan`,
/// `clusters`, `concept` and `config`) into a [`DiscoveryReport`], as [`import`] does.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`, or `input` has another
/// number of requests than `plan` has batches.
pub(crate) async fn import_results<'a>(
    plan: BatchPlan<'a>,
    clusters: &'a [Cluster],
    concept: &str,
    config: &RunConfig,
    input: &BatchInput,
    results: &BatchResults,
) -> Result<DiscoveryReport<'a>, Error> {
    if input.len() != plan.batches.len() || results.outcomes.len() != input.len() {
        return Err(PlanMismatch::BatchCount {
            batches: plan.batches.len(),
            requests: input.len(),
            results: results.outcomes.len(),
        }
        .into());
    }
    let by_prompt = input
        .requests()
        .iter()
        .zip(input.custom_ids())
        .zip(&results.outcomes)
        .map(|((request, id), outcome)| (request.user_text(), (id.clone(), outcome.clone())))
        .collect();
    let mut replay_config = config.clone();
    replay_config.split_and_reask = false;
    replay_config.max_retries = 0;
    replay_config.max_extra_calls = 0;
    // Replay never waits: no pacing of answers that are already there.
    replay_config.requests_per_minute = None;
    replay_config.tokens_per_minute = None;
    replay_config.concurrency = plan.batches.len().max(1);
    replay_config.prices = config.prices.at_discount(BATCH_DISCOUNT);
    let runner = Runner::new(Replay { by_prompt }, Instantly::new()).with_config(replay_config);
    let mut report = runner.run(plan, clusters, concept).await?;
    report.usage.calls_made = results.with_line() as u64;
    report.usage.price_tier = PriceTier::Batch;
    report.warnings.extend(results.warnings.iter().cloned());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_waits_complete_at_once_and_move_the_clock() {
        let clock = Instantly::new();
        let before = clock.now();
        let mut sleep = clock.sleep(Duration::from_secs(3_600));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(
            sleep.as_mut().poll(&mut cx).is_ready(),
            "a replay wait must not hang"
        );
        assert_eq!(clock.now() - before, Duration::from_secs(3_600));
    }
}

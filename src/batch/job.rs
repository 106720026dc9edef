//! Polling and collecting batches, and the whole job: [`BatchRunner::run`] and its steps, and
//! the [`BatchJob`] they leave.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::event::BatchEvent;
use super::input::BatchInput;
use super::replay::import_results;
use super::results::BatchResults;
use super::runner::{BatchRunner, batch_error};
use crate::backend::{BackendError, BatchBackend, BatchInfo, BatchStatus};
use crate::error::{Error, FormatError};
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::report::DiscoveryReport;
use crate::run::RunConfig;

/// How often batches are polled, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PollConfig {
    /// The first wait between polls. Default 10 s.
    pub first: Duration,
    /// The longest wait between polls. Default 5 min.
    pub max: Duration,
    /// How much each wait grows. Default 1.5.
    pub factor: f64,
    /// How long to wait for batches to end before giving up (they keep running; run again to
    /// attach). Default 25 h: the 24 h window and the time to write the files.
    pub max_wait: Duration,
    /// Transient errors in a row (429, 5xx, 529, connection) before a call gives up. Default
    /// 10.
    pub max_errors: u32,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(10),
            max: Duration::from_secs(300),
            factor: 1.5,
            max_wait: Duration::from_secs(25 * 3600),
            max_errors: 10,
        }
    }
}

impl PollConfig {
    /// This polling, giving up waiting after `max_wait`.
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// This polling, waiting `first` between the first looks, each wait `factor` times the
    /// last, up to `max`.
    #[must_use]
    pub fn with_backoff(mut self, first: Duration, factor: f64, max: Duration) -> Self {
        self.first = first;
        self.factor = factor;
        self.max = max;
        self
    }

    /// This polling, a call giving up after `max_errors` transient errors in a row.
    #[must_use]
    pub fn with_max_errors(mut self, max_errors: u32) -> Self {
        self.max_errors = max_errors;
        self
    }

    pub(super) fn next(&self, wait: Duration) -> Duration {
        wait.mul_f64(self.factor.max(1.0)).min(self.max)
    }
}

/// What happens to requests a batch left unanswered (it expired, or their lines failed in a
/// way another try may mend). Nothing is dropped either way: they are failed clusters with
/// their reason in the report, and [`BatchRun::unanswered`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Remainder {
    /// Send them again in new batches, up to `rounds` times. The default, with 2 rounds.
    NewBatch {
        /// Rounds of new batches at most.
        rounds: u32,
    },
    /// Leave them, e.g. for a live run: [`BatchResults::record`] puts the answers in a
    /// journal, and a [`Runner`](crate::Runner) with that journal sends only the rest.
    Leave,
}

impl Default for Remainder {
    fn default() -> Self {
        Self::NewBatch { rounds: 2 }
    }
}

/// One submitted batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedBatch {
    /// The batch.
    pub batch_id: String,
    /// The requests it holds (indices into the plan's batches); empty for a batch attached to
    /// by id whose provider keeps no input, until its results say.
    pub requests: Vec<usize>,
    /// Whether it was found submitted already (in the journal or by id) rather than created.
    pub attached: bool,
}

/// The batches of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchJob {
    /// Every batch, in submission order (resubmissions after the first round).
    pub batches: Vec<SubmittedBatch>,
}

impl BatchJob {
    /// The batch ids.
    pub fn batch_ids(&self) -> Vec<&str> {
        self.batches.iter().map(|b| b.batch_id.as_str()).collect()
    }
}

/// The end of [`BatchRunner::run`].
#[derive(Debug)]
pub struct BatchRun<'a> {
    /// The report, as a live run's, with costs at batch prices.
    pub report: DiscoveryReport<'a>,
    /// Every batch of the run: keep the ids to attach again or cancel.
    pub job: BatchJob,
    /// The plan's requests as sent.
    pub input: BatchInput,
    /// Every request's outcome.
    pub results: BatchResults,
    /// Requests (indices into the plan's batches) still unanswered: their clusters are
    /// failed in the report, and a live run (see [`Remainder::Leave`]) may answer them.
    pub unanswered: Vec<usize>,
}

impl<B: BatchBackend> BatchRunner<B> {
    /// Polls `batches` until each has ended (completed, failed, expired or cancelled), waiting
    /// longer between polls as [`PollConfig`] says; returns their last states, in order.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a poll fails for good, or when the batches have not ended
    /// after [`PollConfig::max_wait`] (they keep running: attach to them later).
    pub async fn wait(&self, batches: &[SubmittedBatch]) -> Result<Vec<BatchInfo>, Error> {
        let started = self.timer.now();
        let mut last: Vec<Option<BatchInfo>> = vec![None; batches.len()];
        let mut wait = self.poll.first;
        loop {
            for (batch, slot) in batches.iter().zip(last.iter_mut()) {
                if slot.as_ref().is_some_and(|b| b.status.is_terminal()) {
                    continue;
                }
                let info = self
                    .with_retries("poll batch", || self.backend.get(&batch.batch_id))
                    .await?;
                self.emit(&BatchEvent::Polled {
                    batch_id: info.id.clone(),
                    status: info.status,
                    counts: info.request_counts,
                });
                *slot = Some(info);
            }
            if last
                .iter()
                .all(|b| b.as_ref().is_some_and(|b| b.status.is_terminal()))
            {
                return Ok(last.into_iter().flatten().collect());
            }
            if self.timer.now().saturating_duration_since(started) >= self.poll.max_wait {
                let running: Vec<&str> = batches
                    .iter()
                    .zip(&last)
                    .filter(|(_, b)| !b.as_ref().is_some_and(|b| b.status.is_terminal()))
                    .map(|(s, _)| s.batch_id.as_str())
                    .collect();
                return Err(batch_error(
                    &format!(
                        "wait (still running: {}; run again to attach to them)",
                        running.join(", ")
                    ),
                    BackendError::Timeout(self.poll.max_wait),
                ));
            }
            self.timer.sleep(wait).await;
            wait = self.poll.next(wait);
        }
    }

    /// Reads the results of ended `batches` (`states` as [`wait`] returned them) into
    /// `results`, and sets what their requests with no line end as: a failed batch fails them
    /// with its errors; an expired one, or a completed one with no line, leaves them worth
    /// another batch; a cancelled one fails them. A batch whose requests were not known (one
    /// attached to by id) learns them from its lines.
    ///
    /// [`wait`]: BatchRunner::wait
    ///
    /// # Errors
    /// [`Error::BatchApi`] when reading results fails for good; [`Error::Format`] when a batch
    /// attached to by id holds requests of another input.
    pub(crate) async fn collect(
        &self,
        batches: &mut [SubmittedBatch],
        states: &[BatchInfo],
        results: &mut BatchResults,
    ) -> Result<(), Error> {
        for (batch, state) in batches.iter_mut().zip(states) {
            let output = if state.status == BatchStatus::Failed {
                crate::backend::BatchOutput::default()
            } else {
                self.with_retries("read results", || self.backend.results(state))
                    .await?
            };
            self.emit(&BatchEvent::Downloaded {
                batch_id: state.id.clone(),
                lines: output.lines.len(),
                bytes: output.bytes,
            });
            let unknown = batch.requests.is_empty();
            let first_foreign = output.lines.first().map(|l| l.custom_id.clone());
            let lines = output.lines.len();
            let seen = results.add(&format!("batch {}", state.id), output);
            if unknown {
                if seen.is_empty() && lines > 0 {
                    return Err(FormatError::ForeignRequest {
                        batch_id: state.id.clone(),
                        custom_id: first_foreign.unwrap_or_default(),
                    }
                    .into());
                }
                batch.requests = seen;
            }
            let (reason, retry) = match state.status {
                BatchStatus::Failed => {
                    let why: Vec<String> = state.errors.iter().map(ToString::to_string).collect();
                    (
                        format!(
                            "batch {} failed: {}",
                            state.id,
                            if why.is_empty() {
                                "no reason given".to_owned()
                            } else {
                                why.join("; ")
                            }
                        ),
                        false,
                    )
                }
                BatchStatus::Cancelled => (format!("batch {} was cancelled", state.id), false),
                BatchStatus::Expired => (
                    format!("batch {} expired before answering it", state.id),
                    true,
                ),
                other => (
                    format!(
                        "batch {} ended {other} with no result line for it",
                        state.id
                    ),
                    true,
                ),
            };
            results.fail_requests(&batch.requests, &reason, retry);
        }
        Ok(())
    }

    /// Cancels every batch of `job` that has not ended; returns how many it cancelled.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a call fails for good.
    pub async fn cancel_job(&self, job: &BatchJob) -> Result<usize, Error> {
        let mut cancelled = 0;
        for batch in &job.batches {
            let state = self
                .with_retries("retrieve batch", || self.backend.get(&batch.batch_id))
                .await?;
            if !state.status.is_terminal() && state.status != BatchStatus::Cancelling {
                self.with_retries("cancel batch", || self.backend.cancel(&batch.batch_id))
                    .await?;
                self.emit(&BatchEvent::Cancelled {
                    batch_id: batch.batch_id.clone(),
                });
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    /// The whole job: the plan's requests in files within the limits, submitted (or attached
    /// to, through the client's store), polled to their end, their result files imported into
    /// a report as a live run's (costs at batch prices), the unanswered handled as the client's
    /// [`Remainder`] says.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`; otherwise as
    /// [`submit`](BatchRunner::submit) and [`finish`](BatchRunner::finish).
    pub async fn run<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        config: &RunConfig,
    ) -> Result<BatchRun<'a>, Error> {
        let input = self.input(&plan, clusters, concept, config)?;
        let everything: Vec<usize> = (0..input.len()).collect();
        let batches = self.submit(&input, &everything).await?;
        self.finish(plan, clusters, concept, config, input, batches)
            .await
    }

    /// [`run`](BatchRunner::run) from batches already submitted (e.g. from
    /// [`attach`](BatchRunner::attach)): wait, collect, handle the remainder, import.
    ///
    /// # Errors
    /// As [`run`](BatchRunner::run).
    pub async fn finish<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        config: &RunConfig,
        input: BatchInput,
        batches: Vec<SubmittedBatch>,
    ) -> Result<BatchRun<'a>, Error> {
        let mut results = BatchResults::new(&input);
        let mut job = BatchJob::default();
        let mut round_batches = batches;
        let mut round = 0;
        loop {
            let states = self.wait(&round_batches).await?;
            self.collect(&mut round_batches, &states, &mut results)
                .await?;
            job.batches.append(&mut round_batches);
            let unanswered = results.unanswered();
            let rounds = match self.remainder {
                Remainder::NewBatch { rounds } => rounds,
                Remainder::Leave => 0,
            };
            if unanswered.is_empty() || round >= rounds {
                break;
            }
            round += 1;
            self.emit(&BatchEvent::Resubmitting {
                requests: unanswered.len(),
                round,
            });
            round_batches = self.submit(&input, &unanswered).await?;
        }
        let unanswered = results.unanswered();
        let report = import_results(plan, clusters, concept, config, &input, &results).await?;
        Ok(BatchRun {
            report,
            job,
            input,
            results,
            unanswered,
        })
    }
}

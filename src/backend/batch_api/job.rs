//! Submitting, attaching to, polling and collecting batches: [`BatchApiClient::run`] and its
//! steps, the [`BatchEvent`]s they report, and the [`BatchJob`] they leave.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{BatchApiClient, BatchInfo, BatchStatus};
use super::event::BatchEvent;
use super::input::BatchInput;
use super::results::{BatchResults, import_results};
use crate::backend::BackendError;
use crate::error::Error;
use crate::model::Cluster;
use crate::patterns::DiscoveryReport;
use crate::plan::BatchPlan;
use crate::run::RunConfig;
use crate::timer::Timer;

/// How often batches are polled, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// Transient errors in a row (429, 5xx, connection) before a call gives up. Default 10.
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
    /// journal, and a [`Runner`](crate::run::Runner) with that journal sends only the rest.
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
    /// Its input file.
    pub input_file_id: String,
    /// The requests it holds (indices into the plan's batches).
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

/// The end of [`BatchApiClient::run`].
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

pub(super) fn batch_error(operation: &str, source: BackendError) -> Error {
    Error::BatchApi {
        operation: operation.to_owned(),
        source,
    }
}

impl BatchApiClient {
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
                    .with_retries("poll batch", || self.retrieve(&batch.batch_id))
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

    /// Downloads the output and error files of ended `batches` (`states` as [`wait`] returned
    /// them) into `results`, and sets what their requests with no line end as: a failed batch
    /// fails them with its errors; an expired one, or a completed one with no line, leaves
    /// them worth another batch; a cancelled one fails them.
    ///
    /// [`wait`]: BatchApiClient::wait
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a download fails for good.
    pub async fn collect(
        &self,
        batches: &[SubmittedBatch],
        states: &[BatchInfo],
        results: &mut BatchResults,
    ) -> Result<(), Error> {
        for (batch, state) in batches.iter().zip(states) {
            for (kind, file) in [
                ("output", &state.output_file_id),
                ("error", &state.error_file_id),
            ] {
                let Some(file_id) = file else { continue };
                let text = self
                    .with_retries("download results", || self.download(file_id))
                    .await?;
                self.emit(&BatchEvent::Downloaded {
                    batch_id: state.id.clone(),
                    file_id: file_id.clone(),
                    bytes: text.len(),
                });
                results.add_file(&format!("batch {} {kind} file", state.id), &text);
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
                        "batch {} ended {other} with no line for it in its result files",
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
                .with_retries("retrieve batch", || self.retrieve(&batch.batch_id))
                .await?;
            if !state.status.is_terminal() && state.status != BatchStatus::Cancelling {
                self.with_retries("cancel batch", || self.cancel(&batch.batch_id))
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
    /// [`submit`](BatchApiClient::submit), [`wait`](BatchApiClient::wait) and
    /// [`collect`](BatchApiClient::collect).
    pub async fn run<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        config: &RunConfig,
    ) -> Result<BatchRun<'a>, Error> {
        let input = self.input(&plan, clusters, concept, config)?;
        let everything: Vec<usize> = (0..input.len()).collect();
        let shards = input.shards(&everything, self.limits)?;
        let batches = self.submit(&shards).await?;
        self.finish(plan, clusters, concept, config, input, batches)
            .await
    }

    /// [`run`](BatchApiClient::run) from batches already submitted (e.g. from
    /// [`attach`](BatchApiClient::attach)): wait, collect, handle the remainder, import.
    ///
    /// # Errors
    /// As [`run`](BatchApiClient::run).
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
            self.collect(&round_batches, &states, &mut results).await?;
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
            let shards = input.shards(&unanswered, self.limits)?;
            round_batches = self.submit(&shards).await?;
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

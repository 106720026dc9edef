//! Submitting, attaching to, polling and collecting batches: [`BatchApiClient::run`] and its
//! steps, the [`BatchEvent`]s they report, and the [`BatchJob`] they leave.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{BatchApiClient, BatchInfo, BatchStatus, RequestCounts};
use super::input::{BatchInput, Shard};
use super::results::{BatchResults, import_results};
use crate::backend::BackendError;
use crate::error::Error;
use crate::model::Cluster;
use crate::patterns::DiscoveryReport;
use crate::plan::BatchPlan;
use crate::run::RunConfig;
use crate::store::{BatchRecord, RunStore};
use crate::timer::Timer;

/// The metadata key that ties a batch to its input file's key.
const KEY_FIELD: &str = "dynbatch_key";
/// How many pages of the account's batches to look through for one made from a given file.
const LIST_PAGES: usize = 10;

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
    fn next(&self, wait: Duration) -> Duration {
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

/// What a [`BatchApiClient`] is doing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BatchEvent {
    /// An input file was uploaded.
    Uploaded {
        /// The file.
        file_id: String,
        /// Requests in it.
        requests: usize,
        /// Its size.
        bytes: usize,
    },
    /// A batch was created.
    Submitted {
        /// The batch.
        batch_id: String,
        /// Requests in it.
        requests: usize,
    },
    /// A batch submitted earlier was found (in the journal, by id, or by its input file).
    Attached {
        /// The batch.
        batch_id: String,
        /// Its state.
        status: BatchStatus,
    },
    /// A batch was polled.
    Polled {
        /// The batch.
        batch_id: String,
        /// Its state.
        status: BatchStatus,
        /// Its request counts.
        counts: RequestCounts,
    },
    /// A call failed in a way worth another try; it is made again after `retry_in`.
    CallFailed {
        /// What was being done.
        operation: String,
        /// The error.
        error: String,
        /// The wait before the next try.
        retry_in: Duration,
    },
    /// A result file was downloaded.
    Downloaded {
        /// The batch.
        batch_id: String,
        /// The file.
        file_id: String,
        /// Its size.
        bytes: usize,
    },
    /// Requests left unanswered go into new batches.
    Resubmitting {
        /// How many.
        requests: usize,
        /// Which round of new batches (from 1).
        round: u32,
    },
    /// A batch was cancelled on request.
    Cancelled {
        /// The batch.
        batch_id: String,
    },
}

impl fmt::Display for BatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uploaded {
                file_id,
                requests,
                bytes,
            } => write!(f, "uploaded {file_id}: {requests} requests, {bytes} bytes"),
            Self::Submitted { batch_id, requests } => {
                write!(f, "submitted {batch_id}: {requests} requests")
            }
            Self::Attached { batch_id, status } => {
                write!(f, "attached to {batch_id} ({status}), submitted earlier")
            }
            Self::Polled {
                batch_id,
                status,
                counts,
            } => write!(
                f,
                "{batch_id}: {status}, {}/{} done, {} failed",
                counts.completed, counts.total, counts.failed
            ),
            Self::CallFailed {
                operation,
                error,
                retry_in,
            } => write!(
                f,
                "{operation} failed ({error}); again in {:.1} s",
                retry_in.as_secs_f64()
            ),
            Self::Downloaded {
                batch_id,
                file_id,
                bytes,
            } => write!(f, "{batch_id}: downloaded {file_id} ({bytes} bytes)"),
            Self::Resubmitting { requests, round } => write!(
                f,
                "{requests} requests unanswered: new batches, round {round}"
            ),
            Self::Cancelled { batch_id } => write!(f, "cancelled {batch_id}"),
        }
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

fn batch_error(operation: &str, source: BackendError) -> Error {
    Error::BatchApi {
        operation: operation.to_owned(),
        source,
    }
}

impl BatchApiClient {
    /// Makes `call` until it succeeds, fails for good, or has failed `max_errors` times in a
    /// row, waiting (the server's `retry-after`, else a growing delay) between tries.
    async fn with_retries<T, F, Fut>(
        &self,
        operation: &str,
        timer: &dyn Timer,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut wait = Duration::from_secs(1).min(self.poll.first);
        let mut errors = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() && errors + 1 < self.poll.max_errors => {
                    errors += 1;
                    let retry_in = e.retry_after().unwrap_or(wait).min(self.poll.max);
                    self.emit(&BatchEvent::CallFailed {
                        operation: operation.to_owned(),
                        error: e.to_string(),
                        retry_in,
                    });
                    timer.sleep(retry_in).await;
                    wait = self.poll.next(wait.max(Duration::from_millis(1)));
                }
                Err(e) => return Err(batch_error(operation, e)),
            }
        }
    }

    /// A batch of the account made from `input_file_id`, if one of the newest
    /// `LIST_PAGES` pages holds one.
    async fn find_by_file(
        &self,
        input_file_id: &str,
        timer: &dyn Timer,
    ) -> Result<Option<BatchInfo>, Error> {
        let mut after: Option<String> = None;
        for _ in 0..LIST_PAGES {
            let (page, more) = self
                .with_retries("list batches", timer, || self.list(after.as_deref(), 100))
                .await?;
            if let Some(found) = page.iter().find(|b| b.input_file_id == input_file_id) {
                return Ok(Some(found.clone()));
            }
            match (more, page.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(None)
    }

    /// Creates a batch of `file_id`, looking first for one already made from it (a create
    /// whose answer was lost may have succeeded: never pay for a file twice).
    async fn create_once(
        &self,
        file_id: &str,
        metadata: &BTreeMap<String, String>,
        timer: &dyn Timer,
    ) -> Result<(BatchInfo, bool), Error> {
        let mut tries = 0;
        loop {
            if let Some(found) = self.find_by_file(file_id, timer).await? {
                return Ok((found, true));
            }
            match self.create(file_id, metadata).await {
                Ok(batch) => return Ok((batch, false)),
                Err(e) if e.is_retryable() && tries + 1 < self.poll.max_errors => {
                    tries += 1;
                    let retry_in = e.retry_after().unwrap_or(self.poll.first);
                    self.emit(&BatchEvent::CallFailed {
                        operation: "create batch".into(),
                        error: e.to_string(),
                        retry_in,
                    });
                    timer.sleep(retry_in).await;
                }
                Err(e) => return Err(batch_error("create batch", e)),
            }
        }
    }

    /// Submits the files `shards` of `input`, one batch each. With a `store`, each file's
    /// batch is looked up first (attached to when found: never submitted twice), and recorded
    /// as soon as the file is uploaded and again once the batch exists.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a call fails for good; [`Error::Store`] when the store cannot
    /// be read or written (before the batch it concerns is created).
    pub async fn submit(
        &self,
        shards: &[Shard],
        store: Option<&dyn RunStore>,
        timer: &dyn Timer,
    ) -> Result<Vec<SubmittedBatch>, Error> {
        let mut submitted = Vec::with_capacity(shards.len());
        for shard in shards {
            let record = match store {
                Some(store) => store.get_batch(&shard.key)?,
                None => None,
            };
            let metadata = BTreeMap::from([(KEY_FIELD.to_owned(), shard.key.to_string())]);
            let (batch, attached) = match record {
                Some(BatchRecord {
                    batch_id: Some(id), ..
                }) => {
                    let batch = self
                        .with_retries("retrieve batch", timer, || self.retrieve(&id))
                        .await?;
                    (batch, true)
                }
                Some(BatchRecord {
                    input_file_id,
                    batch_id: None,
                }) => self.create_once(&input_file_id, &metadata, timer).await?,
                None => {
                    let file_id = self
                        .with_retries("upload", timer, || {
                            self.upload("dynbatch.jsonl", shard.jsonl.clone())
                        })
                        .await?;
                    self.emit(&BatchEvent::Uploaded {
                        file_id: file_id.clone(),
                        requests: shard.requests.len(),
                        bytes: shard.jsonl.len(),
                    });
                    if let Some(store) = store {
                        store.put_batch(
                            &shard.key,
                            &BatchRecord {
                                input_file_id: file_id.clone(),
                                batch_id: None,
                            },
                        )?;
                    }
                    self.create_once(&file_id, &metadata, timer).await?
                }
            };
            if let Some(store) = store {
                store.put_batch(
                    &shard.key,
                    &BatchRecord {
                        input_file_id: batch.input_file_id.clone(),
                        batch_id: Some(batch.id.clone()),
                    },
                )?;
            }
            self.emit(&if attached {
                BatchEvent::Attached {
                    batch_id: batch.id.clone(),
                    status: batch.status,
                }
            } else {
                BatchEvent::Submitted {
                    batch_id: batch.id.clone(),
                    requests: shard.requests.len(),
                }
            });
            submitted.push(SubmittedBatch {
                batch_id: batch.id,
                input_file_id: batch.input_file_id,
                requests: shard.requests.clone(),
                attached,
            });
        }
        Ok(submitted)
    }

    /// Attaches to batches by id (as printed by an earlier run): each batch's requests are
    /// read from its input file, so any batch made from this `input` (first round or later)
    /// is recognised.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a call fails for good; [`Error::Format`] for a batch whose
    /// input file holds a request that is not in `input`.
    pub async fn attach(
        &self,
        input: &BatchInput,
        batch_ids: &[String],
        timer: &dyn Timer,
    ) -> Result<Vec<SubmittedBatch>, Error> {
        let index: HashMap<&str, usize> = input
            .custom_ids()
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut attached = Vec::with_capacity(batch_ids.len());
        for id in batch_ids {
            let batch = self
                .with_retries("retrieve batch", timer, || self.retrieve(id))
                .await?;
            let file = self
                .with_retries("download input file", timer, || {
                    self.download(&batch.input_file_id)
                })
                .await?;
            let mut requests = Vec::new();
            for (n, line) in file
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                #[derive(Deserialize)]
                struct Line {
                    custom_id: String,
                }
                let custom_id = serde_json::from_str::<Line>(line)
                    .map_err(|e| {
                        Error::Format(format!(
                            "batch {id}: input file line {}: not a Batch API request: {e}",
                            n + 1
                        ))
                    })?
                    .custom_id;
                let i = index.get(custom_id.as_str()).ok_or_else(|| {
                    Error::Format(format!(
                        "batch {id} holds {custom_id}, which is not a request of this plan: it was submitted for other clusters, concept or settings"
                    ))
                })?;
                requests.push(*i);
            }
            self.emit(&BatchEvent::Attached {
                batch_id: batch.id.clone(),
                status: batch.status,
            });
            attached.push(SubmittedBatch {
                batch_id: batch.id,
                input_file_id: batch.input_file_id,
                requests,
                attached: true,
            });
        }
        Ok(attached)
    }

    /// Polls `batches` until each has ended (completed, failed, expired or cancelled), waiting
    /// longer between polls as [`PollConfig`] says; returns their last states, in order.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a poll fails for good, or when the batches have not ended
    /// after [`PollConfig::max_wait`] (they keep running: attach to them later).
    pub async fn wait(
        &self,
        batches: &[SubmittedBatch],
        timer: &dyn Timer,
    ) -> Result<Vec<BatchInfo>, Error> {
        let started = timer.now();
        let mut last: Vec<Option<BatchInfo>> = vec![None; batches.len()];
        let mut wait = self.poll.first;
        loop {
            for (batch, slot) in batches.iter().zip(last.iter_mut()) {
                if slot.as_ref().is_some_and(|b| b.status.is_terminal()) {
                    continue;
                }
                let info = self
                    .with_retries("poll batch", timer, || self.retrieve(&batch.batch_id))
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
            if timer.now().saturating_duration_since(started) >= self.poll.max_wait {
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
            timer.sleep(wait).await;
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
        timer: &dyn Timer,
    ) -> Result<(), Error> {
        for (batch, state) in batches.iter().zip(states) {
            for (kind, file) in [
                ("output", &state.output_file_id),
                ("error", &state.error_file_id),
            ] {
                let Some(file_id) = file else { continue };
                let text = self
                    .with_retries("download results", timer, || self.download(file_id))
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
    pub async fn cancel_job(&self, job: &BatchJob, timer: &dyn Timer) -> Result<usize, Error> {
        let mut cancelled = 0;
        for batch in &job.batches {
            let state = self
                .with_retries("retrieve batch", timer, || self.retrieve(&batch.batch_id))
                .await?;
            if !state.status.is_terminal() && state.status != BatchStatus::Cancelling {
                self.with_retries("cancel batch", timer, || self.cancel(&batch.batch_id))
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
    /// to, through `store`), polled to their end, their result files imported into a report
    /// as a live run's (costs at batch prices), the unanswered handled as `remainder` says.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`; otherwise as
    /// [`submit`](BatchApiClient::submit), [`wait`](BatchApiClient::wait) and
    /// [`collect`](BatchApiClient::collect).
    #[allow(clippy::too_many_arguments)]
    pub async fn run<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        config: &RunConfig,
        timer: &dyn Timer,
        store: Option<&dyn RunStore>,
        remainder: Remainder,
    ) -> Result<BatchRun<'a>, Error> {
        let input = self.input(&plan, clusters, concept, config)?;
        let everything: Vec<usize> = (0..input.len()).collect();
        let shards = input.shards(&everything, self.limits)?;
        let batches = self.submit(&shards, store, timer).await?;
        self.finish(
            plan, clusters, concept, config, timer, store, remainder, input, batches,
        )
        .await
    }

    /// [`run`](BatchApiClient::run) from batches already submitted (e.g. from
    /// [`attach`](BatchApiClient::attach)): wait, collect, handle the remainder, import.
    ///
    /// # Errors
    /// As [`run`](BatchApiClient::run).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        config: &RunConfig,
        timer: &dyn Timer,
        store: Option<&dyn RunStore>,
        remainder: Remainder,
        input: BatchInput,
        batches: Vec<SubmittedBatch>,
    ) -> Result<BatchRun<'a>, Error> {
        let mut results = BatchResults::new(&input);
        let mut job = BatchJob::default();
        let mut round_batches = batches;
        let mut round = 0;
        loop {
            let states = self.wait(&round_batches, timer).await?;
            self.collect(&round_batches, &states, &mut results, timer)
                .await?;
            job.batches.append(&mut round_batches);
            let unanswered = results.unanswered();
            let rounds = match remainder {
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
            round_batches = self.submit(&shards, store, timer).await?;
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

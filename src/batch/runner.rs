//! [`BatchRunner`]: a [`BatchBackend`] with the workflow's settings (limits, polling, what
//! becomes of unanswered requests, the clock, the journal, the event handler), and the retries
//! every call shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::event::BatchEvent;
use super::input::BatchInput;
use super::job::{PollConfig, Remainder};
use crate::backend::{BackendError, BatchBackend, BatchLimits};
use crate::error::Error;
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::run::RunConfig;
use crate::store::RunStore;
use crate::timer::Timer;

/// What [`BatchRunner::on_event`] keeps.
type EventHandler = Arc<dyn Fn(&BatchEvent) + Send + Sync>;

/// Runs a plan through a provider's batch API (see the [module docs](super)).
///
/// ```no_run
/// # #[cfg(feature = "openai")]
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dynbatch::backend::openai::OpenAiBatches;
/// use dynbatch::batch::{BatchRunner, Remainder};
/// use dynbatch::{Batcher, Cluster, RunConfig, TokioTimer};
/// use dynbatch::store::SqliteStore;
///
/// let clusters: Vec<Cluster> = serde_json::from_str(&std::fs::read_to_string("clusters.json")?)?;
/// let plan = Batcher::default().plan(&clusters)?;
/// let runner = BatchRunner::new(OpenAiBatches::from_env()?, TokioTimer)
///     .with_store(SqliteStore::open("discovery.journal")?)
///     .with_remainder(Remainder::NewBatch { rounds: 2 })
///     .on_event(|event| eprintln!("{event}"));
/// let run = runner.run(plan, &clusters, "home espresso", &RunConfig::default()).await?;
/// println!("batches {:?}; cost ${:.4}", run.job.batch_ids(),
///          run.report.usage.estimated_cost_usd.unwrap_or(0.0));
/// # Ok(()) }
/// ```
pub struct BatchRunner<B> {
    pub(super) backend: B,
    pub(super) limits: BatchLimits,
    pub(super) poll: PollConfig,
    pub(super) remainder: Remainder,
    pub(super) timer: Arc<dyn Timer>,
    pub(super) store: Option<Arc<dyn RunStore>>,
    events: Option<EventHandler>,
}

impl<B: fmt::Debug> fmt::Debug for BatchRunner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchRunner")
            .field("backend", &self.backend)
            .field("limits", &self.limits)
            .field("poll", &self.poll)
            .field("remainder", &self.remainder)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<B: BatchBackend> BatchRunner<B> {
    /// Drives `backend`, waiting on `timer`; the backend's limits, default polling, new batches
    /// for what is left (2 rounds), no journal.
    pub fn new(backend: B, timer: impl Timer + 'static) -> Self {
        Self {
            limits: backend.limits(),
            backend,
            poll: PollConfig::default(),
            remainder: Remainder::default(),
            timer: Arc::new(timer),
            store: None,
            events: None,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The limits per batch (default: the backend's).
    #[must_use]
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How often to poll, and for how long.
    #[must_use]
    pub fn with_poll(mut self, poll: PollConfig) -> Self {
        self.poll = poll;
        self
    }

    /// What becomes of requests a batch left unanswered. Default: new batches, 2 rounds.
    #[must_use]
    pub fn with_remainder(mut self, remainder: Remainder) -> Self {
        self.remainder = remainder;
        self
    }

    /// Keeps every submission in `store` (a journal): each batch is recorded as pending before
    /// it is created and again once it exists, so running again with the same input attaches
    /// instead of paying twice. Default: none.
    #[must_use]
    pub fn with_store(mut self, store: impl RunStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Calls `handler` with every [`BatchEvent`] (submissions, polls, downloads, retries).
    #[must_use]
    pub fn on_event(mut self, handler: impl Fn(&BatchEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(handler));
        self
    }

    pub(super) fn emit(&self, event: &BatchEvent) {
        if let Some(handler) = &self.events {
            handler(event);
        }
    }

    /// The batch input of `plan`, in the backend's format.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
    pub fn input(
        &self,
        plan: &BatchPlan<'_>,
        clusters: &[Cluster],
        concept: &str,
        config: &RunConfig,
    ) -> Result<BatchInput, Error> {
        BatchInput::new(plan, clusters, concept, config, &self.backend)
    }

    /// Makes `call` until it succeeds, fails for good, or has failed `max_errors` times in a
    /// row, waiting (the server's `retry-after`, else a growing delay) between tries.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        operation: &str,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        self.retrying(operation, |_| {
            let answer = call();
            async move { Ok(answer.await) }
        })
        .await
    }

    /// The one retry loop of the batch client: `call(attempt)` (0 first) is made again after a
    /// transient error, up to `max_errors` in a row, waiting the server's `retry-after` or a
    /// wait that grows from 1 s (or `first`, when shorter) by `factor` up to `max`; each retry
    /// is an event. An `Err` of the outer result (the store, an unsure batch) ends it at once.
    pub(super) async fn retrying<T, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Result<T, BackendError>, Error>>,
    {
        let mut wait = Duration::from_secs(1).min(self.poll.first);
        let mut errors = 0;
        loop {
            match call(errors).await? {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() && errors + 1 < self.poll.max_errors => {
                    errors += 1;
                    let retry_in = e.retry_after().unwrap_or(wait).min(self.poll.max);
                    self.emit(&BatchEvent::CallFailed {
                        operation: operation.to_owned(),
                        error: e.to_string(),
                        retry_in,
                    });
                    self.timer.sleep(retry_in).await;
                    wait = self.poll.next(wait.max(Duration::from_millis(1)));
                }
                Err(e) => return Err(batch_error(operation, e)),
            }
        }
    }
}

pub(super) fn batch_error(operation: &str, source: BackendError) -> Error {
    Error::BatchApi {
        operation: operation.to_owned(),
        source,
    }
}

//! The async runner: executes a [`BatchPlan`] against an [`LlmBackend`] at the account's rate
//! limit and through its outages, with nothing lost, and with a journal of answers
//! ([`Runner::with_store`]) so that a run killed at any instant resumes. One file per concern:
//!
//! - `driver.rs`: the request loop, which starts a request whenever a slot, the circuit breaker
//!   and the rate limiter allow;
//! - `settle.rs`: what happens to a call that came back (answer, 429, error, stop);
//! - `limiter/`: pacing by requests and tokens per minute, learnt from the server (the bucket
//!   arithmetic, telling a stray 429 from a limit, sharing a key with other clients, and the
//!   [`RateLimiter`] handle runners share);
//! - `concurrency.rs`: adaptive concurrency (AIMD) up to [`RunConfig::concurrency`];
//! - `retry.rs`: back-off, the circuit breaker, the extra-call budget;
//! - `recover.rs`: splitting unusable answers, re-asking missing clusters;
//! - `event.rs`: [`RunEvent`] and [`EventStream`]; `report.rs`: the [`DiscoveryReport`];
//!   `config.rs`: [`RunConfig`].
//!
//! Dropping the future returned by [`Runner::run`] cancels cleanly: no request starts after.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::backend::LlmBackend;
use crate::error::Error;
use crate::model::Cluster;
use crate::patterns::{LexicalMerger, PatternMerger, Support};
use crate::plan::{BatchPlan, batch_members};
use crate::prompt::render_requests;
use crate::report::DiscoveryReport;
use crate::store::RunStore;
use crate::timer::Timer;

mod concurrency;
mod config;
mod driver;
mod embed;
mod event;
mod limiter;
mod probe;
mod recover;
mod retry;
mod settle;
mod tally;

pub use config::{RunConfig, RunConfigBuilder};
pub use embed::Embedding;
pub use event::{EventStream, RunEvent};
pub use limiter::RateLimiter;

use event::EventSink;

/// Runs plans against a backend. `Backend` is the [`LlmBackend`], `Clock` the [`Timer`].
pub struct Runner<Backend, Clock> {
    backend: Backend,
    timer: Clock,
    config: RunConfig,
    events: Option<EventSink>,
    store: Option<Arc<dyn RunStore>>,
    /// A limiter shared with other runners ([`Runner::with_rate_limiter`]).
    limiter: Option<RateLimiter>,
    /// The consolidation stage ([`Runner::with_merger`]); `None`: lexical, at
    /// `merge_similarity`.
    merger: Option<Arc<dyn PatternMerger>>,
    /// Under [`OutputMode::Auto`](crate::prompt::OutputMode::Auto), the mode the server took
    /// in an earlier run of this runner: later runs start there.
    learnt_output: std::sync::Mutex<Option<crate::prompt::OutputMode>>,
}

impl<Backend: fmt::Debug, Clock: fmt::Debug> fmt::Debug for Runner<Backend, Clock> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("backend", &self.backend)
            .field("timer", &self.timer)
            .field("config", &self.config)
            .field("events", &self.events.is_some())
            .field("store", &self.store)
            .field("limiter", &self.limiter)
            .field("merger", &self.merger)
            .field("learnt_output", &*crate::sync::lock(&self.learnt_output))
            .finish()
    }
}

impl<Backend: LlmBackend, Clock: Timer> Runner<Backend, Clock> {
    /// A runner with the default [`RunConfig`].
    pub fn new(backend: Backend, timer: Clock) -> Self {
        Self {
            backend,
            timer,
            config: RunConfig::default(),
            events: None,
            store: None,
            limiter: None,
            merger: None,
            learnt_output: std::sync::Mutex::new(None),
        }
    }

    /// Consolidates with `merger` instead of the lexical merger at
    /// [`RunConfig::merge_similarity`]. Should it fail (an embedding server down for good),
    /// the run falls back to the lexical merger and says so in a warning.
    #[must_use]
    pub fn with_merger(mut self, merger: impl PatternMerger + 'static) -> Self {
        self.merger = Some(Arc::new(merger));
        self
    }

    /// Keeps a journal of answers in `store`: every request is looked up before it is sent
    /// (a hit is used without a call, as `cached`), and every answer is recorded before its
    /// clusters are reported as succeeded, so a run killed at any instant and run again with
    /// the same store pays no answered call twice.
    #[must_use]
    pub fn with_store(mut self, store: impl RunStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Paces by `limiter`, shared with the other runners given a clone of it, instead of a
    /// limiter of each run's own: several discoveries of one service on one API key then pace
    /// as one client. The limiter's limits are those it was made with (see
    /// [`RateLimiter::new`]); this runner's `requests_per_minute` and `tokens_per_minute` are
    /// not used.
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Replaces the config.
    #[must_use]
    pub fn with_config(mut self, config: RunConfig) -> Self {
        *crate::sync::lock(&self.learnt_output) = None;
        self.config = config;
        self
    }

    /// Calls `sink` with every [`RunEvent`]. Handlers add up: each one added gets every
    /// event, after those added before it. A handler outlives the call that adds it (it is
    /// kept by the runner), hence `'static`; to collect events into local state, read
    /// [`event_stream`](Runner::event_stream) instead.
    #[must_use]
    pub fn on_event(mut self, sink: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        // Every handler gets every event, in the order they were added.
        let before = self.events.take();
        self.events = Some(Arc::new(move |event: &RunEvent| {
            if let Some(earlier) = &before {
                earlier(event);
            }
            sink(event);
        }));
        self
    }

    /// The runner's events as a stream too (after any `on_event` handler): results as they
    /// arrive, `RunEvent::Finished` last. Read it while the run goes (e.g. with `join!`); this
    /// is also how to collect events without `'static` handlers or a `Mutex`.
    ///
    /// ```
    /// # #[cfg(all(feature = "mock", feature = "tokio"))]
    /// # tokio_test_block_on(async {
    /// use dynbatch::{RunEvent, Runner, TokioTimer};
    /// use dynbatch::backend::mock::MockBackend;
    /// use dynbatch::{Batcher, Cluster, Video};
    ///
    /// let clusters: Vec<Cluster> = (0..3)
    ///     .map(|i| Cluster::new(format!("c{i}"), vec![
    ///         Video::new(format!("I Tried Espresso {i} for 30 Days"), 5.0),
    ///         Video::new(format!("I Tried Grinder {i} for 30 Days"), 4.0),
    ///     ]))
    ///     .collect();
    /// let plan = Batcher::default().plan(&clusters).unwrap();
    /// let (runner, mut events) = Runner::new(MockBackend::new(), TokioTimer).event_stream();
    /// let consume = async {
    ///     while let Some(event) = events.next().await {
    ///         match event {
    ///             RunEvent::Succeeded { results, .. } => {
    ///                 for r in results { println!("{}: {} patterns", r.id, r.patterns.len()); }
    ///             }
    ///             RunEvent::Finished { .. } => break,
    ///             _ => {}
    ///         }
    ///     }
    /// };
    /// let (report, ()) = tokio::join!(runner.run(plan, &clusters, "espresso"), consume);
    /// assert!(report.is_ok());
    /// # });
    /// # #[cfg(all(feature = "mock", feature = "tokio"))]
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    /// # }
    /// ```
    #[must_use]
    pub fn event_stream(mut self) -> (Self, EventStream) {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let before = self.events.take();
        self.events = Some(Arc::new(move |event: &RunEvent| {
            if let Some(sink) = &before {
                sink(event);
            }
            // The receiver may be gone: the caller stopped listening, the run goes on.
            let _ = sender.unbounded_send(event.clone());
        }));
        (self, EventStream(receiver))
    }

    /// The config.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Every request the plan's batches would send, in plan order, without sending any.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`; [`Error::Config`] when
    /// the [`RunConfig`] is invalid ([`RunConfig::validate`]).
    pub fn requests(
        &self,
        plan: &BatchPlan<'_>,
        clusters: &[Cluster],
        concept: &str,
    ) -> Result<Vec<crate::backend::ChatRequest>, Error> {
        render_requests(plan, clusters, concept, &self.config.request)
    }

    /// Executes `plan` (made from `clusters`) and consolidates what the model found.
    ///
    /// Never fails because of the backend: every batched cluster ends `succeeded` or `failed`
    /// with a reason in the report.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`; [`Error::Config`] when
    /// the [`RunConfig`] is invalid ([`RunConfig::validate`]).
    pub async fn run<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
    ) -> Result<DiscoveryReport<'a>, Error> {
        self.run_until(plan, clusters, concept, futures::future::pending())
            .await
    }

    /// As [`Runner::run`], until `interrupt` completes (e.g. on Ctrl-C): then nothing more is
    /// sent, the requests in flight are waited for (each bounded by `request_timeout`) and
    /// recorded, and the clusters not answered fail with the reason `interrupted`. With a
    /// journal ([`Runner::with_store`]), running the same plan again resumes.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`; [`Error::Config`] when
    /// the [`RunConfig`] is invalid ([`RunConfig::validate`]).
    pub async fn run_until<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        interrupt: impl std::future::Future<Output = ()> + Send,
    ) -> Result<DiscoveryReport<'a>, Error> {
        self.config.validate()?;
        let members = batch_members(&plan, clusters)?;
        let mut run = driver::Run::new(self, &plan, clusters, concept, &members);
        run.drive(interrupt).await;
        let extras = tally::Extras {
            extra_calls: run.budget.used(),
            circuit_opened: run.breaker.opened(),
            rate_limits: run.limiter.summary(),
            elapsed: self.timer.now().saturating_duration_since(run.started),
            output_mode: run.output,
        };
        let tally = std::mem::replace(&mut run.tally, tally::Tally::new(0));
        drop(run);
        let (mut report, support) =
            tally.finish(plan, clusters, &members, concept, &self.config, &extras);
        self.consolidate(&mut report, &support).await;
        self.probe(&mut report, clusters, concept, &members).await;
        if let Some(sink) = &self.events {
            let (succeeded, failed) = report.outcome_counts();
            sink(&RunEvent::Finished { succeeded, failed });
        }
        Ok(report)
    }
}

impl<Backend: LlmBackend, Clock: Timer> Runner<Backend, Clock> {
    /// Fills the report's patterns with the merger's groups (the lexical merger's, should it
    /// fail), their aliases with the batch that named them, and its usage.
    async fn consolidate(&self, report: &mut DiscoveryReport<'_>, support: &[Support]) {
        let lexical = LexicalMerger::new(self.config.merge_similarity);
        let merged = match &self.merger {
            Some(merger) => match merger.merge(support).await {
                Ok(done) => done,
                Err(e) => {
                    let mut fallback = lexical.merge(support).await.unwrap_or_default();
                    fallback.warnings.push(format!(
                        "consolidation: the merger failed ({e}); patterns merged by shared words instead"
                    ));
                    fallback
                }
            },
            None => lexical.merge(support).await.unwrap_or_default(),
        };
        let batch_of: HashMap<&str, usize> = report
            .outcomes
            .iter()
            .map(|o| (o.id.as_str(), o.batch))
            .collect();
        let mut patterns = merged.patterns;
        for alias in patterns.iter_mut().flat_map(|p| p.aliases.iter_mut()) {
            alias.batch = batch_of.get(alias.cluster.as_str()).copied();
        }
        report.patterns = patterns;
        report.warnings.extend(merged.warnings);
        let mut usage = merged.usage;
        if let Some(model) = &usage.judge_model {
            let tokens = crate::backend::TokenUsage {
                prompt_tokens: usage.judge_prompt_tokens,
                completion_tokens: usage.judge_completion_tokens,
                ..crate::backend::TokenUsage::default()
            };
            usage.estimated_cost_usd = self.config.prices.cost(model, &tokens);
        }
        report.usage.consolidation = Some(usage);
    }
}

/// `now + wait`, for any wait a server or a config may give: a wait too long for the clock is
/// a day (longer than any patience worth having), never a panic.
fn later(now: std::time::Instant, wait: std::time::Duration) -> std::time::Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(86_400)))
        .unwrap_or(now)
}

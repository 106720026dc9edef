//! The request loop: one future that owns the queue, starts a request whenever a slot, the
//! circuit breaker and the rate limiter allow, and handles each answer as it lands, in
//! whatever order (no head-of-line blocking; the report is rebuilt in plan order).
//!
//! A 429 puts the request back at the head of the queue without spending a retry or an extra
//! call; transient errors are retried with back-off, then go to the back of the queue while
//! the extra-call budget lasts; an account-wide error stops all sending.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::pin;

use futures::future::{BoxFuture, Either, select};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tracing::Instrument;

use super::Runner;
use super::concurrency::Window;
use super::event::RunEvent;
use super::limiter::{Cost, Limiter, RateLimiter, Ticket};
use super::retry::{Breaker, Budget, Gate};
use super::tally::Tally;
use crate::backend::{BackendError, ChatRequest, ChatResponse, ErrorKind, LlmBackend};
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::prompt::OutputMode;
use crate::prompt::prompt_clusters;
use crate::report::{Failure, StopCause};
use crate::store::RequestKey;
use crate::timer::Timer;

/// One request's worth of clusters, waiting or in flight.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) batch: usize,
    /// Input indices.
    pub(super) members: Vec<usize>,
    /// Asked again for clusters an answer left out (not asked a third time).
    pub(super) reask: bool,
    /// The planned batch's first call: it is not an extra call.
    pub(super) free: bool,
    /// Transient failures in a row.
    pub(super) failures: u32,
    /// Calls made for it.
    pub(super) calls: u32,
    /// Not before (back-off after a transient error, or a stray 429's hold).
    pub(super) ready_at: Option<Instant>,
    /// `ready_at` is a 429's hold: waiting for it is waiting for the rate limit.
    pub(super) held_by_429: bool,
    /// The last error's class and text, for the failure and reason if it ends failed.
    pub(super) last_error: Option<(ErrorKind, String)>,
    /// Its request, once rendered, with its journal key; looked up in the journal.
    pub(super) rendered: Option<(ChatRequest, Option<RequestKey>)>,
}

impl Job {
    pub(super) fn new(batch: usize, members: Vec<usize>, reask: bool, free: bool) -> Self {
        Self {
            batch,
            members,
            reask,
            free,
            failures: 0,
            calls: 0,
            ready_at: None,
            held_by_429: false,
            last_error: None,
            rendered: None,
        }
    }
}

/// A call that came back.
pub(super) struct Landed {
    pub(super) job: Job,
    pub(super) key: Option<RequestKey>,
    pub(super) ticket: Ticket,
    /// The call took an extra call from the budget.
    pub(super) charged: bool,
    pub(super) request: ChatRequest,
    pub(super) estimated_tokens: u64,
    pub(super) result: Result<ChatResponse, BackendError>,
}

/// Whether a request may go now.
enum Go {
    Now,
    /// Not yet: look again then.
    Wait(Wake),
    /// The limiter would hold it longer than the patience since the last answer.
    GiveUp(std::time::Duration),
}

/// An answer whose journal write has ended: durable, or the reason it is not.
pub(super) struct Acked {
    pub(super) job: Job,
    pub(super) request: ChatRequest,
    pub(super) estimated_tokens: u64,
    pub(super) response: ChatResponse,
    pub(super) result: Result<(), String>,
}

/// What the loop woke up for.
enum Next {
    Landed(Landed),
    Acked(Acked),
    Woke,
}

/// Why the loop is waiting, besides answers.
#[derive(Debug, Default, Clone, Copy)]
struct Wake {
    at: Option<Instant>,
    by_limiter: bool,
}

/// The state of one run.
pub(super) struct Run<'r, 'p, 'a, Backend, Clock> {
    pub(super) runner: &'r Runner<Backend, Clock>,
    pub(super) plan: &'p BatchPlan<'a>,
    pub(super) clusters: &'a [Cluster],
    pub(super) concept: &'r str,
    pub(super) tally: Tally,
    pub(super) queue: VecDeque<Job>,
    pub(super) delayed: Vec<Job>,
    pub(super) limiter: RateLimiter,
    pub(super) window: Window,
    pub(super) breaker: Breaker,
    pub(super) budget: Budget,
    /// Why nothing more is sent, once something stopped the run.
    pub(super) stop: Option<(String, StopCause)>,
    /// When the last answer (anything but a 429) arrived.
    pub(super) last_answer: Instant,
    pub(super) started: Instant,
    /// How often each request was rendered in this run, for its journal key.
    pub(super) occurrences: HashMap<RequestKey, u32>,
    /// The output mode requests are rendered in: the configured one, or under
    /// [`OutputMode::Auto`] what the server has not refused yet.
    pub(super) output: OutputMode,
    /// Whether the server has answered a request in `output` (always, unless under
    /// [`OutputMode::Auto`]). Until it has, one request at a time: a refusal is learnt from
    /// one call, not from every call in flight.
    pub(super) output_confirmed: bool,
    /// Emits no event (the quality probe's run).
    pub(super) silent: bool,
    /// The journal's writer thread, when the runner has a journal.
    pub(super) journal: Option<crate::store::Writer>,
    /// Answers handed to the journal since the loop last looked, with their acknowledgements.
    pub(super) journaling: Vec<BoxFuture<'static, Acked>>,
}

impl<'r, 'p, 'a, Backend: LlmBackend, Clock: Timer> Run<'r, 'p, 'a, Backend, Clock> {
    pub(super) fn new(
        runner: &'r Runner<Backend, Clock>,
        plan: &'p BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &'r str,
        members: &[Vec<usize>],
    ) -> Self {
        let config = &runner.config;
        let now = runner.timer.now();
        let learnt = *crate::sync::lock(&runner.learnt_output);
        Self {
            runner,
            plan,
            clusters,
            concept,
            tally: Tally::new(clusters.len()),
            queue: members
                .iter()
                .enumerate()
                .map(|(batch, m)| Job::new(batch, m.clone(), false, true))
                .collect(),
            delayed: Vec::new(),
            limiter: runner
                .limiter
                .clone()
                .unwrap_or_else(|| RateLimiter::from_limiter(Limiter::new(config, now))),
            window: Window::new(config.concurrency, config.adaptive_concurrency),
            breaker: Breaker::new(config.breaker_threshold),
            budget: Budget::new(config.max_extra_calls),
            stop: None,
            last_answer: now,
            started: now,
            occurrences: HashMap::new(),
            output: learnt.unwrap_or(config.request.output.resolved()),
            output_confirmed: config.request.output != OutputMode::Auto || learnt.is_some(),
            silent: false,
            journal: runner
                .store
                .as_ref()
                .filter(|store| store.writes_block())
                .and_then(|store| crate::store::Writer::start(std::sync::Arc::clone(store))),
            journaling: Vec::new(),
        }
    }

    pub(super) fn emit(&self, event: &RunEvent) {
        if self.silent {
            return;
        }
        if let Some(sink) = &self.runner.events {
            sink(event);
        }
    }

    pub(super) fn fail(
        &mut self,
        batch: usize,
        members: &[usize],
        reason: &str,
        failure: &Failure,
    ) {
        tracing::warn!(batch, clusters = members.len(), %reason, "clusters failed");
        self.emit(&RunEvent::Failed {
            batch,
            clusters: members.len(),
            failure: failure.clone(),
            reason: reason.to_owned(),
        });
        self.tally.fail(members, reason, failure);
    }

    /// Runs every job to an end; once `interrupt` completes, sends nothing more and waits
    /// only for the requests in flight (each bounded by the request timeout).
    pub(super) async fn drive(&mut self, interrupt: impl Future<Output = ()> + Send) {
        let runner = self.runner;
        let mut flights: FuturesUnordered<BoxFuture<'r, Landed>> = FuturesUnordered::new();
        // Answers waiting for the journal: heard of once durable.
        let mut acks: FuturesUnordered<BoxFuture<'static, Acked>> = FuturesUnordered::new();
        let mut throttled_until = None;
        let mut interrupt = pin!(interrupt.fuse());
        loop {
            let now = runner.timer.now();
            let wake = self.launch(now, &mut flights);
            if wake.by_limiter && wake.at != throttled_until {
                throttled_until = wake.at;
                self.emit(&RunEvent::Throttled {
                    wait: wake
                        .at
                        .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
                    total: self.tally.counters.waited,
                });
            }
            let idle = flights.is_empty() && acks.is_empty();
            if idle && self.queue.is_empty() && self.delayed.is_empty() {
                break;
            }
            if wake.at.is_none() && idle {
                // Jobs wait on nothing that will come: never hang, account for them.
                self.stop(
                    "internal: the runner had nothing left to wait for",
                    &StopCause::Internal,
                );
                continue;
            }
            let waiting = async {
                // An empty set never ends the wait: only what is in it can.
                let landed = async {
                    match flights.next().await {
                        Some(landed) => Next::Landed(landed),
                        None => futures::future::pending().await,
                    }
                };
                let acked = async {
                    match acks.next().await {
                        Some(acked) => Next::Acked(acked),
                        None => futures::future::pending().await,
                    }
                };
                let either = async {
                    match select(pin!(landed), pin!(acked)).await {
                        Either::Left((next, _)) | Either::Right((next, _)) => next,
                    }
                };
                match wake.at {
                    Some(at) => {
                        let sleep = runner.timer.sleep(at.saturating_duration_since(now));
                        match select(pin!(either), sleep).await {
                            Either::Left((next, _)) => next,
                            Either::Right(((), _)) => Next::Woke,
                        }
                    }
                    None => either.await,
                }
            };
            let next = match select(pin!(waiting), interrupt.as_mut()).await {
                Either::Left((next, _)) => next,
                Either::Right(((), _)) => {
                    self.stop("interrupted", &StopCause::Interrupted);
                    Next::Woke
                }
            };
            if wake.by_limiter {
                let waited = runner.timer.now().saturating_duration_since(now);
                self.tally.counters.waited += waited;
            }
            match next {
                Next::Landed(landed) => self.land(landed),
                Next::Acked(acked) => self.acked(acked),
                Next::Woke => {}
            }
            acks.extend(self.journaling.drain(..));
        }
    }

    /// Starts every request that may go now; says when to look again.
    fn launch(
        &mut self,
        now: Instant,
        flights: &mut FuturesUnordered<BoxFuture<'r, Landed>>,
    ) -> Wake {
        loop {
            if let Some((reason, cause)) = self.stop.clone() {
                self.fail_waiting(&reason, &cause);
                return Wake::default();
            }
            let Some(job) = self.next_job(now) else {
                return self.idle_wake();
            };
            let Some(prepared) = self.prepare(job) else {
                continue; // split or failed before any call
            };
            let (job, estimated_tokens, max_tokens) = prepared;
            // An answer in the journal needs no slot, no limit and no budget.
            let Some(job) = self.serve_from_store(job, estimated_tokens) else {
                continue;
            };
            let cost = Cost {
                input: estimated_tokens,
                output: u64::from(max_tokens),
            };
            match self.gate(now, cost, flights.len()) {
                Go::Now => {}
                Go::Wait(wake) => {
                    self.queue.push_front(job);
                    return wake;
                }
                Go::GiveUp(patience) => {
                    self.queue.push_front(job);
                    self.give_up(patience);
                    continue;
                }
            }
            let charged = !job.free;
            if charged && !self.budget.take() {
                self.fail_over_budget(&job);
                continue;
            }
            let ticket = self.limiter.take(now, cost);
            self.breaker.on_send();
            flights.push(self.send(job, ticket, charged, estimated_tokens));
        }
    }

    /// When to look again with nothing to send now: the first retry's back-off end.
    fn idle_wake(&self) -> Wake {
        let next = self
            .delayed
            .iter()
            .filter_map(|j| j.ready_at.map(|at| (at, j.held_by_429)))
            .min_by_key(|(at, _)| *at);
        Wake {
            at: next.map(|(at, _)| at),
            by_limiter: next.is_some_and(|(_, held)| held),
        }
    }

    /// Whether a request costing `cost` may go now, with `in_flight` requests out: a free
    /// slot of the window (one at a time until the server has taken an output mode), the
    /// breaker closed, the limiter's allowance there (or coming within the patience).
    fn gate(&mut self, now: Instant, cost: Cost, in_flight: usize) -> Go {
        if in_flight >= self.window.limit() || (!self.output_confirmed && in_flight > 0) {
            return Go::Wait(Wake::default());
        }
        match self.breaker.gate(now) {
            Gate::Open => {}
            Gate::Until(at) => {
                return Go::Wait(Wake {
                    at: Some(at),
                    by_limiter: false,
                });
            }
            Gate::Probing => return Go::Wait(Wake::default()),
        }
        let Some(at) = self.limiter.ready_at(now, cost) else {
            return Go::Now;
        };
        let patience = self.runner.config.rate_limit_patience;
        if at.saturating_duration_since(self.last_answer) > patience {
            return Go::GiveUp(patience);
        }
        Go::Wait(Wake {
            at: Some(at),
            by_limiter: true,
        })
    }

    /// Fails `job` for want of extra calls, naming its last error.
    fn fail_over_budget(&mut self, job: &Job) {
        let cap = self.budget.cap();
        let reason = match &job.last_error {
            Some((_, error)) => format!("{error}; extra-call budget exhausted ({cap} calls)"),
            None => format!("extra-call budget exhausted ({cap} calls)"),
        };
        let failure = Failure::BudgetExhausted {
            cap,
            last_error: job.last_error.as_ref().map(|(kind, _)| *kind),
        };
        self.fail(job.batch, &job.members, &reason, &failure);
    }

    /// The next job that may go: a retry whose back-off is over, else the head of the queue.
    fn next_job(&mut self, now: Instant) -> Option<Job> {
        let due = self
            .delayed
            .iter()
            .enumerate()
            .filter(|(_, j)| j.ready_at.is_none_or(|at| at <= now))
            .min_by_key(|(_, j)| j.ready_at)
            .map(|(i, _)| i);
        match due {
            Some(i) => Some(self.delayed.swap_remove(i)),
            None => self.queue.pop_front(),
        }
    }

    /// Renders the job's request (once) and serves it from the journal when it is there;
    /// gives the job back when it must be sent.
    fn serve_from_store(&mut self, mut job: Job, estimated_tokens: u64) -> Option<Job> {
        if let Some((request, _)) = &job.rendered {
            if OutputMode::of(&request.response_format) == self.output {
                return Some(job); // looked up already
            }
            // Rendered before the server refused its output mode: again, in the one in force.
            job.rendered = None;
        }
        let prompt = prompt_clusters(self.plan, self.clusters, &job.members);
        let request = self.runner.config.request.request_as(
            self.output,
            self.concept,
            &self.plan.strategy,
            &prompt,
        );
        let Some(store) = &self.runner.store else {
            job.rendered = Some((request, None));
            return Some(job);
        };
        let key = RequestKey::of(&request);
        let seen = self.occurrences.entry(key).or_insert(0);
        let key = key.occurrence(*seen);
        *seen += 1;
        match store.get(&key) {
            Ok(Some(answer)) => {
                tracing::debug!(batch = job.batch, %key, "answered from the journal");
                // The server answered this mode in the run that paid for it.
                self.output_confirmed = true;
                self.emit(&RunEvent::Cached {
                    batch: job.batch,
                    clusters: job.members.len(),
                });
                // The journal's answer stands in for the call: what follows from it (split
                // halves, a re-ask) is extra, as it was in the run that paid for it.
                job.free = false;
                self.answer(&job, &request, estimated_tokens, &answer, true);
                None
            }
            Ok(None) => {
                job.rendered = Some((request, Some(key)));
                Some(job)
            }
            Err(e) => {
                self.tally
                    .warnings
                    .push(format!("batch {}: journal: {e}; sent again", job.batch + 1));
                job.rendered = Some((request, Some(key)));
                Some(job)
            }
        }
    }

    fn send(
        &mut self,
        mut job: Job,
        ticket: Ticket,
        charged: bool,
        estimated_tokens: u64,
    ) -> BoxFuture<'r, Landed> {
        let runner = self.runner;
        let output = self.output;
        let (request, key) = job.rendered.take().unwrap_or_else(|| {
            let prompt = prompt_clusters(self.plan, self.clusters, &job.members);
            let request = runner.config.request.request_as(
                output,
                self.concept,
                &self.plan.strategy,
                &prompt,
            );
            (request, None)
        });
        if job.calls == 0 {
            self.emit(&RunEvent::BatchStarted {
                batch: job.batch,
                clusters: job.members.len(),
                estimated_tokens,
            });
        }
        job.calls += 1;
        self.tally.sent(&job.members);
        let span = tracing::info_span!(
            "dynbatch.request",
            batch = job.batch,
            clusters = job.members.len(),
            call = job.calls
        );
        let timeout = runner.config.request_timeout;
        Box::pin(
            async move {
                let call = runner.backend.complete(&request);
                let result = match select(call, runner.timer.sleep(timeout)).await {
                    Either::Left((result, _)) => result,
                    Either::Right(((), _)) => Err(BackendError::Timeout(timeout)),
                };
                Landed {
                    job,
                    key,
                    ticket,
                    charged,
                    request,
                    estimated_tokens,
                    result,
                }
            }
            .instrument(span),
        )
    }
}

//! The async runner: executes a [`BatchPlan`] against an [`LlmBackend`] with bounded
//! concurrency, SDK-style retries, splitting of batches whose answers are unusable, one re-ask
//! for clusters an answer left out, a cap on the extra calls all of that may cost, progress
//! events and `tracing` spans. One failing batch never loses the others.
//!
//! Dropping the future returned by [`Runner::run`] cancels cleanly: no request starts after.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{Either, select};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::backend::{BackendError, ChatResponse, FinishReason, LlmBackend};
use crate::error::Error;
use crate::model::Cluster;
use crate::patterns::{
    ClusterOutcome, ClusterPatterns, DiscoveryReport, OutcomeStatus, PriceTable, RequestRecord,
    RunUsage, Support, consolidate,
};
use crate::plan::{BatchPlan, ClusterState};
use crate::prompt::{PromptCluster, RequestSettings};
use crate::response::{self, Pattern};
use crate::timer::Timer;

/// The runner's settings. `Default` follows the design and the official `OpenAI` SDKs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Most requests in flight at once. Default 4.
    pub concurrency: usize,
    /// Retries of a retryable error per request. Default 2.
    pub max_retries: u32,
    /// First back-off delay; doubles per retry. Default 0.5 s.
    pub base_delay: Duration,
    /// Longest back-off delay. Default 8 s.
    pub max_delay: Duration,
    /// Longest server-requested delay honoured; a longer one fails the request. Default 120 s.
    pub max_retry_after: Duration,
    /// Per-request timeout. Default 60 s.
    pub request_timeout: Duration,
    /// Most calls beyond one per planned batch (retries, split halves, re-asks). Default 16.
    pub max_extra_calls: u64,
    /// How requests are rendered.
    pub request: RequestSettings,
    /// Prices per model, for the cost estimate.
    pub prices: PriceTable,
    /// Token-set Jaccard similarity above which two patterns are merged. Default 0.6.
    pub merge_similarity: f64,
    /// Seed of the back-off jitter (runs are reproducible). Default 0.
    pub jitter_seed: u64,
    /// Split requests whose answer is unusable and ask again for clusters an answer left out.
    /// Default `true`; with `false` those clusters fail with the reason (one call per batch,
    /// as when importing Batch API results).
    pub split_and_reask: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(60),
            max_extra_calls: 16,
            request: RequestSettings::default(),
            prices: PriceTable::default(),
            merge_similarity: 0.6,
            jitter_seed: 0,
            split_and_reask: true,
        }
    }
}

/// Progress, as the runner reports it to [`Runner::on_event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEvent {
    /// A request starts (the first call of a planned batch, a split half or a re-ask).
    BatchStarted {
        /// Planned batch index.
        batch: usize,
        /// Clusters in this request.
        clusters: usize,
        /// Estimated prompt tokens of these clusters.
        estimated_tokens: u64,
    },
    /// A retryable error; the request is sent again after `delay`.
    Retried {
        /// Planned batch index.
        batch: usize,
        /// The attempt that failed (1 = first).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// An unusable answer; the request's clusters go out again in two halves.
    Split {
        /// Planned batch index.
        batch: usize,
        /// Clusters in the request that was split.
        clusters: usize,
        /// Why.
        reason: String,
    },
    /// Clusters an answer left out are asked again, on their own.
    Reasked {
        /// Planned batch index.
        batch: usize,
        /// Clusters asked again.
        clusters: usize,
    },
    /// A request's clusters got their patterns.
    Succeeded {
        /// Planned batch index.
        batch: usize,
        /// Clusters answered.
        clusters: usize,
        /// Prompt tokens, when the backend reports usage.
        prompt_tokens: Option<u64>,
        /// Completion tokens, when the backend reports usage.
        completion_tokens: Option<u64>,
    },
    /// Clusters failed for good.
    Failed {
        /// Planned batch index.
        batch: usize,
        /// Clusters failed.
        clusters: usize,
        /// Why.
        reason: String,
    },
}

type EventSink = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// Runs plans against a backend. `B` is the [`LlmBackend`], `T` the [`Timer`].
pub struct Runner<B, T> {
    backend: B,
    timer: T,
    config: RunConfig,
    events: Option<EventSink>,
}

impl<B: fmt::Debug, T: fmt::Debug> fmt::Debug for Runner<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("backend", &self.backend)
            .field("timer", &self.timer)
            .field("config", &self.config)
            .field("events", &self.events.is_some())
            .finish()
    }
}

impl<B: LlmBackend, T: Timer> Runner<B, T> {
    /// A runner with the default [`RunConfig`].
    pub fn new(backend: B, timer: T) -> Self {
        Self {
            backend,
            timer,
            config: RunConfig::default(),
            events: None,
        }
    }

    /// Replaces the config.
    #[must_use]
    pub fn with_config(mut self, config: RunConfig) -> Self {
        self.config = config;
        self
    }

    /// Calls `sink` with every [`RunEvent`].
    #[must_use]
    pub fn on_event(mut self, sink: impl Fn(&RunEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// The config.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Every request the plan's batches would send, in plan order, without sending any.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
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
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
    pub async fn run<'a>(
        &self,
        plan: BatchPlan<'a>,
        clusters: &'a [Cluster],
        concept: &str,
    ) -> Result<DiscoveryReport<'a>, Error> {
        let members = batch_members(&plan, clusters)?;
        let ctx = Ctx {
            runner: self,
            plan: &plan,
            clusters,
            concept,
            counters: Counters::default(),
            results: Mutex::new(HashMap::new()),
            warnings: Mutex::new(Vec::new()),
            records: Mutex::new(Vec::new()),
        };
        let concurrency = self.config.concurrency.max(1);
        futures::stream::iter(members.iter().enumerate())
            .map(|(batch, m)| {
                let span = tracing::info_span!("dynbatch.batch", batch, clusters = m.len());
                ctx.run_batch(batch, m.clone()).instrument(span)
            })
            .buffered(concurrency)
            .collect::<Vec<()>>()
            .await;
        Ok(ctx.finish(plan.clone(), &members))
    }
}

/// Every request the plan's batches would send, in plan order, rendered with `settings`.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub fn render_requests(
    plan: &BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    settings: &RequestSettings,
) -> Result<Vec<crate::backend::ChatRequest>, Error> {
    let members = batch_members(plan, clusters)?;
    Ok(members
        .iter()
        .map(|m| settings.request(concept, &plan.strategy, &prompt_clusters(plan, clusters, m)))
        .collect())
}

/// Input indices of each batch's clusters, checking that the plan belongs to the input.
fn batch_members(plan: &BatchPlan<'_>, clusters: &[Cluster]) -> Result<Vec<Vec<usize>>, Error> {
    if plan.clusters.len() != clusters.len() {
        return Err(Error::PlanMismatch(format!(
            "the plan has {} clusters, the input {}",
            plan.clusters.len(),
            clusters.len()
        )));
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(clusters.len());
    for (i, (entry, cluster)) in plan.clusters.iter().zip(clusters).enumerate() {
        if entry.id != cluster.id.as_str() {
            return Err(Error::PlanMismatch(format!(
                "plan entry {i} is {:?}, input cluster {i} is {:?}",
                entry.id, cluster.id
            )));
        }
        if matches!(entry.state, ClusterState::Batched { .. }) {
            index.insert(cluster.id.as_str(), i);
        }
    }
    plan.batches
        .iter()
        .map(|b| {
            b.clusters
                .iter()
                .map(|id| {
                    index.get(id.as_ref()).copied().ok_or_else(|| {
                        Error::PlanMismatch(format!("batch member {id:?} is not a batched cluster"))
                    })
                })
                .collect()
        })
        .collect()
}

fn prompt_clusters<'a>(
    plan: &BatchPlan<'_>,
    clusters: &'a [Cluster],
    members: &[usize],
) -> Vec<PromptCluster<'a>> {
    members
        .iter()
        .map(|&i| PromptCluster {
            cluster: &clusters[i],
            quality: plan.clusters[i].quality.unwrap_or(0.0),
        })
        .collect()
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    retries: AtomicU64,
    splits: AtomicU64,
    reasks: AtomicU64,
    extra_used: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    reported_usage: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct ClusterResult {
    patterns: Option<Vec<Pattern>>,
    failure: Option<String>,
    attempts: u32,
}

struct Ctx<'r, 'p, 'a, B, T> {
    runner: &'r Runner<B, T>,
    plan: &'p BatchPlan<'a>,
    clusters: &'a [Cluster],
    concept: &'r str,
    counters: Counters,
    results: Mutex<HashMap<usize, ClusterResult>>,
    warnings: Mutex<Vec<String>>,
    records: Mutex<Vec<RequestRecord>>,
}

/// One request's worth of clusters.
struct Unit {
    members: Vec<usize>,
    reask: bool,
}

impl<B: LlmBackend, T: Timer> Ctx<'_, '_, '_, B, T> {
    fn emit(&self, event: &RunEvent) {
        if let Some(sink) = &self.runner.events {
            sink(event);
        }
    }

    /// Takes one call from the extra-call budget.
    fn reserve_extra(&self) -> bool {
        let cap = self.runner.config.max_extra_calls;
        self.counters
            .extra_used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < cap).then_some(used + 1)
            })
            .is_ok()
    }

    fn record(&self, members: &[usize], f: impl Fn(&mut ClusterResult)) {
        let mut results = self
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &m in members {
            f(results.entry(m).or_default());
        }
    }

    fn fail(&self, batch: usize, members: &[usize], reason: &str) {
        tracing::warn!(batch, clusters = members.len(), %reason, "clusters failed");
        self.emit(&RunEvent::Failed {
            batch,
            clusters: members.len(),
            reason: reason.to_owned(),
        });
        self.record(members, |r| r.failure = Some(reason.to_owned()));
    }

    async fn run_batch(&self, batch: usize, members: Vec<usize>) {
        let mut stack = vec![Unit {
            members,
            reask: false,
        }];
        let mut first_call = true;
        let settings = &self.runner.config.request;
        while let Some(unit) = stack.pop() {
            let estimated = self.estimated_tokens(&unit.members);
            let max_tokens = settings.max_tokens(unit.members.len(), &self.plan.strategy);
            if !settings.fits(estimated, max_tokens) {
                // Found before any call: split without spending one.
                let reason = format!(
                    "the estimated prompt ({estimated} tokens) plus max_tokens ({max_tokens}) exceeds the context window ({})",
                    settings.model_limits.map_or(0, |l| l.context_window)
                );
                if unit.members.len() > 1 {
                    self.split(batch, &unit, reason, &mut stack);
                } else {
                    self.fail(batch, &unit.members, &reason);
                }
                continue;
            }
            if !first_call && !self.reserve_extra() {
                self.fail(
                    batch,
                    &unit.members,
                    &format!(
                        "extra-call budget exhausted ({} calls)",
                        self.runner.config.max_extra_calls
                    ),
                );
                continue;
            }
            first_call = false;
            self.run_unit(batch, unit, &mut stack).await;
        }
    }

    async fn run_unit(&self, batch: usize, unit: Unit, stack: &mut Vec<Unit>) {
        let prompt = prompt_clusters(self.plan, self.clusters, &unit.members);
        let request =
            self.runner
                .config
                .request
                .request(self.concept, &self.plan.strategy, &prompt);
        let estimated_tokens = self.estimated_tokens(&unit.members);
        self.emit(&RunEvent::BatchStarted {
            batch,
            clusters: unit.members.len(),
            estimated_tokens,
        });
        let response = match self.call_with_retries(batch, &unit.members, &request).await {
            Ok(response) => response,
            Err(reason) => return self.fail(batch, &unit.members, &reason),
        };
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(RequestRecord {
                batch,
                clusters: unit.members.len(),
                estimated_prompt_tokens: estimated_tokens,
                prompt_tokens: response.usage.map(|u| u.prompt_tokens),
                completion_tokens: response.usage.map(|u| u.completion_tokens),
                max_tokens: request.max_tokens,
            });
        if let Some(usage) = response.usage {
            self.counters
                .prompt_tokens
                .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
            self.counters
                .completion_tokens
                .fetch_add(usage.completion_tokens, Ordering::Relaxed);
            self.counters.reported_usage.fetch_add(1, Ordering::Relaxed);
        }
        let unusable = match unusable(&response) {
            Some(reason) => Some(reason),
            None => match response::parse(&response.content) {
                Ok(parsed) => {
                    self.accept(batch, &unit, &response, parsed, stack);
                    None
                }
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(reason) = unusable {
            if unit.members.len() > 1 && self.runner.config.split_and_reask {
                self.split(batch, &unit, reason, stack);
            } else {
                self.fail(batch, &unit.members, &reason);
            }
        }
    }

    /// The plan's estimate of a request with these clusters.
    fn estimated_tokens(&self, members: &[usize]) -> u64 {
        u64::from(self.plan.request_overhead_tokens)
            + members
                .iter()
                .map(|&m| u64::from(self.plan.clusters[m].estimated_tokens.unwrap_or(0)))
                .sum::<u64>()
    }

    /// Sends a request's clusters out again in two halves, the first half first.
    fn split(&self, batch: usize, unit: &Unit, reason: String, stack: &mut Vec<Unit>) {
        self.counters.splits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(batch, clusters = unit.members.len(), %reason, "splitting");
        self.emit(&RunEvent::Split {
            batch,
            clusters: unit.members.len(),
            reason,
        });
        let (first, second) = unit.members.split_at(unit.members.len() / 2);
        // A stack: push the second half first so the first half runs first.
        stack.push(Unit {
            members: second.to_vec(),
            reask: unit.reask,
        });
        stack.push(Unit {
            members: first.to_vec(),
            reask: unit.reask,
        });
    }

    fn accept(
        &self,
        batch: usize,
        unit: &Unit,
        response: &ChatResponse,
        parsed: response::PatternResponse,
        stack: &mut Vec<Unit>,
    ) {
        let members: Vec<&Cluster> = unit.members.iter().map(|&m| &self.clusters[m]).collect();
        let validated =
            response::validate(parsed, &members, self.plan.strategy.patterns_per_cluster);
        {
            let mut warnings = self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for n in &validated.unknown_clusters {
                warnings.push(format!(
                    "batch {}: the answer names cluster {n}, which the request did not have",
                    batch + 1
                ));
            }
            for w in &validated.warnings {
                let id = &self.clusters[unit.members[w.position()]].id;
                warnings.push(format!("batch {}: cluster {id}: {w}", batch + 1));
            }
        }
        let missing: Vec<usize> = validated
            .missing()
            .into_iter()
            .map(|i| unit.members[i])
            .collect();
        let answered: Vec<usize> = unit
            .members
            .iter()
            .copied()
            .filter(|m| !missing.contains(m))
            .collect();
        for (i, patterns) in validated.patterns.into_iter().enumerate() {
            if let Some(patterns) = patterns {
                self.record(&unit.members[i..=i], |r| {
                    r.patterns = Some(patterns.clone());
                });
            }
        }
        if !answered.is_empty() {
            self.emit(&RunEvent::Succeeded {
                batch,
                clusters: answered.len(),
                prompt_tokens: response.usage.map(|u| u.prompt_tokens),
                completion_tokens: response.usage.map(|u| u.completion_tokens),
            });
        }
        if missing.is_empty() {
            return;
        }
        if !self.runner.config.split_and_reask {
            self.fail(batch, &missing, "not answered");
        } else if unit.reask {
            self.fail(batch, &missing, "not answered, even when asked again");
        } else {
            self.counters.reasks.fetch_add(1, Ordering::Relaxed);
            self.emit(&RunEvent::Reasked {
                batch,
                clusters: missing.len(),
            });
            stack.push(Unit {
                members: missing,
                reask: true,
            });
        }
    }

    /// One request with retries. `Err` is the final reason.
    async fn call_with_retries(
        &self,
        batch: usize,
        members: &[usize],
        request: &crate::backend::ChatRequest,
    ) -> Result<ChatResponse, String> {
        let config = &self.runner.config;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            self.record(members, |r| r.attempts += 1);
            let call = self.runner.backend.complete(request);
            let timeout = self.runner.timer.sleep(config.request_timeout);
            let error = match select(call, timeout).await {
                Either::Left((Ok(response), _)) => return Ok(response),
                Either::Left((Err(e), _)) => e,
                Either::Right(((), _)) => BackendError::Timeout(config.request_timeout),
            };
            if !error.is_retryable() || attempt > config.max_retries {
                let tries = if attempt > 1 {
                    format!(" after {attempt} attempts")
                } else {
                    String::new()
                };
                return Err(format!("{}{tries}: {error}", error.kind()));
            }
            let delay = match error.retry_after() {
                Some(after) if after > config.max_retry_after => {
                    return Err(format!(
                        "{}: the server asked to wait {after:?}, more than max_retry_after {:?}: {error}",
                        error.kind(),
                        config.max_retry_after
                    ));
                }
                Some(after) => after,
                None => backoff(config, batch, attempt),
            };
            if !self.reserve_extra() {
                return Err(format!(
                    "{}: extra-call budget exhausted ({} calls): {error}",
                    error.kind(),
                    config.max_extra_calls
                ));
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(batch, attempt, ?delay, %error, "retrying");
            self.emit(&RunEvent::Retried {
                batch,
                attempt,
                delay,
                error: error.to_string(),
            });
            self.runner.timer.sleep(delay).await;
        }
    }

    fn finish<'a>(&self, plan: BatchPlan<'a>, members: &[Vec<usize>]) -> DiscoveryReport<'a> {
        let results = self
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut outcomes = Vec::new();
        let mut cluster_patterns = Vec::new();
        let mut support = Vec::new();
        for (batch, m) in members.iter().enumerate() {
            for &i in m {
                let r = results.get(&i).cloned().unwrap_or_default();
                let id = self.clusters[i].id.clone();
                let (status, reason) = match (&r.patterns, &r.failure) {
                    (Some(_), _) => (OutcomeStatus::Succeeded, None),
                    (None, Some(reason)) => (OutcomeStatus::Failed, Some(reason.clone())),
                    (None, None) => (
                        OutcomeStatus::Failed,
                        Some("cancelled before an answer".to_owned()),
                    ),
                };
                outcomes.push(ClusterOutcome {
                    id: id.clone(),
                    batch,
                    status,
                    reason,
                    attempts: r.attempts,
                });
                if let Some(patterns) = r.patterns {
                    let cluster = &self.clusters[i];
                    support.push(Support {
                        id: id.clone(),
                        priority: plan.clusters[i].priority.unwrap_or(0.0),
                        avg_performance: cluster.avg_performance,
                        is_wide: cluster.is_wide,
                        patterns: patterns.clone(),
                    });
                    cluster_patterns.push(ClusterPatterns { id, patterns });
                }
            }
        }
        let config = &self.runner.config;
        let c = &self.counters;
        let prompt_tokens = c.prompt_tokens.load(Ordering::Relaxed);
        let mut requests = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        requests.sort_by_key(|r| r.batch); // stable: a batch's requests stay in order
        let (estimated, reported) = requests
            .iter()
            .filter_map(|r| Some((r.estimated_prompt_tokens, r.prompt_tokens?)))
            .fold((0u64, 0u64), |(e, a), (re, ra)| (e + re, a + ra));
        #[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
        let prompt_estimate_error =
            (estimated > 0).then(|| (reported as f64 - estimated as f64) / estimated as f64);
        let completion_tokens = c.completion_tokens.load(Ordering::Relaxed);
        let usage = RunUsage {
            calls_planned: plan.batches.len() as u64,
            calls_made: c.calls.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            splits: c.splits.load(Ordering::Relaxed),
            reasks: c.reasks.load(Ordering::Relaxed),
            extra_calls: c.extra_used.load(Ordering::Relaxed),
            max_extra_calls: config.max_extra_calls,
            estimated_prompt_tokens: plan.batches.iter().map(|b| b.estimated_tokens).sum(),
            estimated_completion_tokens: members
                .iter()
                .map(|m| u64::from(config.request.max_tokens(m.len(), &plan.strategy)))
                .sum(),
            prompt_tokens,
            completion_tokens,
            usage_reported: c.reported_usage.load(Ordering::Relaxed),
            prompt_estimate_error,
            model: config.request.model.clone(),
            estimated_cost_usd: config.prices.cost(
                &config.request.model,
                prompt_tokens,
                completion_tokens,
            ),
        };
        DiscoveryReport {
            concept: self.concept.to_owned(),
            patterns: consolidate(&support, config.merge_similarity),
            plan,
            outcomes,
            cluster_patterns,
            requests,
            usage,
            warnings: self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Why a response cannot be used as an answer, before parsing: truncated or refused.
fn unusable(response: &ChatResponse) -> Option<String> {
    if response.finish_reason == FinishReason::Length {
        return Some("the answer was cut off at max_tokens (finish_reason length)".into());
    }
    if let Some(refusal) = &response.refusal {
        return Some(format!("the model refused: {refusal}"));
    }
    if response.finish_reason == FinishReason::ContentFilter {
        return Some("the answer was cut by a content filter".into());
    }
    None
}

/// The official SDKs' back-off: `min(base × 2^(attempt-1), max)` minus up to 25% jitter.
fn backoff(config: &RunConfig, batch: usize, attempt: u32) -> Duration {
    let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
    let delay = config
        .base_delay
        .saturating_mul(doubling)
        .min(config.max_delay);
    let mut x = config.jitter_seed ^ ((batch as u64) << 32) ^ u64::from(attempt);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    #[allow(clippy::cast_precision_loss)] // 53 random bits as a fraction
    let jitter = (x >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(1.0 - 0.25 * jitter)
}

impl<Q, E, S> crate::plan::Batcher<Q, E, S>
where
    Q: crate::quality::QualityScorer,
    E: crate::tokens::TokenEstimator,
    S: crate::strategy::StrategySelector,
{
    /// Plans `clusters` and runs the plan with `runner`: the whole pipeline.
    ///
    /// # Errors
    /// As [`crate::plan::Batcher::plan`]; backend failures are outcomes in the report, not
    /// errors.
    pub async fn discover<'a, B: LlmBackend, T: Timer>(
        &self,
        clusters: &'a [Cluster],
        concept: &str,
        runner: &Runner<B, T>,
    ) -> Result<DiscoveryReport<'a>, Error> {
        let plan = self.plan(clusters)?;
        runner.run(plan, clusters, concept).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_sdks() {
        let c = RunConfig::default();
        for attempt in 1..=8 {
            let d = backoff(&c, 0, attempt);
            let full = (0.5 * f64::from(2u32.pow(attempt - 1))).min(8.0);
            assert!(
                d.as_secs_f64() <= full && d.as_secs_f64() >= full * 0.75,
                "{attempt}: {d:?}"
            );
        }
    }
}

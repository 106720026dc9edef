//! [`MockBackend`] (feature `mock`): a deterministic, scriptable backend that records every
//! request. By default it answers as [`FormulaFinder`](super::formulas::FormulaFinder) does —
//! it reads the `CLUSTER` blocks back out of the prompt and returns, per cluster, the title
//! formulas its titles share — so offline runs look real. It can enforce a rate limit as
//! providers do ([`MockRateLimit`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{BackendError, ChatRequest, ChatResponse, FinishReason, LlmBackend, RateLimitInfo};
use crate::hash::{fnv, mix};
use crate::timer::Timer;

mod limit;

use super::formulas::{answer as answer_from_prompt, usage};
pub use limit::MockRateLimit;

/// What one scripted call does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MockStep {
    /// Answer from the prompt (the default behaviour).
    Answer,
    /// 429, with the server's retry-after if given.
    RateLimited(Option<Duration>),
    /// 429 with a retry-after (if given) and the account's limits, as `x-ratelimit-*` headers
    /// report them.
    Limited {
        /// The server's retry-after.
        retry_after: Option<Duration>,
        /// The limits reported.
        limits: RateLimitInfo,
    },
    /// An answer from the prompt that reports these limits.
    AnswerWithLimits(RateLimitInfo),
    /// 500.
    ServerError,
    /// 503, with the server's retry-after if given.
    Unavailable(Option<Duration>),
    /// A timeout.
    Timeout,
    /// 401.
    Unauthorized,
    /// 404: the model does not exist.
    NotFound,
    /// 429 `insufficient_quota`.
    QuotaExhausted,
    /// A 200 whose content is not JSON.
    Malformed,
    /// The answer cut in half, with `finish_reason: length`.
    Truncated,
    /// The answer without these cluster numbers.
    Missing(Vec<i64>),
    /// The answer plus an entry for a cluster number the batch does not have.
    UnknownCluster(i64),
    /// A refusal: empty content, `refusal` set.
    Refusal,
    /// An answer cut by the provider's content filter: empty content,
    /// `finish_reason: content_filter`.
    Filtered,
    /// A 400 `content_filter` error: the prompt tripped the provider's filter (Azure `OpenAI`).
    PromptFiltered,
    /// This exact content, `finish_reason: stop`.
    Content(String),
}

impl MockStep {
    /// Every fault the mock can inject, for random fault mixes.
    pub fn faults() -> Vec<MockStep> {
        vec![
            // Bare, as proxies send them: no retry-after, no limits.
            Self::RateLimited(None),
            Self::ServerError,
            Self::Timeout,
            Self::Malformed,
            Self::Truncated,
            Self::Missing(vec![1]),
            Self::UnknownCluster(99),
            Self::Refusal,
        ]
    }
}

/// What happens when a script runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterScript {
    /// Fail loudly: every further call is an error naming the script's length.
    Fail,
    /// Answer from the prompt.
    Answer,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<MockStep>,
    requests: Vec<ChatRequest>,
    /// How often each user prompt (by hash) was sent.
    seen: std::collections::HashMap<u64, u64>,
    calls: u64,
    overrun: u64,
    rate_limited: u64,
    buckets: Option<limit::Buckets>,
}

/// A deterministic backend for tests and offline runs. See the module docs.
///
/// ```
/// use dynbatch::backend::mock::{MockBackend, MockStep};
/// let mock = MockBackend::scripted([MockStep::ServerError, MockStep::Answer]);
/// assert_eq!(mock.remaining(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct MockBackend {
    state: Arc<Mutex<State>>,
    after: AfterScript,
    latency: Duration,
    timer: Option<Arc<dyn Timer>>,
    faults: Option<(f64, u64, Arc<[MockStep]>)>,
    /// Requests whose prompt contains this text get [`MockStep::PromptFiltered`].
    filter: Option<Arc<str>>,
}

impl Default for MockBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MockBackend {
    /// Answers every call from the prompt, with no latency.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            after: AfterScript::Answer,
            latency: Duration::ZERO,
            timer: None,
            faults: None,
            filter: None,
        }
    }

    /// Plays `steps` in order, one per call; once they run out, every call fails loudly (an
    /// error naming the script's length, and [`MockBackend::overrun`] counts them).
    pub fn scripted(steps: impl IntoIterator<Item = MockStep>) -> Self {
        let mock = Self {
            after: AfterScript::Fail,
            ..Self::new()
        };
        mock.lock().script = steps.into_iter().collect();
        mock
    }

    /// After the script, answer from the prompt instead of failing.
    #[must_use]
    pub fn then_answer(mut self) -> Self {
        self.after = AfterScript::Answer;
        self
    }

    /// Waits `latency` on `timer` before each answer (a 429 comes back at once, as a server
    /// refuses a request over its limit before the model runs).
    #[must_use]
    pub fn with_latency(mut self, latency: Duration, timer: impl Timer + 'static) -> Self {
        self.latency = latency;
        self.timer = Some(Arc::new(timer));
        self
    }

    /// Outside the script, injects a fault from [`MockStep::faults`] into a fraction `rate` of
    /// calls. Which calls and which faults depend only on `seed`, the request's text and how
    /// often that same request was sent before, so a run is reproducible whatever the order
    /// in which concurrent requests arrive.
    #[must_use]
    pub fn with_faults(self, rate: f64, seed: u64) -> Self {
        self.with_fault_mix(rate, seed, MockStep::faults())
    }

    /// As [`MockBackend::with_faults`], drawing the faults from `mix` (an empty mix injects
    /// nothing). `MockStep::RateLimited(None)` alone gives stray 429s: refusals that no limit
    /// of the caller's causes, as overloaded pools and proxies send them.
    ///
    /// ```
    /// use dynbatch::backend::mock::{MockBackend, MockStep};
    /// // A third of all calls refused with a bare 429, reproducibly.
    /// let mock = MockBackend::new().with_fault_mix(0.33, 7, vec![MockStep::RateLimited(None)]);
    /// # let _ = mock;
    /// ```
    #[must_use]
    pub fn with_fault_mix(mut self, rate: f64, seed: u64, mix: Vec<MockStep>) -> Self {
        self.faults = (!mix.is_empty()).then(|| (rate.clamp(0.0, 1.0), seed, mix.into()));
        self
    }

    /// Answers every request whose user prompt contains `needle` with
    /// [`MockStep::PromptFiltered`] (outside the script), as a provider whose content filter
    /// one title trips: the request fails, whatever else it asks.
    ///
    /// ```
    /// use dynbatch::backend::mock::MockBackend;
    /// let mock = MockBackend::new().with_content_filter("forbidden");
    /// # let _ = mock;
    /// ```
    #[must_use]
    pub fn with_content_filter(mut self, needle: impl Into<String>) -> Self {
        self.filter = Some(Arc::from(needle.into()));
        self
    }

    /// Every request received, in order of arrival.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.lock().requests.clone()
    }

    /// Calls received.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Scripted steps not yet played.
    pub fn remaining(&self) -> usize {
        self.lock().script.len()
    }

    /// Calls made after a strict script ran out (each one failed).
    pub fn overrun(&self) -> u64 {
        self.lock().overrun
    }

    /// Enforces `limit` on `timer`'s clock, as providers do: a bucket of the per-minute limit
    /// that refills continuously; a request that finds it dry gets a 429 (which plays no
    /// scripted step). Answers report the limits when `limit` has headers.
    #[must_use]
    pub fn with_rate_limit(mut self, limit: MockRateLimit, timer: impl Timer + 'static) -> Self {
        self.lock().buckets = Some(limit::Buckets::new(limit));
        self.timer = Some(Arc::new(timer));
        self
    }

    /// 429s answered, scripted or by the rate limit.
    pub fn rate_limited(&self) -> u64 {
        self.lock().rate_limited
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The next step, with the limits to report with an answer.
    fn next_step(
        &self,
        request: &ChatRequest,
    ) -> Result<(MockStep, Option<RateLimitInfo>), BackendError> {
        let mut state = self.lock();
        state.calls += 1;
        state.requests.push(request.clone());
        let mut limits = None;
        if let (Some(buckets), Some(timer)) = (&mut state.buckets, &self.timer) {
            let (input, output) = token_cost(request);
            match buckets.admit(timer.now(), input, output) {
                Ok(info) => limits = info,
                Err(refusal) => {
                    state.rate_limited += 1;
                    return Err(BackendError::RateLimited {
                        retry_after: refusal.retry_after,
                        message: refusal.message,
                        limits: refusal.limits.map(Box::new),
                    });
                }
            }
        }
        let step = self.play(&mut state, request)?;
        if matches!(step, MockStep::RateLimited(_) | MockStep::Limited { .. }) {
            state.rate_limited += 1;
        }
        Ok((step, limits))
    }

    fn play(&self, state: &mut State, request: &ChatRequest) -> Result<MockStep, BackendError> {
        let prompt_hash = fnv(request.user_text().as_bytes());
        let seen = state.seen.entry(prompt_hash).or_insert(0);
        let repeats = *seen;
        *seen += 1;
        if let Some(step) = state.script.pop_front() {
            return Ok(step);
        }
        if self.after == AfterScript::Fail {
            state.overrun += 1;
            let played = state.calls - state.overrun;
            tracing::error!(played, "MockBackend: script exhausted");
            return Err(BackendError::Other {
                retryable: false,
                source: format!("MockBackend script exhausted: it had {played} steps").into(),
            });
        }
        if let Some(needle) = &self.filter {
            if request.user_text().contains(&**needle) {
                return Ok(MockStep::PromptFiltered);
            }
        }
        if let Some((rate, seed, faults)) = &self.faults {
            let roll = mix(seed ^ prompt_hash ^ repeats.wrapping_mul(0x9E37_79B9));
            #[allow(clippy::cast_precision_loss)] // 53 bits of a hash: a uniform fraction
            let fraction = (roll >> 11) as f64 / (1u64 << 53) as f64;
            if fraction < *rate {
                let pick = usize::try_from(mix(roll) % faults.len() as u64).unwrap_or(0);
                return Ok(faults[pick].clone());
            }
        }
        Ok(MockStep::Answer)
    }
}

impl MockBackend {
    /// The answer's latency: a server refuses a request over its limit before the model
    /// runs, so a 429 comes back at once.
    async fn wait(&self, step: &MockStep) {
        let refused = matches!(step, MockStep::RateLimited(_) | MockStep::Limited { .. });
        if let (Some(timer), false, false) = (&self.timer, self.latency.is_zero(), refused) {
            timer.sleep(self.latency).await;
        }
    }
}

/// An answer that keeps the prompt's contract for `request`: every cluster it asks about, with
/// the patterns its titles share (word skeletons), in the request's output format (the
/// batch schema's keys `c1..cn` when it carries one, the design's shape otherwise). What
/// [`MockBackend`] answers, for canned and test backends of your own: a backend that answers
/// with it passes [`run_backend_conformance`](crate::testing::run_backend_conformance).
pub fn canned_answer(request: &ChatRequest) -> String {
    answer_from_prompt(request, &[], None)
}

#[async_trait]
impl LlmBackend for MockBackend {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let (step, mut rate_limits) = self.next_step(request)?;
        self.wait(&step).await;
        let answer =
            |missing: &[i64], extra: Option<i64>| answer_from_prompt(request, missing, extra);
        let (content, finish_reason, refusal) = match step {
            MockStep::Answer => (answer(&[], None), FinishReason::Stop, None),
            MockStep::AnswerWithLimits(limits) => {
                rate_limits = Some(limits);
                (answer(&[], None), FinishReason::Stop, None)
            }
            MockStep::Malformed => (
                "Here are the patterns: {\"clusters\": [".into(),
                FinishReason::Stop,
                None,
            ),
            MockStep::Truncated => {
                let full = answer(&[], None);
                let half: String = full.chars().take(full.chars().count() / 2).collect();
                (half, FinishReason::Length, None)
            }
            MockStep::Missing(numbers) => (answer(&numbers, None), FinishReason::Stop, None),
            MockStep::UnknownCluster(n) => (answer(&[], Some(n)), FinishReason::Stop, None),
            MockStep::Refusal => (
                String::new(),
                FinishReason::Stop,
                Some("I'm sorry, I can't help with that.".to_owned()),
            ),
            MockStep::Filtered => (String::new(), FinishReason::ContentFilter, None),
            MockStep::Content(text) => (text, FinishReason::Stop, None),
            error => return Err(error_of(error)),
        };
        Ok(ChatResponse {
            usage: Some(usage(request, &content)),
            content,
            finish_reason,
            model: request.model.clone(),
            refusal,
            request_id: None,
            rate_limits,
        })
    }
}

/// The error a step stands for.
fn error_of(step: MockStep) -> BackendError {
    match step {
        MockStep::RateLimited(retry_after) => BackendError::RateLimited {
            retry_after,
            message: "mock: rate limited".into(),
            limits: None,
        },
        MockStep::Limited {
            retry_after,
            limits,
        } => BackendError::RateLimited {
            retry_after,
            message: "mock: rate limited".into(),
            limits: Some(Box::new(limits)),
        },
        MockStep::NotFound => BackendError::NotFound("mock: the model does not exist".into()),
        MockStep::ServerError => BackendError::Overloaded {
            status: Some(500),
            retry_after: None,
            message: "mock: internal server error".into(),
        },
        MockStep::Unavailable(retry_after) => BackendError::Overloaded {
            status: Some(503),
            retry_after,
            message: "mock: service unavailable".into(),
        },
        MockStep::Timeout => BackendError::Timeout(Duration::from_secs(60)),
        MockStep::Unauthorized => BackendError::Authentication("mock: invalid API key".into()),
        MockStep::QuotaExhausted => BackendError::QuotaExhausted("mock: insufficient_quota".into()),
        MockStep::PromptFiltered => {
            BackendError::ContentFilter("mock: the prompt tripped the content filter".into())
        }
        other => BackendError::Other {
            retryable: false,
            source: format!("mock: {other:?} is an answer, not an error").into(),
        },
    }
}

/// What a provider counts against tokens per minute: the prompt (characters / 4, as the mock's
/// usage) plus `max_tokens`.
/// What a request costs of the token limits: its prompt characters / 4 (input) and its
/// `max_tokens` (output).
fn token_cost(request: &ChatRequest) -> (u64, u64) {
    let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
    ((prompt_chars / 4) as u64, u64::from(request.max_tokens))
}

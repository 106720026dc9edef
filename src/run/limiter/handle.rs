//! [`RateLimiter`]: the limiter as a handle that several runners can share, so that the
//! discoveries of one service, all on one API key, pace as one client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Change, Cost, Limiter, RateLimitSummary, Refusal, Ticket};
use crate::backend::RateLimitInfo;
use crate::report::LimitKind;
use crate::run::RunConfig;
use crate::timer::Timer;

/// A rate limiter that runners share: give a clone to each with
/// [`Runner::with_rate_limiter`](crate::Runner::with_rate_limiter), and they pace as one
/// client of the API key, by the limits of `config` and what the server reports, learnt
/// once for all of them. Without one, each run has a limiter of its own (and runs in other
/// processes on the same key are told apart from the server's `remaining`).
///
/// ```
/// use dynbatch::{RateLimiter, RunConfig, Runner};
/// use dynbatch::TokioTimer;
/// use dynbatch::backend::mock::MockBackend;
///
/// let config = RunConfig::default();
/// let shared = RateLimiter::new(&config, &TokioTimer);
/// let first = Runner::new(MockBackend::new(), TokioTimer).with_rate_limiter(shared.clone());
/// let second = Runner::new(MockBackend::new(), TokioTimer).with_rate_limiter(shared.clone());
/// # let _ = (first, second);
/// assert_eq!(shared.summary().requests_per_minute, None); // nothing learnt yet
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter(Arc<Mutex<Limiter>>);

impl RateLimiter {
    /// A limiter with the limits of `config` (`requests_per_minute`, `tokens_per_minute`), on
    /// `timer`'s clock.
    pub fn new(config: &RunConfig, timer: &impl Timer) -> Self {
        Self::from_limiter(Limiter::new(config, timer.now()))
    }

    pub(in crate::run) fn from_limiter(limiter: Limiter) -> Self {
        Self(Arc::new(Mutex::new(limiter)))
    }

    /// The limits it paces by now, and where they come from.
    pub fn summary(&self) -> RateLimitSummary {
        self.lock().summary()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limiter> {
        crate::sync::lock(&self.0)
    }

    pub(in crate::run) fn ready_at(&self, now: Instant, cost: Cost) -> Option<Instant> {
        self.lock().ready_at(now, cost)
    }

    pub(in crate::run) fn too_large(&self, cost: Cost) -> Option<(LimitKind, u64)> {
        self.lock().too_large(cost)
    }

    pub(in crate::run) fn take(&self, now: Instant, cost: Cost) -> Ticket {
        self.lock().take(now, cost)
    }

    pub(in crate::run) fn resolve(&self, ticket: &Ticket) {
        self.lock().resolve(ticket);
    }

    pub(in crate::run) fn sent(&self) -> u64 {
        self.lock().sent()
    }

    pub(in crate::run) fn on_answer(
        &self,
        now: Instant,
        ticket: &Ticket,
        info: Option<&RateLimitInfo>,
    ) -> Vec<Change> {
        self.lock().on_answer(now, ticket, info)
    }

    pub(in crate::run) fn on_rate_limited(
        &self,
        now: Instant,
        ticket: &Ticket,
        retry_after: Option<Duration>,
        info: Option<&RateLimitInfo>,
        config: &RunConfig,
    ) -> Refusal {
        self.lock()
            .on_rate_limited(now, ticket, retry_after, info, config)
    }
}

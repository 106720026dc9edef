//! What the runner does about transient failures: the SDKs' back-off with jitter, the circuit
//! breaker that pauses all sending when many requests fail in a row, and the extra-call budget
//! that caps what retries, splits and re-asks may cost.

use std::time::{Duration, Instant};

use super::RunConfig;

/// The official SDKs' back-off: `min(base × 2^(attempt-1), max)` minus up to 25% jitter, the
/// jitter a pure function of the seed, `key` and the attempt (runs are reproducible).
pub(super) fn backoff(config: &RunConfig, key: u64, attempt: u32) -> Duration {
    let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
    let delay = config
        .base_delay
        .saturating_mul(doubling)
        .min(config.max_delay);
    let x = crate::hash::mix(config.jitter_seed ^ (key << 32) ^ u64::from(attempt));
    #[allow(clippy::cast_precision_loss)] // 53 random bits as a fraction
    let jitter = (x >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(1.0 - 0.25 * jitter)
}

/// The cap on calls beyond one per planned batch.
#[derive(Debug)]
pub(super) struct Budget {
    cap: u64,
    used: u64,
}

impl Budget {
    pub(super) fn new(cap: u64) -> Self {
        Self { cap, used: 0 }
    }

    /// Takes one extra call; `false` when none is left.
    pub(super) fn take(&mut self) -> bool {
        let ok = self.used < self.cap;
        self.used += u64::from(ok);
        ok
    }

    /// Gives back a call that was answered with a 429 (those are not extra calls).
    pub(super) fn refund(&mut self) {
        self.used = self.used.saturating_sub(1);
    }

    pub(super) fn left(&self) -> u64 {
        self.cap - self.used
    }

    pub(super) fn used(&self) -> u64 {
        self.used
    }

    pub(super) fn cap(&self) -> u64 {
        self.cap
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Sending; `failures` transient failures in a row so far.
    Closed { failures: u32 },
    /// Paused until `until`; then one probe.
    Open { until: Instant },
    /// One probe may go (or is in flight).
    HalfOpen { probing: bool },
}

/// The circuit breaker: `threshold` transient failures in a row pause all sending for a
/// back-off that doubles with each failed probe; then a single request probes the server, and
/// its success resumes sending.
#[derive(Debug)]
pub(super) struct Breaker {
    threshold: u32,
    state: State,
    trips: u32,
    opened: u64,
}

/// Whether the breaker lets a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Yes.
    Open,
    /// Not before this instant.
    Until(Instant),
    /// Not while the probe is in flight: its answer, not a time, decides.
    Probing,
}

/// What changed, for events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Change {
    Opened { failures: u32, wait: Duration },
    Closed,
}

impl Breaker {
    pub(super) fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            state: State::Closed { failures: 0 },
            trips: 0,
            opened: 0,
        }
    }

    /// Whether a request may be sent now.
    pub(super) fn gate(&mut self, now: Instant) -> Gate {
        match self.state {
            State::Closed { .. } | State::HalfOpen { probing: false } => Gate::Open,
            State::HalfOpen { probing: true } => Gate::Probing,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: false };
                Gate::Open
            }
            State::Open { until } => Gate::Until(until),
        }
    }

    /// A request is sent; in half-open state it is the probe.
    pub(super) fn on_send(&mut self) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { probing: true };
        }
    }

    /// An answer came (any answer, even an unusable one: the server is up).
    pub(super) fn on_success(&mut self) -> Option<Change> {
        let was_open = !matches!(self.state, State::Closed { .. });
        self.state = State::Closed { failures: 0 };
        self.trips = 0;
        was_open.then_some(Change::Closed)
    }

    /// A call that is not a probe ended without reaching the server's answer for a reason
    /// that says nothing of its health (a 429): a half-open probe slot opens again.
    pub(super) fn on_neutral(&mut self) {
        if let State::HalfOpen { probing: true } = self.state {
            self.state = State::HalfOpen { probing: false };
        }
    }

    /// A transient failure.
    pub(super) fn on_failure(&mut self, now: Instant, config: &RunConfig) -> Option<Change> {
        let failures = match self.state {
            State::Closed { failures } => failures + 1,
            State::HalfOpen { .. } => self.threshold,
            // Answers of requests sent before the pause: already counted.
            State::Open { .. } => return None,
        };
        if failures < self.threshold {
            self.state = State::Closed { failures };
            return None;
        }
        self.trips += 1;
        self.opened += 1;
        let wait = backoff(config, u64::MAX, self.trips);
        self.state = State::Open {
            until: super::later(now, wait),
        };
        Some(Change::Opened { failures, wait })
    }

    /// How often the circuit opened.
    pub(super) fn opened(&self) -> u64 {
        self.opened
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

    #[test]
    fn breaker_opens_probes_and_closes() {
        let c = RunConfig::default();
        let t0 = Instant::now();
        let mut b = Breaker::new(3);
        assert_eq!(b.on_failure(t0, &c), None);
        assert_eq!(b.on_failure(t0, &c), None);
        let Some(Change::Opened { failures: 3, wait }) = b.on_failure(t0, &c) else {
            panic!("should open")
        };
        assert_eq!(b.gate(t0), Gate::Until(t0 + wait));
        // Failures of requests sent before the pause change nothing.
        assert_eq!(b.on_failure(t0, &c), None);
        // After the wait one probe goes; nothing else while it is in flight.
        assert_eq!(b.gate(t0 + wait), Gate::Open);
        b.on_send();
        assert_eq!(b.gate(t0 + wait), Gate::Probing);
        // The probe fails: a longer pause.
        let t1 = t0 + wait;
        let Some(Change::Opened { wait: longer, .. }) = b.on_failure(t1, &c) else {
            panic!("should reopen")
        };
        assert!(longer > wait);
        assert_eq!(b.gate(t1 + longer), Gate::Open);
        b.on_send();
        assert_eq!(b.on_success(), Some(Change::Closed));
        assert_eq!(b.gate(t1 + longer), Gate::Open);
        assert_eq!(b.opened(), 2);
    }

    #[test]
    fn budget_refunds_429s() {
        let mut b = Budget::new(2);
        assert!(b.take() && b.take() && !b.take());
        b.refund();
        assert_eq!((b.used(), b.left()), (1, 1));
    }
}

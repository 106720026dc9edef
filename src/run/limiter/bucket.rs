//! One limit's bucket: a per-minute allowance that refills continuously, as providers count,
//! kept as plain arithmetic on instants so that it can be tested on its own.

use std::time::{Duration, Instant};

use super::{Change, LimitKind, LimitSource};

/// Tolerance of the band check in [`Bucket::sync`] (float rounding).
const EPSILON: f64 = 1e-9;
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) kind: LimitKind,
    /// Per minute.
    pub(super) limit: Option<f64>,
    pub(super) source: Option<LimitSource>,
    pub(super) level: f64,
    /// Per minute: this client's share of the limit when others spend from the same key
    /// (see `share.rs`); `None` alone.
    pub(super) pace: Option<f64>,
    pub(super) at: Instant,
}

impl Bucket {
    pub(super) fn new(kind: LimitKind, limit: Option<u32>, now: Instant) -> Self {
        // A limit of 0 would never refill: the least that lets anything through is 1.
        let limit = limit.map(|l| f64::from(l.max(1)));
        Self {
            kind,
            limit,
            source: limit.map(|_| LimitSource::Configured),
            level: limit.unwrap_or(0.0),
            pace: None,
            at: now,
        }
    }

    /// Per second.
    pub(super) fn rate(&self) -> Option<f64> {
        let limit = self.limit?;
        Some(self.pace.map_or(limit, |p| p.min(limit)) / 60.0)
    }

    /// Shares the key at `pace` per minute (`None`: alone). Sharing, the bucket holds at most
    /// two seconds' worth of the pace, so requests are spread over the window instead of
    /// spending what the server reports left all at once (the others see it too).
    pub(super) fn share(&mut self, pace: Option<f64>) {
        self.pace = pace;
        if let Some(pace) = pace {
            self.level = self.level.min((pace / 30.0).max(1.0));
        }
    }

    pub(super) fn refill(&mut self, now: Instant) {
        if let (Some(limit), Some(rate)) = (self.limit, self.rate()) {
            let secs = now.saturating_duration_since(self.at).as_secs_f64();
            self.level = (self.level + rate * secs).min(limit);
        }
        self.at = self.at.max(now);
    }

    /// How long until `cost` is available (capped at the limit, so a request larger than the
    /// bucket waits for a full one); `None` when it is now or the limit is unknown. Rounded up
    /// to the next microsecond, so that after the wait it is there (never a hair early).
    pub(super) fn wait(&self, cost: f64) -> Option<Duration> {
        let (limit, rate) = (self.limit?, self.rate()?);
        let need = cost.min(limit) - self.level;
        (need > 0.0).then(|| {
            let micros = (need / rate * 1e6).ceil() + 1.0;
            Duration::try_from_secs_f64(micros / 1e6).unwrap_or(Duration::MAX)
        })
    }

    /// Sets the limit; `Some` change when the whole number per minute differs.
    pub(super) fn set_limit(&mut self, limit: f64, source: LimitSource) -> Option<Change> {
        let limit = limit.max(1.0);
        let before = self.limit.map(per_minute);
        match self.limit {
            None => self.level = limit,
            Some(_) => self.level = self.level.min(limit),
        }
        self.limit = Some(limit);
        let changed = before != Some(per_minute(limit)) || self.source != Some(source);
        self.source = Some(source);
        changed.then(|| (self.kind, per_minute(limit), source))
    }

    /// Brings the level in line with what the server reports is left, `sent_since` (units
    /// sent after the reporting request) taken off. The server's count is a whole number taken
    /// somewhere between the send and now, so the level now lies within
    /// `[remaining − since, remaining + 1 + refill since the send − since]`; a level outside
    /// that band is set to its lower end.
    pub(super) fn sync(&mut self, remaining: u64, sent_since: u64, since_send: Duration) {
        let Some(rate) = self.rate() else { return };
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let (remaining, since) = (remaining as f64, sent_since as f64);
        let low = remaining - since;
        let high = remaining + 1.0 + rate * since_send.as_secs_f64() - since;
        if self.level < low - EPSILON || self.level > high + EPSILON {
            self.level = low.min(self.limit.unwrap_or(low));
        }
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // positive, far below 2^64
pub(super) fn per_minute(limit: f64) -> u64 {
    limit.round() as u64
}

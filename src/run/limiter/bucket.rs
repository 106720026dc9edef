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

// The level moves only through these: spending, giving back, emptying and capping.
impl Bucket {
    /// Spends `cost` (the level may go below zero: a request larger than what is left waits
    /// for the debt to refill before the next one).
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    pub(super) fn spend(&mut self, cost: u64) {
        self.level -= cost as f64;
    }

    /// Gives back `cost` spent on a request the server refused uncounted, never above the
    /// limit.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn give_back(&mut self, cost: u64) {
        self.level = (self.level + cost as f64).min(self.limit.unwrap_or(f64::INFINITY));
    }

    /// Nothing left now (a refusal says the window is spent); a debt stays a debt.
    pub(super) fn empty(&mut self) {
        self.level = self.level.min(0.0);
    }

    /// At most `level` left (this client's portion of what a shared key has left).
    pub(super) fn cap(&mut self, level: f64) {
        self.level = self.level.min(level);
    }

    /// Owes `debt` more, to spread clients refused at the same moment.
    pub(super) fn owe(&mut self, debt: f64) {
        self.level -= debt.max(0.0);
    }
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

#[cfg(test)]
#[allow(clippy::cast_precision_loss)] // test values far below 2^52
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Spend(u64),
        GiveBack(u64),
        Empty,
        Cap(f64),
        Owe(f64),
        SetLimit(f64),
        Share(Option<f64>),
        Sync(u64, u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..120_000).prop_map(Op::Advance),
            (0u64..5_000).prop_map(Op::Spend),
            (0u64..5_000).prop_map(Op::GiveBack),
            Just(Op::Empty),
            (-100.0f64..10_000.0).prop_map(Op::Cap),
            (0.0f64..3.0).prop_map(Op::Owe),
            (0.0f64..100_000.0).prop_map(Op::SetLimit),
            proptest::option::of(1.0f64..10_000.0).prop_map(Op::Share),
            (0u64..10_000, 0u64..100, 0u64..60_000).prop_map(|(r, s, ms)| Op::Sync(r, s, ms)),
        ]
    }

    /// A bucket after `ops`, with the instant they end at.
    fn run(limit: u32, ops: &[Op]) -> (Bucket, Instant) {
        let mut now = Instant::now();
        let mut bucket = Bucket::new(LimitKind::Requests, Some(limit), now);
        for op in ops {
            match *op {
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    bucket.refill(now);
                }
                Op::Spend(c) => bucket.spend(c),
                Op::GiveBack(c) => bucket.give_back(c),
                Op::Empty => bucket.empty(),
                Op::Cap(l) => bucket.cap(l),
                Op::Owe(d) => bucket.owe(d),
                Op::SetLimit(l) => {
                    bucket.set_limit(l, LimitSource::Headers);
                }
                Op::Share(p) => bucket.share(p),
                Op::Sync(r, s, ms) => bucket.sync(r, s, Duration::from_millis(ms)),
            }
        }
        (bucket, now)
    }

    proptest! {
        #[test]
        fn invariant_the_level_never_exceeds_the_limit(
            limit in 1u32..10_000,
            ops in prop::collection::vec(op(), 0..40),
        ) {
            let (bucket, _) = run(limit, &ops);
            let top = bucket.limit.unwrap_or(f64::INFINITY);
            prop_assert!(bucket.level <= top + EPSILON, "{} > {top}", bucket.level);
        }

        #[test]
        fn invariant_after_its_wait_the_cost_is_there(
            limit in 1u32..10_000,
            ops in prop::collection::vec(op(), 0..40),
            cost in 0u64..20_000,
        ) {
            let (mut bucket, now) = run(limit, &ops);
            let cost = cost as f64;
            if let Some(wait) = bucket.wait(cost) {
                bucket.refill(now + wait);
            }
            prop_assert_eq!(bucket.wait(cost), None);
        }

        #[test]
        fn invariant_refilling_in_steps_equals_refilling_at_once(
            limit in 1u32..10_000,
            ops in prop::collection::vec(op(), 0..20),
            steps in prop::collection::vec(0u64..30_000, 1..8),
        ) {
            let (start, now) = run(limit, &ops);
            let mut stepped = Bucket { ..start };
            let mut at = now;
            for ms in &steps {
                at += Duration::from_millis(*ms);
                stepped.refill(at);
            }
            let (mut once, _) = run(limit, &ops);
            once.at = now;
            once.refill(at);
            prop_assert!((stepped.level - once.level).abs() < 1e-6, "{} vs {}", stepped.level, once.level);
        }

        #[test]
        fn invariant_a_sync_leaves_the_level_in_the_servers_band(
            limit in 1u32..10_000,
            ops in prop::collection::vec(op(), 0..20),
            remaining in 0u64..10_000,
            since in 0u64..100,
            since_ms in 0u64..60_000,
        ) {
            let (mut bucket, _) = run(limit, &ops);
            bucket.sync(remaining, since, Duration::from_millis(since_ms));
            let low = (remaining as f64 - since as f64).min(bucket.limit.unwrap_or(f64::INFINITY));
            let high = remaining as f64 + 1.0
                + bucket.rate().unwrap_or(0.0) * Duration::from_millis(since_ms).as_secs_f64()
                - since as f64;
            prop_assert!(bucket.level >= low - 1e-6 && bucket.level <= high + 1e-6,
                "{} not in [{low}, {high}]", bucket.level);
        }

        #[test]
        fn invariant_giving_back_what_was_spent_restores_the_level(
            limit in 1u32..10_000,
            ops in prop::collection::vec(op(), 0..20),
            cost in 0u64..5_000,
        ) {
            let (mut bucket, _) = run(limit, &ops);
            let before = bucket.level;
            bucket.spend(cost);
            bucket.give_back(cost);
            prop_assert!((bucket.level - before).abs() < 1e-6);
        }
    }
}

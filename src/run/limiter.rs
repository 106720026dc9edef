//! Pacing by the account's rate limits: requests per minute and tokens per minute, each a
//! bucket that refills continuously (as providers count), so a full bucket's worth may go at
//! once and the rest at the refill rate.
//!
//! Limits come from [`RunConfig`] and are learnt while running, best source
//! first: what the server reports (the `x-ratelimit-*` headers, which also re-synchronise the
//! bucket with what is left, corrected for the requests sent since; or the numbers in a 429's
//! message), and, with neither, the 429s themselves: the answers that got through before the bucket ran dry
//! give its size, later 429s correct it, and a slow probe upwards finds a limit that grew. A
//! server's `retry-after` holds all sending until then.
//!
//! Hand-written rather than `governor`: the limits change while running, the bucket must be
//! set to what the server reports, requests and tokens are reserved together (a GCRA cell
//! cannot be taken back when the other limit says no), and time comes from the run's
//! [`Timer`](crate::timer::Timer) so a paused clock drives it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{RunConfig, later};
use crate::backend::{LimitStatus, RateLimitInfo};

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute (prompt plus `max_tokens`).
    Tokens,
}

/// Where a limit the runner paces by comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitSource {
    /// [`RunConfig`].
    Configured,
    /// What the server reported: its `x-ratelimit-*` headers, or the limit a 429's message
    /// names (`OpenAI`'s "(RPM): Limit 120").
    Headers,
    /// Inferred from when the server answered 429.
    Inferred,
}

/// The limits a run paced by when it ended, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSummary {
    /// Requests per minute, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Where `requests_per_minute` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_source: Option<LimitSource>,
    /// Tokens per minute, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Where `tokens_per_minute` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_source: Option<LimitSource>,
}

/// A change of limit, for events.
pub(super) type Change = (LimitKind, u64, LimitSource);

/// A request's reservation: what was sent before it and what it cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    pub(super) at: Instant,
    requests_before: u64,
    tokens_before: u64,
    cost: u64,
}

impl Ticket {
    /// The number of requests sent before this one.
    pub(super) fn seq(&self) -> u64 {
        self.requests_before
    }
}

/// Tolerance of the band check in [`Bucket::sync`] (float rounding).
const EPSILON: f64 = 1e-9;
/// The shortest span between two 429s over which the answers in between measure the rate.
const MEASURE_SPAN: Duration = Duration::from_secs(10);
/// An inferred limit is raised by `PROBE_STEP` every `PROBE_EVERY` while it binds and no
/// 429 came for `PROBE_QUIET`, to find a limit that is higher than inferred.
const PROBE_STEP: f64 = 1.05;
const PROBE_EVERY: Duration = Duration::from_secs(10);
const PROBE_QUIET: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Bucket {
    kind: LimitKind,
    /// Per minute.
    limit: Option<f64>,
    source: Option<LimitSource>,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(kind: LimitKind, limit: Option<u32>, now: Instant) -> Self {
        // A limit of 0 would never refill: the least that lets anything through is 1.
        let limit = limit.map(|l| f64::from(l.max(1)));
        Self {
            kind,
            limit,
            source: limit.map(|_| LimitSource::Configured),
            level: limit.unwrap_or(0.0),
            at: now,
        }
    }

    /// Per second.
    fn rate(&self) -> Option<f64> {
        self.limit.map(|l| l / 60.0)
    }

    fn refill(&mut self, now: Instant) {
        if let (Some(limit), Some(rate)) = (self.limit, self.rate()) {
            let secs = now.saturating_duration_since(self.at).as_secs_f64();
            self.level = (self.level + rate * secs).min(limit);
        }
        self.at = self.at.max(now);
    }

    /// How long until `cost` is available (capped at the limit, so a request larger than the
    /// bucket waits for a full one); `None` when it is now or the limit is unknown. Rounded up
    /// to the next microsecond, so that after the wait it is there (never a hair early).
    fn wait(&self, cost: f64) -> Option<Duration> {
        let (limit, rate) = (self.limit?, self.rate()?);
        let need = cost.min(limit) - self.level;
        (need > 0.0).then(|| {
            let micros = (need / rate * 1e6).ceil() + 1.0;
            Duration::try_from_secs_f64(micros / 1e6).unwrap_or(Duration::MAX)
        })
    }

    /// Sets the limit; `Some` change when the whole number per minute differs.
    fn set_limit(&mut self, limit: f64, source: LimitSource) -> Option<Change> {
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
    fn sync(&mut self, remaining: u64, sent_since: u64, since_send: Duration) {
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
fn per_minute(limit: f64) -> u64 {
    limit.round() as u64
}

/// The rate limiter of one run.
#[derive(Debug)]
pub(super) struct Limiter {
    requests: Bucket,
    tokens: Bucket,
    /// No request goes before this (a server's `retry-after`).
    hold_until: Option<Instant>,
    sent_requests: u64,
    sent_tokens: u64,
    /// Requests sent and not yet answered, by send order, with their token cost.
    in_flight: BTreeMap<u64, u64>,
    start: Instant,
    /// Send times of requests that got an answer (not a 429), for inference.
    answered: Vec<Instant>,
    /// Send time of the last 429 that told of an empty bucket.
    last_empty: Option<Instant>,
    /// Requests sent when an inferred limit last changed: 429s of those are old news.
    adjusted_at: Option<u64>,
    last_probe: Instant,
    last_429: Option<Instant>,
    /// When the requests bucket last held a request back.
    last_bound: Option<Instant>,
    /// 429s in a row with nothing to pace by.
    blind_429s: u32,
    /// Send order of the requests answered with a 429.
    refused: BTreeMap<u64, u64>,
}

impl Limiter {
    pub(super) fn new(config: &RunConfig, now: Instant) -> Self {
        Self {
            requests: Bucket::new(LimitKind::Requests, config.requests_per_minute, now),
            tokens: Bucket::new(LimitKind::Tokens, config.tokens_per_minute, now),
            hold_until: None,
            sent_requests: 0,
            sent_tokens: 0,
            in_flight: BTreeMap::new(),
            start: now,
            answered: Vec::new(),
            last_empty: None,
            adjusted_at: None,
            last_probe: now,
            last_429: None,
            last_bound: None,
            blind_429s: 0,
            refused: BTreeMap::new(),
        }
    }

    /// When a request costing `cost` tokens may go: `None` for now.
    pub(super) fn ready_at(&mut self, now: Instant, cost: u64) -> Option<Instant> {
        self.requests.refill(now);
        self.tokens.refill(now);
        let hold = self.hold_until.filter(|h| *h > now);
        let by_requests = self.requests.wait(1.0).map(|w| later(now, w));
        if by_requests.is_some() {
            self.last_bound = Some(now);
        }
        #[allow(clippy::cast_precision_loss)]
        let by_tokens = self.tokens.wait(cost as f64).map(|w| later(now, w));
        [hold, by_requests, by_tokens].into_iter().flatten().max()
    }

    /// The tokens-per-minute limit, when a request of `cost` tokens can never fit in it.
    pub(super) fn too_large(&self, cost: u64) -> Option<u64> {
        #[allow(clippy::cast_precision_loss)]
        let limit = self.tokens.limit.filter(|l| cost as f64 > *l)?;
        Some(per_minute(limit))
    }

    /// Reserves a request of `cost` tokens (call when [`Limiter::ready_at`] said now).
    pub(super) fn take(&mut self, now: Instant, cost: u64) -> Ticket {
        let ticket = Ticket {
            at: now,
            requests_before: self.sent_requests,
            tokens_before: self.sent_tokens,
            cost,
        };
        self.requests.level -= 1.0;
        #[allow(clippy::cast_precision_loss)]
        {
            self.tokens.level -= cost as f64;
        }
        self.sent_requests += 1;
        self.sent_tokens += cost;
        self.in_flight.insert(ticket.requests_before, cost);
        ticket
    }

    /// The request of `ticket` ended without an answer or a 429 (a 5xx, a timeout).
    pub(super) fn resolve(&mut self, ticket: &Ticket) {
        self.in_flight.remove(&ticket.requests_before);
    }

    /// Requests sent so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent_requests
    }

    /// An answer (not a 429) to the request of `ticket`, with the limits its server reported.
    pub(super) fn on_answer(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        info: Option<&RateLimitInfo>,
    ) -> Vec<Change> {
        self.resolve(ticket);
        self.answered.push(ticket.at);
        self.blind_429s = 0;
        let mut changes = Vec::new();
        if let Some(info) = info {
            self.learn(now, ticket, info, LimitSource::Headers, &mut changes);
        }
        // Probe an inferred limit upwards while it binds and the server says nothing.
        let quiet = self
            .last_429
            .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_QUIET);
        let bound = self
            .last_bound
            .is_some_and(|t| now.saturating_duration_since(t) < PROBE_EVERY);
        if self.requests.source == Some(LimitSource::Inferred)
            && quiet
            && bound
            && now.saturating_duration_since(self.last_probe) >= PROBE_EVERY
        {
            self.last_probe = now;
            let raised = self.requests.limit.unwrap_or(1.0) * PROBE_STEP;
            changes.extend(self.requests.set_limit(raised, LimitSource::Inferred));
        }
        self.prune(now);
        changes
    }

    /// A 429 to the request of `ticket`. Returns how long sending now waits, and the limits
    /// that changed.
    pub(super) fn on_rate_limited(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        retry_after: Option<Duration>,
        info: Option<&RateLimitInfo>,
        config: &RunConfig,
    ) -> (Duration, Vec<Change>) {
        self.resolve(ticket);
        self.last_429 = Some(now);
        self.refused.insert(ticket.requests_before, ticket.cost);
        let mut changes = Vec::new();
        let info = info.copied().unwrap_or_default();
        self.learn(now, ticket, &info, LimitSource::Headers, &mut changes);
        self.requests.refill(now);
        self.tokens.refill(now);
        // The server did not count a refused request.
        #[allow(clippy::cast_precision_loss)]
        for (bucket, cost) in [
            (&mut self.requests, 1.0),
            (&mut self.tokens, ticket.cost as f64),
        ] {
            bucket.level = (bucket.level + cost).min(bucket.limit.unwrap_or(f64::INFINITY));
        }
        let requests_out = info.requests.remaining == Some(0);
        let tokens_out = info.tokens.remaining.is_some_and(|r| r < ticket.cost);
        let unknown = !requests_out && !tokens_out;
        if requests_out || unknown {
            self.requests.level = self.requests.level.min(0.0);
        }
        if tokens_out || unknown {
            self.tokens.level = self.tokens.level.min(0.0);
        }
        let told = self.requests.source == Some(LimitSource::Headers)
            || self.tokens.source == Some(LimitSource::Headers);
        if unknown && !told {
            changes.extend(self.infer(now, ticket));
        }
        if let Some(after) = retry_after {
            let until = later(now, after);
            self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
        } else if self.requests.limit.is_none() && self.tokens.limit.is_none() {
            // Nothing to pace by yet: back off, longer with each 429 in a row.
            self.blind_429s += 1;
            let until = later(
                now,
                super::retry::backoff(config, u64::MAX - 1, self.blind_429s),
            );
            self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
        }
        let wait = self
            .ready_at(now, ticket.cost)
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        (wait, changes)
    }

    /// Takes what a server reported: limits, and what is left of them.
    fn learn(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        info: &RateLimitInfo,
        source: LimitSource,
        changes: &mut Vec<Change>,
    ) {
        let since_send = now.saturating_duration_since(ticket.at);
        // Sent after it, and sent before it but maybe counted by the server after it (HTTP
        // requests overtake one another): the server's count does not include them yet.
        let (earlier, earlier_tokens) = self
            .in_flight
            .range(..ticket.requests_before)
            .fold((0, 0), |(n, t), (_, cost)| (n + 1, t + cost));
        // Sent after it but refused: the server never counted them.
        let (refused, refused_tokens) = self
            .refused
            .range(ticket.requests_before + 1..)
            .fold((0, 0), |(n, t), (_, cost)| (n + 1, t + cost));
        let requests_since =
            (self.sent_requests - ticket.requests_before - 1 + earlier).saturating_sub(refused);
        let tokens_since = (self.sent_tokens - ticket.tokens_before - ticket.cost + earlier_tokens)
            .saturating_sub(refused_tokens);
        let sync = |bucket: &mut Bucket, status: &LimitStatus, since: u64, out: &mut Vec<_>| {
            if let Some(limit) = status.limit {
                #[allow(clippy::cast_precision_loss)]
                out.extend(bucket.set_limit(limit as f64, source));
            }
            bucket.refill(now);
            if let Some(remaining) = status.remaining {
                bucket.sync(remaining, since, since_send);
            }
        };
        sync(&mut self.requests, &info.requests, requests_since, changes);
        sync(&mut self.tokens, &info.tokens, tokens_since, changes);
    }

    /// A 429 with nothing said about limits: infer the requests per minute. The first time,
    /// from the requests sent before it that were not refused, answered or still in flight (a
    /// full bucket plus its refill since the start); later,
    /// from the answers between two 429s at least [`MEASURE_SPAN`] apart (the bucket was dry
    /// at both), never raising it and never cutting it by more than half at once.
    fn infer(&mut self, now: Instant, ticket: &Ticket) -> Option<Change> {
        if self
            .adjusted_at
            .is_some_and(|sent| ticket.requests_before < sent)
        {
            return None; // sent before the last adjustment: already accounted for
        }
        let last_empty = self.last_empty.replace(ticket.at);
        #[allow(clippy::cast_precision_loss)]
        let estimate = match (self.requests.source, last_empty) {
            (None, _) => {
                let refused_before = self.refused.range(..ticket.requests_before).count() as u64;
                let n = ticket.requests_before - refused_before;
                if n < 2 {
                    return None; // too little to go by: the back-off hold covers it
                }
                let minutes = ticket
                    .at
                    .saturating_duration_since(self.start)
                    .as_secs_f64()
                    / 60.0;
                n as f64 / (1.0 + minutes)
            }
            // A configured limit is only lowered by a measurement, an inferred one also by a
            // 429 too soon to measure.
            (Some(source @ (LimitSource::Inferred | LimitSource::Configured)), last) => {
                let limit = self.requests.limit.unwrap_or(1.0);
                let measured = last.and_then(|prev| {
                    let span = ticket.at.saturating_duration_since(prev);
                    (span >= MEASURE_SPAN).then(|| {
                        let n = self
                            .answered
                            .iter()
                            .filter(|a| **a > prev && **a <= ticket.at)
                            .count();
                        n as f64 / span.as_secs_f64() * 60.0
                    })
                });
                match (measured, source) {
                    (Some(m), _) => m.clamp(limit * 0.5, limit),
                    (None, LimitSource::Inferred) => limit * 0.9,
                    (None, _) => return None,
                }
            }
            _ => return None,
        };
        self.adjusted_at = Some(self.sent_requests);
        self.last_probe = now;
        let change = self.requests.set_limit(estimate, LimitSource::Inferred);
        self.requests.level = self.requests.level.min(0.0);
        change
    }

    /// Forgets answers older than two minutes once they can no longer matter.
    fn prune(&mut self, now: Instant) {
        if self.answered.len() > 4096 && self.requests.source.is_some() {
            let keep_after = now.checked_sub(Duration::from_secs(120));
            if let Some(cut) = keep_after {
                self.answered.retain(|t| *t >= cut);
            }
        }
    }

    /// What the run paces by.
    pub(super) fn summary(&self) -> RateLimitSummary {
        RateLimitSummary {
            requests_per_minute: self.requests.limit.map(per_minute),
            requests_source: self.requests.source,
            tokens_per_minute: self.tokens.limit.map(per_minute),
            tokens_source: self.tokens.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(limit: u64, remaining: u64) -> RateLimitInfo {
        RateLimitInfo {
            requests: LimitStatus {
                limit: Some(limit),
                remaining: Some(remaining),
                reset: None,
            },
            tokens: LimitStatus::default(),
        }
    }

    #[test]
    fn a_configured_limit_allows_a_full_bucket_then_the_refill_rate() {
        let t0 = Instant::now();
        let config = RunConfig {
            requests_per_minute: Some(120),
            ..RunConfig::default()
        };
        let mut l = Limiter::new(&config, t0);
        for _ in 0..120 {
            assert_eq!(l.ready_at(t0, 10), None);
            l.take(t0, 10);
        }
        let next = l.ready_at(t0, 10).unwrap();
        assert_about(next - t0, Duration::from_millis(500));
        l.take(next, 10);
        assert_about(
            l.ready_at(next, 10).unwrap() - next,
            Duration::from_millis(500),
        );
    }

    /// Waits are rounded up to the next microsecond, never down.
    fn assert_about(wait: Duration, expected: Duration) {
        assert!(
            wait >= expected && wait <= expected + Duration::from_micros(2),
            "{wait:?} for {expected:?}"
        );
    }

    #[test]
    fn tokens_and_requests_are_both_respected() {
        let t0 = Instant::now();
        let config = RunConfig {
            requests_per_minute: Some(600),
            tokens_per_minute: Some(6000),
            ..RunConfig::default()
        };
        let mut l = Limiter::new(&config, t0);
        l.take(t0, 6000);
        // 1000 tokens take 10 s to come back at 100 tokens per second.
        assert_about(l.ready_at(t0, 1000).unwrap() - t0, Duration::from_secs(10));
        assert_eq!(l.too_large(6001), Some(6000));
        assert_eq!(l.too_large(6000), None);
    }

    #[test]
    fn headers_teach_the_limit_and_the_level() {
        let t0 = Instant::now();
        let mut l = Limiter::new(&RunConfig::default(), t0);
        assert_eq!(l.ready_at(t0, 1), None); // unknown: no pacing
        let ticket = l.take(t0, 1);
        let t1 = t0 + Duration::from_millis(300);
        let changes = l.on_answer(t1, &ticket, Some(&info(120, 0)));
        assert_eq!(
            changes,
            vec![(LimitKind::Requests, 120, LimitSource::Headers)]
        );
        // Remaining 0 when it was counted, some refill since: the next goes once one is back.
        let at = l.ready_at(t1, 1).unwrap();
        assert!(
            at > t1 && at <= t1 + Duration::from_micros(500_002),
            "{:?}",
            at - t1
        );
        assert_eq!(l.summary().requests_per_minute, Some(120));
    }

    #[test]
    fn headers_count_requests_sent_since() {
        let t0 = Instant::now();
        let mut l = Limiter::new(&RunConfig::default(), t0);
        let first = l.take(t0, 1);
        for _ in 0..5 {
            l.take(t0, 1);
        }
        // The first request saw 10 left; five went after it: 5 are left now.
        l.on_answer(t0, &first, Some(&info(60, 10)));
        for _ in 0..5 {
            assert_eq!(l.ready_at(t0, 1), None);
            l.take(t0, 1);
        }
        assert!(l.ready_at(t0, 1).is_some());
    }

    #[test]
    fn refused_requests_are_not_counted_against_the_server() {
        let t0 = Instant::now();
        let config = RunConfig {
            requests_per_minute: Some(2),
            ..RunConfig::default()
        };
        let mut l = Limiter::new(&config, t0);
        let tickets: Vec<Ticket> = (0..4).map(|_| l.take(t0, 1)).collect();
        for t in &tickets[2..] {
            l.on_rate_limited(t0, t, None, Some(&info(2, 0)), &config);
        }
        // The first saw 1 left after itself; of the three sent after it, two were refused.
        l.on_answer(t0, &tickets[0], Some(&info(2, 1)));
        l.on_answer(t0, &tickets[1], Some(&info(2, 0)));
        assert_about(l.ready_at(t0, 1).unwrap() - t0, Duration::from_secs(30));
    }

    #[test]
    fn retry_after_holds_everything() {
        let t0 = Instant::now();
        let config = RunConfig::default();
        let mut l = Limiter::new(&config, t0);
        let ticket = l.take(t0, 1);
        let (wait, _) = l.on_rate_limited(t0, &ticket, Some(Duration::from_secs(7)), None, &config);
        assert_eq!(wait, Duration::from_secs(7));
        assert_eq!(l.ready_at(t0, 1), Some(t0 + Duration::from_secs(7)));
    }

    #[test]
    fn the_first_429_without_headers_infers_the_bucket_from_what_got_through() {
        let t0 = Instant::now();
        let config = RunConfig::default();
        let mut l = Limiter::new(&config, t0);
        // 60 answered within the first second, the 61st refused.
        for i in 0..60 {
            let t = t0 + Duration::from_millis(i * 16);
            let ticket = l.take(t, 1);
            l.on_answer(t, &ticket, None);
        }
        let t = t0 + Duration::from_secs(1);
        let ticket = l.take(t, 1);
        let (_, changes) = l.on_rate_limited(t, &ticket, None, None, &config);
        assert_eq!(
            changes,
            vec![(LimitKind::Requests, 59, LimitSource::Inferred)]
        );
        // Paced from an empty bucket: about one a second.
        let at = l.ready_at(t, 1).unwrap();
        assert!((at - t).as_secs_f64() > 0.9 && (at - t).as_secs_f64() < 1.1);
    }
}

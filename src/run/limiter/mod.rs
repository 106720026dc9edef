//! Pacing by the account's rate limits: requests per minute and tokens per minute, each a
//! bucket that refills continuously (as providers count), so a full bucket's worth may go at
//! once and the rest at the refill rate.
//!
//! Limits come from [`RunConfig`] and are learnt while running, best source first: what the
//! server reports (the `x-ratelimit-*` headers, which also re-synchronise the bucket with what
//! is left, corrected for the requests sent since; or the numbers in a 429's message), and,
//! with neither, the 429s themselves, when they say the caller's rate causes them. One file
//! per concern: `bucket.rs` (the arithmetic), `evidence.rs` (a stray 429 or the caller's
//! rate), `infer.rs` (the limit a run of 429s gives, and undoing it), `share.rs` (other
//! clients of the key), `handle.rs` ([`RateLimiter`], shared by runners), this file (the
//! limiter: reservations, answers, 429s, headers).
//!
//! Hand-written rather than `governor`: the limits change while running, the bucket must be
//! set to what the server reports, requests and tokens are reserved together (a GCRA cell
//! cannot be taken back when the other limit says no), and time comes from the run's
//! [`Timer`](crate::Timer) so a paused clock drives it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{RunConfig, later};

mod bucket;
mod evidence;
mod handle;
mod infer;
mod share;

pub use handle::RateLimiter;

use crate::backend::{LimitStatus, RateLimitInfo};
use crate::report::{LimitKind, LimitSource, RateLimitSummary};
use bucket::{Bucket, per_minute};
use evidence::{Evidence, Verdict};
use share::Share;

/// A change of limit, for events.
pub(super) type Change = (LimitKind, u64, LimitSource);

/// What a request spends of the token limits: its estimated prompt (input) and its
/// `max_tokens` (output: Anthropic counts it against the output limit when the request
/// starts). The total-tokens limit counts both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::run) struct Cost {
    pub(in crate::run) input: u64,
    pub(in crate::run) output: u64,
}

impl Cost {
    /// What it spends of the limit of `kind` (requests: one).
    fn of(self, kind: LimitKind) -> u64 {
        match kind {
            LimitKind::InputTokens => self.input,
            LimitKind::OutputTokens => self.output,
            LimitKind::Requests => 1,
            _ => self.input + self.output,
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            input: self.input + other.input,
            output: self.output + other.output,
        }
    }

    fn minus(self, other: Self) -> Self {
        Self {
            input: self.input.saturating_sub(other.input),
            output: self.output.saturating_sub(other.output),
        }
    }
}

/// What a 429 says, as [`Limiter::on_rate_limited`] judges it.
struct Judged {
    /// The server reported no requests left.
    requests_out: bool,
    /// The server reported too few tokens, input tokens, output tokens left for the request.
    tokens_out: [bool; 3],
    /// It reported nothing spent.
    unknown: bool,
    /// Some limit was ever reported by headers.
    told: bool,
    /// The last request of the run of refusals this one is in.
    run_end: u64,
    verdict: Verdict,
}

/// A request's reservation: what was sent before it and what it cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    pub(super) at: Instant,
    requests_before: u64,
    tokens_before: Cost,
    cost: Cost,
}

impl Ticket {
    /// The number of requests sent before this one.
    pub(super) fn seq(&self) -> u64 {
        self.requests_before
    }
}

/// The shortest span between two 429s over which the answers in between measure the rate.
const MEASURE_SPAN: Duration = Duration::from_secs(10);
/// An inferred limit is raised every `PROBE_EVERY` while it binds and no 429 came for
/// `PROBE_QUIET`, to find a limit that is higher than inferred: first by `PROBE_FIRST`, then
/// by a step whose excess doubles with each probe that draws no 429, up to `PROBE_MAX` (so a
/// limit cut far too low climbs back in a minute or two). A 429 soon after a probe undoes it
/// and starts the steps again from the first.
const PROBE_FIRST: f64 = 1.05;
const PROBE_MAX: f64 = 2.0;
const PROBE_EVERY: Duration = Duration::from_secs(10);
const PROBE_QUIET: Duration = Duration::from_secs(30);

/// What the runner does about a 429.
#[derive(Debug, Default)]
pub(super) struct Refusal {
    /// How long all sending waits.
    pub(super) wait: Duration,
    /// How long the refused request alone waits before it goes again (a stray 429).
    pub(super) hold: Duration,
    /// Whether the caller's own rate caused it (the concurrency window shrinks).
    pub(super) rate_caused: bool,
    /// Limits learnt or changed.
    pub(super) changes: Vec<Change>,
    /// An inferred limit was dropped, and why.
    pub(super) dropped: Option<String>,
}

/// The rate limiter of one run.
#[derive(Debug)]
pub(super) struct Limiter {
    requests: Bucket,
    /// Total tokens (input plus output).
    tokens: Bucket,
    /// Input tokens, where the server limits them apart (Anthropic).
    input: Bucket,
    /// Output tokens, where the server limits them apart (Anthropic).
    output: Bucket,
    /// No request goes before this (a server's `retry-after`).
    hold_until: Option<Instant>,
    sent_requests: u64,
    sent_tokens: Cost,
    /// Requests sent and not yet answered, by send order, with their token cost.
    in_flight: BTreeMap<u64, Cost>,
    start: Instant,
    /// Send times of requests that got an answer (not a 429), for inference.
    answered: Vec<Instant>,
    /// Send time of the last 429 that told of an empty bucket.
    last_empty: Option<Instant>,
    /// Requests sent when an inferred limit last changed: 429s of those are old news.
    adjusted_at: Option<u64>,
    last_probe: Instant,
    /// The factor of the next probe.
    probe_step: f64,
    /// The limit before the last probe, to go back to if the probe draws a 429.
    before_probe: Option<f64>,
    last_429: Option<Instant>,
    /// When the requests bucket last held a request back.
    last_bound: Option<Instant>,
    /// 429s in a row with nothing to pace by.
    blind_429s: u32,
    /// What the 429s so far say: the caller's rate, or stray.
    evidence: Evidence,
    /// What other consumers of the key spend, from the server's `remaining`.
    share: Share,
    /// Send order of the requests answered with a 429, with their token cost.
    refused: BTreeMap<u64, Cost>,
}

impl Limiter {
    pub(super) fn new(config: &RunConfig, now: Instant) -> Self {
        Self {
            requests: Bucket::new(LimitKind::Requests, config.requests_per_minute, now),
            tokens: Bucket::new(LimitKind::Tokens, config.tokens_per_minute, now),
            input: Bucket::new(LimitKind::InputTokens, None, now),
            output: Bucket::new(LimitKind::OutputTokens, None, now),
            hold_until: None,
            sent_requests: 0,
            sent_tokens: Cost::default(),
            in_flight: BTreeMap::new(),
            start: now,
            answered: Vec::new(),
            last_empty: None,
            adjusted_at: None,
            last_probe: now,
            probe_step: PROBE_FIRST,
            before_probe: None,
            last_429: None,
            last_bound: None,
            blind_429s: 0,
            evidence: Evidence::default(),
            share: Share::default(),
            refused: BTreeMap::new(),
        }
    }

    /// The three token buckets.
    fn token_buckets(&mut self) -> [&mut Bucket; 3] {
        [&mut self.tokens, &mut self.input, &mut self.output]
    }

    /// When a request costing `cost` may go: `None` for now.
    pub(super) fn ready_at(&mut self, now: Instant, cost: Cost) -> Option<Instant> {
        self.requests.refill(now);
        let hold = self.hold_until.filter(|h| *h > now);
        let by_requests = self.requests.wait(1.0).map(|w| later(now, w));
        if by_requests.is_some() {
            self.last_bound = Some(now);
        }
        let by_tokens = self
            .token_buckets()
            .into_iter()
            .filter_map(|bucket| {
                bucket.refill(now);
                #[allow(clippy::cast_precision_loss)]
                bucket.wait(cost.of(bucket.kind) as f64)
            })
            .max()
            .map(|w| later(now, w));
        [hold, by_requests, by_tokens].into_iter().flatten().max()
    }

    /// A token limit (which, and its size per minute) that a request costing `cost` can never
    /// fit in.
    pub(super) fn too_large(&self, cost: Cost) -> Option<(LimitKind, u64)> {
        [&self.tokens, &self.input, &self.output]
            .into_iter()
            .find_map(|bucket| {
                #[allow(clippy::cast_precision_loss)]
                let limit = bucket.limit.filter(|l| cost.of(bucket.kind) as f64 > *l)?;
                Some((bucket.kind, per_minute(limit)))
            })
    }

    /// Reserves a request costing `cost` (call when [`Limiter::ready_at`] said now).
    pub(super) fn take(&mut self, now: Instant, cost: Cost) -> Ticket {
        let ticket = Ticket {
            at: now,
            requests_before: self.sent_requests,
            tokens_before: self.sent_tokens,
            cost,
        };
        self.requests.spend(1);
        for bucket in self.token_buckets() {
            bucket.spend(cost.of(bucket.kind));
        }
        self.sent_requests += 1;
        self.sent_tokens = self.sent_tokens.plus(cost);
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
        self.evidence.answered(ticket.requests_before);
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
            let limit = self.requests.limit.unwrap_or(1.0);
            self.before_probe = Some(limit);
            let raised = limit * self.probe_step;
            self.probe_step = (1.0 + 2.0 * (self.probe_step - 1.0)).min(PROBE_MAX);
            changes.extend(self.requests.set_limit(raised, LimitSource::Inferred));
        }
        self.prune(now);
        changes
    }

    /// A 429 to the request of `ticket`: what sending does about it, and the limits that
    /// changed.
    pub(super) fn on_rate_limited(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        retry_after: Option<Duration>,
        info: Option<&RateLimitInfo>,
        config: &RunConfig,
    ) -> Refusal {
        let info = info.copied().unwrap_or_default();
        let mut refusal = Refusal::default();
        self.take_in(now, ticket, &info, &mut refusal);
        let judged = self.judge(ticket, &info);
        refusal.rate_caused = judged.verdict == Verdict::RateCaused;
        if refusal.rate_caused {
            // The server did not count a refused request. (A stray one keeps its cost: what
            // refused it is unknown, and handing the allowance back would send the next
            // request into the same refusal at once.)
            for bucket in [
                &mut self.requests,
                &mut self.tokens,
                &mut self.input,
                &mut self.output,
            ] {
                bucket.give_back(ticket.cost.of(bucket.kind));
            }
        }
        if judged.verdict == Verdict::Contradicted {
            refusal.dropped = self.drop_inferred();
        }
        // A server that asks for a long wait means it for everything it serves.
        let long_wait = retry_after.is_some_and(|after| after > config.max_delay);
        if !refusal.rate_caused && !long_wait {
            if self.requests.source == Some(LimitSource::Inferred) {
                // Scattered 429s far apart while paced: the pace is a little too fast.
                refusal.changes.extend(self.measure(ticket));
            }
            // Stray: this request alone waits, as long as the server asked (up to
            // `max_delay`) or a quarter of the first back-off (a run of them is evidence, and
            // holds everything); the others go on at the pace in force.
            refusal.hold = retry_after
                .unwrap_or_else(|| super::retry::backoff(config, ticket.requests_before, 1) / 4);
            return self.finish(now, ticket, refusal);
        }
        self.drain(ticket, &judged);
        if judged.unknown && !judged.told && refusal.rate_caused {
            refusal
                .changes
                .extend(self.infer(now, ticket, judged.run_end + 1));
        }
        self.hold_after_429(now, retry_after, config);
        self.finish(now, ticket, refusal)
    }

    /// Step 1 of a 429: the request is answered; what the response says of the limits is
    /// learnt; the buckets are brought up to `now`; a probe of a higher limit is undone.
    fn take_in(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        info: &RateLimitInfo,
        refusal: &mut Refusal,
    ) {
        self.resolve(ticket);
        self.last_429 = Some(now);
        self.refused.insert(ticket.requests_before, ticket.cost);
        self.learn(
            now,
            ticket,
            info,
            LimitSource::Headers,
            &mut refusal.changes,
        );
        self.requests.refill(now);
        for bucket in self.token_buckets() {
            bucket.refill(now);
        }
        self.undo_probe(now, &mut refusal.changes);
    }

    /// Step 2: which limits the 429 says are spent, and whether it is a limit's doing at all.
    fn judge(&mut self, ticket: &Ticket, info: &RateLimitInfo) -> Judged {
        let cost = ticket.cost;
        let out = |status: &LimitStatus, kind| status.remaining.is_some_and(|r| r < cost.of(kind));
        let requests_out = info.requests.remaining == Some(0);
        let tokens_out = [
            out(&info.tokens, LimitKind::Tokens),
            out(&info.input_tokens, LimitKind::InputTokens),
            out(&info.output_tokens, LimitKind::OutputTokens),
        ];
        let unknown = !requests_out && !tokens_out.contains(&true);
        let told = [&self.requests, &self.tokens, &self.input, &self.output]
            .iter()
            .any(|b| b.source == Some(LimitSource::Headers));
        let mut run_end = ticket.requests_before;
        let verdict = if unknown && !told {
            let (run, last) = self.refused_run(ticket.requests_before);
            run_end = last;
            let alone = self.in_flight.is_empty();
            self.evidence.refused(ticket.requests_before, run, alone)
        } else {
            Verdict::RateCaused
        };
        Judged {
            requests_out,
            tokens_out,
            unknown,
            told,
            run_end,
            verdict,
        }
    }

    /// Step 3, for a limit's 429: the spent buckets are emptied (clients sharing the key
    /// spread out by a jitter, so they do not all come back at the same instant).
    fn drain(&mut self, ticket: &Ticket, judged: &Judged) {
        if judged.requests_out || judged.unknown {
            self.requests.empty();
            if self.requests.pace.is_some() {
                // Up to two requests' worth of the pace later.
                let x = crate::hash::mix(ticket.requests_before ^ 0x005e_ed0f_5a1e);
                #[allow(clippy::cast_precision_loss)] // 53 random bits as a fraction
                let jitter = (x >> 11) as f64 / (1u64 << 53) as f64;
                self.requests.owe(2.0 * jitter);
            }
        }
        let unknown = judged.unknown;
        for (bucket, out) in self.token_buckets().into_iter().zip(judged.tokens_out) {
            if out || unknown {
                bucket.empty();
            }
        }
    }

    /// Step 4: everything waits as long as the server asked, or, with nothing to pace by
    /// yet, backs off longer with each 429 in a row.
    fn hold_after_429(&mut self, now: Instant, retry_after: Option<Duration>, config: &RunConfig) {
        if let Some(after) = retry_after {
            self.hold_all(later(now, after));
        } else if self.requests.limit.is_none()
            && [&self.tokens, &self.input, &self.output]
                .iter()
                .all(|b| b.limit.is_none())
        {
            self.blind_429s += 1;
            self.hold_all(later(
                now,
                super::retry::backoff(config, u64::MAX - 1, self.blind_429s),
            ));
        }
    }

    fn finish(&mut self, now: Instant, ticket: &Ticket, mut refusal: Refusal) -> Refusal {
        refusal.wait = self
            .ready_at(now, ticket.cost)
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        refusal
    }

    fn hold_all(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
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
            .fold((0, Cost::default()), |(n, t), (_, cost)| {
                (n + 1, t.plus(*cost))
            });
        // Sent after it but refused: the server never counted them.
        let (refused, refused_tokens) = self
            .refused
            .range(ticket.requests_before + 1..)
            .fold((0, Cost::default()), |(n, t), (_, cost)| {
                (n + 1, t.plus(*cost))
            });
        let requests_since =
            (self.sent_requests - ticket.requests_before - 1 + earlier).saturating_sub(refused);
        let tokens_since = self
            .sent_tokens
            .minus(ticket.tokens_before)
            .minus(ticket.cost)
            .plus(earlier_tokens)
            .minus(refused_tokens);
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
        for (bucket, status) in [
            (&mut self.tokens, &info.tokens),
            (&mut self.input, &info.input_tokens),
            (&mut self.output, &info.output_tokens),
        ] {
            let since = tokens_since.of(bucket.kind);
            sync(bucket, status, since, changes);
        }
        if let (Some(remaining), Some(limit)) = (info.requests.remaining, self.requests.limit) {
            // This client's requests the server had counted when it answered this one:
            // those sent up to it, less the refused, less half of those sent before it and
            // still in flight (the server may have counted them or not).
            let refused_before = self.refused.range(..ticket.requests_before).count();
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            let counted =
                (ticket.requests_before + 1) as f64 - refused_before as f64 - earlier as f64 / 2.0;
            #[allow(clippy::cast_precision_loss)]
            self.share
                .observe(ticket.at, counted, remaining as f64, limit);
            let pace = self.share.pace(limit);
            self.requests.share(pace);
            if let Some(portion) = self.share.portion(limit) {
                #[allow(clippy::cast_precision_loss)]
                let mine = remaining as f64 * portion - requests_since as f64;
                self.requests.cap(mine);
            }
            // Tokens are shared in the same proportion.
            for bucket in self.token_buckets() {
                let share = pace.zip(bucket.limit).map(|(p, t)| t * p / limit);
                bucket.share(share);
            }
        }
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
            input_tokens_per_minute: self.input.limit.map(per_minute),
            input_tokens_source: self.input.source,
            output_tokens_per_minute: self.output.limit.map(per_minute),
            output_tokens_source: self.output.source,
        }
    }
}

#[cfg(test)]
mod tests;

//! Inferring a requests limit from 429s that say nothing of it: how many requests in a row
//! were refused, the limit a run of refusals gives (and the measured rate that corrects it),
//! dropping a limit that pacing did not bear out, and undoing a probe that drew a 429.

use std::time::{Duration, Instant};

use super::{
    Change, LimitSource, Limiter, MEASURE_SPAN, PROBE_EVERY, PROBE_FIRST, Ticket, per_minute,
};

impl Limiter {
    /// How many requests in a row, in the order sent, were refused (the one sent after `seq`
    /// others and its neighbours), and the last of them.
    pub(super) fn refused_run(&self, seq: u64) -> (u64, u64) {
        let before = self
            .refused
            .range(..seq)
            .rev()
            .zip((0..seq).rev())
            .take_while(|((s, _), expected)| *s == expected)
            .count();
        let after = self
            .refused
            .range(seq + 1..)
            .zip(seq + 1..)
            .take_while(|((s, _), expected)| *s == expected)
            .count();
        ((before + after + 1) as u64, seq + after as u64)
    }

    /// A 429 soon after a probe: back to the limit before it, and the probe's steps start
    /// again from the first.
    pub(super) fn undo_probe(&mut self, now: Instant, changes: &mut Vec<Change>) {
        self.probe_step = PROBE_FIRST;
        let recent = now.saturating_duration_since(self.last_probe) < PROBE_EVERY;
        if let Some(before) = self.before_probe.take().filter(|_| recent) {
            if self.requests.source == Some(LimitSource::Inferred) {
                changes.extend(self.requests.set_limit(before, LimitSource::Inferred));
            }
        }
    }

    /// Drops an inferred requests limit that pacing did not bear out; says why.
    pub(super) fn drop_inferred(&mut self) -> Option<String> {
        if self.requests.source != Some(LimitSource::Inferred) {
            return None;
        }
        let limit = self.requests.limit.map_or(0, per_minute);
        self.requests.limit = None;
        self.requests.source = None;
        self.before_probe = None;
        self.last_empty = None;
        self.evidence.paced_from(None);
        Some(format!(
            "429s kept coming while paced at {limit} requests per minute: they are not this \
             client's rate, so the inferred limit is dropped"
        ))
    }

    /// A run of 429s with nothing said about limits: infer the requests per minute. With no
    /// limit in force, from the requests answered (or still in flight) over the last minute
    /// at most, as a full bucket plus its refill over that span; with one,
    /// from the answers between two 429s at least [`MEASURE_SPAN`] apart (the bucket was dry
    /// at both), never raising it and never cutting it by more than half at once.
    pub(super) fn infer(
        &mut self,
        now: Instant,
        ticket: &Ticket,
        paced_from: u64,
    ) -> Option<Change> {
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
                // What got through in the last minute at most: a full bucket plus its
                // refill over that span (the rate actually sent, not the count since the
                // start of a long run).
                let span = ticket
                    .at
                    .saturating_duration_since(self.start)
                    .min(Duration::from_secs(60));
                let from = ticket.at.checked_sub(span).unwrap_or(self.start);
                let n = self
                    .answered
                    .iter()
                    .filter(|a| **a >= from && **a < ticket.at)
                    .count()
                    // Sent before it and not answered yet: it got through too, most likely.
                    + self.in_flight.range(..ticket.requests_before).count();
                if n < 2 {
                    return None; // too little to go by: the back-off hold covers it
                }
                n as f64 / (1.0 + span.as_secs_f64() / 60.0)
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
        // Requests sent after the run of refusals put the limit to the test, even those
        // already in flight: a dry bucket refuses them too, a stray refusal does not.
        self.evidence.paced_from(Some(paced_from));
        self.before_probe = None;
        self.last_probe = now;
        let change = self.requests.set_limit(estimate, LimitSource::Inferred);
        self.requests.empty();
        change
    }

    /// A scattered 429 while paced by an inferred limit: when the previous one came at least
    /// [`MEASURE_SPAN`] before, the answers between the two measure the rate the server
    /// allows, and a limit above it comes down to it (by half at most). 429s closer together
    /// measure nothing: frequent scattered ones are stray, and left to [`Evidence`].
    pub(super) fn measure(&mut self, ticket: &Ticket) -> Option<Change> {
        let prev = self.last_empty.replace(ticket.at)?;
        let span = ticket.at.saturating_duration_since(prev);
        if span < MEASURE_SPAN {
            return None;
        }
        let limit = self.requests.limit?;
        #[allow(clippy::cast_precision_loss)]
        let measured = self
            .answered
            .iter()
            .filter(|a| **a > prev && **a <= ticket.at)
            .count() as f64
            / span.as_secs_f64()
            * 60.0;
        (measured < limit)
            .then(|| {
                self.requests
                    .set_limit(measured.max(limit * 0.5), LimitSource::Inferred)
            })
            .flatten()
    }
}

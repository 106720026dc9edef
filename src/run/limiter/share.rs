//! Sharing a key with other programs, with no configuration: the server's `remaining` counts
//! every consumer of the key, so its drop beyond this client's own sends tells how fast the
//! others spend. Reports at least [`SPAN`] apart are compared: from the earlier one, the
//! bucket would hold what was left plus the refill since, less what this client sent; what
//! the later one reports below that, the others took. Both spends are kept as sums that decay
//! with a time constant of [`TAU`] seconds, so they read as rates over the last half minute
//! or so.
//!
//! While others spend, this client paces by its share of the refill instead of all of it:
//! half of what the others leave plus half of what it spends itself, `(L − others + own) / 2`
//! (a few percent less, [`MARGIN`]).
//! Two clients that both take the whole limit each come down to half at the first estimate,
//! and any split that adds up to the limit stays as it is; neither is cut below
//! [`FLOOR`] of the limit, so a newcomer is never starved.

use std::time::{Duration, Instant};

/// The shortest span between two reports that are compared.
const SPAN: Duration = Duration::from_secs(2);
/// The time constant of the spend estimates.
const TAU: f64 = 30.0;
/// Others spending less than this share of the limit are noise: this client is alone.
const ALONE_BELOW: f64 = 0.05;
/// The smallest share of the limit this client paces by.
const FLOOR: f64 = 0.05;
/// What the clients' shares add up to, a little below the limit: estimates of what others
/// spend are noisy, and a few percent of the time costs less than the 429s of an overshoot.
const MARGIN: f64 = 0.97;

/// A report to compare later ones with.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// When its request was sent.
    at: Instant,
    /// This client's requests the server had counted by then.
    counted: f64,
    /// What the server said was left.
    remaining: f64,
}

/// What other consumers of the key spend, and this client's share of the refill.
#[derive(Debug, Default)]
pub(super) struct Share {
    anchor: Option<Anchor>,
    /// Units others spent, decayed.
    others: f64,
    /// Units this client spent, decayed.
    own: f64,
    /// Seconds the sums cover, decayed alike (so the rates are right from the first span).
    seconds: f64,
    decayed_at: Option<Instant>,
    /// From the first report, before any span is measured: this client's portion of what
    /// was spent since the bucket was (presumably) full, when others spent some too.
    first_portion: Option<f64>,
}

impl Share {
    /// A report for the request sent at `at`: `remaining` left of `limit` per minute after
    /// the server counted `counted` of this client's requests.
    pub(super) fn observe(&mut self, at: Instant, counted: f64, remaining: f64, limit: f64) {
        let Some(anchor) = self.anchor else {
            self.first_report(counted, remaining, limit, 0.0);
            self.anchor = Some(Anchor {
                at,
                counted,
                remaining,
            });
            return;
        };
        let span = at.saturating_duration_since(anchor.at);
        if span < SPAN {
            if self.seconds <= 0.0 {
                let refill = limit / 60.0 * span.as_secs_f64();
                self.first_report(counted, remaining, limit, refill);
            }
            return;
        }
        let refill = limit / 60.0 * span.as_secs_f64();
        let own = (counted - anchor.counted).max(0.0);
        let expected = (anchor.remaining + refill).min(limit) - own;
        let others = expected - remaining;
        self.decay(at);
        self.others = (self.others + others).max(0.0);
        self.own += own;
        self.seconds += span.as_secs_f64();
        self.anchor = Some(Anchor {
            at,
            counted,
            remaining,
        });
    }

    /// A report before the first span is measured: a bucket found lower than this client's
    /// own spend (and the `refill` since its first report) explains means others are taking
    /// from it now, or took within the minute.
    fn first_report(&mut self, counted: f64, remaining: f64, limit: f64, refill: f64) {
        let others = limit + refill - counted - remaining;
        self.first_portion = (others > 1.0 && counted > 0.0)
            .then(|| (counted / (counted + others)).clamp(FLOOR, 1.0))
            .or(self.first_portion);
    }

    /// Others' spend per minute, as last estimated.
    pub(super) fn others_per_minute(&self) -> f64 {
        self.per_minute(self.others)
    }

    fn per_minute(&self, units: f64) -> f64 {
        if self.seconds > 0.0 {
            units / self.seconds * 60.0
        } else {
            0.0
        }
    }

    /// The pace this client keeps under a limit of `limit` per minute: `None` when it is
    /// alone (the whole limit), else its share.
    pub(super) fn pace(&self, limit: f64) -> Option<f64> {
        let others = self.others_per_minute();
        if others < limit * ALONE_BELOW {
            return None;
        }
        let own = self.per_minute(self.own);
        Some((MARGIN * (limit - others + own) / 2.0).clamp(limit * FLOOR, limit))
    }

    /// This client's portion of what the server reports left: `None` alone (all of it),
    /// else its part of the recent spend, so that clients that all read the same `remaining`
    /// do not all spend it.
    pub(super) fn portion(&self, limit: f64) -> Option<f64> {
        if self.seconds <= 0.0 {
            return self.first_portion;
        }
        let others = self.others_per_minute();
        if others < limit * ALONE_BELOW {
            return None;
        }
        let own = self.per_minute(self.own);
        Some((own / (own + others)).clamp(FLOOR, 1.0))
    }

    fn decay(&mut self, now: Instant) {
        if let Some(then) = self.decayed_at {
            let factor = (-now.saturating_duration_since(then).as_secs_f64() / TAU).exp();
            self.others *= factor;
            self.own *= factor;
            self.seconds *= factor;
        }
        self.decayed_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clients at a limit of 120 a minute, each sending `mine` a second, the other
    /// `theirs`: what the first learns after a minute of reports.
    fn learnt(mine: f64, theirs: f64) -> Share {
        let t0 = Instant::now();
        let mut share = Share::default();
        let mut remaining = 0.0f64;
        for second in 0..60u32 {
            let at = t0 + Duration::from_secs(u64::from(second));
            // The bucket refills 2 a second; both spend what they send.
            remaining = (remaining + 2.0 - mine - theirs).max(0.0);
            share.observe(at, mine * f64::from(second), remaining, 120.0);
        }
        share
    }

    #[test]
    fn alone_the_whole_limit() {
        let share = learnt(2.0, 0.0);
        assert_eq!(share.pace(120.0), None);
    }

    #[test]
    fn two_that_each_take_all_come_down_to_half() {
        let share = learnt(1.0, 1.0);
        let others = share.others_per_minute();
        assert!((others - 60.0).abs() < 10.0, "{others}");
        let pace = share.pace(120.0).unwrap();
        assert!((pace - 60.0).abs() < 10.0, "{pace}");
    }

    #[test]
    fn a_first_report_below_the_own_spend_tells_of_others() {
        let mut share = Share::default();
        // 16 of ours counted, 56 of 120 left: others took 48 since the bucket was full.
        share.observe(Instant::now(), 16.0, 56.0, 120.0);
        assert_eq!(share.portion(120.0), Some(0.25));
        let mut alone = Share::default();
        alone.observe(Instant::now(), 16.0, 104.0, 120.0);
        assert_eq!(alone.portion(120.0), None);
    }

    #[test]
    fn a_newcomer_is_never_starved() {
        // The other takes everything; this one has sent nothing yet.
        let share = learnt(0.0, 2.0);
        let pace = share.pace(120.0).unwrap();
        assert!(pace >= 120.0 * FLOOR, "{pace}");
    }
}

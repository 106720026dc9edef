//! Telling a 429 that the caller's own rate causes from a stray one.
//!
//! A server at its limit refuses everything sent while its bucket is dry, so refusals caused
//! by the caller's rate come in runs: several requests sent one after the other, all refused.
//! (Runs are counted in the order requests were sent, not the order they came back: a 429
//! comes back at once and an answer takes seconds, so refusals bunch up on arrival whatever
//! causes them.) A proxy, an
//! overloaded pool or a shared gateway refuses a share of requests whatever the rate, so stray
//! refusals come scattered at that share. A run of refusals counts as rate evidence only when
//! the share of refusals seen before it makes such a run improbable: `share^run` below
//! [`IMPROBABLE`], the share counted with a prior of two refusals in four. After two hundred
//! answers and no refusal, three in a row are evidence (four after sixty); with half the
//! answers refused all along, it takes a run of twenty.
//!
//! A limit inferred from evidence is then put to the test: while the runner paces by it, the
//! requests sent at that pace should stop drawing 429s. When they keep drawing scattered ones,
//! at least [`CONTRADICTING_SHARE`] of [`VERIFY_OUTCOMES`] or more, the limit is contradicted:
//! the 429s were not the caller's rate, and the limit is dropped.

use std::collections::VecDeque;

/// Outcomes remembered for the share of refusals.
const WINDOW: usize = 256;
/// How improbable a run of refusals must be, at the share seen before it, to count as
/// evidence of a limit.
const IMPROBABLE: f64 = 1e-6;
/// The shortest run of refusals that counts as evidence.
const MIN_RUN: u32 = 3;
/// The shortest run that counts when nothing was ever answered (no share to go by; the
/// first request of a run may go alone, so a few stray refusals in a row are common).
const ALL_REFUSED_RUN: u64 = 8;
/// Outcomes of paced requests before an inferred limit is judged.
const VERIFY_OUTCOMES: u32 = 8;
/// The share of paced requests refused (scattered) that contradicts an inferred limit.
const CONTRADICTING_SHARE: f64 = 1.0 / 8.0;

/// What a 429 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Scattered, at the share seen so far: not the caller's rate.
    Stray,
    /// One of a run that the share seen before makes improbable: the caller's rate.
    RateCaused,
    /// Scattered, and paced requests keep drawing them: the inferred limit is wrong.
    Contradicted,
}

/// Outcomes of requests answered since an inferred limit was set.
#[derive(Debug, Clone, Copy)]
struct Paced {
    /// Requests sent from this one on were paced by the limit.
    from: u64,
    answered: u32,
    refused: u32,
}

/// The outcomes of a run's requests, in the order they landed.
#[derive(Debug, Default)]
pub(super) struct Evidence {
    /// Outcomes in the order they came, oldest first: `true` for a 429.
    history: VecDeque<bool>,
    refused_in_history: usize,
    answers: u64,
    paced: Option<Paced>,
}

impl Evidence {
    /// An answer to the request sent after `seq` others.
    pub(super) fn answered(&mut self, seq: u64) {
        self.push(false);
        self.answers += 1;
        if let Some(paced) = self.paced.as_mut().filter(|p| seq >= p.from) {
            paced.answered += 1;
        }
    }

    /// A 429 that said nothing of the limits, to the request sent after `seq` others; `run`
    /// requests in a row were refused, in the order sent, this one among them; `alone`: no
    /// other request is in flight.
    pub(super) fn refused(&mut self, seq: u64, run: u64, alone: bool) -> Verdict {
        // The share of refusals before this run (the run itself is what is being judged).
        let before = usize::try_from(run.saturating_sub(1)).unwrap_or(usize::MAX);
        let refused = self.refused_in_history.saturating_sub(before);
        let outcomes = self.history.len().saturating_sub(before);
        self.push(true);
        #[allow(clippy::cast_precision_loss)] // counts of at most WINDOW
        // A prior of two refusals in four: early on, with few outcomes seen, a short run
        // proves little.
        let share = (refused as f64 + 2.0) / (outcomes as f64 + 4.0);
        let long = run >= u64::from(MIN_RUN);
        // Nothing answered yet and every request sent refused: no share to go by.
        let all_refused = self.answers == 0 && alone && run >= ALL_REFUSED_RUN;
        if long && (all_refused || share.powi(i32::try_from(run).unwrap_or(i32::MAX)) < IMPROBABLE)
        {
            return Verdict::RateCaused;
        }
        let Some(paced) = self.paced.as_mut().filter(|p| seq >= p.from) else {
            return Verdict::Stray;
        };
        paced.refused += 1;
        let outcomes = paced.answered + paced.refused;
        if outcomes >= VERIFY_OUTCOMES
            && f64::from(paced.refused) >= f64::from(outcomes) * CONTRADICTING_SHARE
        {
            self.paced = None;
            return Verdict::Contradicted;
        }
        Verdict::Stray
    }

    /// Requests sent from `seq` on are paced by a newly inferred limit (`None`: no limit is
    /// inferred any more).
    pub(super) fn paced_from(&mut self, seq: Option<u64>) {
        self.paced = seq.map(|from| Paced {
            from,
            answered: 0,
            refused: 0,
        });
    }

    fn push(&mut self, refused: bool) {
        if self.history.len() == WINDOW && self.history.pop_front() == Some(true) {
            self.refused_in_history -= 1;
        }
        self.history.push_back(refused);
        self.refused_in_history += usize::from(refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_many_clean_answers_three_refusals_in_a_row_are_evidence() {
        let mut e = Evidence::default();
        for seq in 0..200 {
            e.answered(seq);
        }
        // Two hundred answers, no refusal: (2/204)^3 is below 1e-6.
        assert_eq!(e.refused(200, 1, false), Verdict::Stray);
        assert_eq!(e.refused(201, 2, false), Verdict::Stray);
        assert_eq!(e.refused(202, 3, false), Verdict::RateCaused);
    }

    #[test]
    fn at_a_steady_half_refused_a_long_run_is_needed() {
        let mut e = Evidence::default();
        for seq in 0..200 {
            if seq % 2 == 0 {
                e.answered(seq);
            } else {
                assert_eq!(e.refused(seq, 1, false), Verdict::Stray);
            }
        }
        let verdicts: Vec<_> = (200..230)
            .map(|seq| e.refused(seq, seq - 199, false))
            .collect();
        let first = verdicts.iter().position(|v| *v == Verdict::RateCaused);
        // 0.5^20 < 1e-6: the twentieth refusal in a row is the first that counts.
        assert_eq!(first, Some(19), "{verdicts:?}");
    }

    #[test]
    fn scattered_refusals_while_paced_contradict_the_limit() {
        let mut e = Evidence::default();
        e.paced_from(Some(10));
        // Refusals of requests sent before the limit do not count.
        for seq in 0..10 {
            e.answered(seq);
        }
        assert_eq!(e.refused(5, 1, false), Verdict::Stray);
        // Seven answers and one refusal among paced requests: one in eight.
        for seq in 10..17 {
            e.answered(seq);
        }
        assert_eq!(e.refused(17, 1, false), Verdict::Contradicted);
        // Judged once: the next is stray again until a new limit is paced by.
        assert_eq!(e.refused(18, 2, false), Verdict::Stray);
    }

    #[test]
    fn a_paced_limit_that_stops_the_429s_stands() {
        let mut e = Evidence::default();
        e.paced_from(Some(0));
        for seq in 0..100 {
            e.answered(seq);
        }
        // One refusal in a hundred and one: below the contradicting share.
        assert_eq!(e.refused(100, 1, false), Verdict::Stray);
    }

    #[test]
    fn when_nothing_was_ever_answered_every_request_refused_is_evidence() {
        let mut e = Evidence::default();
        // Others in flight may yet be answered: no telling.
        assert_eq!(e.refused(0, 1, false), Verdict::Stray);
        assert_eq!(e.refused(1, 2, false), Verdict::Stray);
        assert_eq!(e.refused(2, 3, false), Verdict::Stray);
        // Every request sent refused, none in flight: eight in a row are evidence.
        for seq in 3..7 {
            assert_eq!(e.refused(seq, seq + 1, true), Verdict::Stray);
        }
        assert_eq!(e.refused(7, 8, true), Verdict::RateCaused);
    }
}

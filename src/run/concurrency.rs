//! Adaptive concurrency (AIMD): the bound on requests in flight halves on a 429 and grows by
//! one per window of successes, between 1 and the configured `concurrency`.

/// The bound on requests in flight.
#[derive(Debug)]
pub(super) struct Window {
    max: usize,
    adaptive: bool,
    bound: f64,
    /// Requests sent before this many were sent at the old bound: their 429s do not halve
    /// it again.
    decreased_at: u64,
}

impl Window {
    pub(super) fn new(max: usize, adaptive: bool) -> Self {
        let max = max.max(1);
        #[allow(clippy::cast_precision_loss)] // a concurrency, far below 2^52
        let window = max as f64;
        Self {
            max,
            adaptive,
            bound: window,
            decreased_at: 0,
        }
    }

    /// Requests that may be in flight now.
    pub(super) fn limit(&self) -> usize {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // within 1..=max
        let limit = self.bound.floor() as usize;
        limit.clamp(1, self.max)
    }

    /// A 429 to the request sent after `seq` others, when `sent` have been sent in all.
    /// Returns the change of bound, if any.
    pub(super) fn on_rate_limited(&mut self, seq: u64, sent: u64) -> Option<(usize, usize)> {
        if !self.adaptive || seq < self.decreased_at {
            return None;
        }
        let before = self.limit();
        self.bound = (self.bound / 2.0).max(1.0);
        self.decreased_at = sent;
        let after = self.limit();
        (after != before).then_some((before, after))
    }

    /// An answer. Returns the change of bound, if any.
    pub(super) fn on_success(&mut self) -> Option<(usize, usize)> {
        if !self.adaptive {
            return None;
        }
        let before = self.limit();
        #[allow(clippy::cast_precision_loss)]
        let max = self.max as f64;
        self.bound = (self.bound + 1.0 / self.bound.floor().max(1.0)).min(max);
        let after = self.limit();
        (after != before).then_some((before, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_once_per_round_and_grows_back() {
        let mut w = Window::new(16, true);
        assert_eq!(w.on_rate_limited(10, 20), Some((16, 8)));
        // Another request of the same round: no second cut.
        assert_eq!(w.on_rate_limited(15, 21), None);
        assert_eq!(w.on_rate_limited(20, 22), Some((8, 4)));
        let mut grew = 0;
        while w.limit() < 16 {
            w.on_success();
            grew += 1;
        }
        // One per window: 4 + 5 + ... + 15 successes.
        assert_eq!(grew, (4..16).sum::<usize>());
        assert_eq!(w.on_success(), None);
        assert_eq!(w.limit(), 16);
    }

    #[test]
    fn fixed_when_not_adaptive() {
        let mut w = Window::new(4, false);
        assert_eq!(w.on_rate_limited(0, 1), None);
        assert_eq!(w.limit(), 4);
        assert_eq!(Window::new(0, true).limit(), 1);
    }
}

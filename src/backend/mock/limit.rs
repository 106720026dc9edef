//! [`MockRateLimit`]: the mock enforces an account's rate limit the way providers do — a bucket
//! of the per-minute limit that refills continuously — and answers 429 when it is dry, with or
//! without `retry-after` and `x-ratelimit-*` information.

use std::time::{Duration, Instant};

use crate::backend::{LimitStatus, RateLimitInfo};

/// A rate limit for [`MockBackend::with_rate_limit`](super::MockBackend::with_rate_limit).
///
/// ```
/// use dynbatch::backend::mock::MockRateLimit;
/// // 120 requests per minute, with headers and retry-after (what OpenAI sends):
/// let limit = MockRateLimit::requests_per_minute(120);
/// // The same limit from a server that says nothing but 429:
/// let silent = limit.with_headers(false).with_retry_after(false);
/// assert_ne!(limit, silent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MockRateLimit {
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u32>,
    input_tokens_per_minute: Option<u32>,
    output_tokens_per_minute: Option<u32>,
    headers: bool,
    retry_after: bool,
}

impl MockRateLimit {
    /// No limit yet, to add the limits one wants with the `and_…` methods; reported in
    /// headers, with `retry-after` on 429s.
    ///
    /// ```
    /// use dynbatch::backend::mock::MockRateLimit;
    /// // Anthropic's shape: input and output tokens limited apart.
    /// let claude = MockRateLimit::unlimited()
    ///     .and_input_tokens_per_minute(50_000)
    ///     .and_output_tokens_per_minute(10_000);
    /// # let _ = claude;
    /// ```
    pub fn unlimited() -> Self {
        Self {
            requests_per_minute: None,
            tokens_per_minute: None,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            headers: true,
            retry_after: true,
        }
    }

    /// A requests-per-minute limit, reported in headers, with `retry-after` on 429s.
    pub fn requests_per_minute(limit: u32) -> Self {
        Self {
            requests_per_minute: Some(limit.max(1)),
            tokens_per_minute: None,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            headers: true,
            retry_after: true,
        }
    }

    /// A tokens-per-minute limit, reported in headers, with `retry-after` on 429s. A request
    /// costs its prompt characters / 4 plus its `max_tokens`.
    pub fn tokens_per_minute(limit: u32) -> Self {
        Self {
            requests_per_minute: None,
            tokens_per_minute: Some(limit.max(1)),
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            headers: true,
            retry_after: true,
        }
    }

    /// Adds a tokens-per-minute limit.
    #[must_use]
    pub fn and_tokens_per_minute(mut self, limit: u32) -> Self {
        self.tokens_per_minute = Some(limit.max(1));
        self
    }

    /// Adds an input-tokens-per-minute limit (prompt characters / 4), as Anthropic has.
    #[must_use]
    pub fn and_input_tokens_per_minute(mut self, limit: u32) -> Self {
        self.input_tokens_per_minute = Some(limit.max(1));
        self
    }

    /// Adds an output-tokens-per-minute limit, as Anthropic has: a request costs its
    /// `max_tokens`, counted when it starts.
    #[must_use]
    pub fn and_output_tokens_per_minute(mut self, limit: u32) -> Self {
        self.output_tokens_per_minute = Some(limit.max(1));
        self
    }

    /// Whether answers and 429s carry the `x-ratelimit-*` information. Default `true`.
    #[must_use]
    pub fn with_headers(mut self, headers: bool) -> Self {
        self.headers = headers;
        self
    }

    /// Whether 429s carry a `retry-after` (the time until the request would fit).
    /// Default `true`.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: bool) -> Self {
        self.retry_after = retry_after;
        self
    }
}

#[derive(Debug, Clone, Copy)]
struct Level {
    limit: f64,
    level: f64,
}

impl Level {
    fn new(limit: Option<u32>) -> Option<Self> {
        limit.map(|l| Self {
            limit: f64::from(l),
            level: f64::from(l),
        })
    }

    fn refill(&mut self, secs: f64) {
        self.level = (self.level + self.limit / 60.0 * secs).min(self.limit);
    }

    /// Seconds until `cost` is there.
    fn wait(&self, cost: f64) -> f64 {
        ((cost.min(self.limit) - self.level) / (self.limit / 60.0)).max(0.0)
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn status(&self) -> LimitStatus {
        LimitStatus {
            limit: Some(self.limit as u64),
            remaining: Some(self.level.max(0.0).floor() as u64),
            reset: Duration::try_from_secs_f64(self.wait(self.limit)).ok(),
        }
    }
}

/// The bucket state of a rate-limited mock.
#[derive(Debug)]
pub(super) struct Buckets {
    config: MockRateLimit,
    requests: Option<Level>,
    tokens: Option<Level>,
    input: Option<Level>,
    output: Option<Level>,
    at: Option<Instant>,
}

/// Why a request was refused: the wait to report and the information to attach.
pub(super) struct Refusal {
    pub(super) retry_after: Option<Duration>,
    pub(super) limits: Option<RateLimitInfo>,
    pub(super) message: String,
}

impl Buckets {
    pub(super) fn new(config: MockRateLimit) -> Self {
        Self {
            config,
            requests: Level::new(config.requests_per_minute),
            tokens: Level::new(config.tokens_per_minute),
            input: Level::new(config.input_tokens_per_minute),
            output: Level::new(config.output_tokens_per_minute),
            at: None,
        }
    }

    /// Admits a request of `input` prompt and `output` (`max_tokens`) tokens at `now`, or
    /// says why not.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        input: u64,
        output: u64,
    ) -> Result<Option<RateLimitInfo>, Box<Refusal>> {
        let secs = self
            .at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.at = Some(now);
        #[allow(clippy::cast_precision_loss)]
        let (input, output) = (input as f64, output as f64);
        let mut wait: (f64, &str) = (0.0, "requests");
        for (level, cost, which) in [
            (&mut self.requests, 1.0, "requests"),
            (&mut self.tokens, input + output, "tokens"),
            (&mut self.input, input, "input tokens"),
            (&mut self.output, output, "output tokens"),
        ] {
            if let Some(level) = level {
                level.refill(secs);
                let w = level.wait(cost);
                if w > wait.0 {
                    wait = (w, which);
                }
            }
        }
        if wait.0 > 0.0 {
            return Err(Box::new(Refusal {
                retry_after: self
                    .config
                    .retry_after
                    .then(|| Duration::try_from_secs_f64(wait.0).ok())
                    .flatten(),
                limits: self.info(),
                message: format!("mock: rate limit reached on {} per minute", wait.1),
            }));
        }
        for (level, cost) in [
            (&mut self.requests, 1.0),
            (&mut self.tokens, input + output),
            (&mut self.input, input),
            (&mut self.output, output),
        ] {
            if let Some(level) = level {
                level.level -= cost;
            }
        }
        Ok(self.info())
    }

    fn info(&self) -> Option<RateLimitInfo> {
        self.config.headers.then(|| RateLimitInfo {
            requests: self.requests.map(|l| l.status()).unwrap_or_default(),
            tokens: self.tokens.map(|l| l.status()).unwrap_or_default(),
            input_tokens: self.input.map(|l| l.status()).unwrap_or_default(),
            output_tokens: self.output.map(|l| l.status()).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = Buckets::new(MockRateLimit::requests_per_minute(60));
        for i in 0..60 {
            let info = b.admit(t0, 1, 0).ok().flatten().unwrap();
            assert_eq!(info.requests.remaining, Some(59 - i));
        }
        let refused = b.admit(t0, 1, 0).err().unwrap();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(refused.limits.unwrap().requests.remaining, Some(0));
        assert!(b.admit(t0 + Duration::from_millis(999), 1, 0).is_err());
        assert!(b.admit(t0 + Duration::from_secs(1), 1, 0).is_ok());
    }

    #[test]
    fn tokens_limit_counts_the_cost() {
        let t0 = Instant::now();
        let mut b = Buckets::new(MockRateLimit::tokens_per_minute(600).with_headers(false));
        assert_eq!(b.admit(t0, 500, 0).ok(), Some(None));
        let refused = b.admit(t0, 200, 0).err().unwrap();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(10)));
        assert!(refused.limits.is_none());
    }

    #[test]
    fn output_tokens_count_max_tokens_apart_from_the_prompt() {
        let t0 = Instant::now();
        let mut b = Buckets::new(
            MockRateLimit::requests_per_minute(1000)
                .and_input_tokens_per_minute(6000)
                .and_output_tokens_per_minute(600),
        );
        let info = b.admit(t0, 100, 500).ok().flatten().unwrap();
        assert_eq!(info.output_tokens.remaining, Some(100));
        assert_eq!(info.input_tokens.remaining, Some(5900));
        let refused = b.admit(t0, 100, 200).err().unwrap();
        assert!(
            refused.message.contains("output tokens"),
            "{}",
            refused.message
        );
        assert_eq!(refused.retry_after, Some(Duration::from_secs(10)));
        // A request with little output still fits.
        assert!(b.admit(t0, 1000, 100).is_ok());
    }
}

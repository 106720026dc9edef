//! [`RunConfig`]: the runner's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::patterns::PriceTable;
use crate::prompt::RequestSettings;

/// The runner's settings. `Default` follows the design and the official `OpenAI` SDKs; nothing
/// about the account needs to be set: rate limits are learnt while running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Most requests in flight at once. Default 4. With `adaptive_concurrency`, the runner
    /// halves its own bound on 429s and grows it back up to this.
    pub concurrency: usize,
    /// Adapt the requests in flight to the server (AIMD: halve on a 429, add one per window
    /// of successes, never above `concurrency`). Default `true`.
    pub adaptive_concurrency: bool,
    /// The account's requests per minute, when known. Default `None`: learnt from the
    /// `x-ratelimit-*` headers, the 429 messages, or the 429s themselves. Headers win over it.
    pub requests_per_minute: Option<u32>,
    /// The account's tokens per minute (prompt plus `max_tokens`, as providers count), when
    /// known. Default `None`: learnt as `requests_per_minute`.
    pub tokens_per_minute: Option<u32>,
    /// How long the runner waits for the rate limit with no answer arriving before it gives up
    /// on the clusters still waiting. Default 10 minutes. 429s never spend `max_extra_calls`;
    /// this is their only bound.
    pub rate_limit_patience: Duration,
    /// Retries of a transient error (5xx, timeout, connection) in a row for one request,
    /// before it goes to the back of the queue (while the extra-call budget lasts). Default 2.
    pub max_retries: u32,
    /// First back-off delay; doubles per retry. Default 0.5 s.
    pub base_delay: Duration,
    /// Longest back-off delay. Default 8 s.
    pub max_delay: Duration,
    /// Longest delay a server may ask for after a transient error (5xx); a longer one fails
    /// the request. Default 120 s. (A 429's delay is bounded by `rate_limit_patience`.)
    pub max_retry_after: Duration,
    /// Transient failures in a row, across requests, that pause all sending; then one request
    /// probes the server after a back-off, and sending resumes when it succeeds (a circuit
    /// breaker). Default 3.
    pub breaker_threshold: u32,
    /// Timeout of each call. Default 600 s, as `OpenAI`'s SDKs: a long answer takes a minute
    /// on a fast model, and a local server that answers one request at a time keeps the
    /// others waiting for several. The only request timeout: backends set none of their own
    /// by default.
    pub request_timeout: Duration,
    /// Most calls beyond one per planned batch (retries of transient errors, split halves,
    /// re-asks). Default 16. Calls answered with a 429 are not counted.
    pub max_extra_calls: u64,
    /// How requests are rendered.
    pub request: RequestSettings,
    /// Prices per model, for the cost estimate.
    pub prices: PriceTable,
    /// Token-set Jaccard similarity above which two patterns are merged. Default 0.6.
    pub merge_similarity: f64,
    /// Seed of the back-off jitter (runs are reproducible). Default 0.
    pub jitter_seed: u64,
    /// Split requests whose answer is unusable, keep what a cut-off answer completed, and ask
    /// again for clusters an answer left out. Default `true`; with `false` those clusters fail
    /// with the reason (one call per batch, as when importing Batch API results). Requests too
    /// big to be sent at all (over the context window or the tokens-per-minute limit) are
    /// split before any call either way: there is no call to make one answer from.
    pub split_and_reask: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            adaptive_concurrency: true,
            requests_per_minute: None,
            tokens_per_minute: None,
            rate_limit_patience: Duration::from_secs(600),
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
            breaker_threshold: 3,
            request_timeout: Duration::from_secs(600),
            max_extra_calls: 16,
            request: RequestSettings::default(),
            prices: PriceTable::default(),
            merge_similarity: 0.6,
            jitter_seed: 0,
            split_and_reask: true,
        }
    }
}

impl RunConfig {
    /// Checks every setting; the runner does this before a run and fails it with
    /// [`Error::Config`](crate::Error::Config) rather than clamping a value silently.
    ///
    /// # Errors
    /// The [`ConfigError`] naming the first invalid field: `concurrency`, `requests_per_minute`,
    /// `tokens_per_minute`, `breaker_threshold` or `request_timeout` of 0; `base_delay` above
    /// `max_delay`; `merge_similarity` outside `0..=1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, field: &'static str, value: String, rule: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError { field, value, rule })
            }
        };
        check(
            self.concurrency >= 1,
            "concurrency",
            self.concurrency.to_string(),
            "at least 1",
        )?;
        for (field, limit) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if let Some(n) = limit {
                check(n >= 1, field, n.to_string(), "at least 1 when set")?;
            }
        }
        check(
            self.breaker_threshold >= 1,
            "breaker_threshold",
            self.breaker_threshold.to_string(),
            "at least 1",
        )?;
        check(
            !self.request_timeout.is_zero(),
            "request_timeout",
            format!("{:?}", self.request_timeout),
            "more than 0",
        )?;
        check(
            self.base_delay <= self.max_delay,
            "base_delay",
            format!("{:?}", self.base_delay),
            "at most max_delay",
        )?;
        check(
            (0.0..=1.0).contains(&self.merge_similarity),
            "merge_similarity",
            self.merge_similarity.to_string(),
            "within 0..=1",
        )
    }
}

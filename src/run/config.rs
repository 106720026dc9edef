//! [`RunConfig`]: the runner's settings, valid by construction ([`RunConfigBuilder`],
//! serde), as [`BatchingConfig`](crate::BatchingConfig) is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::prompt::RequestSettings;
use crate::report::PriceTable;

/// Declares the settings once: the struct's fields, their getters, the builder's setters and
/// the serde form.
macro_rules! settings {
    ($(
        $(#[doc = $doc:expr])*
        $kind:ident $name:ident: $ty:ty,
    )*) => {
        /// The runner's settings. `Default` follows the design and the official `OpenAI` SDKs;
        /// nothing about the account needs to be set: rate limits are learnt while running.
        ///
        /// Valid by construction: the only ways to get one are [`Default`],
        /// [`RunConfig::builder`] and deserialization (every field optional, unknown fields an
        /// error), and the last two check every rule ([`RunConfig::validate`]).
        ///
        /// ```
        /// use std::time::Duration;
        /// use dynbatch::RunConfig;
        ///
        /// let config = RunConfig::builder()
        ///     .concurrency(8)
        ///     .rate_limit_patience(Duration::from_secs(60))
        ///     .build()?;
        /// assert_eq!(config.concurrency(), 8);
        /// assert!(RunConfig::builder().concurrency(0).build().is_err());
        /// let json: RunConfig = serde_json::from_str(r#"{"max_retries": 5}"#)?;
        /// assert_eq!(json.max_retries(), 5);
        /// assert!(serde_json::from_str::<RunConfig>(r#"{"concurrency": 0}"#).is_err());
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = "Repr", into = "Repr")]
        pub struct RunConfig {
            $(pub(crate) $name: $ty,)*
        }

        impl RunConfig {
            $(
                settings!(@get $kind $name: $ty; $($doc)*);
            )*
        }

        /// Builds a [`RunConfig`], starting from the defaults (or from a config, with
        /// [`RunConfig::to_builder`]); [`build`](RunConfigBuilder::build) checks every rule.
        #[derive(Debug, Clone)]
        #[must_use]
        pub struct RunConfigBuilder(RunConfig);

        impl RunConfigBuilder {
            $(
                $(#[doc = $doc])*
                pub fn $name(mut self, value: $ty) -> Self {
                    self.0.$name = value;
                    self
                }
            )*
        }

        #[derive(Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Repr {
            $($name: $ty,)*
        }

        impl From<RunConfig> for Repr {
            fn from(c: RunConfig) -> Self {
                Self { $($name: c.$name,)* }
            }
        }

        impl From<Repr> for RunConfigBuilder {
            fn from(r: Repr) -> Self {
                Self(RunConfig { $($name: r.$name,)* })
            }
        }
    };
    (@get copy $name:ident: $ty:ty; $($doc:expr)*) => {
        $(#[doc = $doc])*
        pub fn $name(&self) -> $ty {
            self.$name
        }
    };
    (@get ref $name:ident: $ty:ty; $($doc:expr)*) => {
        $(#[doc = $doc])*
        pub fn $name(&self) -> &$ty {
            &self.$name
        }
    };
}

settings! {
    /// Most requests in flight at once. Default 4. With `adaptive_concurrency`, the runner
    /// halves its own bound on 429s and grows it back up to this.
    copy concurrency: usize,
    /// Adapt the requests in flight to the server (AIMD: halve on a 429, add one per window
    /// of successes, never above `concurrency`). Default `true`.
    copy adaptive_concurrency: bool,
    /// The account's requests per minute, when known. Default `None`: learnt from the
    /// `x-ratelimit-*` headers, the 429 messages, or the 429s themselves. Headers win over it.
    copy requests_per_minute: Option<u32>,
    /// The account's tokens per minute (prompt plus `max_tokens`, as providers count), when
    /// known. Default `None`: learnt as `requests_per_minute`.
    copy tokens_per_minute: Option<u32>,
    /// How long the runner waits for the rate limit with no answer arriving before it gives up
    /// on the clusters still waiting. Default 10 minutes. 429s never spend `max_extra_calls`;
    /// this is their only bound.
    copy rate_limit_patience: Duration,
    /// Retries of a transient error (5xx, timeout, connection) in a row for one request,
    /// before it goes to the back of the queue (while the extra-call budget lasts). Default 2.
    copy max_retries: u32,
    /// First back-off delay; doubles per retry. Default 0.5 s.
    copy base_delay: Duration,
    /// Longest back-off delay. Default 8 s.
    copy max_delay: Duration,
    /// Longest delay a server may ask for after a transient error (5xx); a longer one fails
    /// the request. Default 120 s. (A 429's delay is bounded by `rate_limit_patience`.)
    copy max_retry_after: Duration,
    /// Transient failures in a row, across requests, that pause all sending; then one request
    /// probes the server after a back-off, and sending resumes when it succeeds (a circuit
    /// breaker). Default 3.
    copy breaker_threshold: u32,
    /// Timeout of each call. Default 600 s, as `OpenAI`'s SDKs: a long answer takes a minute
    /// on a fast model, and a local server that answers one request at a time keeps the
    /// others waiting for several. The only request timeout: backends set none of their own
    /// by default.
    copy request_timeout: Duration,
    /// Most calls beyond one per planned batch (retries of transient errors, split halves,
    /// re-asks). Default 16. Calls answered with a 429 are not counted.
    copy max_extra_calls: u64,
    /// How requests are rendered.
    ref request: RequestSettings,
    /// Prices per model, for the cost estimate.
    ref prices: PriceTable,
    /// Token-set Jaccard similarity above which two patterns are merged. Default 0.6.
    copy merge_similarity: f64,
    /// Seed of the back-off jitter (runs are reproducible). Default 0.
    copy jitter_seed: u64,
    /// Split requests whose answer is unusable, keep what a cut-off answer completed, and ask
    /// again for clusters an answer left out. Default `true`; with `false` those clusters fail
    /// with the reason (one call per batch, as when importing Batch API results). Requests too
    /// big to be sent at all (over the context window or the tokens-per-minute limit) are
    /// split before any call either way: there is no call to make one answer from.
    copy split_and_reask: bool,
    /// After the run, ask this many of the batched clusters again, each alone (evenly spread
    /// over the plan, from batches of two or more), and report how far the batched answers
    /// agree with the single ones ([`QualityProbe`](crate::report::QualityProbe)): whether
    /// batching costs quality, without labels. Each costs a call. Default 0: no probe.
    copy quality_probe: usize,
    /// The probe's agreement under which the report warns. Default 0.5.
    copy quality_probe_threshold: f64,
}

impl Default for Repr {
    fn default() -> Self {
        RunConfig::default().into()
    }
}

impl TryFrom<Repr> for RunConfig {
    type Error = ConfigError;

    fn try_from(repr: Repr) -> Result<Self, ConfigError> {
        RunConfigBuilder::from(repr).build()
    }
}

impl RunConfigBuilder {
    /// Changes the request settings in place, keeping the rest:
    /// `.request_with(|r| r.model = "gpt-4o".into())`.
    pub fn request_with(mut self, change: impl FnOnce(&mut RequestSettings)) -> Self {
        change(&mut self.0.request);
        self
    }

    /// Checks every rule and returns the config.
    ///
    /// # Errors
    /// The [`ConfigError`] naming the first invalid field, as [`RunConfig::validate`].
    pub fn build(self) -> Result<RunConfig, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
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
            quality_probe: 0,
            quality_probe_threshold: 0.5,
        }
    }
}

impl RunConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RunConfigBuilder {
        RunConfigBuilder(Self::default())
    }

    /// A builder starting from this config.
    pub fn to_builder(&self) -> RunConfigBuilder {
        RunConfigBuilder(self.clone())
    }

    /// Checks every setting. A `RunConfig` from the builder or from serde has passed it
    /// already; the runner checks again before a run (a config changed inside the crate, as
    /// the Batch API import does, too) and fails it with
    /// [`Error::Config`](crate::Error::Config) rather than clamping a value silently.
    ///
    /// # Errors
    /// The [`ConfigError`] naming the first invalid field: `concurrency`, `requests_per_minute`,
    /// `tokens_per_minute`, `breaker_threshold` or `request_timeout` of 0; `base_delay` above
    /// `max_delay`; `merge_similarity` or `quality_probe_threshold` outside `0..=1`.
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
            "must be at least 1",
        )?;
        for (field, limit) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if let Some(n) = limit {
                check(n >= 1, field, n.to_string(), "must be at least 1 when set")?;
            }
        }
        check(
            self.breaker_threshold >= 1,
            "breaker_threshold",
            self.breaker_threshold.to_string(),
            "must be at least 1",
        )?;
        check(
            !self.request_timeout.is_zero(),
            "request_timeout",
            format!("{:?}", self.request_timeout),
            "must be more than 0",
        )?;
        check(
            self.base_delay <= self.max_delay,
            "base_delay",
            format!("{:?}", self.base_delay),
            "must be at most max_delay",
        )?;
        check(
            (0.0..=1.0).contains(&self.merge_similarity),
            "merge_similarity",
            self.merge_similarity.to_string(),
            "must be within 0..=1",
        )?;
        check(
            (0.0..=1.0).contains(&self.quality_probe_threshold),
            "quality_probe_threshold",
            self.quality_probe_threshold.to_string(),
            "must be within 0..=1",
        )
    }
}

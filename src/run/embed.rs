//! [`Embedding`]: an [`Embedder`] through the runner's machinery, for consolidation's
//! embedding calls: inputs split within the embedder's limits, each request paced by the
//! account's [`RateLimiter`] (shared with the chat calls when given), 429s waited out as the
//! limiter says, transient errors retried with the runner's back-off up to `max_retries`, the
//! runner's circuit breaker pausing every request after `breaker_threshold` failures in a row
//! (an outage is probed, not hammered), an account-wide error (a bad key, no quota) stopping at
//! once, and every vector kept in the journal, so a rerun makes no call for a text embedded
//! before.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::limiter::{Cost, RateLimiter};
use super::retry::{Breaker, Gate, backoff};
use super::{RunConfig, later};
use crate::backend::{BackendError, ChatResponse, EmbedLimits, Embedder, Embeddings, TokenUsage};
use crate::store::{RequestKey, RunStore};
use crate::timer::Timer;

/// An [`Embedder`] that batches (within the inner embedder's limits), paces (by a
/// [`RateLimiter`], the account's when shared), retries transient errors with the runner's
/// back-off and circuit breaker, stops on an account-wide error, and journals every vector.
///
/// ```no_run
/// # #[cfg(all(feature = "openai", feature = "store"))]
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dynbatch::backend::openai::OpenAiEmbedder;
/// use dynbatch::patterns::SemanticMerger;
/// use dynbatch::{Embedding, RunConfig};
/// use dynbatch::TokioTimer;
/// use dynbatch::store::SqliteStore;
///
/// let embedder = Embedding::new(OpenAiEmbedder::from_env()?, TokioTimer, RunConfig::default())
///     .with_store(SqliteStore::open("run.journal")?);
/// let merger = SemanticMerger::new(embedder);
/// # let _ = merger; Ok(()) }
/// ```
pub struct Embedding<E> {
    inner: E,
    timer: Arc<dyn Timer>,
    config: RunConfig,
    limiter: RateLimiter,
    breaker: std::sync::Mutex<Breaker>,
    store: Option<Arc<dyn RunStore>>,
}

impl<E: fmt::Debug> fmt::Debug for Embedding<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedding")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<E: Embedder> Embedding<E> {
    /// `inner`, paced by a limiter of `config`'s limits (learnt from the server otherwise),
    /// retried as `config` says, on `timer`'s clock.
    pub fn new(inner: E, timer: impl Timer + 'static, config: RunConfig) -> Self {
        let limiter = RateLimiter::new(&config, &timer);
        Self {
            inner,
            timer: Arc::new(timer),
            breaker: std::sync::Mutex::new(Breaker::new(config.breaker_threshold)),
            config,
            limiter,
            store: None,
        }
    }

    /// Paces by `limiter`, shared with runners ([`Runner::with_rate_limiter`]): embeddings
    /// spend from the same account limits as chat calls.
    ///
    /// [`Runner::with_rate_limiter`]: super::Runner::with_rate_limiter
    #[must_use]
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Keeps every vector in `store`, and takes from it those embedded before.
    #[must_use]
    pub fn with_store(mut self, store: impl RunStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// One request, paced and retried.
    async fn call(&self, texts: &[String], seq: u64) -> Result<Embeddings, BackendError> {
        let cost = Cost {
            input: texts.iter().map(|t| t.len() as u64 / 4 + 1).sum(),
            output: 0,
        };
        let mut attempt = 0;
        loop {
            let now = self.timer.now();
            let gate = crate::sync::lock(&self.breaker).gate(now);
            match gate {
                Gate::Open => {}
                Gate::Until(at) => {
                    self.timer.sleep(at.saturating_duration_since(now)).await;
                    continue;
                }
                Gate::Probing => {
                    self.timer.sleep(self.config.base_delay).await;
                    continue;
                }
            }
            if let Some(at) = self.limiter.ready_at(now, cost) {
                self.timer.sleep(at.saturating_duration_since(now)).await;
                continue;
            }
            let ticket = self.limiter.take(now, cost);
            crate::sync::lock(&self.breaker).on_send();
            match self.inner.embed(texts).await {
                Ok(out) => {
                    crate::sync::lock(&self.breaker).on_success();
                    self.limiter
                        .on_answer(self.timer.now(), &ticket, out.rate_limits.as_ref());
                    return Ok(out);
                }
                Err(BackendError::RateLimited {
                    retry_after,
                    limits,
                    message,
                }) => {
                    let refusal = self.limiter.on_rate_limited(
                        self.timer.now(),
                        &ticket,
                        retry_after,
                        limits.as_deref(),
                        &self.config,
                    );
                    crate::sync::lock(&self.breaker).on_neutral();
                    tracing::info!(%message, "embedding rate limited");
                    let wait = refusal.wait.max(refusal.hold);
                    self.timer.sleep(wait).await;
                }
                Err(e) if e.is_account_wide() || !e.is_retryable() => {
                    self.limiter.resolve(&ticket);
                    return Err(e);
                }
                Err(e) => {
                    self.limiter.resolve(&ticket);
                    crate::sync::lock(&self.breaker).on_failure(self.timer.now(), &self.config);
                    attempt += 1;
                    if attempt > self.config.max_retries {
                        return Err(e);
                    }
                    let wait = e
                        .retry_after()
                        .filter(|w| *w <= self.config.max_retry_after)
                        .unwrap_or_else(|| backoff(&self.config, seq, attempt));
                    let now = self.timer.now();
                    let until = later(now, wait);
                    self.timer.sleep(until.saturating_duration_since(now)).await;
                }
            }
        }
    }
}

/// The requests `texts` go in: consecutive runs within `limits`.
fn requests(texts: &[String], limits: EmbedLimits) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, t) in texts.iter().enumerate() {
        let cost = t.len() / 4 + 1;
        if i > start && (i - start >= limits.max_inputs || tokens + cost > limits.max_tokens) {
            out.push(start..i);
            (start, tokens) = (i, 0);
        }
        tokens += cost;
    }
    if start < texts.len() {
        out.push(start..texts.len());
    }
    out
}

#[async_trait]
impl<E: Embedder> Embedder for Embedding<E> {
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, BackendError> {
        let model = self.inner.model().to_owned();
        let keys: Vec<RequestKey> = texts
            .iter()
            .map(|t| RequestKey::of_embedding(&model, t))
            .collect();
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        if let Some(store) = &self.store {
            for (slot, key) in vectors.iter_mut().zip(&keys) {
                if let Ok(Some(answer)) = store.get(key) {
                    *slot = serde_json::from_str(&answer.content).ok();
                }
            }
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| vectors[i].is_none()).collect();
        let todo: Vec<String> = missing.iter().map(|&i| texts[i].clone()).collect();
        let mut out = Embeddings::default();
        for (seq, range) in requests(&todo, self.inner.limits()).into_iter().enumerate() {
            let got = self.call(&todo[range.clone()], seq as u64).await?;
            if got.vectors.len() != range.len() {
                return Err(BackendError::Other {
                    retryable: false,
                    source: format!(
                        "the embedder returned {} vectors for {} texts",
                        got.vectors.len(),
                        range.len()
                    )
                    .into(),
                });
            }
            out.calls += got.calls;
            out.tokens += got.tokens;
            out.rate_limits = got.rate_limits.or(out.rate_limits);
            for (k, vector) in range.zip(got.vectors) {
                let i = missing[k];
                if let Some(store) = &self.store {
                    let answer = ChatResponse {
                        content: serde_json::to_string(&vector).unwrap_or_default(),
                        model: model.clone(),
                        usage: Some(TokenUsage::default()),
                        ..ChatResponse::default()
                    };
                    if let Err(e) = store.put(&keys[i], &answer) {
                        tracing::warn!(error = %e, "embedding not journalled");
                    }
                }
                vectors[i] = Some(vector);
            }
        }
        out.vectors = vectors.into_iter().map(Option::unwrap_or_default).collect();
        Ok(out)
    }

    fn limits(&self) -> EmbedLimits {
        self.inner.limits()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_respect_both_limits() {
        let texts: Vec<String> = (0..10).map(|i| "x".repeat(i * 40)).collect();
        let by_count = requests(&texts, EmbedLimits::new(4, 1_000_000));
        assert_eq!(by_count, vec![0..4, 4..8, 8..10]);
        // Tokens: text i costs i*10+1.
        let by_tokens = requests(&texts, EmbedLimits::new(100, 60));
        for r in &by_tokens {
            let cost: usize = texts[r.clone()].iter().map(|t| t.len() / 4 + 1).sum();
            assert!(cost <= 60 || r.len() == 1, "{r:?} {cost}");
        }
        let covered: Vec<usize> = by_tokens.into_iter().flatten().collect();
        assert_eq!(covered, (0..10).collect::<Vec<_>>());
    }
}

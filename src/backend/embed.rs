//! [`Embedder`]: texts in, vectors out, for consolidation that compares what patterns mean
//! rather than the words they share.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::{BackendError, RateLimitInfo};

/// Embeds texts. Implement `embed`; split a long input into requests within
/// [`limits`](Embedder::limits) or leave that to a wrapper that does
/// ([`Embedding`](crate::Embedding) batches, paces, retries and journals).
#[async_trait]
pub trait Embedder: Send + Sync + fmt::Debug {
    /// The vectors of `texts`, in order, one each.
    ///
    /// # Errors
    /// The classified error of the call.
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, BackendError>;

    /// The most one request takes. Default: `OpenAI`'s, 2,048 inputs and 300,000 tokens.
    fn limits(&self) -> EmbedLimits {
        EmbedLimits::default()
    }

    /// The model, for the journal's keys: vectors of another model are not these. Default
    /// empty.
    #[allow(clippy::unnecessary_literal_bound)] // implementations return their own field
    fn model(&self) -> &str {
        ""
    }
}

/// What an [`Embedder`] returned.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Embeddings {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Requests it took.
    pub calls: u64,
    /// Input tokens, as the server reported them.
    pub tokens: u64,
    /// The rate limits the last answer reported.
    pub rate_limits: Option<RateLimitInfo>,
}

impl Embeddings {
    /// `vectors`, from one call.
    pub fn new(vectors: Vec<Vec<f32>>) -> Self {
        Self {
            vectors,
            calls: 1,
            ..Self::default()
        }
    }
}

/// The most one embedding request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmbedLimits {
    /// Inputs.
    pub max_inputs: usize,
    /// Tokens, all inputs together (estimated at 4 characters a token).
    pub max_tokens: usize,
}

impl Default for EmbedLimits {
    fn default() -> Self {
        Self {
            max_inputs: 2048,
            max_tokens: 300_000,
        }
    }
}

impl EmbedLimits {
    /// Limits of `max_inputs` inputs and `max_tokens` tokens per request (each at least 1).
    pub fn new(max_inputs: usize, max_tokens: usize) -> Self {
        Self {
            max_inputs: max_inputs.max(1),
            max_tokens: max_tokens.max(1),
        }
    }
}

macro_rules! forward_embedder {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: Embedder + ?Sized> Embedder for $ty {
            async fn embed(&self, texts: &[String]) -> Result<Embeddings, BackendError> {
                (**self).embed(texts).await
            }
            fn limits(&self) -> EmbedLimits {
                (**self).limits()
            }
            fn model(&self) -> &str {
                (**self).model()
            }
        }
    )*};
}

forward_embedder!(&T, Box<T>, Arc<T>);

/// `Embedder` stays object safe.
const _: Option<&dyn Embedder> = None;

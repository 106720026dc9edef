//! [`OpenAiEmbedder`]: `POST {base}/embeddings` on any OpenAI-compatible server.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{OpenAiBuilder, classify};
use crate::backend::http::{Transport, header, parse_body, read_capped};
use crate::backend::{BackendError, EmbedLimits, Embedder, Embeddings, RateLimitInfo};
use crate::error::Error;

/// The default embedding model.
pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

/// Embeddings over any OpenAI-compatible `/v1/embeddings` (`{model, input: [..]}` →
/// `data[i].embedding`), with the configuration and auth of an
/// [`OpenAiBackend`](super::OpenAiBackend). One call is one request: split long inputs within
/// [`Embedder::limits`] (2,048 inputs, 300,000 tokens), or let a wrapper that batches, paces,
/// retries and journals do it ([`Embedding`](crate::Embedding)).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dynbatch::backend::Embedder;
/// use dynbatch::backend::openai::OpenAiEmbedder;
///
/// // EMBEDDINGS_BASE_URL (else OPENAI_BASE_URL), EMBEDDINGS_MODEL, EMBEDDINGS_API_KEY (else
/// // OPENAI_API_KEY)
/// let embedder = OpenAiEmbedder::from_env()?;
/// let out = embedder.embed(&["30-Day Challenge".into(), "Month-Long Experiment".into()]).await?;
/// assert_eq!(out.vectors.len(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    http: Transport,
    endpoint: String,
    model: String,
    timeout: Duration,
}

impl OpenAiBuilder {
    /// An embedder of this configuration (base URL, auth, headers) for `model`.
    ///
    /// # Errors
    /// As [`OpenAiBuilder::build`].
    pub fn build_embedder(self, model: impl Into<String>) -> Result<OpenAiEmbedder, Error> {
        Ok(OpenAiEmbedder {
            http: self.http_client()?,
            endpoint: format!("{}/embeddings", self.base()),
            model: model.into(),
            timeout: self.reported_timeout(),
        })
    }
}

impl OpenAiEmbedder {
    /// From `EMBEDDINGS_BASE_URL` (else `OPENAI_BASE_URL`, else `OpenAI`'s), `EMBEDDINGS_MODEL`
    /// (else [`DEFAULT_EMBEDDING_MODEL`]) and `EMBEDDINGS_API_KEY` (else `OPENAI_API_KEY`).
    ///
    /// # Errors
    /// As [`OpenAiBuilder::build`]: no key for a server that is not on loopback, a bad URL.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let mut builder = OpenAiBuilder::from_env();
        if let Some(url) = var("EMBEDDINGS_BASE_URL") {
            builder = builder.base_url(url);
        }
        if let Some(key) = var("EMBEDDINGS_API_KEY") {
            builder = builder.api_key(key);
        }
        let model = var("EMBEDDINGS_MODEL").unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.into());
        builder.build_embedder(model)
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

#[derive(Deserialize)]
struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, BackendError> {
        if texts.is_empty() {
            return Ok(Embeddings::default());
        }
        let body = serde_json::json!({"model": self.model, "input": texts});
        let call = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let response = self.http.send(call, self.timeout).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = header(&headers, "x-request-id");
        // 384 to 3,072 floats per text, each up to ~20 characters of JSON.
        let limit = texts
            .len()
            .saturating_mul(3072 * 24)
            .saturating_add(1 << 16);
        let text = read_capped(response, limit, self.timeout).await?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &headers, &text, request_id.as_deref()));
        }
        let wire: WireEmbeddings =
            parse_body(status, &text, "a list of embeddings", request_id.as_deref())?;
        let mut vectors = vec![Vec::new(); texts.len()];
        for (n, item) in wire.data.into_iter().enumerate() {
            let i = item.index.unwrap_or(n);
            match vectors.get_mut(i) {
                Some(slot) if slot.is_empty() => *slot = item.embedding,
                _ => {
                    return Err(BackendError::Other {
                        retryable: false,
                        source: format!(
                            "the server's embeddings name index {i} twice or out of {} inputs",
                            texts.len()
                        )
                        .into(),
                    });
                }
            }
        }
        if let Some(missing) = vectors.iter().position(Vec::is_empty) {
            return Err(BackendError::Other {
                retryable: false,
                source: format!("the server returned no embedding for input {missing}").into(),
            });
        }
        Ok(Embeddings {
            vectors,
            calls: 1,
            tokens: wire.usage.map_or(0, |u| u.prompt_tokens),
            rate_limits: RateLimitInfo::from_headers(|name| {
                headers.get(name).and_then(|v| v.to_str().ok())
            }),
        })
    }

    fn limits(&self) -> EmbedLimits {
        EmbedLimits::default()
    }

    fn model(&self) -> &str {
        &self.model
    }
}

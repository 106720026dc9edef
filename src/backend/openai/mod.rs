//! [`OpenAiBackend`] (feature `openai`): chat completions over HTTP, for `OpenAI` itself and every
//! server that speaks its protocol (Azure `OpenAI`, vLLM, Ollama, llama.cpp's server, LM Studio).
//!
//! [`OpenAiBatches`] is its Batch API (Files + Batches) for [`batch`](crate::batch).
//!
//! Only what this crate sends and reads is modelled: no general client. Errors are classified
//! the way the official SDKs do; the API key never appears in `Debug`, logs, errors or reports.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{BackendError, ChatRequest, ChatResponse, LlmBackend};
use crate::error::{Error, SetupError};

mod batches;
mod embed;
mod wire;

use super::http::{
    DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, Transport, default_response_limit, header,
    is_loopback, read_capped,
};
pub use batches::{OpenAiBatches, read_batch_file};
pub use embed::{DEFAULT_EMBEDDING_MODEL, OpenAiEmbedder};
pub(crate) use wire::{classify, parse_response, request_body};

/// The default base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Which field carries the output limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MaxTokensField {
    /// `max_tokens`, which every compatible server understands. The default.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`, which `OpenAI`'s reasoning models require.
    MaxCompletionTokens,
}

/// An API key, redacted in `Debug`.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Builds an [`OpenAiBackend`].
#[derive(Debug, Clone)]
pub struct OpenAiBuilder {
    base_url: String,
    api_key: Option<ApiKey>,
    model: Option<String>,
    organization: Option<String>,
    project: Option<String>,
    headers: Vec<(String, String)>,
    request_timeout: Option<Duration>,
    pub(crate) download_timeout: Option<Duration>,
    connect_timeout: Duration,
    max_tokens_field: MaxTokensField,
    max_response_bytes: Option<usize>,
}

impl Default for OpenAiBuilder {
    fn default() -> Self {
        Self {
            base_url: OPENAI_BASE_URL.to_owned(),
            api_key: None,
            model: None,
            organization: None,
            project: None,
            headers: Vec::new(),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            download_timeout: Some(DEFAULT_DOWNLOAD_TIMEOUT),
            connect_timeout: Duration::from_secs(10),
            max_tokens_field: MaxTokensField::MaxTokens,
            max_response_bytes: None,
        }
    }
}

impl OpenAiBuilder {
    /// The API's base URL, up to and including `/v1`. Default `https://api.openai.com/v1`.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
    /// The API key, sent as `Authorization: Bearer`.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey(key.into()));
        self
    }
    /// A model that replaces every request's `model` (e.g. a local server's model name).
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// The `OpenAI-Organization` header.
    #[must_use]
    pub fn organization(mut self, organization: impl Into<String>) -> Self {
        self.organization = Some(organization.into());
        self
    }
    /// The `OpenAI-Project` header.
    #[must_use]
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }
    /// An extra header on every request (e.g. Azure's `api-key`).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// The timeout of a whole HTTP call (chat, embeddings, a Batch API call), after which it
    /// fails with [`BackendError::Timeout`], which is retried. Default 600 s, as `OpenAI`'s
    /// SDKs; the runner also bounds each call with
    /// [`RunConfig::request_timeout`](crate::RunConfig).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }
    /// The timeout of a whole download of a Batch API result file. Default 30 minutes.
    #[must_use]
    pub fn download_timeout(mut self, timeout: Duration) -> Self {
        self.download_timeout = Some(timeout);
        self
    }

    /// No request or download timeout: only the connection's. For tests on Tokio's paused
    /// clock, which moves on while a request waits for the network (so any timeout would
    /// fire at once); outside them, a call to a server that never answers then never ends.
    #[must_use]
    pub fn without_timeouts(mut self) -> Self {
        self.request_timeout = None;
        self.download_timeout = None;
        self
    }
    /// The connection timeout. Default 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// The most bytes of an answer's body read; a larger answer fails the request with
    /// [`BackendError::ResponseTooLarge`] (the runner then splits it). Default:
    /// 8 bytes per `max_tokens` of the request (a token is about 4 characters, escaped JSON
    /// can double them) plus 64 KiB for the envelope.
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = Some(bytes);
        self
    }

    /// Which field carries `max_tokens`.
    #[must_use]
    pub fn max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }

    /// Builds the backend.
    ///
    /// # Errors
    /// [`Error::Backend`] for a base URL that does not parse, a missing API key (neither a key
    /// nor an `api-key` header, except for a server on loopback: local servers need none), or a
    /// header that is not valid HTTP.
    pub fn build(self) -> Result<OpenAiBackend, Error> {
        let client = self.http_client()?;
        let endpoint = format!("{}/chat/completions", self.base_url.trim_end_matches('/'));
        Ok(OpenAiBackend {
            client,
            endpoint,
            config: self,
        })
    }

    /// The transport every request of this configuration goes through: auth and extra
    /// headers (on the base URL's origin only), timeouts. Checked as [`OpenAiBuilder::build`]
    /// says.
    pub(crate) fn http_client(&self) -> Result<Transport, Error> {
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| SetupError::BaseUrl {
            url: self.base_url.clone(),
            source: Box::new(e),
        })?;
        let keyed_header = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("api-key"));
        if self.api_key.is_none() && !keyed_header && !is_loopback(&url) {
            return Err(SetupError::NoApiKey {
                base_url: self.base_url.clone(),
            }
            .into());
        }
        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: &str, secret: bool| -> Result<(), SetupError> {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| SetupError::HeaderName {
                    name: name.to_owned(),
                })?;
            let mut value = HeaderValue::from_str(value).map_err(|_| SetupError::HeaderValue {
                name: name.to_string(),
            })?;
            value.set_sensitive(secret);
            headers.insert(name, value);
            Ok(())
        };
        if let Some(ApiKey(key)) = &self.api_key {
            add("authorization", &format!("Bearer {key}"), true)?;
        }
        if let Some(org) = &self.organization {
            add("openai-organization", org, false)?;
        }
        if let Some(project) = &self.project {
            add("openai-project", project, false)?;
        }
        for (name, value) in &self.headers {
            let secret =
                name.eq_ignore_ascii_case("api-key") || name.eq_ignore_ascii_case("authorization");
            add(name, value, secret)?;
        }
        Ok(
            Transport::new(url, headers, self.connect_timeout, self.request_timeout)
                .map_err(|e| SetupError::HttpClient(Box::new(e)))?,
        )
    }

    /// The timeout a timed-out call reports.
    pub(crate) fn reported_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(self.connect_timeout)
    }

    /// The timeout a timed-out download reports.
    pub(crate) fn reported_download_timeout(&self) -> Duration {
        self.download_timeout.unwrap_or(self.connect_timeout)
    }

    /// The base URL, without a trailing `/`.
    pub(crate) fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// The model that replaces every request's, if set.
    pub(crate) fn model_override(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The field that carries `max_tokens`.
    pub(crate) fn tokens_field(&self) -> MaxTokensField {
        self.max_tokens_field
    }

    /// A builder from `OPENAI_API_KEY`, `OPENAI_BASE_URL` and `OPENAI_MODEL`; with
    /// `OPENAI_API_KEY_HEADER=api-key` the key goes in an `api-key` header (Azure `OpenAI`).
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let mut builder = Self::default();
        if let Some(url) = var("OPENAI_BASE_URL") {
            builder = builder.base_url(url);
        }
        if let Some(key) = var("OPENAI_API_KEY") {
            // Azure OpenAI takes its key in an `api-key` header rather than as a bearer token.
            builder = match var("OPENAI_API_KEY_HEADER") {
                Some(header) if header.eq_ignore_ascii_case("api-key") => {
                    builder.header("api-key", key)
                }
                _ => builder.api_key(key),
            };
        }
        if let Some(model) = var("OPENAI_MODEL") {
            builder = builder.model(model);
        }
        builder
    }
}

/// Chat completions over HTTP. See the module docs.
///
/// ```no_run
/// # async fn demo() -> Result<(), dynbatch::Error> {
/// use dynbatch::backend::openai::OpenAiBackend;
/// // OPENAI_API_KEY, and optionally OPENAI_BASE_URL and OPENAI_MODEL
/// let backend = OpenAiBackend::from_env()?;
/// // or a local server, no key needed on loopback:
/// let local = OpenAiBackend::builder().base_url("http://127.0.0.1:11434/v1").model("llama3.2").build()?;
/// # Ok(()) }
/// ```
pub struct OpenAiBackend {
    client: Transport,
    endpoint: String,
    config: OpenAiBuilder,
}

impl fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("endpoint", &self.endpoint)
            .field(
                "api_key",
                &self.config.api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("model", &self.config.model)
            .field("max_tokens_field", &self.config.max_tokens_field)
            .finish_non_exhaustive()
    }
}

impl OpenAiBackend {
    /// A builder with the defaults.
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder::default()
    }

    /// From `OPENAI_API_KEY`, `OPENAI_BASE_URL` and `OPENAI_MODEL`; with
    /// `OPENAI_API_KEY_HEADER=api-key` the key goes in an `api-key` header (Azure `OpenAI`).
    ///
    /// # Errors
    /// As [`OpenAiBuilder::build`]: no key for a server that is not on loopback, a bad URL.
    pub fn from_env() -> Result<Self, Error> {
        OpenAiBuilder::from_env().build()
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The JSON body sent for `request`.
    pub fn body(&self, request: &ChatRequest) -> serde_json::Value {
        request_body(
            request,
            self.config.model.as_deref(),
            self.config.max_tokens_field,
        )
    }
}

#[async_trait]
impl LlmBackend for OpenAiBackend {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let call = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body(request).to_string());
        let response = self.client.send(call, self.timeout()).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = header(&headers, "x-request-id");
        let limit = self
            .config
            .max_response_bytes
            .unwrap_or_else(|| default_response_limit(request.max_tokens));
        let text = read_capped(response, limit, self.timeout()).await?;
        parse_response(status.as_u16(), &headers, &text, request_id, &request.model)
    }
}

impl OpenAiBackend {
    /// The timeout a timed-out call is reported with.
    fn timeout(&self) -> Duration {
        self.config.reported_timeout()
    }
}

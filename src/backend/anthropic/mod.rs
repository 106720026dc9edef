//! [`AnthropicBackend`] (feature `anthropic`): Claude through Anthropic's Messages API
//! (`POST {base}/v1/messages`). The system prompt goes in the top-level `system`, the user
//! prompt as one user message; a schema-constrained request sends the batch's schema as a tool
//! the model must call, and the tool's input is the answer. It shares its transport with
//! [`OpenAiBackend`](super::openai::OpenAiBackend): one error mapping, one size-capped body
//! reader; the API key never appears in `Debug`, logs, errors or reports.
//!
//! [`AnthropicBatches`] is its Message Batches API for [`batch`](crate::batch), at half the
//! price.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::http::{
    DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, Transport, default_response_limit, header,
    is_loopback, read_capped,
};
use super::{BackendError, ChatRequest, ChatResponse, LlmBackend};
use crate::error::{Error, SetupError};

mod batches;
mod wire;

pub use batches::{AnthropicBatches, read_batch_results};

/// A response of any status read as the backend reads it (for the fuzz targets).
#[cfg(all(fuzzing, feature = "testing"))]
pub(crate) fn fuzz_parse(
    status: u16,
    headers: &HeaderMap,
    body: &str,
) -> Result<ChatResponse, BackendError> {
    parse_response(status, headers, body, Some("req_fuzz".into()), "claude")
}
use wire::{parse_response, request_body};

/// The default base URL.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The API version sent by default (`anthropic-version`).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An API key, redacted in `Debug`.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Builds an [`AnthropicBackend`].
#[derive(Debug, Clone)]
pub struct AnthropicBuilder {
    base_url: String,
    api_key: Option<ApiKey>,
    model: Option<String>,
    version: String,
    betas: Vec<String>,
    request_timeout: Option<Duration>,
    pub(crate) download_timeout: Option<Duration>,
    connect_timeout: Duration,
    max_response_bytes: Option<usize>,
}

impl Default for AnthropicBuilder {
    fn default() -> Self {
        Self {
            base_url: ANTHROPIC_BASE_URL.to_owned(),
            api_key: None,
            model: None,
            version: ANTHROPIC_VERSION.to_owned(),
            betas: Vec::new(),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            download_timeout: Some(DEFAULT_DOWNLOAD_TIMEOUT),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: None,
        }
    }
}

impl AnthropicBuilder {
    /// The API's base URL, without `/v1`. Default `https://api.anthropic.com`.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The API key, sent as `x-api-key`.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey(key.into()));
        self
    }

    /// Sends every request to this model instead of the one it names.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The `anthropic-version` pinned. Default `2023-06-01`; from `2026-10-21` on,
    /// `temperature` is not sent (those versions reject it).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Adds a beta feature to the `anthropic-beta` header.
    #[must_use]
    pub fn beta(mut self, feature: impl Into<String>) -> Self {
        self.betas.push(feature.into());
        self
    }

    /// The timeout of a whole call (a message, a Message Batches call), after which it fails
    /// with [`BackendError::Timeout`], which is retried. Default 600 s, as Anthropic's SDKs;
    /// the runner also bounds each call with [`RunConfig::request_timeout`](crate::RunConfig).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// The timeout of a whole download of a batch's results. Default 30 minutes.
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

    /// The timeout for connecting. Default 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reads no more than `bytes` of an answer. Default: 8 bytes per `max_tokens` plus 64 KiB.
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = Some(bytes);
        self
    }

    /// Reads `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` and `ANTHROPIC_MODEL`.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut builder = Self::default();
        if let Some(key) = var("ANTHROPIC_API_KEY") {
            builder = builder.api_key(key);
        }
        if let Some(url) = var("ANTHROPIC_BASE_URL") {
            builder = builder.base_url(url);
        }
        if let Some(model) = var("ANTHROPIC_MODEL") {
            builder = builder.model(model);
        }
        builder
    }

    /// The backend.
    ///
    /// # Errors
    /// [`SetupError`] for a base URL that does not parse, no API key (except for a server on
    /// loopback), a version or beta that is not a valid header value, or an HTTP client that
    /// cannot be built.
    pub fn build(self) -> Result<AnthropicBackend, Error> {
        Ok(AnthropicBackend {
            client: self.http_client()?,
            endpoint: format!("{}/v1/messages", self.base()),
            config: self,
        })
    }

    /// The transport every request of this configuration goes through: the key, version and
    /// beta headers (on the base URL's origin only), the timeouts. Checked as
    /// [`AnthropicBuilder::build`] says.
    pub(crate) fn http_client(&self) -> Result<Transport, Error> {
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| SetupError::BaseUrl {
            url: self.base_url.clone(),
            source: Box::new(e),
        })?;
        if self.api_key.is_none() && !is_loopback(&url) {
            return Err(SetupError::NoApiKey {
                base_url: self.base_url.clone(),
            }
            .into());
        }
        let mut headers = HeaderMap::new();
        let mut add = |name: &'static str, value: &str, secret: bool| -> Result<(), SetupError> {
            let mut value = HeaderValue::from_str(value).map_err(|_| SetupError::HeaderValue {
                name: name.to_owned(),
            })?;
            value.set_sensitive(secret);
            headers.insert(HeaderName::from_static(name), value);
            Ok(())
        };
        if let Some(ApiKey(key)) = &self.api_key {
            add("x-api-key", key, true)?;
        }
        add("anthropic-version", &self.version, false)?;
        if !self.betas.is_empty() {
            add("anthropic-beta", &self.betas.join(","), false)?;
        }
        Ok(
            Transport::new(url, headers, self.connect_timeout, self.request_timeout)
                .map_err(|e| SetupError::HttpClient(Box::new(e)))?,
        )
    }

    /// The base URL without a trailing `/` or `/v1`.
    pub(crate) fn base(&self) -> &str {
        let base = self.base_url.trim_end_matches('/');
        base.strip_suffix("/v1").unwrap_or(base)
    }

    /// The timeout a timed-out call is reported with.
    pub(crate) fn timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(self.connect_timeout)
    }

    /// The timeout a timed-out download reports.
    pub(crate) fn download_timeout_reported(&self) -> Duration {
        self.download_timeout.unwrap_or(self.connect_timeout)
    }
}

/// Claude through the Messages API. See the module docs.
///
/// ```no_run
/// # async fn demo() -> Result<(), dynbatch::Error> {
/// use dynbatch::backend::anthropic::AnthropicBackend;
/// // ANTHROPIC_API_KEY, and optionally ANTHROPIC_BASE_URL and ANTHROPIC_MODEL
/// let backend = AnthropicBackend::from_env()?;
/// # let _ = backend; Ok(()) }
/// ```
pub struct AnthropicBackend {
    client: Transport,
    endpoint: String,
    config: AnthropicBuilder,
}

impl fmt::Debug for AnthropicBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicBackend")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AnthropicBackend {
    /// A builder with the defaults.
    pub fn builder() -> AnthropicBuilder {
        AnthropicBuilder::default()
    }

    /// [`AnthropicBuilder::from_env`], built.
    ///
    /// # Errors
    /// As [`AnthropicBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        AnthropicBuilder::from_env().build()
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The JSON body sent for `request`.
    pub fn body(&self, request: &ChatRequest) -> serde_json::Value {
        request_body(request, self.config.model.as_deref(), &self.config.version)
    }

    fn timeout(&self) -> Duration {
        self.config.timeout()
    }
}

#[async_trait]
impl LlmBackend for AnthropicBackend {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let call = self
            .client
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body(request).to_string());
        let response = self.client.send(call, self.timeout()).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = header(&headers, "request-id");
        let limit = self
            .config
            .max_response_bytes
            .unwrap_or_else(|| default_response_limit(request.max_tokens));
        let text = read_capped(response, limit, self.timeout()).await?;
        parse_response(status.as_u16(), &headers, &text, request_id, &request.model)
    }
}

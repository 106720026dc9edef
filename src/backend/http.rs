//! What the HTTP backends share: the [`Transport`] that keeps credentials on their origin,
//! reading a header, the server's `retry-after`, a body read no further than a cap, and one
//! mapping of transport errors.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, Url};

use super::BackendError;

/// Every call's timeout unless the builder sets another: `OpenAI`'s and Anthropic's SDKs' 10
/// minutes (a long answer takes minutes on a slow server).
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// A batch result file's download timeout unless the builder sets another: 30 minutes (files
/// reach hundreds of megabytes).
pub(crate) const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(1_800);

/// `request` with `timeout`, when there is one.
pub(crate) fn timed(
    request: reqwest::RequestBuilder,
    timeout: Option<Duration>,
) -> reqwest::RequestBuilder {
    match timeout {
        Some(timeout) => request.timeout(timeout),
        None => request,
    }
}

/// The most redirects one request follows, on its origin and off it together.
const MAX_REDIRECTS: usize = 10;

/// The HTTP client of one configuration, and the one place its credentials are attached.
///
/// Credentials (and every other configured header: a custom header may be a key too) belong to
/// the configured origin (scheme, host, port). They are added per request, only when the URL is
/// on that origin; the client has no default headers. Redirects on the origin are followed by
/// reqwest as usual. One to another origin is not followed by reqwest (it would carry custom
/// headers such as `x-api-key` or `api-key` along): [`Transport::send`] follows a `GET` there
/// itself, with no configured header (a pre-signed download URL needs none), and refuses any
/// other method, whose body (a prompt) must not leave the origin either.
#[derive(Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    base: Url,
    headers: HeaderMap,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("origin", &self.base.origin().ascii_serialization())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport for `base`, whose requests on its origin carry `headers`; every request
    /// ends within `request_timeout`, when there is one, unless it sets a timeout of its own.
    pub(crate) fn new(
        base: Url,
        headers: HeaderMap,
        connect_timeout: Duration,
        request_timeout: Option<Duration>,
    ) -> Result<Self, reqwest::Error> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .last()
                .is_some_and(|from| from.origin() == attempt.url().origin());
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if same_origin {
                attempt.follow()
            } else {
                // `send` decides: the response reaches it as the 3xx it is.
                attempt.stop()
            }
        });
        let mut client = reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(connect_timeout);
        if let Some(timeout) = request_timeout {
            client = client.timeout(timeout);
        }
        Ok(Self {
            client: client.build()?,
            base,
            headers,
        })
    }

    /// Whether `url` is on the configured origin.
    fn is_home(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// A request to `url`, with the configured headers only when it is on the origin. A URL
    /// that does not parse goes without them too (reqwest reports it when it is sent).
    pub(crate) fn request(&self, method: Method, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        let url = url.as_ref();
        match Url::parse(url) {
            Ok(url) if self.is_home(&url) => self
                .client
                .request(method, url)
                .headers(self.headers.clone()),
            Ok(url) => self.client.request(method, url),
            Err(_) => self.client.request(method, url),
        }
    }

    /// A `GET` of `url` (see [`Transport::request`]).
    pub(crate) fn get(&self, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` to `url` (see [`Transport::request`]).
    pub(crate) fn post(&self, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Sends `request` (built by this transport), following a redirect to another origin as
    /// the type's docs say; `timeout` is what a timed-out call reports.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, BackendError> {
        let request = request.build().map_err(|e| transport_error(e, timeout))?;
        let method = request.method().clone();
        // A request's own timeout (a download's) holds for the hops it is led through.
        let own_timeout = request.timeout().copied();
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| transport_error(e, timeout))?;
        for _ in 0..MAX_REDIRECTS {
            let Some(next) = cross_origin_redirect(&response) else {
                return Ok(response);
            };
            if method != Method::GET && method != Method::HEAD {
                return Err(BackendError::Other {
                    retryable: false,
                    source: format!(
                        "the server at {} redirected a {method} to another origin ({}); not \
                         followed: credentials and request bodies go only to the configured \
                         origin ({})",
                        response.url().origin().ascii_serialization(),
                        next.origin().ascii_serialization(),
                        self.base.origin().ascii_serialization(),
                    )
                    .into(),
                });
            }
            tracing::debug!(
                to = %next.origin().ascii_serialization(),
                "following a redirect to another origin without credentials"
            );
            let mut hop = self.request(method.clone(), next.as_str());
            if let Some(own) = own_timeout {
                hop = hop.timeout(own);
            }
            let request = hop.build().map_err(|e| transport_error(e, timeout))?;
            response = self
                .client
                .execute(request)
                .await
                .map_err(|e| transport_error(e, timeout))?;
        }
        Err(BackendError::Other {
            retryable: false,
            source: format!(
                "more than {MAX_REDIRECTS} redirects from {}",
                response.url()
            )
            .into(),
        })
    }
}

/// Where a redirect that the client's policy stopped points, when that is another origin than
/// the response's.
fn cross_origin_redirect(response: &reqwest::Response) -> Option<Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let next = response.url().join(location).ok()?;
    (next.origin() != response.url().origin()).then_some(next)
}

pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

pub(crate) fn id_note(request_id: Option<&str>) -> String {
    request_id
        .map(|id| format!(" (request {id})"))
        .unwrap_or_default()
}

pub(crate) fn snippet(text: &str) -> String {
    let cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// The server's delay: `retry-after-ms`, else `retry-after` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = header(headers, "retry-after")?;
    if let Ok(secs) = value.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The body, read no further than `limit` bytes: a server that ignores `max_tokens` (or a
/// model that loops) cannot make one answer take the memory of the process. `timeout` is what
/// a timed-out read reports.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<String, BackendError> {
    let too_large = || BackendError::ResponseTooLarge { limit };
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(e, timeout))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A transport failure: a timeout (reported as `timeout`), else a connection error (refused
/// or reset, DNS, TLS, a body cut short), all worth a retry. The error text names the URL,
/// never the headers.
pub(crate) fn transport_error(e: reqwest::Error, timeout: Duration) -> BackendError {
    if e.is_timeout() {
        BackendError::Timeout(timeout)
    } else {
        BackendError::Connection {
            source: Box::new(e),
        }
    }
}

/// Whether `url` points at this machine (local servers need no API key).
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The default cap on an answer's body: 8 bytes per `max_tokens` (a token is about 4
/// characters, escaped JSON can double them) plus 64 KiB for the envelope.
pub(crate) fn default_response_limit(max_tokens: u32) -> usize {
    usize::try_from(max_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(8)
        .saturating_add(64 * 1024)
}

/// A successful response's body read as `T` (`what` it should be, for the error): a body that
/// is not one is a permanent error that names the status, the request and the body's start.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    status: u16,
    text: &str,
    what: &str,
    request_id: Option<&str>,
) -> Result<T, BackendError> {
    serde_json::from_str(text).map_err(|e| {
        BackendError::InvalidResponse(format!(
            "the server's {status} response is not {what} ({e}){}: {}",
            id_note(request_id),
            snippet(text)
        ))
    })
}

/// The most bytes of a batch API's JSON answer (a batch, a page of batches, an error) read.
const MAX_CONTROL_BODY: usize = 16 * 1024 * 1024;

/// How a batch API's client sends a call: the timeout its errors report, the header of the
/// request id (`x-request-id`, `request-id`), and how it classifies a failed status.
#[derive(Clone, Copy)]
pub(crate) struct Calls<'a> {
    pub(crate) transport: &'a Transport,
    pub(crate) timeout: Duration,
    pub(crate) id_header: &'static str,
    pub(crate) classify: fn(u16, &HeaderMap, &str, Option<&str>) -> BackendError,
}

impl Calls<'_> {
    /// Sends `request`: the response when its status is 2xx, else the classified error (its
    /// body read up to a cap).
    async fn response(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BackendError> {
        let response = self.transport.send(request, self.timeout).await?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let headers: HeaderMap = response.headers().clone();
        let body = read_capped(response, MAX_CONTROL_BODY, self.timeout)
            .await
            .unwrap_or_else(|e| e.to_string());
        let id = header(&headers, self.id_header);
        Err((self.classify)(status, &headers, &body, id.as_deref()))
    }

    /// Sends `request` and reads its body (up to 16 MiB) as `T`, the JSON answer of the batch
    /// API; a 2xx body that is not one (`what` it should be) is an invalid response.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, BackendError> {
        let response = self.response(request).await?;
        let body = read_capped(response, MAX_CONTROL_BODY, self.timeout).await?;
        serde_json::from_str(&body).map_err(|e| {
            BackendError::InvalidResponse(format!(
                "the server's answer is not {what} ({e}): {}",
                snippet(&body)
            ))
        })
    }

    /// Sends `request` and reads its body, a JSONL result file, line by line as it arrives
    /// (never held whole), each line read with `line`; `name` says which file in warnings.
    pub(crate) async fn read_lines<T>(
        &self,
        request: reqwest::RequestBuilder,
        name: &str,
        line: impl Fn(&str) -> Result<T, String>,
    ) -> Result<super::lines::Lines<T>, BackendError> {
        let mut response = self.response(request).await?;
        let mut reader = super::lines::LineReader::new(name, super::lines::MAX_LINE, line);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(e, self.timeout))?
        {
            reader.feed(&chunk);
        }
        Ok(reader.finish())
    }
}

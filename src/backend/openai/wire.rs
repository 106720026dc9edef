//! The chat-completions wire format: the body sent, the body read back, and how a failed
//! response is classified (status, `x-should-retry`, `retry-after`, rate limits, messages).

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::MaxTokensField;
use crate::backend::http::{header, id_note, parse_body, retry_after, snippet};
use crate::backend::{
    BackendError, ChatRequest, ChatResponse, FinishReason, RateLimitInfo, ResponseFormat,
    TokenUsage, parse_duration,
};

/// The chat-completions JSON body for `request`: its model (or `model`, when given), messages,
/// temperature, response format, and `max_tokens` in the chosen field.
pub(crate) fn request_body(
    request: &ChatRequest,
    model: Option<&str>,
    max_tokens_field: MaxTokensField,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": model.unwrap_or(&request.model),
        "messages": request.messages,
        "temperature": request.temperature,
    });
    let format = match &request.response_format {
        ResponseFormat::JsonObject => Some(serde_json::json!({"type": "json_object"})),
        ResponseFormat::JsonObjectWithSchema { schema } => {
            Some(serde_json::json!({"type": "json_object", "schema": schema}))
        }
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => Some(serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": strict},
        })),
        ResponseFormat::Text => None,
    };
    if let Some(format) = format {
        body["response_format"] = format;
    }
    let field = match max_tokens_field {
        MaxTokensField::MaxTokens => "max_tokens",
        MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
    };
    body[field] = request.max_tokens.into();
    body
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

/// The account's rate limits from a response's `x-ratelimit-*` headers.
pub(super) fn rate_limits(headers: &HeaderMap) -> Option<RateLimitInfo> {
    RateLimitInfo::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}

/// Reads a chat-completions HTTP response: a 2xx body into a [`ChatResponse`] (with the rate
/// limits its headers report), anything else into a [`BackendError`] (see [`classify`]).
///
/// # Errors
/// The classified error, or a non-retryable one for a 2xx body that is not a completion.
pub(crate) fn parse_response(
    status: u16,
    headers: &HeaderMap,
    text: &str,
    request_id: Option<String>,
    requested_model: &str,
) -> Result<ChatResponse, BackendError> {
    if !(200..300).contains(&status) {
        return Err(classify(status, headers, text, request_id.as_deref()));
    }
    let wire: WireResponse = parse_body(status, text, "a chat completion", request_id.as_deref())?;
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(BackendError::Other {
            retryable: true,
            source: format!(
                "the response has no choices{}",
                id_note(request_id.as_deref())
            )
            .into(),
        });
    };
    Ok(ChatResponse {
        content: choice.message.content.unwrap_or_default(),
        finish_reason: choice
            .finish_reason
            .map_or(FinishReason::Stop, FinishReason::from),
        usage: wire.usage,
        model: wire.model.unwrap_or_else(|| requested_model.to_owned()),
        refusal: choice.message.refusal.filter(|r| !r.is_empty()),
        request_id,
        rate_limits: rate_limits(headers),
    })
}

/// What `OpenAI`'s 429 message says when the headers do not: "... on requests per min (RPM):
/// Limit 120, Used 120, Requested 1. Please try again in 500ms. ..." gives the per-minute
/// limit and the wait. Daily limits (RPD, TPD) are not per-minute limits and are left out.
fn limits_from_message(message: &str) -> (Option<RateLimitInfo>, Option<Duration>) {
    let number_after = |marker: &str| {
        let rest = &message[message.find(marker)? + marker.len()..];
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse::<u64>().ok()
    };
    let mut info = RateLimitInfo::default();
    info.requests.limit = number_after("(RPM): Limit ");
    info.tokens.limit = number_after("(TPM): Limit ");
    let wait = message.find("try again in ").and_then(|at| {
        let word = message[at + "try again in ".len()..]
            .split_whitespace()
            .next()?;
        parse_duration(word.trim_end_matches(['.', ',']))
    });
    ((!info.is_empty()).then_some(info), wait)
}

/// Whether an error message is about the request's output format.
fn names_the_format(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "response_format",
        "response format",
        "json_schema",
        "json schema",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Maps a non-2xx response as the official SDKs do: `x-should-retry` first; then 408, 409,
/// 429 and 5xx retryable (429 with `insufficient_quota` permanent); other 4xx permanent, 404 as
/// [`BackendError::NotFound`]. A 429 carries the rate limits of its headers, or else those its
/// message names (and the wait it names, when there is no `retry-after`).
pub(crate) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    request_id: Option<&str>,
) -> BackendError {
    #[derive(Deserialize)]
    struct Wrapper {
        error: ApiError,
    }
    #[derive(Deserialize)]
    struct ApiError {
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    }
    let parsed = serde_json::from_str::<Wrapper>(body).ok().map(|w| w.error);
    // Azure OpenAI and some gateways refuse a prompt that trips their content filter with a
    // 400 whose code says so.
    let filtered = parsed.as_ref().is_some_and(|e| {
        e.code.as_ref().and_then(serde_json::Value::as_str) == Some("content_filter")
            || e.kind.as_deref() == Some("content_filter")
    });
    let too_large = status == 413
        || parsed.as_ref().is_some_and(|e| {
            e.code.as_ref().and_then(serde_json::Value::as_str) == Some("context_length_exceeded")
        });
    let quota = parsed.as_ref().is_some_and(|e| {
        e.kind.as_deref() == Some("insufficient_quota")
            || e.code.as_ref().and_then(serde_json::Value::as_str) == Some("insufficient_quota")
    });
    let message = format!(
        "HTTP {status}{}: {}",
        id_note(request_id),
        parsed
            .and_then(|e| e.message)
            .unwrap_or_else(|| snippet(body))
    );
    let after = retry_after(headers);
    let (message_limits, message_wait) = if status == 429 {
        limits_from_message(&message)
    } else {
        (None, None)
    };
    // A server that cannot produce the output format asked for says so with a 400 (OpenAI,
    // vLLM), a 422 (validation) or even a 500 (llama-cpp-python): all name the field.
    if matches!(status, 400 | 422 | 500 | 501) && names_the_format(&message) {
        return BackendError::UnsupportedFormat(message);
    }
    let should_retry = header(headers, "x-should-retry").map(|v| v.trim() == "true");
    let retryable = should_retry.unwrap_or(matches!(status, 408 | 409 | 429 | 500..=599)) && !quota;
    match (retryable, status) {
        (true, 429) => BackendError::RateLimited {
            retry_after: after.or(message_wait),
            limits: rate_limits(headers).or(message_limits).map(Box::new),
            message,
        },
        (true, _) => BackendError::Overloaded {
            status: Some(status),
            retry_after: after,
            message,
        },
        (false, 429) if quota => BackendError::QuotaExhausted(message),
        (false, 400..=499) if filtered => BackendError::ContentFilter(message),
        (false, 400..=499) if too_large => BackendError::RequestTooLarge(message),
        (false, 401 | 403) => BackendError::Authentication(message),
        (false, 404) => BackendError::NotFound(message),
        (false, 400..=499) => BackendError::BadRequest(message),
        (false, _) => BackendError::Other {
            retryable: false,
            source: message.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn classification_follows_the_sdks() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            m
        };
        let none = h(&[]);
        assert!(classify(408, &none, "", None).is_retryable());
        assert!(classify(409, &none, "", None).is_retryable());
        assert!(classify(503, &none, "", None).is_retryable());
        assert!(!classify(400, &none, "{\"error\": {\"message\": \"bad\"}}", None).is_retryable());
        assert!(matches!(
            classify(404, &none, "", None),
            BackendError::NotFound(_)
        ));
        assert!(classify(404, &none, "", None).is_account_wide());
        // Azure's prompt filter: a 400 whose code says content_filter.
        let filtered =
            r#"{"error": {"code": "content_filter", "message": "The response was filtered"}}"#;
        assert!(matches!(
            classify(400, &none, filtered, None),
            BackendError::ContentFilter(_)
        ));
        // x-should-retry wins both ways.
        assert!(classify(400, &h(&[("x-should-retry", "true")]), "", None).is_retryable());
        assert!(!classify(503, &h(&[("x-should-retry", "false")]), "", None).is_retryable());
        // Delays: milliseconds first, then seconds, then an HTTP date.
        let e = classify(
            429,
            &h(&[("retry-after-ms", "1500"), ("retry-after", "9")]),
            "",
            None,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        let e = classify(429, &h(&[("retry-after", "2.5")]), "", None);
        assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let after = classify(503, &h(&[("retry-after", &later)]), "", None)
            .retry_after()
            .unwrap();
        assert!(
            after > Duration::from_secs(25) && after <= Duration::from_secs(30),
            "{after:?}"
        );
    }
}

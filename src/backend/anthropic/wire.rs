//! The Messages API wire format: the body sent (system prompt on top, the user prompt as one
//! message, the batch's schema as a forced tool), the body read back (a `tool_use` block's
//! input, else the text blocks), and how a failed response is classified.

use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::backend::http::{header, id_note, parse_body, retry_after, snippet};
use crate::backend::{
    BackendError, ChatRequest, ChatResponse, FinishReason, RateLimitInfo, ResponseFormat, Role,
    TokenUsage,
};

/// The tool the answer is forced through when the request asks for a schema.
pub(super) const TOOL_NAME: &str = "record_patterns";

/// The first API version that rejects `temperature`.
const NO_TEMPERATURE_FROM: &str = "2026-10-21";

/// The Messages API body for `request`: its model (or `model`, when given), `max_tokens`, the
/// system prompt, the user prompt, `temperature` where `version` takes it, and, for a
/// schema-constrained request, the schema as a tool the model must call.
pub(super) fn request_body(
    request: &ChatRequest,
    model: Option<&str>,
    version: &str,
) -> serde_json::Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut body = serde_json::json!({
        "model": model.unwrap_or(&request.model),
        "max_tokens": request.max_tokens,
        "messages": [{"role": "user", "content": request.user_text()}],
    });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if version < NO_TEMPERATURE_FROM {
        body["temperature"] = request.temperature.into();
    }
    if let ResponseFormat::JsonSchema { schema, .. }
    | ResponseFormat::JsonObjectWithSchema { schema } = &request.response_format
    {
        body["tools"] = serde_json::json!([{
            "name": TOOL_NAME,
            "description": "Record the title patterns found for each cluster of the batch.",
            "input_schema": schema,
        }]);
        body["tool_choice"] = serde_json::json!({"type": "tool", "name": TOOL_NAME});
    }
    body
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        input: serde_json::Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[allow(clippy::struct_field_names)] // the wire's names
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Reads a Messages API response: a `tool_use` block's input (serialised) is the answer,
/// else the text blocks joined. `stop_reason` `max_tokens` is a cut-off answer, and so is
/// `model_context_window_exceeded` (what came is salvaged, the rest asked again, smaller);
/// `refusal` is a refusal; unknown values are kept as they are. Prompt tokens count cache
/// writes and reads too.
///
/// # Errors
/// The classified error, or a non-retryable one for a 2xx body that is not a message.
pub(super) fn parse_response(
    status: u16,
    headers: &HeaderMap,
    text: &str,
    request_id: Option<String>,
    requested_model: &str,
) -> Result<ChatResponse, BackendError> {
    if !(200..300).contains(&status) {
        return Err(classify(status, headers, text, request_id.as_deref()));
    }
    let wire: WireMessage = parse_body(status, text, "a message", request_id.as_deref())?;
    let tool = wire.content.iter().find_map(|b| match b {
        Block::ToolUse { input } => Some(input.to_string()),
        _ => None,
    });
    let content = tool.unwrap_or_else(|| {
        wire.content
            .iter()
            .filter_map(|b| match b {
                Block::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    });
    let stop = wire.stop_reason.unwrap_or_else(|| "end_turn".into());
    let (finish_reason, refusal) = match stop.as_str() {
        "end_turn" | "stop_sequence" | "tool_use" | "pause_turn" => (FinishReason::Stop, None),
        "max_tokens" | "model_context_window_exceeded" => (FinishReason::Length, None),
        "refusal" => (
            FinishReason::Stop,
            Some("the model declined to answer (stop_reason refusal)".to_owned()),
        ),
        _ => (FinishReason::Other(stop), None),
    };
    Ok(ChatResponse {
        content,
        finish_reason,
        usage: wire.usage.map(|u| TokenUsage {
            prompt_tokens: u.input_tokens
                + u.cache_creation_input_tokens.unwrap_or(0)
                + u.cache_read_input_tokens.unwrap_or(0),
            completion_tokens: u.output_tokens,
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
            cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
        }),
        model: wire.model.unwrap_or_else(|| requested_model.to_owned()),
        refusal,
        request_id,
        rate_limits: rate_limits(headers),
    })
}

/// The `anthropic-ratelimit-*` headers.
pub(super) fn rate_limits(headers: &HeaderMap) -> Option<RateLimitInfo> {
    RateLimitInfo::from_anthropic_headers(
        |name| headers.get(name).and_then(|v| v.to_str().ok()),
        std::time::SystemTime::now(),
    )
}

/// Maps a failed response by Anthropic's error types: `x-should-retry` first; then 408, 409,
/// 429 and 5xx (529 overloaded among them) retryable; 401 and 403 authentication, 402 billing
/// and a 429 for the spend limit exhausted quota (both stop the run), 404 not found; a 400
/// naming the tool or output format unsupported; other 4xx bad requests. The `request_id` of
/// the body (or the `request-id` header) is kept in the message.
pub(super) fn classify(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    request_id: Option<&str>,
) -> BackendError {
    #[derive(Deserialize)]
    struct Wrapper {
        error: ApiError,
        #[serde(default)]
        request_id: Option<String>,
    }
    #[derive(Deserialize)]
    struct ApiError {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let parsed = serde_json::from_str::<Wrapper>(body).ok();
    let id = parsed
        .as_ref()
        .and_then(|w| w.request_id.clone())
        .or_else(|| request_id.map(str::to_owned));
    let kind = parsed
        .as_ref()
        .and_then(|w| w.error.kind.clone())
        .unwrap_or_default();
    let message = format!(
        "HTTP {status}{}: {}{}",
        id_note(id.as_deref()),
        if kind.is_empty() {
            String::new()
        } else {
            format!("{kind}: ")
        },
        parsed
            .and_then(|w| w.error.message)
            .unwrap_or_else(|| snippet(body))
    );
    let after = retry_after(headers);
    // The workspace's spend limit: a 429 with no retry-after whose body says so (the message
    // names the spend or usage limit; some versions add `enforced_spend_limit_reached`).
    let spend_limit = status == 429 && after.is_none() && {
        let lower = body.to_ascii_lowercase();
        lower.contains("spend limit")
            || lower.contains("spend_limit")
            || lower.contains("usage limit")
    };
    if status == 402 || kind == "billing_error" || spend_limit {
        return BackendError::QuotaExhausted(message);
    }
    let lower = message.to_ascii_lowercase();
    if status == 400
        && ["tool_choice", "tools", "output_config", "output_format"]
            .iter()
            .any(|field| lower.contains(field))
    {
        return BackendError::UnsupportedFormat(message);
    }
    let should_retry = header(headers, "x-should-retry").map(|v| v.trim() == "true");
    let retryable = should_retry.unwrap_or(matches!(status, 408 | 409 | 429 | 500..=599));
    match (retryable, status) {
        (true, 429) => BackendError::RateLimited {
            retry_after: after,
            limits: rate_limits(headers).map(Box::new),
            message,
        },
        (true, _) => BackendError::Overloaded {
            status: Some(status),
            retry_after: after,
            message,
        },
        (false, 413) => BackendError::RequestTooLarge(message),
        (false, 400) if kind == "request_too_large" || lower.contains("prompt is too long") => {
            BackendError::RequestTooLarge(message)
        }
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

    use reqwest::header::HeaderValue;

    use super::*;
    use crate::backend::{ChatMessage, ErrorKind};

    fn request(format: ResponseFormat) -> ChatRequest {
        ChatRequest {
            model: "claude-haiku-4-5".into(),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "sys".into(),
                },
                ChatMessage {
                    role: Role::User,
                    content: "user".into(),
                },
            ],
            temperature: 0.3,
            max_tokens: 1000,
            response_format: format,
            batch: None,
        }
    }

    #[test]
    fn the_schema_goes_as_a_forced_tool_and_temperature_where_taken() {
        let schema = serde_json::json!({"type": "object", "required": ["c1"]});
        let strict = ResponseFormat::JsonSchema {
            name: "patterns".into(),
            schema: schema.clone(),
            strict: true,
        };
        let body = request_body(&request(strict), None, "2023-06-01");
        assert_eq!(body["system"], "sys");
        assert_eq!(body["messages"][0]["content"], "user");
        assert_eq!(body["temperature"], 0.3);
        assert_eq!(body["tools"][0]["input_schema"], schema);
        assert_eq!(body["tool_choice"]["name"], TOOL_NAME);
        let plain = request_body(&request(ResponseFormat::Text), Some("m"), "2026-10-21");
        assert_eq!(plain["model"], "m");
        assert!(plain.get("temperature").is_none() && plain.get("tools").is_none());
    }

    #[test]
    fn tool_input_text_usage_and_stop_reasons() {
        let none = HeaderMap::new();
        let tool = r#"{"content": [{"type": "text", "text": "thinking"},
            {"type": "tool_use", "id": "t", "name": "record_patterns", "input": {"c1": []}}],
            "stop_reason": "tool_use", "model": "claude-x",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3}}"#;
        let r = parse_response(200, &none, tool, None, "asked").unwrap();
        assert_eq!(r.content, r#"{"c1":[]}"#);
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(r.model, "claude-x");
        assert_eq!(
            r.usage,
            Some(TokenUsage {
                prompt_tokens: 13,
                completion_tokens: 5,
                cache_write_tokens: 0,
                cache_read_tokens: 3,
            })
        );
        for (stop, finish, refused) in [
            ("max_tokens", FinishReason::Length, false),
            ("model_context_window_exceeded", FinishReason::Length, false),
            ("refusal", FinishReason::Stop, true),
            (
                "a_new_reason",
                FinishReason::Other("a_new_reason".into()),
                false,
            ),
        ] {
            let text = format!(
                r#"{{"content": [{{"type": "text", "text": "a"}}, {{"type": "image"}}],
                    "stop_reason": "{stop}"}}"#
            );
            let r = parse_response(200, &none, &text, None, "asked").unwrap();
            assert_eq!(
                (r.finish_reason, r.refusal.is_some()),
                (finish, refused),
                "{stop}"
            );
            assert_eq!(r.content, "a");
        }
        assert!(parse_response(200, &none, "<html>", None, "asked").is_err());
    }

    #[test]
    fn every_error_class() {
        let err = |kind: &str| {
            format!(
                r#"{{"type": "error", "error": {{"type": "{kind}", "message": "m"}}, "request_id": "req_1"}}"#
            )
        };
        let none = HeaderMap::new();
        for (status, kind, expected) in [
            (400, "invalid_request_error", ErrorKind::BadRequest),
            (401, "authentication_error", ErrorKind::Authentication),
            (402, "billing_error", ErrorKind::QuotaExhausted),
            (403, "permission_error", ErrorKind::Authentication),
            (404, "not_found_error", ErrorKind::NotFound),
            (429, "rate_limit_error", ErrorKind::RateLimited),
            (500, "api_error", ErrorKind::Overloaded),
            (504, "timeout_error", ErrorKind::Overloaded),
            (529, "overloaded_error", ErrorKind::Overloaded),
        ] {
            let e = classify(status, &none, &err(kind), None);
            assert_eq!(e.kind(), expected, "{status} {kind}");
            assert!(e.to_string().contains("req_1"), "{e}");
        }
        let spend = r#"{"type": "error", "error": {"type": "rate_limit_error",
            "message": "You have reached your spend limit"}}"#;
        assert_eq!(
            classify(429, &none, spend, None).kind(),
            ErrorKind::QuotaExhausted
        );
        let coded = r#"{"type": "error", "error": {"type": "rate_limit_error",
            "message": "limit reached", "code": "enforced_spend_limit_reached"}}"#;
        assert_eq!(
            classify(429, &none, coded, None).kind(),
            ErrorKind::QuotaExhausted
        );
        // An ordinary 429 is a rate limit, and a 413 or a prompt too long is split.
        let busy = r#"{"type": "error", "error": {"type": "rate_limit_error",
            "message": "Number of request tokens has exceeded your per-minute rate limit"}}"#;
        assert_eq!(
            classify(429, &none, busy, None).kind(),
            ErrorKind::RateLimited
        );
        for (status, body) in [
            (
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"too big"}}"#,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            ),
        ] {
            assert_eq!(
                classify(status, &none, body, None).kind(),
                ErrorKind::RequestTooLarge
            );
        }
        let tool = r#"{"type": "error", "error": {"type": "invalid_request_error",
            "message": "tool_choice: not supported"}}"#;
        assert_eq!(
            classify(400, &none, tool, None).kind(),
            ErrorKind::UnsupportedFormat
        );
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        headers.insert(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("50"),
        );
        headers.insert(
            "anthropic-ratelimit-requests-remaining",
            HeaderValue::from_static("0"),
        );
        match classify(429, &headers, &err("rate_limit_error"), None) {
            BackendError::RateLimited {
                retry_after,
                limits,
                ..
            } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)));
                assert_eq!(limits.unwrap().requests.remaining, Some(0));
            }
            other => panic!("{other:?}"),
        }
    }
}

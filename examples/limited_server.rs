//! An OpenAI-compatible chat-completions server on loopback that enforces an account's rate
//! limit the way providers do, to try `discover` (or any client) against a limit that binds.
//!
//! ```text
//! cargo run --example limited_server -- [--port 8089] [--rpm 120] [--tpm N] [--latency-ms 300]
//!                                        [--no-headers] [--no-retry-after] [--script 500x6,503x3]
//!                                        [--looping N] [--anthropic [--itpm N] [--otpm N]]
//! OPENAI_BASE_URL=http://127.0.0.1:8089/v1 cargo run --features openai --example discover -- ...
//! ANTHROPIC_BASE_URL=http://127.0.0.1:8089 ANTHROPIC_API_KEY=local \
//!     cargo run --features anthropic --example discover -- --provider anthropic ...
//! ```
//!
//! With `--anthropic` it speaks Anthropic's Messages API instead (`POST /v1/messages`), with
//! its `anthropic-ratelimit-*` headers (resets as RFC 3339 times) and error bodies, and
//! `--itpm`/`--otpm` limit input tokens (prompt characters / 4) and output tokens (a request's
//! `max_tokens`, counted when it starts) apart, as Anthropic does.
//!
//! Answers come from the offline mock (word skeletons of the titles in the prompt). The limit
//! is a bucket of `--rpm` requests (and `--tpm` tokens: prompt characters / 4 plus
//! `max_tokens`) that refills continuously; a request that finds it dry gets a 429, with
//! `retry-after` and `x-ratelimit-*` headers unless told not to. `--script` plays scripted
//! answers first (`500`, `503`, `401`, `404`, `429`, each `xN` times). Every 5 s it prints what
//! it served, how many distinct requests got a 429 and were never answered (a client that gave
//! up), and how many it answered more than once (a client that paid twice). `--looping N`
//! answers every request with cluster 1 repeated N times, each pattern 1,000 characters (1,000
//! repeats is 1 MB, 40,000 is 42 MB), as a looping model or a server that ignores `max_tokens`
//! would. Loopback only;
//! stop it with Ctrl-C.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "../tests/support/message_batches.rs"]
mod message_batches;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockRateLimit, MockStep};
use dynbatch::backend::{
    BackendError, ChatMessage, ChatRequest, LlmBackend, RateLimitInfo, ResponseFormat,
};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Debug, Default)]
struct Stats {
    answered: u64,
    limited: u64,
    errors: u64,
    limited_prompts: HashSet<String>,
    answered_prompts: HashMap<String, u32>,
}

struct Server {
    mock: MockBackend,
    latency: Duration,
    stats: Arc<Mutex<Stats>>,
    /// `--looping N`: every answer is cluster 1 repeated N times, each pattern 1,000
    /// characters (a model that loops, a server that ignores `max_tokens`).
    looping: Option<Value>,
    /// `--anthropic`: the Messages API's shapes and headers.
    anthropic: bool,
}

/// The answer of a model stuck in a loop: cluster 1, `repeats` times.
fn looping_answer(repeats: usize) -> Value {
    let long = "x".repeat(1000);
    let entry = json!({"cluster": 1, "patterns": [{"pattern": long, "template": "I Tried [X]",
                       "examples": ["I Tried Espresso for 30 Days"], "rationale": long}]});
    let content = json!({"clusters": vec![entry; repeats]}).to_string();
    json!({"id": "chatcmpl-looping", "object": "chat.completion", "model": "gpt-4o-mini",
           "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content}}],
           "usage": {"prompt_tokens": 1000, "completion_tokens": 4000, "total_tokens": 5000}})
}

impl Respond for Server {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(answer) = &self.looping {
            return ResponseTemplate::new(200).set_body_json(answer.clone());
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error(400, "the body is not JSON", None);
        };
        if self.anthropic {
            return self.respond_anthropic(&body);
        }
        let messages: Vec<ChatMessage> =
            serde_json::from_value(body["messages"].clone()).unwrap_or_default();
        let chat = ChatRequest::new(
            body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned(),
            messages,
        )
        .with_temperature(body["temperature"].as_f64().unwrap_or(0.7))
        .with_max_tokens(
            body["max_tokens"]
                .as_u64()
                .or_else(|| body["max_completion_tokens"].as_u64())
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1000),
        )
        .with_response_format(ResponseFormat::JsonObject);
        // The mock has no latency of its own here: it answers at once.
        let result = futures::executor::block_on(self.mock.complete(&chat));
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let prompt = chat.user_text();
        let template = match result {
            Ok(response) => {
                stats.answered += 1;
                *stats.answered_prompts.entry(prompt).or_insert(0) += 1;
                let body = json!({
                    "id": "chatcmpl-limited", "object": "chat.completion", "model": response.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": response.content}}],
                    "usage": response.usage.map(|u| json!({
                        "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                        "total_tokens": u.prompt_tokens + u.completion_tokens})),
                });
                headers(
                    ResponseTemplate::new(200).set_body_json(body),
                    response.rate_limits,
                )
            }
            Err(BackendError::RateLimited {
                retry_after,
                message,
                limits,
            }) => {
                stats.limited += 1;
                stats.limited_prompts.insert(prompt);
                let mut t = error(429, &message, limits.as_deref().copied());
                if let Some(after) = retry_after {
                    t = t.insert_header("retry-after-ms", after.as_millis().to_string().as_str());
                    t = t.insert_header("retry-after", after.as_secs().max(1).to_string().as_str());
                }
                t
            }
            Err(e) => {
                stats.errors += 1;
                let (code, text) = match e {
                    BackendError::Authentication(m) => (401, m),
                    BackendError::NotFound(m) => (404, m),
                    BackendError::Overloaded {
                        status, message, ..
                    } => (status.unwrap_or(500), message),
                    other => (500, other.to_string()),
                };
                error(code, &text, None)
            }
        };
        template.set_delay(self.latency)
    }
}

impl Server {
    /// A Messages API request: the mock's answer as a message, or its refusal as Anthropic's.
    fn respond_anthropic(&self, body: &Value) -> ResponseTemplate {
        let chat = message_batches::chat_request(body);
        let result = futures::executor::block_on(self.mock.complete(&chat));
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let prompt = chat.user_text();
        let template = match result {
            Ok(response) => {
                stats.answered += 1;
                *stats.answered_prompts.entry(prompt).or_insert(0) += 1;
                let n = usize::try_from(stats.answered).unwrap_or(0);
                match message_batches::message_json(body, &response, n) {
                    Ok(json) => anthropic_headers(
                        ResponseTemplate::new(200).set_body_json(json),
                        response.rate_limits,
                    ),
                    Err(e) => anthropic_error(500, "api_error", &e, None),
                }
            }
            Err(BackendError::RateLimited {
                retry_after,
                message,
                limits,
            }) => {
                stats.limited += 1;
                stats.limited_prompts.insert(prompt);
                let mut t = anthropic_error(
                    429,
                    "rate_limit_error",
                    &message,
                    limits.as_deref().copied(),
                );
                if let Some(after) = retry_after {
                    // Anthropic's retry-after is whole seconds.
                    let secs = after.as_secs_f64().ceil().max(1.0);
                    t = t.insert_header("retry-after", format!("{secs:.0}").as_str());
                }
                t
            }
            Err(e) => {
                stats.errors += 1;
                let (code, kind, text) = match e {
                    BackendError::Authentication(m) => (401, "authentication_error", m),
                    BackendError::NotFound(m) => (404, "not_found_error", m),
                    BackendError::Overloaded {
                        status, message, ..
                    } => (status.unwrap_or(529), "overloaded_error", message),
                    other => (500, "api_error", other.to_string()),
                };
                anthropic_error(code, kind, &text, None)
            }
        };
        template.set_delay(self.latency)
    }
}

fn anthropic_error(
    status: u16,
    kind: &str,
    message: &str,
    limits: Option<RateLimitInfo>,
) -> ResponseTemplate {
    let body = json!({"type": "error", "error": {"type": kind, "message": message},
                      "request_id": "req_limited"});
    anthropic_headers(ResponseTemplate::new(status).set_body_json(body), limits)
}

/// `anthropic-ratelimit-*` headers, resets as RFC 3339 times.
fn anthropic_headers(mut t: ResponseTemplate, limits: Option<RateLimitInfo>) -> ResponseTemplate {
    let Some(limits) = limits else { return t };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    for (kind, status) in [
        ("requests", limits.requests),
        ("tokens", limits.tokens),
        ("input-tokens", limits.input_tokens),
        ("output-tokens", limits.output_tokens),
    ] {
        let mut add = |name: &str, value: String| {
            t = std::mem::replace(&mut t, ResponseTemplate::new(200)).insert_header(
                format!("anthropic-ratelimit-{kind}-{name}").as_str(),
                value.as_str(),
            );
        };
        if let Some(limit) = status.limit {
            add("limit", limit.to_string());
        }
        if let Some(remaining) = status.remaining {
            add("remaining", remaining.to_string());
        }
        if let Some(reset) = status.reset {
            add("reset", message_batches::rfc3339((now + reset).as_secs()));
        }
    }
    t
}

fn error(status: u16, message: &str, limits: Option<RateLimitInfo>) -> ResponseTemplate {
    let body = json!({"error": {"message": message, "type": "requests", "code": status}});
    headers(ResponseTemplate::new(status).set_body_json(body), limits)
}

fn headers(mut t: ResponseTemplate, limits: Option<RateLimitInfo>) -> ResponseTemplate {
    let Some(limits) = limits else { return t };
    for (kind, status) in [("requests", limits.requests), ("tokens", limits.tokens)] {
        if let Some(limit) = status.limit {
            t = t.insert_header(
                format!("x-ratelimit-limit-{kind}").as_str(),
                limit.to_string().as_str(),
            );
        }
        if let Some(remaining) = status.remaining {
            t = t.insert_header(
                format!("x-ratelimit-remaining-{kind}").as_str(),
                remaining.to_string().as_str(),
            );
        }
        if let Some(reset) = status.reset {
            t = t.insert_header(
                format!("x-ratelimit-reset-{kind}").as_str(),
                format!("{}ms", reset.as_millis()).as_str(),
            );
        }
    }
    t
}

fn script(text: &str) -> Result<Vec<MockStep>, String> {
    let mut steps = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (code, times) = part.split_once('x').unwrap_or((part, "1"));
        let times: usize = times
            .parse()
            .map_err(|_| format!("--script: {part:?} is not CODExN"))?;
        let step = match code {
            "500" => MockStep::ServerError,
            "503" => MockStep::Unavailable(None),
            "401" => MockStep::Unauthorized,
            "404" => MockStep::NotFound,
            "429" => MockStep::RateLimited(Some(Duration::from_secs(1))),
            other => return Err(format!("--script: unknown status {other}")),
        };
        steps.extend(std::iter::repeat_n(step, times));
    }
    Ok(steps)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut port = 8089u16;
    let (mut rpm, mut tpm, mut latency_ms) = (Some(120u32), None, 300u64);
    let (mut headers_on, mut retry_after_on) = (true, true);
    let mut steps = Vec::new();
    let mut looping = None;
    let (mut itpm, mut otpm, mut anthropic) = (None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{v:?} is not a number"))
        };
        match arg.as_str() {
            "--port" => port = u16::try_from(number(value()?)?).map_err(|e| e.to_string())?,
            "--rpm" => rpm = Some(u32::try_from(number(value()?)?).map_err(|e| e.to_string())?),
            "--no-rpm" => rpm = None,
            "--tpm" => tpm = Some(u32::try_from(number(value()?)?).map_err(|e| e.to_string())?),
            "--itpm" => itpm = Some(u32::try_from(number(value()?)?).map_err(|e| e.to_string())?),
            "--otpm" => otpm = Some(u32::try_from(number(value()?)?).map_err(|e| e.to_string())?),
            "--anthropic" => anthropic = true,
            "--latency-ms" => latency_ms = number(value()?)?,
            "--no-headers" => headers_on = false,
            "--no-retry-after" => retry_after_on = false,
            "--script" => steps = script(&value()?)?,
            "--looping" => {
                looping = Some(looping_answer(
                    usize::try_from(number(value()?)?).map_err(|e| e.to_string())?,
                ));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let limit = match (rpm, tpm) {
        (Some(r), Some(t)) => Some(MockRateLimit::requests_per_minute(r).and_tokens_per_minute(t)),
        (Some(r), None) => Some(MockRateLimit::requests_per_minute(r)),
        (None, Some(t)) => Some(MockRateLimit::tokens_per_minute(t)),
        (None, None) => None,
    };
    let limit = match (limit, itpm, otpm) {
        (limit, None, None) => limit,
        (limit, itpm, otpm) => {
            let mut l = limit.unwrap_or_else(MockRateLimit::unlimited);
            if let Some(i) = itpm {
                l = l.and_input_tokens_per_minute(i);
            }
            if let Some(o) = otpm {
                l = l.and_output_tokens_per_minute(o);
            }
            Some(l)
        }
    }
    .map(|l| l.with_headers(headers_on).with_retry_after(retry_after_on));
    let mut mock = MockBackend::scripted(steps).then_answer();
    if let Some(limit) = limit {
        mock = mock.with_rate_limit(limit, TokioTimer);
    }
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("port {port}: {e}"))?;
    let server = MockServer::builder().listener(listener).start().await;
    let stats = Arc::new(Mutex::new(Stats::default()));
    Mock::given(method("POST"))
        .respond_with(Server {
            mock,
            latency: Duration::from_millis(latency_ms),
            stats: stats.clone(),
            looping,
            anthropic,
        })
        .mount(&server)
        .await;
    eprintln!(
        "listening on {}/v1: {limit:?}, latency {latency_ms} ms",
        server.uri()
    );
    let mut last = (0, 0, 0);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if (s.answered, s.limited, s.errors) != last {
            last = (s.answered, s.limited, s.errors);
            let gave_up = s
                .limited_prompts
                .iter()
                .filter(|p| !s.answered_prompts.contains_key(*p))
                .count();
            let twice = s.answered_prompts.values().filter(|n| **n > 1).count();
            eprintln!(
                "served: {} answers, {} 429s, {} errors; requests 429'd and not answered since: {gave_up}; requests answered more than once: {twice}",
                s.answered, s.limited, s.errors
            );
        }
    }
}

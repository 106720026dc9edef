//! Rate limits over real HTTP (wiremock): the `x-ratelimit-*` headers and `OpenAI`'s 429 messages
//! reach the runner through `OpenAiBackend`, and a run against a server that enforces a limit
//! is paced by what the server reports.

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dynbatch::TokioTimer;
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::backend::{BackendError, ChatMessage, ChatRequest, LlmBackend, ResponseFormat, Role};
use dynbatch::report::LimitSource;
use dynbatch::{Batcher, BatchingConfig, Cluster, Video};
use dynbatch::{RunConfig, Runner};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn backend(server: &MockServer) -> OpenAiBackend {
    OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key("sk-test")
        .build()
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![ChatMessage {
            role: Role::User,
            content: "CLUSTER 1".into(),
        }],
    )
    .with_max_tokens(300)
    .with_response_format(ResponseFormat::JsonObject)
}

fn completion() -> serde_json::Value {
    let content = json!({"clusters": [{"cluster": 1, "patterns": [{"pattern": "Challenge",
        "template": "I Tried [X] for [X] Days", "examples": ["I Tried Topic for 30 Days"], "rationale": "r"}]}]});
    json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
           "message": {"role": "assistant", "content": content.to_string()}}],
           "usage": {"prompt_tokens": 100, "completion_tokens": 50}})
}

#[tokio::test]
async fn answers_carry_the_rate_limit_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-limit-requests", "120")
                .insert_header("x-ratelimit-remaining-requests", "119")
                .insert_header("x-ratelimit-reset-requests", "500ms")
                .insert_header("x-ratelimit-limit-tokens", "200000")
                .insert_header("x-ratelimit-remaining-tokens", "199650")
                .insert_header("x-ratelimit-reset-tokens", "6m0s")
                .set_body_json(completion()),
        )
        .mount(&server)
        .await;
    let response = backend(&server).complete(&request()).await.unwrap();
    let limits = response.rate_limits.unwrap();
    assert_eq!(
        (limits.requests.limit, limits.requests.remaining),
        (Some(120), Some(119))
    );
    assert_eq!(limits.requests.reset, Some(Duration::from_millis(500)));
    assert_eq!(
        (limits.tokens.limit, limits.tokens.remaining),
        (Some(200_000), Some(199_650))
    );
    assert_eq!(limits.tokens.reset, Some(Duration::from_secs(360)));
}

#[tokio::test]
async fn a_429_carries_its_headers_or_what_its_message_says() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-limit-requests", "3")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "20s")
                .set_body_json(json!({"error": {"message": "slow down", "type": "requests"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // OpenAI's own words when there are no headers.
    let message = "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.";
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"error": {"message": message, "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .mount(&server)
        .await;
    let b = backend(&server);
    let Err(BackendError::RateLimited {
        retry_after,
        limits,
        ..
    }) = b.complete(&request()).await
    else {
        panic!("a 429")
    };
    assert_eq!(retry_after, None);
    let limits = limits.unwrap();
    assert_eq!(
        (
            limits.requests.limit,
            limits.requests.remaining,
            limits.requests.reset
        ),
        (Some(3), Some(0), Some(Duration::from_secs(20)))
    );
    let Err(BackendError::RateLimited {
        retry_after,
        limits,
        ..
    }) = b.complete(&request()).await
    else {
        panic!("a 429")
    };
    assert_eq!(retry_after, Some(Duration::from_secs(20)));
    assert_eq!(limits.unwrap().requests.limit, Some(3));
}

/// A server that enforces `per_minute` requests per minute, a bucket refilled continuously,
/// and reports it in headers.
struct Limited {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl Respond for Limited {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        let level =
            (state.0 + (now - state.1).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute);
        *state = (level, now);
        let admitted = level >= 1.0;
        if admitted {
            state.0 -= 1.0;
        }
        let template = if admitted {
            ResponseTemplate::new(200).set_body_json(completion())
        } else {
            ResponseTemplate::new(429)
                .set_body_json(json!({"error": {"message": "rate limited", "type": "requests"}}))
        };
        template
            .insert_header(
                "x-ratelimit-limit-requests",
                self.per_minute.to_string().as_str(),
            )
            .insert_header(
                "x-ratelimit-remaining-requests",
                state.0.floor().max(0.0).to_string().as_str(),
            )
            .set_delay(Duration::from_millis(20))
    }
}

#[tokio::test]
async fn a_run_over_http_is_paced_by_the_limit_the_server_reports() {
    // 60 a minute: a full bucket of 60, then one a second. 64 one-cluster calls need 4 s.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Limited {
            per_minute: 60.0,
            state: Mutex::new((60.0, Instant::now())),
        })
        .mount(&server)
        .await;
    let clusters: Vec<Cluster> = (0..64)
        .map(|i| {
            let mut c = Cluster::new(
                format!("c{i}"),
                vec![
                    Video::new(format!("I Tried Topic{i} for 30 Days"), 5.0),
                    Video::new(format!("I Tried Topic{i} for 90 Days"), 4.5),
                ],
            );
            c.size = 20;
            c.avg_performance = 4.5;
            c.thread_sources = (0..5).map(|s| format!("s{s}")).collect();
            c
        })
        .collect();
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(64)
        .build()
        .unwrap();
    let runner = Runner::new(backend(&server), TokioTimer)
        .with_config(RunConfig::builder().concurrency(16).build().unwrap());
    let start = Instant::now();
    let report = Batcher::new(config)
        .discover(&clusters, "x", &runner)
        .await
        .unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "{elapsed:?}, {} 429s, waited {:.2} s",
        report.usage.rate_limited, report.usage.rate_limit_wait_secs
    );
    assert_eq!(report.outcome_counts(), (64, 0));
    let u = &report.usage;
    assert_eq!(u.rate_limits.requests_per_minute, Some(60));
    assert_eq!(u.rate_limits.requests_source, Some(LimitSource::Headers));
    // Paced, not hammered: it waited for the refill, and drew few 429s doing so.
    assert!(elapsed >= Duration::from_millis(3500), "{elapsed:?}");
    assert!(u.rate_limit_wait_secs >= 3.0, "{u:?}");
    assert!(u.rate_limited <= 3, "{}", u.rate_limited);
    assert_eq!(u.extra_calls, 0);
}

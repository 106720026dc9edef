//! Every wait is bounded: a loopback server that accepts the connection and then stalls a chat
//! call, a Batch API poll or a result download. Each ends in bounded time with the typed
//! `Timeout`, and a stalled chat call is retried by the runner and succeeds.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dynbatch::backend::anthropic::AnthropicBackend;
use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::backend::{
    BackendError, BatchBackend, BatchInfo, BatchStatus, ChatMessage, ChatRequest, LlmBackend,
    ResponseFormat, Role,
};
use dynbatch::{Batcher, Cluster, RunConfig, Runner, TokioTimer, Video};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SHORT: Duration = Duration::from_millis(300);
const STALL: Duration = Duration::from_secs(30);

/// A server that answers every request to `at` only after `STALL`.
async fn stalling(verb: &str, at: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method(verb))
        .and(path(at))
        .respond_with(ResponseTemplate::new(200).set_delay(STALL))
        .mount(&server)
        .await;
    server
}

fn request() -> ChatRequest {
    let hi = ChatMessage {
        role: Role::User,
        content: "hi".into(),
    };
    ChatRequest::new("m", vec![hi]).with_response_format(ResponseFormat::Text)
}

fn assert_timed_out<T: std::fmt::Debug>(result: Result<T, BackendError>, started: Instant) {
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    match result {
        Err(BackendError::Timeout(t)) => assert!(t <= Duration::from_secs(1), "{t:?}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_chat_call_times_out() {
    let server = stalling("POST", "/v1/chat/completions").await;
    let backend = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .request_timeout(SHORT)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_timed_out(backend.complete(&request()).await, started);
    let server = stalling("POST", "/v1/messages").await;
    let claude = AnthropicBackend::builder()
        .base_url(server.uri())
        .request_timeout(SHORT)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_timed_out(claude.complete(&request()).await, started);
}

#[tokio::test]
async fn a_stalled_poll_and_a_stalled_download_time_out() {
    let server = stalling("GET", "/v1/batches/batch_1").await;
    Mock::given(method("GET"))
        .and(path("/v1/files/file-out/content"))
        .respond_with(ResponseTemplate::new(200).set_delay(STALL))
        .mount(&server)
        .await;
    let batches = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .request_timeout(SHORT)
        .download_timeout(SHORT * 2)
        .build_batches()
        .unwrap();
    let started = Instant::now();
    assert_timed_out(batches.get("batch_1").await, started);
    let mut info = BatchInfo::new("batch_1", BatchStatus::Completed);
    info.locations.insert("output".into(), "file-out".into());
    let started = Instant::now();
    assert_timed_out(batches.results(&info).await, started);

    let server = stalling("GET", "/v1/messages/batches/msgbatch_1").await;
    Mock::given(method("GET"))
        .and(path("/results"))
        .respond_with(ResponseTemplate::new(200).set_delay(STALL))
        .mount(&server)
        .await;
    let claude = AnthropicBackend::builder()
        .base_url(server.uri())
        .request_timeout(SHORT)
        .download_timeout(SHORT)
        .build_batches()
        .unwrap();
    let started = Instant::now();
    assert_timed_out(claude.get("msgbatch_1").await, started);
    let mut info = BatchInfo::new("msgbatch_1", BatchStatus::Completed);
    info.locations.insert("results".into(), "/results".into());
    let started = Instant::now();
    assert_timed_out(claude.results(&info).await, started);
}

/// Stalls the first call; answers the others as the offline mock would.
struct StallOnce(AtomicUsize);

impl Respond for StallOnce {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let messages: Vec<ChatMessage> = serde_json::from_value(body["messages"].clone()).unwrap();
        let chat = ChatRequest::new("m", messages).with_response_format(ResponseFormat::JsonObject);
        let answer = futures::executor::block_on(MockBackend::new().complete(&chat)).unwrap();
        let reply = ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer.content}}]
        }));
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            reply.set_delay(STALL)
        } else {
            reply
        }
    }
}

#[tokio::test]
async fn a_stalled_chat_call_is_retried_and_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(StallOnce(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    let backend = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .request_timeout(SHORT)
        .build()
        .unwrap();
    let clusters: Vec<Cluster> = (0..3)
        .map(|i| {
            let mut c = Cluster::new(
                format!("c{i}"),
                vec![
                    Video::new(format!("I Tried Chess {i} for 30 Days"), 5.0),
                    Video::new(format!("I Tried Chess {i} for 7 Days"), 4.0),
                ],
            );
            (c.size, c.avg_performance) = (20, 4.0);
            c.thread_sources = vec!["a".into(), "b".into(), "c".into()];
            c
        })
        .collect();
    let config = RunConfig::builder()
        .base_delay(Duration::from_millis(10))
        .request_with(|r| r.output = dynbatch::prompt::OutputMode::JsonObject)
        .build()
        .unwrap();
    let started = Instant::now();
    let report = Batcher::default()
        .discover(
            &clusters,
            "chess",
            &Runner::new(backend, TokioTimer).with_config(config),
        )
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.outcome_counts(), (3, 0));
    assert_eq!(report.usage.retries, 1);
}

/// With no timeout set, the defaults still bound every call: 600 s for a call, 30 minutes for a
/// result file (on Tokio's paused clock, which moves on while the server stalls).
#[tokio::test(start_paused = true)]
async fn the_default_timeouts_bound_a_stalled_call_and_download() {
    let server = stalling("POST", "/v1/chat/completions").await;
    Mock::given(method("GET"))
        .and(path("/v1/files/file-out/content"))
        .respond_with(ResponseTemplate::new(200).set_delay(STALL))
        .mount(&server)
        .await;
    let builder = OpenAiBackend::builder().base_url(format!("{}/v1", server.uri()));
    let started = tokio::time::Instant::now();
    match builder.clone().build().unwrap().complete(&request()).await {
        Err(BackendError::Timeout(t)) => assert_eq!(t, Duration::from_secs(600)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(600));
    let mut info = BatchInfo::new("batch_1", BatchStatus::Completed);
    info.locations.insert("output".into(), "file-out".into());
    match builder.build_batches().unwrap().results(&info).await {
        Err(BackendError::Timeout(t)) => assert_eq!(t, Duration::from_secs(1_800)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

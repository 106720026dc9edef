//! `OpenAiBackend` against a wiremock server on loopback: the body we send, field by field,
//! and every outcome mapped as the official SDKs do, through the runner where it matters.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::backend::openai::{MaxTokensField, OpenAiBackend};
use dynbatch::backend::{BackendError, ChatMessage, ChatRequest, LlmBackend, ResponseFormat, Role};
use dynbatch::prompt::{OutputMode, RequestSettings};
use dynbatch::report::OutcomeStatus;
use dynbatch::{Batcher, Cluster, Video};
use dynbatch::{RunConfig, Runner};
use dynbatch::{Sleep, Timer};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Back-off and retry-after waits complete at once and are recorded; the runner's own request
/// timeout (60 s) never fires, so the backend's HTTP timeout is what is tested.
#[derive(Debug, Clone, Default)]
struct RecordingTimer(Arc<Mutex<Vec<Duration>>>);

/// A simulated clock: sleeps (but the per-request timeout, which never fires) are recorded and
/// return at once, and `now` moves by what was slept.
impl Timer for RecordingTimer {
    fn sleep(&self, d: Duration) -> Sleep {
        if d >= Duration::from_secs(60) {
            return Box::pin(futures::future::pending());
        }
        self.0.lock().unwrap().push(d);
        Box::pin(async {})
    }
    fn now(&self) -> std::time::Instant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *START.get_or_init(std::time::Instant::now)
            + self.0.lock().unwrap().iter().sum::<Duration>()
    }
}

fn completion(content: &str, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 54, "total_tokens": 375}
    })
}

fn answer(n: usize) -> String {
    let clusters: Vec<Value> = (1..=n)
        .map(|i| json!({"cluster": i, "patterns": [{"pattern": "Challenge", "template": "I Tried [X] for [X] Days",
                                                   "examples": [format!("I Tried Espresso {i} for 30 Days")], "rationale": "r"}]}))
        .collect();
    json!({"clusters": clusters}).to_string()
}

fn clusters(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let mut c = Cluster::new(
                format!("c{i}"),
                vec![
                    Video::new(format!("I Tried Espresso {} for 30 Days", i + 1), 5.0),
                    Video::new(format!("I Tried Grinder {} for 100 Days", i + 1), 4.0),
                ],
            );
            c.size = 20;
            c.avg_performance = 4.5;
            c.thread_sources = (0..5).map(|s| format!("s{s}")).collect();
            c
        })
        .collect()
}

fn backend(server: &MockServer) -> OpenAiBackend {
    OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key("sk-test-SECRET")
        .organization("org-1")
        .project("proj-1")
        .header("x-extra", "yes")
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![
            ChatMessage {
                role: Role::System,
                content: "sys".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "user".into(),
            },
        ],
    )
    .with_max_tokens(900)
    .with_response_format(ResponseFormat::JsonObject)
}

async fn body_of(server: &MockServer, i: usize) -> Value {
    serde_json::from_slice(&server.received_requests().await.unwrap()[i].body).unwrap()
}

#[tokio::test]
async fn success_sends_exactly_the_request_and_reads_everything_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-SECRET"))
        .and(header("openai-organization", "org-1"))
        .and(header("openai-project", "proj-1"))
        .and(header("x-extra", "yes"))
        .and(header("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("{\"clusters\": []}", "stop"))
                .insert_header("x-request-id", "req_123"),
        )
        .mount(&server)
        .await;
    let response = backend(&server).complete(&request()).await.unwrap();
    assert_eq!(response.content, "{\"clusters\": []}");
    assert_eq!(response.usage.unwrap().prompt_tokens, 321);
    assert_eq!(response.usage.unwrap().completion_tokens, 54);
    assert_eq!(response.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(response.request_id.as_deref(), Some("req_123"));
    let body = body_of(&server, 0).await;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "sys"}, {"role": "user", "content": "user"}])
    );
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["max_tokens"], 900);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body.as_object().unwrap().len(), 5, "{body}");
}

#[tokio::test]
async fn strict_schema_max_completion_tokens_and_model_override() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("{}", "stop")))
        .mount(&server)
        .await;
    let backend = OpenAiBackend::builder()
        .base_url(format!("{}/v1/", server.uri()))
        .model("local-model")
        .max_tokens_field(MaxTokensField::MaxCompletionTokens)
        .build()
        .unwrap(); // loopback: no key needed
    let mut settings = RequestSettings::default();
    settings.output = OutputMode::StrictSchema;
    let input = clusters(1);
    let prompt = [dynbatch::prompt::PromptCluster {
        cluster: &input[0],
        quality: 0.9,
    }];
    let request = settings.request("espresso", &dynbatch::StrategySettings::balanced(), &prompt);
    backend.complete(&request).await.unwrap();
    let body = body_of(&server, 0).await;
    assert_eq!(body["model"], "local-model");
    assert_eq!(body["max_completion_tokens"], 300);
    assert!(body.get("max_tokens").is_none());
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(
        body["response_format"]["json_schema"]["name"],
        "title_patterns"
    );
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    // The batch's own schema: one required key per cluster.
    assert_eq!(
        body["response_format"]["json_schema"]["schema"],
        dynbatch::prompt::batch_schema(
            1,
            dynbatch::StrategySettings::balanced().patterns_per_cluster,
            false
        )
    );
    assert_eq!(
        body["response_format"]["json_schema"]["schema"]["required"],
        json!(["c1"])
    );
    let received = &server.received_requests().await.unwrap()[0];
    assert!(received.headers.get("authorization").is_none());
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_success_through_the_runner() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&answer(3), "stop")))
        .mount(&server)
        .await;
    let timer = RecordingTimer::default();
    let input = clusters(3);
    let runner = Runner::new(backend(&server), timer.clone());
    let report = Batcher::default()
        .discover(&input, "espresso", &runner)
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (3, 0));
    assert_eq!(
        *timer.0.lock().unwrap(),
        vec![Duration::from_secs(3)],
        "the server's delay, honoured"
    );
    // A 429 is not a retry and costs no extra call.
    assert_eq!(
        (
            report.usage.retries,
            report.usage.rate_limited,
            report.usage.extra_calls,
            report.usage.calls_made
        ),
        (0, 1, 0, 2)
    );
    assert!(report.usage.rate_limit_wait_secs >= 3.0);
    assert_eq!(report.usage.prompt_tokens, 321);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn server_errors_until_the_extra_call_budget_runs_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&server)
        .await;
    let timer = RecordingTimer::default();
    let input = clusters(3);
    let config = RunConfig::builder()
        .max_extra_calls(4)
        .breaker_threshold(100)
        .build()
        .unwrap();
    let runner = Runner::new(backend(&server), timer.clone()).with_config(config);
    let report = Batcher::default()
        .discover(&input, "x", &runner)
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (0, 3));
    // The planned call and every extra call, retried twice in a row, then sent again from the
    // back of the queue while the budget lasted.
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
    let reason = report.outcomes[0].reason.clone().unwrap();
    assert!(
        reason.starts_with(
            "overloaded after 5 attempts: server error 500: HTTP 500: upstream exploded"
        ) && reason.ends_with("extra-call budget exhausted (4 calls)"),
        "{reason}"
    );
    assert_eq!((report.usage.retries, report.usage.requeued), (3, 1));
    assert_eq!(timer.0.lock().unwrap().len(), 3, "three back-offs");
}

#[tokio::test]
async fn authentication_and_quota_fail_at_once_and_never_show_the_key() {
    for (status, body, kind) in [
        (
            401,
            json!({"error": {"message": "Incorrect API key provided: sk-test-****CRET", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            "authentication",
        ),
        (
            429,
            json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}),
            "quota_exhausted",
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        let input = clusters(3);
        let report = Batcher::default()
            .discover(
                &input,
                "x",
                &Runner::new(backend(&server), RecordingTimer::default()),
            )
            .await
            .unwrap();
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "{kind}");
        let reason = report.outcomes[0].reason.clone().unwrap();
        assert!(reason.starts_with(&format!("{kind}: ")), "{reason}");
        let everything = format!(
            "{}{:?}",
            serde_json::to_string(&report).unwrap(),
            backend(&server)
        );
        assert!(!everything.contains("sk-test-SECRET"));
    }
}

#[tokio::test]
async fn timeout_is_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(3))
                .set_body_json(completion("{}", "stop")),
        )
        .mount(&server)
        .await;
    let err = backend(&server).complete(&request()).await.unwrap_err();
    assert!(matches!(err, BackendError::Timeout(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_permanent_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("<html>gateway</html>")
                .insert_header("x-request-id", "req_9"),
        )
        .mount(&server)
        .await;
    let err = backend(&server).complete(&request()).await.unwrap_err();
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("not a chat completion") && text.contains("req_9") && text.contains("<html>"),
        "{text}"
    );
}

#[tokio::test]
async fn length_refusal_and_wrong_json_make_the_runner_split() {
    for first in [
        completion(&answer(2)[..20], "length"),
        json!({"model": "m", "choices": [{"message": {"content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]}),
        completion("Sure! Here are some patterns: 1. Challenge titles", "stop"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(first.clone()))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(&answer(1), "stop")))
            .mount(&server)
            .await;
        let input = clusters(2);
        let report = Batcher::default()
            .discover(
                &input,
                "x",
                &Runner::new(backend(&server), RecordingTimer::default()),
            )
            .await
            .unwrap();
        assert_eq!(report.usage.splits, 1, "{first}");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
        assert!(
            report
                .outcomes
                .iter()
                .all(|o| o.status == OutcomeStatus::Succeeded)
        );
    }
}

#[test]
fn construction_needs_a_key_except_on_loopback_and_debug_redacts_it() {
    let err = OpenAiBackend::builder().build().unwrap_err();
    assert!(
        matches!(
            &err,
            dynbatch::Error::Backend(dynbatch::SetupError::NoApiKey { base_url })
                if base_url == "https://api.openai.com/v1"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no API key"), "{err}");
    assert!(
        OpenAiBackend::builder()
            .base_url("http://localhost:8080/v1")
            .build()
            .is_ok()
    );
    assert!(
        OpenAiBackend::builder()
            .base_url("http://[::1]:8080/v1")
            .build()
            .is_ok()
    );
    assert!(
        OpenAiBackend::builder()
            .base_url("http://10.0.0.5:8080/v1")
            .build()
            .is_err()
    );
    // Azure OpenAI: the key in an `api-key` header counts as a key, and is redacted too.
    let azure = OpenAiBackend::builder()
        .base_url("https://myres.openai.azure.com/openai/v1")
        .header("api-key", "azure-SECRET")
        .build()
        .unwrap();
    assert!(!format!("{azure:?}").contains("azure-SECRET"));
    let b = OpenAiBackend::builder()
        .api_key("sk-live-TOPSECRET")
        .build()
        .unwrap();
    let debug = format!("{b:?}");
    assert!(
        !debug.contains("TOPSECRET") && debug.contains("redacted"),
        "{debug}"
    );
    assert_eq!(b.endpoint(), "https://api.openai.com/v1/chat/completions");
}

#[tokio::test]
async fn json_object_with_schema_is_sent_the_llama_cpp_way() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("{}", "stop")))
        .mount(&server)
        .await;
    let backend = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap();
    let mut settings = RequestSettings::default();
    settings.output = OutputMode::JsonObjectWithSchema;
    let input = clusters(1);
    let prompt = [dynbatch::prompt::PromptCluster {
        cluster: &input[0],
        quality: 0.9,
    }];
    backend
        .complete(&settings.request("espresso", &dynbatch::StrategySettings::balanced(), &prompt))
        .await
        .unwrap();
    let body = body_of(&server, 0).await;
    assert_eq!(
        body["response_format"],
        json!({"type": "json_object", "schema": dynbatch::prompt::batch_schema(
            1,
            dynbatch::StrategySettings::balanced().patterns_per_cluster,
            true
        )})
    );
}

#[tokio::test]
async fn a_refused_connection_keeps_the_transport_error_as_its_source() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = OpenAiBackend::builder()
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .build()
        .unwrap();
    let err = backend.complete(&request()).await.unwrap_err();
    assert!(matches!(err, BackendError::Connection { .. }), "{err}");
    assert!(err.is_retryable());
    let source = std::error::Error::source(&err).unwrap();
    assert!(
        source.downcast_ref::<reqwest::Error>().is_some(),
        "{source:?}"
    );
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

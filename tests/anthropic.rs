//! `AnthropicBackend` over real HTTP against a local fake of the Messages API (wiremock):
//! the conformance suite in every output mode, the headers it sends, and the runner through
//! overload (529) and a bad key.

#![cfg(feature = "anthropic")]
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use dynbatch::TokioTimer;
use dynbatch::backend::anthropic::AnthropicBackend;
use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::{ChatMessage, ChatRequest, LlmBackend, ResponseFormat, Role};
use dynbatch::report::OutcomeStatus;
use dynbatch::testing::run_backend_conformance;
use dynbatch::{Batcher, BatchingConfig};
use dynbatch::{RunConfig, Runner};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers a Messages API request from its prompt, as the offline mock does: through the
/// forced tool when the request has one, else as text. Plays `errors` (status, error type)
/// first.
struct FakeMessages {
    mock: MockBackend,
    errors: Mutex<Vec<(u16, &'static str)>>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Respond for FakeMessages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        if let Some((status, kind)) = self.errors.lock().unwrap().pop() {
            return ResponseTemplate::new(status).set_body_json(json!({
                "type": "error",
                "error": {"type": kind, "message": "fake"},
                "request_id": "req_fake",
            }));
        }
        let schema = body["tools"][0]["input_schema"].clone();
        let chat = ChatRequest::new(
            body["model"].as_str().unwrap(),
            vec![
                ChatMessage {
                    role: Role::System,
                    content: body["system"].as_str().unwrap_or_default().into(),
                },
                ChatMessage {
                    role: Role::User,
                    content: body["messages"][0]["content"].as_str().unwrap().into(),
                },
            ],
        )
        .with_temperature(0.0)
        .with_response_format(if schema.is_null() {
            ResponseFormat::JsonObject
        } else {
            ResponseFormat::JsonSchema {
                name: "p".into(),
                schema,
                strict: true,
            }
        });
        let answer = futures::executor::block_on(self.mock.complete(&chat)).unwrap();
        let content = if body.get("tools").is_some() {
            json!([{"type": "tool_use", "id": "toolu_1", "name": body["tool_choice"]["name"],
                    "input": serde_json::from_str::<Value>(&answer.content).unwrap()}])
        } else {
            json!([{"type": "text", "text": answer.content}])
        };
        ResponseTemplate::new(200)
            .insert_header("anthropic-ratelimit-requests-limit", "50")
            .insert_header("anthropic-ratelimit-requests-remaining", "49")
            .insert_header("anthropic-ratelimit-requests-reset", "2030-01-01T00:00:00Z")
            .insert_header("request-id", "req_ok")
            .set_body_json(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": content,
                "stop_reason": if body.get("tools").is_some() { "tool_use" } else { "end_turn" },
                "usage": {"input_tokens": 100, "output_tokens": 20,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }))
    }
}

async fn fake(errors: Vec<(u16, &'static str)>) -> (MockServer, Arc<Mutex<Vec<Value>>>) {
    let server = MockServer::start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(FakeMessages {
            mock: MockBackend::new(),
            errors: Mutex::new(errors),
            bodies: bodies.clone(),
        })
        .mount(&server)
        .await;
    (server, bodies)
}

fn backend(server: &MockServer) -> AnthropicBackend {
    AnthropicBackend::builder()
        .base_url(server.uri())
        .api_key("sk-ant-test")
        .build()
        .unwrap()
}

#[tokio::test]
async fn passes_the_conformance_suite_in_every_output_mode() {
    let (server, bodies) = fake(Vec::new()).await;
    let backend = backend(&server);
    assert_eq!(run_backend_conformance(&backend).await.unwrap(), 4);
    let bodies = bodies.lock().unwrap();
    // Schema modes went as a forced tool, the others as text; the system prompt on top.
    assert!(bodies.iter().any(|b| b["tool_choice"]["type"] == "tool"));
    assert!(bodies.iter().any(|b| b.get("tools").is_none()));
    assert!(bodies.iter().all(|b| b["system"].is_string()));
    // The key is never in Debug.
    assert!(!format!("{backend:?}").contains("sk-ant-test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_runner_overload_is_waited_out_and_a_bad_key_stops_the_run() {
    let clusters = dynbatch::testing::distinct_clusters(4);
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(4)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap().into_owned();
    let fast = RunConfig::builder()
        .base_delay(std::time::Duration::from_millis(10))
        .max_delay(std::time::Duration::from_millis(20))
        .build()
        .unwrap();

    // Two 529s: retried, nothing lost; the rate-limit headers are read.
    let (server, _) = fake(vec![(529, "overloaded_error"), (529, "overloaded_error")]).await;
    let report = Runner::new(backend(&server), TokioTimer)
        .with_config(fast.clone())
        .run(plan.clone(), &clusters, "x")
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (4, 0));
    assert_eq!(report.usage.rate_limits.requests_per_minute, Some(50));
    assert_eq!(report.usage.prompt_tokens, 400);

    // A bad key: an account-wide stop, with Anthropic's request id in the reason.
    let (server, bodies) = fake(vec![(401, "authentication_error"); 8]).await;
    let report = Runner::new(backend(&server), TokioTimer)
        .with_config(fast)
        .run(plan, &clusters, "x")
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (0, 4));
    let reason = report.outcomes[0].reason.clone().unwrap();
    assert!(reason.contains("req_fake"), "{reason}");
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Failed)
    );
    // Auto sends one request alone first: the bad key stops everything after it.
    assert_eq!(bodies.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_picks_claude_from_the_environment() {
    let (server, bodies) = fake(Vec::new()).await;
    let uri = server.uri();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::loopback::example("discover"))
            .arg("--json")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_MODEL")
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .env("ANTHROPIC_BASE_URL", uri)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    assert!(!outcomes.is_empty());
    assert!(outcomes.iter().all(|o| o["status"] == "succeeded"));
    let bodies = bodies.lock().unwrap();
    assert!(!bodies.is_empty());
    assert!(bodies.iter().all(|b| b["model"] == "claude-haiku-4-5"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/v1/messages"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_too_large_is_split_and_a_burst_of_529s_loses_nothing() {
    let clusters = dynbatch::testing::distinct_clusters(8);
    let fast = RunConfig::builder()
        .base_delay(std::time::Duration::from_millis(5))
        .max_delay(std::time::Duration::from_millis(20))
        .build()
        .unwrap();

    // 413: the batch of 8 is halved until the halves are taken; nothing lost.
    let whole = BatchingConfig::builder()
        .min_batch_size(8)
        .max_batch_size(8)
        .max_total_calls(1)
        .build()
        .unwrap();
    let plan = Batcher::new(whole).plan(&clusters).unwrap().into_owned();
    assert_eq!(plan.batches.len(), 1);
    let (server, bodies) = fake(vec![(413, "request_too_large")]).await;
    let report = Runner::new(backend(&server), TokioTimer)
        .with_config(fast.clone())
        .run(plan, &clusters, "x")
        .await
        .unwrap();
    assert_eq!(report.outcome_counts(), (8, 0));
    assert_eq!(report.usage.splits, 1);
    assert_eq!(
        bodies.lock().unwrap().len(),
        3,
        "the whole, then two halves"
    );

    // A burst of 12 overloaded_error 529s, more than the 8 requests: the breaker waits it out,
    // requests go back to the queue, and every cluster is answered within the default
    // extra-call budget.
    let one_each = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(8)
        .build()
        .unwrap();
    let plan = Batcher::new(one_each).plan(&clusters).unwrap().into_owned();
    let (server, bodies) = fake(vec![(529, "overloaded_error"); 12]).await;
    let report = Runner::new(backend(&server), TokioTimer)
        .with_config(fast)
        .run(plan, &clusters, "x")
        .await
        .unwrap();
    report.check_accounting().unwrap();
    assert_eq!(report.outcome_counts(), (8, 0), "{:?}", report.outcomes);
    assert_eq!(bodies.lock().unwrap().len(), 20, "12 refused, 8 answered");
    assert!(report.usage.circuit_opened >= 1);
}

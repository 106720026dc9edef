//! Constrained output over real HTTP: the per-batch schema keeps to `OpenAI`'s strict-mode rules,
//! `OutputMode::Auto` falls back once per run when a server refuses a format (down to plain
//! text), and an explicit mode that is refused fails with the reason.

#![allow(clippy::unwrap_used, clippy::too_many_lines, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use dynbatch::Batcher;
use dynbatch::TokioTimer;
use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::backend::{ChatMessage, ChatRequest, LlmBackend, ResponseFormat};
use dynbatch::prompt::OutputMode;
use dynbatch::report::OutcomeStatus;
use dynbatch::{RunConfig, RunEvent, Runner};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support_bundled;
use support_bundled::bundled;

/// A server that refuses some `response_format` types (as named), records every body, and
/// answers the rest from the offline mock; in `prose` mode it wraps the JSON in text.
struct Picky {
    refuse: Vec<&'static str>,
    prose: bool,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn kind(body: &Value) -> &'static str {
    match (
        body["response_format"]["type"].as_str(),
        body["response_format"].get("schema").is_some(),
    ) {
        (Some("json_schema"), _) => "json_schema",
        (Some("json_object"), true) => "json_object_schema",
        (Some("json_object"), false) => "json_object",
        _ => "none",
    }
}

impl Respond for Picky {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        let kind = kind(&body);
        if self.refuse.contains(&kind) {
            // The three ways servers say it: a 400 (OpenAI, vLLM), a 422, a 500 (llama-cpp-python).
            let (status, message) = match kind {
                "json_schema" => (
                    400,
                    "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                ),
                "json_object_schema" => (
                    422,
                    "response_format.schema: extra inputs are not permitted",
                ),
                _ => (500, "this server supports no response_format"),
            };
            return ResponseTemplate::new(status).set_body_json(
                json!({"error": {"message": message, "type": "invalid_request_error"}}),
            );
        }
        let messages: Vec<ChatMessage> = serde_json::from_value(body["messages"].clone()).unwrap();
        let chat = ChatRequest::new("m", messages).with_response_format(ResponseFormat::JsonObject);
        let answer = futures::executor::block_on(MockBackend::new().complete(&chat)).unwrap();
        let content = if self.prose {
            format!(
                "Sure! Here are the patterns:\n```json\n{}\n```\nHope this helps.",
                answer.content
            )
        } else {
            answer.content
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}))
    }
}

async fn picky(refuse: Vec<&'static str>, prose: bool) -> (MockServer, Arc<Mutex<Vec<Value>>>) {
    let server = MockServer::start().await;
    let bodies = Arc::default();
    Mock::given(wiremock::matchers::any())
        .respond_with(Picky {
            refuse,
            prose,
            bodies: Arc::clone(&bodies),
        })
        .mount(&server)
        .await;
    (server, bodies)
}

fn backend(server: &MockServer) -> OpenAiBackend {
    OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap()
}

/// Every rule of `OpenAI`'s strict mode, checked on every node of a schema: objects list every
/// property as required and forbid others; only supported keywords appear.
fn check_strict(schema: &Value, at: &str) {
    const SUPPORTED: [&str; 13] = [
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "description",
        "enum",
        "anyOf",
        "pattern",
        "format",
        "const",
    ];
    let object = schema
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object"));
    for key in object.keys() {
        assert!(
            SUPPORTED.contains(&key.as_str()),
            "{at}: keyword {key} is not allowed in strict mode"
        );
    }
    if object.get("type") == Some(&json!("object")) {
        assert_eq!(object["additionalProperties"], json!(false), "{at}");
        let properties: BTreeSet<&str> = object["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = object["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(properties, required, "{at}: every property required");
        for (name, sub) in object["properties"].as_object().unwrap() {
            check_strict(sub, &format!("{at}.{name}"));
        }
    }
    if let Some(items) = object.get("items") {
        check_strict(items, &format!("{at}[]"));
    }
}

#[tokio::test]
async fn the_batch_schema_follows_the_strict_mode_rules_and_names_every_cluster() {
    let (server, bodies) = picky(vec![], false).await;
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let sizes: Vec<usize> = plan.batches.iter().map(|b| b.clusters.len()).collect();
    let range = plan.strategy.patterns_per_cluster;
    let report = Runner::new(backend(&server), TokioTimer)
        .run(plan, &clusters, "home espresso")
        .await
        .unwrap();
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded)
    );
    assert_eq!(report.usage.output_mode, Some(OutputMode::StrictSchema));
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), sizes.len());
    let mut seen: Vec<usize> = Vec::new();
    for body in bodies.iter() {
        let format = &body["response_format"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["json_schema"]["strict"], true);
        let schema = &format["json_schema"]["schema"];
        check_strict(schema, "$");
        let keys: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let n = keys.len();
        assert_eq!(keys, (1..=n).map(|i| format!("c{i}")).collect::<Vec<_>>());
        for key in keys {
            let patterns = &schema["properties"][key];
            assert_eq!(patterns["minItems"], range.min);
            assert_eq!(patterns["maxItems"], range.max);
        }
        seen.push(n);
    }
    seen.sort_unstable();
    let mut planned = sizes.clone();
    planned.sort_unstable();
    assert_eq!(seen, planned);
}

#[tokio::test]
async fn auto_falls_back_once_per_run_down_to_plain_text() {
    for (refuse, prose, landed) in [
        (vec!["json_schema"], false, OutputMode::JsonObjectWithSchema),
        (
            vec!["json_schema", "json_object_schema"],
            false,
            OutputMode::JsonObject,
        ),
        (
            vec!["json_schema", "json_object_schema", "json_object"],
            true,
            OutputMode::Text,
        ),
    ] {
        for concurrency in [1, 4] {
            let (server, bodies) = picky(refuse.clone(), prose).await;
            let clusters = bundled();
            let plan = Batcher::default().plan(&clusters).unwrap();
            let planned = plan.batches.len();
            let events = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&events);
            let report = Runner::new(backend(&server), TokioTimer)
                .with_config(
                    RunConfig::builder()
                        .concurrency(concurrency)
                        .build()
                        .unwrap(),
                )
                .on_event(move |e| {
                    if let RunEvent::OutputModeChanged { from, to, .. } = e {
                        sink.lock().unwrap().push((*from, *to));
                    }
                })
                .run(plan, &clusters, "home espresso")
                .await
                .unwrap();
            report.check_accounting().unwrap();
            assert!(
                report
                    .outcomes
                    .iter()
                    .all(|o| o.status == OutcomeStatus::Succeeded),
                "{refuse:?}: {:?}",
                report
                    .outcomes
                    .iter()
                    .find(|o| o.status != OutcomeStatus::Succeeded)
            );
            assert_eq!(report.usage.output_mode, Some(landed));
            // Each refused mode is learnt once: one event and one warning per fallback.
            let changes = events.lock().unwrap().clone();
            assert_eq!(changes.len(), refuse.len(), "{changes:?}");
            assert_eq!(changes.last().unwrap().1, landed);
            let warned = report
                .warnings
                .iter()
                .filter(|w| w.contains("refused output mode"))
                .count();
            assert_eq!(warned, refuse.len());
            // Refusals are not failures and spend no extra calls; until the server has taken a
            // mode, one request at a time goes, so each mode is refused exactly once.
            let refused = bodies
                .lock()
                .unwrap()
                .iter()
                .filter(|b| refuse.contains(&kind(b)))
                .count();
            assert_eq!(refused, refuse.len(), "concurrency {concurrency}");
            assert_eq!(report.usage.extra_calls, 0);
            assert_eq!(report.usage.calls_made, (planned + refused) as u64);
            // After the fallback, every request goes in the mode the server took.
            let last = bodies.lock().unwrap().last().cloned().unwrap();
            assert!(!refuse.contains(&kind(&last)));
        }
    }
}

#[tokio::test]
async fn an_explicit_mode_that_is_refused_fails_with_the_reason() {
    let (server, bodies) = picky(vec!["json_schema"], false).await;
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let planned = plan.batches.len();
    let config = RunConfig::builder()
        .request_with(|r| {
            r.output = OutputMode::StrictSchema;
        })
        .build()
        .unwrap();
    let report = Runner::new(backend(&server), TokioTimer)
        .with_config(config)
        .run(plan, &clusters, "home espresso")
        .await
        .unwrap();
    report.check_accounting().unwrap();
    assert!(report.outcomes.iter().all(|o| {
        o.status == OutcomeStatus::Failed
            && o.reason
                .as_deref()
                .unwrap()
                .starts_with("unsupported_format")
    }));
    // Not retried: a refused format is refused again.
    assert_eq!(bodies.lock().unwrap().len(), planned);
}

//! Answers too big to trust: a server that ignores `max_tokens` or a model that loops cannot
//! make one answer take the memory of the process or flood the report.

#![allow(clippy::unwrap_used, clippy::panic)]

use dynbatch::Runner;
use dynbatch::TokioTimer;
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::backend::{BackendError, ChatMessage, ChatRequest, LlmBackend, ResponseFormat, Role};
use dynbatch::{Batcher, Cluster, Video};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn completion(content: &str) -> Value {
    json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
           "message": {"role": "assistant", "content": content}}],
           "usage": {"prompt_tokens": 100, "completion_tokens": 50}})
}

/// Cluster 1 answered `repeats` times, each pattern `chars` characters long.
fn looping(repeats: usize, chars: usize) -> String {
    let long = "x".repeat(chars);
    let entry = json!({"cluster": 1, "patterns": [{"pattern": long, "template": "I Tried [X]",
                       "examples": ["I Tried Espresso 1 for 30 Days"], "rationale": long}]});
    json!({"clusters": vec![entry; repeats]}).to_string()
}

fn request(max_tokens: u32) -> ChatRequest {
    ChatRequest::new(
        "gpt-4o-mini",
        vec![ChatMessage {
            role: Role::User,
            content: "CLUSTER 1".into(),
        }],
    )
    .with_max_tokens(max_tokens)
    .with_response_format(ResponseFormat::JsonObject)
}

fn backend(server: &MockServer) -> OpenAiBackend {
    OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_body_beyond_the_cap_is_not_read() {
    let server = MockServer::start().await;
    // 10 MB: cluster 1 repeated 10,000 times.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&looping(10_000, 1_000))))
        .mount(&server)
        .await;
    let err = backend(&server).complete(&request(900)).await.unwrap_err();
    let BackendError::ResponseTooLarge { limit } = err else {
        panic!("{err}")
    };
    assert_eq!(limit, 900 * 8 + 64 * 1024);
    assert!(!err.is_retryable());
    // A cap of one's own.
    let err = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .max_response_bytes(1_000)
        .build()
        .unwrap()
        .complete(&request(100_000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::ResponseTooLarge { limit: 1_000 }),
        "{err}"
    );
}

#[tokio::test]
async fn a_looping_answer_is_split_or_trimmed_and_every_cluster_ends_accounted() {
    let server = MockServer::start().await;
    // The first answer is 1 MB of cluster 1 repeated: past the cap, the request is split.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&looping(1_000, 1_000))))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // Then answers that fit but loop: 100 repeats of 100-character patterns.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&looping(100, 100))))
        .mount(&server)
        .await;
    let clusters: Vec<Cluster> = (0..3)
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
        .collect();
    let runner = Runner::new(backend(&server), TokioTimer);
    let report = Batcher::default()
        .discover(&clusters, "espresso", &runner)
        .await
        .unwrap();
    report.check_accounting().unwrap();
    assert_eq!(report.usage.splits, 1);
    // Each request's cluster 1 is answered; the others are asked again and then fail (the
    // server only ever answers cluster 1). Nothing is lost, nothing floods the report.
    assert_eq!(report.outcomes.len(), 3);
    let most = report.plan.strategy.patterns_per_cluster.max as usize;
    for p in &report.cluster_patterns {
        assert_eq!(
            p.patterns.len(),
            most,
            "the first ones, as many as asked for"
        );
    }
    assert!(report.warnings.len() <= 12, "{:#?}", report.warnings);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("answered 100 times")),
        "{:#?}",
        report.warnings
    );
}

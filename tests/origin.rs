//! Keys stay on their origin. Two loopback servers: the API, and another origin that records
//! every header it receives. Every client (OpenAI with a bearer key, Azure-style `api-key`,
//! Anthropic, embeddings, both batch APIs) is sent there by a cross-origin `results_url`, a
//! cross-origin redirect of a download or a poll, or a cross-origin redirect of a call that
//! carries a body (chat, embeddings). The other origin must never see the key.
//!
//! What dynbatch does: a GET (a download, a poll) that leads to another origin is fetched there
//! without any configured header (that is how pre-signed result URLs work); a call with a body
//! (chat, embeddings, a batch create) redirected to another origin is refused with an error
//! that names the origin, because its body, the prompt, must not follow either.

#![allow(clippy::unwrap_used)]

use dynbatch::backend::anthropic::{AnthropicBackend, AnthropicBatches};
use dynbatch::backend::openai::{OpenAiBackend, OpenAiBatches, OpenAiBuilder};
use dynbatch::backend::{
    BatchBackend, BatchInfo, BatchStatus, ChatMessage, ChatRequest, Embedder, LlmBackend,
    ResponseFormat, Role,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-secret-that-must-stay-home";

/// The other origin: answers anything with an empty 200 and records what it got.
async fn other_origin() -> MockServer {
    let other = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string(""))
        .mount(&other)
        .await;
    other
}

/// Every header the other origin received that carries the key (by name or by value).
async fn keys_seen(other: &MockServer) -> Vec<String> {
    let mut seen = Vec::new();
    for request in other.received_requests().await.unwrap() {
        for (name, value) in &request.headers {
            let value = value.to_str().unwrap_or_default();
            let named = ["authorization", "x-api-key", "api-key"].contains(&name.as_str());
            if named || value.contains(KEY) {
                seen.push(format!("{} {}: {name}", request.method, request.url));
            }
        }
    }
    seen
}

/// A `307` from the API to `to` on the other origin, for any request to `at`.
async fn redirect(api: &MockServer, verb: &str, at: &str, to: String) {
    Mock::given(method(verb))
        .and(path(at))
        .respond_with(ResponseTemplate::new(307).insert_header("location", to.as_str()))
        .mount(api)
        .await;
}

fn request() -> ChatRequest {
    let prompt = ChatMessage {
        role: Role::User,
        content: "a prompt that must not leave either".into(),
    };
    ChatRequest::new("gpt-4o-mini", vec![prompt])
        .with_max_tokens(100)
        .with_response_format(ResponseFormat::Text)
}

/// The three ways an OpenAI-style client carries its key.
fn openai_configs(api: &MockServer) -> Vec<(&'static str, OpenAiBuilder)> {
    let base = OpenAiBackend::builder().base_url(format!("{}/v1", api.uri()));
    vec![
        ("bearer", base.clone().api_key(KEY)),
        ("azure api-key", base.clone().header("api-key", KEY)),
        (
            "custom header",
            base.header("x-gateway-key", KEY).api_key(KEY),
        ),
    ]
}

#[tokio::test]
async fn anthropic_results_url_on_another_origin_is_fetched_without_the_key() {
    let (api, other) = (MockServer::start().await, other_origin().await);
    let batches: AnthropicBatches = AnthropicBackend::builder()
        .base_url(api.uri())
        .api_key(KEY)
        .build_batches()
        .unwrap();
    let mut info = BatchInfo::new("msgbatch_1", BatchStatus::Completed);
    info.locations.insert(
        "results".into(),
        format!("{}/results/msgbatch_1.jsonl", other.uri()),
    );
    let out = batches.results(&info).await.unwrap();
    assert!(out.lines.is_empty());
    assert_eq!(other.received_requests().await.unwrap().len(), 1);
    assert_eq!(keys_seen(&other).await, Vec::<String>::new());
}

#[tokio::test]
async fn anthropic_results_redirected_to_another_origin_are_fetched_without_the_key() {
    let (api, other) = (MockServer::start().await, other_origin().await);
    Mock::given(method("GET"))
        .and(path("/results/msgbatch_1"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/signed?sig=abc", other.uri()).as_str(),
        ))
        .mount(&api)
        .await;
    let batches = AnthropicBackend::builder()
        .base_url(api.uri())
        .api_key(KEY)
        .build_batches()
        .unwrap();
    let mut info = BatchInfo::new("msgbatch_1", BatchStatus::Completed);
    info.locations
        .insert("results".into(), "/results/msgbatch_1".into());
    batches.results(&info).await.unwrap();
    // The API got the key (it is the configured origin); the other origin did not.
    let api_requests = api.received_requests().await.unwrap();
    assert_eq!(api_requests[0].headers.get("x-api-key").unwrap(), KEY);
    assert_eq!(other.received_requests().await.unwrap().len(), 1);
    assert_eq!(keys_seen(&other).await, Vec::<String>::new());
}

#[tokio::test]
async fn openai_batch_downloads_and_polls_redirected_to_another_origin_carry_no_key() {
    for (name, config) in openai_configs(&MockServer::start().await) {
        let (api, other) = (MockServer::start().await, other_origin().await);
        let config = config.base_url(format!("{}/v1", api.uri()));
        redirect(
            &api,
            "GET",
            "/v1/files/file-out/content",
            format!("{}/blob/file-out", other.uri()),
        )
        .await;
        redirect(
            &api,
            "GET",
            "/v1/batches/batch_1",
            format!("{}/v1/batches/batch_1", other.uri()),
        )
        .await;
        let batches: OpenAiBatches = config.build_batches().unwrap();
        let mut info = BatchInfo::new("batch_1", BatchStatus::Completed);
        info.locations.insert("output".into(), "file-out".into());
        let out = batches.results(&info).await.unwrap();
        assert!(out.lines.is_empty(), "{name}");
        // The poll lands on the other origin, which answers no batch: an error, but no key.
        assert!(batches.get("batch_1").await.is_err(), "{name}");
        assert_eq!(other.received_requests().await.unwrap().len(), 2, "{name}");
        assert_eq!(keys_seen(&other).await, Vec::<String>::new(), "{name}");
    }
}

#[tokio::test]
async fn chat_calls_redirected_to_another_origin_are_refused_and_carry_no_key() {
    for (name, config) in openai_configs(&MockServer::start().await) {
        let (api, other) = (MockServer::start().await, other_origin().await);
        redirect(
            &api,
            "POST",
            "/v1/chat/completions",
            format!("{}/v1/chat/completions", other.uri()),
        )
        .await;
        let backend = config
            .base_url(format!("{}/v1", api.uri()))
            .build()
            .unwrap();
        let error = backend.complete(&request()).await.unwrap_err();
        assert!(!error.is_retryable(), "{name}: {error}");
        assert!(
            error.to_string().contains(&other.uri()),
            "{name}: the error names the origin: {error}"
        );
        assert!(
            other.received_requests().await.unwrap().is_empty(),
            "{name}"
        );
    }
    let (api, other) = (MockServer::start().await, other_origin().await);
    redirect(
        &api,
        "POST",
        "/v1/messages",
        format!("{}/v1/messages", other.uri()),
    )
    .await;
    let claude = AnthropicBackend::builder()
        .base_url(api.uri())
        .api_key(KEY)
        .build()
        .unwrap();
    let error = claude.complete(&request()).await.unwrap_err();
    assert!(error.to_string().contains("another origin"), "{error}");
    assert!(other.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn embeddings_and_batch_creates_redirected_to_another_origin_carry_no_key() {
    for (name, config) in openai_configs(&MockServer::start().await) {
        let (api, other) = (MockServer::start().await, other_origin().await);
        let config = config.base_url(format!("{}/v1", api.uri()));
        redirect(&api, "POST", "/v1/embeddings", format!("{}/e", other.uri())).await;
        redirect(&api, "POST", "/v1/files", format!("{}/f", other.uri())).await;
        let embedder = config
            .clone()
            .build_embedder("text-embedding-3-small")
            .unwrap();
        assert!(embedder.embed(&["a title".into()]).await.is_err(), "{name}");
        let batches = config.build_batches().unwrap();
        let line = batches.encode("k-0", &request());
        assert!(batches.create(&line, "key").await.is_err(), "{name}");
        assert_eq!(keys_seen(&other).await, Vec::<String>::new(), "{name}");
    }
    let (api, other) = (MockServer::start().await, other_origin().await);
    redirect(
        &api,
        "POST",
        "/v1/messages/batches",
        format!("{}/b", other.uri()),
    )
    .await;
    let batches = AnthropicBackend::builder()
        .base_url(api.uri())
        .api_key(KEY)
        .build_batches()
        .unwrap();
    let line = batches.encode("k-0", &request());
    assert!(batches.create(&line, "key").await.is_err());
    assert_eq!(keys_seen(&other).await, Vec::<String>::new());
}

#[tokio::test]
async fn same_origin_redirects_keep_the_key() {
    let api = MockServer::start().await;
    redirect(
        &api,
        "GET",
        "/v1/files/file-out/content",
        format!("{}/v1/files/file-moved/content", api.uri()),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1/files/file-moved/content"))
        .respond_with(ResponseTemplate::new(200).set_body_string(""))
        .mount(&api)
        .await;
    let batches = OpenAiBackend::builder()
        .base_url(format!("{}/v1", api.uri()))
        .api_key(KEY)
        .build_batches()
        .unwrap();
    let mut info = BatchInfo::new("batch_1", BatchStatus::Completed);
    info.locations.insert("output".into(), "file-out".into());
    batches.results(&info).await.unwrap();
    let requests = api.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    for request in requests {
        assert_eq!(
            request.headers.get("authorization").unwrap(),
            &format!("Bearer {KEY}")
        );
    }
}

//! Embeddings over HTTP and through the runner's machinery: `OpenAiEmbedder` against a fake
//! `/v1/embeddings` on wiremock (the body sent, answers in any order, errors classified), and
//! `run::Embedding` batching by inputs and tokens, waiting out 429s, stopping on a bad key,
//! and journalling so a rerun makes no call. The merger through the runner keeps aliases with
//! their batches and reports the consolidation's usage apart.

#![cfg(all(feature = "openai", feature = "mock"))]
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::sync::{Arc, Mutex};

use dynbatch::Batcher;
use dynbatch::TokioTimer;
use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::openai::{OpenAiBackend, OpenAiEmbedder};
use dynbatch::backend::{EmbedLimits, Embedder, ErrorKind};
use dynbatch::patterns::SemanticMerger;
use dynbatch::store::MemoryStore;
use dynbatch::{Embedding, RunConfig, Runner};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support_bundled;
use support_bundled::bundled;

/// Embeds each text as a vector of its letters' counts (26 dimensions), answering in reverse
/// order with indices; plays `errors` (status, body) first. Records every body.
struct FakeEmbeddings {
    errors: Mutex<Vec<(u16, Value)>>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn letters(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; 26];
    for b in text.bytes().filter(u8::is_ascii_lowercase) {
        v[usize::from(b - b'a')] += 1.0;
    }
    v
}

impl Respond for FakeEmbeddings {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        if let Some((status, error)) = self.errors.lock().unwrap().pop() {
            let mut t = ResponseTemplate::new(status).set_body_json(error);
            if status == 429 {
                t = t.insert_header("retry-after", "1");
            }
            return t;
        }
        let input: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap();
        let mut data: Vec<Value> = input
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": letters(t)}))
            .collect();
        data.reverse();
        ResponseTemplate::new(200)
            .insert_header("x-ratelimit-limit-requests", "3000")
            .insert_header("x-ratelimit-remaining-requests", "2999")
            .set_body_json(json!({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": input.len() * 3, "total_tokens": input.len() * 3}}))
    }
}

async fn fake(errors: Vec<(u16, Value)>) -> (MockServer, Arc<Mutex<Vec<Value>>>) {
    let server = MockServer::start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeEmbeddings {
            errors: Mutex::new(errors),
            bodies: bodies.clone(),
        })
        .mount(&server)
        .await;
    (server, bodies)
}

fn embedder(server: &MockServer) -> OpenAiEmbedder {
    OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key("sk-test")
        .build_embedder("text-embedding-3-small")
        .unwrap()
}

/// An embedder with small limits, to see the batching.
#[derive(Debug)]
struct Small(OpenAiEmbedder);

#[dynbatch::backend::async_trait]
impl Embedder for Small {
    async fn embed(
        &self,
        texts: &[String],
    ) -> Result<dynbatch::backend::Embeddings, dynbatch::backend::BackendError> {
        self.0.embed(texts).await
    }
    fn limits(&self) -> EmbedLimits {
        EmbedLimits::new(3, 1_000)
    }
    fn model(&self) -> &str {
        self.0.model()
    }
}

#[tokio::test]
async fn the_body_the_order_and_the_errors() {
    let (server, bodies) = fake(Vec::new()).await;
    let texts: Vec<String> = ["abc", "zz", "aab"].map(String::from).to_vec();
    let out = embedder(&server).embed(&texts).await.unwrap();
    // Answers came reversed, with indices: put back in order.
    assert_eq!(
        out.vectors,
        texts.iter().map(|t| letters(t)).collect::<Vec<_>>()
    );
    assert_eq!(out.tokens, 9);
    assert_eq!(out.rate_limits.unwrap().requests.limit, Some(3000));
    let body = bodies.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["input"], json!(["abc", "zz", "aab"]));

    let error = |kind: &str| json!({"error": {"message": "no", "type": kind}});
    for (status, kind, expected) in [
        (401, "invalid_api_key", ErrorKind::Authentication),
        (429, "requests", ErrorKind::RateLimited),
        (400, "invalid_request_error", ErrorKind::BadRequest),
        (503, "server_error", ErrorKind::Overloaded),
    ] {
        let (server, _) = fake(vec![(status, error(kind))]).await;
        let e = embedder(&server).embed(&texts).await.unwrap_err();
        assert_eq!(e.kind(), expected, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_paced_retried_and_journalled() {
    // A 429 (waited out), a 503 (retried), then answers.
    let error = |kind: &str| json!({"error": {"message": "slow down", "type": kind}});
    let (server, bodies) = fake(vec![(503, error("server_error")), (429, error("requests"))]).await;
    let journal = MemoryStore::default();
    let config = RunConfig::builder()
        .base_delay(std::time::Duration::from_millis(10))
        .max_delay(std::time::Duration::from_millis(20))
        .build()
        .unwrap();
    let wrapped = Embedding::new(Small(embedder(&server)), TokioTimer, config.clone())
        .with_store(journal.clone());
    let texts: Vec<String> = (0..7).map(|i| format!("text {i} abc")).collect();
    let out = wrapped.embed(&texts).await.unwrap();
    assert_eq!(
        out.vectors,
        texts.iter().map(|t| letters(t)).collect::<Vec<_>>()
    );
    // 7 texts in requests of at most 3: 3 answered calls, after a 429 and a 503.
    assert_eq!(out.calls, 3);
    let sent: Vec<usize> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sent, vec![3, 3, 3, 3, 1]);

    // A rerun with the journal makes no call; a new text makes one, for itself alone.
    let again = Embedding::new(Small(embedder(&server)), TokioTimer, config.clone())
        .with_store(journal.clone());
    let out = again.embed(&texts).await.unwrap();
    assert_eq!(out.calls, 0);
    assert_eq!(bodies.lock().unwrap().len(), 5);
    let mut more = texts.clone();
    more.push("something new".into());
    let out = again.embed(&more).await.unwrap();
    assert_eq!(out.calls, 1);
    assert_eq!(out.vectors[7], letters("something new"));
    assert_eq!(
        bodies.lock().unwrap().last().unwrap()["input"],
        json!(["something new"])
    );

    // A bad key stops at once: one call, no retry.
    let (server, bodies) = fake(vec![(401, error("invalid_api_key")); 5]).await;
    let e = Embedding::new(Small(embedder(&server)), TokioTimer, config)
        .embed(&texts)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert_eq!(bodies.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_merges_with_the_merger_given_and_keeps_provenance() {
    let (server, bodies) = fake(Vec::new()).await;
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let merger = SemanticMerger::new(Embedding::new(
        embedder(&server),
        TokioTimer,
        RunConfig::default(),
    ))
    .with_threshold(0.99);
    let report = Runner::new(MockBackend::new(), TokioTimer)
        .with_merger(merger)
        .run(plan, &clusters, "home espresso")
        .await
        .unwrap();
    report.check_accounting().unwrap();
    let usage = report.usage.consolidation.clone().unwrap();
    assert_eq!(usage.merger, "semantic");
    assert!(usage.embedded > 0);
    assert_eq!(usage.embedding_calls, 1);
    assert_eq!(bodies.lock().unwrap().len(), 1);
    // Every raw pattern of every succeeded cluster is an alias of exactly one pattern, with
    // its cluster's batch.
    let raw: usize = report
        .cluster_patterns
        .iter()
        .map(|c| c.patterns.len())
        .sum();
    let aliases: Vec<_> = report.patterns.iter().flat_map(|p| &p.aliases).collect();
    assert_eq!(aliases.len(), raw);
    for a in &aliases {
        let outcome = report.outcome(&a.cluster).unwrap();
        assert_eq!(a.batch, Some(outcome.batch));
        assert!(report.merged_into(&a.cluster, &a.pattern).is_some());
        assert!(report.plan.entry(&a.cluster).is_some());
    }
    assert!(report.outcome("no such cluster").is_none());
    // The aliases are in the report's JSON.
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["patterns"][0]["aliases"].is_array());
    assert_eq!(json["usage"]["consolidation"]["merger"], "semantic");

    // An embedding server that is down: the lexical merger instead, and a warning.
    let down = SemanticMerger::new(
        OpenAiBackend::builder()
            .base_url("http://127.0.0.1:9/v1")
            .build_embedder("m")
            .unwrap(),
    );
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let report = Runner::new(MockBackend::new(), TokioTimer)
        .with_merger(down)
        .run(plan, &clusters, "home espresso")
        .await
        .unwrap();
    assert!(!report.patterns.is_empty());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("patterns merged by shared words instead")),
        "{:?}",
        report.warnings
    );
    assert_eq!(report.usage.consolidation.unwrap().merger, "lexical");
}

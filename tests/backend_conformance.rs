//! `testing::run_backend_conformance` on our own backends (the mock, and `OpenAiBackend` over
//! real HTTP), and on broken ones it must catch.

#![allow(clippy::unwrap_used)]

use crate::batch_server;

use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::backend::openai::OpenAiBackend;
use dynbatch::backend::{
    BackendError, ChatRequest, ChatResponse, LlmBackend, ResponseFormat, async_trait,
};
use dynbatch::prompt::OutputMode;
use dynbatch::testing::{BackendConformanceError, run_backend_conformance};

#[tokio::test]
async fn our_backends_pass() {
    assert_eq!(
        run_backend_conformance(&MockBackend::new()).await.unwrap(),
        4
    );
    let (server, _fake) = batch_server::FakeBatchApi::start(1).await;
    let backend = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap();
    assert_eq!(run_backend_conformance(&backend).await.unwrap(), 4);
}

/// Answers whatever `answer` says; refuses schemas when `picky`.
#[derive(Debug)]
struct Broken {
    answer: &'static str,
    picky: bool,
}

#[async_trait]
impl LlmBackend for Broken {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        if self.picky
            && !matches!(
                request.response_format,
                ResponseFormat::JsonObject | ResponseFormat::Text
            )
        {
            return Err(BackendError::UnsupportedFormat("no schemas here".into()));
        }
        Ok(ChatResponse {
            content: self.answer.into(),
            ..ChatResponse::default()
        })
    }
}

#[tokio::test]
async fn broken_backends_are_caught_by_name() {
    let good = r#"{"c1": [{"pattern": "P", "template": "t", "examples": [], "rationale": "r"}]}"#;
    // A server that takes no schema, only json_object and text: passes on those two.
    let picky = Broken {
        answer: good,
        picky: true,
    };
    assert_eq!(run_backend_conformance(&picky).await.unwrap(), 2);
    for (answer, says) in [
        ("not json", "not the requested JSON"),
        ("{}", "names no cluster"),
        (r#"{"c7": []}"#, "names cluster 7"),
    ] {
        let err = run_backend_conformance(&Broken {
            answer,
            picky: false,
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(says), "{answer}: {text}");
        assert!(text.starts_with("output mode strict_schema"), "{text}");
        match (answer, &err) {
            ("not json", BackendConformanceError::Unparsable { content, .. }) => {
                assert_eq!(content, "not json");
            }
            ("{}", BackendConformanceError::NoCluster { mode }) => {
                assert_eq!(*mode, OutputMode::StrictSchema);
            }
            (_, BackendConformanceError::ForeignCluster { cluster, .. }) => assert_eq!(*cluster, 7),
            _ => panic!("{answer}: {err:?}"),
        }
    }
    // A backend that fails: the failure, named, the backend's error as its source.
    let failing = MockBackend::scripted([MockStep::Unauthorized]);
    let err = run_backend_conformance(&failing).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the request failed: authentication"),
        "{err}"
    );
    let source = std::error::Error::source(&err).unwrap();
    assert!(
        source
            .downcast_ref::<BackendError>()
            .is_some_and(|e| !e.is_retryable())
    );
}

//! [`run_store_conformance`]: the suite for `RunStore` implementations.

/// What a [`RunStore`](crate::store::RunStore) did that a journal must not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreConformanceError {
    /// A call failed.
    #[error("{check}: {source}")]
    Store {
        /// Which check.
        check: &'static str,
        /// The store's error.
        #[source]
        source: crate::store::StoreError,
    },
    /// A call answered, but not what it should have.
    #[error("{check}: {what}")]
    Wrong {
        /// Which check.
        check: &'static str,
        /// What was wrong.
        what: String,
    },
}

/// The conformance suite for [`RunStore`](crate::store::RunStore) implementations, as
/// [`run_backend_conformance`](super::run_backend_conformance) is for backends: a key never written is absent; an answer
/// comes back exactly as written (every field, unicode and a megabyte of content included),
/// and a second write replaces it; keys of different requests and of a request's later
/// occurrences are apart; batch records come back as written, pending then created (or the
/// store says it keeps none with [`StoreError::Unsupported`](crate::store::StoreError), and
/// then `get_batch` finds nothing). Run it on a fresh store: it writes a few entries.
///
/// ```
/// # #[cfg(feature = "testing")] {
/// dynbatch::testing::run_store_conformance(&dynbatch::store::MemoryStore::default()).unwrap();
/// # }
/// ```
///
/// # Errors
/// The first check that failed, and why.
pub fn run_store_conformance(
    store: &dyn crate::store::RunStore,
) -> Result<(), StoreConformanceError> {
    use crate::backend::{ChatMessage, ChatRequest, ResponseFormat, Role};
    use crate::store::RequestKey;

    let request = |text: &str| {
        ChatRequest::new(
            "gpt-4o-mini",
            vec![ChatMessage {
                role: Role::User,
                content: text.into(),
            }],
        )
        .with_max_tokens(100)
        .with_response_format(ResponseFormat::JsonObject)
    };
    let a = RequestKey::of(&request("conformance: a"));
    let b = RequestKey::of(&request("conformance: b"));
    check_answers(store, &a, &b)?;
    check_batch_records(store)
}

fn wrong(check: &'static str, what: String) -> StoreConformanceError {
    StoreConformanceError::Wrong { check, what }
}

fn call(check: &'static str) -> impl Fn(crate::store::StoreError) -> StoreConformanceError {
    move |source| StoreConformanceError::Store { check, source }
}

/// The answer part of [`run_store_conformance`]: absent before a put, exactly as written
/// after, under its key only, replaced by a second put.
fn check_answers(
    store: &dyn crate::store::RunStore,
    a: &crate::store::RequestKey,
    b: &crate::store::RequestKey,
) -> Result<(), StoreConformanceError> {
    use crate::backend::{ChatResponse, FinishReason, TokenUsage};

    if store
        .get(a)
        .map_err(call("get of a key never written"))?
        .is_some()
    {
        return Err(wrong(
            "get of a key never written",
            "found an answer".into(),
        ));
    }
    let answer = ChatResponse {
        content: format!("{{\"c1\": [\"é漢字🙂\"]}}{}", " ".repeat(1 << 20)),
        finish_reason: FinishReason::Length,
        usage: Some(TokenUsage::new(12, 34).with_cache(5, 6)),
        model: "gpt-4o-mini-2024-07-18".into(),
        refusal: Some("no".into()),
        request_id: Some("req_1".into()),
        rate_limits: None,
    };
    store.put(a, &answer).map_err(call("put"))?;
    match store.get(a).map_err(call("get after put"))? {
        Some(got) if got == answer => {}
        Some(got) => {
            return Err(wrong(
                "get after put",
                format!("another answer came back: {:?}", got.model),
            ));
        }
        None => return Err(wrong("get after put", "no answer".into())),
    }
    if store.get(b).map_err(call("get of another key"))?.is_some()
        || store
            .get(&a.occurrence(1))
            .map_err(call("get of a later occurrence"))?
            .is_some()
    {
        return Err(wrong(
            "keys apart",
            "another key found the answer written under one".into(),
        ));
    }
    let second = ChatResponse {
        content: "{}".into(),
        ..answer
    };
    store.put(a, &second).map_err(call("second put"))?;
    if store
        .get(a)
        .map_err(call("get after a second put"))?
        .as_ref()
        != Some(&second)
    {
        return Err(wrong("a second put", "did not replace the first".into()));
    }
    Ok(())
}

/// The batch-record part of [`run_store_conformance`].
fn check_batch_records(store: &dyn crate::store::RunStore) -> Result<(), StoreConformanceError> {
    use crate::store::{BatchRecord, RequestKey, StoreError};
    let key = RequestKey::of_batch_input(b"conformance batch input");
    let pending = BatchRecord {
        batch_id: None,
        sent_at: Some(1_700_000_000),
        requests: 3,
    };
    match store.put_batch(&key, &pending) {
        Err(StoreError::Unsupported(_)) => {
            if store.get_batch(&key).map_err(call("get_batch"))?.is_some() {
                return Err(wrong(
                    "batch records",
                    "put_batch is unsupported, yet get_batch found one".into(),
                ));
            }
            return Ok(());
        }
        Err(e) => return Err(call("put_batch")(e)),
        Ok(()) => {}
    }
    if store.get_batch(&key).map_err(call("get_batch"))?.as_ref() != Some(&pending) {
        return Err(wrong(
            "batch records",
            "the pending record did not come back".into(),
        ));
    }
    let created = BatchRecord {
        batch_id: Some("batch_1".into()),
        ..pending
    };
    store.put_batch(&key, &created).map_err(call("put_batch"))?;
    if store.get_batch(&key).map_err(call("get_batch"))?.as_ref() != Some(&created) {
        return Err(wrong(
            "batch records",
            "the created record did not replace the pending one".into(),
        ));
    }
    Ok(())
}

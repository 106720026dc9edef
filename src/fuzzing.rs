//! Entry points for the fuzz targets under `fuzz/`, compiled only with `--cfg fuzzing` (as
//! `cargo fuzz` builds): each reads what another program wrote, from arbitrary bytes, the
//! way the crate reads it, and panics only on a bug (a panic inside the crate, or two readers
//! that disagree). Not part of the public API.

#![allow(
    missing_docs,
    clippy::missing_panics_doc,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::num::NonZeroUsize;

use crate::model::Cluster;
use crate::strategy::PatternRange;

/// A batch of three clusters to validate answers against.
fn clusters() -> Vec<Cluster> {
    crate::testing::distinct_clusters(3)
}

/// The model's answer, as every output mode hands it over (a text answer, a JSON object, a
/// schema-constrained object: all arrive as content), parsed, salvaged when cut off, and
/// validated against a batch of three.
pub fn response(data: &[u8]) {
    let Ok(content) = std::str::from_utf8(data) else {
        return;
    };
    let clusters = clusters();
    let members: Vec<&Cluster> = clusters.iter().collect();
    let range = PatternRange { min: 1, max: 3 };
    if let Ok(parsed) = crate::response::parse(content) {
        let validated = crate::response::validate(parsed, &members, range, 10);
        assert_eq!(validated.patterns.len(), members.len());
    }
    if let Some(salvaged) = crate::response::salvage(content) {
        let _ = crate::response::validate(salvaged, &members, range, 10);
    }
}

/// `read_clusters` and `read_clusters_parallel` (small windows, so clusters cross them) agree
/// with `serde_json` on every input: the same clusters, or both an error.
pub fn read_clusters(data: &[u8]) {
    let expected: Result<Vec<Cluster>, _> = serde_json::from_slice(data);
    let serial = crate::model::read_clusters(data);
    let two = NonZeroUsize::new(2).expect("2 is not 0");
    let parallel = crate::model::read::read_windows_for_fuzzing(data, two, 64);
    match (&expected, &serial, &parallel) {
        (Ok(e), Ok(s), Ok(p)) => {
            assert_eq!(e, s, "read_clusters differs from serde_json");
            assert_eq!(e, p, "read_clusters_parallel differs from serde_json");
        }
        (Err(_), Err(_), Err(_)) => {}
        _ => panic!(
            "serde_json: {:?}; read_clusters: {:?}; read_clusters_parallel: {:?}",
            expected.as_ref().map(Vec::len),
            serial.as_ref().map(Vec::len),
            parallel.as_ref().map(Vec::len)
        ),
    }
}

/// A chat-completions response body with a status and rate-limit headers (the first bytes
/// pick the status; the header values are cut from the data too).
#[cfg(feature = "openai")]
pub fn openai_wire(data: &[u8]) {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let statuses = [
        200, 201, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504,
    ];
    let status = statuses[usize::from(pick) % statuses.len()];
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once('\n').unwrap_or(("", &text));
    let mut headers = HeaderMap::new();
    let names = [
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ];
    for (name, value) in names.iter().zip(head.split('|')) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let _ = crate::backend::RateLimitInfo::from_headers(|name| {
        headers.get(name).and_then(|v| v.to_str().ok())
    });
    // Anthropic's headers carry RFC 3339 times: every header value read as one.
    let _ = crate::backend::RateLimitInfo::from_anthropic_headers(
        |_| Some(head),
        std::time::UNIX_EPOCH,
    );
    let _ = crate::backend::openai::parse_response(
        status,
        &headers,
        body,
        Some("req_fuzz".into()),
        "gpt-4o-mini",
    );
    let _ = crate::backend::openai::classify(status, &headers, body, None);
}

/// The Messages API wire format: a response body (any status) read and classified, with
/// Anthropic's headers (every value read as each of them).
#[cfg(feature = "anthropic")]
pub fn anthropic_wire(data: &[u8]) {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let statuses = [200, 400, 401, 402, 403, 404, 408, 413, 429, 500, 504, 529];
    let status = statuses[usize::from(pick) % statuses.len()];
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once('\n').unwrap_or(("", &text));
    let mut headers = HeaderMap::new();
    let names = [
        "retry-after",
        "x-should-retry",
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
    ];
    for (name, value) in names.iter().zip(head.split('|')) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let _ = crate::backend::anthropic::fuzz_parse(status, &headers, body);
    let _ = crate::backend::anthropic::read_batch_results("results", body);
}

/// Batch results (`OpenAI`'s output and error files; Anthropic's results with feature
/// `anthropic`), read against the input of a three-cluster plan.
#[cfg(feature = "openai")]
pub fn batch_lines(data: &[u8]) {
    use std::sync::OnceLock;
    static INPUT: OnceLock<(crate::batch::BatchInput, Vec<String>)> = OnceLock::new();
    let (input, ids) = INPUT.get_or_init(|| {
        let clusters = crate::testing::distinct_clusters(3);
        let config = crate::BatchingConfig::builder()
            .min_batch_size(1)
            .max_batch_size(1)
            .max_total_calls(3)
            .build()
            .expect("a valid config");
        let plan = crate::Batcher::new(config)
            .plan(&clusters)
            .expect("a plan")
            .into_owned();
        let input = crate::batch::BatchInput::unencoded(
            &plan,
            &clusters,
            "x",
            &crate::RunConfig::default(),
        )
        .expect("an input");
        let ids = input.custom_ids().to_vec();
        (input, ids)
    });
    let text = String::from_utf8_lossy(data);
    // Known ids make it past the first check: `@0`, `@1`, `@2` in the data stand for them.
    let text = ids
        .iter()
        .enumerate()
        .fold(text.into_owned(), |t, (i, id)| {
            t.replace(&format!("@{i}"), id)
        });
    let mut results = crate::batch::BatchResults::new(input);
    results.add(
        "output",
        crate::backend::openai::read_batch_file("output", &text),
    );
    results.add(
        "errors",
        crate::backend::openai::read_batch_file("errors", &text),
    );
    #[cfg(feature = "anthropic")]
    results.add(
        "results",
        crate::backend::anthropic::read_batch_results("results", &text),
    );
    // Every request has at most one outcome. (An answer line with a 5xx status is both
    // answered and worth another batch: the counts overlap by design.)
    assert!(results.answered() <= results.with_line());
    assert!(results.with_line() <= input.len());
    let unanswered = results.unanswered();
    assert!(unanswered.windows(2).all(|w| w[0] < w[1]));
    assert!(unanswered.iter().all(|&i| i < input.len()));
}

/// Journal entries as another program (or a damaged disk) left them: the bytes stored as an
/// answer and as a batch record, read back through the store.
#[cfg(feature = "store")]
pub fn journal(data: &[u8]) {
    use std::sync::OnceLock;

    use crate::store::{RequestKey, RunStore, SqliteStore};
    static STORE: OnceLock<(SqliteStore, String)> = OnceLock::new();
    let (store, path) = STORE.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("dynbatch-fuzz-{}.journal", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).expect("a journal");
        (store, path.to_string_lossy().into_owned())
    });
    let key = RequestKey::from_bytes([7; 32]);
    let connection = rusqlite::Connection::open(path).expect("the journal again");
    let text = String::from_utf8_lossy(data);
    for (table, column) in [
        ("dynbatch_answers", "answer"),
        ("dynbatch_batches", "record"),
    ] {
        connection
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO {table} (key, {column}, recorded_at) VALUES (?1, ?2, 0)"
                ),
                rusqlite::params![key.as_bytes().as_slice(), text],
            )
            .expect("an insert");
    }
    if let Ok(Some(answer)) = store.get(&key) {
        // What was read can be written and read back the same.
        store.put(&key, &answer).expect("a put");
        assert_eq!(store.get(&key).expect("a get"), Some(answer));
    }
    let _ = store.get_batch(&key);
    // Raw bytes that are not text at all.
    connection
        .execute(
            "INSERT OR REPLACE INTO dynbatch_answers (key, answer, recorded_at) VALUES (?1, ?2, 0)",
            rusqlite::params![key.as_bytes().as_slice(), data],
        )
        .expect("an insert");
    let _ = store.get(&key);
}

//! The journal's cost next to an LLM call: recording one answer durably (an SQLite transaction
//! in WAL mode with `synchronous = FULL`, so one fsync), looking one up in a journal of 100,000
//! answers, and the request key (SHA-256 of a rendered request).
//!
//! ```text
//! cargo bench --bench journal --features store
//! ```

#![allow(clippy::panic, clippy::cast_possible_truncation)]

use std::fmt::Write as _;

use criterion::{Criterion, criterion_group, criterion_main};
use dynbatch::backend::{ChatMessage, ChatRequest, ChatResponse, ResponseFormat, Role, TokenUsage};
use dynbatch::store::{MemoryStore, RequestKey, RunStore, SqliteStore};

const ENTRIES: usize = 100_000;

/// A rendered request of ~8 clusters: ~7 KB of prompt.
fn request(n: usize) -> ChatRequest {
    let mut user = String::new();
    for c in 0..8 {
        let _ = write!(user, "CLUSTER {c} [WIDE] - Quality: 90%\nTop performers:\n");
        for t in 0..10 {
            let _ = writeln!(
                user,
                "- \"I Tried Topic{n}-{c} Setup {t} for 30 Days\" (2.5x)"
            );
        }
        user.push_str("---\n");
    }
    ChatRequest::new(
        "gpt-4o-mini",
        vec![
            ChatMessage {
                role: Role::System,
                content: "You analyse YouTube title patterns.".into(),
            },
            ChatMessage {
                role: Role::User,
                content: user,
            },
        ],
    )
    .with_max_tokens(2400)
    .with_response_format(ResponseFormat::JsonObject)
}

/// An answer of ~2 KB, as a model returns for a batch.
fn answer() -> ChatResponse {
    ChatResponse {
        content: format!("{{\"clusters\": [{}]}}", "{\"cluster\": 1, \"patterns\": [{\"pattern\": \"I Tried … for … Days\", \"template\": \"I Tried [X] for [X] Days\", \"examples\": [\"I Tried Chess for 30 Days\"], \"rationale\": \"shared\"}]},".repeat(8)),
        usage: Some(TokenUsage::new(1800, 600)),
        model: "gpt-4o-mini".into(),
        ..ChatResponse::default()
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("dynbatch-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let answer = answer();
    let text = serde_json::to_string(&answer).unwrap_or_default();

    let mut group = c.benchmark_group("journal");
    group.bench_function("request_key_7kb", |b| {
        let r = request(0);
        b.iter(|| RequestKey::of(&r));
    });

    let path = dir.join("put.journal");
    let journal = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0u32;
    group.bench_function("put_durable", |b| {
        b.iter(|| {
            n += 1;
            let key = RequestKey::of(&request(0)).occurrence(n);
            journal.put(&key, &answer).unwrap_or_else(|e| panic!("{e}"));
        });
    });

    // A journal of 100,000 answers, filled in one transaction for the setup's sake.
    let path = dir.join("lookup.journal");
    drop(SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
    let keys: Vec<RequestKey> = (0..ENTRIES)
        .map(|i| RequestKey::of(&request(0)).occurrence(i as u32 + 1))
        .collect();
    {
        let mut db = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let tx = db.transaction().unwrap_or_else(|e| panic!("{e}"));
        for key in &keys {
            tx.execute(
                "INSERT INTO dynbatch_answers (key, answer, recorded_at) VALUES (?1, ?2, 0)",
                rusqlite::params![key.as_bytes().as_slice(), text],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        tx.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    let journal = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(journal.len().unwrap_or(0), ENTRIES as u64);
    let mut i = 0usize;
    group.bench_function("get_hit_of_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            journal.get(&keys[i]).unwrap_or_else(|e| panic!("{e}"))
        });
    });
    let missing = RequestKey::of(&request(1));
    group.bench_function("get_miss_of_100k", |b| {
        b.iter(|| journal.get(&missing).unwrap_or_else(|e| panic!("{e}")));
    });

    let memory = MemoryStore::default();
    for key in &keys {
        memory.put(key, &answer).unwrap_or_else(|e| panic!("{e}"));
    }
    group.bench_function("memory_get_hit_of_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            memory.get(&keys[i]).unwrap_or_else(|e| panic!("{e}"))
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

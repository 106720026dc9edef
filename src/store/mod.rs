//! [`RunStore`]: a journal of answered requests, so a run killed at any instant resumes with no
//! answered call paid twice. Keyed by a stable hash of the rendered request ([`RequestKey`]), so
//! a changed prompt or setting is never served a stale answer; it keeps the raw answer with its
//! usage, so a change of validation re-uses what was paid for.
//!
//! [`MemoryStore`] for tests and one-process caching; [`SqliteStore`] (feature `store`), a
//! durable journal file.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::backend::{ChatRequest, ChatResponse};

#[cfg(feature = "store")]
mod sqlite;
mod writer;

#[cfg(feature = "store")]
pub use sqlite::SqliteStore;
pub(crate) use writer::Writer;

/// The key of a request: SHA-256 of its model, messages, temperature, `max_tokens` and response
/// format, in a fixed encoding (stable across runs, processes and versions of this crate).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey([u8; 32]);

impl RequestKey {
    /// The key of `request`.
    pub fn of(request: &ChatRequest) -> Self {
        let mut hash = Sha256::new();
        let mut field = |tag: &[u8], bytes: &[u8]| {
            hash.update(tag);
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(b"dynbatch-request-v1", b"");
        field(b"model", request.model.as_bytes());
        for message in &request.messages {
            let role = serde_json::to_string(&message.role).unwrap_or_default();
            field(b"role", role.as_bytes());
            field(b"content", message.content.as_bytes());
        }
        field(b"temperature", &request.temperature.to_bits().to_le_bytes());
        field(b"max_tokens", &request.max_tokens.to_le_bytes());
        let format = serde_json::to_string(&request.response_format).unwrap_or_default();
        field(b"response_format", format.as_bytes());
        Self(hash.finalize().into())
    }

    /// The key of the `n`-th time (from 0) the same request is asked in one run: asking again
    /// is asking for a new answer (a re-ask of a lone cluster repeats the request of its split
    /// half), so each occurrence has its own entry, and a resumed run replays them in order.
    #[must_use]
    pub fn occurrence(self, n: u32) -> Self {
        if n == 0 {
            return self;
        }
        let mut hash = Sha256::new();
        hash.update(b"dynbatch-occurrence-v1");
        hash.update(self.0);
        hash.update(n.to_le_bytes());
        Self(hash.finalize().into())
    }

    /// The key of a Batch API input file (its exact bytes), kept apart from request keys.
    pub fn of_batch_input(jsonl: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"dynbatch-batch-input-v1");
        hash.update((jsonl.len() as u64).to_le_bytes());
        hash.update(jsonl);
        Self(hash.finalize().into())
    }

    /// The key of the embedding of `text` by `model`, kept apart from request keys.
    pub fn of_embedding(model: &str, text: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"dynbatch-embedding-v1");
        for part in [model, text] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        Self(hash.finalize().into())
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from its 32 bytes (as a store wrote them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestKey({self})")
    }
}

/// Why a store could not read or write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is not a journal of this crate (not a database, or another program's).
    #[error("{path}: not a dynbatch journal: {reason}")]
    Foreign {
        /// The file.
        path: String,
        /// What it is instead.
        reason: String,
    },
    /// The journal was written by a newer version of this crate, in a format this one does not
    /// read.
    #[error(
        "{path}: written by a newer dynbatch (journal format {found}); this one reads format {supported}: upgrade dynbatch or use another journal"
    )]
    NewerFormat {
        /// The file.
        path: String,
        /// The format found.
        found: u32,
        /// The format this version reads and writes.
        supported: u32,
    },
    /// A stored entry (or the file) is damaged.
    #[error("corrupt journal entry: {0}")]
    Corrupt(String),
    /// The database or file system failed.
    #[error("journal: {0}")]
    Io(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store cannot do what was asked (e.g. keep Batch API submissions).
    #[error("journal: {0}")]
    Unsupported(String),
}

/// A journal of answered requests. Two required methods; `Send + Sync + Debug`; `&T`, `Box<T>`
/// and `Arc<T>` forward to `T`, so `Arc<dyn RunStore>` works.
///
/// The runner looks a request up before every call and records every answer (any 2xx, even
/// one it cannot use) **before** it reports the answer's clusters as succeeded.
///
/// ```
/// use dynbatch::backend::{ChatRequest, ChatResponse, ResponseFormat};
/// use dynbatch::store::{MemoryStore, RequestKey, RunStore};
///
/// let request = ChatRequest::new("gpt-4o-mini", vec![])
///     .with_max_tokens(300)
///     .with_response_format(ResponseFormat::JsonObject);
/// let store = MemoryStore::default();
/// let key = RequestKey::of(&request);
/// assert!(store.get(&key)?.is_none());
/// store.put(&key, &ChatResponse { content: "{}".into(), ..ChatResponse::default() })?;
/// assert_eq!(store.get(&key)?.unwrap().content, "{}");
/// # Ok::<(), dynbatch::store::StoreError>(())
/// ```
pub trait RunStore: Send + Sync + fmt::Debug {
    /// The answer recorded for `key`, if any.
    ///
    /// # Errors
    /// A [`StoreError`] when the store cannot be read or the entry is damaged.
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError>;

    /// Records the answer to `key`, durably before it returns (for a durable store).
    ///
    /// # Errors
    /// A [`StoreError`] when the store cannot be written.
    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError>;

    /// Whether a write may block the thread that makes it (a sync to disk, a lock, the
    /// network). The runner then writes from a thread of its own and hears of an answer once
    /// that write is acknowledged, so that no executor thread waits on the journal. Default
    /// `true`; [`MemoryStore`] says `false` and is written in place.
    fn writes_block(&self) -> bool {
        true
    }

    /// Records several answers, every one durably before it returns. The runner's journal
    /// writer calls it with every answer waiting to be recorded, so a store can commit them
    /// together (one transaction and one sync; [`SqliteStore`] does). The default calls
    /// [`put`](RunStore::put) for each, on up to 32 threads of their own when there are several
    /// (so a store whose writes wait on the network waits about once per group); the first
    /// error wins.
    ///
    /// # Errors
    /// A [`StoreError`] when an answer cannot be written.
    fn put_all(&self, entries: &[(RequestKey, ChatResponse)]) -> Result<(), StoreError> {
        if let [(key, answer)] = entries {
            return self.put(key, answer);
        }
        // At most 32 threads, each writing its share in turn.
        let share = entries.len().div_ceil(32).max(1);
        std::thread::scope(|scope| {
            let writes: Vec<_> = entries
                .chunks(share)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .try_for_each(|(key, answer)| self.put(key, answer))
                    })
                })
                .collect();
            writes.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(StoreError::Io("a journal write panicked".into())))
            })
        })
    }

    /// The batch submission recorded for the batch input `key`
    /// ([`RequestKey::of_batch_input`]), if any. The default keeps none.
    ///
    /// # Errors
    /// A [`StoreError`] when the store cannot be read or the entry is damaged.
    fn get_batch(&self, key: &RequestKey) -> Result<Option<BatchRecord>, StoreError> {
        let _ = key;
        Ok(None)
    }

    /// Records a batch submission of the batch input `key`, durably before it returns. Called
    /// just before the batch is created (`batch_id` still `None`: pending) and again once it
    /// exists, so a process killed in between looks for the batch before it creates another.
    ///
    /// # Errors
    /// The default: [`StoreError::Unsupported`], before anything is submitted, so a store
    /// that cannot keep batch ids never leads to a batch paid for twice.
    fn put_batch(&self, key: &RequestKey, record: &BatchRecord) -> Result<(), StoreError> {
        let _ = (key, record);
        Err(StoreError::Unsupported(
            "this store keeps no batch submissions".into(),
        ))
    }
}

/// A batch submission, as a [`RunStore`] keeps it: pending (the create was sent, its answer
/// not yet recorded) or created.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchRecord {
    /// The batch; `None` while its creation is pending.
    #[serde(default)]
    pub batch_id: Option<String>,
    /// When the create was sent (Unix seconds): where to look for the batch if its answer was
    /// lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
    /// Requests in the batch.
    #[serde(default)]
    pub requests: usize,
}

impl<T: RunStore + ?Sized> RunStore for &T {
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        (**self).get(key)
    }
    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
        (**self).put(key, answer)
    }
    fn get_batch(&self, key: &RequestKey) -> Result<Option<BatchRecord>, StoreError> {
        (**self).get_batch(key)
    }
    fn put_batch(&self, key: &RequestKey, record: &BatchRecord) -> Result<(), StoreError> {
        (**self).put_batch(key, record)
    }
    fn put_all(&self, entries: &[(RequestKey, ChatResponse)]) -> Result<(), StoreError> {
        (**self).put_all(entries)
    }
    fn writes_block(&self) -> bool {
        (**self).writes_block()
    }
}

impl<T: RunStore + ?Sized> RunStore for Box<T> {
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        (**self).get(key)
    }
    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
        (**self).put(key, answer)
    }
    fn get_batch(&self, key: &RequestKey) -> Result<Option<BatchRecord>, StoreError> {
        (**self).get_batch(key)
    }
    fn put_batch(&self, key: &RequestKey, record: &BatchRecord) -> Result<(), StoreError> {
        (**self).put_batch(key, record)
    }
    fn put_all(&self, entries: &[(RequestKey, ChatResponse)]) -> Result<(), StoreError> {
        (**self).put_all(entries)
    }
    fn writes_block(&self) -> bool {
        (**self).writes_block()
    }
}

impl<T: RunStore + ?Sized> RunStore for Arc<T> {
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        (**self).get(key)
    }
    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
        (**self).put(key, answer)
    }
    fn get_batch(&self, key: &RequestKey) -> Result<Option<BatchRecord>, StoreError> {
        (**self).get_batch(key)
    }
    fn put_batch(&self, key: &RequestKey, record: &BatchRecord) -> Result<(), StoreError> {
        (**self).put_batch(key, record)
    }
    fn put_all(&self, entries: &[(RequestKey, ChatResponse)]) -> Result<(), StoreError> {
        (**self).put_all(entries)
    }
    fn writes_block(&self) -> bool {
        (**self).writes_block()
    }
}

const _: Option<&dyn RunStore> = None;

/// A store in memory: for tests, and for one process that runs several plans over the same
/// clusters. Clones share the entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    entries: Arc<Mutex<HashMap<RequestKey, ChatResponse>>>,
    batches: Arc<Mutex<HashMap<RequestKey, BatchRecord>>>,
}

impl MemoryStore {
    /// Entries recorded.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.entries).len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RunStore for MemoryStore {
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        Ok(crate::sync::lock(&self.entries).get(key).cloned())
    }

    /// In memory: a write never waits.
    fn writes_block(&self) -> bool {
        false
    }

    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
        crate::sync::lock(&self.entries).insert(*key, answer.clone());
        Ok(())
    }

    fn get_batch(&self, key: &RequestKey) -> Result<Option<BatchRecord>, StoreError> {
        Ok(crate::sync::lock(&self.batches).get(key).cloned())
    }

    fn put_batch(&self, key: &RequestKey, record: &BatchRecord) -> Result<(), StoreError> {
        crate::sync::lock(&self.batches).insert(*key, record.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ChatMessage, ResponseFormat, Role};

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: "s".into(),
                },
                ChatMessage {
                    role: Role::User,
                    content: "u".into(),
                },
            ],
            temperature: 0.7,
            max_tokens: 300,
            response_format: ResponseFormat::JsonObject,
            batch: None,
        }
    }

    #[test]
    fn the_key_is_stable_and_covers_every_field() {
        let r = request();
        // Pinned: the key must never change for the same request, across versions.
        assert_eq!(
            RequestKey::of(&r).to_string(),
            RequestKey::of(&request()).to_string()
        );
        let mut changed = Vec::new();
        let mut m = r.clone();
        m.model = "gpt-4o".into();
        changed.push(m);
        let mut m = r.clone();
        m.messages[1].content = "v".into();
        changed.push(m);
        let mut m = r.clone();
        m.messages[0].role = Role::User;
        changed.push(m);
        let mut m = r.clone();
        m.temperature = 0.8;
        changed.push(m);
        let mut m = r.clone();
        m.max_tokens = 301;
        changed.push(m);
        let mut m = r.clone();
        m.response_format = ResponseFormat::JsonObjectWithSchema {
            schema: serde_json::json!({}),
        };
        changed.push(m);
        // Moving text between messages changes the key (lengths are part of the encoding).
        let mut m = r.clone();
        m.messages[0].content = "su".into();
        m.messages[1].content = String::new();
        changed.push(m);
        for c in &changed {
            assert_ne!(RequestKey::of(c), RequestKey::of(&r), "{c:?}");
        }
    }
}

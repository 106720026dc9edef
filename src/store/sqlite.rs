//! [`SqliteStore`] (feature `store`): the journal as an SQLite file, durable across `kill -9`
//! and power loss: WAL mode, `synchronous = FULL`, one transaction per answer, or per group of
//! answers the runner's journal writer records together.
//!
//! SQLite (bundled, no system library) rather than redb: one file that any `sqlite3` shell can
//! open to inspect or repair, safe for several processes at once (file locks, a busy timeout),
//! and the most tested embedded database there is.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{BatchRecord, RequestKey, RunStore, StoreError};
use crate::backend::ChatResponse;

/// The format this version reads and writes.
const FORMAT_VERSION: u32 = 1;
/// Batch API submissions, by input file key. Created on open when missing: journals written
/// before it existed read the same, and older versions ignore it.
const BATCHES_TABLE: &str = "CREATE TABLE IF NOT EXISTS dynbatch_batches (
    key BLOB PRIMARY KEY,
    record TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);";
/// What marks a database as a dynbatch journal.
const FORMAT_NAME: &str = "dynbatch-journal";

/// A journal file. Open (or create) it with [`SqliteStore::open`]; several runs, threads and
/// processes may share one.
///
/// ```no_run
/// # #[cfg(feature = "store")] {
/// use dynbatch::store::SqliteStore;
/// let journal = SqliteStore::open("discovery.journal")?;
/// println!("{} answers recorded", journal.len()?);
/// # }
/// # Ok::<(), dynbatch::store::StoreError>(())
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    path: String,
    connection: Mutex<Connection>,
}

fn io(e: rusqlite::Error) -> StoreError {
    StoreError::Io(Box::new(e))
}

impl SqliteStore {
    /// Opens the journal at `path`, creating it if there is no file.
    ///
    /// # Errors
    /// [`StoreError::Foreign`] for a file that is not a database or is another program's
    /// database, [`StoreError::NewerFormat`] for a journal of a newer dynbatch,
    /// [`StoreError::Io`] when the file cannot be opened or written.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path_ref = path.as_ref();
        let shown = path_ref.display().to_string();
        let foreign = |reason: String| StoreError::Foreign {
            path: shown.clone(),
            reason,
        };
        let connection = Connection::open_with_flags(
            path_ref,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(io)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(io)?;
        // The first read of a file that is not a database fails here.
        let mut tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .and_then(|mut s| {
                s.query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<_, _>>()
            })
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    foreign("the file is not an SQLite database".to_owned())
                }
                other => io(other),
            })?;
        if tables.is_empty() {
            Self::create(&connection)?;
            tables = vec!["dynbatch_answers".to_owned(), "dynbatch_meta".to_owned()];
        } else if !tables.iter().any(|t| t == "dynbatch_meta") {
            return Err(foreign(format!(
                "an SQLite database with other tables ({})",
                tables.join(", ")
            )));
        }
        let meta = |key: &str| {
            connection
                .query_row(
                    "SELECT value FROM dynbatch_meta WHERE key = ?1",
                    [key],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .map_err(io)
        };
        if meta("format")?.as_deref() != Some(FORMAT_NAME) {
            return Err(foreign("its format marker is missing".to_owned()));
        }
        let version: u32 = meta("version")?
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| foreign("its format version is missing".to_owned()))?;
        if version > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: shown,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if !tables.iter().any(|t| t == "dynbatch_answers") {
            return Err(StoreError::Corrupt(format!(
                "{shown}: the answers table is missing"
            )));
        }
        Self::tune(&connection)?;
        Ok(Self {
            path: shown,
            connection: Mutex::new(connection),
        })
    }

    fn create(connection: &Connection) -> Result<(), StoreError> {
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS dynbatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS dynbatch_answers (
                     key BLOB PRIMARY KEY,
                     answer TEXT NOT NULL,
                     recorded_at INTEGER NOT NULL
                 );
                 {BATCHES_TABLE}
                 INSERT OR IGNORE INTO dynbatch_meta VALUES ('format', '{FORMAT_NAME}');
                 INSERT OR IGNORE INTO dynbatch_meta VALUES ('version', '{FORMAT_VERSION}');
                 COMMIT;"
            ))
            .map_err(io)
    }

    fn tune(connection: &Connection) -> Result<(), StoreError> {
        // WAL: readers never block the writer; FULL: each commit is on disk before it returns.
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; {BATCHES_TABLE}"
            ))
            .map_err(io)
    }

    /// The file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Answers recorded.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the database cannot be read.
    pub fn len(&self) -> Result<u64, StoreError> {
        let connection = crate::sync::lock(&self.connection);
        connection
            .query_row("SELECT COUNT(*) FROM dynbatch_answers", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(io)
    }

    /// Whether no answer is recorded.
    ///
    /// # Errors
    /// As [`SqliteStore::len`].
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.len().map(|n| n == 0)
    }
}

impl RunStore for SqliteStore {
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        let text: Option<String> = {
            let connection = crate::sync::lock(&self.connection);
            let mut statement = connection
                .prepare_cached("SELECT answer FROM dynbatch_answers WHERE key = ?1")
                .map_err(io)?;
            statement
                .query_row([key.as_bytes().as_slice()], |row| row.get(0))
                .optional()
                .map_err(io)?
        };
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("{}: answer {key}: {e}", self.path)))
        })
        .transpose()
    }

    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
        let text = serde_json::to_string(answer)
            .map_err(|e| StoreError::Corrupt(format!("answer {key}: {e}")))?;
        let now = unix_now();
        let connection = crate::sync::lock(&self.connection);
        // One statement: one transaction, committed (and synced) before this returns.
        connection
            .prepare_cached(
                "INSERT OR REPLACE INTO dynbatch_answers (key, answer, recorded_at) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![key.as_bytes().as_slice(), text, now]))
            .map_err(io)?;
        Ok(())
    }

    /// Every answer in one transaction: one commit and one sync for the group.
    fn put_all(&self, entries: &[(RequestKey, ChatResponse)]) -> Result<(), StoreError> {
        let texts = entries
            .iter()
            .map(|(key, answer)| {
                serde_json::to_string(answer)
                    .map(|text| (key, text))
                    .map_err(|e| StoreError::Corrupt(format!("answer {key}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = unix_now();
        let mut connection = crate::sync::lock(&self.connection);
        let transaction = connection.transaction().map_err(io)?;
        {
            let mut statement = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO dynbatch_answers (key, answer, recorded_at) VALUES (?1, ?2, ?3)",
                )
                .map_err(io)?;
            for (key, text) in &texts {
                statement
                    .execute(params![key.as_bytes().as_slice(), text, now])
                    .map_err(io)?;
            }
        }
        transaction.commit().map_err(io)
    }

    fn get_batch(&self, key: &RequestKey) -> Result<Option<BatchRecord>, StoreError> {
        let text: Option<String> = {
            let connection = crate::sync::lock(&self.connection);
            connection
                .prepare_cached("SELECT record FROM dynbatch_batches WHERE key = ?1")
                .and_then(|mut s| {
                    s.query_row([key.as_bytes().as_slice()], |row| row.get(0))
                        .optional()
                })
                .map_err(io)?
        };
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("{}: batch {key}: {e}", self.path)))
        })
        .transpose()
    }

    fn put_batch(&self, key: &RequestKey, record: &BatchRecord) -> Result<(), StoreError> {
        let text = serde_json::to_string(record)
            .map_err(|e| StoreError::Corrupt(format!("batch {key}: {e}")))?;
        let connection = crate::sync::lock(&self.connection);
        connection
            .prepare_cached(
                "INSERT OR REPLACE INTO dynbatch_batches (key, record, recorded_at) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![key.as_bytes().as_slice(), text, unix_now()]))
            .map_err(io)?;
        Ok(())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

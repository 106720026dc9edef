//! [`read_clusters`]: a JSON array of clusters read one cluster at a time, on one thread or
//! several. `scan.rs` finds where each cluster starts and ends; `sink.rs` parses them, at once
//! or on threads of their own.

use std::io::Read;
use std::num::NonZeroUsize;

use super::Cluster;

mod scan;
mod sink;

use scan::scan;
use sink::{Pipelined, Serial};

/// Why [`read_clusters`] could not read its input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The reader failed.
    #[error("reading the input: {0}")]
    Io(#[from] std::io::Error),
    /// The input is not a JSON array (or it ends early, or goes on after it).
    #[error("byte {offset}: {message}")]
    Syntax {
        /// Where, in bytes from the start of the input.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// One element is not a cluster.
    #[error("cluster {index} (byte {offset}): {source}")]
    Cluster {
        /// Its position in the array, from 0.
        index: usize,
        /// Where it starts, in bytes from the start of the input.
        offset: u64,
        /// What is wrong, as serde says it (line and column count from the element's start).
        #[source]
        source: serde_json::Error,
    },
}

/// How many bytes are read at a time.
const CHUNK: usize = 4 << 20;

/// Reads a JSON array of clusters from `reader`, one cluster at a time.
///
/// The same clusters as `serde_json::from_reader`, as fast as parsing text in memory, with a
/// window of a few megabytes instead of the whole input in memory: planning 100,000 clusters
/// (151 MB of JSON) needs the clusters and little more. Pass the reader unbuffered or
/// buffered, either works.
///
/// ```
/// let json = br#"[{"id": "a", "size": 1, "avg_performance": 2.0, "thread_sources": [],
///                 "is_wide": false, "videos": [{"title": "T", "performance_ratio": 2.0}]}]"#;
/// let clusters = dynbatch::read_clusters(&json[..])?;
/// assert_eq!(clusters[0].id, "a");
/// # Ok::<(), dynbatch::ReadError>(())
/// ```
///
/// # Errors
/// [`ReadError::Io`] from the reader; [`ReadError::Syntax`] for input that is not one JSON
/// array; [`ReadError::Cluster`] for an element that is not a cluster, with its index.
pub fn read_clusters(reader: impl Read) -> Result<Vec<Cluster>, ReadError> {
    read_clusters_parallel(reader, NonZeroUsize::MIN)
}

/// [`read_clusters`] with the parsing spread over `threads` threads (scoped: they end before
/// it returns). The calling thread finds where each cluster starts and ends, a window of a few
/// megabytes at a time; each window's clusters are parsed in `threads` contiguous parts on
/// threads of their own while it scans the next. The result, and the error for bad input (the
/// first bad cluster's), are the same as [`read_clusters`]'s. Worth it for large inputs (the
/// `plan` example uses the machine's cores); with one thread, no thread is started.
///
/// ```
/// use std::num::NonZeroUsize;
/// let json = br#"[{"id": "a", "size": 1, "avg_performance": 2.0, "thread_sources": [],
///                 "is_wide": false, "videos": [{"title": "T", "performance_ratio": 2.0}]}]"#;
/// let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
/// let clusters = dynbatch::read_clusters_parallel(&json[..], threads)?;
/// assert_eq!(clusters[0].id, "a");
/// # Ok::<(), dynbatch::ReadError>(())
/// ```
///
/// # Errors
/// As [`read_clusters`].
pub fn read_clusters_parallel(
    reader: impl Read,
    threads: NonZeroUsize,
) -> Result<Vec<Cluster>, ReadError> {
    read_windows(reader, threads, CHUNK)
}

/// [`read_windows`] for the fuzz targets (small windows, so clusters cross them anywhere).
#[cfg(fuzzing)]
pub(crate) fn read_windows_for_fuzzing(
    data: &[u8],
    threads: NonZeroUsize,
    chunk: usize,
) -> Result<Vec<Cluster>, ReadError> {
    read_windows(data, threads, chunk)
}

/// [`read_clusters_parallel`] with windows of `chunk` bytes (tests use small ones, so elements
/// cross windows anywhere).
fn read_windows(
    reader: impl Read,
    threads: NonZeroUsize,
    chunk: usize,
) -> Result<Vec<Cluster>, ReadError> {
    if threads.get() == 1 {
        return scan(reader, chunk, Serial::default());
    }
    std::thread::scope(|scope| scan(reader, chunk, Pipelined::new(scope, threads.get())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Windows of any size, cut anywhere (inside strings, right after a backslash, between
    /// braces), serial or parallel: the same clusters as `serde_json` reads, and the same
    /// first error.
    #[test]
    fn elements_cross_windows_anywhere() {
        let video = |i: usize| {
            format!(
                r#"{{"title": "T{i} \"q\" \\ {{x}} [y] \u00e9", "performance_ratio": 1.5, "n": {{"a": [{{"b": "}}"}}]}}}}"#
            )
        };
        let cluster = |i: usize| {
            format!(
                r#"{{"id": "c{i}", "size": 9, "avg_performance": 2.0, "thread_sources": ["s"], "is_wide": false, "videos": [{}, {}]}}"#,
                video(i),
                video(i + 1)
            )
        };
        let text = format!(
            "[{}]",
            (0..40).map(cluster).collect::<Vec<_>>().join(",\n ")
        );
        let expected: Vec<Cluster> = serde_json::from_str(&text).unwrap();
        let bad = text.replace(r#""c29", "size": 9"#, r#""c29", "size": -9"#);
        assert_ne!(bad, text);
        for chunk in [1, 2, 3, 5, 17, 64, 1000] {
            for threads in [1, 2] {
                let threads = NonZeroUsize::new(threads).unwrap();
                let got = read_windows(text.as_bytes(), threads, chunk).unwrap();
                assert_eq!(got, expected, "chunk {chunk}");
                match read_windows(bad.as_bytes(), threads, chunk) {
                    Err(ReadError::Cluster { index: 29, .. }) => {}
                    other => panic!("chunk {chunk}: {other:?}"),
                }
            }
        }
    }
}

//! [`read_clusters`]: a JSON array of clusters read one cluster at a time.

use std::io::Read;
use std::num::NonZeroUsize;

use super::Cluster;

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the `[`.
    Start,
    /// Before an element (after `[` or `,`).
    Before { after_comma: bool },
    /// Inside an element.
    In {
        depth: u32,
        in_string: bool,
        escaped: bool,
        /// The element is an object: only braces count for its depth (brackets inside it
        /// are balanced in any text the parser would take), so they can be skipped.
        object: bool,
    },
    /// After an element: `,` or `]` comes.
    After,
    /// After the `]`: only white space.
    End,
}

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
/// it returns). One thread finds where each cluster starts and ends in a window of the input;
/// the clusters of the window are then parsed in `threads` contiguous parts at once. The
/// result, and the error for bad input (the first bad cluster's), are the same as
/// [`read_clusters`]'s. Worth it for large inputs (the `plan` example uses the machine's
/// cores); with one thread, no thread is started.
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
    mut reader: impl Read,
    threads: NonZeroUsize,
) -> Result<Vec<Cluster>, ReadError> {
    let mut clusters = Vec::new();
    // Complete elements of the window not yet parsed: where each starts and ends in `buf`.
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    // `buf[0]` is at `base` in the input; `pos` is the next byte to look at; `start` the first
    // byte of the element being read.
    let (mut base, mut pos, mut start) = (0u64, 0usize, 0usize);
    let mut state = State::Start;
    let syntax = |offset: u64, message: &str| ReadError::Syntax {
        offset,
        message: message.to_owned(),
    };
    loop {
        if pos == buf.len() {
            // Keep only the element being read; then read more.
            let keep = if matches!(state, State::In { .. }) {
                start
            } else {
                pos
            };
            parse_all(&buf, base, &mut pending, threads, &mut clusters)?;
            let n = refill(&mut reader, &mut buf, keep)?;
            base += keep as u64;
            pos -= keep;
            start -= keep.min(start);
            if n == 0 {
                return match state {
                    State::End => Ok(clusters),
                    State::Start => Err(syntax(
                        base + pos as u64,
                        "expected a JSON array of clusters, found nothing",
                    )),
                    _ => Err(syntax(base + pos as u64, "the input ends inside the array")),
                };
            }
        }
        let b = buf[pos];
        match state {
            State::Start | State::Before { .. } | State::After | State::End => {
                state = match between(state, b) {
                    Ok(state) => state,
                    Err(message) => {
                        // A bad cluster before this place is the first error.
                        parse_all(&buf, base, &mut pending, threads, &mut clusters)?;
                        return Err(syntax(base + pos as u64, message));
                    }
                };
                if matches!(state, State::In { .. }) {
                    start = pos;
                }
            }
            State::In {
                depth: 0,
                in_string: false,
                ..
            } if b == b',' || b == b']' || b.is_ascii_whitespace() => {
                // The end of a number or a literal: parse it (an error, with its index), and
                // look at this byte again as what follows an element.
                pending.push((start, pos));
                state = State::After;
                continue;
            }
            State::In {
                in_string: true,
                escaped: false,
                ..
            } if b != b'"' && b != b'\\' => {
                // Inside a string: skip to its next quote or backslash at once.
                let rest = &buf[pos..];
                pos += memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                continue;
            }
            State::In {
                depth: 1..,
                in_string: false,
                object,
                ..
            } if !matches!(b, b'"' | b'{' | b'}') && (object || !matches!(b, b'[' | b']')) => {
                // Inside the element, outside strings: skip to the next byte that matters.
                pos += skip_structure(&buf[pos..], object);
                continue;
            }
            State::In {
                depth,
                in_string,
                escaped,
                object,
            } => {
                let (depth, in_string, escaped, done) = step(depth, in_string, escaped, b);
                state = State::In {
                    depth,
                    in_string,
                    escaped,
                    object,
                };
                if done {
                    pending.push((start, pos + 1));
                    state = State::After;
                }
            }
        }
        pos += 1;
    }
}

/// How many bytes of `rest` (inside an element, outside strings) can be skipped: up to the
/// next quote or brace, and in an element that is not an object, bracket too (in an object,
/// brackets are balanced in any text the parser would take, so braces alone find its end).
fn skip_structure(rest: &[u8], object: bool) -> usize {
    if object {
        memchr::memchr3(b'"', b'{', b'}', rest).unwrap_or(rest.len())
    } else {
        rest.iter()
            .position(|&c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'))
            .unwrap_or(rest.len())
    }
}

/// The state after byte `b` outside any element, or what is wrong with it.
fn between(state: State, b: u8) -> Result<State, &'static str> {
    Ok(match state {
        _ if b.is_ascii_whitespace() => state,
        State::Start if b == b'[' => State::Before { after_comma: false },
        State::Start => return Err("expected a JSON array of clusters"),
        State::Before { after_comma: false } if b == b']' => State::End,
        State::Before { after_comma: true } if b == b']' => {
            return Err("a comma before the closing `]`");
        }
        State::Before { .. } | State::In { .. } => State::In {
            depth: u32::from(b == b'{' || b == b'['),
            in_string: b == b'"',
            escaped: false,
            object: b == b'{',
        },
        State::After if b == b',' => State::Before { after_comma: true },
        State::After if b == b']' => State::End,
        State::After => return Err("expected `,` or `]` after a cluster"),
        State::End => return Err("more after the array's closing `]`"),
    })
}

/// Drops `buf[..keep]` and appends up to a chunk more from `reader`, with no zero-filling
/// (`read_to_end` of a `take`); returns how many bytes came (0 at the end of the input).
fn refill(reader: &mut impl Read, buf: &mut Vec<u8>, keep: usize) -> std::io::Result<usize> {
    buf.drain(..keep);
    reader.take(CHUNK as u64).read_to_end(buf)
}

/// One byte of an element: the new depth, string and escape state, and whether the element
/// ends with this byte.
fn step(depth: u32, in_string: bool, escaped: bool, b: u8) -> (u32, bool, bool, bool) {
    match (in_string, escaped, b) {
        (true, false, b'\\') => (depth, true, true, false),
        (true, false, b'"') => (depth, false, false, depth == 0),
        (true, _, _) | (false, _, b'"') => (depth, true, false, false),
        (false, _, b'{' | b'[') => (depth + 1, false, false, false),
        (false, _, b'}' | b']') if depth > 0 => (depth - 1, false, false, depth == 1),
        (false, _, _) => (depth, false, false, false),
    }
}

/// Parses the `pending` elements of `buf` (which starts at `base` in the input) into
/// `clusters`, in order, in `threads` contiguous parts at once; the first bad element's error
/// wins.
fn parse_all(
    buf: &[u8],
    base: u64,
    pending: &mut Vec<(usize, usize)>,
    threads: NonZeroUsize,
    clusters: &mut Vec<Cluster>,
) -> Result<(), ReadError> {
    let first = clusters.len();
    let parts = threads.get().min(pending.len() / MIN_PER_THREAD).max(1);
    if parts == 1 {
        clusters.reserve(pending.len());
        for (k, &(start, end)) in pending.iter().enumerate() {
            clusters.push(parse(&buf[start..end], first + k, base + start as u64)?);
        }
    } else {
        let size = pending.len().div_ceil(parts);
        let results: Vec<Result<Vec<Cluster>, ReadError>> = std::thread::scope(|scope| {
            let mut chunks = pending.chunks(size).enumerate();
            let own = chunks.next();
            let spawned: Vec<_> = chunks
                .map(|(c, chunk)| {
                    scope.spawn(move || parse_part(buf, base, chunk, first + c * size))
                })
                .collect();
            let mut results = vec![own.map_or_else(
                || Ok(Vec::new()),
                |(_, chunk)| parse_part(buf, base, chunk, first),
            )];
            for handle in spawned {
                results.push(
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            results
        });
        for part in results {
            clusters.append(&mut part?);
        }
    }
    pending.clear();
    Ok(())
}

/// Fewest elements worth a thread of their own.
const MIN_PER_THREAD: usize = 64;

/// Parses the elements `part` of `buf`; the first of them is cluster `index`.
fn parse_part(
    buf: &[u8],
    base: u64,
    part: &[(usize, usize)],
    index: usize,
) -> Result<Vec<Cluster>, ReadError> {
    part.iter()
        .enumerate()
        .map(|(k, &(start, end))| parse(&buf[start..end], index + k, base + start as u64))
        .collect()
}

/// Parses one element. Its UTF-8 is checked once, at once, so the parser need not check each
/// string again (text that is not UTF-8 gets the parser's error, with its place).
fn parse(text: &[u8], index: usize, offset: u64) -> Result<Cluster, ReadError> {
    let parsed = match std::str::from_utf8(text) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(text),
    };
    parsed.map_err(|source| ReadError::Cluster {
        index,
        offset,
        source,
    })
}

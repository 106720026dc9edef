//! [`read_clusters`]: a JSON array of clusters read one cluster at a time.

use std::io::Read;
use std::num::NonZeroUsize;
use std::sync::Arc;

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
        /// The element is an object, scanned by [`scan_object`]; other elements (never a
        /// cluster, so an error once parsed) byte by byte.
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
    std::thread::scope(|scope| {
        scan(
            reader,
            chunk,
            Pipelined {
                scope,
                threads: threads.get(),
                clusters: Vec::new(),
                handed: 0,
                inflight: std::collections::VecDeque::new(),
                spare: Vec::new(),
            },
        )
    })
}

/// Finds the elements of the array in `reader`, window by window, and hands each window's
/// complete elements to `sink`.
fn scan<S: Sink>(
    mut reader: impl Read,
    chunk: usize,
    mut sink: S,
) -> Result<Vec<Cluster>, ReadError> {
    // Complete elements of the window not yet handed over: where each starts and ends in `buf`.
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
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
            // Hand over the complete elements, keep only the element being read; read more.
            let keep = if matches!(state, State::In { .. }) {
                start
            } else {
                pos
            };
            sink.window(&mut buf, keep, base, &mut pending)?;
            let n = read_more(&mut reader, &mut buf, chunk)?;
            base += keep as u64;
            pos -= keep;
            start -= keep.min(start);
            if n == 0 {
                ended(state, base + pos as u64)?;
                return sink.finish();
            }
        }
        let b = buf[pos];
        match state {
            State::Start | State::Before { .. } | State::After | State::End => {
                state = match between(state, b) {
                    Ok(state) => state,
                    Err(message) => {
                        // A bad cluster before this place is the first error.
                        sink.window(&mut buf, pos, base, &mut pending)?;
                        sink.finish()?;
                        return Err(syntax(base + pos as u64, message));
                    }
                };
                if matches!(state, State::In { .. }) {
                    start = pos;
                }
            }
            State::In {
                depth: depth @ 1..,
                in_string,
                escaped,
                object: true,
            } => {
                // An object: its own tight loop, to its end or the window's.
                match scan_object(&buf, pos, depth, in_string, escaped) {
                    Ok(end) => {
                        pending.push((start, end));
                        state = State::After;
                        pos = end;
                    }
                    Err(more) => {
                        state = more;
                        pos = buf.len();
                    }
                }
                continue;
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
                // Inside a string (of an element that is no object, so no cluster: rare):
                // skip to its next quote or backslash at once.
                let rest = &buf[pos..];
                pos += memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
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

/// Scans an object element from `buf[pos]` on, in the state given (depth of braces, inside a
/// string, after a backslash in one): where the element ends (the byte after its closing
/// brace), or the state at the end of `buf` to go on from. Only quotes, backslashes in strings and braces
/// matter: brackets inside an object are balanced in any text the parser would take.
fn scan_object(
    buf: &[u8],
    mut pos: usize,
    mut depth: u32,
    mut in_string: bool,
    mut escaped: bool,
) -> Result<usize, State> {
    let more = |depth, in_string, escaped| State::In {
        depth,
        in_string,
        escaped,
        object: true,
    };
    loop {
        if in_string {
            if escaped {
                if pos >= buf.len() {
                    return Err(more(depth, true, true));
                }
                pos += 1;
                escaped = false;
            }
            match memchr::memchr2(b'"', b'\\', &buf[pos..]) {
                None => return Err(more(depth, true, false)),
                Some(i) if buf[pos + i] == b'"' => {
                    pos += i + 1;
                    in_string = false;
                }
                Some(i) => {
                    pos += i + 1;
                    escaped = true;
                }
            }
        } else {
            match memchr::memchr3(b'"', b'{', b'}', &buf[pos..]) {
                None => return Err(more(depth, false, false)),
                Some(i) => {
                    let b = buf[pos + i];
                    pos += i + 1;
                    match b {
                        b'"' => in_string = true,
                        b'{' => depth += 1,
                        _ => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(pos);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// At the end of the input: fine after the array's `]`; otherwise what is missing.
fn ended(state: State, offset: u64) -> Result<(), ReadError> {
    let message = match state {
        State::End => return Ok(()),
        State::Start => "expected a JSON array of clusters, found nothing",
        _ => "the input ends inside the array",
    };
    Err(ReadError::Syntax {
        offset,
        message: message.to_owned(),
    })
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

/// Appends up to `chunk` bytes more from `reader`, with no zero-filling (`read_to_end` of a
/// `take`); returns how many bytes came (0 at the end of the input).
fn read_more(reader: &mut impl Read, buf: &mut Vec<u8>, chunk: usize) -> std::io::Result<usize> {
    reader.take(chunk as u64).read_to_end(buf)
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

/// What becomes of the complete elements of each window.
trait Sink {
    /// Takes the elements `pending` of `buf` (which starts at `base` in the input) and leaves
    /// in `buf` only `buf[keep..]`, the element being read.
    fn window(
        &mut self,
        buf: &mut Vec<u8>,
        keep: usize,
        base: u64,
        pending: &mut Vec<(usize, usize)>,
    ) -> Result<(), ReadError>;

    /// Every cluster handed over, in order, or the first bad one's error.
    fn finish(&mut self) -> Result<Vec<Cluster>, ReadError>;
}

/// Parses each window at once, on this thread.
#[derive(Default)]
struct Serial(Vec<Cluster>);

impl Sink for Serial {
    fn window(
        &mut self,
        buf: &mut Vec<u8>,
        keep: usize,
        base: u64,
        pending: &mut Vec<(usize, usize)>,
    ) -> Result<(), ReadError> {
        let first = self.0.len();
        self.0.reserve(pending.len());
        for (k, &(start, end)) in pending.iter().enumerate() {
            self.0
                .push(parse(&buf[start..end], first + k, base + start as u64)?);
        }
        pending.clear();
        buf.drain(..keep);
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Cluster>, ReadError> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// A window's parts being parsed, each on a thread of its own, and the window they read.
type Inflight<'scope> = (
    Vec<std::thread::ScopedJoinHandle<'scope, Result<Vec<Cluster>, ReadError>>>,
    Arc<Vec<u8>>,
);

/// Parses each window in `threads` parts on threads of their own, while the caller's thread
/// scans the next window: one window in flight at a time, its buffer reused after.
struct Pipelined<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    threads: usize,
    clusters: Vec<Cluster>,
    /// Elements handed to threads so far (the index of the next window's first).
    handed: usize,
    /// Oldest first; at most [`IN_FLIGHT`].
    inflight: std::collections::VecDeque<Inflight<'scope>>,
    /// Buffers of windows parsed, for the next ones.
    spare: Vec<Vec<u8>>,
}

/// Windows being parsed at once: two, so the parsing threads have the next window's work
/// while the slowest part of a window ends.
const IN_FLIGHT: usize = 2;

impl Pipelined<'_, '_> {
    /// Waits for the oldest window in flight and takes its clusters.
    fn join(&mut self) -> Result<(), ReadError> {
        let Some((handles, window)) = self.inflight.pop_front() else {
            return Ok(());
        };
        let mut first_error = None;
        for handle in handles {
            match handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            {
                Ok(mut part) if first_error.is_none() => self.clusters.append(&mut part),
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Ok(mut window) = Arc::try_unwrap(window) {
            window.clear();
            self.spare.push(window);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Sink for Pipelined<'_, '_> {
    fn window(
        &mut self,
        buf: &mut Vec<u8>,
        keep: usize,
        base: u64,
        pending: &mut Vec<(usize, usize)>,
    ) -> Result<(), ReadError> {
        if self.inflight.len() >= IN_FLIGHT {
            self.join()?;
        }
        // The next buffer starts with the element being read.
        let mut next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(buf.capacity()));
        next.extend_from_slice(&buf[keep..]);
        let window = Arc::new(std::mem::replace(buf, next));
        if pending.is_empty() {
            return Ok(());
        }
        let elements = Arc::new(std::mem::take(pending));
        let parts = self.threads.min(elements.len() / MIN_PER_THREAD).max(1);
        let size = elements.len().div_ceil(parts);
        let first = self.handed;
        self.handed += elements.len();
        let handles = (0..parts)
            .map(|p| {
                let (window, elements) = (Arc::clone(&window), Arc::clone(&elements));
                self.scope.spawn(move || {
                    let part = elements.chunks(size).nth(p).unwrap_or_default();
                    parse_part(&window, base, part, first + p * size)
                })
            })
            .collect();
        self.inflight.push_back((handles, window));
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Cluster>, ReadError> {
        while !self.inflight.is_empty() {
            self.join()?;
        }
        Ok(std::mem::take(&mut self.clusters))
    }
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

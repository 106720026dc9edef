//! [`read_clusters`]: a JSON array of clusters read one cluster at a time.

use std::io::Read;

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
pub fn read_clusters(mut reader: impl Read) -> Result<Vec<Cluster>, ReadError> {
    let mut clusters = Vec::new();
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
                state = between(state, b).map_err(|m| syntax(base + pos as u64, m))?;
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
                finish(&buf[start..pos], base + start as u64, &mut clusters)?;
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
                pos += rest
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\')
                    .unwrap_or(rest.len());
                continue;
            }
            State::In {
                depth: 1..,
                in_string: false,
                ..
            } if !matches!(b, b'"' | b'{' | b'}' | b'[' | b']') => {
                // Inside an object, outside strings: skip to the next quote or bracket at once.
                let rest = &buf[pos..];
                pos += rest
                    .iter()
                    .position(|&c| matches!(c, b'"' | b'{' | b'}' | b'[' | b']'))
                    .unwrap_or(rest.len());
                continue;
            }
            State::In {
                depth,
                in_string,
                escaped,
            } => {
                let (depth, in_string, escaped, done) = step(depth, in_string, escaped, b);
                state = State::In {
                    depth,
                    in_string,
                    escaped,
                };
                if done {
                    finish(&buf[start..=pos], base + start as u64, &mut clusters)?;
                    state = State::After;
                }
            }
        }
        pos += 1;
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

/// Parses one element.
fn finish(text: &[u8], offset: u64, clusters: &mut Vec<Cluster>) -> Result<(), ReadError> {
    let cluster = serde_json::from_slice(text).map_err(|source| ReadError::Cluster {
        index: clusters.len(),
        offset,
        source,
    })?;
    clusters.push(cluster);
    Ok(())
}

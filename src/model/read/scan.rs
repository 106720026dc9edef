//! Where each element of the array starts and ends, window by window: a byte-level state
//! machine between elements, and a tight `memchr` loop inside an object.

use std::io::Read;

use super::ReadError;
use super::sink::Sink;
use crate::model::Cluster;

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

/// Finds the elements of the array in `reader`, window by window, and hands each window's
/// complete elements to `sink`.
pub(super) fn scan<S: Sink>(
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

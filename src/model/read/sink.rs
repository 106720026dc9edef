//! What becomes of each window's elements: parsed at once ([`Serial`]), or on threads of their
//! own while the next window is scanned ([`Pipelined`]).

use std::sync::Arc;

use super::ReadError;
use crate::model::Cluster;

/// What becomes of the complete elements of each window.
pub(super) trait Sink {
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
pub(super) struct Serial(Vec<Cluster>);

impl Sink for Serial {
    fn window(
        &mut self,
        buf: &mut Vec<u8>,
        keep: usize,
        base: u64,
        pending: &mut Vec<(usize, usize)>,
    ) -> Result<(), ReadError> {
        let mut parsed = parse_part(buf, base, pending, self.0.len())?;
        self.0.append(&mut parsed);
        pending.clear();
        buf.drain(..keep);
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Cluster>, ReadError> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// A window's parts being parsed, each on a thread of its own, and the window they read.
type Inflight<'scope> = (Vec<Part<'scope>>, Arc<Vec<u8>>);

/// One part of a window: being parsed on a thread, or already parsed (on this thread, when no
/// thread could be started).
enum Part<'scope> {
    Running(std::thread::ScopedJoinHandle<'scope, Result<Vec<Cluster>, ReadError>>),
    Parsed(Result<Vec<Cluster>, ReadError>),
}

/// Parses each window in `threads` parts on threads of their own, while the caller's thread
/// scans the next: up to [`IN_FLIGHT`] windows at once, their buffers reused after.
pub(super) struct Pipelined<'scope, 'env> {
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

impl<'scope, 'env> Pipelined<'scope, 'env> {
    /// Parsing on `threads` threads of `scope`.
    pub(super) fn new(scope: &'scope std::thread::Scope<'scope, 'env>, threads: usize) -> Self {
        Self {
            scope,
            threads,
            clusters: Vec::new(),
            handed: 0,
            inflight: std::collections::VecDeque::new(),
            spare: Vec::new(),
        }
    }
}

impl Pipelined<'_, '_> {
    /// Waits for the oldest window in flight and takes its clusters.
    fn join(&mut self) -> Result<(), ReadError> {
        let Some((handles, window)) = self.inflight.pop_front() else {
            return Ok(());
        };
        let mut first_error = None;
        for part in handles {
            let parsed = match part {
                Part::Running(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Part::Parsed(parsed) => parsed,
            };
            match parsed {
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
        let parser = |p: usize| {
            let (window, elements) = (Arc::clone(&window), Arc::clone(&elements));
            move || {
                let part = elements.chunks(size).nth(p).unwrap_or_default();
                parse_part(&window, base, part, first + p * size)
            }
        };
        let handles = (0..parts)
            .map(|p| {
                // A thread that cannot be started (the system's limit) is no error: the part
                // is parsed here instead.
                match std::thread::Builder::new().spawn_scoped(self.scope, parser(p)) {
                    Ok(handle) => Part::Running(handle),
                    Err(_) => Part::Parsed(parser(p)()),
                }
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

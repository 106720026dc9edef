//! [`LineReader`]: JSONL read as it arrives, one line at a time, so a result file of any size
//! is never held whole: only the line being read is buffered, and a line longer than a cap is
//! skipped (with a warning) rather than buffered without end.

use super::batch::{BatchOutput, ResultLine};

/// What a [`LineReader`] read: the lines, what could not be read, and the bytes taken in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lines<T> {
    pub(crate) items: Vec<T>,
    pub(crate) warnings: Vec<String>,
    pub(crate) bytes: usize,
}

impl From<Lines<ResultLine>> for BatchOutput {
    fn from(lines: Lines<ResultLine>) -> Self {
        Self {
            lines: lines.items,
            warnings: lines.warnings,
            bytes: lines.bytes,
        }
    }
}

/// The longest result line kept: one answer is far below it (the live backends cap an answer
/// at 8 bytes per `max_tokens` plus 64 KiB).
pub(crate) const MAX_LINE: usize = 64 * 1024 * 1024;

/// Splits bytes fed in chunks of any size into lines, reading each with a line reader.
pub(crate) struct LineReader<'a, T, F> {
    name: &'a str,
    read: F,
    max_line: usize,
    /// The line so far (bytes: a chunk may end inside a character).
    partial: Vec<u8>,
    /// The current line is over `max_line`: drop it up to its end.
    skipping: bool,
    /// Lines started so far, for warnings (1-based numbers).
    number: usize,
    out: Lines<T>,
}

impl<'a, T, F: Fn(&str) -> Result<T, String>> LineReader<'a, T, F> {
    /// A reader of lines of the file `name` (for warnings), each read with `read`.
    pub(crate) fn new(name: &'a str, max_line: usize, read: F) -> Self {
        Self {
            name,
            read,
            max_line,
            partial: Vec::new(),
            skipping: false,
            number: 0,
            out: Lines {
                items: Vec::new(),
                warnings: Vec::new(),
                bytes: 0,
            },
        }
    }

    /// Takes in the next `chunk` of the file.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        self.out.bytes += chunk.len();
        while let Some(at) = chunk.iter().position(|&b| b == b'\n') {
            self.append(&chunk[..at]);
            self.end_line();
            chunk = &chunk[at + 1..];
        }
        self.append(chunk);
    }

    /// The lines read, once the file has ended (a last line without a newline included).
    pub(crate) fn finish(mut self) -> Lines<T> {
        if !self.partial.is_empty() || self.skipping {
            self.end_line();
        }
        self.out
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        if self.partial.len() + bytes.len() > self.max_line {
            self.skipping = true;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self) {
        self.number += 1;
        if std::mem::take(&mut self.skipping) {
            self.out.warnings.push(format!(
                "{} line {}: longer than {} bytes; not read",
                self.name, self.number, self.max_line
            ));
            return;
        }
        let raw = String::from_utf8_lossy(&self.partial);
        if !raw.trim().is_empty() {
            match (self.read)(&raw) {
                Ok(line) => self.out.items.push(line),
                Err(why) => self
                    .out
                    .warnings
                    .push(format!("{} line {}: {why}", self.name, self.number)),
            }
        }
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::backend::batch::LineOutcome;

    fn read(raw: &str) -> Result<ResultLine, String> {
        if raw.starts_with('{') {
            Ok(ResultLine {
                custom_id: raw.to_owned(),
                outcome: LineOutcome::Failed {
                    code: String::new(),
                    message: String::new(),
                    retry: false,
                },
            })
        } else {
            Err(format!("not an object: {raw}"))
        }
    }

    fn whole(text: &str, max_line: usize) -> Lines<ResultLine> {
        let mut reader = LineReader::new("f", max_line, read);
        reader.feed(text.as_bytes());
        reader.finish()
    }

    proptest! {
        #[test]
        fn invariant_chunking_never_changes_what_is_read(
            lines in prop::collection::vec("(\\{[a-zé😀 ]{0,12}|x[a-z]{0,5}|)", 0..20),
            cuts in prop::collection::vec(0usize..200, 0..12),
            trailing_newline in any::<bool>(),
        ) {
            let mut text = lines.join("\n");
            if trailing_newline {
                text.push('\n');
            }
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut reader = LineReader::new("f", MAX_LINE, read);
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                reader.feed(&bytes[from..cut]);
                from = cut;
            }
            prop_assert_eq!(reader.finish(), whole(&text, MAX_LINE));
        }
    }

    #[test]
    fn lines_are_numbered_blank_ones_skipped_and_a_long_one_dropped_with_a_warning() {
        let out = whole("{a}\n\nnope\n{bbbbbbbbbbbbbbbbbbbb}\n{c}", 10);
        let ids: Vec<&str> = out.items.iter().map(|l| l.custom_id.as_str()).collect();
        assert_eq!(ids, ["{a}", "{c}"]);
        assert_eq!(
            out.warnings,
            [
                "f line 3: not an object: nope",
                "f line 4: longer than 10 bytes; not read"
            ]
        );
        assert_eq!(out.bytes, 36);
    }

    #[test]
    fn a_character_split_between_chunks_is_read_whole() {
        let text = "{é😀}\n";
        let bytes = text.as_bytes();
        let mut reader = LineReader::new("f", MAX_LINE, read);
        for b in bytes {
            reader.feed(std::slice::from_ref(b));
        }
        assert_eq!(reader.finish().items[0].custom_id, "{é😀}");
    }
}

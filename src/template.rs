//! [`Template`]: a pattern's template as a matcher of titles, and [`Coverage`], how many of a
//! cluster's shown titles it matches; the rule by which a template finds a set of titles
//! ([`Overlap`]), and an index of titles by word. A leaf that depends on no other module: the
//! offline finder (`backend`), validation (`response`), the report and `eval` all use it.
//!
//! The rule: every placeholder (`[...]`, `{...}`, `<...>`, `…`, `...`) is a wildcard that
//! stands for one or more characters, and the rest is literal. Matching ignores case, treats
//! every run of white space as one space, ignores zero-width characters, and covers the whole
//! title (trimmed). As a regular
//! expression, `I Tried [X] for {n} Days` is `(?i)^I\s+Tried\s+.+\s+for\s+.+\s+Days$`, matched
//! against the trimmed title.

use serde::{Deserialize, Serialize};

/// How many of its cluster's shown titles a pattern's template matches. dynbatch computes it
/// from the template; it is not the model's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Coverage {
    /// Shown titles the template matches.
    pub matched: u32,
    /// Titles the prompt showed for the cluster: the first `min(size, videos per cluster)`.
    pub shown: u32,
}

impl Coverage {
    /// `matched` of `shown`.
    pub fn new(matched: u32, shown: u32) -> Self {
        Self { matched, shown }
    }

    /// The template matches none of the shown titles (and some were shown): an invented
    /// formula, or prose where a template should be.
    pub fn is_ungrounded(&self) -> bool {
        self.matched == 0 && self.shown > 0
    }

    /// `matched / shown`; 0 when nothing was shown.
    pub fn share(&self) -> f64 {
        if self.shown == 0 {
            0.0
        } else {
            f64::from(self.matched) / f64::from(self.shown)
        }
    }
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.matched, self.shown)
    }
}

/// A template compiled once into literal parts between wildcards, then matched against any
/// number of titles. See the module docs for the rule.
///
/// ```
/// use dynbatch::patterns::Template;
///
/// let t = Template::new("I Tried [Machine] for {N} Days");
/// assert!(t.matches("i tried the  Flair 58 for 30 days"));
/// assert!(!t.matches("I Tried It for Days")); // each slot holds something
/// assert_eq!(t.literal_words(), 4);
/// assert!(Template::new("[X]").matches("anything at all"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literal parts, folded (lower case, single spaces): `parts[0]` before the first wildcard,
    /// `parts[i]` between wildcards `i − 1` and `i`, the last after the last wildcard.
    parts: Vec<String>,
}

/// Lower case, every run of white space one space, trimmed, zero-width characters dropped:
/// the text matching compares.
pub(crate) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let mut chars = word.chars().filter(|c| !is_zero_width(*c)).peekable();
        if chars.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        for c in chars {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
    out
}

/// Characters that take no room and that titles pasted from elsewhere carry (zero-width space,
/// joiners, word joiner, byte-order mark).
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Where the placeholder that starts at `text[i..]` ends (exclusive), if one does.
fn placeholder_end(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i..];
    let close = match rest.chars().next()? {
        '[' => ']',
        '{' => '}',
        '<' => '>',
        '…' => return Some(i + '…'.len_utf8()),
        '.' if rest.starts_with("...") => {
            let dots = rest.bytes().take_while(|&b| b == b'.').count();
            return Some(i + dots);
        }
        _ => return None,
    };
    // A bracket closed before the next opening one; an unclosed bracket is literal.
    let body = &rest[1..];
    let end = body.find(close)?;
    (!body[..end].contains(['[', '{', '<'])).then_some(i + 1 + end + 1)
}

impl Template {
    /// Compiles `template`. Any text is a template: one without placeholders matches only
    /// itself (ignoring case and white space).
    pub fn new(template: &str) -> Self {
        let text = template.trim();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < text.len() {
            if let Some(end) = placeholder_end(text, i) {
                parts.push(std::mem::take(&mut literal));
                i = end;
                continue;
            }
            let Some(c) = text[i..].chars().next() else {
                break;
            };
            literal.push(c);
            i += c.len_utf8();
        }
        parts.push(literal);
        // Adjacent placeholders are one wildcard; white space folds like the titles'.
        let last = parts.len() - 1;
        let mut folded: Vec<String> = Vec::with_capacity(parts.len());
        for (n, part) in parts.iter().enumerate() {
            let middle = n > 0 && n < last;
            let mut f = fold(part);
            if f.is_empty() {
                if middle && part.is_empty() {
                    continue; // nothing between two wildcards: one wildcard
                }
                if middle {
                    f.push(' '); // white space only: a space between two wildcards
                }
            } else {
                // `fold` trims: give back the space between a literal and a wildcard.
                if n > 0 && part.starts_with(char::is_whitespace) {
                    f.insert(0, ' ');
                }
                if n < last && part.ends_with(char::is_whitespace) {
                    f.push(' ');
                }
            }
            folded.push(f);
        }
        if folded.is_empty() {
            folded.push(String::new());
        }
        Self { parts: folded }
    }

    /// The number of wildcards.
    pub fn wildcards(&self) -> usize {
        self.parts.len() - 1
    }

    /// The number of literal words (runs of letters or digits) outside the placeholders.
    pub fn literal_words(&self) -> usize {
        self.literal_word_list().count()
    }

    /// The literal parts between the wildcards, folded.
    pub(crate) fn literal_text(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(String::as_str)
    }

    /// The literal words (runs of letters or digits outside the placeholders), lower case.
    pub(crate) fn literal_word_list(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .flat_map(|p| p.split(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
    }

    /// Whether the template matches `title` (see the module docs).
    pub fn matches(&self, title: &str) -> bool {
        self.matches_folded(&fold(title))
    }

    /// [`Template::matches`] for a title already folded (lower case, single spaces, trimmed),
    /// so that a title matched against many templates is folded once.
    pub(crate) fn matches_folded(&self, title: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return title.is_empty();
        };
        let Some(mut tail) = title.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return tail.is_empty();
        };
        let Some(body) = tail.strip_suffix(last.as_str()) else {
            return false;
        };
        // The suffix must not overlap the prefix: `tail` is what follows the prefix.
        tail = body;
        // Each wildcard takes at least one character; the literals between them are found
        // leftmost, which finds a match whenever there is one.
        for part in middle {
            let Some(skip) = tail.chars().next().map(char::len_utf8) else {
                return false;
            };
            let Some(at) = tail[skip..].find(part.as_str()) else {
                return false;
            };
            tail = &tail[skip + at + part.len()..];
        }
        !tail.is_empty()
    }

    /// The literal words that a matching title has as whole words (between spaces or at its
    /// ends): those not glued to a wildcard.
    pub(crate) fn whole_words(&self) -> impl Iterator<Item = &str> {
        let last = self.parts.len() - 1;
        self.parts.iter().enumerate().flat_map(move |(k, part)| {
            let tokens: Vec<&str> = part.split(' ').collect();
            let end = tokens.len() - 1;
            tokens
                .into_iter()
                .enumerate()
                .filter(move |&(j, word)| {
                    !word.is_empty() && (j > 0 || k == 0) && (j < end || k == last)
                })
                .map(|(_, word)| word)
        })
    }

    /// How many of `titles` (already folded) the template matches.
    pub(crate) fn count_folded<'t>(&self, titles: impl IntoIterator<Item = &'t str>) -> u32 {
        let n = titles
            .into_iter()
            .filter(|t| self.matches_folded(t))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// How the titles a template matches meet a target set of the same titles (a formula's), and
/// the rule that says whether the template finds the target: it matches at least half of the
/// target, at least half of what it matches is the target, it has a literal word, and it does
/// not match every title when the target is not every title (a template that matches
/// everything finds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Overlap {
    /// Titles in all.
    pub(crate) titles: usize,
    /// Titles of the target.
    pub(crate) target: usize,
    /// Titles the template matches.
    pub(crate) matched: usize,
    /// Titles of the target it matches.
    pub(crate) both: usize,
    /// The template's literal words.
    pub(crate) literal: usize,
}

impl Overlap {
    /// The overlap of `template`, which matches the titles `hits` (indices), with `target` (a
    /// flag per title, `target_size` of them set).
    pub(crate) fn of(
        template: &Template,
        hits: &[u32],
        target: &[bool],
        target_size: usize,
    ) -> Self {
        Self {
            titles: target.len(),
            target: target_size,
            matched: hits.len(),
            both: hits
                .iter()
                .filter(|&&i| target.get(i as usize).copied().unwrap_or(false))
                .count(),
            literal: template.literal_words(),
        }
    }

    /// The template finds the target (see the type's docs).
    pub(crate) fn finds(&self) -> bool {
        self.literal > 0
            && self.target > 0
            && 2 * self.both >= self.target
            && 2 * self.both >= self.matched
            && !(self.matched == self.titles && self.target < self.titles)
    }

    /// The template is mostly the target: it matches some of it, and at least half of what it
    /// matches is the target (a fragment of the formula, when several are).
    #[cfg(any(feature = "eval", test))]
    pub(crate) fn mostly(&self) -> bool {
        self.literal > 0 && self.both > 0 && 2 * self.both >= self.matched
    }
}

/// Folded titles with an index from each of their words to the titles that have it, so that
/// a template is tried only on the titles that have its rarest whole literal word.
#[derive(Debug)]
pub(crate) struct TitleIndex<'t> {
    titles: &'t [String],
    words: std::collections::HashMap<&'t str, Vec<u32>, foldhash::fast::RandomState>,
}

impl<'t> TitleIndex<'t> {
    /// Indexes `titles` (folded, see [`fold`]).
    pub(crate) fn new(titles: &'t [String]) -> Self {
        let mut words: std::collections::HashMap<&str, Vec<u32>, _> =
            std::collections::HashMap::default();
        for (i, title) in titles.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            for word in title.split(' ') {
                let list: &mut Vec<u32> = words.entry(word).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Self { titles, words }
    }

    /// The indices of the titles `template` matches, in order.
    pub(crate) fn matching(&self, template: &Template) -> Vec<u32> {
        let rarest = template
            .whole_words()
            .map(|w| self.words.get(w).map_or(&[][..], Vec::as_slice))
            .min_by_key(|list| list.len());
        match rarest {
            Some(list) => list
                .iter()
                .copied()
                .filter(|&i| template.matches_folded(&self.titles[i as usize]))
                .collect(),
            None => (0..self.titles.len())
                .filter(|&i| template.matches_folded(&self.titles[i]))
                .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_of_every_kind_are_wildcards() {
        for t in [
            "[N] Cooking Hacks That Actually Work",
            "{n} Cooking Hacks That Actually Work",
            "<n> Cooking Hacks That Actually Work",
            "… Cooking Hacks That Actually Work",
            "... Cooking Hacks That Actually Work",
        ] {
            let t = Template::new(t);
            assert!(t.matches("7 Cooking Hacks That Actually Work"), "{t:?}");
            assert!(
                t.matches("Seven  COOKING hacks that actually work "),
                "{t:?}"
            );
            assert!(!t.matches("Cooking Hacks That Actually Work"), "{t:?}");
            assert!(!t.matches("7 Cooking Hacks That Actually Work!"), "{t:?}");
        }
    }

    #[test]
    fn slots_take_at_least_one_character_and_literals_are_found_anywhere_between() {
        let t = Template::new("I Tried [X] for [N] Days");
        assert!(t.matches("I Tried the Flair 58 for 30 Days"));
        assert!(t.matches("I tried for for for 3 days"));
        assert!(!t.matches("I Tried for 30 Days"));
        let both = Template::new("[A] vs [B]");
        assert!(both.matches("Cats vs Dogs"));
        assert!(!both.matches("vs Dogs"));
        assert!(!both.matches("Cats vs"));
        let adjacent = Template::new("[A][B] Hacks");
        assert_eq!(adjacent.wildcards(), 1);
        assert!(adjacent.matches("x Hacks"));
        let spaced = Template::new("[N] [Topic] Hacks");
        assert_eq!(spaced.wildcards(), 2);
        assert!(spaced.matches("5 Kitchen Hacks"));
        assert!(!spaced.matches("Kitchen Hacks"));
    }

    #[test]
    fn literal_text_and_unclosed_brackets() {
        let t = Template::new("The Truth About Coffee");
        assert!(t.matches("the truth   about coffee"));
        assert!(!t.matches("The Truth About Coffee Beans"));
        let open = Template::new("[Guest] Eats Wings [unclosed");
        assert!(open.matches("Gordon Ramsay Eats Wings [unclosed"));
        assert_eq!(Template::new("[X] | Hot Ones").literal_words(), 2);
        assert_eq!(Template::new("The [X]").literal_words(), 1);
        assert_eq!(Template::new("").literal_words(), 0);
        assert!(Template::new("").matches("  "));
        assert!(!Template::new("").matches("x"));
    }

    #[test]
    fn zero_width_characters_are_not_there() {
        let t = Template::new("[A] and [B] - [C] - Dancing with the Stars");
        assert!(t.matches(
            "Jordan\u{200b} and\u{200b} \u{200b}Lindsay’s - Foxtrot - Dancing with the Stars"
        ));
        assert_eq!(fold(" a\u{200b} \u{200b} b\u{feff}"), "a b");
    }

    #[test]
    fn a_prefix_and_a_suffix_do_not_overlap() {
        let t = Template::new("ab [X] ba");
        assert!(!t.matches("ab ba"));
        assert!(t.matches("ab x ba"));
        let t = Template::new("aa[X]aa");
        assert!(!t.matches("aaa"));
        assert!(!t.matches("aaaa"));
        assert!(t.matches("aaxaa"));
    }

    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let titles: Vec<String> = [
            "7 Cooking Hacks That Actually Work",
            "Why Cooking Is Overrated",
            "100k Subscribers Special",
            "12 Garden Hacks That Actually Work",
            "hacks",
        ]
        .iter()
        .map(|t| fold(t))
        .collect();
        let index = TitleIndex::new(&titles);
        for t in [
            "[N] [Topic] Hacks That Actually Work",
            "[N]k Subscribers Special",
            "[X] Is Overrated",
            "[X]",
            "Hacks",
            "nothing like it",
        ] {
            let t = Template::new(t);
            let scan: Vec<u32> = (0..titles.len())
                .filter(|&i| t.matches_folded(&titles[i]))
                .map(|i| u32::try_from(i).unwrap())
                .collect();
            assert_eq!(index.matching(&t), scan, "{t:?}");
        }
        let glued = Template::new("[N]k Subscribers [X] Special");
        let words: Vec<&str> = glued.whole_words().collect();
        assert_eq!(words, ["subscribers", "special"]); // not "k", glued to a slot
    }

    #[test]
    fn the_rule_of_finding() {
        let o = |titles, target, matched, both| Overlap {
            titles,
            target,
            matched,
            both,
            literal: 2,
        };
        assert!(o(10, 4, 4, 4).finds());
        assert!(o(10, 4, 4, 2).finds()); // half of each
        assert!(!o(10, 4, 5, 2).finds()); // under half of what it matches
        assert!(!o(10, 4, 1, 1).finds()); // under half of the target
        assert!(!o(10, 6, 10, 6).finds()); // matches everything
        assert!(o(10, 10, 10, 10).finds()); // ... which is the target
        assert!(
            !Overlap {
                literal: 0,
                ..o(10, 4, 4, 4)
            }
            .finds()
        );
        assert!(o(10, 4, 2, 1).mostly() && !o(10, 4, 3, 1).mostly());
    }

    #[test]
    fn coverage_reads_as_a_share() {
        let c = Coverage::new(3, 4);
        assert_eq!(c.to_string(), "3/4");
        assert!((c.share() - 0.75).abs() < 1e-12);
        assert!(Coverage::new(0, 4).is_ungrounded());
        assert!(!Coverage::new(0, 0).is_ungrounded());
    }
}

//! Consolidation: the same pattern found in several clusters or batches becomes one, with its
//! provenance. Greedy, in a fixed order: each pattern joins the group with its exact normalised
//! text, else the **first** group (in creation order) whose word set has a Jaccard similarity
//! of at least the threshold, else starts a group.
//!
//! Candidates come from an inverted index with a prefix filter, as in all-pairs similarity
//! joins: words are interned and ranked rarest first over the whole input, and two word sets
//! can reach Jaccard `t` only if they share a word within the first `|x| − ⌈t·|x|⌉ + 1` of
//! each, and their sizes are within a factor `t`. So each pattern is compared with the few
//! groups that can match, not with every group: near-linear in the number of patterns, with
//! the result of the plain scan (a property test keeps the scan as the reference).

use std::collections::{HashMap, HashSet};

use super::{ConsolidatedPattern, Support};

/// Hash maps keyed by our own strings and numbers: foldhash is several times faster than
/// `SipHash` here, and no key comes from an adversary that could flood a bucket on purpose
/// (the worst is a slower consolidation).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// Text reduced for comparison: lower case; placeholders (`[X]`, `{topic}`, `<n>`) and numbers
/// become one token each; other punctuation dropped; words separated by one space.
// Public through `testing` only (and used by this module's tests).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    normalize_into(text, &mut out);
    out
}

/// [`normalize`], appended to `out` (which the caller clears).
fn normalize_into(text: &str, out: &mut String) {
    // A separator is owed before the next word; the last thing written was a number token.
    let (mut gap, mut after_number) = (false, false);
    let mut depth = 0usize;
    let token = |out: &mut String, gap: &mut bool, word: &str| {
        if *gap && !out.is_empty() {
            out.push(' ');
        }
        *gap = false;
        out.push_str(word);
    };
    for c in text.chars() {
        match c {
            '[' | '{' | '<' => {
                if depth == 0 {
                    gap = true;
                    token(out, &mut gap, "_slot_");
                    gap = true;
                    after_number = false;
                }
                depth += 1;
            }
            ']' | '}' | '>' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_digit() => {
                if !after_number {
                    gap = true;
                    token(out, &mut gap, "_num_");
                    gap = true;
                    after_number = true;
                }
            }
            c if c.is_alphanumeric() => {
                if gap && !out.is_empty() {
                    out.push(' ');
                }
                gap = false;
                out.extend(c.to_lowercase());
                after_number = false;
            }
            '\'' | '’' => {}
            _ => {
                gap = true;
                after_number = false;
            }
        }
    }
}

/// How a threshold matches word sets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// `t ≤ 0`: every set reaches it, so the first group takes every pattern without its own
    /// exact group.
    Always,
    /// `t > 1` or NaN: no Jaccard reaches it; only exact texts merge.
    Never,
    /// `0 < t ≤ 1`.
    AtLeast(f64),
}

impl Rule {
    fn of(threshold: f64) -> Self {
        if threshold <= 0.0 {
            Self::Always
        } else if threshold <= 1.0 {
            Self::AtLeast(threshold)
        } else {
            Self::Never // also NaN, which fails every comparison
        }
    }
}

/// Words a set must share with a match, at least: `⌈t·n⌉`, taken a hair low so that float
/// rounding never makes a prefix too short (a longer prefix only adds candidates).
fn min_overlap(t: f64, n: usize) -> usize {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let overlap = (t * n as f64 - 1e-9).ceil().max(1.0) as usize;
    overlap.min(n.max(1))
}

/// `|a ∩ b|` and `|a ∪ b|` of two sorted, duplicate-free rank lists.
fn overlap(a: &[u32], b: &[u32]) -> (usize, usize) {
    let (mut i, mut j, mut inter) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    (inter, a.len() + b.len() - inter)
}

/// Exactly the reference's test: `|a ∩ b| / |a ∪ b| ≥ t` in `f64` (1 for two empty sets).
fn reaches(a: &[u32], b: &[u32], t: f64) -> bool {
    let (inter, union) = overlap(a, b);
    #[allow(clippy::cast_precision_loss)] // word counts are tiny
    let jaccard = if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    };
    jaccard >= t
}

/// A group in the posting list of one of its prefix words.
#[derive(Clone, Copy, Default)]
struct Posting {
    group: u32,
    /// The group's number of words.
    size: u32,
    /// Where the word is in the group's sorted words.
    position: u32,
    /// The group's words as a 64-bit signature ([`signature`]).
    signature: u64,
}

/// A word's bit in a signature.
fn bit(word: u32) -> u64 {
    1 << (u64::from(word).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// A set's signature: the bits of its words. A word whose bit is not in a set's signature is
/// not in the set, so the words of `x` whose bits are in `y`'s signature bound `|x ∩ y|` from
/// above, with no look at `y`'s words.
fn signature(words: &[u32]) -> u64 {
    words.iter().fold(0, |s, &w| s | bit(w))
}

/// Postings whose word has fewer than this many words after it in its group are kept apart
/// ("late"): a common word sits at the end of most groups (words are ranked rarest first).
const LATE: u32 = 2;

/// The groups' word sets and the inverted index over their prefixes, with the positional
/// filter of `PPJoin`: a candidate is dropped as soon as the words it shares so far plus all it
/// could still share fall short of the overlap the threshold needs, without reading its words.
///
/// Late postings are not read by a query that needs at least [`LATE`] words after the first
/// one it shares with any group (every query of four words or more at the default 0.6): the
/// first word two matching sets share comes with all their other shared words after it in
/// both, so it cannot be late in the group; and once a pair meets at a late word, every word
/// they share after it is late too, so the counts of the postings read stay exact and the
/// filter stays sound. A frequent word then costs a query little, however many groups end
/// with it.
#[derive(Default)]
struct Index {
    /// Every group's word ranks (sorted), one after another: candidates are read from one
    /// block of memory rather than one allocation each.
    ranks: Vec<u32>,
    /// Start and length of each group's ranks.
    spans: Vec<(u32, u32)>,
    /// Every posting list, one after another, each with room for every pattern that could
    /// post to it (counted before the first group), so no list is an allocation of its own.
    postings: Vec<Posting>,
    /// Rank × 2 (+ 1 for late) → where its list starts in `postings`, and its length: the
    /// groups whose prefix holds the word, in creation order.
    lists: Vec<(u32, u32)>,
    /// For the query under way: the overlap a group of each size needs.
    needed: Vec<u32>,
    /// Per group, for the query under way: the query it was last seen by, and the words it
    /// shares with the query so far (`u32::MAX`: ruled out).
    seen: Vec<u32>,
    shared: Vec<u32>,
    query: u32,
    touched: Vec<u32>,
}

/// The prefix of a set of `n` words that the filter indexes and probes at threshold `t`.
fn prefix_len(t: f64, n: usize) -> usize {
    (n + 1).saturating_sub(min_overlap(t, n)).min(n)
}

/// The posting list of word `w` at `position` in a group of `size` words: the word's, late
/// or not.
fn list_of(w: u32, size: usize, position: usize) -> usize {
    w as usize * 2 + usize::from(size - position - 1 < LATE as usize)
}

/// Sizes whose needed overlap a query tables (larger ones are computed when met).
const MAX_TABLE: usize = 256;

/// The overlap two sets of these sizes need for Jaccard `t`: `⌈t/(1+t)·(a+b)⌉`, a hair low.
fn needed_overlap(t: f64, a: usize, b: usize) -> u32 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let needed = (t / (1.0 + t) * (a + b) as f64 - 1e-9).ceil().max(0.0) as u32;
    needed
}

impl Index {
    /// An index with room for the postings of every pattern of `prepared`, any of which may
    /// start a group.
    fn new(prepared: &Prepared, rule: Rule) -> Self {
        let mut index = Self::default();
        let Rule::AtLeast(t) = rule else {
            return index;
        };
        let mut counts: Vec<u32> = Vec::new();
        for i in 0..prepared.ends.len() {
            let words = prepared.words(i);
            for (position, &w) in words[..prefix_len(t, words.len())].iter().enumerate() {
                let list = list_of(w, words.len(), position);
                if list >= counts.len() {
                    counts.resize(list + 1, 0);
                }
                counts[list] += 1;
            }
        }
        let mut start = 0u32;
        index.lists = counts
            .iter()
            .map(|&count| {
                let list = (start, 0);
                start = start.saturating_add(count);
                list
            })
            .collect();
        index.postings = vec![Posting::default(); start as usize];
        index
    }

    fn words(&self, g: usize) -> &[u32] {
        let (start, len) = self.spans[g];
        &self.ranks[start as usize..(start + len) as usize]
    }

    /// A new group `g` with these words.
    fn add(&mut self, g: usize, words: &[u32], rule: Rule) {
        let start = u32::try_from(self.ranks.len()).unwrap_or(u32::MAX);
        let size = u32::try_from(words.len()).unwrap_or(u32::MAX);
        self.ranks.extend_from_slice(words);
        self.spans.push((start, size));
        self.seen.push(0);
        self.shared.push(0);
        if let Rule::AtLeast(t) = rule {
            let group = u32::try_from(g).unwrap_or(u32::MAX);
            let signature = signature(words);
            for (position, &w) in words[..prefix_len(t, words.len())].iter().enumerate() {
                let list = list_of(w, words.len(), position);
                // Room was made for every pattern's postings: never missing.
                if let Some((start, len)) = self.lists.get_mut(list)
                    && let Some(slot) = self.postings.get_mut((*start + *len) as usize)
                {
                    *slot = Posting {
                        group,
                        size,
                        position: u32::try_from(position).unwrap_or(u32::MAX),
                        signature,
                    };
                    *len += 1;
                }
            }
        }
    }

    /// The first group in creation order (the smallest index) whose words reach `t`.
    fn first_match(&mut self, words: &[u32], t: f64) -> Option<usize> {
        let prefix = prefix_len(t, words.len());
        #[allow(clippy::cast_precision_loss)]
        let (low, high) = (t * words.len() as f64 - 1e-9, words.len() as f64 / t + 1e-9);
        self.query = self.query.wrapping_add(1);
        if self.query == 0 {
            // The stamps wrapped: start them afresh.
            self.seen.iter_mut().for_each(|s| *s = 0);
            self.query = 1;
        }
        self.touched.clear();
        // The query's signature, and how many of its words share a bit with another: the
        // words whose bits a group has are at most the bits in common plus those extra.
        let query_signature = signature(words);
        let extra = u32::try_from(words.len()).unwrap_or(u32::MAX) - query_signature.count_ones();
        // The overlap each admissible size needs, and whether late postings can matter: the
        // least overlap is the smallest admissible size's.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (smallest, largest) = (low.ceil().max(0.0) as usize, high.floor().max(0.0) as usize);
        self.needed.clear();
        self.needed
            .extend((0..=largest.min(MAX_TABLE)).map(|size| needed_overlap(t, words.len(), size)));
        let least = needed_overlap(t, words.len(), smallest.max(1));
        let lists = if least > LATE { 1 } else { 2 };
        for (i, &w) in words[..prefix].iter().enumerate() {
            let after_x = u32::try_from(words.len() - i - 1).unwrap_or(u32::MAX);
            let first = w as usize * 2;
            let Some(ranges) = self.lists.get(first..(first + lists).min(self.lists.len())) else {
                continue;
            };
            let postings = &self.postings;
            for p in ranges
                .iter()
                .flat_map(|&(start, len)| &postings[start as usize..(start + len) as usize])
            {
                let size = f64::from(p.size);
                if size < low || size > high {
                    continue;
                }
                let needed = self
                    .needed
                    .get(p.size as usize)
                    .copied()
                    .unwrap_or_else(|| needed_overlap(t, words.len(), p.size as usize));
                // At most the query's words whose bits the group has: most groups met through
                // one rare word fail here, read from the posting itself.
                if (p.signature & query_signature).count_ones() + extra < needed {
                    continue;
                }
                let g = p.group as usize;
                if self.seen[g] != self.query {
                    self.seen[g] = self.query;
                    self.shared[g] = 0;
                    self.touched.push(p.group);
                }
                let shared = self.shared[g];
                if shared == u32::MAX {
                    continue;
                }
                // Shared so far, this word, and at most what both have left after it.
                let after_y = p.size - p.position - 1;
                let bound = shared + 1 + after_x.min(after_y);
                self.shared[g] = if bound < needed { u32::MAX } else { shared + 1 };
            }
        }
        let mut best: Option<usize> = None;
        for &g in &self.touched {
            let g = g as usize;
            if self.shared[g] == u32::MAX || best.is_some_and(|b| g >= b) {
                continue;
            }
            if reaches(self.words(g), words, t) {
                best = Some(g);
            }
        }
        best
    }
}

/// Lists without repeats: a linear scan while short (most groups hold one cluster and a few
/// examples), a hash set per group once long.
#[derive(Default)]
struct Members {
    long: Map<usize, Set<String>>,
}

impl Members {
    const SHORT: usize = 16;

    /// Appends `item` to `list` (group `g`'s) unless it is there; whether it was appended.
    fn insert(&mut self, g: usize, list: &mut Vec<String>, item: &str) -> bool {
        if list.len() < Self::SHORT {
            if list.iter().any(|x| x == item) {
                return false;
            }
            list.push(item.to_owned());
            if list.len() == Self::SHORT {
                self.long.insert(g, list.iter().cloned().collect());
            }
            return true;
        }
        let set = self.long.entry(g).or_default();
        if set.contains(item) {
            return false;
        }
        set.insert(item.to_owned());
        list.push(item.to_owned());
        true
    }
}

/// Every pattern, prepared, in two flat arrays (no allocation per pattern): its normalised
/// text as its sequence of word ids (equal sequences are equal texts, since normalised words
/// are separated by exactly one space; cheaper to hash and keep), and its word ranks, sorted,
/// without repeats.
struct Prepared {
    keys: Vec<u32>,
    words: Vec<u32>,
    /// Per pattern: where its key and its words end.
    ends: Vec<(u32, u32)>,
}

impl Prepared {
    fn spans(&self, i: usize) -> ((usize, usize), (usize, usize)) {
        let (key_end, words_end) = self.ends[i];
        let (key_start, words_start) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        (
            (key_start as usize, key_end as usize),
            (words_start as usize, words_end as usize),
        )
    }

    fn key(&self, i: usize) -> &[u32] {
        let ((start, end), _) = self.spans(i);
        &self.keys[start..end]
    }

    fn words(&self, i: usize) -> &[u32] {
        let (_, (start, end)) = self.spans(i);
        &self.words[start..end]
    }
}

/// A word of up to 15 bytes as one integer: its bytes, then its length in the top byte.
fn pack(word: &str) -> Option<u128> {
    let bytes = word.as_bytes();
    if bytes.len() > 15 {
        return None;
    }
    let mut packed = [0u8; 16];
    packed[..bytes.len()].copy_from_slice(bytes);
    packed[15] = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
    Some(u128::from_le_bytes(packed))
}

/// Normalises every pattern of `order` and ranks its words rarest first over the whole input
/// (ties by first appearance), the global order the prefix filter needs.
fn prepare(order: &[&Support]) -> Prepared {
    let count = order.iter().map(|s| s.patterns.len()).sum();
    let mut prepared = Prepared {
        keys: Vec::with_capacity(count * 6),
        words: Vec::with_capacity(count * 6),
        ends: Vec::with_capacity(count),
    };
    // One entry per distinct word (not per occurrence); words of up to 15 bytes (nearly all)
    // are keyed by their bytes in one integer, so a look-up reads no string elsewhere.
    let mut short_ids: Map<u128, u32> = Map::default();
    let mut long_ids: Map<Box<str>, u32> = Map::default();
    let mut frequency: Vec<u32> = Vec::new();
    let mut text = String::new();
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    for p in order.iter().flat_map(|s| &s.patterns) {
        text.clear();
        normalize_into(p.template.as_deref().unwrap_or(&p.pattern), &mut text);
        let key_start = prepared.keys.len();
        for w in text.split(' ') {
            let next = to_u32(frequency.len());
            let id = if let Some(packed) = pack(w) {
                *short_ids.entry(packed).or_insert(next)
            } else if let Some(&id) = long_ids.get(w) {
                id
            } else {
                long_ids.insert(w.into(), next);
                next
            };
            if id == next {
                frequency.push(0);
            }
            prepared.keys.push(id);
        }
        let words_start = prepared.words.len();
        prepared
            .words
            .extend_from_slice(&prepared.keys[key_start..]);
        let words = &mut prepared.words[words_start..];
        words.sort_unstable();
        let mut unique = 0;
        for k in 0..words.len() {
            if k == 0 || words[k] != words[k - 1] {
                words[unique] = words[k];
                unique += 1;
            }
        }
        prepared.words.truncate(words_start + unique);
        for &w in &prepared.words[words_start..] {
            frequency[w as usize] += 1;
        }
        prepared
            .ends
            .push((to_u32(prepared.keys.len()), to_u32(prepared.words.len())));
    }
    drop((short_ids, long_ids));
    let mut by_rarity: Vec<u32> = (0..to_u32(frequency.len())).collect();
    by_rarity.sort_by_key(|&w| (frequency[w as usize], w));
    let mut rank = vec![0u32; frequency.len()];
    for (r, &w) in by_rarity.iter().enumerate() {
        rank[w as usize] = to_u32(r);
    }
    for i in 0..prepared.ends.len() {
        let (_, (start, end)) = prepared.spans(i);
        let words = &mut prepared.words[start..end];
        for w in words.iter_mut() {
            *w = rank[*w as usize];
        }
        words.sort_unstable();
    }
    prepared
}

/// Merges the same pattern found in several clusters or batches: identical normalised text
/// first, then near-duplicates whose word sets have a Jaccard similarity of at least
/// `threshold` (the first such group, in creation order). Clusters are considered in order of
/// priority (then id), patterns in the order given, so the result is deterministic. Sorted by
/// evidence, highest first.
///
/// A threshold of 0 or less merges every pattern without an exact match into the first group;
/// above 1 (or NaN) only identical normalised texts merge; 1 merges identical word sets.
pub fn consolidate(support: &[Support], threshold: f64) -> Vec<ConsolidatedPattern> {
    let mut order: Vec<&Support> = support.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then_with(|| a.id.cmp(&b.id))
    });
    let prepared = prepare(&order);
    let rule = Rule::of(threshold);
    let mut groups: Vec<ConsolidatedPattern> = Vec::new();
    let mut index = Index::new(&prepared, rule);
    // Membership of a group's clusters and examples: a scan while the list is short (most
    // groups hold one cluster), a set per group beyond that.
    let mut clusters = Members::default();
    let mut examples = Members::default();
    let mut by_key: Map<&[u32], usize> =
        Map::with_capacity_and_hasher(prepared.ends.len(), foldhash::fast::RandomState::default());
    let mut i = 0;
    for s in &order {
        for p in &s.patterns {
            let (key, words) = (prepared.key(i), prepared.words(i));
            i += 1;
            let found = by_key.get(key).copied().or_else(|| match rule {
                Rule::Always => (!groups.is_empty()).then_some(0),
                Rule::Never => None,
                Rule::AtLeast(t) => index.first_match(words, t),
            });
            let g = found.unwrap_or_else(|| {
                let g = groups.len();
                index.add(g, words, rule);
                by_key.insert(key, g);
                groups.push(ConsolidatedPattern {
                    pattern: p.pattern.clone(),
                    template: None,
                    clusters: Vec::new(),
                    examples: Vec::new(),
                    evidence: 0.0,
                    wide: false,
                    occurrences: 0,
                });
                g
            });
            let out = &mut groups[g];
            out.occurrences += 1;
            if out.template.is_none() {
                out.template.clone_from(&p.template);
            }
            if clusters.insert(g, &mut out.clusters, &s.id) {
                out.evidence += s.priority * s.avg_performance;
            }
            out.wide |= s.is_wide;
            for e in p.examples.iter().filter(|e| e.grounded) {
                examples.insert(g, &mut out.examples, &e.title);
            }
        }
    }
    let mut out: Vec<ConsolidatedPattern> = groups
        .into_iter()
        .map(|mut g| {
            g.wide |= g.clusters.len() > 1;
            g
        })
        .collect();
    out.sort_by(|a, b| {
        b.evidence
            .total_cmp(&a.evidence)
            .then_with(|| a.pattern.cmp(&b.pattern))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_sorted_lists() {
        assert_eq!(overlap(&[1, 3, 5], &[3, 4, 5, 6]), (2, 5));
        assert_eq!(overlap(&[], &[]), (0, 0));
        assert!(reaches(&[], &[], 1.0));
    }

    #[test]
    fn prefixes_are_never_too_short() {
        for n in 1..50 {
            for t in [0.01, 0.1, 0.3, 0.5, 0.6, 0.7, 0.9, 0.99, 1.0] {
                let o = min_overlap(t, n);
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                let exact = (t * n as f64).ceil() as usize;
                assert!(o <= exact.max(1) && o >= 1 && o <= n, "{t} {n}");
            }
        }
    }
}

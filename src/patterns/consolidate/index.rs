//! The inverted index over the groups' words, with the filters of all-pairs similarity joins
//! (prefix, size, position), late postings kept apart, and word signatures.

use super::Rule;
use super::prepare::Prepared;

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

/// A group in the posting list of one of its prefix words. The first slot of every list is
/// its header instead, whose `group` is the list's length: the length and the first postings
/// share a cache line, so reading a list costs one miss, not two.
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

/// A list no pattern posts to.
const NONE: u32 = u32::MAX;

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
///
/// Every pattern is known before the first group, so the lists are laid out once, and each
/// pattern's probes (where its prefix words' lists start) are found in one pass before the
/// grouping, when the look-ups do not wait on each other: at scale the index outgrows the
/// caches, and a query then reads its lists and nothing else at random.
#[derive(Default)]
pub(super) struct Index {
    /// Every group's word ranks (sorted), one after another: candidates are read from one
    /// block of memory rather than one allocation each.
    ranks: Vec<u32>,
    /// Start and length of each group's ranks.
    spans: Vec<(u32, u32)>,
    /// Every posting list, one after another: a header, then room for every pattern that
    /// could post to it (counted before the first group), so no list is an allocation of its
    /// own. A word's list holds the groups whose prefix has it, in creation order.
    postings: Vec<Posting>,
    /// Per pattern, per prefix word in order: where the word's list and its late list start
    /// in `postings` ([`NONE`] for a list nobody posts to).
    probes: Vec<[u32; 2]>,
    /// Per pattern: where its probes end.
    probe_ends: Vec<u32>,
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

/// Whether word `position` of a group of `size` words posts to the word's late list.
fn is_late(size: usize, position: usize) -> bool {
    size - position - 1 < LATE as usize
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
    /// start a group, and every pattern's probes.
    pub(super) fn new(prepared: &Prepared, rule: Rule) -> Self {
        let mut index = Self::default();
        let Rule::AtLeast(t) = rule else {
            return index;
        };
        let patterns = prepared.ends.len();
        // Per list (word × 2, + 1 for late): how many patterns could post to it, then where
        // it starts.
        let mut starts: Vec<u32> = Vec::new();
        for i in 0..patterns {
            let words = prepared.words(i);
            for (position, &w) in words[..prefix_len(t, words.len())].iter().enumerate() {
                let list = w as usize * 2 + usize::from(is_late(words.len(), position));
                if list >= starts.len() {
                    starts.resize(list + 2, 0);
                }
                starts[list] += 1;
            }
        }
        let mut next = 0u32;
        for start in &mut starts {
            let count = *start;
            *start = if count == 0 { NONE } else { next };
            next = next.saturating_add(count.saturating_add(u32::from(count > 0)));
        }
        index.postings = vec![Posting::default(); next as usize];
        index.probe_ends.reserve_exact(patterns);
        for i in 0..patterns {
            let words = prepared.words(i);
            index
                .probes
                .extend(words[..prefix_len(t, words.len())].iter().map(|&w| {
                    let list = w as usize * 2;
                    [
                        starts.get(list).copied().unwrap_or(NONE),
                        starts.get(list + 1).copied().unwrap_or(NONE),
                    ]
                }));
            index
                .probe_ends
                .push(u32::try_from(index.probes.len()).unwrap_or(u32::MAX));
        }
        index
    }

    fn words(&self, g: usize) -> &[u32] {
        let (start, len) = self.spans[g];
        &self.ranks[start as usize..(start + len) as usize]
    }

    /// Where pattern `i`'s probes are in `probes`: one per prefix word, in order.
    fn probe_range(&self, i: usize) -> std::ops::Range<usize> {
        let end = self.probe_ends.get(i).map_or(0, |&e| e as usize);
        let start = i
            .checked_sub(1)
            .and_then(|before| self.probe_ends.get(before))
            .map_or(0, |&e| e as usize);
        start.min(end)..end
    }

    /// Reads the headers of the lists of patterns `patterns` ahead of their queries, all in
    /// one loop: the loads do not depend on each other, so their cache misses overlap one
    /// another (and the queries before), where each query would otherwise wait for its own
    /// one at a time.
    pub(super) fn warm(&self, patterns: std::ops::Range<usize>) {
        let (Some(first), Some(last)) = (
            self.probe_range(patterns.start).next(),
            self.probe_range(patterns.end.saturating_sub(1)).last(),
        ) else {
            return;
        };
        let lengths: u32 = self.probes[first..=last]
            .iter()
            .filter(|probe| probe[0] != NONE)
            .map(|probe| {
                // The header and the first two postings: a list can start anywhere in a line.
                let at = probe[0] as usize;
                self.postings
                    .get(at..(at + 3).min(self.postings.len()))
                    .map_or(0, |slots| slots.iter().fold(0, |sum, p| sum ^ p.size))
            })
            .fold(0, u32::wrapping_add);
        std::hint::black_box(lengths);
    }

    /// Pattern `i`, with these words, starts group `g`.
    pub(super) fn add(&mut self, g: usize, i: usize, words: &[u32], rule: Rule) {
        let start = u32::try_from(self.ranks.len()).unwrap_or(u32::MAX);
        let size = u32::try_from(words.len()).unwrap_or(u32::MAX);
        self.ranks.extend_from_slice(words);
        self.spans.push((start, size));
        self.seen.push(0);
        self.shared.push(0);
        if let Rule::AtLeast(_) = rule {
            let group = u32::try_from(g).unwrap_or(u32::MAX);
            let signature = signature(words);
            for (position, k) in self.probe_range(i).enumerate() {
                let list = self.probes[k][usize::from(is_late(words.len(), position))];
                if list == NONE {
                    continue;
                }
                let list = list as usize;
                // Room was made for every pattern's postings: never missing.
                let len = self.postings.get(list).map_or(0, |h| h.group);
                if let Some(slot) = self.postings.get_mut(list + 1 + len as usize) {
                    *slot = Posting {
                        group,
                        size,
                        position: u32::try_from(position).unwrap_or(u32::MAX),
                        signature,
                    };
                    if let Some(header) = self.postings.get_mut(list) {
                        header.group = len + 1;
                    }
                }
            }
        }
    }

    /// The first group in creation order (the smallest index) whose words reach `t`, for
    /// pattern `i` with these words.
    pub(super) fn first_match(&mut self, i: usize, words: &[u32], t: f64) -> Option<usize> {
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
        for (position, k) in self.probe_range(i).enumerate() {
            let after_x = u32::try_from(words.len() - position - 1).unwrap_or(u32::MAX);
            let probe = self.probes[k];
            for &start in &probe[..lists] {
                let (list_start, len) = if start == NONE {
                    (0, 0)
                } else {
                    let start = start as usize + 1;
                    (start, self.postings[start - 1].group as usize)
                };
                for p in &self.postings[list_start..list_start + len] {
                    let size = f64::from(p.size);
                    if size < low || size > high {
                        continue;
                    }
                    let needed = self
                        .needed
                        .get(p.size as usize)
                        .copied()
                        .unwrap_or_else(|| needed_overlap(t, words.len(), p.size as usize));
                    // At most the query's words whose bits the group has: most groups met
                    // through one rare word fail here, read from the posting itself.
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

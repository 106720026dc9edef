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
///
/// 16 bytes: sizes and positions fit in 16 bits for any title. A group of [`HUGE`] words or
/// more stores [`HUGE`], and a query then reads its size from the group and takes the words
/// after as unbounded (so its bound stays an upper bound).
#[derive(Clone, Copy, Default)]
struct Posting {
    group: u32,
    /// The group's number of words, or [`HUGE`].
    size: u16,
    /// How many words come after this one in the group's sorted words, or [`HUGE`].
    after: u16,
    /// The group's words as a 64-bit signature ([`signature`]).
    signature: u64,
}

/// A size or a count of words too large for a posting's 16 bits.
const HUGE: u16 = u16::MAX;

/// `n` in a posting's 16 bits, or [`HUGE`].
fn narrow(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(HUGE)
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

/// A word whose (not late) list would hold at least this many postings gets one list per
/// group size instead ([`SIZES`]), so a query reads only the sizes it can meet there.
const LONG: u32 = 64;

/// Size lists of a long word: sizes 1 to `SIZES - 1` each, then one for every larger size.
const SIZES: usize = 17;

/// The size list a group of `size` words posts to.
fn size_list(size: usize) -> usize {
    size.clamp(1, SIZES) - 1
}

/// Where a prefix word's postings are, for one pattern.
#[derive(Clone, Copy)]
struct Probe {
    /// The start of the word's list in `postings`, or [`NONE`].
    list: u32,
    /// The start of its late list, or [`NONE`].
    late: u32,
    /// For a long word: its size lists in `by_size` (the word's list is then empty).
    sizes: u32,
}

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
/// The same holds for a long word's size lists: a query skips the sizes it could not first
/// meet at this word (one plus the words after it in the query fall short of what that size
/// needs). Words further on have fewer after them, so a group skipped once is skipped at every
/// later word: its count stays exact for every bound computed, and its words are checked in
/// full at the end.
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
    /// own. A list holds the groups whose prefix has its word, in creation order.
    postings: Vec<Posting>,
    /// Per long word: where each of its size lists starts in `postings`, or [`NONE`].
    by_size: Vec<[u32; SIZES]>,
    /// Per pattern, per prefix word in order: where its lists are.
    probes: Vec<Probe>,
    /// Per pattern: where its probes end.
    probe_ends: Vec<u32>,
    /// The state of the query under way.
    query: Query,
}

/// What every query of one size needs: the sizes it can match, the overlap each needs, and
/// the least of them.
#[derive(Default)]
struct Shape {
    smallest: usize,
    largest: usize,
    least: u32,
    /// Per group size up to `largest` ([`MAX_TABLE`] at most); never empty once made.
    needed: Vec<u32>,
}

impl Shape {
    fn of(t: f64, n: usize) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let (low, high) = (t * n as f64 - 1e-9, n as f64 / t + 1e-9);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (smallest, largest) = (low.ceil().max(0.0) as usize, high.floor().max(0.0) as usize);
        Self {
            smallest,
            largest,
            least: needed_overlap(t, n, smallest.max(1)),
            needed: (0..=largest.min(MAX_TABLE))
                .map(|size| needed_overlap(t, n, size))
                .collect(),
        }
    }
}

/// What a query keeps while it reads the lists.
#[derive(Default)]
struct Query {
    /// The overlap a group of each size needs ([`MAX_TABLE`] sizes at most).
    needed: Vec<u32>,
    /// Per query size (below [`MAX_TABLE`]): its shape, once met; and one for a larger size.
    shapes: Vec<Shape>,
    scratch: Shape,
    /// Per group: the query it was last seen by, and the words it shares with the query so
    /// far (`u32::MAX`: ruled out).
    seen: Vec<u32>,
    shared: Vec<u32>,
    stamp: u32,
    /// The groups seen by this query.
    touched: Vec<u32>,
    /// This query's signature, and how many of its words share a bit with another.
    signature: u64,
    extra: u32,
    /// Per size list: the words whose list of that size this query skipped, which a group of
    /// that size met before may share (counted as shared in its bounds).
    skipped: [u32; SIZES],
    /// The sizes it can match, and its threshold and size.
    smallest: usize,
    largest: usize,
    t: f64,
    size: usize,
}

impl Query {
    /// The overlap a group of `size` words needs.
    fn needed(&self, size: usize) -> u32 {
        self.needed
            .get(size)
            .copied()
            .unwrap_or_else(|| needed_overlap(self.t, self.size, size))
    }

    /// Reads one list at a query word with `after_x` words after it (`spans`: the groups'
    /// words, for the size of a huge one).
    fn visit(&mut self, list: &[Posting], after_x: u32, spans: &[(u32, u32)]) {
        for p in list {
            let size = if p.size == HUGE {
                spans
                    .get(p.group as usize)
                    .map_or(usize::MAX, |s| s.1 as usize)
            } else {
                usize::from(p.size)
            };
            if size < self.smallest || size > self.largest {
                continue;
            }
            let needed = self.needed(size);
            // At most the query's words whose bits the group has: most groups met through
            // one rare word fail here, read from the posting itself.
            if (p.signature & self.signature).count_ones() + self.extra < needed {
                continue;
            }
            let g = p.group as usize;
            if self.seen[g] != self.stamp {
                self.seen[g] = self.stamp;
                self.shared[g] = 0;
                self.touched.push(p.group);
            }
            let shared = self.shared[g];
            if shared == u32::MAX {
                continue;
            }
            // Shared so far, this word, and at most what both have left after it.
            let after_y = if p.after == HUGE {
                u32::MAX
            } else {
                u32::from(p.after)
            };
            let bound = shared + self.skipped[size_list(size)] + 1 + after_x.min(after_y);
            self.shared[g] = if bound < needed { u32::MAX } else { shared + 1 };
        }
    }
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

/// Lays out lists of these lengths one after another, each after a header: their starts
/// ([`NONE`] for an empty one), and where the next list would start.
fn lay_out(counts: &mut [u32], mut next: u32) -> u32 {
    for count in counts {
        let n = *count;
        *count = if n == 0 { NONE } else { next };
        next = next.saturating_add(n.saturating_add(u32::from(n > 0)));
    }
    next
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
        let prefix = |i: usize| {
            let words = prepared.words(i);
            let n = words.len();
            words[..prefix_len(t, n)]
                .iter()
                .enumerate()
                .map(move |(position, &w)| (w as usize, n, is_late(n, position)))
        };
        // Per list (word × 2, + 1 for late): how many patterns could post to it.
        let mut starts: Vec<u32> = Vec::new();
        for (w, _, late) in (0..patterns).flat_map(prefix) {
            let list = w * 2 + usize::from(late);
            if list >= starts.len() {
                starts.resize((w + 1) * 2, 0);
            }
            starts[list] += 1;
        }
        // Long words get size lists instead of their list.
        let mut sizes_of: Vec<u32> = vec![NONE; starts.len() / 2];
        for (w, sizes) in sizes_of.iter_mut().enumerate() {
            if starts[w * 2] >= LONG {
                starts[w * 2] = 0;
                *sizes = u32::try_from(index.by_size.len()).unwrap_or(NONE);
                index.by_size.push([0; SIZES]);
            }
        }
        for (w, n, late) in (0..patterns).flat_map(prefix) {
            let sizes = sizes_of.get(w).copied().unwrap_or(NONE);
            if !late && let Some(lists) = index.by_size.get_mut(sizes as usize) {
                lists[size_list(n)] += 1;
            }
        }
        let mut next = lay_out(&mut starts, 0);
        for lists in &mut index.by_size {
            next = lay_out(lists, next);
        }
        index.postings = vec![Posting::default(); next as usize];
        index.probe_ends.reserve_exact(patterns);
        for i in 0..patterns {
            index.probes.extend(prefix(i).map(|(w, _, _)| Probe {
                list: starts.get(w * 2).copied().unwrap_or(NONE),
                late: starts.get(w * 2 + 1).copied().unwrap_or(NONE),
                sizes: sizes_of.get(w).copied().unwrap_or(NONE),
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

    /// The postings so far of the list that starts at `start`.
    fn list(postings: &[Posting], start: u32) -> &[Posting] {
        if start == NONE {
            return &[];
        }
        let first = start as usize + 1;
        let len = postings.get(first - 1).map_or(0, |h| h.group as usize);
        postings.get(first..first + len).unwrap_or(&[])
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
            .filter(|probe| probe.list != NONE)
            .map(|probe| {
                // The header and the first two postings: a list can start anywhere in a line.
                let at = probe.list as usize;
                self.postings
                    .get(at..(at + 3).min(self.postings.len()))
                    .map_or(0, |slots| slots.iter().fold(0, |sum, p| sum ^ p.group))
            })
            .fold(0, u32::wrapping_add);
        std::hint::black_box(lengths);
    }

    /// Pattern `i`, with these words, starts group `g`.
    pub(super) fn add(&mut self, g: usize, i: usize, words: &[u32], rule: Rule) {
        let start = u32::try_from(self.ranks.len()).unwrap_or(u32::MAX);
        self.ranks.extend_from_slice(words);
        self.spans
            .push((start, u32::try_from(words.len()).unwrap_or(u32::MAX)));
        self.query.seen.push(0);
        self.query.shared.push(0);
        if let Rule::AtLeast(_) = rule {
            let group = u32::try_from(g).unwrap_or(u32::MAX);
            let signature = signature(words);
            for (position, k) in self.probe_range(i).enumerate() {
                let probe = self.probes[k];
                let list = if is_late(words.len(), position) {
                    probe.late
                } else if let Some(lists) = self.by_size.get(probe.sizes as usize) {
                    lists[size_list(words.len())]
                } else {
                    probe.list
                };
                if list == NONE {
                    continue;
                }
                let list = list as usize;
                // Room was made for every pattern's postings: never missing.
                let len = self.postings.get(list).map_or(0, |h| h.group);
                if let Some(slot) = self.postings.get_mut(list + 1 + len as usize) {
                    *slot = Posting {
                        group,
                        size: narrow(words.len()),
                        after: narrow(words.len() - position - 1),
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
        let q = &mut self.query;
        q.stamp = q.stamp.wrapping_add(1);
        if q.stamp == 0 {
            // The stamps wrapped: start them afresh.
            q.seen.iter_mut().for_each(|s| *s = 0);
            q.stamp = 1;
        }
        q.touched.clear();
        q.skipped = [0; SIZES];
        // The query's signature, and how many of its words share a bit with another: the
        // words whose bits a group has are at most the bits in common plus those extra.
        q.signature = signature(words);
        q.extra = u32::try_from(words.len()).unwrap_or(u32::MAX) - q.signature.count_ones();
        (q.t, q.size) = (t, words.len());
        // The sizes it can match (`low ≤ size ≤ high`), the overlap each needs, and whether
        // late postings can matter (the least overlap is the smallest size's): the same for
        // every query of this size, so worked out once per size.
        let length = words.len();
        if q.shapes.len() <= length && length < MAX_TABLE {
            q.shapes.resize_with(length + 1, Shape::default);
        }
        let shape = match q.shapes.get_mut(length) {
            Some(shape) if !shape.needed.is_empty() => shape,
            Some(shape) => {
                *shape = Shape::of(t, length);
                shape
            }
            None => {
                q.scratch = Shape::of(t, length);
                &mut q.scratch
            }
        };
        let (smallest, largest, least) = (shape.smallest, shape.largest, shape.least);
        q.needed.clear();
        q.needed.extend_from_slice(&shape.needed);
        (q.smallest, q.largest) = (smallest, largest);
        for (position, k) in self.probe_range(i).enumerate() {
            let after_x = u32::try_from(words.len() - position - 1).unwrap_or(u32::MAX);
            let probe = self.probes[k];
            let (postings, spans, q) = (&self.postings, &self.spans, &mut self.query);
            q.visit(Self::list(postings, probe.list), after_x, spans);
            if least <= LATE {
                q.visit(Self::list(postings, probe.late), after_x, spans);
            }
            let Some(lists) = self.by_size.get(probe.sizes as usize) else {
                continue;
            };
            // The last list holds every larger size: its postings are checked one by one.
            q.visit(Self::list(postings, lists[SIZES - 1]), after_x, spans);
            for (at, &start) in lists[..SIZES - 1].iter().enumerate() {
                let size = at + 1;
                if size < q.smallest || size > q.largest {
                    continue;
                }
                if after_x + 1 < q.needed(size) {
                    // No group of this size can first meet the query here or later; one
                    // met before may share this word, so it is counted as shared for them.
                    q.skipped[at] += 1;
                    continue;
                }
                q.visit(Self::list(postings, start), after_x, spans);
            }
        }
        let mut best: Option<usize> = None;
        for &g in &self.query.touched {
            let g = g as usize;
            if self.query.shared[g] == u32::MAX || best.is_some_and(|b| g >= b) {
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

    /// A word for a number, in letters (digits would normalise to one number token).
    fn letters(mut n: u64) -> String {
        let mut word = String::from("q");
        loop {
            word.push(char::from(b'a' + u8::try_from(n % 26).unwrap_or(0)));
            n /= 26;
            if n == 0 {
                return word;
            }
        }
    }

    /// The index's first match against the plain scan of the groups in creation order, one
    /// query at a time, on inputs built to stress the filters: few distinct words (so lists
    /// are long and split by size), sizes up to 30, and near-copies that sit at the threshold.
    #[test]
    fn first_match_is_the_scans_on_near_copies() {
        use crate::patterns::{Pattern, Support};
        let mut x = 5u64;
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        };
        for (vocabulary, count) in [(6, 1_500), (14, 2_500), (40, 2_500), (200, 3_000)] {
            let mut texts: Vec<Vec<u64>> = Vec::new();
            for _ in 0..count {
                let text = if texts.is_empty() || next(3) == 0 {
                    (0..=next(30))
                        .map(|_| next(vocabulary) * next(vocabulary) / vocabulary)
                        .collect()
                } else {
                    let mut text =
                        texts[usize::try_from(next(texts.len() as u64)).unwrap_or(0)].clone();
                    for _ in 0..=next(2) {
                        let at = usize::try_from(next(text.len() as u64 + 1)).unwrap_or(0);
                        match next(3) {
                            0 if at < text.len() => drop(text.remove(at)),
                            1 if at < text.len() => text[at] = next(vocabulary),
                            _ => text.insert(at, next(vocabulary)),
                        }
                    }
                    text
                };
                texts.push(text);
            }
            let support = Support {
                id: "c".into(),
                priority: 1.0,
                avg_performance: 1.0,
                is_wide: false,
                patterns: texts
                    .iter()
                    .map(|t| Pattern {
                        pattern: t.iter().map(|&w| letters(w)).collect::<Vec<_>>().join(" "),
                        template: None,
                        examples: vec![],
                        rationale: None,
                    })
                    .collect(),
            };
            let prepared = super::super::prepare::prepare(&[&support]);
            for t in [0.25, 0.5, 0.6, 2.0 / 3.0, 0.8, 1.0] {
                let rule = Rule::AtLeast(t);
                let mut index = Index::new(&prepared, rule);
                let mut groups: Vec<Vec<u32>> = Vec::new();
                for i in 0..prepared.ends.len() {
                    let words = prepared.words(i);
                    let scan = groups.iter().position(|g| reaches(g, words, t));
                    assert_eq!(
                        index.first_match(i, words, t),
                        scan,
                        "{vocabulary} words, t {t}, pattern {i}"
                    );
                    if scan.is_none() {
                        index.add(groups.len(), i, words, rule);
                        groups.push(words.to_vec());
                    }
                }
                // At 1 a prefix is one word, the rarest: few lists grow long.
                assert!(
                    t >= 1.0 || !index.by_size.is_empty(),
                    "{vocabulary} words, t {t}: no list was split by size"
                );
            }
        }
    }

    /// Groups of more words than a posting's 16 bits hold: their sizes are read from the
    /// group, the words after a posting taken as unbounded, and the first match is the scan's.
    #[test]
    fn huge_groups_match_as_the_scan() {
        use crate::patterns::{Pattern, Support};
        let huge: Vec<u64> = (0..70_000).collect();
        let mut changed = huge.clone();
        changed[5] = 80_000;
        changed[60_000] = 80_001;
        let texts = [
            huge.clone(),
            changed,
            huge[..100].to_vec(),
            vec![1, 2, 3],
            huge,
        ];
        let support = Support {
            id: "c".into(),
            priority: 1.0,
            avg_performance: 1.0,
            is_wide: false,
            patterns: texts
                .iter()
                .map(|t| Pattern {
                    pattern: t.iter().map(|&w| letters(w)).collect::<Vec<_>>().join(" "),
                    template: None,
                    examples: vec![],
                    rationale: None,
                })
                .collect(),
        };
        let prepared = super::super::prepare::prepare(&[&support]);
        for t in [0.001, 0.5, 0.9, 0.99997, 1.0] {
            let rule = Rule::AtLeast(t);
            let mut index = Index::new(&prepared, rule);
            let mut groups: Vec<Vec<u32>> = Vec::new();
            let mut firsts = Vec::new();
            for i in 0..prepared.ends.len() {
                let words = prepared.words(i);
                let scan = groups.iter().position(|g| reaches(g, words, t));
                assert_eq!(index.first_match(i, words, t), scan, "t {t}, pattern {i}");
                firsts.push(scan);
                if scan.is_none() {
                    index.add(groups.len(), i, words, rule);
                    groups.push(words.to_vec());
                }
            }
            // The copy of the first pattern always joins it.
            assert_eq!(firsts[4], Some(0), "t {t}");
        }
    }
}

//! The inverted index over the groups' words, with the filters of all-pairs similarity joins
//! (prefix, size, position), late postings kept apart, and word signatures; `gate.rs`: which
//! patterns can meet another at all, found before the grouping.

use super::Rule;
use super::prepare::Prepared;

mod gate;
mod posting;
mod query;
#[cfg(test)]
mod tests;

use posting::{Posting, narrow, signature};
use query::{MAX_TABLE, Query, Shape};

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
    /// Whether an earlier pattern has the word in its prefix: if not, its lists are empty
    /// when this pattern queries them, and are not read.
    read: bool,
    /// Whether a later pattern has the word in its prefix: if not, no query would read this
    /// pattern's posting, which is then neither written nor given room.
    write: bool,
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
/// A long word's size lists: a query skips the sizes it could not first meet at this word
/// (one plus the words after it in the query fall short of what that size needs). No group of
/// such a size can then first meet the query here or at any later word (those have fewer
/// words after them), so none is missed. A group met before may share the skipped word, so
/// every bound computed for a group of that size afterwards counts the skipped words as
/// shared: bounds stay upper bounds, and the groups that survive are checked in full at the
/// end.
///
/// In front of it all, a gate ([`gate`]): every pair of patterns that share a prefix word is
/// checked once, before the grouping, with the filters that need no group (sizes, positions,
/// signatures), in a pass that reads memory in order. Only a pattern that passes with an
/// earlier one queries the index, and only one that passes with a later one posts to it: on
/// patterns that share little, a few in a hundred, so the index and its random reads shrink
/// to those.
///
/// Every pattern is known before the first group, so the lists are laid out once, and each
/// pattern's probes (where its prefix words' lists start) are found in one pass before the
/// grouping, when the look-ups do not wait on each other: at scale the index outgrows the
/// caches, and a query then reads its lists and nothing else at random. That pass also marks
/// a probe whose word no earlier pattern has in its prefix, which is skipped (every list of
/// the word is still empty, so skipping it changes no count or bound), and a posting whose
/// word no later pattern has in its prefix, which would never be read, so it is neither
/// written nor given room. A word met once (most rare words) costs no memory access at all.
pub(super) struct Index<'a> {
    /// Every pattern's words: a group's are its first pattern's, read from there (no copy).
    prepared: &'a Prepared,
    /// Per group: the pattern that started it.
    founders: Vec<u32>,
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
    /// Per pattern: whether it passed the gate ([`gate`]) as one that may join a group.
    asks: Vec<bool>,
    /// The state of the query under way.
    query: Query,
}

/// The prefix of a set of `n` words that the filter indexes and probes at threshold `t`.
fn prefix_len(t: f64, n: usize) -> usize {
    (n + 1).saturating_sub(min_overlap(t, n)).min(n)
}

/// Pattern `i`'s prefix words at threshold `t`: each word, the pattern's number of words, and
/// the word's position among them.
fn prefix(prepared: &Prepared, t: f64, i: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let words = prepared.words(i);
    let n = words.len();
    words[..prefix_len(t, n)]
        .iter()
        .enumerate()
        .map(move |(position, &w)| (w as usize, n, position))
}

/// Whether word `position` of a group of `size` words posts to the word's late list.
fn is_late(size: usize, position: usize) -> bool {
    size - position - 1 < LATE as usize
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

impl<'a> Index<'a> {
    /// An index with room for the postings of every pattern of `prepared`, any of which may
    /// start a group, and every pattern's probes.
    pub(super) fn new(prepared: &'a Prepared, rule: Rule) -> Self {
        let mut index = Self {
            prepared,
            founders: Vec::new(),
            postings: Vec::new(),
            by_size: Vec::new(),
            probes: Vec::new(),
            probe_ends: Vec::new(),
            asks: Vec::new(),
            query: Query::default(),
        };
        let Rule::AtLeast(t) = rule else {
            return index;
        };
        let patterns = prepared.ends.len();
        let prefix = |i: usize| prefix(prepared, t, i);
        // How many patterns have each word in their prefix.
        let mut total: Vec<u32> = Vec::new();
        for (w, _, _) in (0..patterns).flat_map(prefix) {
            if w >= total.len() {
                total.resize(w + 1, 0);
            }
            total[w] += 1;
        }
        let gate = gate::gate(prepared, t, &total);
        let mut starts = index.add_probes(t, &gate, &total);
        // Long words get size lists instead of their list.
        let mut sizes_of: Vec<u32> = vec![NONE; total.len()];
        for (w, sizes) in sizes_of.iter_mut().enumerate() {
            if starts[w * 2] >= LONG {
                starts[w * 2] = 0;
                *sizes = u32::try_from(index.by_size.len()).unwrap_or(NONE);
                index.by_size.push([0; SIZES]);
            }
        }
        for i in (0..patterns).filter(|&i| gate.through(i)) {
            let probes = &index.probes[index.probe_range(i)];
            for ((w, n, position), probe) in prefix(i).zip(probes) {
                let sizes = sizes_of.get(w).copied().unwrap_or(NONE);
                if probe.write
                    && !is_late(n, position)
                    && let Some(lists) = index.by_size.get_mut(sizes as usize)
                {
                    lists[size_list(n)] += 1;
                }
            }
        }
        let mut next = lay_out(&mut starts, 0);
        for lists in &mut index.by_size {
            next = lay_out(lists, next);
        }
        index.postings = vec![Posting::default(); next as usize];
        for probe in &mut index.probes {
            let w = probe.list as usize;
            probe.list = starts.get(w * 2).copied().unwrap_or(NONE);
            probe.late = starts.get(w * 2 + 1).copied().unwrap_or(NONE);
            probe.sizes = sizes_of.get(w).copied().unwrap_or(NONE);
        }
        index.asks = gate.asks;
        index
    }

    /// The probes of the patterns through the gate (none for the others), each told whether
    /// it reads and writes; per list (word × 2, + 1 for late): how many postings it will hold.
    fn add_probes(&mut self, t: f64, gate: &gate::Gate, total: &[u32]) -> Vec<u32> {
        let patterns = self.prepared.ends.len();
        // Only the patterns through the gate get probes. Per word: how many that ask have it
        // and are still to come (a posting is written only if one of them comes later), and
        // how many that answer have come (a probe reads only if one of them came before).
        let mut asking: Vec<u32> = vec![0; total.len()];
        let mut probes = 0;
        for i in (0..patterns).filter(|&i| gate.through(i)) {
            for (w, _, _) in prefix(self.prepared, t, i) {
                asking[w] += u32::from(gate.asks[i]);
                probes += 1;
            }
        }
        // Per probe, in order: its word (until its lists are laid out) and what it reads and
        // writes; per list (word × 2, + 1 for late): how many patterns could post to it.
        let mut answered: Vec<u32> = vec![0; total.len()];
        let mut starts: Vec<u32> = vec![0; total.len() * 2];
        self.probes.reserve_exact(probes);
        self.probe_ends.reserve_exact(patterns);
        for i in 0..patterns {
            if gate.through(i) {
                let (asks, answers) = (gate.asks[i], gate.answers[i]);
                for (w, n, position) in prefix(self.prepared, t, i) {
                    let late = is_late(n, position);
                    asking[w] -= u32::from(asks);
                    let read = asks && answered[w] > 0;
                    let write = answers && asking[w] > 0;
                    answered[w] += u32::from(answers);
                    if write {
                        starts[w * 2 + usize::from(late)] += 1;
                    }
                    self.probes.push(Probe {
                        list: u32::try_from(w).unwrap_or(NONE),
                        late: NONE,
                        sizes: NONE,
                        read,
                        write,
                    });
                }
            }
            self.probe_ends
                .push(u32::try_from(self.probes.len()).unwrap_or(u32::MAX));
        }
        starts
    }

    fn words(&self, g: usize) -> &'a [u32] {
        self.prepared.words(self.founders[g] as usize)
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
            .filter(|probe| probe.read && probe.list != NONE)
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
        self.founders.push(u32::try_from(i).unwrap_or(u32::MAX));
        self.query.seen.push(0);
        self.query.shared.push(0);
        if let Rule::AtLeast(_) = rule {
            let group = u32::try_from(g).unwrap_or(u32::MAX);
            let signature = signature(words);
            for (position, k) in self.probe_range(i).enumerate() {
                let probe = self.probes[k];
                if !probe.write {
                    continue;
                }
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
        if !self.asks.get(i).copied().unwrap_or(true) {
            return None; // no earlier pattern passes the gate with it
        }
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
            if !probe.read {
                continue; // every list of its word is empty yet
            }
            let (postings, q) = (&self.postings, &mut self.query);
            let size_of = |g: u32| {
                self.founders
                    .get(g as usize)
                    .map_or(usize::MAX, |&i| self.prepared.words(i as usize).len())
            };
            q.visit(Self::list(postings, probe.list), after_x, size_of);
            if least <= LATE {
                q.visit(Self::list(postings, probe.late), after_x, size_of);
            }
            let Some(lists) = self.by_size.get(probe.sizes as usize) else {
                continue;
            };
            // The last list holds every larger size: its postings are checked one by one.
            q.visit(Self::list(postings, lists[SIZES - 1]), after_x, size_of);
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
                q.visit(Self::list(postings, start), after_x, size_of);
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

//! The gate in front of the index: which patterns could meet any other at all.
//!
//! Two sets can reach Jaccard `t` only if they share a word in both prefixes where their
//! sizes, positions and signatures allow it (the filters the index applies to a posting).
//! None of that depends on the grouping, so every pair of patterns that share a prefix word
//! is checked once, before it: a pattern no earlier pattern passes with never queries the
//! index (it cannot join a group), and one no later pattern passes with never posts to it
//! (no query could need its postings). A pair that passes only lets both through; the index
//! then works as without the gate, on fewer patterns.
//!
//! The pairs are found a word at a time, each word's prefix occurrences side by side in one
//! array read in order: at scale, where every query of the index misses the cache, this pass
//! does not. Most words in a title are rare, and a rare word has few occurrences, so the pairs
//! are few. A word with more than [`PAIRED`] occurrences is not paired (their number grows
//! with its square): each of its occurrences lets its pattern through, to query if an earlier
//! pattern has the word and to post if a later one has.

use super::posting::{HUGE, Posting, narrow, signature};
use super::query::needed_overlap;
use super::{NONE, Prepared, prefix};

/// The most occurrences of a word whose pairs are checked one by one.
pub(super) const PAIRED: u32 = 64;

/// Whether a word with this many prefix occurrences is paired.
fn paired(count: u32) -> bool {
    (2..=PAIRED).contains(&count)
}

/// Which patterns pass the gate.
pub(super) struct Gate {
    /// Whether an earlier pattern passes with it: only then can it join a group.
    pub(super) asks: Vec<bool>,
    /// Whether a later pattern passes with it: only then can its postings be read.
    pub(super) answers: Vec<bool>,
}

impl Gate {
    /// Whether pattern `i` passes the gate at all: only then does the index need its probes.
    pub(super) fn through(&self, i: usize) -> bool {
        self.asks[i] || self.answers[i]
    }
}

/// The overlap two sets need for Jaccard `t`, by their sizes, tabled for small sizes.
pub(super) struct Needed {
    t: f64,
    table: Vec<u32>,
}

impl Needed {
    /// Sizes below this are tabled.
    const TABLED: usize = 32;

    pub(super) fn new(t: f64) -> Self {
        let table = (0..Self::TABLED * Self::TABLED)
            .map(|k| needed_overlap(t, k / Self::TABLED, k % Self::TABLED))
            .collect();
        Self { t, table }
    }

    fn get(&self, a: usize, b: usize) -> u32 {
        if a < Self::TABLED && b < Self::TABLED {
            self.table[a * Self::TABLED + b]
        } else {
            needed_overlap(self.t, a, b)
        }
    }
}

/// Whether two prefix occurrences of one word allow a Jaccard of `t`: the overlap it needs
/// is at most this word and all both have after it, and at most what the signatures allow
/// (the words of one whose bits the other has). If this word is the first the two sets share,
/// these bounds hold; so a pair that reaches `t` passes at its first shared word. Sizes or
/// positions too large for a posting let the pair through.
pub(super) fn may_meet(x: &Posting, y: &Posting, needed: &Needed) -> bool {
    if [x.size, y.size, x.after, y.after].contains(&HUGE) {
        return true;
    }
    let needed = needed.get(usize::from(x.size), usize::from(y.size));
    if 1 + u32::from(x.after.min(y.after)) < needed {
        return false;
    }
    // Words of a set that share their bit with another of its words.
    let extra = |p: &Posting| u32::from(p.size).saturating_sub(p.signature.count_ones());
    (x.signature & y.signature).count_ones() + extra(x).min(extra(y)) >= needed
}

/// The gate at threshold `t` (in (0, 1]) for every pattern of `prepared`, whose prefix
/// words occur `total[w]` times in all (as the index counted them).
pub(super) fn gate(prepared: &Prepared, t: f64, total: &[u32]) -> Gate {
    let patterns = prepared.ends.len();
    let mut gate = Gate {
        asks: vec![false; patterns],
        answers: vec![false; patterns],
    };
    // Per word: where its next occurrence goes in `occurrences` (a paired word) or how many
    // of its occurrences were met so far (the others); and how many it has in all.
    let mut next = 0u32;
    let mut at: Vec<(u32, u32)> = total
        .iter()
        .map(|&count| {
            if paired(count) {
                let start = next;
                next = next.saturating_add(count);
                (start, count)
            } else {
                (0, count)
            }
        })
        .collect();
    let mut occurrences = vec![Posting::default(); next as usize];
    for i in 0..patterns {
        let sig = signature(prepared.words(i));
        for (w, n, position) in prefix(prepared, t, i) {
            let Some((so_far, count)) = at.get_mut(w) else {
                continue;
            };
            if paired(*count) {
                if let Some(slot) = occurrences.get_mut(*so_far as usize) {
                    *slot = Posting {
                        group: u32::try_from(i).unwrap_or(NONE),
                        size: narrow(n),
                        after: narrow(n - position - 1),
                        signature: sig,
                    };
                }
            } else if *count > PAIRED {
                gate.asks[i] |= *so_far > 0;
                gate.answers[i] |= *so_far + 1 < *count;
            }
            *so_far += 1;
        }
    }
    // Each paired word's occurrences, in the order of the patterns, paired.
    let needed = Needed::new(t);
    let mut pairing = Pairing::default();
    for &(end, count) in &at {
        if !paired(count) {
            continue;
        }
        if let Some(list) = occurrences.get((end - count) as usize..end as usize) {
            pairing.pair(list, &needed, &mut gate);
        }
    }
    gate
}

/// Pairs one word's occurrences, with room reused from word to word.
#[derive(Default)]
struct Pairing {
    /// The earlier occurrences whose pattern has not passed with a later one yet.
    pending: Vec<usize>,
    /// Per occurrence of the list: whether it is pending.
    open: Vec<bool>,
}

impl Pairing {
    /// Lists of this many occurrences or fewer (most rare words') check every pair: cheaper
    /// than keeping track of which are pending.
    const SHORT: usize = 8;

    /// Lets through, among one word's occurrences (in the order of the patterns), each pattern
    /// that passes with an earlier one and each that passes with a later one. In a longer list
    /// a pair is checked only while it can still let one of its two through: each later
    /// occurrence is checked against the pending earlier ones, then, until it passes, against
    /// the others. On patterns that share little, every pair is checked; on copies of one
    /// pattern, about one per occurrence, where checking every pair would cost the square of
    /// their number.
    fn pair(&mut self, list: &[Posting], needed: &Needed, gate: &mut Gate) {
        if list.len() <= Self::SHORT {
            for (b, later) in list.iter().enumerate().skip(1) {
                for earlier in &list[..b] {
                    if may_meet(earlier, later, needed) {
                        gate.asks[later.group as usize] = true;
                        gate.answers[earlier.group as usize] = true;
                    }
                }
            }
            return;
        }
        self.pending.clear();
        self.open.clear();
        self.open.resize(list.len(), false);
        for (b, later) in list.iter().enumerate() {
            let i = later.group as usize;
            let open = &mut self.open;
            self.pending.retain(|&k| {
                let earlier = &list[k];
                let j = earlier.group as usize;
                if gate.answers[j] {
                    // Through already (by another word): no longer pending here.
                    open[k] = false;
                    return false;
                }
                if may_meet(earlier, later, needed) {
                    (gate.answers[j], gate.asks[i], open[k]) = (true, true, false);
                    return false;
                }
                true
            });
            if !gate.asks[i] {
                gate.asks[i] = list[..b]
                    .iter()
                    .zip(&self.open)
                    .any(|(earlier, &open)| !open && may_meet(earlier, later, needed));
            }
            self.pending.push(b);
            self.open[b] = true;
        }
    }
}

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
// Public through `testing` only.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
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
                    token(&mut out, &mut gap, "_slot_");
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
                    token(&mut out, &mut gap, "_num_");
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
    out
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
#[derive(Clone, Copy)]
struct Posting {
    group: u32,
    /// The group's number of words.
    size: u32,
    /// Where the word is in the group's sorted words.
    position: u32,
}

/// The groups' word sets and the inverted index over their prefixes, with the positional
/// filter of `PPJoin`: a candidate is dropped as soon as the words it shares so far plus all it
/// could still share fall short of the overlap the threshold needs, without reading its words.
#[derive(Default)]
struct Index {
    /// Every group's word ranks (sorted), one after another: candidates are read from one
    /// block of memory rather than one allocation each.
    ranks: Vec<u32>,
    /// Start and length of each group's ranks.
    spans: Vec<(u32, u32)>,
    /// Rank → the groups whose prefix holds it, in creation order.
    postings: Vec<Vec<Posting>>,
    /// Per group, for the query under way: the query it was last seen by, and the words it
    /// shares with the query so far (`u32::MAX`: ruled out).
    seen: Vec<u32>,
    shared: Vec<u32>,
    query: u32,
    touched: Vec<u32>,
}

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
            let prefix = words.len() - min_overlap(t, words.len()) + 1;
            for (position, &w) in words[..prefix.min(words.len())].iter().enumerate() {
                let w = w as usize;
                if w >= self.postings.len() {
                    self.postings.resize_with(w + 1, Vec::new);
                }
                self.postings[w].push(Posting {
                    group,
                    size,
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                });
            }
        }
    }

    /// The first group in creation order (the smallest index) whose words reach `t`.
    fn first_match(&mut self, words: &[u32], t: f64) -> Option<usize> {
        let prefix = words.len() - min_overlap(t, words.len()) + 1;
        #[allow(clippy::cast_precision_loss)]
        let (low, high) = (t * words.len() as f64 - 1e-9, words.len() as f64 / t + 1e-9);
        self.query = self.query.wrapping_add(1);
        if self.query == 0 {
            // The stamps wrapped: start them afresh.
            self.seen.iter_mut().for_each(|s| *s = 0);
            self.query = 1;
        }
        self.touched.clear();
        for (i, &w) in words[..prefix.min(words.len())].iter().enumerate() {
            let Some(postings) = self.postings.get(w as usize) else {
                continue;
            };
            let after_x = u32::try_from(words.len() - i - 1).unwrap_or(u32::MAX);
            for p in postings {
                let size = f64::from(p.size);
                if size < low || size > high {
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
                self.shared[g] = if bound < needed_overlap(t, words.len(), p.size as usize) {
                    u32::MAX
                } else {
                    shared + 1
                };
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

/// One pattern, prepared: its normalised text and its word ranks.
struct Prepared {
    /// The normalised text as its sequence of word ids: equal sequences are equal texts
    /// (normalised words are separated by exactly one space), cheaper to hash and keep.
    key: Vec<u32>,
    /// Word ranks, sorted, without repeats.
    words: Vec<u32>,
}

/// Normalises every pattern of `order` and ranks its words rarest first over the whole input
/// (ties by first appearance), the global order the prefix filter needs.
fn prepare(order: &[&Support]) -> Vec<Prepared> {
    let keys: Vec<String> = order
        .iter()
        .flat_map(|s| &s.patterns)
        .map(|p| normalize(p.template.as_deref().unwrap_or(&p.pattern)))
        .collect();
    let mut ids: Map<&str, u32> =
        Map::with_capacity_and_hasher(keys.len(), foldhash::fast::RandomState::default());
    let mut frequency: Vec<u32> = Vec::new();
    let mut sets: Vec<(Vec<u32>, Vec<u32>)> = Vec::with_capacity(keys.len());
    {
        for key in &keys {
            let sequence: Vec<u32> = key
                .split(' ')
                .map(|w| {
                    let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                    *ids.entry(w).or_insert(next)
                })
                .collect();
            let mut words = sequence.clone();
            words.sort_unstable();
            words.dedup();
            for &w in &words {
                let w = w as usize;
                if w >= frequency.len() {
                    frequency.resize(w + 1, 0);
                }
                frequency[w] += 1;
            }
            sets.push((sequence, words));
        }
    }
    drop(ids);
    drop(keys);
    let mut by_rarity: Vec<u32> = (0..u32::try_from(frequency.len()).unwrap_or(u32::MAX)).collect();
    by_rarity.sort_by_key(|&w| (frequency[w as usize], w));
    let mut rank = vec![0u32; frequency.len()];
    for (r, &w) in by_rarity.iter().enumerate() {
        rank[w as usize] = u32::try_from(r).unwrap_or(u32::MAX);
    }
    sets.into_iter()
        .map(|(key, mut words)| {
            for w in &mut words {
                *w = rank[*w as usize];
            }
            words.sort_unstable();
            Prepared { key, words }
        })
        .collect()
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
    let mut index = Index::default();
    // Membership of a group's clusters and examples: a scan while the list is short (most
    // groups hold one cluster), a set per group beyond that.
    let mut clusters = Members::default();
    let mut examples = Members::default();
    let mut by_key: Map<Vec<u32>, usize> =
        Map::with_capacity_and_hasher(prepared.len(), foldhash::fast::RandomState::default());
    let mut next = prepared.into_iter();
    for s in &order {
        for p in &s.patterns {
            let Some(Prepared { key, words }) = next.next() else {
                break; // prepare() saw the same patterns: never reached
            };
            let found = by_key.get(&key).copied().or_else(|| match rule {
                Rule::Always => (!groups.is_empty()).then_some(0),
                Rule::Never => None,
                Rule::AtLeast(t) => index.first_match(&words, t),
            });
            let g = found.unwrap_or_else(|| {
                let g = groups.len();
                index.add(g, &words, rule);
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

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
//!
//! `normalize.rs`: the text compared; `prepare.rs`: every pattern's words, interned and
//! ranked; `index/`: the inverted index and its filters (`posting.rs`, `query.rs`); here:
//! the greedy grouping.

use std::collections::{HashMap, HashSet};

use super::{ConsolidatedPattern, Support};

mod index;
mod normalize;
#[cfg(test)]
pub(crate) use normalize::normalize;
mod prepare;

use index::Index;
use prepare::prepare;

/// Hash maps keyed by our own strings and numbers: foldhash is several times faster than
/// `SipHash` here, and no key comes from an adversary that could flood a bucket on purpose
/// (the worst is a slower consolidation).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;
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
            if list.is_empty() {
                // Most groups keep one cluster and one example: room for one, not four.
                list.reserve_exact(1);
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

/// The text's first 8 bytes, zero-padded: where they differ, they order as the texts do.
fn head(text: &str) -> u64 {
    let bytes = &text.as_bytes()[..text.len().min(8)];
    let head = bytes.iter().fold(0u64, |h, &b| (h << 8) | u64::from(b));
    // Built in registers (no array written then read whole); left-aligned.
    head.checked_shl(8 * (8 - u32::try_from(bytes.len()).unwrap_or(8)))
        .unwrap_or(0)
}

/// How many patterns ahead the index's lists are read, and how many at a time.
const WARM: usize = 16;

/// Merges the same pattern found in several clusters or batches: identical normalised text
/// first, then near-duplicates whose word sets have a Jaccard similarity of at least
/// `threshold` (the first such group, in creation order). Clusters are considered in order of
/// priority (then id), patterns in the order given, so the result is deterministic. Sorted by
/// evidence, highest first.
///
/// A threshold of 0 or less merges every pattern without an exact match into the first group;
/// above 1 (or NaN) only identical normalised texts merge; 1 merges identical word sets.
pub fn consolidate(support: &[Support], threshold: f64) -> Vec<ConsolidatedPattern> {
    group(support, threshold, None)
}

/// The group of each pattern, in consolidation's order ([`order`]), as [`consolidate`] forms
/// them: group numbers in order of creation.
pub(crate) fn assign(support: &[Support], threshold: f64) -> Vec<usize> {
    let mut assignment = Vec::new();
    group(support, threshold, Some(&mut assignment));
    assignment
}

/// Clusters in consolidation's order: by priority, highest first, then by id.
pub(crate) fn order(support: &[Support]) -> Vec<&Support> {
    let mut order: Vec<&Support> = support.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then_with(|| a.id.cmp(&b.id))
    });
    order
}

/// [`consolidate`], and, when `assignment` is given, each pattern's group (in creation order)
/// pushed to it.
fn group(
    support: &[Support],
    threshold: f64,
    mut assignment: Option<&mut Vec<usize>>,
) -> Vec<ConsolidatedPattern> {
    let order = order(support);
    let prepared = prepare(&order);
    let rule = Rule::of(threshold);
    // Room for every pattern to start a group: pages never written cost nothing.
    let mut groups: Vec<ConsolidatedPattern> = Vec::with_capacity(prepared.ends.len());
    // Each group's text's first bytes and its evidence, for the final sort: taken while at
    // hand, they are read there from two small arrays, not from every group.
    let mut heads: Vec<u64> = Vec::with_capacity(prepared.ends.len());
    let mut evidence: Vec<f64> = Vec::with_capacity(prepared.ends.len());
    let mut index = Index::new(&prepared, rule);
    // Membership of a group's clusters and examples: a scan while the list is short (most
    // groups hold one cluster), a set per group beyond that.
    let mut clusters = Members::default();
    let mut examples = Members::default();
    let mut templates = Templates::default();
    // Exact texts by key. A threshold in (0, 1] needs none for a text with words: its twin
    // has the same word set, which no group older than the twin's reaches (or the twin would
    // have joined it), and the twin's group reaches it with a Jaccard of 1, so the index
    // finds that group first anyway, without a table as large as the input.
    let keyed = |words: &[u32]| !matches!(rule, Rule::AtLeast(_)) || words.is_empty();
    let mut by_key: Map<&[u32], usize> = Map::default();
    let mut next = 0;
    for s in &order {
        for p in &s.patterns {
            let i = next;
            next += 1;
            let (key, words) = (prepared.key(i), prepared.words(i));
            // The lists of the next patterns, a block at a time: their misses overlap.
            if i % WARM == 0 {
                index.warm(i + WARM..i + 2 * WARM);
            }
            let found = match rule {
                Rule::AtLeast(t) if !words.is_empty() => index.first_match(i, words, t),
                Rule::Always => by_key
                    .get(key)
                    .copied()
                    .or_else(|| (!groups.is_empty()).then_some(0)),
                _ => by_key.get(key).copied(),
            };
            let g = found.unwrap_or_else(|| {
                let g = groups.len();
                index.add(g, i, words, rule);
                if keyed(words) {
                    by_key.insert(key, g);
                }
                heads.push(head(&p.pattern));
                evidence.push(0.0);
                groups.push(ConsolidatedPattern {
                    pattern: p.pattern.clone(),
                    template: None,
                    clusters: Vec::new(),
                    examples: Vec::new(),
                    evidence: 0.0,
                    wide: false,
                    occurrences: 0,
                    aliases: Vec::new(),
                    coverage: None,
                });
                g
            });
            if let Some(assignment) = assignment.as_deref_mut() {
                assignment.push(g);
            }
            credit(&mut groups[g], g, s, p, &mut clusters, &mut examples);
            if let Some(t) = p.template.as_deref() {
                if templates.count(g, t) {
                    groups[g].template = Some(t.to_owned());
                }
            }
            evidence[g] = groups[g].evidence;
        }
    }
    sort_by_evidence(&mut groups, &heads, &evidence);
    groups
}

/// Each group's templates with how often they occur. Most groups have one template, often one
/// pattern: the leader is kept inline and compared as text, and a map is made only for a
/// group whose patterns bring a second template.
#[derive(Default)]
struct Templates<'a> {
    groups: Vec<Option<Leader<'a>>>,
}

/// A group's most frequent template, its count, and the group's other templates' counts.
struct Leader<'a> {
    template: &'a str,
    count: u32,
    others: Option<Box<Map<&'a str, u32>>>,
}

impl<'a> Templates<'a> {
    /// Counts `template` in group `g`; true when it has just become the group's most
    /// frequent (the first to reach a count wins ties).
    fn count(&mut self, g: usize, template: &'a str) -> bool {
        if self.groups.len() <= g {
            self.groups.resize_with(g + 1, || None);
        }
        let Some(leader) = &mut self.groups[g] else {
            self.groups[g] = Some(Leader {
                template,
                count: 1,
                others: None,
            });
            return true;
        };
        if leader.template == template {
            leader.count += 1;
            return false;
        }
        let others = leader.others.get_or_insert_with(Box::default);
        let n = others.entry(template).or_insert(0);
        *n += 1;
        if *n <= leader.count {
            return false;
        }
        // The new leader leaves the map; the old one enters it.
        let n = *n;
        others.remove(template);
        others.insert(leader.template, leader.count);
        leader.template = template;
        leader.count = n;
        true
    }
}

/// Counts an occurrence of pattern `p` of cluster `s` in group `g` (`out`): its cluster's
/// evidence once per cluster, WIDE when a supporting cluster
/// is or when it spans several clusters, its grounded examples once each, its coverage. A
/// pattern whose template matches none of its cluster's titles weighs less as evidence.
fn credit(
    out: &mut ConsolidatedPattern,
    g: usize,
    s: &Support,
    p: &crate::response::Pattern,
    clusters: &mut Members,
    examples: &mut Members,
) {
    out.occurrences += 1;
    if clusters.insert(g, &mut out.clusters, &s.id) {
        out.evidence += s.priority * s.avg_performance * p.evidence_weight();
    }
    out.add_coverage(p.coverage);
    out.wide |= s.is_wide || out.clusters.len() > 1;
    for e in p.examples.iter().filter(|e| e.grounded) {
        examples.insert(g, &mut out.examples, &e.title);
    }
}

/// Sorts by evidence (each group's in `evidence`), highest first, then by pattern text, then by
/// creation order (as a stable sort by the first two would). The sort moves 24-byte keys that
/// hold the evidence, the text's first bytes (`heads`) and the position, and reads a text only
/// when those tie; then each group out of place moves once.
fn sort_by_evidence(groups: &mut [ConsolidatedPattern], heads: &[u64], evidence: &[f64]) {
    /// `f64::total_cmp`'s order as an integer's, reversed: highest first.
    fn descending(x: f64) -> u64 {
        let bits = x.to_bits();
        let ordered = if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        };
        !ordered
    }
    let mut keys: Vec<(u64, u64, u32)> = evidence
        .iter()
        .zip(heads)
        .enumerate()
        .map(|(i, (&e, &head))| (descending(e), head, u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    keys.sort_unstable_by(|a, b| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
            groups[a.2 as usize]
                .pattern
                .cmp(&groups[b.2 as usize].pattern)
                .then(a.2.cmp(&b.2))
        })
    });
    // Apply the order in place, as `slice::sort_by_cached_key` does: position `i` takes the
    // group the sorted keys name there, found through the swaps already made.
    for i in 0..keys.len() {
        let mut from = keys[i].2 as usize;
        while from < i {
            from = keys[from].2 as usize;
        }
        keys[i].2 = u32::try_from(from).unwrap_or(u32::MAX);
        if from != i {
            groups.swap(i, from);
        }
    }
}

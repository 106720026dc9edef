//! [`SemanticMerger`]: patterns grouped by the cosine similarity of their embeddings, and
//! [`group_by_similarity`], the grouping on its own.
//!
//! Grouping is average linkage over candidate pairs: pairs at or above the threshold, taken from
//! the most similar down, join their two groups only when the mean similarity of every pattern
//! of one to every pattern of the other is at or above the threshold too (with unit vectors,
//! the dot product of the groups' vector sums over the product of their sizes). So a chain of
//! pairwise-close names cannot join two unrelated ones: "30-day challenge" ~ "month-long
//! experiment" ~ "long experiment" does not pull in "experiment gone wrong" unless it is close
//! to the whole group.
//!
//! Candidates: every pair for up to [`EXACT_UP_TO`] patterns; beyond, blocking: each vector goes
//! to the blocks of its nearest few of ⌈√n⌉ pivots (spread over the input, in a fixed order),
//! blocks too large are split the same way, and only pairs that share a block are compared.
//! Near-linear, and deterministic: the same vectors give the same groups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::{MergeUsage, Merged, PatternMerger, assemble, occurrences};
use crate::backend::Embedder;
use crate::error::Error;
use crate::patterns::Support;

/// Up to this many vectors, every pair is compared.
pub const EXACT_UP_TO: usize = 2048;
/// Blocks a vector joins: its nearest pivots.
const PROBES: usize = 3;
/// A block larger than this is split again.
const MAX_BLOCK: usize = 1024;

/// The default threshold: cosine similarity at which two pattern names are one pattern, tuned
/// on all-MiniLM-L6-v2 for precision (a wrong merge is worse than a missed one).
pub const DEFAULT_THRESHOLD: f32 = 0.65;

/// Merges patterns whose embeddings are close: an [`Embedder`] embeds each distinct name (with
/// its template), and [`group_by_similarity`] groups them.
#[derive(Debug, Clone)]
pub struct SemanticMerger {
    embedder: Arc<dyn Embedder>,
    threshold: f32,
}

impl SemanticMerger {
    /// Merges with `embedder`'s vectors at [`DEFAULT_THRESHOLD`].
    pub fn new(embedder: impl Embedder + 'static) -> Self {
        Self {
            embedder: Arc::new(embedder),
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// The cosine similarity at which two patterns are one.
    #[must_use]
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Each occurrence's distinct text (index into the returned texts), and the texts.
    fn distinct(texts: impl Iterator<Item = String>) -> (Vec<usize>, Vec<String>) {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut distinct = Vec::new();
        let of = texts
            .map(|t| {
                *index.entry(t.clone()).or_insert_with(|| {
                    distinct.push(t);
                    distinct.len() - 1
                })
            })
            .collect();
        (of, distinct)
    }
}

#[async_trait]
impl PatternMerger for SemanticMerger {
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error> {
        let occurrences = occurrences(support);
        let (of, texts) = Self::distinct(occurrences.iter().map(|o| o.text().to_lowercase()));
        let embedded = self
            .embedder
            .embed(&texts)
            .await
            .map_err(|e| Error::Other(Box::new(e)))?;
        if embedded.vectors.len() != texts.len() {
            return Err(Error::Other(
                format!(
                    "the embedder returned {} vectors for {} texts",
                    embedded.vectors.len(),
                    texts.len()
                )
                .into(),
            ));
        }
        let text_group = group_by_similarity(&embedded.vectors, self.threshold);
        let groups = groups_of(of.iter().map(|&t| text_group[t]));
        let mut usage = MergeUsage::of("semantic");
        usage.embedded = texts.len() as u64;
        usage.embedding_calls = embedded.calls;
        usage.embedding_tokens = embedded.tokens;
        Ok(Merged {
            patterns: assemble(&occurrences, &groups, &[]),
            usage,
            warnings: Vec::new(),
        })
    }
}

/// Groups of occurrences from each occurrence's group label: groups in order of their first
/// member, members in order.
pub(crate) fn groups_of(labels: impl Iterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut number: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, label) in labels.enumerate() {
        let g = *number.entry(label).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Unit vectors (a zero or non-finite vector stays zero: it joins nothing).
pub(super) fn normalized(vectors: &[Vec<f32>]) -> Vec<Vec<f32>> {
    vectors
        .iter()
        .map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm.is_finite() && norm > 0.0 {
                v.iter().map(|x| x / norm).collect()
            } else {
                vec![0.0; v.len()]
            }
        })
        .collect()
}

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The group of each vector (a number per group, groups numbered by their first vector):
/// average linkage at cosine similarity `threshold` over candidate pairs (see the module
/// docs). Vectors of different lengths never join.
pub fn group_by_similarity(vectors: &[Vec<f32>], threshold: f32) -> Vec<usize> {
    let unit = normalized(vectors);
    let n = unit.len();
    let mut pairs = candidates(&unit, threshold);
    // Most similar first; ties in index order: deterministic.
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    let mut parent: Vec<usize> = (0..n).collect();
    let mut size: Vec<f32> = vec![1.0; n];
    let mut sum: Vec<Vec<f32>> = unit.clone();
    for (a, b, _) in pairs {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra == rb || sum[ra].len() != sum[rb].len() {
            continue;
        }
        // The mean similarity of every member of one group to every member of the other.
        let mean = dot(&sum[ra], &sum[rb]) / (size[ra] * size[rb]);
        if mean < threshold {
            continue;
        }
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[gone] = keep;
        size[keep] += size[gone];
        let moved = std::mem::take(&mut sum[gone]);
        for (x, y) in sum[keep].iter_mut().zip(moved) {
            *x += y;
        }
    }
    // Groups numbered by their first vector.
    let roots: Vec<usize> = (0..n).map(|i| root(&mut parent, i)).collect();
    let mut number: HashMap<usize, usize> = HashMap::new();
    roots
        .iter()
        .map(|r| {
            let next = number.len();
            *number.entry(*r).or_insert(next)
        })
        .collect()
}

/// The root of `i`'s group, halving the path on the way.
pub(super) fn root(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Pairs `(i, j, similarity)` with `i < j` and a similarity at or above `threshold`: every
/// pair for few vectors, the pairs that share a block for many.
fn candidates(unit: &[Vec<f32>], threshold: f32) -> Vec<(usize, usize, f32)> {
    let blocks = block_members(unit);
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let mut out = Vec::new();
    for members in blocks {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                let (i, j) = if i < j { (i, j) } else { (j, i) };
                let key = (
                    u32::try_from(i).unwrap_or(u32::MAX),
                    u32::try_from(j).unwrap_or(u32::MAX),
                );
                if seen.contains(&key) {
                    continue;
                }
                let s = dot(&unit[i], &unit[j]);
                if s >= threshold {
                    seen.insert(key);
                    out.push((i, j, s));
                }
            }
        }
    }
    out
}

/// The blocks whose pairs are compared: every vector in one for up to [`EXACT_UP_TO`].
pub(super) fn block_members(unit: &[Vec<f32>]) -> Vec<Vec<usize>> {
    let all: Vec<usize> = (0..unit.len()).collect();
    let mut blocks = Vec::new();
    block(unit, all, 0, &mut blocks);
    blocks
}

/// Splits `members` into blocks of at most [`EXACT_UP_TO`] (at the top) or [`MAX_BLOCK`]
/// (below) vectors: each joins the blocks of its [`PROBES`] nearest pivots.
fn block(unit: &[Vec<f32>], members: Vec<usize>, depth: usize, out: &mut Vec<Vec<usize>>) {
    let limit = if depth == 0 { EXACT_UP_TO } else { MAX_BLOCK };
    if members.len() <= limit || depth >= 4 {
        out.push(members);
        return;
    }
    // ⌈√n⌉ pivots, spread evenly over the members (a fixed choice: deterministic).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let count = ((members.len() as f64).sqrt().ceil() as usize).max(2);
    let step = members.len() / count;
    let pivots: Vec<usize> = (0..count).map(|k| members[k * step]).collect();
    let mut blocks: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(count);
    for &i in &members {
        best.clear();
        best.extend(
            pivots
                .iter()
                .enumerate()
                .map(|(k, &p)| (dot(&unit[i], &unit[p]), k)),
        );
        let probes = PROBES.min(best.len());
        best.select_nth_unstable_by(probes - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, k) in &best[..probes] {
            blocks[k].push(i);
        }
    }
    for members in blocks {
        if members.len() > MAX_BLOCK {
            block(unit, members, depth + 1, out);
        } else if !members.is_empty() {
            out.push(members);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[f32]) -> Vec<f32> {
        x.to_vec()
    }

    #[test]
    fn close_vectors_group_and_a_chain_does_not() {
        // a ~ b (0.98), b ~ c (0.92), a ~ c only 0.82: c does not join a's group through b,
        // since it is not close to both on average (0.87 < 0.9).
        let a = v(&[1.0, 0.0, 0.0]);
        let b = v(&[0.98, 0.199, 0.0]);
        let c = v(&[0.819, 0.574, 0.0]);
        let d = v(&[0.0, 0.0, 1.0]);
        let groups = group_by_similarity(&[a, b, c, d], 0.9);
        assert_eq!(groups[0], groups[1]);
        assert_ne!(groups[0], groups[2], "{groups:?}");
        assert_ne!(groups[2], groups[3]);
        assert_eq!(groups, vec![0, 0, 1, 2]);
    }

    #[test]
    fn zero_and_mismatched_vectors_join_nothing() {
        let groups = group_by_similarity(&[v(&[0.0, 0.0]), v(&[0.0, 0.0]), v(&[1.0])], 0.5);
        assert_eq!(groups, vec![0, 1, 2]);
    }
}

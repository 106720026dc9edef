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
//! Candidates: every pair for up to [`EXACT_UP_TO`] patterns; beyond, locality-sensitive
//! hashing for the angle: 256 fixed random hyperplanes give each vector 256 signs, 100 bands
//! of 14 of them bucket the vectors, and only pairs that share a bucket are compared exactly
//! (a pair at cosine 0.8 shares one with probability 0.98, at 0.735 0.9; unrelated vectors
//! 0.006). Near-linear, and deterministic: the same vectors give the same groups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::{MergeUsage, Merged, PatternMerger, assemble, occurrences};
use crate::backend::Embedder;
use crate::error::Error;
use crate::patterns::Support;

/// Up to this many vectors, every pair is compared.
pub(crate) const EXACT_UP_TO: usize = 2048;
/// Blocks a vector joins: its nearest pivots.
const PROBES: usize = 2;
/// A block larger than this is split again.
const MAX_BLOCK: usize = 512;

/// The default threshold: cosine similarity at which two pattern names are one pattern, tuned
/// on all-MiniLM-L6-v2 for precision (a wrong merge is worse than a missed one).
pub const DEFAULT_THRESHOLD: f32 = 0.65;

/// Merges patterns whose embeddings are close: an [`Embedder`] embeds each distinct name (with
/// its template), and average linkage over cosine similarity groups them: a pattern joins a
/// group when its mean similarity to the group's members is at least the threshold, so a chain
/// of near neighbours never joins far patterns. Up to 2,048 distinct patterns are compared
/// pairwise; beyond, candidate pairs come from random-hyperplane hashing (a near pair may be
/// missed, a far one is never joined).
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
        let embedded = super::embed_all(&*self.embedder, &texts).await?;
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

/// The dot product, in eight lanes (the compiler makes them one SIMD register): the sum's
/// order is fixed, so results are the same on every run.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The group of each vector (a number per group, groups numbered by their first vector):
/// average linkage at cosine similarity `threshold` over candidate pairs (see the module
/// docs). Vectors of different lengths never join.
pub(crate) fn group_by_similarity(vectors: &[Vec<f32>], threshold: f32) -> Vec<usize> {
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

/// Hyperplanes of the random projections, and bits per band: a band is 14 of the 256 signs.
const PLANES: usize = 256;
const BAND_BITS: usize = 14;
/// Bands: a pair at cosine 0.8 shares at least one with probability 0.98, at 0.735 0.9; two
/// unrelated vectors share one with probability 0.006.
const BANDS: usize = 100;
/// A band's bucket larger than this is not compared within.
const MAX_BUCKET: usize = 4096;

/// Pairs `(i, j, similarity)` with `i < j` and a similarity at or above `threshold`: every
/// pair for few vectors; for many, the pairs that share a band of their random-projection
/// signs (locality-sensitive hashing for the angle), checked exactly.
fn candidates(unit: &[Vec<f32>], threshold: f32) -> Vec<(usize, usize, f32)> {
    let blocks = if unit.len() <= EXACT_UP_TO {
        vec![(0..unit.len()).collect()]
    } else {
        lsh_buckets(unit)
    };
    // The blocks' pairs, on the machine's cores (at most 8): each thread takes every t-th
    // block; the pairs are merged and deduplicated after, so the result does not depend on
    // the number of threads.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8)
        .min(blocks.len().max(1));
    let found: Vec<Vec<(usize, usize, f32)>> = if threads == 1 {
        vec![pairs_in(unit, &blocks, 0, 1, threshold)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let blocks = &blocks;
                    scope.spawn(move || pairs_in(unit, blocks, t, threads, threshold))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut out = Vec::new();
    for (i, j, s) in found.into_iter().flatten() {
        if seen.insert((i, j)) {
            out.push((i, j, s));
        }
    }
    out
}

/// The pairs at `threshold` or above in every `step`-th block from `first`, as `(i, j, s)`
/// with `i < j`.
fn pairs_in(
    unit: &[Vec<f32>],
    blocks: &[Vec<usize>],
    first: usize,
    step: usize,
    threshold: f32,
) -> Vec<(usize, usize, f32)> {
    let mut out = Vec::new();
    for members in blocks.iter().skip(first).step_by(step) {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                let s = dot(&unit[i], &unit[j]);
                if s >= threshold {
                    out.push((i.min(j), i.max(j), s));
                }
            }
        }
    }
    out
}

/// Buckets of vectors that share a band of signs, over every band: near vectors share one with
/// high probability. Buckets of one are left out.
fn lsh_buckets(unit: &[Vec<f32>]) -> Vec<Vec<usize>> {
    let dim = unit.iter().map(Vec::len).max().unwrap_or(0);
    // Fixed pseudo-random hyperplanes: the same vectors give the same buckets.
    let planes: Vec<Vec<f32>> = (0..PLANES)
        .map(|p| {
            (0..dim)
                .map(|k| {
                    let x = crate::hash::mix((p as u64) << 32 ^ k as u64 ^ 0x5eed_cafe);
                    #[allow(clippy::cast_precision_loss)] // 24 random bits as a fraction
                    let u = (x >> 40) as f32 / (1u64 << 24) as f32;
                    2.0 * u - 1.0
                })
                .collect()
        })
        .collect();
    // Centred first: embeddings share a common direction, which would give most vectors the
    // same signs and one bucket.
    let mut mean = vec![0.0f32; dim];
    for v in unit.iter().filter(|v| v.len() == dim) {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let count = unit.len().max(1) as f32;
    let offsets: Vec<f32> = planes.iter().map(|p| dot(&mean, p) / count).collect();
    let signs: Vec<[u64; PLANES / 64]> = parallel_map(unit, |v| {
        let mut bits = [0u64; PLANES / 64];
        if v.len() == dim {
            for (p, plane) in planes.iter().enumerate() {
                if dot(v, plane) >= offsets[p] {
                    bits[p / 64] |= 1 << (p % 64);
                }
            }
        }
        bits
    });
    let mut out = Vec::new();
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); 1 << BAND_BITS];
    for band in 0..BANDS {
        // A band's bits: spread over the 256 by a stride prime to it.
        let positions: Vec<usize> = (0..BAND_BITS)
            .map(|k| (band * 37 + k * 19) % PLANES)
            .collect();
        for (i, bits) in signs.iter().enumerate() {
            let key = positions.iter().enumerate().fold(0usize, |key, (k, &p)| {
                key | (usize::from(bits[p / 64] >> (p % 64) & 1 == 1) << k)
            });
            buckets[key].push(i);
        }
        for bucket in &mut buckets {
            // A bucket too large to compare within (a crowd of near-identical vectors) is
            // left to the other bands.
            if bucket.len() > 1 && bucket.len() <= MAX_BUCKET {
                out.push(std::mem::take(bucket));
            } else {
                bucket.clear();
            }
        }
    }
    out
}

/// `f` of every vector, on up to two threads per core's worth (at most 8), in order.
fn parallel_map<T: Send>(unit: &[Vec<f32>], f: impl Fn(&[f32]) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8);
    let chunk = unit.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = unit
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                scope.spawn(move || part.iter().map(|v| f(v)).collect::<Vec<T>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
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

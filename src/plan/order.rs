//! Priority order (stable, as the design's sort) and the first occurrence of each id.

use std::collections::HashMap;

use crate::model::Cluster;
use crate::quality::Scored;

/// Orders `candidates` by priority, highest first; ties keep input order, as the design's stable
/// `Array.prototype.sort` does.
///
/// The key maps a finite priority to an integer with the same order (`-0.0` counts as `0.0`, as
/// in JavaScript) and the input index breaks ties, so keys are unique and the unstable sort
/// gives exactly the stable order, without its scratch buffer.
pub(super) fn sort_by_priority(candidates: &mut [Scored<'_>]) {
    fn descending_key(priority: f64) -> u64 {
        let bits = (priority + 0.0).to_bits();
        let ascending = if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        };
        !ascending
    }
    candidates.sort_unstable_by_key(|c| (descending_key(c.priority), c.index));
}

/// [`first_occurrences`]' mark for an empty or blank id.
pub(super) const EMPTY_ID: usize = usize::MAX;

/// For each cluster, the input index of the first cluster with its id (its own index when it is
/// the first), or [`EMPTY_ID`].
///
/// A pass of its own: reading each id is a cache miss the floor pass never pays, and a tight
/// loop lets the CPU overlap those misses.
pub(super) fn first_occurrences(clusters: &[Cluster]) -> Vec<usize> {
    let mut first_seen: IdMap<'_> =
        HashMap::with_capacity_and_hasher(clusters.len(), foldhash::fast::RandomState::default());
    clusters
        .iter()
        .enumerate()
        .map(|(index, cluster)| {
            // Touch an id a few clusters ahead so its cache miss overlaps this one's work.
            std::hint::black_box(
                clusters
                    .get(index + 8)
                    .and_then(|c| c.id.as_bytes().first().copied()),
            );
            if crate::model::is_blank(&cluster.id) {
                EMPTY_ID
            } else {
                *first_seen.entry(cluster.id.as_str()).or_insert(index)
            }
        })
        .collect()
}

/// First input index of each id. foldhash: several times faster than `SipHash` on short ids, and
/// seeded per process, so crafted ids cannot force collisions; the plan never depends on the
/// map's iteration order.
pub(super) type IdMap<'a> = HashMap<&'a str, usize, foldhash::fast::RandomState>;

//! What one query keeps while it reads the lists: the shape of its size, the groups it
//! has met and what they share with it, and the filters applied to each posting.

use super::posting::{HUGE, Posting};
use super::{SIZES, size_list};

/// What every query of one size needs: the sizes it can match, the overlap each needs, and
/// the least of them.
#[derive(Default)]
pub(super) struct Shape {
    pub(super) smallest: usize,
    pub(super) largest: usize,
    pub(super) least: u32,
    /// Per group size up to `largest` ([`MAX_TABLE`] at most); never empty once made.
    pub(super) needed: Vec<u32>,
}

impl Shape {
    pub(super) fn of(t: f64, n: usize) -> Self {
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
pub(super) struct Query {
    /// The overlap a group of each size needs ([`MAX_TABLE`] sizes at most).
    pub(super) needed: Vec<u32>,
    /// Per query size (below [`MAX_TABLE`]): its shape, once met; and one for a larger size.
    pub(super) shapes: Vec<Shape>,
    pub(super) scratch: Shape,
    /// Per group: the query it was last seen by, and the words it shares with the query so
    /// far (`u32::MAX`: ruled out).
    pub(super) seen: Vec<u32>,
    pub(super) shared: Vec<u32>,
    pub(super) stamp: u32,
    /// The groups seen by this query.
    pub(super) touched: Vec<u32>,
    /// This query's signature, and how many of its words share a bit with another.
    pub(super) signature: u64,
    pub(super) extra: u32,
    /// Per size list: the words whose list of that size this query skipped, which a group of
    /// that size met before may share (counted as shared in its bounds).
    pub(super) skipped: [u32; SIZES],
    /// The sizes it can match, and its threshold and size.
    pub(super) smallest: usize,
    pub(super) largest: usize,
    pub(super) t: f64,
    pub(super) size: usize,
}

impl Query {
    /// The overlap a group of `size` words needs.
    pub(super) fn needed(&self, size: usize) -> u32 {
        self.needed
            .get(size)
            .copied()
            .unwrap_or_else(|| needed_overlap(self.t, self.size, size))
    }

    /// Reads one list at a query word with `after_x` words after it (`size_of`: a group's
    /// number of words, read for a huge one).
    pub(super) fn visit(&mut self, list: &[Posting], after_x: u32, size_of: impl Fn(u32) -> usize) {
        for p in list {
            let size = if p.size == HUGE {
                size_of(p.group)
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

/// Sizes whose needed overlap a query tables (larger ones are computed when met).
pub(super) const MAX_TABLE: usize = 256;

/// The overlap two sets of these sizes need for Jaccard `t`: `⌈t/(1+t)·(a+b)⌉`, a hair low.
pub(super) fn needed_overlap(t: f64, a: usize, b: usize) -> u32 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let needed = (t / (1.0 + t) * (a + b) as f64 - 1e-9).ceil().max(0.0) as u32;
    needed
}

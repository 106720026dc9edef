//! A posting: a group in the list of one of its prefix words, with what the filters read.

/// A group in the posting list of one of its prefix words. The first slot of every list is
/// its header instead, whose `group` is the list's length: the length and the first postings
/// share a cache line, so reading a list costs one miss, not two.
///
/// 16 bytes: sizes and positions fit in 16 bits for any title. A group of [`HUGE`] words or
/// more stores [`HUGE`], and a query then reads its size from the group and takes the words
/// after as unbounded (so its bound stays an upper bound).
#[derive(Clone, Copy, Default)]
pub(super) struct Posting {
    pub(super) group: u32,
    /// The group's number of words, or [`HUGE`].
    pub(super) size: u16,
    /// How many words come after this one in the group's sorted words, or [`HUGE`].
    pub(super) after: u16,
    /// The group's words as a 64-bit signature ([`signature`]).
    pub(super) signature: u64,
}

/// A size or a count of words too large for a posting's 16 bits.
pub(super) const HUGE: u16 = u16::MAX;

/// `n` in a posting's 16 bits, or [`HUGE`].
pub(super) fn narrow(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(HUGE)
}

/// A word's bit in a signature.
pub(super) fn bit(word: u32) -> u64 {
    1 << (u64::from(word).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// A set's signature: the bits of its words. A word whose bit is not in a set's signature is
/// not in the set, so the words of `x` whose bits are in `y`'s signature bound `|x ∩ y|` from
/// above, with no look at `y`'s words.
pub(super) fn signature(words: &[u32]) -> u64 {
    words.iter().fold(0, |s, &w| s | bit(w))
}

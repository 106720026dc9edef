//! Every pattern normalised, its words interned and ranked rarest first over the whole input.

use super::normalize::normalize_into;
use super::{Map, Support};

/// Every pattern, prepared, in two flat arrays (no allocation per pattern): its normalised
/// text as its sequence of word ids (equal sequences are equal texts, since normalised words
/// are separated by exactly one space; cheaper to hash and keep), and its word ranks, sorted,
/// without repeats.
pub(super) struct Prepared {
    keys: Vec<u32>,
    words: Vec<u32>,
    /// Per pattern: where its key and its words end.
    pub(super) ends: Vec<(u32, u32)>,
}

impl Prepared {
    fn spans(&self, i: usize) -> ((usize, usize), (usize, usize)) {
        let (key_end, words_end) = self.ends[i];
        let (key_start, words_start) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        (
            (key_start as usize, key_end as usize),
            (words_start as usize, words_end as usize),
        )
    }

    pub(super) fn key(&self, i: usize) -> &[u32] {
        let ((start, end), _) = self.spans(i);
        &self.keys[start..end]
    }

    pub(super) fn words(&self, i: usize) -> &[u32] {
        let (_, (start, end)) = self.spans(i);
        &self.words[start..end]
    }
}

/// A word of up to 15 bytes as one integer: its bytes, then its length in the top byte. Built
/// in registers: a byte array written then read as a whole stalls on store forwarding.
fn pack(word: &str) -> Option<u128> {
    let bytes = word.as_bytes();
    if bytes.len() > 15 {
        return None;
    }
    let packed = bytes
        .iter()
        .rev()
        .fold(0u128, |packed, &b| (packed << 8) | u128::from(b));
    Some(packed | (u128::from(u8::try_from(bytes.len()).unwrap_or(u8::MAX)) << 120))
}

/// The key of the `n`th distinct long word: a top byte no packed word has (theirs is a length
/// of at most 15).
fn long_key(n: u32) -> u128 {
    (0xFF << 120) | u128::from(n)
}

/// Which partition a key falls in (`bits` of a multiplicative hash, unrelated to the maps').
fn partition(key: u128, bits: u32) -> usize {
    #[allow(clippy::cast_possible_truncation)] // the two halves, on purpose
    let (low, high) = (key as u64, (key >> 64) as u64);
    let h = (low ^ high.wrapping_mul(0xA076_1D64_78BD_642F)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    usize::try_from(h.checked_shr(64 - bits).unwrap_or(0)).unwrap_or(0)
}

/// Occurrences per partition, about: a partition's distinct words then fit in the cache
/// closest to the core, where one map over all of them would miss on nearly every look-up.
const PER_PARTITION: usize = 16_384;

/// Normalises every pattern of `order` and ranks its words rarest first over the whole input
/// (ties by id), the global order the prefix filter needs.
///
/// Words get their ids partition by partition: every occurrence's key is first written to the
/// partition it hashes to, then each partition is interned with a map of its own, and the ids
/// are read back in the order of the text. The ids differ from interning in one pass, but any
/// ids serve (keys are compared for equality only, and any total order of the words makes a
/// valid prefix filter).
pub(super) fn prepare(order: &[&Support]) -> Prepared {
    let count = order.iter().map(|s| s.patterns.len()).sum();
    let mut prepared = Prepared {
        keys: Vec::with_capacity(count * 6),
        words: Vec::with_capacity(count * 6),
        ends: Vec::with_capacity(count),
    };
    let bits = (count * 6 / PER_PARTITION)
        .next_power_of_two()
        .trailing_zeros()
        .min(8);
    let partitions = partition_keys(order, bits, &mut prepared);
    let (interned, distinct) = intern(partitions);
    ids_in_text_order(&interned, &mut prepared.keys);
    drop(interned);
    let frequency = word_sets(&mut prepared, distinct);
    let rank = ranks(&frequency);
    for i in 0..prepared.ends.len() {
        let (_, (start, end)) = prepared.spans(i);
        let words = &mut prepared.words[start..end];
        for w in words.iter_mut() {
            *w = rank[*w as usize];
        }
        words.sort_unstable();
    }
    prepared
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Step 1: every occurrence's key, written to the partition (of `2^bits`) it hashes to, in
/// the order met; `prepared.keys` holds each occurrence's partition (until its id replaces
/// it) and `prepared.ends` each pattern's end.
fn partition_keys(order: &[&Support], bits: u32, prepared: &mut Prepared) -> Vec<Vec<[u64; 2]>> {
    let count = order.iter().map(|s| s.patterns.len()).sum::<usize>();
    let mut partitions: Vec<Vec<[u64; 2]>> = (0..1usize << bits)
        .map(|_| Vec::with_capacity((count * 6) >> bits))
        .collect();
    // Words of more than 15 bytes (few) by their text.
    let mut long_ids: Map<Box<str>, u32> = Map::default();
    let mut text = String::new();
    for p in order.iter().flat_map(|s| &s.patterns) {
        text.clear();
        normalize_into(p.template.as_deref().unwrap_or(&p.pattern), &mut text);
        for w in text.split(' ') {
            let key = pack(w).unwrap_or_else(|| {
                let next = to_u32(long_ids.len());
                long_key(*long_ids.entry(w.into()).or_insert(next))
            });
            let part = partition(key, bits);
            if let Some(part) = partitions.get_mut(part) {
                #[allow(clippy::cast_possible_truncation)] // the two halves, on purpose
                part.push([key as u64, (key >> 64) as u64]);
            }
            prepared.keys.push(to_u32(part));
        }
        prepared.ends.push((to_u32(prepared.keys.len()), 0));
    }
    partitions
}

/// Step 2: each partition's ids, in the order its occurrences were met, with one map at a
/// time; and the number of distinct words.
fn intern(partitions: Vec<Vec<[u64; 2]>>) -> (Vec<Vec<u32>>, u32) {
    let mut ids: Map<u128, u32> = Map::default();
    let mut distinct = 0u32;
    let interned = partitions
        .into_iter()
        .map(|part| {
            ids.clear();
            part.into_iter()
                .map(|[low, high]| {
                    let id = *ids
                        .entry(u128::from(low) | (u128::from(high) << 64))
                        .or_insert(distinct);
                    if id == distinct {
                        distinct += 1;
                    }
                    id
                })
                .collect()
        })
        .collect();
    (interned, distinct)
}

/// Step 3: the ids back in the order of the text: each partition's next id is its next
/// occurrence's. One sequential pass, where writing each id to its place would visit the
/// whole array once per few partitions.
fn ids_in_text_order(interned: &[Vec<u32>], keys: &mut [u32]) {
    let mut next = vec![0usize; interned.len()];
    for slot in keys {
        let part = *slot as usize;
        if let (Some(ids), Some(at)) = (interned.get(part), next.get_mut(part)) {
            *slot = ids.get(*at).copied().unwrap_or(0);
            *at += 1;
        }
    }
}

/// Step 4: each pattern's distinct words (sorted ids) into `prepared.words`, and how many
/// patterns each word is in.
fn word_sets(prepared: &mut Prepared, distinct: u32) -> Vec<u32> {
    let mut frequency = vec![0u32; distinct as usize];
    let mut key_start = 0;
    for i in 0..prepared.ends.len() {
        let key_end = prepared.ends[i].0 as usize;
        let words_start = prepared.words.len();
        prepared
            .words
            .extend_from_slice(&prepared.keys[key_start..key_end]);
        key_start = key_end;
        let words = &mut prepared.words[words_start..];
        words.sort_unstable();
        let mut unique = 0;
        for k in 0..words.len() {
            if k == 0 || words[k] != words[k - 1] {
                words[unique] = words[k];
                unique += 1;
            }
        }
        prepared.words.truncate(words_start + unique);
        for &w in &prepared.words[words_start..] {
            frequency[w as usize] += 1;
        }
        prepared.ends[i].1 = to_u32(prepared.words.len());
    }
    frequency
}

/// Each word's rank by (frequency, id), rarest first: counted rather than sorted, since
/// frequencies are small integers.
fn ranks(frequency: &[u32]) -> Vec<u32> {
    let mut next_rank = vec![0u32; frequency.iter().max().map_or(0, |&f| f as usize + 1)];
    for &f in frequency {
        next_rank[f as usize] += 1;
    }
    let mut before = 0;
    for slot in &mut next_rank {
        (*slot, before) = (before, before + *slot);
    }
    frequency
        .iter()
        .map(|&f| {
            let r = next_rank[f as usize];
            next_rank[f as usize] += 1;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ranks;

    #[test]
    fn ranks_order_words_by_frequency_then_id() {
        let frequency = [3, 1, 3, 0, 1, 7];
        let mut by_sort: Vec<u32> = (0..6).collect();
        by_sort.sort_by_key(|&w| (frequency[w as usize], w));
        let rank = ranks(&frequency);
        for (r, &w) in by_sort.iter().enumerate() {
            assert_eq!(rank[w as usize] as usize, r, "word {w}");
        }
        assert!(ranks(&[]).is_empty());
    }
}

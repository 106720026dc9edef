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

/// A word of up to 15 bytes as one integer: its bytes, then its length in the top byte.
fn pack(word: &str) -> Option<u128> {
    let bytes = word.as_bytes();
    if bytes.len() > 15 {
        return None;
    }
    let mut packed = [0u8; 16];
    packed[..bytes.len()].copy_from_slice(bytes);
    packed[15] = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
    Some(u128::from_le_bytes(packed))
}

/// Normalises every pattern of `order` and ranks its words rarest first over the whole input
/// (ties by first appearance), the global order the prefix filter needs.
pub(super) fn prepare(order: &[&Support]) -> Prepared {
    let count = order.iter().map(|s| s.patterns.len()).sum();
    let mut prepared = Prepared {
        keys: Vec::with_capacity(count * 6),
        words: Vec::with_capacity(count * 6),
        ends: Vec::with_capacity(count),
    };
    // One entry per distinct word (not per occurrence); words of up to 15 bytes (nearly all)
    // are keyed by their bytes in one integer, so a look-up reads no string elsewhere.
    let mut short_ids: Map<u128, u32> = Map::default();
    let mut long_ids: Map<Box<str>, u32> = Map::default();
    let mut frequency: Vec<u32> = Vec::new();
    let mut text = String::new();
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    for p in order.iter().flat_map(|s| &s.patterns) {
        text.clear();
        normalize_into(p.template.as_deref().unwrap_or(&p.pattern), &mut text);
        let key_start = prepared.keys.len();
        for w in text.split(' ') {
            let next = to_u32(frequency.len());
            let id = if let Some(packed) = pack(w) {
                *short_ids.entry(packed).or_insert(next)
            } else if let Some(&id) = long_ids.get(w) {
                id
            } else {
                long_ids.insert(w.into(), next);
                next
            };
            if id == next {
                frequency.push(0);
            }
            prepared.keys.push(id);
        }
        let words_start = prepared.words.len();
        prepared
            .words
            .extend_from_slice(&prepared.keys[key_start..]);
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
        prepared
            .ends
            .push((to_u32(prepared.keys.len()), to_u32(prepared.words.len())));
    }
    drop((short_ids, long_ids));
    let mut by_rarity: Vec<u32> = (0..to_u32(frequency.len())).collect();
    by_rarity.sort_by_key(|&w| (frequency[w as usize], w));
    let mut rank = vec![0u32; frequency.len()];
    for (r, &w) in by_rarity.iter().enumerate() {
        rank[w as usize] = to_u32(r);
    }
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

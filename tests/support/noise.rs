// Deterministic pseudo-random vectors for the grouping tests (included by `tests/semantic_merge.rs`
// and the unit tests of `patterns::merge`).

/// splitmix64: a well-mixed 64-bit value from any 64-bit input.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `dim` numbers in [-1, 1), a function of `seed`.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn noise(seed: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|k| {
            let x = splitmix(seed ^ (k as u64).wrapping_mul(0x1000_0001));
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

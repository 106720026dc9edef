//! Properties of [`group_by_similarity`], average linkage over cosine similarity: groups are
//! deterministic, numbered in order and close on average, pairwise up to [`EXACT_UP_TO`] vectors
//! and by hashing beyond.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;

use super::semantic::{EXACT_UP_TO, group_by_similarity};

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/noise.rs"
));

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Every group of several vectors is close on average: the mean cosine of its pairs is at
/// least the threshold (average linkage's promise; a chain cannot join far vectors), and the
/// groups are numbered by their first vector.
fn check_groups(vectors: &[Vec<f32>], groups: &[usize], threshold: f32) -> Result<(), String> {
    let mut highest: Option<usize> = None;
    for &g in groups {
        if highest.is_none_or(|h| g > h) {
            if g != highest.map_or(0, |h| h + 1) {
                return Err(format!("group {g} numbered out of order: {groups:?}"));
            }
            highest = Some(g);
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    for list in members.values().filter(|l| l.len() > 1) {
        let (mut sum, mut pairs) = (0.0, 0.0);
        for (x, &i) in list.iter().enumerate() {
            for &j in &list[x + 1..] {
                sum += cosine(&vectors[i], &vectors[j]);
                pairs += 1.0;
            }
        }
        if sum / pairs < f64::from(threshold) - 1e-4 {
            return Err(format!(
                "group {list:?} has a mean cosine of {}",
                sum / pairs
            ));
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    #[test]
    fn invariant_groups_are_deterministic_close_on_average_and_numbered_in_order(
        seeds in proptest::collection::vec((0u64..6, 0u64..1000), 0..60),
        blur in 0.1f32..2.0,
        threshold in 0.2f32..0.98,
    ) {
        // Vectors around six directions, blurred by `blur`.
        let vectors: Vec<Vec<f32>> = seeds
            .iter()
            .map(|&(center, own)| {
                noise(center + 1, 6)
                    .iter()
                    .zip(noise(own + 100, 6))
                    .map(|(c, o)| c + blur * o)
                    .collect()
            })
            .collect();
        let groups = group_by_similarity(&vectors, threshold);
        proptest::prop_assert_eq!(groups.len(), vectors.len());
        proptest::prop_assert_eq!(&groups, &group_by_similarity(&vectors, threshold));
        check_groups(&vectors, &groups, threshold).map_err(proptest::test_runner::TestCaseError::fail)?;
    }
}

#[test]
fn beyond_the_exact_limit_hashing_finds_near_pairs_and_never_a_far_one() {
    // 3,000 vectors (over the EXACT_UP_TO compared pairwise) in groups of three at cosine ~0.9.
    let n = 3000;
    assert!(n > EXACT_UP_TO);
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            noise((i / 3) as u64 + 1, 64)
                .iter()
                .zip(noise(1_000_000 + i as u64, 64))
                .map(|(c, o)| c + 0.3 * o)
                .collect()
        })
        .collect();
    let groups = group_by_similarity(&vectors, 0.7);
    check_groups(&vectors, &groups, 0.7).unwrap();
    assert_eq!(groups, group_by_similarity(&vectors, 0.7));
    let (mut found, mut wrong) = (0, 0);
    for i in 0..n {
        for j in i + 1..n {
            let together = groups[i] == groups[j];
            if i / 3 == j / 3 {
                found += usize::from(together);
            } else {
                wrong += usize::from(together);
            }
        }
    }
    let recall = found as f64 / n as f64; // 3 true pairs per group of 3
    assert!(recall >= 0.95, "{recall}");
    assert_eq!(wrong, 0);
}

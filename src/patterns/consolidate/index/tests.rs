//! The index against the plain scan, on inputs built to stress its filters.

use super::*;

#[test]
fn overlap_counts_sorted_lists() {
    assert_eq!(overlap(&[1, 3, 5], &[3, 4, 5, 6]), (2, 5));
    assert_eq!(overlap(&[], &[]), (0, 0));
    assert!(reaches(&[], &[], 1.0));
}

#[test]
fn prefixes_are_never_too_short() {
    for n in 1..50 {
        for t in [0.01, 0.1, 0.3, 0.5, 0.6, 0.7, 0.9, 0.99, 1.0] {
            let o = min_overlap(t, n);
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let exact = (t * n as f64).ceil() as usize;
            assert!(o <= exact.max(1) && o >= 1 && o <= n, "{t} {n}");
        }
    }
}

/// A word for a number, in letters (digits would normalise to one number token).
fn letters(mut n: u64) -> String {
    let mut word = String::from("q");
    loop {
        word.push(char::from(b'a' + u8::try_from(n % 26).unwrap_or(0)));
        n /= 26;
        if n == 0 {
            return word;
        }
    }
}

/// Deterministic numbers from `seed`: each call, one below its argument.
fn numbers(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    }
}

/// One cluster whose patterns are these texts (word numbers), prepared.
fn prepared(texts: &[Vec<u64>]) -> Prepared {
    use crate::patterns::{Pattern, Support};
    let support = Support {
        id: "c".into(),
        priority: 1.0,
        avg_performance: 1.0,
        is_wide: false,
        patterns: texts
            .iter()
            .map(|t| Pattern {
                pattern: t.iter().map(|&w| letters(w)).collect::<Vec<_>>().join(" "),
                template: None,
                examples: vec![],
                rationale: None,
                coverage: None,
            })
            .collect(),
    };
    super::super::prepare::prepare(&[&support])
}

/// The greedy grouping at `t`, each first match checked against the plain scan of the groups
/// in creation order: the index, and every pattern's match.
fn grouped_as_the_scan<'a>(
    prepared: &'a Prepared,
    t: f64,
    what: &str,
) -> (Index<'a>, Vec<Option<usize>>) {
    let rule = Rule::AtLeast(t);
    let mut index = Index::new(prepared, rule);
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut matches = Vec::new();
    for i in 0..prepared.ends.len() {
        let words = prepared.words(i);
        let scan = groups.iter().position(|g| reaches(g, words, t));
        assert_eq!(
            index.first_match(i, words, t),
            scan,
            "{what}, t {t}, pattern {i}"
        );
        matches.push(scan);
        if scan.is_none() {
            index.add(groups.len(), i, words, rule);
            groups.push(words.to_vec());
        }
    }
    (index, matches)
}

/// The index's first match against the plain scan of the groups in creation order, one
/// query at a time, on inputs built to stress the filters: few distinct words (so lists
/// are long and split by size), sizes up to 30, and near-copies that sit at the threshold.
#[test]
fn first_match_is_the_scans_on_near_copies() {
    let mut next = numbers(5);
    for (vocabulary, count) in [(6, 800), (14, 1_200), (40, 1_200), (200, 1_500)] {
        let mut texts: Vec<Vec<u64>> = Vec::new();
        for _ in 0..count {
            let text = if texts.is_empty() || next(3) == 0 {
                (0..=next(30))
                    .map(|_| next(vocabulary) * next(vocabulary) / vocabulary)
                    .collect()
            } else {
                let mut text =
                    texts[usize::try_from(next(texts.len() as u64)).unwrap_or(0)].clone();
                for _ in 0..=next(2) {
                    let at = usize::try_from(next(text.len() as u64 + 1)).unwrap_or(0);
                    match next(3) {
                        0 if at < text.len() => drop(text.remove(at)),
                        1 if at < text.len() => text[at] = next(vocabulary),
                        _ => text.insert(at, next(vocabulary)),
                    }
                }
                text
            };
            texts.push(text);
        }
        let prepared = prepared(&texts);
        for t in [0.25, 0.5, 0.6, 2.0 / 3.0, 0.8, 1.0] {
            let (index, _) = grouped_as_the_scan(&prepared, t, &format!("{vocabulary} words"));
            // At 1 a prefix is one word, the rarest: few lists grow long.
            assert!(
                t >= 1.0 || !index.by_size.is_empty(),
                "{vocabulary} words, t {t}: no list was split by size"
            );
        }
    }
}

/// Groups of more words than a posting's 16 bits hold: their sizes are read from the
/// group, the words after a posting taken as unbounded, and the first match is the scan's.
#[test]
fn huge_groups_match_as_the_scan() {
    let huge: Vec<u64> = (0..70_000).collect();
    let mut changed = huge.clone();
    changed[5] = 80_000;
    changed[60_000] = 80_001;
    let texts = [
        huge.clone(),
        changed,
        huge[..100].to_vec(),
        vec![1, 2, 3],
        huge,
    ];
    let prepared = prepared(&texts);
    for t in [0.001, 0.5, 0.9, 0.99997, 1.0] {
        let (_, firsts) = grouped_as_the_scan(&prepared, t, "huge groups");
        // The copy of the first pattern always joins it.
        assert_eq!(firsts[4], Some(0), "t {t}");
    }
}

/// Patterns that share little (rare words from a large vocabulary, a few common ones), with
/// near-copies of earlier ones among them: the gate lets through few patterns, the ones that
/// meet another in a word's short list, and every first match is still the scan's.
#[test]
fn the_gate_lets_few_patterns_through_and_misses_no_match() {
    let mut next = numbers(17);
    let mut texts: Vec<Vec<u64>> = Vec::new();
    for k in 0..2_500 {
        let text = if k > 0 && next(8) == 0 {
            // A near-copy: one word changed, dropped or added.
            let mut text = texts[usize::try_from(next(texts.len() as u64)).unwrap_or(0)].clone();
            let at = usize::try_from(next(text.len() as u64)).unwrap_or(0);
            match next(3) {
                0 => text[at] = 10_000 + next(20_000),
                1 if text.len() > 1 => drop(text.remove(at)),
                _ => text.insert(at, 10_000 + next(20_000)),
            }
            text
        } else {
            (0..3 + next(8))
                .map(|_| {
                    if next(5) == 0 {
                        next(6)
                    } else {
                        10_000 + next(20_000)
                    }
                })
                .collect()
        };
        texts.push(text);
    }
    let prepared = prepared(&texts);
    for t in [0.4, 0.6, 0.8, 1.0] {
        let (index, firsts) = grouped_as_the_scan(&prepared, t, "rare words");
        let asked = index.asks.iter().filter(|&&a| a).count();
        let matched = firsts.iter().filter(|m| m.is_some()).count();
        assert!(matched > 0, "t {t}: no near-copy joined a group");
        assert!(
            asked >= matched && asked < texts.len() / 3,
            "t {t}: {asked} of {} patterns asked, {matched} matched",
            texts.len()
        );
    }
}

/// The gate checked against every pair of every word's prefix occurrences: the same patterns
/// pass, on near-copies (where most pairs pass) and on rare words (where few do).
#[test]
fn the_gate_lets_through_what_every_pair_would() {
    use super::gate::{Needed, PAIRED, gate, may_meet};
    use super::posting::{narrow, signature};
    let mut next = numbers(23);
    for (vocabulary, copies) in [(300, 2), (30_000, 8), (30_000, 100)] {
        let mut texts: Vec<Vec<u64>> = Vec::new();
        for _ in 0..3_000 {
            let text = if !texts.is_empty() && next(copies) != 0 {
                let mut text =
                    texts[usize::try_from(next(texts.len() as u64)).unwrap_or(0)].clone();
                if next(2) == 0 {
                    let at = usize::try_from(next(text.len() as u64)).unwrap_or(0);
                    text[at] = next(vocabulary);
                }
                text
            } else {
                (0..2 + next(9)).map(|_| next(vocabulary)).collect()
            };
            texts.push(text);
        }
        let prepared = prepared(&texts);
        for t in [0.3, 0.6, 0.9, 1.0] {
            let mut lists: Vec<Vec<Posting>> = Vec::new();
            let mut total = Vec::new();
            for i in 0..prepared.ends.len() {
                let words = prepared.words(i);
                let n = words.len();
                for (position, &w) in words[..prefix_len(t, n)].iter().enumerate() {
                    let w = w as usize;
                    if w >= lists.len() {
                        lists.resize(w + 1, Vec::new());
                        total.resize(w + 1, 0);
                    }
                    total[w] += 1;
                    lists[w].push(Posting {
                        group: u32::try_from(i).unwrap_or(NONE),
                        size: narrow(n),
                        after: narrow(n - position - 1),
                        signature: signature(words),
                    });
                }
            }
            let (mut asks, mut answers) = (vec![false; texts.len()], vec![false; texts.len()]);
            let needed = Needed::new(t);
            for list in &lists {
                for (b, later) in list.iter().enumerate() {
                    for earlier in &list[..b] {
                        if list.len() > PAIRED as usize || may_meet(earlier, later, &needed) {
                            asks[later.group as usize] = true;
                            answers[earlier.group as usize] = true;
                        }
                    }
                }
            }
            let through = gate(&prepared, t, &total);
            let what = format!("{vocabulary} words, 1 in {copies} new, t {t}");
            assert_eq!(through.asks, asks, "{what}");
            assert_eq!(through.answers, answers, "{what}");
            assert!(asks.iter().any(|&a| a), "{what}: nothing passed");
        }
    }
}

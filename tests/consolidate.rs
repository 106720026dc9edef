//! The indexed consolidation gives exactly the result of the plain scan it replaced, kept here
//! as the reference: on random inputs, with thresholds 0, 1, beyond, and near ties.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use dynbatch::patterns::{ConsolidatedPattern, Support, consolidate};
use dynbatch::patterns::{Example, Pattern};
use proptest::prelude::*;

include!("support/reference_normalize.rs");

/// The scan as it was: each pattern against every group so far.
fn reference(support: &[Support], threshold: f64) -> Vec<ConsolidatedPattern> {
    struct Group {
        key: String,
        words: BTreeSet<String>,
        out: ConsolidatedPattern,
        /// Its templates in the order first met, with their counts.
        templates: Vec<(String, usize)>,
    }
    fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
        let inter = a.intersection(b).count();
        let union = a.union(b).count();
        #[allow(clippy::cast_precision_loss)]
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }
    let mut order: Vec<&Support> = support.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut groups: Vec<Group> = Vec::new();
    for s in order {
        for p in &s.patterns {
            let key = reference_normalize(p.template.as_deref().unwrap_or(&p.pattern));
            let words: BTreeSet<String> = key.split(' ').map(str::to_owned).collect();
            let found = groups.iter().position(|g| g.key == key).or_else(|| {
                groups
                    .iter()
                    .position(|g| jaccard(&g.words, &words) >= threshold)
            });
            let i = if let Some(i) = found {
                i
            } else {
                groups.push(Group {
                    key,
                    words,
                    out: ConsolidatedPattern {
                        pattern: p.pattern.clone(),
                        template: None,
                        clusters: Vec::new(),
                        examples: Vec::new(),
                        evidence: 0.0,
                        wide: false,
                        occurrences: 0,
                        aliases: Vec::new(),
                        coverage: None,
                    },
                    templates: Vec::new(),
                });
                groups.len() - 1
            };
            // The template: the most frequent; on a tie, the one that reached the count first.
            if let Some(t) = &p.template {
                let group = &mut groups[i];
                let best = group.templates.iter().map(|(_, n)| *n).max().unwrap_or(0);
                let n = if let Some((_, n)) = group.templates.iter_mut().find(|(seen, _)| seen == t)
                {
                    *n += 1;
                    *n
                } else {
                    group.templates.push((t.clone(), 1));
                    1
                };
                if n > best {
                    group.out.template = Some(t.clone());
                }
            }
            let out = &mut groups[i].out;
            out.occurrences += 1;
            if !out.clusters.contains(&s.id) {
                out.clusters.push(s.id.clone());
                out.evidence += s.priority * s.avg_performance;
            }
            out.wide |= s.is_wide;
            for e in p.examples.iter().filter(|e| e.grounded) {
                if !out.examples.contains(&e.title) {
                    out.examples.push(e.title.clone());
                }
            }
        }
    }
    let mut out: Vec<ConsolidatedPattern> = groups
        .into_iter()
        .map(|mut g| {
            g.out.wide |= g.out.clusters.len() > 1;
            g.out
        })
        .collect();
    out.sort_by(|a, b| {
        b.evidence
            .total_cmp(&a.evidence)
            .then_with(|| a.pattern.cmp(&b.pattern))
    });
    out
}

/// Templates from a small vocabulary, so that groups overlap a lot: exact repeats, reorders,
/// near misses, placeholders, numbers, case and punctuation.
fn arb_template() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "I",
        "tried",
        "the",
        "for",
        "days",
        "[X]",
        "{topic}",
        "30",
        "100",
        "Why",
        "is",
        "overrated",
        "best",
        "worst",
        "espresso",
        "chess",
        "vs",
        "!",
        "?",
        "it's",
        "a",
        "B",
    ]);
    prop::collection::vec(word, 0..7).prop_map(|w| w.join(" "))
}

fn arb_support() -> impl Strategy<Value = Vec<Support>> {
    let pattern = (
        arb_template(),
        any::<bool>(),
        prop::collection::vec(0usize..4, 0..3),
    )
        .prop_map(|(text, templated, examples)| Pattern {
            pattern: format!("p: {text}"),
            template: templated.then(|| text.clone()),
            examples: examples
                .into_iter()
                .map(|e| Example {
                    title: format!("title {e}"),
                    grounded: e % 2 == 0,
                })
                .collect(),
            rationale: None,
            coverage: None,
        });
    prop::collection::vec(
        (
            0usize..12,
            0u8..4,
            1u8..6,
            any::<bool>(),
            prop::collection::vec(pattern, 0..5),
        ),
        0..14,
    )
    .prop_map(|clusters| {
        clusters
            .into_iter()
            .map(|(id, priority, perf, is_wide, patterns)| Support {
                id: format!("c{id}"),
                priority: f64::from(priority) / 4.0,
                avg_performance: f64::from(perf),
                is_wide,
                patterns,
            })
            .collect()
    })
}

fn arb_threshold() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(1.0),
        Just(0.6),
        Just(0.5),
        // Near ties: Jaccard values of small sets are fractions like 1/3, 2/3, 3/5.
        Just(1.0 / 3.0),
        Just(2.0 / 3.0),
        Just(0.6 - f64::EPSILON),
        Just(0.6 + f64::EPSILON),
        Just(-1.0),
        Just(1.5),
        Just(f64::NAN),
        0.0f64..=1.0,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariant_indexed_consolidation_equals_the_scan(
        support in arb_support(),
        threshold in arb_threshold(),
    ) {
        prop_assert_eq!(consolidate(&support, threshold), reference(&support, threshold));
    }

    /// The default merger gives exactly `consolidate`'s groups, with every raw pattern kept as
    /// an alias of the one group it went to.
    #[test]
    fn invariant_the_lexical_merger_is_consolidate_with_provenance(
        support in arb_support(),
        threshold in arb_threshold(),
    ) {
        let merged = dynbatch::patterns::LexicalMerger::new(threshold).merge_now(&support);
        let aliases: usize = merged.iter().map(|p| p.aliases.len()).sum();
        let total: usize = support.iter().map(|s| s.patterns.len()).sum();
        prop_assert_eq!(aliases, total);
        for p in &merged {
            prop_assert_eq!(p.aliases.len(), p.occurrences);
            prop_assert!(p.aliases.iter().all(|a| p.clusters.contains(&a.cluster)));
        }
        let stripped: Vec<ConsolidatedPattern> = merged
            .into_iter()
            .map(|mut p| {
                p.aliases.clear();
                p
            })
            .collect();
        prop_assert_eq!(stripped, consolidate(&support, threshold));
    }
}

#[test]
fn degenerate_thresholds_keep_their_meaning() {
    let support = vec![Support {
        id: "c".into(),
        priority: 1.0,
        avg_performance: 1.0,
        is_wide: false,
        patterns: ["I tried [X]", "Why chess is overrated", "I tried [X]"]
            .iter()
            .map(|t| Pattern {
                pattern: (*t).to_owned(),
                template: Some((*t).to_owned()),
                examples: vec![],
                rationale: None,
                coverage: None,
            })
            .collect(),
    }];
    // 0: everything joins the first group; above 1: only identical texts merge.
    assert_eq!(consolidate(&support, 0.0).len(), 1);
    assert_eq!(consolidate(&support, 1.5).len(), 2);
    assert_eq!(consolidate(&support, f64::NAN).len(), 2);
    assert_eq!(consolidate(&support, 1.5)[0].occurrences, 2);
}

/// Many patterns over a mid-sized vocabulary with a few frequent words (as the bench's, but
/// small enough for the scan): the index's filters (prefix, size, position, late postings,
/// signatures) find exactly the scan's groups, at several thresholds.
#[test]
fn indexed_equals_the_scan_on_many_patterns() {
    let mut x = 3u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let common = ["i", "the", "for", "why", "[X]", "how"];
    let support: Vec<Support> = (0..600)
        .map(|c| Support {
            id: format!("c{c}"),
            priority: f64::from(600 - c) / 600.0,
            avg_performance: 3.0,
            is_wide: false,
            patterns: (0..4)
                .map(|_| {
                    let n = 2 + next() % 7;
                    let text: Vec<String> = (0..n)
                        .map(|_| {
                            let r = next();
                            if r % 3 == 0 {
                                common[(r / 3 % 6) as usize].to_owned()
                            } else {
                                format!("w{}", r % 400)
                            }
                        })
                        .collect();
                    Pattern {
                        pattern: text.join(" "),
                        template: None,
                        examples: vec![],
                        rationale: None,
                        coverage: None,
                    }
                })
                .collect(),
        })
        .collect();
    for threshold in [0.2, 0.4, 0.5, 0.6, 0.75, 1.0] {
        let ours = consolidate(&support, threshold);
        assert_eq!(
            ours,
            reference(&support, threshold),
            "threshold {threshold}"
        );
        assert!(ours.len() < 2400, "some patterns merged at {threshold}");
    }
}

/// Patterns over a small, skewed vocabulary, of 1 to 24 words, half of them near-copies of an
/// earlier one (a word or two dropped, added or replaced), so many pairs sit at the threshold:
/// frequent words' lists are long enough to be split by group size (sizes past 16 share one
/// list), and the size lists, the words a query skips there, and the bounds that count them
/// are all exercised against the scan.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::range_plus_one
)]
fn small_vocabulary(seed: u64, patterns: usize, vocabulary: u64) -> Vec<Support> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let mut texts: Vec<Vec<String>> = Vec::new();
    for _ in 0..patterns {
        // Skewed: low words are frequent, high ones rare. In letters: `normalize` folds
        // digits into one number token.
        let word = |a: u64, b: u64| {
            let n = (a % vocabulary) * (b % vocabulary) / vocabulary;
            format!(
                "v{}{}",
                char::from(b'a' + (n % 26) as u8),
                char::from(b'a' + (n / 26 % 26) as u8)
            )
        };
        let text = if texts.is_empty() || next() % 2 == 0 {
            (0..1 + next() % 24).map(|_| word(next(), next())).collect()
        } else {
            let mut text = texts[(next() % texts.len() as u64) as usize].clone();
            for _ in 0..1 + next() % 2 {
                let at = (next() % (text.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 if at < text.len() => drop(text.remove(at)),
                    1 if at < text.len() => text[at] = word(next(), next()),
                    _ => text.insert(at, word(next(), next())),
                }
            }
            text
        };
        texts.push(text);
    }
    texts
        .chunks(2)
        .enumerate()
        .map(|(c, texts)| Support {
            id: format!("c{c}"),
            priority: 1.0,
            avg_performance: 1.0 + (c % 3) as f64,
            is_wide: false,
            patterns: texts
                .iter()
                .map(|text| Pattern {
                    pattern: text.join(" "),
                    template: None,
                    examples: vec![],
                    rationale: None,
                    coverage: None,
                })
                .collect(),
        })
        .collect()
}

#[test]
fn size_lists_of_frequent_words_find_the_scan_groups() {
    for (seed, vocabulary) in [(1, 12), (2, 30), (3, 80)] {
        let support = small_vocabulary(seed, 800, vocabulary);
        for threshold in [0.3, 0.5, 0.6, 2.0 / 3.0, 0.75, 0.9, 1.0] {
            assert_eq!(
                consolidate(&support, threshold),
                reference(&support, threshold),
                "seed {seed}, vocabulary {vocabulary}, threshold {threshold}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The same on random inputs large enough for long lists.
    #[test]
    fn invariant_size_lists_equal_the_scan(
        seed in any::<u64>(),
        vocabulary in 4u64..60,
        threshold in 0.05f64..=1.0,
    ) {
        let support = small_vocabulary(seed, 450, vocabulary);
        prop_assert_eq!(consolidate(&support, threshold), reference(&support, threshold));
    }
}

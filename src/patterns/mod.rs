//! Consolidation of the patterns found across clusters and batches (the design's undefined
//! `consolidatePatterns`): each cluster's validated [`Pattern`]s in, [`ConsolidatedPattern`]s
//! with provenance out. The [`Warning`]s about answers are here too, as validation makes them.

pub(crate) mod consolidate;
mod merge;
mod types;

pub use crate::response::{Coverage, Example, Pattern, Template, Warning};
pub use consolidate::consolidate;
pub use merge::{
    DEFAULT_THRESHOLD, JudgedMerger, LexicalMerger, MergeUsage, Merged, PatternMerger,
    SemanticMerger,
};
pub use types::{Alias, ClusterPatterns, ConsolidatedPattern, Support};

#[cfg(test)]
mod tests {
    use super::consolidate::normalize;
    use super::*;

    fn pattern(name: &str, template: Option<&str>, examples: &[(&str, bool)]) -> Pattern {
        Pattern {
            pattern: name.into(),
            template: template.map(Into::into),
            examples: examples
                .iter()
                .map(|(t, g)| Example {
                    title: (*t).into(),
                    grounded: *g,
                })
                .collect(),
            rationale: None,
            coverage: None,
        }
    }

    #[test]
    fn normalize_folds_case_placeholders_and_numbers() {
        assert_eq!(
            normalize("I Tried [X] for 30 Days!"),
            "i tried _slot_ for _num_ days"
        );
        assert_eq!(
            normalize("i tried {topic} for 100 days"),
            "i tried _slot_ for _num_ days"
        );
        assert_eq!(
            normalize("Why Your Espresso's Sour"),
            "why your espressos sour"
        );
    }

    #[test]
    fn consolidation_merges_with_provenance_and_sorts_by_evidence() {
        let support = vec![
            Support {
                id: "a".into(),
                priority: 1.2,
                avg_performance: 4.0,
                is_wide: false,
                patterns: vec![
                    pattern(
                        "30-day challenge",
                        Some("I Tried [X] for 30 Days"),
                        &[("I Tried A for 30 Days", true), ("fake", false)],
                    ),
                    pattern(
                        "Mistakes list",
                        Some("[N] [X] Mistakes Beginners Make"),
                        &[],
                    ),
                ],
            },
            Support {
                id: "b".into(),
                priority: 0.8,
                avg_performance: 2.0,
                is_wide: false,
                patterns: vec![pattern(
                    "Challenge",
                    Some("I tried {thing} for 100 days"),
                    &[("I Tried B for 100 Days", true)],
                )],
            },
        ];
        let out = consolidate(&support, 0.6);
        assert_eq!(out.len(), 2);
        let first = &out[0];
        assert_eq!(first.pattern, "30-day challenge");
        assert_eq!(first.clusters, vec!["a", "b"]);
        assert_eq!(
            first.examples,
            vec!["I Tried A for 30 Days", "I Tried B for 100 Days"]
        );
        assert!(first.wide);
        assert!((first.evidence - (1.2 * 4.0 + 0.8 * 2.0)).abs() < 1e-12);
        assert_eq!(out[1].clusters, vec!["a"]);
        assert!(!out[1].wide);
        // Deterministic whatever the input order.
        let mut reversed = support.clone();
        reversed.reverse();
        assert_eq!(consolidate(&reversed, 0.6), out);
    }
}

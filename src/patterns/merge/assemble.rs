//! Groups of patterns into [`ConsolidatedPattern`]s, the same way for every merger: the first
//! occurrence's name (or the name a judge gave the group), the first template, the supporting
//! clusters and grounded examples without repeats, the evidence, every occurrence as an alias;
//! sorted by evidence, then name, then creation order, as [`consolidate`] sorts.
//!
//! [`consolidate`]: crate::patterns::consolidate()

use std::collections::HashSet;

use crate::patterns::{Alias, ConsolidatedPattern, Pattern, Support};

/// One pattern as a cluster gave it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Occurrence<'a> {
    pub(crate) support: &'a Support,
    pub(crate) pattern: &'a Pattern,
}

impl Occurrence<'_> {
    /// What is compared: the name and, when there is one, the template.
    pub(crate) fn text(&self) -> String {
        match &self.pattern.template {
            Some(t) if !t.is_empty() => format!("{} — {t}", self.pattern.pattern),
            _ => self.pattern.pattern.clone(),
        }
    }
}

/// Every pattern in consolidation's order: clusters by priority (then id), each cluster's
/// patterns as given.
pub(crate) fn occurrences(support: &[Support]) -> Vec<Occurrence<'_>> {
    crate::patterns::consolidate::order(support)
        .into_iter()
        .flat_map(|s| {
            s.patterns.iter().map(move |p| Occurrence {
                support: s,
                pattern: p,
            })
        })
        .collect()
}

/// The consolidated patterns of `groups` (each a list of indices into `occurrences`, in
/// order; every index in exactly one group; groups in order of their first occurrence).
/// `names[g]`, when given and not empty, names group `g` instead of its first occurrence.
pub(crate) fn assemble(
    occurrences: &[Occurrence<'_>],
    groups: &[Vec<usize>],
    names: &[Option<String>],
) -> Vec<ConsolidatedPattern> {
    let mut out: Vec<(usize, ConsolidatedPattern)> = groups
        .iter()
        .enumerate()
        .filter(|(_, members)| !members.is_empty())
        .map(|(g, members)| {
            let first = occurrences[members[0]];
            let mut c = ConsolidatedPattern {
                pattern: names
                    .get(g)
                    .cloned()
                    .flatten()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| first.pattern.pattern.clone()),
                template: None,
                clusters: Vec::new(),
                examples: Vec::new(),
                evidence: 0.0,
                wide: false,
                occurrences: 0,
                aliases: Vec::with_capacity(members.len()),
                coverage: None,
            };
            let mut clusters = HashSet::new();
            let mut examples = HashSet::new();
            // The most frequent template; on a tie, the first.
            let mut templates: std::collections::HashMap<&str, u32> =
                std::collections::HashMap::new();
            let mut best = 0;
            for &i in members {
                let o = occurrences[i];
                c.occurrences += 1;
                if let Some(t) = o.pattern.template.as_deref() {
                    let n = templates.entry(t).or_insert(0);
                    *n += 1;
                    if *n > best {
                        best = *n;
                        if c.template.as_deref() != Some(t) {
                            c.template = Some(t.to_owned());
                        }
                    }
                }
                if clusters.insert(o.support.id.as_str()) {
                    c.clusters.push(o.support.id.clone());
                    c.evidence += o.support.priority
                        * o.support.avg_performance
                        * o.pattern.evidence_weight();
                }
                c.add_coverage(o.pattern.coverage);
                c.wide |= o.support.is_wide || c.clusters.len() > 1;
                for e in o.pattern.examples.iter().filter(|e| e.grounded) {
                    if examples.insert(e.title.as_str()) {
                        c.examples.push(e.title.clone());
                    }
                }
                c.aliases.push(Alias {
                    pattern: o.pattern.pattern.clone(),
                    template: o.pattern.template.clone(),
                    cluster: o.support.id.clone(),
                    batch: None,
                });
            }
            (g, c)
        })
        .collect();
    out.sort_by(|(ga, a), (gb, b)| {
        b.evidence
            .total_cmp(&a.evidence)
            .then_with(|| a.pattern.cmp(&b.pattern))
            .then(ga.cmp(gb))
    });
    out.into_iter().map(|(_, c)| c).collect()
}

//! Scoring a report against a [`LabelSet`]: which labels its patterns find, and the figures.

use std::collections::{BTreeMap, HashMap};

use super::{Evaluation, Label, LabelResult, LabelSet, RecallBucket, Universe};
use crate::model::Cluster;
use crate::report::DiscoveryReport;
use crate::response::shown_titles;
use crate::template::{Overlap, Template, TitleIndex};

/// A batched cluster as the prompt showed it.
struct Shown<'c> {
    id: &'c str,
    /// Its planned batch's size, and its position there (0-based).
    batch_size: usize,
    position: usize,
    /// Its shown titles, as written and folded.
    titles: Vec<&'c str>,
    folded: Vec<String>,
    /// Where its titles start among every shown title.
    start: usize,
}

/// Templates (compiled, and as written) with the titles each matches, over some titles.
struct Hits<'r> {
    templates: Vec<(Template, &'r str)>,
    hits: Vec<Vec<u32>>,
}

impl<'r> Hits<'r> {
    fn new(templates: impl Iterator<Item = &'r str>, titles: &[String]) -> Self {
        let templates: Vec<(Template, &str)> = templates.map(|t| (Template::new(t), t)).collect();
        let index = TitleIndex::new(titles);
        let hits = templates.iter().map(|(t, _)| index.matching(t)).collect();
        Self { templates, hits }
    }

    /// The first template that finds `target` (a flag per title), and how many are mostly it.
    fn judge(&self, target: &[bool]) -> (Option<String>, usize) {
        let size = target.iter().filter(|&&t| t).count();
        let mut found = None;
        let mut fragments = 0;
        for ((template, text), hits) in self.templates.iter().zip(&self.hits) {
            let o = Overlap::of(template, hits, target, size);
            fragments += usize::from(o.mostly());
            if found.is_none() && o.finds() {
                found = Some((*text).to_owned());
            }
        }
        (found, fragments)
    }
}

/// Recall counts, (eligible, found), by batch size and by position.
#[derive(Default)]
struct Breakdown {
    by_size: BTreeMap<usize, (usize, usize)>,
    by_position: BTreeMap<usize, (usize, usize)>,
}

impl Breakdown {
    fn count(&mut self, shown: &Shown<'_>, found: bool) {
        for (map, key) in [
            (&mut self.by_size, shown.batch_size),
            (&mut self.by_position, shown.position + 1),
        ] {
            let entry = map.entry(key).or_default();
            entry.0 += 1;
            entry.1 += usize::from(found);
        }
    }

    fn buckets(map: BTreeMap<usize, (usize, usize)>) -> Vec<RecallBucket> {
        map.into_iter()
            .map(|(key, (eligible, found))| RecallBucket::new(key, eligible, found))
            .collect()
    }
}

/// Every batched cluster as shown, in plan order.
fn shown_clusters<'c>(report: &DiscoveryReport<'_>, clusters: &'c [Cluster]) -> Vec<Shown<'c>> {
    let by_id: HashMap<&str, &Cluster> =
        clusters.iter().rev().map(|c| (c.id.as_str(), c)).collect();
    let vpc = report.plan.strategy.videos_per_cluster;
    let mut shown = Vec::new();
    let mut start = 0;
    for batch in &report.plan.batches {
        for (position, id) in batch.clusters.iter().enumerate() {
            let Some(cluster) = by_id.get(id.as_ref()) else {
                continue;
            };
            let folded = shown_titles(cluster, vpc);
            let titles: Vec<&str> = cluster
                .videos
                .iter()
                .take(folded.len())
                .map(|v| v.title.as_str())
                .collect();
            shown.push(Shown {
                id: cluster.id.as_str(),
                batch_size: batch.clusters.len(),
                position,
                start,
                titles,
                folded,
            });
            start += shown.last().map_or(0, |s| s.titles.len());
        }
    }
    shown
}

/// Scores `report` (made from `clusters`) against `labels`. See the [module docs](super) for
/// the rule and the figures.
pub fn evaluate(
    report: &DiscoveryReport<'_>,
    clusters: &[Cluster],
    labels: &LabelSet,
) -> Evaluation {
    let shown = shown_clusters(report, clusters);
    let patterns_of: HashMap<&str, Vec<&str>> = report
        .cluster_patterns
        .iter()
        .map(|c| {
            let templates = c.patterns.iter().filter_map(|p| p.template.as_deref());
            (c.id.as_str(), templates.collect())
        })
        .collect();
    // Each cluster's templates over its own titles.
    let local: Vec<Hits<'_>> = shown
        .iter()
        .map(|s| {
            let templates = patterns_of.get(s.id).into_iter().flatten().copied();
            Hits::new(templates, &s.folded)
        })
        .collect();
    // The consolidated templates over every shown title, when a label needs them.
    let all_titles: Vec<&str> = shown
        .iter()
        .flat_map(|s| s.titles.iter().copied())
        .collect();
    let global = if labels.labels().any(|l| l.cluster.is_none()) {
        let all_folded: Vec<String> = shown
            .iter()
            .flat_map(|s| s.folded.iter().cloned())
            .collect();
        let templates = report.patterns.iter().filter_map(|p| p.template.as_deref());
        Hits::new(templates, &all_folded)
    } else {
        Hits::new(std::iter::empty(), &[])
    };
    let mut breakdown = Breakdown::default();
    let mut results = Vec::with_capacity(labels.len());
    for (label, re) in labels.compiled() {
        let result = if let Some(id) = label.cluster.as_deref() {
            let at = shown.iter().position(|s| s.id == id);
            score_in_cluster(label, re, at, &shown, &local, &mut breakdown)
        } else {
            let target: Vec<bool> = all_titles.iter().map(|t| re.is_match(t)).collect();
            for (s, hits) in shown.iter().zip(&local) {
                let own = &target[s.start..s.start + s.titles.len()];
                if own.iter().filter(|&&t| t).count() >= 2 {
                    breakdown.count(s, hits.judge(own).0.is_some());
                }
            }
            let (found, fragments) = global.judge(&target);
            LabelResult::new(label, &target, Universe::Consolidated, found, fragments)
        };
        results.push(result);
    }
    let usage = &report.usage;
    Evaluation::assemble(
        results,
        template_counts(&local),
        (
            usage.calls_made,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.estimated_cost_usd,
        ),
        Breakdown::buckets(breakdown.by_size),
        Breakdown::buckets(breakdown.by_position),
        unknown_clusters(labels, clusters),
    )
}

/// A cluster's label, looked for in its cluster (`at` among the shown ones, if it was).
fn score_in_cluster(
    label: &Label,
    re: &regex::Regex,
    at: Option<usize>,
    shown: &[Shown<'_>],
    local: &[Hits<'_>],
    breakdown: &mut Breakdown,
) -> LabelResult {
    let Some(i) = at else {
        return LabelResult::new(label, &[], Universe::Cluster, None, 0);
    };
    let target: Vec<bool> = shown[i].titles.iter().map(|t| re.is_match(t)).collect();
    let (found, fragments) = local[i].judge(&target);
    if target.iter().filter(|&&t| t).count() >= 2 {
        breakdown.count(&shown[i], found.is_some());
    }
    LabelResult::new(label, &target, Universe::Cluster, found, fragments)
}

/// (templates, generic ones, grounded ones) over every cluster's own templates.
fn template_counts(local: &[Hits<'_>]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for hits in local {
        for ((template, _), matched) in hits.templates.iter().zip(&hits.hits) {
            counts.0 += 1;
            counts.1 += usize::from(template.literal_words() < 2);
            counts.2 += usize::from(!matched.is_empty());
        }
    }
    counts
}

/// One warning listing the labels' clusters that the input does not have, if any.
fn unknown_clusters(labels: &LabelSet, clusters: &[Cluster]) -> Vec<String> {
    let ids: std::collections::HashSet<&str> = clusters.iter().map(|c| c.id.as_str()).collect();
    let unknown: Vec<&str> = labels
        .labels()
        .filter_map(|l| l.cluster.as_deref())
        .filter(|id| !ids.contains(id))
        .collect();
    if unknown.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{} labels name clusters the input does not have: {}",
            unknown.len(),
            unknown.join(", ")
        )]
    }
}

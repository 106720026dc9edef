//! The quality probe ([`RunConfig::quality_probe`](super::RunConfig::quality_probe)): after a
//! run, some batched clusters are asked again, each alone, through the same runner (limits,
//! retries, journal), and their single answers are compared with the batched ones.

use std::collections::HashSet;

use crate::backend::LlmBackend;
use crate::model::Cluster;
use crate::report::{DiscoveryReport, OutcomeStatus, ProbedCluster, QualityProbe, agreement};
use crate::response::shown_titles;
use crate::timer::Timer;

use super::Runner;
use super::driver::Run;
use super::tally::Tally;

impl<Backend: LlmBackend, Clock: Timer> Runner<Backend, Clock> {
    /// Probes `report` (of `clusters`, batched as `members`) when the config asks for it.
    pub(super) async fn probe<'a>(
        &self,
        report: &mut DiscoveryReport<'a>,
        clusters: &'a [Cluster],
        concept: &str,
        members: &[Vec<usize>],
    ) {
        let k = self.config.quality_probe;
        if k == 0 {
            return;
        }
        let succeeded: HashSet<&str> = report
            .outcomes
            .iter()
            .filter(|o| o.status == OutcomeStatus::Succeeded)
            .map(|o| o.id.as_str())
            .collect();
        // Succeeded clusters of batches of two or more, in plan order; k of them, evenly
        // spaced, so that every position and batch size has its chance.
        let candidates: Vec<(usize, usize, usize, usize)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.len() >= 2)
            .flat_map(|(b, m)| {
                m.iter()
                    .enumerate()
                    .map(move |(position, &c)| (b, position, m.len(), c))
            })
            .filter(|&(.., c)| succeeded.contains(clusters[c].id.as_str()))
            .collect();
        let take = k.min(candidates.len());
        let sampled: Vec<(usize, usize, usize, usize)> = (0..take)
            .map(|i| candidates[i * candidates.len() / take])
            .collect();
        let alone: Vec<Vec<usize>> = sampled.iter().map(|&(.., c)| vec![c]).collect();
        let tally = if alone.is_empty() {
            Tally::new(0)
        } else {
            let mut run = Run::new(self, &report.plan, clusters, concept, &alone);
            run.silent = true;
            run.drive(futures::future::pending()).await;
            std::mem::replace(&mut run.tally, Tally::new(0))
        };
        let vpc = report.plan.strategy.videos_per_cluster;
        let probed = sampled
            .iter()
            .map(|&(batch, position, batch_size, c)| {
                let cluster = &clusters[c];
                let result = tally.results.get(c);
                let single: Vec<&str> = result
                    .and_then(|r| r.patterns.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.template.as_deref())
                    .collect();
                let batched: Vec<&str> = report
                    .cluster_patterns
                    .iter()
                    .filter(|p| p.id == cluster.id)
                    .flat_map(|p| p.patterns.iter().filter_map(|p| p.template.as_deref()))
                    .collect();
                let (compared, agreed) = agreement(&single, &batched, &shown_titles(cluster, vpc));
                ProbedCluster::new(
                    cluster.id.clone(),
                    (batch, batch_size, position + 1),
                    (compared, agreed),
                    result.and_then(|r| r.failure.as_ref()).map(|f| f.0.clone()),
                )
            })
            .collect();
        let c = &tally.counters;
        let probe = QualityProbe::new(
            probed,
            self.config.quality_probe_threshold,
            (
                c.calls,
                c.prompt_tokens,
                c.completion_tokens,
                tally.cost(&self.config),
            ),
        );
        if probe.is_low() {
            report.warnings.push(format!(
                "quality probe: {probe}; under the {:.0}% threshold: smaller batches may find more",
                probe.threshold * 100.0
            ));
        }
        report.quality_probe = Some(probe);
    }
}

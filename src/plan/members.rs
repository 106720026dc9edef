//! Which input clusters each batch of a plan holds, checking that the plan was made from them.

use std::collections::HashMap;

use super::{BatchPlan, ClusterState};
use crate::error::{Error, PlanMismatch};
use crate::model::Cluster;

/// Input indices of each batch's clusters, checking that the plan belongs to the input.
pub(crate) fn batch_members(
    plan: &BatchPlan<'_>,
    clusters: &[Cluster],
) -> Result<Vec<Vec<usize>>, Error> {
    if plan.clusters.len() != clusters.len() {
        return Err(PlanMismatch::ClusterCount {
            plan: plan.clusters.len(),
            input: clusters.len(),
        }
        .into());
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(clusters.len());
    for (i, (entry, cluster)) in plan.clusters.iter().zip(clusters).enumerate() {
        if entry.id != cluster.id.as_str() {
            return Err(PlanMismatch::IdAt {
                index: i,
                plan: entry.id.to_string(),
                input: cluster.id.clone(),
            }
            .into());
        }
        if matches!(entry.state, ClusterState::Batched { .. }) {
            index.insert(cluster.id.as_str(), i);
        }
    }
    plan.batches
        .iter()
        .map(|b| {
            b.clusters
                .iter()
                .map(|id| {
                    index
                        .get(id.as_ref())
                        .copied()
                        .ok_or_else(|| PlanMismatch::NotBatched { id: id.to_string() }.into())
                })
                .collect()
        })
        .collect()
}

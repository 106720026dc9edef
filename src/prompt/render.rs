//! Every request of a plan, rendered without sending any: what a live run sends and what a
//! batch workflow submits.

use super::{PromptCluster, RequestSettings};
use crate::backend::ChatRequest;
use crate::error::Error;
use crate::model::Cluster;
use crate::plan::{BatchPlan, batch_members};

/// Every request the plan's batches would send, in plan order, rendered with `settings`.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub(crate) fn render_requests(
    plan: &BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    settings: &RequestSettings,
) -> Result<Vec<ChatRequest>, Error> {
    let members = batch_members(plan, clusters)?;
    Ok(members
        .iter()
        .map(|m| settings.request(concept, &plan.strategy, &prompt_clusters(plan, clusters, m)))
        .collect())
}

pub(crate) fn prompt_clusters<'a>(
    plan: &BatchPlan<'_>,
    clusters: &'a [Cluster],
    members: &[usize],
) -> Vec<PromptCluster<'a>> {
    members
        .iter()
        .map(|&i| PromptCluster {
            cluster: &clusters[i],
            quality: plan.clusters[i].quality.unwrap_or(0.0),
        })
        .collect()
}

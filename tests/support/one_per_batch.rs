//! Plans of one cluster per batch, for tests that count calls: `n` clusters, `n` calls.

#![allow(dead_code, clippy::unwrap_used)]

use dynbatch::{BatchPlan, Batcher, BatchingConfig, Cluster};

/// The batching config that plans `n` clusters one per batch.
pub(crate) fn config(n: usize) -> BatchingConfig {
    BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(n)
        .build()
        .unwrap()
}

/// `clusters` planned one per batch.
pub(crate) fn plan(clusters: &[Cluster]) -> BatchPlan<'static> {
    let plan = Batcher::new(config(clusters.len()))
        .plan(clusters)
        .unwrap()
        .into_owned();
    assert_eq!(plan.batches.len(), clusters.len());
    plan
}

/// `n` clusters with titles of their own, planned one per batch.
pub(crate) fn distinct(n: usize) -> (Vec<Cluster>, BatchPlan<'static>) {
    let clusters = dynbatch::testing::distinct_clusters(n);
    let plan = plan(&clusters);
    (clusters, plan)
}

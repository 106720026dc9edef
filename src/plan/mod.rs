//! The planner: [`Batcher`] turns clusters into a [`BatchPlan`] — scoring, filtering, ordering,
//! strategy selection, token-bounded packing under a call budget, rebalancing — and
//! [`BatchPlan::check`] proves the plan's invariants.
//!
//! Planning is synchronous, pure and runtime-free, and borrows its input. One file per
//! concern: `batcher` (the pipeline), `order` (priority order, duplicate ids), `pack` (packing
//! and rebalancing), `types` (the plan), `check` (its invariants), `display` (the summary).

mod batcher;
pub(crate) mod check;
mod display;
#[cfg(all(test, feature = "testing"))]
mod equivalence;
mod members;
mod order;
mod pack;
mod types;

pub use batcher::Batcher;
pub(crate) use members::batch_members;
pub use types::{Batch, BatchPlan, ClusterEntry, ClusterState, InvariantViolation, StateCounts};

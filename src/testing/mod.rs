//! Test support for plug-in authors and property tests (feature `testing`): proptest strategies
//! that generate realistic clusters and valid configs, [`check_plan`] (every invariant of one
//! plan, plus determinism and the JSON round trip), and [`run_conformance`], the suite a
//! plug-in author runs on their own [`Batcher`](crate::Batcher); the conformance suites for
//! backends and journals too. One file per concern: `arb.rs` (the strategies and fixed
//! inputs), `plan.rs` (plan checks and the plug-in suite), `backend.rs` and `store.rs` (the
//! backend and journal suites).
//!
//! ```
//! use dynbatch::{Batcher, BatchingConfig, Cluster, QualityScorer};
//!
//! #[derive(Debug)]
//! struct Flat;
//! impl QualityScorer for Flat {
//!     fn quality(&self, _: &Cluster) -> f64 { 0.7 }
//! }
//!
//! let batcher = Batcher::new(BatchingConfig::default()).with_scorer(Flat);
//! dynbatch::testing::run_conformance(&batcher, 32).unwrap();
//! ```

/// The `proptest` this module's strategies are built with, re-exported so property tests of
/// plug-ins use the same version without a dependency of their own.
pub use proptest;

mod arb;
mod backend;
mod plan;
mod store;

pub use arb::{
    arb_cluster, arb_clusters, arb_config, arb_dirty_clusters, arb_title, arb_video,
    distinct_clusters,
};
pub use backend::{BackendConformanceError, run_backend_conformance};
pub use plan::{check_plan, run_conformance, run_conformance_with};
pub use store::{StoreConformanceError, run_store_conformance};

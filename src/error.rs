//! The crate's error type.

use crate::config::ConfigError;

/// Everything that can go wrong in dynbatch. Invalid *clusters* are not errors: they are
/// `rejected` entries of the plan, with a reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A [`StrategySelector`](crate::StrategySelector) returned a strategy that cannot be planned.
    #[error("the strategy selector returned an invalid strategy: {0}")]
    InvalidStrategy(#[source] crate::strategy::StrategyError),
    /// A plan given to the runner was not made from the clusters given with it.
    #[error("the plan does not belong to these clusters: {0}")]
    PlanMismatch(String),
    /// A backend could not be set up (bad URL, missing API key, invalid header).
    #[error("backend: {0}")]
    Backend(String),
    /// Reading or writing a file of this crate's formats (e.g. Batch API JSONL).
    #[error("{0}")]
    Format(String),
    /// A journal ([`RunStore`](crate::store::RunStore)) could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A Batch API call failed for good (feature `openai`).
    #[cfg(feature = "openai")]
    #[error("Batch API {operation}: {source}")]
    BatchApi {
        /// What was being done.
        operation: String,
        /// The error.
        #[source]
        source: crate::backend::BackendError,
    },
    /// A plan broke one of its invariants (see
    /// [`BatchPlan::check`](crate::plan::BatchPlan::check)).
    #[error("the plan breaks an invariant: {0}")]
    Invariant(#[from] crate::plan::InvariantViolation),
    /// An error from a plug-in or another library.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

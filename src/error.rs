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
    PlanMismatch(#[from] PlanMismatch),
    /// A backend could not be set up (bad URL, missing API key, invalid header).
    #[error("backend: {0}")]
    Backend(#[from] SetupError),
    /// A Batch API file or request that does not hold what it should.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A journal ([`RunStore`](crate::store::RunStore)) could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A batch API call failed for good.
    #[error("batch API {operation}: {source}")]
    BatchApi {
        /// What was being done.
        operation: String,
        /// The error.
        #[source]
        source: crate::backend::BackendError,
    },
    /// A batch whose creation was sent when a run stopped, but whose answer was lost, matches
    /// several of the account's batches: which one is it is for a person to say.
    #[error(
        "a batch of {requests} requests was being created when the last run stopped, and {} of the account's batches could be it: {}; attach to the right one by id (the others cost money too: cancel them)",
        candidates.len(),
        candidates.join(", ")
    )]
    UnsureBatch {
        /// Requests in the batch.
        requests: usize,
        /// The ids of the batches that match.
        candidates: Vec<String>,
    },
    /// A plan broke one of its invariants (see
    /// [`BatchPlan::check`](crate::BatchPlan::check)).
    #[error("the plan breaks an invariant: {0}")]
    Invariant(#[from] crate::plan::InvariantViolation),
    /// An error from a plug-in or another library.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

/// Why planning failed: only a [`StrategySelector`](crate::StrategySelector) that returned a
/// strategy that cannot be planned can make it fail (invalid clusters are `rejected` entries
/// of the plan, not errors). Converts into [`Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The selector's strategy fails [`StrategySettings::validate`](crate::StrategySettings::validate).
    #[error("the strategy selector returned an invalid strategy: {0}")]
    InvalidStrategy(#[source] crate::strategy::StrategyError),
}

impl From<PlanError> for Error {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::InvalidStrategy(e) => Self::InvalidStrategy(e),
        }
    }
}

/// How a plan and the clusters (or Batch API input) given with it differ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanMismatch {
    /// Not as many clusters.
    #[error("the plan has {plan} clusters, the input {input}")]
    ClusterCount {
        /// Clusters in the plan.
        plan: usize,
        /// Clusters given.
        input: usize,
    },
    /// Another cluster at the same place.
    #[error("plan entry {index} is {plan:?}, input cluster {index} is {input:?}")]
    IdAt {
        /// The input index.
        index: usize,
        /// The plan's id there.
        plan: String,
        /// The input's id there.
        input: String,
    },
    /// A batch names a cluster the plan does not have as batched.
    #[error("batch member {id:?} is not a batched cluster")]
    NotBatched {
        /// The id.
        id: String,
    },
    /// Batch API input or results of another number of requests than the plan has batches.
    #[error(
        "the Batch API input has {requests} requests and its results {results}, the plan {batches} batches"
    )]
    BatchCount {
        /// Batches in the plan.
        batches: usize,
        /// Requests in the input.
        requests: usize,
        /// Outcomes in the results.
        results: usize,
    },
}

/// Why a backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The base URL does not parse.
    #[error("base URL {url:?}: {source}")]
    BaseUrl {
        /// The URL given.
        url: String,
        /// The parser's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No API key (neither a key nor an `api-key` header) for a server that is not on
    /// loopback.
    #[error(
        "no API key for {base_url}: set OPENAI_API_KEY (only a server on loopback may go without)"
    )]
    NoApiKey {
        /// The server.
        base_url: String,
    },
    /// A header name that is not valid HTTP.
    #[error("header name {name:?} is not valid HTTP")]
    HeaderName {
        /// The name.
        name: String,
    },
    /// A header value that is not valid HTTP (the value is not repeated: it may be a secret).
    #[error("header {name}: the value is not valid HTTP")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A Batch API file or request that does not hold what it should.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A request index past the input's end.
    #[error("request {index} is not in the input ({len} requests)")]
    NoSuchRequest {
        /// The index asked for.
        index: usize,
        /// Requests in the input.
        len: usize,
    },
    /// One request larger than a whole Batch API file may be.
    #[error(
        "request {index} ({custom_id}) is {bytes} bytes, more than a whole batch may hold ({limit})"
    )]
    RequestTooLarge {
        /// The request's index.
        index: usize,
        /// Its `custom_id`.
        custom_id: String,
        /// Its line's size.
        bytes: usize,
        /// The file limit.
        limit: usize,
    },
    /// A batch that holds a request of other clusters, concept or settings.
    #[error(
        "batch {batch_id} holds {custom_id}, which is not a request of this plan: it was submitted for other clusters, concept or settings"
    )]
    ForeignRequest {
        /// The batch.
        batch_id: String,
        /// The request's `custom_id`.
        custom_id: String,
    },
}

#![doc = include_str!("../README.md")]
#![doc = "\n\n## On docs.rs\n\nThe guide's chapters are the modules of [`guide`]."]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
pub mod batch;
mod config;
mod discover;
mod error;
#[cfg(all(fuzzing, feature = "testing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod guide;
mod hash;
#[cfg(feature = "html")]
pub mod html;
mod model;
pub mod patterns;
pub mod plan;
pub mod prompt;
mod quality;
pub mod report;
mod response;
pub mod run;
pub mod store;
mod strategy;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timer;
mod tokens;

#[cfg(feature = "mock")]
pub use backend::mock::{MockBackend, MockRateLimit, MockStep};
#[cfg(feature = "openai")]
pub use backend::openai::{MaxTokensField, OpenAiBackend, OpenAiBatches};
pub use backend::{
    BackendError, CallError, ChatMessage, ChatRequest, ChatResponse, ErrorKind, LlmBackend,
    RateLimitInfo, ResponseFormat, Role, async_trait,
};
pub use config::{BatchingConfig, BatchingConfigBuilder, ConfigError, OverBudget};
pub use error::{Error, FormatError, PlanError, PlanMismatch, SetupError};
pub use model::{
    Cluster, Extra, ReadError, Rejection, ScoreKind, Video, read_clusters, read_clusters_parallel,
};
pub use plan::{
    Batch, BatchPlan, Batcher, ClusterEntry, ClusterState, InvariantViolation, StateCounts,
};
pub use prompt::{OutputMode, RequestSettings};
pub use quality::{QualityFactors, QualityScorer, Scored, SpecQualityScorer};
pub use report::DiscoveryReport;
pub use report::Failure;
pub use run::{RunConfig, RunConfigBuilder, RunEvent, Runner};
#[cfg(feature = "store")]
pub use store::SqliteStore;
pub use store::{MemoryStore, RequestKey, RunStore, StoreError};
pub use strategy::{
    PatternRange, SpecStrategySelector, Strategy, StrategyError, StrategyKind, StrategySelector,
};
pub use timer::Timer;
#[cfg(feature = "tokio")]
pub use timer::TokioTimer;
#[cfg(feature = "tiktoken")]
pub use tokens::{Encoding, TiktokenEstimator};
pub use tokens::{SpecTokenEstimator, TokenEstimator};

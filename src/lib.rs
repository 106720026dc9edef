#![doc = include_str!("../README.md")]
#![doc = "\n\n## On docs.rs\n\nThe guide's chapters are the modules of [`guide`]."]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
pub mod batch;
mod config;
mod discover;
mod error;
#[cfg(feature = "eval")]
pub mod eval;
#[cfg(all(fuzzing, feature = "testing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod guide;
mod hash;
#[cfg(feature = "html")]
pub mod html;
mod model;
pub mod patterns;
mod plan;
pub mod prompt;
mod quality;
pub mod report;
mod response;
mod run;
pub mod store;
mod strategy;
mod sync;
mod template;
#[cfg(feature = "testing")]
pub mod testing;
mod timer;
mod tokens;

pub use config::{BatchingConfig, BatchingConfigBuilder, ConfigError, OverBudget};
pub use error::{Error, FormatError, PlanError, PlanMismatch, SetupError};
pub use model::{
    Cluster, Extra, ReadError, Rejection, ScoreKind, Video, read_clusters, read_clusters_parallel,
};
pub use plan::{
    Batch, BatchPlan, Batcher, ClusterEntry, ClusterState, InvariantViolation, StateCounts,
};
pub use quality::{QualityFactors, QualityScorer, Scored, SpecQualityScorer};
pub use run::{Embedding, EventStream, RateLimiter, RunConfig, RunConfigBuilder, RunEvent, Runner};
pub use strategy::{
    PatternRange, SpecStrategySelector, StrategyError, StrategyKind, StrategySelector,
    StrategySettings,
};
#[cfg(feature = "tokio")]
pub use timer::TokioTimer;
pub use timer::{Sleep, Timer};
#[cfg(feature = "tiktoken")]
pub use tokens::{Encoding, TiktokenEstimator};
pub use tokens::{SpecTokenEstimator, TokenEstimator};

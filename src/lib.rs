#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
pub mod config;
pub mod error;
mod hash;
pub mod model;
pub mod patterns;
pub mod plan;
pub mod prompt;
pub mod quality;
pub mod response;
pub mod run;
pub mod store;
pub mod strategy;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timer;
pub mod tokens;

pub use backend::{BackendError, ChatRequest, ChatResponse, LlmBackend};
pub use config::{BatchingConfig, BatchingConfigBuilder, ConfigError, OverBudget};
pub use error::{Error, FormatError, PlanMismatch, SetupError};
pub use model::{Cluster, Extra, Rejection, ScoreKind, Video, read_clusters};
pub use patterns::DiscoveryReport;
pub use plan::{
    Batch, BatchPlan, Batcher, ClusterEntry, ClusterState, InvariantViolation, StateCounts,
};
pub use quality::{QualityFactors, QualityScorer, Scored, SpecQualityScorer};
pub use run::{RunConfig, RunConfigBuilder, RunEvent, Runner};
pub use strategy::{
    PatternRange, SpecStrategySelector, Strategy, StrategyError, StrategyKind, StrategySelector,
};
pub use tokens::{SpecTokenEstimator, TokenEstimator};

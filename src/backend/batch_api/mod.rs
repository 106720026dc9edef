//! `OpenAI`'s Batch API (feature `openai`), for runs that outgrow one account's rate limit or one
//! machine's patience: the provider runs up to 50,000 requests per batch within 24 h, at half
//! the price.
//!
//! [`BatchApiClient::run`] does the whole job: split the plan's requests into input files within
//! the provider's limits ([`BatchLimits`]), upload them, create the batches, poll them with
//! back-off, download the output **and** error files, and import them into the same
//! [`DiscoveryReport`](crate::patterns::DiscoveryReport) a live run produces (every cluster
//! accounted; failed lines keep their reason). Requests a batch left unanswered (it expired, or
//! a line failed in a way worth another try) go into a new batch or are left for a live run, as
//! [`Remainder`] says. With a [`RunStore`](crate::store::RunStore) journal
//! ([`BatchApiClient::with_store`]), every submission
//! is recorded as it is made, and running again with the same input attaches to the batches
//! already submitted instead of paying for them twice.
//!
//! The pieces are public too: [`export`] and [`import`] work on files with no network
//! (submit them with any tool), and [`BatchApiClient`]'s `upload`, `create`, `retrieve`,
//! `cancel` and `download` are the raw calls.
//!
//! Servers: `OpenAI`; Azure `OpenAI` (its v1 API, base URL `https://NAME.openai.azure.com/openai/v1`
//! with `OPENAI_API_KEY_HEADER=api-key`); any server with `/v1/files` and `/v1/batches` in
//! `OpenAI`'s shape (e.g. Groq, the `LiteLLM` proxy). Local servers (llama.cpp, Ollama, vLLM's
//! HTTP server) have no Batch API.

mod client;
mod event;
mod input;
mod job;
mod results;
mod submit;

pub use client::{BatchApiClient, BatchErrorInfo, BatchInfo, BatchStatus, RequestCounts};
pub use event::BatchEvent;
pub use input::{BatchInput, BatchLimits, Shard, custom_id, export};
pub use job::{BatchJob, BatchRun, PollConfig, Remainder, SubmittedBatch};
pub use results::{BatchResults, import, import_results};

/// The Batch API's discount on both prompt and completion tokens.
pub const BATCH_DISCOUNT: f64 = 0.5;

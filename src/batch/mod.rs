//! Plans through a provider's batch API, for runs that outgrow one account's rate limit or one
//! machine's patience: the provider runs the requests within a day, at half the price.
//!
//! [`BatchRunner::run`] does the whole job over any [`BatchBackend`]: split the plan's requests
//! into batches within the provider's limits ([`BatchLimits`]), create them, poll them with
//! back-off, read their results, and replay them through the runner into the same
//! [`DiscoveryReport`](crate::report::DiscoveryReport) a live run produces (every cluster
//! accounted; failed lines keep their reason), priced at the batch tier. Requests a batch
//! left unanswered (it expired, or a line failed in a way worth another try) go into a new
//! batch or are left for a live run, as [`Remainder`] says. With a
//! [`RunStore`](crate::store::RunStore) journal ([`BatchRunner::with_store`]) every batch is
//! recorded as pending before it is created and again once it exists, so running again with
//! the same input attaches to the batches already submitted instead of paying for them twice,
//! and a create whose answer was lost is found among the account's batches.
//!
//! Backends: [`OpenAiBatches`](crate::backend::openai::OpenAiBatches) (feature `openai`:
//! `OpenAI`'s Files + Batches, Azure `OpenAI`, Groq, the `LiteLLM` proxy) and
//! [`AnthropicBatches`](crate::backend::anthropic::AnthropicBatches) (feature `anthropic`:
//! Message Batches). Local servers (llama.cpp, Ollama, vLLM's HTTP server) have no batch API.
//!
//! The pieces are public too: [`export`] and [`import`] work on files with no network (submit
//! them with any tool), and [`BatchRunner`]'s `submit`, `attach`, `wait`, `collect` and
//! `cancel_job` are the steps of `run`.
//!
//! [`BatchBackend`]: crate::backend::BatchBackend
//! [`BatchLimits`]: crate::backend::BatchLimits

mod event;
mod input;
mod job;
mod replay;
mod results;
mod runner;
mod submit;

pub use event::BatchEvent;
pub use input::{BatchInput, export};
pub use job::{BatchJob, BatchRun, PollConfig, Remainder, SubmittedBatch};
pub use replay::import;
pub use results::BatchResults;
pub use runner::BatchRunner;

/// The batch APIs' discount on input and output tokens (`OpenAI` and Anthropic both halve
/// their prices).
pub const BATCH_DISCOUNT: f64 = 0.5;

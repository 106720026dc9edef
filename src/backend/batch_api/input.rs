//! The Batch API's input: one JSONL line per planned request, split into files within the
//! provider's limits.

use crate::backend::ChatRequest;
use crate::backend::openai::{MaxTokensField, request_body};
use crate::error::{Error, FormatError};
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::run::{RunConfig, render_requests};
use crate::store::RequestKey;

/// The stable, unique `custom_id` of a plan's batch: its index and a hash of its cluster ids,
/// so a re-export of the same plan gives the same ids and a different plan cannot match.
pub fn custom_id(plan: &BatchPlan<'_>, batch: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(plan.strategy.kind.as_str().as_bytes());
    if let Some(b) = plan.batches.get(batch) {
        for id in &b.clusters {
            eat(&[0x1f]);
            eat(id.as_bytes());
        }
    }
    format!("dynbatch-{batch:04}-{hash:016x}")
}

/// The Batch API input: one line per batch, `{"custom_id", "method": "POST", "url":
/// "/v1/chat/completions", "body": <the exact request the runner would send>}`.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub fn export(
    plan: &BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    config: &RunConfig,
    max_tokens_field: MaxTokensField,
) -> Result<String, Error> {
    let input = BatchInput::new(plan, clusters, concept, config, None, max_tokens_field)?;
    let mut out = String::new();
    for line in &input.lines {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The provider's limits on one batch. Defaults: `OpenAI`'s, 50,000 requests and 200 MB per
/// input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchLimits {
    /// Requests per batch.
    pub max_requests: usize,
    /// Bytes per input file.
    pub max_file_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_requests: 50_000,
            max_file_bytes: 200 * 1024 * 1024,
        }
    }
}

impl BatchLimits {
    /// Limits of `max_requests` requests and `max_file_bytes` bytes per file (each at least 1).
    pub fn new(max_requests: usize, max_file_bytes: usize) -> Self {
        Self {
            max_requests: max_requests.max(1),
            max_file_bytes: max_file_bytes.max(1),
        }
    }
}

/// One input file: some of the plan's requests, within [`BatchLimits`].
#[derive(Debug, Clone)]
pub struct Shard {
    /// Which requests (indices into the plan's batches) the file holds, in order.
    pub requests: Vec<usize>,
    /// The file: one JSONL line per request.
    pub jsonl: String,
    /// The file's key ([`RequestKey::of_batch_input`]): how a journal finds its batch again.
    pub key: RequestKey,
}

/// Every request of a plan as Batch API input lines, and the files they go in.
#[derive(Debug, Clone)]
pub struct BatchInput {
    pub(super) requests: Vec<ChatRequest>,
    pub(super) custom_ids: Vec<String>,
    pub(super) lines: Vec<String>,
}

impl BatchInput {
    /// The input of `plan`: each batch's request as the runner would render it with
    /// `config.request`, its model replaced by `model` when given.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
    pub fn new(
        plan: &BatchPlan<'_>,
        clusters: &[Cluster],
        concept: &str,
        config: &RunConfig,
        model: Option<&str>,
        max_tokens_field: MaxTokensField,
    ) -> Result<Self, Error> {
        let requests = render_requests(plan, clusters, concept, &config.request)?;
        let custom_ids: Vec<String> = (0..requests.len()).map(|i| custom_id(plan, i)).collect();
        let lines = requests
            .iter()
            .zip(&custom_ids)
            .map(|(request, id)| {
                serde_json::json!({
                    "custom_id": id,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": request_body(request, model, max_tokens_field),
                })
                .to_string()
            })
            .collect();
        Ok(Self {
            requests,
            custom_ids,
            lines,
        })
    }

    /// Requests (one per planned batch).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the plan has no batch.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The `custom_id` of each request, in plan order.
    pub fn custom_ids(&self) -> &[String] {
        &self.custom_ids
    }

    /// The requests, in plan order, as the runner renders them.
    pub fn requests(&self) -> &[ChatRequest] {
        &self.requests
    }

    /// The files that hold the requests `indices` (in that order), each within `limits`.
    ///
    /// # Errors
    /// [`Error::Format`] for an index out of range, or one request larger than a whole file.
    pub fn shards(&self, indices: &[usize], limits: BatchLimits) -> Result<Vec<Shard>, Error> {
        let mut shards = Vec::new();
        let mut requests = Vec::new();
        let mut jsonl = String::new();
        let close = |requests: &mut Vec<usize>, jsonl: &mut String, shards: &mut Vec<Shard>| {
            if !requests.is_empty() {
                let jsonl = std::mem::take(jsonl);
                shards.push(Shard {
                    requests: std::mem::take(requests),
                    key: RequestKey::of_batch_input(jsonl.as_bytes()),
                    jsonl,
                });
            }
        };
        for &i in indices {
            let line = self.lines.get(i).ok_or(FormatError::NoSuchRequest {
                index: i,
                len: self.lines.len(),
            })?;
            let bytes = line.len() + 1;
            if bytes > limits.max_file_bytes {
                return Err(FormatError::RequestTooLarge {
                    index: i,
                    custom_id: self.custom_ids.get(i).cloned().unwrap_or_default(),
                    bytes,
                    limit: limits.max_file_bytes,
                }
                .into());
            }
            if requests.len() >= limits.max_requests || jsonl.len() + bytes > limits.max_file_bytes
            {
                close(&mut requests, &mut jsonl, &mut shards);
            }
            requests.push(i);
            jsonl.push_str(line);
            jsonl.push('\n');
        }
        close(&mut requests, &mut jsonl, &mut shards);
        Ok(shards)
    }
}

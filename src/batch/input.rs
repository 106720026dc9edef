//! A batch run's input: one line per planned request, in the provider's format, split into
//! batches within the provider's limits.

use crate::backend::{BatchBackend, BatchLimits, ChatRequest};
use crate::error::{Error, FormatError};
use crate::model::Cluster;
use crate::plan::BatchPlan;
use crate::prompt::render_requests;
use crate::run::RunConfig;
use crate::store::RequestKey;

/// The stable, unique `custom_id` of a plan's batch: its index and a hash of its cluster ids,
/// so a re-export of the same plan gives the same ids and a different plan cannot match. It is
/// 30 characters of `[a-z0-9-]`, as every provider takes.
pub(crate) fn custom_id(plan: &BatchPlan<'_>, batch: usize) -> String {
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

/// The input of `plan` in the format of `backend` ([`BatchBackend::encode`]), one line per
/// request: what a batch tool of the provider's submits.
///
/// # Errors
/// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
pub fn export(
    plan: &BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    config: &RunConfig,
    backend: &(impl BatchBackend + ?Sized),
) -> Result<String, Error> {
    let input = BatchInput::new(plan, clusters, concept, config, backend)?;
    let mut out = String::new();
    for line in &input.lines {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// One batch's worth of input: some of the plan's requests, within [`BatchLimits`].
#[derive(Debug, Clone)]
pub(crate) struct Shard {
    /// Which requests (indices into the plan's batches) the file holds, in order.
    pub requests: Vec<usize>,
    /// One line per request, as the backend encodes them.
    pub jsonl: String,
    /// The input's key ([`RequestKey::of_batch_input`]): how a journal finds its batch again.
    pub key: RequestKey,
}

/// Every request of a plan as batch input lines, and the batches they go in.
#[derive(Debug, Clone)]
pub struct BatchInput {
    pub(super) requests: Vec<ChatRequest>,
    pub(super) custom_ids: Vec<String>,
    pub(super) lines: Vec<String>,
}

impl BatchInput {
    /// The input of `plan`: each batch's request as the runner would render it with
    /// `config.request`, encoded by `backend`.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] when `plan` was not made from `clusters`.
    pub fn new(
        plan: &BatchPlan<'_>,
        clusters: &[Cluster],
        concept: &str,
        config: &RunConfig,
        backend: &(impl BatchBackend + ?Sized),
    ) -> Result<Self, Error> {
        let mut input = Self::unencoded(plan, clusters, concept, config)?;
        input.lines = input
            .requests
            .iter()
            .zip(&input.custom_ids)
            .map(|(request, id)| backend.encode(id, request))
            .collect();
        Ok(input)
    }

    /// The requests and their ids, with no lines: enough to read results.
    pub(crate) fn unencoded(
        plan: &BatchPlan<'_>,
        clusters: &[Cluster],
        concept: &str,
        config: &RunConfig,
    ) -> Result<Self, Error> {
        let requests = render_requests(plan, clusters, concept, &config.request)?;
        let custom_ids: Vec<String> = (0..requests.len()).map(|i| custom_id(plan, i)).collect();
        Ok(Self {
            requests,
            custom_ids,
            lines: Vec::new(),
        })
    }

    /// Requests (one per planned batch).
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the plan has no batch.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The `custom_id` of each request, in plan order.
    pub fn custom_ids(&self) -> &[String] {
        &self.custom_ids
    }

    /// The requests, in plan order, as the runner renders them.
    pub fn requests(&self) -> &[ChatRequest] {
        &self.requests
    }

    /// The batches that hold the requests `indices` (in that order), each within `limits`.
    ///
    /// # Errors
    /// [`Error::Format`] for an index out of range, or one request larger than a whole batch.
    pub(crate) fn shards(
        &self,
        indices: &[usize],
        limits: BatchLimits,
    ) -> Result<Vec<Shard>, Error> {
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
            if bytes > limits.max_bytes {
                return Err(FormatError::RequestTooLarge {
                    index: i,
                    custom_id: self.custom_ids.get(i).cloned().unwrap_or_default(),
                    bytes,
                    limit: limits.max_bytes,
                }
                .into());
            }
            if requests.len() >= limits.max_requests || jsonl.len() + bytes > limits.max_bytes {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Batcher;

    fn input() -> BatchInput {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/data/clusters.json"
        ))
        .unwrap();
        let clusters: Vec<Cluster> = serde_json::from_str(&text).unwrap();
        let plan = Batcher::default().plan(&clusters).unwrap();
        let mut input =
            BatchInput::unencoded(&plan, &clusters, "espresso", &RunConfig::default()).unwrap();
        input.lines = input
            .requests
            .iter()
            .zip(&input.custom_ids)
            .map(|(r, id)| format!("{{\"custom_id\":\"{id}\",\"text\":{:?}}}", r.user_text()))
            .collect();
        input
    }

    #[test]
    fn shards_hold_every_request_once_in_order_within_both_limits() {
        let input = input();
        let all: Vec<usize> = (0..input.len()).collect();
        let whole = input.shards(&all, BatchLimits::OPENAI).unwrap();
        assert_eq!(whole.len(), 1);
        for limits in [
            BatchLimits::new(50_000, whole[0].jsonl.len() / 3),
            BatchLimits::new(2, usize::MAX),
        ] {
            let shards = input.shards(&all, limits).unwrap();
            assert!(shards.len() >= 3, "{limits:?}");
            for s in &shards {
                assert!(
                    s.jsonl.len() <= limits.max_bytes && s.requests.len() <= limits.max_requests
                );
                assert_eq!(s.key, RequestKey::of_batch_input(s.jsonl.as_bytes()));
            }
            let flat: Vec<usize> = shards.iter().flat_map(|s| s.requests.clone()).collect();
            assert_eq!(flat, all);
        }
    }

    #[test]
    fn a_request_larger_than_a_whole_batch_or_out_of_range_is_an_error_that_says_which() {
        let input = input();
        let err = input.shards(&[0], BatchLimits::new(10, 100)).unwrap_err();
        assert!(err.to_string().contains("more than a whole batch"), "{err}");
        let err = input
            .shards(&[input.len()], BatchLimits::OPENAI)
            .unwrap_err();
        assert!(
            matches!(err, Error::Format(FormatError::NoSuchRequest { .. })),
            "{err}"
        );
    }
}

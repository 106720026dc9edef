//! Submitting batches, each input once: recorded in the journal as pending before it is
//! created, looked for after a lost answer, and attached to when it was submitted before.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use super::event::BatchEvent;
use super::input::{BatchInput, Shard};
use super::job::SubmittedBatch;
use super::runner::BatchRunner;
use crate::backend::{BatchBackend, BatchInfo};
use crate::error::{Error, FormatError};
use crate::store::BatchRecord;

/// How many pages of the account's batches to look through for a lost one.
const LIST_PAGES: usize = 10;
/// How much earlier than the pending record a provider's clock may date the batch.
const CLOCK_SKEW_SECS: u64 = 300;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<B: BatchBackend> BatchRunner<B> {
    /// The account's batches that may be `shard`'s, created after `sent_at` (less a clock
    /// skew) and not in `known`: the one with its key when the provider keeps keys, else
    /// those of its request count.
    async fn find_lost(
        &self,
        shard: &Shard,
        sent_at: Option<u64>,
        known: &HashSet<String>,
    ) -> Result<Vec<BatchInfo>, Error> {
        let key = shard.key.to_string();
        let since = sent_at.map_or(0, |t| t.saturating_sub(CLOCK_SKEW_SECS));
        let mut after: Option<String> = None;
        let mut candidates = Vec::new();
        for _ in 0..LIST_PAGES {
            let page = self
                .with_retries("list batches", || self.backend.list(after.as_deref()))
                .await?;
            let mut older = false;
            for batch in &page.batches {
                if batch.created_at.is_some_and(|t| t < since) {
                    older = true;
                    continue;
                }
                if known.contains(&batch.id) {
                    continue;
                }
                match &batch.key {
                    Some(k) if *k == key => return Ok(vec![batch.clone()]),
                    Some(_) => {}
                    None => {
                        if usize::try_from(batch.request_counts.total)
                            .is_ok_and(|n| n == shard.requests.len())
                        {
                            candidates.push(batch.clone());
                        }
                    }
                }
            }
            match (page.has_more && !older, page.batches.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(candidates)
    }

    /// Creates `shard`'s batch; after a create that failed in a way that may have succeeded
    /// (a lost answer), looks for it before trying again: never pay for an input twice.
    async fn create_once(
        &self,
        shard: &Shard,
        sent_at: u64,
        known: &HashSet<String>,
    ) -> Result<(BatchInfo, bool), Error> {
        let key = shard.key.to_string();
        self.retrying("create batch", |attempt| {
            let key = &key;
            async move {
                if attempt > 0 {
                    if let Some(found) = self.resolve_lost(shard, Some(sent_at), known).await? {
                        return Ok(Ok((found, true)));
                    }
                }
                Ok(self
                    .backend
                    .create(&shard.jsonl, key)
                    .await
                    .map(|batch| (batch, false)))
            }
        })
        .await
    }

    /// The batch a lost create made, if the account has exactly one that fits; none if it has
    /// none.
    ///
    /// # Errors
    /// [`Error::UnsureBatch`] when several fit.
    async fn resolve_lost(
        &self,
        shard: &Shard,
        sent_at: Option<u64>,
        known: &HashSet<String>,
    ) -> Result<Option<BatchInfo>, Error> {
        let mut found = self.find_lost(shard, sent_at, known).await?;
        if found.len() > 1 {
            return Err(Error::UnsureBatch {
                requests: shard.requests.len(),
                candidates: found.into_iter().map(|b| b.id).collect(),
            });
        }
        Ok(found.pop())
    }

    fn record(&self, shard: &Shard, record: &BatchRecord) -> Result<(), Error> {
        if let Some(store) = self.store.as_deref() {
            store.put_batch(&shard.key, record)?;
        }
        Ok(())
    }

    /// Submits the requests `requests` (indices into `input`, in that order) in as few batches
    /// as the client's [`BatchLimits`](crate::backend::BatchLimits) allow. With a store
    /// ([`BatchRunner::with_store`]), each batch's input is looked up first (attached to when
    /// found: never submitted twice); it is recorded as pending before its batch is created and
    /// again once the batch exists, and a pending one is looked for among the account's batches
    /// (created since, with its key or its request count) before it is created again.
    ///
    /// # Errors
    /// [`Error::Format`] for an index out of range or one request larger than a whole batch;
    /// [`Error::BatchApi`] when a call fails for good; [`Error::Store`] when the store cannot
    /// be read or written (before the batch it concerns is created); [`Error::UnsureBatch`]
    /// when a pending batch matches several of the account's.
    pub async fn submit(
        &self,
        input: &BatchInput,
        requests: &[usize],
    ) -> Result<Vec<SubmittedBatch>, Error> {
        let shards = input.shards(requests, self.limits)?;
        let mut submitted: Vec<SubmittedBatch> = Vec::with_capacity(shards.len());
        let mut known: HashSet<String> = HashSet::new();
        for shard in &shards {
            let record = match self.store.as_deref() {
                Some(store) => store.get_batch(&shard.key)?,
                None => None,
            };
            let found = match &record {
                Some(BatchRecord {
                    batch_id: Some(id), ..
                }) => Some(
                    self.with_retries("retrieve batch", || self.backend.get(id))
                        .await?,
                ),
                Some(pending) => self.resolve_lost(shard, pending.sent_at, &known).await?,
                None => None,
            };
            let (batch, attached) = if let Some(batch) = found {
                (batch, true)
            } else {
                let sent_at = unix_now();
                self.record(
                    shard,
                    &BatchRecord {
                        batch_id: None,
                        sent_at: Some(sent_at),
                        requests: shard.requests.len(),
                    },
                )?;
                self.create_once(shard, sent_at, &known).await?
            };
            self.record(
                shard,
                &BatchRecord {
                    batch_id: Some(batch.id.clone()),
                    sent_at: None,
                    requests: shard.requests.len(),
                },
            )?;
            self.emit(&if attached {
                BatchEvent::Attached {
                    batch_id: batch.id.clone(),
                    status: batch.status,
                }
            } else {
                BatchEvent::Submitted {
                    batch_id: batch.id.clone(),
                    requests: shard.requests.len(),
                    bytes: shard.jsonl.len(),
                }
            });
            known.insert(batch.id.clone());
            submitted.push(SubmittedBatch {
                batch_id: batch.id,
                requests: shard.requests.clone(),
                attached,
            });
        }
        Ok(submitted)
    }

    /// Attaches to batches by id (as printed by an earlier run). Each batch's requests are
    /// read from its input when the provider keeps it ([`BatchBackend::custom_ids`]), else
    /// from its results once it ends, so any batch made from this `input` (first round or
    /// later) is recognised.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a call fails for good; [`Error::Format`] for a batch that holds
    /// a request that is not in `input`.
    pub async fn attach(
        &self,
        input: &BatchInput,
        batch_ids: &[String],
    ) -> Result<Vec<SubmittedBatch>, Error> {
        let index: HashMap<&str, usize> = input
            .custom_ids()
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut attached = Vec::with_capacity(batch_ids.len());
        for id in batch_ids {
            let batch = self
                .with_retries("retrieve batch", || self.backend.get(id))
                .await?;
            let ids = self
                .with_retries("read batch input", || self.backend.custom_ids(&batch))
                .await?;
            let mut requests = Vec::new();
            for custom_id in ids.unwrap_or_default() {
                let i =
                    index
                        .get(custom_id.as_str())
                        .ok_or_else(|| FormatError::ForeignRequest {
                            batch_id: id.clone(),
                            custom_id: custom_id.clone(),
                        })?;
                requests.push(*i);
            }
            self.emit(&BatchEvent::Attached {
                batch_id: batch.id.clone(),
                status: batch.status,
            });
            attached.push(SubmittedBatch {
                batch_id: batch.id,
                requests,
                attached: true,
            });
        }
        Ok(attached)
    }
}

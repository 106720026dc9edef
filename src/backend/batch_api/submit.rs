//! Submitting batches (each input file once, recorded in the journal as it goes) and attaching
//! to batches submitted earlier; the retries every Batch API call shares.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::client::{BatchApiClient, BatchInfo};
use super::event::BatchEvent;
use super::input::{BatchInput, Shard};
use super::job::{SubmittedBatch, batch_error};
use crate::backend::BackendError;
use crate::error::{Error, FormatError};
use crate::store::BatchRecord;
use crate::timer::Timer;

/// The metadata key that ties a batch to its input file's key.
const KEY_FIELD: &str = "dynbatch_key";
/// How many pages of the account's batches to look through for one made from a given file.
const LIST_PAGES: usize = 10;

impl BatchApiClient {
    /// Makes `call` until it succeeds, fails for good, or has failed `max_errors` times in a
    /// row, waiting (the server's `retry-after`, else a growing delay) between tries.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        operation: &str,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut wait = Duration::from_secs(1).min(self.poll.first);
        let mut errors = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() && errors + 1 < self.poll.max_errors => {
                    errors += 1;
                    let retry_in = e.retry_after().unwrap_or(wait).min(self.poll.max);
                    self.emit(&BatchEvent::CallFailed {
                        operation: operation.to_owned(),
                        error: e.to_string(),
                        retry_in,
                    });
                    self.timer.sleep(retry_in).await;
                    wait = self.poll.next(wait.max(Duration::from_millis(1)));
                }
                Err(e) => return Err(batch_error(operation, e)),
            }
        }
    }

    /// A batch of the account made from `input_file_id`, if one of the newest
    /// `LIST_PAGES` pages holds one.
    async fn find_by_file(&self, input_file_id: &str) -> Result<Option<BatchInfo>, Error> {
        let mut after: Option<String> = None;
        for _ in 0..LIST_PAGES {
            let (page, more) = self
                .with_retries("list batches", || self.list(after.as_deref(), 100))
                .await?;
            if let Some(found) = page.iter().find(|b| b.input_file_id == input_file_id) {
                return Ok(Some(found.clone()));
            }
            match (more, page.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(None)
    }

    /// Creates a batch of `file_id`, looking first for one already made from it (a create
    /// whose answer was lost may have succeeded: never pay for a file twice).
    async fn create_once(
        &self,
        file_id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(BatchInfo, bool), Error> {
        let mut tries = 0;
        loop {
            if let Some(found) = self.find_by_file(file_id).await? {
                return Ok((found, true));
            }
            match self.create(file_id, metadata).await {
                Ok(batch) => return Ok((batch, false)),
                Err(e) if e.is_retryable() && tries + 1 < self.poll.max_errors => {
                    tries += 1;
                    let retry_in = e.retry_after().unwrap_or(self.poll.first);
                    self.emit(&BatchEvent::CallFailed {
                        operation: "create batch".into(),
                        error: e.to_string(),
                        retry_in,
                    });
                    self.timer.sleep(retry_in).await;
                }
                Err(e) => return Err(batch_error("create batch", e)),
            }
        }
    }

    /// Submits the files `shards` of `input`, one batch each. With a store
    /// ([`BatchApiClient::with_store`]), each file's
    /// batch is looked up first (attached to when found: never submitted twice), and recorded
    /// as soon as the file is uploaded and again once the batch exists.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a call fails for good; [`Error::Store`] when the store cannot
    /// be read or written (before the batch it concerns is created).
    pub async fn submit(&self, shards: &[Shard]) -> Result<Vec<SubmittedBatch>, Error> {
        let mut submitted = Vec::with_capacity(shards.len());
        for shard in shards {
            let record = match self.store.as_deref() {
                Some(store) => store.get_batch(&shard.key)?,
                None => None,
            };
            let metadata = BTreeMap::from([(KEY_FIELD.to_owned(), shard.key.to_string())]);
            let (batch, attached) = match record {
                Some(BatchRecord {
                    batch_id: Some(id), ..
                }) => {
                    let batch = self
                        .with_retries("retrieve batch", || self.retrieve(&id))
                        .await?;
                    (batch, true)
                }
                Some(BatchRecord {
                    input_file_id,
                    batch_id: None,
                }) => self.create_once(&input_file_id, &metadata).await?,
                None => {
                    let file_id = self
                        .with_retries("upload", || {
                            self.upload("dynbatch.jsonl", shard.jsonl.clone())
                        })
                        .await?;
                    self.emit(&BatchEvent::Uploaded {
                        file_id: file_id.clone(),
                        requests: shard.requests.len(),
                        bytes: shard.jsonl.len(),
                    });
                    if let Some(store) = self.store.as_deref() {
                        store.put_batch(
                            &shard.key,
                            &BatchRecord {
                                input_file_id: file_id.clone(),
                                batch_id: None,
                            },
                        )?;
                    }
                    self.create_once(&file_id, &metadata).await?
                }
            };
            if let Some(store) = self.store.as_deref() {
                store.put_batch(
                    &shard.key,
                    &BatchRecord {
                        input_file_id: batch.input_file_id.clone(),
                        batch_id: Some(batch.id.clone()),
                    },
                )?;
            }
            self.emit(&if attached {
                BatchEvent::Attached {
                    batch_id: batch.id.clone(),
                    status: batch.status,
                }
            } else {
                BatchEvent::Submitted {
                    batch_id: batch.id.clone(),
                    requests: shard.requests.len(),
                }
            });
            submitted.push(SubmittedBatch {
                batch_id: batch.id,
                input_file_id: batch.input_file_id,
                requests: shard.requests.clone(),
                attached,
            });
        }
        Ok(submitted)
    }

    /// Attaches to batches by id (as printed by an earlier run): each batch's requests are
    /// read from its input file, so any batch made from this `input` (first round or later)
    /// is recognised.
    ///
    /// # Errors
    /// [`Error::BatchApi`] when a call fails for good; [`Error::Format`] for a batch whose
    /// input file holds a request that is not in `input`.
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
                .with_retries("retrieve batch", || self.retrieve(id))
                .await?;
            let file = self
                .with_retries("download input file", || {
                    self.download(&batch.input_file_id)
                })
                .await?;
            let mut requests = Vec::new();
            for (n, line) in file
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                #[derive(Deserialize)]
                struct Line {
                    custom_id: String,
                }
                let custom_id = serde_json::from_str::<Line>(line)
                    .map_err(|source| FormatError::NotARequest {
                        batch_id: id.clone(),
                        line: n + 1,
                        source,
                    })?
                    .custom_id;
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
                input_file_id: batch.input_file_id,
                requests,
                attached: true,
            });
        }
        Ok(attached)
    }
}

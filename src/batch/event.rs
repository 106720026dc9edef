//! [`BatchEvent`]: what a [`BatchRunner`](super::BatchRunner) reports while it works.

use std::fmt;
use std::time::Duration;

use crate::backend::{BatchStatus, RequestCounts};

/// What a [`BatchRunner`](super::BatchRunner) is doing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BatchEvent {
    /// A batch was created.
    Submitted {
        /// The batch.
        batch_id: String,
        /// Requests in it.
        requests: usize,
        /// Its input's size.
        bytes: usize,
    },
    /// A batch submitted earlier was found (in the journal, by id, or among the account's
    /// batches after a lost answer).
    Attached {
        /// The batch.
        batch_id: String,
        /// Its state.
        status: BatchStatus,
    },
    /// A batch was polled.
    Polled {
        /// The batch.
        batch_id: String,
        /// Its state.
        status: BatchStatus,
        /// Its request counts.
        counts: RequestCounts,
    },
    /// A call failed in a way worth another try; it is made again after `retry_in`.
    CallFailed {
        /// What was being done.
        operation: String,
        /// The error.
        error: String,
        /// The wait before the next try.
        retry_in: Duration,
    },
    /// A batch's results were read.
    Downloaded {
        /// The batch.
        batch_id: String,
        /// Result lines read.
        lines: usize,
        /// Their size.
        bytes: usize,
    },
    /// Requests left unanswered go into new batches.
    Resubmitting {
        /// How many.
        requests: usize,
        /// Which round of new batches (from 1).
        round: u32,
    },
    /// A batch was cancelled on request.
    Cancelled {
        /// The batch.
        batch_id: String,
    },
}

impl fmt::Display for BatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Submitted {
                batch_id,
                requests,
                bytes,
            } => write!(
                f,
                "submitted {batch_id}: {requests} requests, {bytes} bytes"
            ),
            Self::Attached { batch_id, status } => {
                write!(f, "attached to {batch_id} ({status}), submitted earlier")
            }
            Self::Polled {
                batch_id,
                status,
                counts,
            } => write!(
                f,
                "{batch_id}: {status}, {}/{} done, {} failed",
                counts.completed, counts.total, counts.failed
            ),
            Self::CallFailed {
                operation,
                error,
                retry_in,
            } => write!(
                f,
                "{operation} failed ({error}); again in {:.1} s",
                retry_in.as_secs_f64()
            ),
            Self::Downloaded {
                batch_id,
                lines,
                bytes,
            } => write!(f, "{batch_id}: read {lines} result lines ({bytes} bytes)"),
            Self::Resubmitting { requests, round } => write!(
                f,
                "{requests} requests unanswered: new batches, round {round}"
            ),
            Self::Cancelled { batch_id } => write!(f, "cancelled {batch_id}"),
        }
    }
}

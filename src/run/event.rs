//! [`RunEvent`]: what the runner reports while it runs, and the sink that receives it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::CallError;
use crate::patterns::ClusterPatterns;
use crate::report::{Failure, SplitCause, StopCause};
use crate::report::{LimitKind, LimitSource};

/// Progress, as the runner reports it to [`Runner::on_event`](super::Runner::on_event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEvent {
    /// A request starts (the first call of a planned batch, a split half or a re-ask).
    BatchStarted {
        /// Planned batch index.
        batch: usize,
        /// Clusters in this request.
        clusters: usize,
        /// Estimated prompt tokens of these clusters.
        estimated_tokens: u64,
    },
    /// A transient error (5xx, timeout, connection); the request is sent again after `delay`.
    Retried {
        /// Planned batch index.
        batch: usize,
        /// The attempt that failed (1 = first).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: CallError,
    },
    /// A request used its retries on transient errors; it goes to the back of the queue and is
    /// sent again while the extra-call budget lasts.
    Requeued {
        /// Planned batch index.
        batch: usize,
        /// Calls made for it so far.
        attempts: u32,
        /// The last error.
        error: CallError,
    },
    /// A 429: the request goes back to the queue (no retry, no extra call spent) and all
    /// sending waits for the rate limit.
    RateLimited {
        /// Planned batch index.
        batch: usize,
        /// How long sending now waits before the next request may go.
        wait: Duration,
        /// The 429, with the server's message.
        error: CallError,
    },
    /// A request is ready but the rate limit holds it back (pacing, or a server's
    /// `retry-after`); sending resumes after `wait`.
    Throttled {
        /// The wait before the next request may go.
        wait: Duration,
        /// All the time the rate limit held requests back so far in the run.
        total: Duration,
    },
    /// The runner learnt (or changed) a rate limit it paces by.
    LimitChanged {
        /// Requests or tokens.
        kind: LimitKind,
        /// The limit per minute now used.
        per_minute: u64,
        /// Where it comes from.
        source: LimitSource,
    },
    /// The runner stopped pacing by a limit it had inferred from 429s: requests sent at
    /// that pace kept drawing 429s, so they were not caused by this client's rate (a proxy,
    /// an overloaded pool). Sending goes on unpaced until the evidence says otherwise.
    LimitDropped {
        /// Requests or tokens.
        kind: LimitKind,
        /// Why, in words.
        reason: String,
    },
    /// The bound on requests in flight changed (adaptive concurrency).
    ConcurrencyChanged {
        /// The bound before.
        from: usize,
        /// The bound now.
        to: usize,
    },
    /// Many transient failures in a row: sending pauses, then one request probes the server.
    CircuitOpened {
        /// Transient failures in a row.
        failures: u32,
        /// The pause before the probe.
        wait: Duration,
    },
    /// A request succeeded after the circuit opened: sending resumes.
    CircuitClosed,
    /// The server refused the output format ([`OutputMode::Auto`](crate::prompt::OutputMode::Auto)):
    /// every request from now on goes in `to`. Once per fallback and run.
    OutputModeChanged {
        /// The mode refused.
        from: crate::prompt::OutputMode,
        /// The mode used from now on.
        to: crate::prompt::OutputMode,
        /// The server's message.
        reason: String,
    },
    /// An account-wide error (bad key, unknown model, no quota) or a rate limit that outlasted
    /// `rate_limit_patience`: nothing more is sent; the clusters not yet answered fail.
    Stopped {
        /// Why, for code.
        cause: StopCause,
        /// Why, for people, with the server's message.
        reason: String,
    },
    /// An unusable answer; the request's clusters go out again in two halves.
    Split {
        /// Planned batch index.
        batch: usize,
        /// Clusters in the request that was split.
        clusters: usize,
        /// Why, for code.
        cause: SplitCause,
        /// Why, for people.
        reason: String,
    },
    /// Clusters an answer left out are asked again, on their own.
    Reasked {
        /// Planned batch index.
        batch: usize,
        /// Clusters asked again.
        clusters: usize,
    },
    /// A request was answered from the journal, without a call.
    Cached {
        /// Planned batch index.
        batch: usize,
        /// Clusters in the request.
        clusters: usize,
    },
    /// A request's clusters got their patterns (already recorded in the journal, if any).
    Succeeded {
        /// Planned batch index.
        batch: usize,
        /// Clusters answered.
        clusters: usize,
        /// Each answered cluster's validated patterns, as they will be in the report.
        results: Vec<ClusterPatterns>,
        /// The answer came from the journal.
        cached: bool,
        /// Prompt tokens, when the backend reports usage.
        prompt_tokens: Option<u64>,
        /// Completion tokens, when the backend reports usage.
        completion_tokens: Option<u64>,
    },
    /// The run ended: every batched cluster succeeded or failed. The last event of a run.
    Finished {
        /// Clusters that succeeded.
        succeeded: usize,
        /// Clusters that failed.
        failed: usize,
    },
    /// Clusters failed for good.
    Failed {
        /// Planned batch index.
        batch: usize,
        /// Clusters failed.
        clusters: usize,
        /// Why, for code (as in each cluster's outcome).
        failure: Failure,
        /// Why, for people, with the server's message.
        reason: String,
    },
}

/// Where events go.
pub(super) type EventSink = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// A run's events, from [`Runner::event_stream`]: results arrive as each request is validated
/// ([`RunEvent::Succeeded`] carries the patterns), and [`RunEvent::Finished`] comes last.
///
/// Read it with [`next`](EventStream::next), which needs no other crate; it is also a
/// [`Stream`](futures::Stream) of the `futures` 0.3 crate, for its combinators.
///
/// [`Runner::event_stream`]: super::Runner::event_stream
#[derive(Debug)]
pub struct EventStream(pub(super) futures::channel::mpsc::UnboundedReceiver<RunEvent>);

impl EventStream {
    /// The next event; `None` once the run has ended and every event was read.
    pub async fn next(&mut self) -> Option<RunEvent> {
        futures::StreamExt::next(&mut self.0).await
    }
}

impl futures::Stream for EventStream {
    type Item = RunEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<RunEvent>> {
        std::pin::Pin::new(&mut self.0).poll_next(cx)
    }
}

//! What happens to a call that came back: an answer (recorded in the journal first, then
//! validated), a 429 (back to the head of the queue, the limiter told), a transient error
//! (back-off, then the back of the queue while the budget lasts), an account-wide error (stop
//! all sending); and how a stopped run fails what is still waiting.

use std::time::{Duration, Instant};

use super::driver::{Acked, Job, Landed, Run};
use super::event::RunEvent;
use super::limiter::Ticket;
use super::retry::{self, Change};
use crate::backend::{
    BackendError, CallError, ChatRequest, ChatResponse, ErrorKind, LlmBackend, RateLimitInfo,
};
use crate::prompt::OutputMode;
use crate::report::{AnswerProblem, Failure, StopCause};
use crate::store::RequestKey;
use crate::timer::Timer;

impl<Backend: LlmBackend, Clock: Timer> Run<'_, '_, '_, Backend, Clock> {
    /// Handles a call that came back.
    pub(super) fn land(&mut self, landed: Landed) {
        let now = self.runner.timer.now();
        let Landed {
            mut job,
            key,
            ticket,
            charged,
            request,
            estimated_tokens,
            result,
        } = landed;
        let error = match result {
            Ok(response) => {
                return self.answered(job, key, &ticket, request, estimated_tokens, response, now);
            }
            Err(error) => error,
        };
        let refused_mode = OutputMode::of(&request.response_format);
        // Not answered: it goes out again as it was rendered (looked up already).
        job.rendered = Some((request, key));
        self.limiter.resolve(&ticket);
        let kind = error.kind();
        match error {
            BackendError::RateLimited {
                retry_after,
                limits,
                message,
            } => self.rate_limited(job, &ticket, charged, (retry_after, limits, message), now),
            BackendError::UnsupportedFormat(message)
                if self.runner.config.request.output == OutputMode::Auto =>
            {
                self.format_refused(job, refused_mode, &message, charged);
            }
            error @ BackendError::ContentFilter(_) => {
                // The server answered: it is up. One cluster's titles trip the filter, not
                // the batch: halves until that cluster is alone, and only it fails.
                self.breaker.on_neutral();
                self.split_or_fail(&job, format!("{kind}: {error}"), AnswerProblem::Filtered);
            }
            error if error.is_account_wide() => self.failed_for_good(&job, &error),
            error if error.is_retryable() => {
                self.transient(job, &error, now);
            }
            error @ BackendError::RequestTooLarge(_) => {
                // The server answered: it is up. Halves fit where the whole did not.
                self.breaker.on_neutral();
                self.too_big(&job, format!("{kind}: {error}"));
            }
            error @ BackendError::ResponseTooLarge { .. } => {
                // The server answered: it is up. Smaller requests get smaller answers.
                self.breaker.on_neutral();
                self.split_or_fail(&job, format!("{kind}: {error}"), AnswerProblem::TooLarge);
            }
            error => self.failed_for_good(&job, &error),
        }
    }

    /// A 429: back to the queue (or held alone, when stray), the limiter told; no retry and
    /// no extra call is spent.
    fn rate_limited(
        &mut self,
        mut job: Job,
        ticket: &Ticket,
        charged: bool,
        (retry_after, limits, message): (Option<Duration>, Option<Box<RateLimitInfo>>, String),
        now: Instant,
    ) {
        let kind = ErrorKind::RateLimited;
        self.tally.counters.rate_limited += 1;
        if charged {
            self.budget.refund();
        }
        let refusal = self.limiter.on_rate_limited(
            now,
            ticket,
            retry_after,
            limits.as_deref(),
            &self.runner.config,
        );
        let wait = refusal.wait.max(refusal.hold);
        tracing::info!(batch = job.batch, ?wait, rate_caused = refusal.rate_caused, %message, "rate limited");
        let error = BackendError::RateLimited {
            retry_after,
            message,
            limits,
        };
        self.emit(&RunEvent::RateLimited {
            batch: job.batch,
            wait,
            error: CallError::from(&error),
        });
        self.limits_changed(refusal.changes);
        if let Some(reason) = refusal.dropped {
            tracing::info!(%reason, "rate limit dropped");
            self.emit(&RunEvent::LimitDropped {
                kind: crate::report::LimitKind::Requests,
                reason,
            });
        }
        if refusal.rate_caused {
            if let Some((from, to)) = self
                .window
                .on_rate_limited(ticket.seq(), self.limiter.sent())
            {
                self.emit(&RunEvent::ConcurrencyChanged { from, to });
            }
        }
        self.breaker.on_neutral();
        job.last_error = Some((kind, format!("{kind}: {error}")));
        if refusal.hold.is_zero() {
            self.queue.push_front(job);
        } else {
            // A stray 429: this request alone waits.
            job.ready_at = Some(super::later(now, refusal.hold));
            job.held_by_429 = true;
            self.delayed.push(job);
        }
    }

    /// A permanent error: the request fails with it; an account-wide one also stops the run.
    fn failed_for_good(&mut self, job: &Job, error: &BackendError) {
        self.breaker.on_neutral();
        let kind = error.kind();
        let failure = Failure::Backend {
            error: kind,
            attempts: job.calls,
        };
        if error.is_account_wide() {
            let reason = format!("{kind}: {error}");
            self.fail(job.batch, &job.members, &reason, &failure);
            self.stop(&reason, &StopCause::AccountWide { error: kind });
            return;
        }
        let tries = if job.calls > 1 {
            format!(" after {} attempts", job.calls)
        } else {
            String::new()
        };
        self.fail(
            job.batch,
            &job.members,
            &format!("{kind}{tries}: {error}"),
            &failure,
        );
    }

    /// An answer: the limiter, the window and the breaker hear of it at once (its slot is
    /// free); the run hears of it once it is in the journal, when there is one. The journal's
    /// writer thread records it off the executor and acknowledges it once durable
    /// ([`Acked`]); a store without a writer thread is written here.
    #[allow(clippy::too_many_arguments)]
    fn answered(
        &mut self,
        job: Job,
        key: Option<RequestKey>,
        ticket: &Ticket,
        request: ChatRequest,
        estimated_tokens: u64,
        response: ChatResponse,
        now: Instant,
    ) {
        self.last_answer = now;
        if !self.output_confirmed {
            self.output_confirmed = true;
            if self.runner.config.request.output == OutputMode::Auto {
                *crate::sync::lock(&self.runner.learnt_output) = Some(self.output);
            }
        }
        let changes = self
            .limiter
            .on_answer(now, ticket, response.rate_limits.as_ref());
        self.limits_changed(changes);
        if let Some((from, to)) = self.window.on_success() {
            self.emit(&RunEvent::ConcurrencyChanged { from, to });
        }
        if let Some(Change::Closed) = self.breaker.on_success() {
            self.emit(&RunEvent::CircuitClosed);
        }
        // Paid for: in the journal before anyone hears of it.
        match (&self.journal, &self.runner.store, key) {
            (Some(writer), _, Some(key)) => {
                let durable = writer.write(key, response.clone());
                self.journaling.push(Box::pin(async move {
                    Acked {
                        job,
                        request,
                        estimated_tokens,
                        response,
                        result: durable.await,
                    }
                }));
            }
            (None, Some(store), Some(key)) => {
                let result = store.put(&key, &response).map_err(|e| e.to_string());
                self.acked(Acked {
                    job,
                    request,
                    estimated_tokens,
                    response,
                    result,
                });
            }
            _ => self.answer(&job, &request, estimated_tokens, &response, false),
        }
    }

    /// An answer the journal has recorded (or failed to): now the run hears of it.
    pub(super) fn acked(&mut self, acked: Acked) {
        let Acked {
            job,
            request,
            estimated_tokens,
            response,
            result,
        } = acked;
        if let Err(e) = result {
            tracing::error!(batch = job.batch, %e, "journal: an answer was not recorded");
            self.tally.warnings.push(format!(
                "batch {}: journal: {e}; this answer would be paid again on a resume",
                job.batch + 1
            ));
        }
        self.answer(&job, &request, estimated_tokens, &response, false);
    }

    /// Under [`OutputMode::Auto`], the server refused the request's output format: every
    /// request from now on goes in the next one (once per run, reported), and this one goes
    /// out again at once in it. Not a failure and no extra call: the run learnt what the server
    /// takes. After the last fallback, a refusal fails the request.
    fn format_refused(&mut self, mut job: Job, refused: OutputMode, message: &str, charged: bool) {
        self.breaker.on_neutral();
        if refused == self.output {
            let Some(next) = self.output.fallback() else {
                self.fail(
                    job.batch,
                    &job.members,
                    &format!(
                        "unsupported_format: the server refused every output format: {message}"
                    ),
                    &Failure::Backend {
                        error: ErrorKind::UnsupportedFormat,
                        attempts: job.calls,
                    },
                );
                return;
            };
            tracing::warn!(from = %refused, to = %next, %message, "output format refused");
            self.emit(&RunEvent::OutputModeChanged {
                from: refused,
                to: next,
                reason: message.to_owned(),
            });
            self.tally.warnings.push(format!(
                "the server refused output mode {refused} ({message}); this run used {next} from then on"
            ));
            self.output = next;
        }
        if charged {
            self.budget.refund();
        }
        // Rendered again in the mode now in force (and looked up again in the journal).
        job.rendered = None;
        self.queue.push_front(job);
    }

    /// A 5xx, a timeout, a lost connection: back off and retry, then go to the back of the
    /// queue while the budget lasts.
    fn transient(&mut self, mut job: Job, error: &BackendError, now: Instant) {
        let config = &self.runner.config;
        if let Some(Change::Opened { failures, wait }) = self.breaker.on_failure(now, config) {
            tracing::warn!(failures, ?wait, "many failures in a row: pausing");
            self.emit(&RunEvent::CircuitOpened { failures, wait });
        }
        let kind = error.kind();
        job.failures += 1;
        job.free = false; // whatever is sent again for it is an extra call
        job.last_error = Some((
            kind,
            format!("{kind} after {} attempts: {error}", job.calls),
        ));
        if let Some(after) = error.retry_after().filter(|a| *a > config.max_retry_after) {
            let reason = format!(
                "{kind}: the server asked to wait {after:?}, more than max_retry_after {:?}: {error}",
                config.max_retry_after
            );
            let failure = Failure::RetryAfterTooLong {
                after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            };
            return self.fail(job.batch, &job.members, &reason, &failure);
        }
        if job.failures <= config.max_retries && self.budget.left() > 0 {
            let delay = error
                .retry_after()
                .unwrap_or_else(|| retry::backoff(config, job.batch as u64, job.failures));
            self.tally.counters.retries += 1;
            tracing::info!(batch = job.batch, attempt = job.calls, ?delay, %error, "retrying");
            self.emit(&RunEvent::Retried {
                batch: job.batch,
                attempt: job.calls,
                delay,
                error: CallError::from(error),
            });
            job.ready_at = Some(super::later(now, delay));
            job.held_by_429 = false;
            self.delayed.push(job);
        } else if self.budget.left() > 0 {
            self.tally.counters.requeued += 1;
            self.emit(&RunEvent::Requeued {
                batch: job.batch,
                attempts: job.calls,
                error: CallError::from(error),
            });
            job.failures = 0;
            job.ready_at = None;
            self.queue.push_back(job);
        } else {
            let reason = job
                .last_error
                .as_ref()
                .map(|(_, text)| text.clone())
                .unwrap_or_default();
            let cap = self.budget.cap();
            let failure = Failure::BudgetExhausted {
                cap,
                last_error: job.last_error.as_ref().map(|(kind, _)| *kind),
            };
            self.fail(
                job.batch,
                &job.members,
                &format!("{reason}; extra-call budget exhausted ({cap} calls)"),
                &failure,
            );
        }
    }

    fn limits_changed(&self, changes: Vec<super::limiter::Change>) {
        for (kind, per_minute, source) in changes {
            tracing::info!(?kind, per_minute, ?source, "rate limit");
            self.emit(&RunEvent::LimitChanged {
                kind,
                per_minute,
                source,
            });
        }
    }

    /// Nothing more is sent; every waiting job fails with `reason`.
    pub(super) fn stop(&mut self, reason: &str, cause: &StopCause) {
        if self.stop.is_none() {
            tracing::warn!(%reason, "stopping: nothing more is sent");
            self.emit(&RunEvent::Stopped {
                cause: cause.clone(),
                reason: reason.to_owned(),
            });
            self.stop = Some((reason.to_owned(), cause.clone()));
        }
        self.fail_waiting(reason, cause);
    }

    /// The rate limit outlasted the patience: stop with the last 429's message.
    pub(super) fn give_up(&mut self, patience: Duration) {
        let last = self
            .queue
            .iter()
            .find_map(|j| j.last_error.as_ref().map(|(_, text)| text.clone()))
            .map(|e| format!("; last: {e}"))
            .unwrap_or_default();
        self.stop(
            &format!(
                "rate_limited: no answer for {patience:?} while waiting for the rate limit (rate_limit_patience){last}"
            ),
            &StopCause::RateLimitPatience,
        );
    }

    pub(super) fn fail_waiting(&mut self, reason: &str, cause: &StopCause) {
        let waiting: Vec<Job> = self.queue.drain(..).chain(self.delayed.drain(..)).collect();
        for job in waiting {
            let reason = match &job.last_error {
                _ if job.calls == 0 => format!("{reason} (not sent: the run stopped)"),
                Some((_, own)) if !reason.contains(own.as_str()) => {
                    format!("{reason} (its last error: {own})")
                }
                _ => reason.to_owned(),
            };
            let failure = Failure::Stopped {
                cause: cause.clone(),
                sent: job.calls > 0,
            };
            self.fail(job.batch, &job.members, &reason, &failure);
        }
    }
}

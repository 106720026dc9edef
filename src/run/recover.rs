//! What the runner does with a request before it is sent and with an answer after: requests
//! too big for the context window or the tokens-per-minute limit are split before any call;
//! unusable answers (cut off, not JSON, refused) split the request in two halves; clusters an
//! answer left out are asked again once.

use super::limiter::Cost;
use crate::backend::{ChatRequest, ChatResponse, FinishReason, LlmBackend};
use crate::model::Cluster;
use crate::patterns::ClusterPatterns;
use crate::report::{LimitKind, RequestRecord};
use crate::response::{self, PatternResponse};
use crate::timer::Timer;

use super::driver::{Job, Run};
use super::event::RunEvent;
use crate::report::{AnswerProblem, Failure, SplitCause};

impl<Backend: LlmBackend, Clock: Timer> Run<'_, '_, '_, Backend, Clock> {
    /// The plan's estimate of a request with these clusters.
    fn estimated_tokens(&self, members: &[usize]) -> u64 {
        u64::from(self.plan.request_overhead_tokens)
            + members
                .iter()
                .map(|&m| u64::from(self.plan.clusters[m].estimated_tokens.unwrap_or(0)))
                .sum::<u64>()
    }

    /// The job with its estimated prompt tokens and `max_tokens`, when it can be sent as it
    /// is; otherwise it is split (or, alone, failed) here, without a call.
    pub(super) fn prepare(&mut self, job: Job) -> Option<(Job, u64, u32)> {
        let settings = &self.runner.config.request;
        let estimated = self.estimated_tokens(&job.members);
        let max_tokens = settings.max_tokens(job.members.len(), &self.plan.strategy);
        let cost = Cost {
            input: estimated,
            output: u64::from(max_tokens),
        };
        let reason = if !settings.fits(estimated, max_tokens) {
            format!(
                "the estimated prompt ({estimated} tokens) plus max_tokens ({max_tokens}) exceeds the context window ({})",
                settings.model_limits.map_or(0, |l| l.context_window)
            )
        } else if let Some((kind, limit)) = self.limiter.too_large(cost) {
            let what = match kind {
                LimitKind::InputTokens => format!("the estimated prompt ({estimated} tokens)"),
                LimitKind::OutputTokens => format!("max_tokens ({max_tokens})"),
                _ => format!(
                    "the estimated prompt ({estimated} tokens) plus max_tokens ({max_tokens})"
                ),
            };
            format!("{what} exceeds the account's {limit} {kind} per minute")
        } else {
            return Some((job, estimated, max_tokens));
        };
        self.too_big(&job, reason);
        None
    }

    /// Handles an answer (any 2xx).
    pub(super) fn answer(
        &mut self,
        job: &Job,
        request: &ChatRequest,
        estimated_tokens: u64,
        response: &ChatResponse,
        cached: bool,
    ) {
        self.tally.records.push(RequestRecord {
            batch: job.batch,
            clusters: job.members.len(),
            estimated_prompt_tokens: estimated_tokens,
            prompt_tokens: response.usage.map(|u| u.prompt_tokens),
            completion_tokens: response.usage.map(|u| u.completion_tokens),
            max_tokens: request.max_tokens,
            cached,
        });
        if cached {
            self.tally
                .served(&job.members, response.usage, &response.model);
        } else {
            self.tally.usage(response.usage, &response.model);
        }
        let (problem, reason) = match unusable(response) {
            Some(unusable) => unusable,
            None => match response::parse(&response.content) {
                Ok(parsed) => return self.accept(job, response, parsed, cached),
                Err(e) => (AnswerProblem::NotJson, e.to_string()),
            },
        };
        // Cut off at max_tokens: keep the clusters it completed, ask again for the rest (once:
        // a cut re-ask is split as before).
        if response.finish_reason == FinishReason::Length
            && self.runner.config.split_and_reask
            && !job.reask
        {
            if let Some(parsed) = response::salvage(&response.content) {
                self.tally.warnings.push(format!(
                    "batch {}: the answer was cut off at max_tokens after {} of {} clusters; those are kept, the rest asked again",
                    job.batch + 1,
                    parsed.clusters.len().min(job.members.len()),
                    job.members.len()
                ));
                return self.accept(job, response, parsed, cached);
            }
        }
        self.split_or_fail(job, reason, problem);
    }

    /// An unusable answer: its clusters go out again in two halves, or fail when alone (or
    /// when splitting is off).
    pub(super) fn split_or_fail(&mut self, job: &Job, reason: String, problem: AnswerProblem) {
        if job.members.len() > 1 && self.runner.config.split_and_reask {
            self.split(job, SplitCause::Unusable { problem }, reason);
        } else {
            self.fail(
                job.batch,
                &job.members,
                &reason,
                &Failure::Unusable { problem },
            );
        }
    }

    /// A request the server found too large to take: split, or failed when alone.
    pub(super) fn too_big(&mut self, job: &Job, reason: String) {
        if job.members.len() > 1 {
            self.split(job, SplitCause::TooBigToSend, reason);
        } else {
            self.fail(job.batch, &job.members, &reason, &Failure::TooBigToSend);
        }
    }

    /// Sends a request's clusters out again in two halves, the first half first.
    fn split(&mut self, job: &Job, cause: SplitCause, reason: String) {
        self.tally.counters.splits += 1;
        tracing::info!(batch = job.batch, clusters = job.members.len(), %reason, "splitting");
        self.emit(&RunEvent::Split {
            batch: job.batch,
            clusters: job.members.len(),
            cause,
            reason,
        });
        let (first, second) = job.members.split_at(job.members.len() / 2);
        // The first half goes first, the second right after. A batch split before its first
        // call hands that call, not an extra one, to its first half.
        let free = job.free && job.calls == 0;
        self.queue
            .push_front(Job::new(job.batch, second.to_vec(), job.reask, false));
        self.queue
            .push_front(Job::new(job.batch, first.to_vec(), job.reask, free));
    }

    fn accept(
        &mut self,
        job: &Job,
        response: &ChatResponse,
        parsed: PatternResponse,
        cached: bool,
    ) {
        let batch = job.batch;
        let members: Vec<&Cluster> = job.members.iter().map(|&m| &self.clusters[m]).collect();
        let strategy = &self.plan.strategy;
        let validated = response::validate(
            parsed,
            &members,
            strategy.patterns_per_cluster,
            strategy.videos_per_cluster,
        );
        for n in &validated.unknown_clusters {
            self.tally.warnings.push(format!(
                "batch {}: the answer names cluster {n}, which the request did not have",
                batch + 1
            ));
        }
        for w in &validated.warnings {
            let id = &self.clusters[job.members[w.position()]].id;
            let text = match *w {
                response::Warning::UngroundedTemplate {
                    position,
                    pattern,
                    shown,
                } => {
                    let template = validated.patterns[position]
                        .as_ref()
                        .and_then(|p| p.get(pattern))
                        .and_then(|p| p.template.as_deref())
                        .unwrap_or_default();
                    format!("template {template:?} matches none of the {shown} titles shown")
                }
                _ => w.to_string(),
            };
            self.tally
                .warnings
                .push(format!("batch {}: cluster {id}: {text}", batch + 1));
        }
        let missing: Vec<usize> = validated
            .missing()
            .into_iter()
            .map(|i| job.members[i])
            .collect();
        let mut answered = 0;
        let mut results = Vec::new();
        for (i, patterns) in validated.patterns.into_iter().enumerate() {
            if let Some(patterns) = patterns {
                let m = job.members[i];
                if self.runner.events.is_some() {
                    results.push(ClusterPatterns {
                        id: self.clusters[m].id.clone(),
                        patterns: patterns.clone(),
                    });
                }
                self.tally.results[m].patterns = Some(patterns);
                answered += 1;
            }
        }
        if answered > 0 {
            self.emit(&RunEvent::Succeeded {
                batch,
                clusters: answered,
                results,
                cached,
                prompt_tokens: response.usage.map(|u| u.prompt_tokens),
                completion_tokens: response.usage.map(|u| u.completion_tokens),
            });
        }
        if missing.is_empty() {
            return;
        }
        if !self.runner.config.split_and_reask {
            let failure = Failure::NotAnswered { asked_again: false };
            self.fail(batch, &missing, "not answered", &failure);
        } else if job.reask {
            let failure = Failure::NotAnswered { asked_again: true };
            self.fail(
                batch,
                &missing,
                "not answered, even when asked again",
                &failure,
            );
        } else {
            self.tally.counters.reasks += 1;
            self.emit(&RunEvent::Reasked {
                batch,
                clusters: missing.len(),
            });
            self.queue.push_front(Job::new(batch, missing, true, false));
        }
    }
}

/// Why a response cannot be used as an answer, before parsing: truncated or refused.
fn unusable(response: &ChatResponse) -> Option<(AnswerProblem, String)> {
    if response.finish_reason == FinishReason::Length {
        return Some((
            AnswerProblem::CutOff,
            "the answer was cut off at max_tokens (finish_reason length)".into(),
        ));
    }
    if let Some(refusal) = &response.refusal {
        return Some((
            AnswerProblem::Refused,
            format!("the model refused: {refusal}"),
        ));
    }
    if response.finish_reason == FinishReason::ContentFilter {
        return Some((
            AnswerProblem::Filtered,
            "the answer was cut by a content filter".into(),
        ));
    }
    None
}

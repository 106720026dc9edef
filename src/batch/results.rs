//! [`BatchResults`]: every request's outcome so far, from the result lines of one or several
//! batches and what the batches' states say of the requests with no line.

use std::collections::HashMap;

use super::input::BatchInput;
use crate::backend::{BatchOutput, LineOutcome};
use crate::store::{RequestKey, RunStore, StoreError};

/// What became of one request.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// The batch as a whole failed, expired or was cancelled with no line for the request.
    Batch { reason: String, retry: bool },
    /// A line of the results.
    Line(LineOutcome),
}

impl Outcome {
    /// Which of two outcomes of one request counts: an answer over a failure, a line over what
    /// a batch's state says.
    fn rank(&self) -> u8 {
        match self {
            Self::Batch { .. } => 0,
            Self::Line(LineOutcome::Answered(_)) => 2,
            Self::Line(_) => 1,
        }
    }

    /// Whether the same request in a new batch may get an answer.
    fn worth_another_batch(&self) -> bool {
        match self {
            Self::Batch { retry, .. } => *retry,
            Self::Line(line) => matches!(line, LineOutcome::Failed { retry: true, .. }),
        }
    }
}

/// Every request's outcome so far, read from the results of one or several batches and the
/// batches' states.
#[derive(Debug, Clone)]
pub struct BatchResults {
    index: HashMap<String, usize>,
    pub(super) outcomes: Vec<Option<Outcome>>,
    pub(super) warnings: Vec<String>,
}

impl BatchResults {
    /// No outcome yet for any request of `input`.
    pub(crate) fn new(input: &BatchInput) -> Self {
        Self {
            index: input
                .custom_ids()
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect(),
            outcomes: vec![None; input.len()],
            warnings: Vec::new(),
        }
    }

    /// Takes in one batch's results (`name` says which in warnings), returning the requests
    /// (indices) it has lines for. Unknown `custom_id`s and ids seen twice become warnings, as
    /// do the lines the backend could not read; a line never replaces a better outcome (an
    /// answer beats an error, whichever batch it came from).
    pub(crate) fn add(&mut self, name: &str, output: BatchOutput) -> Vec<usize> {
        self.warnings.extend(output.warnings);
        let mut seen = vec![false; self.outcomes.len()];
        let mut requests = Vec::new();
        for line in output.lines {
            let Some(&i) = self.index.get(&line.custom_id) else {
                self.warnings
                    .push(format!("{name}: unknown custom_id {:?}", line.custom_id));
                continue;
            };
            if std::mem::replace(&mut seen[i], true) {
                self.warnings.push(format!(
                    "{name}: {} appears again; the better outcome is kept",
                    line.custom_id
                ));
            } else {
                requests.push(i);
            }
            self.offer(i, Outcome::Line(line.outcome));
        }
        requests
    }

    /// Sets what the requests `requests` (indices) end as when no line says: `reason`, and
    /// whether another batch may answer them.
    pub(crate) fn fail_requests(&mut self, requests: &[usize], reason: &str, retry: bool) {
        for &i in requests {
            self.offer(
                i,
                Outcome::Batch {
                    reason: reason.to_owned(),
                    retry,
                },
            );
        }
    }

    fn offer(&mut self, i: usize, outcome: Outcome) {
        if let Some(slot) = self.outcomes.get_mut(i) {
            if slot.as_ref().is_none_or(|old| outcome.rank() >= old.rank()) {
                *slot = Some(outcome);
            }
        }
    }

    /// Requests with an answer.
    pub fn answered(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Some(Outcome::Line(LineOutcome::Answered(_)))))
            .count()
    }

    /// Requests with a result line (an answer or a failure).
    pub fn with_line(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Some(Outcome::Line(_))))
            .count()
    }

    /// Requests (indices) worth another batch or a live call: no line at all, or a failure
    /// another try may mend (expiry, server errors, rate limits). Failures that would fail
    /// again (a bad request, a cancelled batch) are not among them.
    pub fn unanswered(&self) -> Vec<usize> {
        self.outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_ref().is_none_or(Outcome::worth_another_batch))
            .map(|(i, _)| i)
            .collect()
    }

    /// What the results said that is not an outcome: bad lines, unknown or repeated ids.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Records every answer in `store` under its request's key, so a live run of the same plan
    /// with that store sends only the rest. Returns how many were recorded.
    ///
    /// # Errors
    /// The store's.
    pub fn record(&self, input: &BatchInput, store: &dyn RunStore) -> Result<usize, StoreError> {
        let mut recorded = 0;
        for (request, outcome) in input.requests().iter().zip(&self.outcomes) {
            let answer = match outcome.as_ref() {
                Some(Outcome::Line(line)) => match line {
                    LineOutcome::Answered(answer) => Some(answer),
                    LineOutcome::Failed { .. } => None,
                },
                _ => None,
            };
            if let Some(answer) = answer {
                let mut answer = (**answer).clone();
                if answer.model.is_empty() {
                    answer.model.clone_from(&request.model);
                }
                store.put(&RequestKey::of(request), &answer)?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}

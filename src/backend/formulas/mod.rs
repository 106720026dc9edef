//! [`FormulaFinder`]: a backend that finds title formulas without a model. No key, no cost, no
//! network, deterministic: it reads each cluster's titles back out of the prompt and answers
//! with the formulas they share, the cluster's topic as a slot (`[N] [Topic] Hacks That
//! Actually Work`), so that the same formula found in clusters of different topics reads the
//! same and consolidation joins it. `find.rs` says how; `prompt.rs` reads the request and
//! writes the answer.
//!
//! It is a baseline to run on your own data before paying for a model, and what
//! [`MockBackend`](super::mock::MockBackend) answers with (the mock adds scripted faults and
//! recording). It finds formulas that at least two titles of a request share, word for word
//! but for the slots, in one cluster or across the clusters of a batch (so what it finds
//! depends on what is batched together, as a model's answers do); a model also finds
//! formulas in paraphrase, and names them.

use async_trait::async_trait;

use super::{
    BackendError, ChatRequest, ChatResponse, FinishReason, LlmBackend, ResponseFormat, TokenUsage,
};

mod find;
mod prompt;

/// A backend that answers with the title formulas each cluster's titles share. See the
/// module docs.
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use dynbatch::backend::formulas::FormulaFinder;
/// use dynbatch::{Batcher, Cluster, RunConfig, Runner, TokioTimer, Video};
///
/// let topics = ["Sourdough", "Houseplant", "Bike Repair"];
/// let clusters: Vec<Cluster> = topics
///     .iter()
///     .map(|topic| {
///         let mut c = Cluster::new(*topic, vec![
///             Video::new(format!("7 {topic} Hacks That Actually Work"), 5.0),
///             Video::new(format!("Why {topic} Is Overrated"), 3.0),
///             Video::new(format!("12 {topic} Hacks That Actually Work"), 4.0),
///         ]);
///         c.size = 20;
///         c.avg_performance = 4.0;
///         c.thread_sources = vec!["r/a".into(), "r/b".into(), "r/c".into()];
///         c
///     })
///     .collect();
/// let runner = Runner::new(FormulaFinder::new(), TokioTimer);
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// let report = rt.block_on(Batcher::default().discover(&clusters, "hobbies", &runner))?;
/// let found: Vec<(&str, usize)> = report
///     .patterns
///     .iter()
///     .map(|p| (p.template.as_deref().unwrap_or_default(), p.clusters.len()))
///     .collect();
/// // One formula, found in three topics.
/// assert!(found.contains(&("[N] [Topic] Hacks That Actually Work", 3)));
/// // Shown once per cluster, found across the batch.
/// assert!(found.contains(&("Why [Topic] Is Overrated", 3)));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FormulaFinder {
    _private: (),
}

impl FormulaFinder {
    /// The finder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer to `request`, as a model would write it (the request's output format
    /// decides the shape).
    pub fn answer(&self, request: &ChatRequest) -> String {
        answer(request, &[], None)
    }
}

/// The finder's answer to `request`, leaving out the clusters numbered in `missing` and adding
/// one for the number `extra` (for the mock's faults).
pub(crate) fn answer(request: &ChatRequest, missing: &[i64], extra: Option<i64>) -> String {
    let keyed = matches!(
        request.response_format,
        ResponseFormat::JsonSchema { .. } | ResponseFormat::JsonObjectWithSchema { .. }
    );
    prompt::answer(&request.user_text(), missing, extra, keyed, find::formulas)
}

/// Usage as a model would report it: about 4 characters a token.
pub(crate) fn usage(request: &ChatRequest, content: &str) -> TokenUsage {
    let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
    TokenUsage {
        prompt_tokens: (prompt_chars / 4) as u64,
        completion_tokens: (content.len() / 4) as u64,
        ..TokenUsage::default()
    }
}

#[async_trait]
impl LlmBackend for FormulaFinder {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let content = self.answer(request);
        Ok(ChatResponse {
            usage: Some(usage(request, &content)),
            content,
            finish_reason: FinishReason::Stop,
            model: request.model.clone(),
            ..ChatResponse::default()
        })
    }
}

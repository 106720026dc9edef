//! [`TokenEstimator`]: how many prompt tokens one cluster costs, and the design's
//! [`SpecTokenEstimator`].

use std::sync::Arc;

use crate::model::Cluster;
use crate::strategy::StrategySettings;

/// Estimates the prompt tokens one cluster adds to a batch, given the run's strategy (a
/// tokenizer-backed estimator needs its videos per cluster; the design's ignores it).
///
/// The planner sums these per batch and compares the sum with `target_tokens_per_batch`.
pub trait TokenEstimator: Send + Sync {
    /// Estimated prompt tokens of `cluster` under `strategy`.
    fn estimate(&self, cluster: &Cluster, strategy: &StrategySettings) -> u32;

    /// Tokens every request carries whatever its clusters (system prompt, the user prompt's
    /// header and closing lines, the chat format's overhead). A batch's estimate is this plus
    /// its clusters' estimates. Defaults to 0, as in the design, whose per-cluster figure
    /// includes its share of the instructions.
    fn request_overhead(&self, strategy: &StrategySettings) -> u32 {
        let _ = strategy;
        0
    }
}

/// The design's `estimateTokensForCluster`: `200 + 25 × min(size, 8)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecTokenEstimator;

impl SpecTokenEstimator {
    /// Tokens for the per-cluster instructions.
    pub const BASE_TOKENS: u32 = 200;
    /// Tokens per video title.
    pub const TOKENS_PER_VIDEO: u32 = 25;
    /// Most videos counted.
    pub const MAX_VIDEOS: u32 = 8;
}

impl TokenEstimator for SpecTokenEstimator {
    fn estimate(&self, cluster: &Cluster, _strategy: &StrategySettings) -> u32 {
        Self::BASE_TOKENS + Self::TOKENS_PER_VIDEO * cluster.size.min(Self::MAX_VIDEOS)
    }
}

impl<T: TokenEstimator + ?Sized> TokenEstimator for &T {
    fn estimate(&self, cluster: &Cluster, strategy: &StrategySettings) -> u32 {
        (**self).estimate(cluster, strategy)
    }
    fn request_overhead(&self, strategy: &StrategySettings) -> u32 {
        (**self).request_overhead(strategy)
    }
}

impl<T: TokenEstimator + ?Sized> TokenEstimator for Box<T> {
    fn estimate(&self, cluster: &Cluster, strategy: &StrategySettings) -> u32 {
        (**self).estimate(cluster, strategy)
    }
    fn request_overhead(&self, strategy: &StrategySettings) -> u32 {
        (**self).request_overhead(strategy)
    }
}

impl<T: TokenEstimator + ?Sized> TokenEstimator for Arc<T> {
    fn estimate(&self, cluster: &Cluster, strategy: &StrategySettings) -> u32 {
        (**self).estimate(cluster, strategy)
    }
    fn request_overhead(&self, strategy: &StrategySettings) -> u32 {
        (**self).request_overhead(strategy)
    }
}

const _: Option<&dyn TokenEstimator> = None;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Video;

    #[test]
    fn design_formula() {
        let mut c = Cluster::new("c", vec![Video::new("t", 1.0)]);
        let s = StrategySettings::balanced();
        assert_eq!(SpecTokenEstimator.estimate(&c, &s), 225);
        c.size = 8;
        assert_eq!(SpecTokenEstimator.estimate(&c, &s), 400);
        c.size = u32::MAX;
        assert_eq!(SpecTokenEstimator.estimate(&c, &s), 400);
        let boxed: Box<dyn TokenEstimator> = Box::new(SpecTokenEstimator);
        assert_eq!(boxed.estimate(&c, &s), 400);
    }
}

#[cfg(feature = "tiktoken")]
pub use exact::{Encoding, TiktokenEstimator};

#[cfg(feature = "tiktoken")]
mod exact {
    use std::fmt;
    use std::sync::OnceLock;

    use tiktoken_rs::CoreBPE;

    use super::TokenEstimator;
    use crate::backend::{ChatRequest, Role};
    use crate::error::Error;
    use crate::model::Cluster;
    use crate::prompt::{
        BLOCK_SEPARATOR, PromptCluster, RequestSettings, cluster_block, prompt_header, prompt_tail,
        system_prompt,
    };
    use crate::strategy::StrategySettings;

    /// An `OpenAI` tokenizer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum Encoding {
        /// The gpt-4o, gpt-4.1 and o-series models' tokenizer. The default.
        #[default]
        O200kBase,
        /// The gpt-4 and gpt-3.5-turbo models' tokenizer.
        Cl100kBase,
    }

    type Loaded = Result<CoreBPE, String>;

    impl Encoding {
        /// The encoder, built once per process and shared.
        fn bpe(self) -> Result<&'static CoreBPE, Error> {
            static O200K: OnceLock<Loaded> = OnceLock::new();
            static CL100K: OnceLock<Loaded> = OnceLock::new();
            let loaded = match self {
                Self::O200kBase => {
                    O200K.get_or_init(|| tiktoken_rs::o200k_base().map_err(|e| e.to_string()))
                }
                Self::Cl100kBase => {
                    CL100K.get_or_init(|| tiktoken_rs::cl100k_base().map_err(|e| e.to_string()))
                }
            };
            loaded
                .as_ref()
                .map_err(|e| Error::Other(format!("loading the {self:?} tokenizer: {e}").into()))
        }
    }

    /// Tokens the chat format adds per message (before its role and content), and once for
    /// the reply, as `OpenAI` documents for the gpt-4o family.
    pub(super) const TOKENS_PER_MESSAGE: u32 = 3;
    /// Tokens that prime the reply.
    pub(super) const TOKENS_PER_REPLY: u32 = 3;

    /// Exact prompt token counts: each cluster's block is rendered exactly as the request will
    /// show it (the strategy's videos per cluster, sanitised titles) and counted with the
    /// model's tokenizer; [`TokenEstimator::request_overhead`] counts the system prompt, the
    /// user prompt's header and closing lines and the chat format's overhead. A batch's
    /// estimate then equals the token count of the request the runner sends, to the token
    /// (the prompt's pieces are cut where the tokenizer cuts, so their counts add up).
    ///
    /// Exact under two conditions the renderer meets in practice: fewer than 1000 clusters in
    /// a batch and qualities within 0.0..=9.99 (each such number is a single token).
    ///
    /// ```
    /// use dynbatch::{Batcher, BatchingConfig};
    /// use dynbatch::{Encoding, TiktokenEstimator};
    /// let estimator = TiktokenEstimator::new(Encoding::O200kBase, "home espresso")?;
    /// let batcher = Batcher::new(BatchingConfig::default()).with_estimator(estimator);
    /// # Ok::<(), dynbatch::Error>(())
    /// ```
    #[derive(Clone)]
    pub struct TiktokenEstimator {
        bpe: &'static CoreBPE,
        encoding: Encoding,
        concept: String,
        max_text_chars: usize,
    }

    impl fmt::Debug for TiktokenEstimator {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TiktokenEstimator")
                .field("encoding", &self.encoding)
                .field("concept", &self.concept)
                .field("max_text_chars", &self.max_text_chars)
                .finish_non_exhaustive()
        }
    }

    impl TiktokenEstimator {
        /// An estimator for requests about `concept`, rendered with the default
        /// [`RequestSettings`].
        ///
        /// # Errors
        /// [`Error::Other`] if the tokenizer's bundled vocabulary cannot be loaded.
        pub fn new(encoding: Encoding, concept: impl Into<String>) -> Result<Self, Error> {
            Ok(Self {
                bpe: encoding.bpe()?,
                encoding,
                concept: concept.into(),
                max_text_chars: RequestSettings::default().max_text_chars,
            })
        }

        /// Renders as `settings` does (its text length cap).
        #[must_use]
        pub fn with_settings(mut self, settings: &RequestSettings) -> Self {
            self.max_text_chars = settings.max_text_chars;
            self
        }

        /// Tokens of a text.
        pub fn count(&self, text: &str) -> u32 {
            u32::try_from(self.bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX)
        }

        /// Prompt tokens of a whole chat request: per message 3 + its role + its content, plus
        /// 3 for the reply.
        pub fn count_request(&self, request: &ChatRequest) -> u64 {
            let messages: u64 = request
                .messages
                .iter()
                .map(|m| {
                    u64::from(TOKENS_PER_MESSAGE)
                        + u64::from(self.count(role_name(m.role)))
                        + u64::from(self.count(&m.content))
                })
                .sum();
            messages + u64::from(TOKENS_PER_REPLY)
        }
    }

    fn role_name(role: Role) -> &'static str {
        match role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    impl TokenEstimator for TiktokenEstimator {
        fn estimate(&self, cluster: &Cluster, strategy: &StrategySettings) -> u32 {
            // Any cluster number and quality below 1000 is one token: render with 1 and 100%.
            let shown = PromptCluster {
                cluster,
                quality: 1.0,
            };
            let block = cluster_block(1, &shown, strategy, self.max_text_chars);
            self.count(&block)
                .saturating_add(self.count(BLOCK_SEPARATOR))
        }

        fn request_overhead(&self, strategy: &StrategySettings) -> u32 {
            let chat = 2 * TOKENS_PER_MESSAGE
                + TOKENS_PER_REPLY
                + self.count(role_name(Role::System))
                + self.count(role_name(Role::User));
            let text = self.count(&system_prompt(strategy))
                + self.count(&prompt_header(
                    &self.concept,
                    strategy,
                    1,
                    self.max_text_chars,
                ))
                + self.count(&prompt_tail(strategy));
            // n clusters bring n - 1 separators; each cluster's estimate includes one.
            (chat + text).saturating_sub(self.count(BLOCK_SEPARATOR))
        }
    }
}

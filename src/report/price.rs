//! Prices per model, and which prices a report's cost is at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::TokenUsage;

/// Price of a model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million completion tokens.
    pub output_per_million: f64,
    /// Per million prompt tokens written to the provider's cache; the input price when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_million: Option<f64>,
    /// Per million prompt tokens read from the cache; the input price when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_million: Option<f64>,
}

impl ModelPrice {
    /// A price of `input` and `output` dollars per million tokens, cache tokens at the input
    /// price.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input_per_million: input,
            output_per_million: output,
            cache_write_per_million: None,
            cache_read_per_million: None,
        }
    }

    /// The same, with cache writes and reads at `write` and `read` dollars per million.
    #[must_use]
    pub fn with_cache(mut self, write: f64, read: f64) -> Self {
        self.cache_write_per_million = Some(write);
        self.cache_read_per_million = Some(read);
        self
    }
}

/// Prices per model name, for cost estimates. `Default` holds the list prices (standard
/// tier; check them against your contract) of `OpenAI`'s gpt-4o and gpt-4.1 families and of
/// Anthropic's Claude models, with Claude's prompt-cache writes (5-minute) and reads.
///
/// A model is priced by its exact name, else by the longest name in the table it starts with
/// followed by `-`: `claude-haiku-4-5-20251001` and `gpt-4o-mini-2024-07-18`, as servers
/// report them, find `claude-haiku-4-5` and `gpt-4o-mini`.
///
/// ```
/// use dynbatch::report::{ModelPrice, PriceTable};
///
/// let prices = PriceTable::default().with("my-model", ModelPrice::new(0.5, 1.5));
/// assert_eq!(prices.price("my-model-2026-01").map(|p| p.output_per_million), Some(1.5));
/// assert!(PriceTable::empty().price("gpt-4o").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(BTreeMap<String, ModelPrice>);

impl Default for PriceTable {
    fn default() -> Self {
        let price = ModelPrice::new;
        let claude = |i: f64, o: f64| ModelPrice::new(i, o).with_cache(i * 1.25, i * 0.1);
        Self(BTreeMap::from(
            [
                ("gpt-4o-mini", price(0.15, 0.60)),
                ("gpt-4o", price(2.50, 10.00)),
                ("gpt-4.1", price(2.00, 8.00)),
                ("gpt-4.1-mini", price(0.40, 1.60)),
                ("gpt-4.1-nano", price(0.10, 0.40)),
                ("claude-opus-4-5", claude(5.00, 25.00)),
                ("claude-opus-4-1", claude(15.00, 75.00)),
                ("claude-opus-4", claude(15.00, 75.00)),
                ("claude-sonnet-4-5", claude(3.00, 15.00)),
                ("claude-sonnet-4", claude(3.00, 15.00)),
                ("claude-3-7-sonnet", claude(3.00, 15.00)),
                ("claude-haiku-4-5", claude(1.00, 5.00)),
                ("claude-3-5-haiku", claude(0.80, 4.00)),
                ("claude-3-haiku", claude(0.25, 1.25)),
            ]
            .map(|(name, p)| (name.to_owned(), p)),
        ))
    }
}

/// Which prices a report's cost is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PriceTier {
    /// Live calls at list prices.
    #[default]
    Standard,
    /// The batch APIs' prices: list prices less
    /// [`BATCH_DISCOUNT`](crate::batch::BATCH_DISCOUNT).
    Batch,
}

impl PriceTable {
    /// A table with no prices: every cost is unknown.
    pub fn empty() -> Self {
        Self(BTreeMap::new())
    }

    /// The table with `model` at `price` (replacing its price if it had one).
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.0.insert(model.into(), price);
        self
    }

    /// The models priced, with their prices, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.0.iter().map(|(name, price)| (name.as_str(), price))
    }

    /// The same table with every price less `discount` (a fraction: 0.5 halves them), e.g.
    /// the batch APIs' prices (cache prices too: the discounts stack).
    #[must_use]
    pub fn at_discount(&self, discount: f64) -> Self {
        let keep = (1.0 - discount).clamp(0.0, 1.0);
        Self(
            self.0
                .iter()
                .map(|(model, p)| {
                    let price = ModelPrice {
                        input_per_million: p.input_per_million * keep,
                        output_per_million: p.output_per_million * keep,
                        cache_write_per_million: p.cache_write_per_million.map(|x| x * keep),
                        cache_read_per_million: p.cache_read_per_million.map(|x| x * keep),
                    };
                    (model.clone(), price)
                })
                .collect(),
        )
    }

    /// The price of `model`: its own, else that of the longest name in the table it starts
    /// with followed by `-` (a dated snapshot of a priced model).
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.0.get(model).or_else(|| {
            self.0
                .iter()
                .filter(|(name, _)| {
                    model
                        .strip_prefix(name.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
                })
                .max_by_key(|(name, _)| name.len())
                .map(|(_, p)| p)
        })
    }

    /// Cost of `usage` on `model`; `None` for a model not in the table. Cache writes and
    /// reads (part of the prompt tokens) are at their own prices.
    pub fn cost(&self, model: &str, usage: &TokenUsage) -> Option<f64> {
        let p = self.price(model)?;
        let cached = usage.cache_write_tokens + usage.cache_read_tokens;
        #[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
        Some(
            (usage.prompt_tokens.saturating_sub(cached) as f64 * p.input_per_million
                + usage.cache_write_tokens as f64
                    * p.cache_write_per_million.unwrap_or(p.input_per_million)
                + usage.cache_read_tokens as f64
                    * p.cache_read_per_million.unwrap_or(p.input_per_million)
                + usage.completion_tokens as f64 * p.output_per_million)
                / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..TokenUsage::default()
        }
    }

    #[test]
    fn prices() {
        let t = PriceTable::default();
        let c = t.cost("gpt-4o-mini", &usage(1_000_000, 1_000_000)).unwrap();
        assert!((c - 0.75).abs() < 1e-9);
        assert_eq!(t.cost("unknown", &usage(1, 1)), None);
    }

    #[test]
    fn dated_snapshots_find_their_family_and_not_a_longer_name() {
        let t = PriceTable::default();
        let haiku = t.price("claude-haiku-4-5-20251001").unwrap();
        assert!((haiku.input_per_million - 1.0).abs() < 1e-12);
        let mini = t.price("gpt-4o-mini-2024-07-18").unwrap();
        assert!((mini.input_per_million - 0.15).abs() < 1e-12);
        let four_o = t.price("gpt-4o-2024-08-06").unwrap();
        assert!((four_o.input_per_million - 2.5).abs() < 1e-12);
        // A name that only starts like one is not a snapshot of it.
        assert!(t.price("gpt-4omni").is_none());
        assert!(t.price("claude-haiku-4").is_none());
    }

    #[test]
    fn claude_cache_tokens_are_priced_apart_and_the_batch_tier_halves_everything() {
        let t = PriceTable::default();
        let u = TokenUsage {
            prompt_tokens: 1_000_000,
            completion_tokens: 100_000,
            cache_write_tokens: 200_000,
            cache_read_tokens: 300_000,
        };
        // Sonnet 4.5: $3 in, $15 out, $3.75 cache write, $0.30 cache read.
        let live = t.cost("claude-sonnet-4-5", &u).unwrap();
        let expected = 0.5 * 3.0 + 0.2 * 3.75 + 0.3 * 0.30 + 0.1 * 15.0;
        assert!((live - expected).abs() < 1e-9, "{live} vs {expected}");
        let batch = t.at_discount(0.5).cost("claude-sonnet-4-5", &u).unwrap();
        assert!((batch - expected / 2.0).abs() < 1e-9);
    }
}

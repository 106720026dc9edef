//! Prices per model, and which prices a report's cost is at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Price of a model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million completion tokens.
    pub output_per_million: f64,
}

/// Prices per model name, for cost estimates. `Default` holds `OpenAI`'s list prices for the
/// gpt-4o and gpt-4.1 families (standard tier; check them against your contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(pub BTreeMap<String, ModelPrice>);

impl Default for PriceTable {
    fn default() -> Self {
        let price = |i, o| ModelPrice {
            input_per_million: i,
            output_per_million: o,
        };
        Self(BTreeMap::from([
            ("gpt-4o-mini".to_owned(), price(0.15, 0.60)),
            ("gpt-4o".to_owned(), price(2.50, 10.00)),
            ("gpt-4.1".to_owned(), price(2.00, 8.00)),
            ("gpt-4.1-mini".to_owned(), price(0.40, 1.60)),
            ("gpt-4.1-nano".to_owned(), price(0.10, 0.40)),
        ]))
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
    /// The Batch API's prices: list prices less
    /// [`BATCH_DISCOUNT`](crate::backend::batch_api::BATCH_DISCOUNT) (feature `openai`).
    Batch,
}

impl PriceTable {
    /// The same table with every price less `discount` (a fraction: 0.5 halves them), e.g.
    /// the Batch API's prices.
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
                    };
                    (model.clone(), price)
                })
                .collect(),
        )
    }

    /// Cost of the tokens on `model`; `None` for a model not in the table.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        let p = self.0.get(model)?;
        #[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
        Some(
            (prompt_tokens as f64 * p.input_per_million
                + completion_tokens as f64 * p.output_per_million)
                / 1e6,
        )
    }
}

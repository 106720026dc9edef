//! How the model is asked to shape its answer: the [`OutputMode`]s, the fallbacks of
//! [`OutputMode::Auto`], and the JSON schemas that servers enforce while decoding.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::ResponseFormat;
use crate::response::MAX_EXAMPLES;
use crate::strategy::PatternRange;

/// How the model is asked to format its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutputMode {
    /// The default: [`StrictSchema`](Self::StrictSchema) first; when the server refuses it (an
    /// error that names `response_format` or the schema),
    /// [`JsonObjectWithSchema`](Self::JsonObjectWithSchema), then
    /// [`JsonObject`](Self::JsonObject), then [`Text`](Self::Text). Learnt once per run: every later request uses what the server
    /// took, and the run reports it.
    #[default]
    Auto,
    /// `response_format: json_object`, as the design does: the shape is only asked for.
    JsonObject,
    /// `response_format: json_schema`, strict, with the batch's own schema
    /// ([`batch_schema`]): an object whose keys are exactly the batch's cluster numbers
    /// (`"c1"`, `"c2"`, …), each with the strategy's number of patterns. `OpenAI`'s structured
    /// outputs, vLLM, llama.cpp's server and Ollama enforce it while decoding, so a complete
    /// answer is the only one possible.
    StrictSchema,
    /// `response_format: {"type": "json_object", "schema": ...}` with the batch's schema and
    /// length caps on every text: how llama-cpp-python (which refuses `json_schema`) and
    /// llama.cpp servers constrain output to a grammar.
    JsonObjectWithSchema,
    /// No `response_format` at all, for servers that refuse every one: the prompt asks for the
    /// JSON, and the answer may wrap it in a fenced block or in prose.
    Text,
}

impl OutputMode {
    /// What [`Auto`](Self::Auto) tries, in order.
    const FALLBACKS: [Self; 4] = [
        Self::StrictSchema,
        Self::JsonObjectWithSchema,
        Self::JsonObject,
        Self::Text,
    ];

    /// The mode a request is rendered in: [`Auto`](Self::Auto) is its first fallback.
    #[must_use]
    pub fn resolved(self) -> Self {
        match self {
            Self::Auto => Self::FALLBACKS[0],
            other => other,
        }
    }

    /// The modes [`Auto`](Self::Auto) tries, in the order it tries them: from
    /// [`StrictSchema`](Self::StrictSchema) down to [`Text`](Self::Text).
    pub fn fallbacks() -> impl Iterator<Item = Self> {
        Self::FALLBACKS.into_iter()
    }

    /// What to try when the server refuses this mode under [`Auto`](Self::Auto); `None` after
    /// [`Text`](Self::Text).
    pub fn fallback(self) -> Option<Self> {
        let at = Self::FALLBACKS.iter().position(|m| *m == self.resolved())?;
        Self::FALLBACKS.get(at + 1).copied()
    }

    /// The mode a request was rendered in, from its `response_format`.
    pub fn of(format: &ResponseFormat) -> Self {
        match format {
            ResponseFormat::JsonObject => Self::JsonObject,
            ResponseFormat::JsonObjectWithSchema { .. } => Self::JsonObjectWithSchema,
            ResponseFormat::JsonSchema { .. } => Self::StrictSchema,
            ResponseFormat::Text => Self::Text,
        }
    }

    /// The name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::JsonObject => "json_object",
            Self::StrictSchema => "strict_schema",
            Self::JsonObjectWithSchema => "json_object_with_schema",
            Self::Text => "text",
        }
    }

    /// The `response_format` of a batch of `clusters` clusters with `range` patterns each.
    pub fn format(self, clusters: usize, range: PatternRange) -> ResponseFormat {
        match self.resolved() {
            Self::JsonObject => ResponseFormat::JsonObject,
            Self::JsonObjectWithSchema => ResponseFormat::JsonObjectWithSchema {
                schema: batch_schema(clusters, range, true),
            },
            Self::Text => ResponseFormat::Text,
            _ => ResponseFormat::JsonSchema {
                name: "title_patterns".into(),
                schema: batch_schema(clusters, range, false),
                strict: true,
            },
        }
    }
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest pattern name, in characters, under a grammar.
const NAME_CHARS: usize = 40;
/// Longest template, in characters, under a grammar.
const TEMPLATE_CHARS: usize = 80;
/// Longest example title, in characters, under a grammar: `YouTube`'s limit on a title.
const EXAMPLE_CHARS: usize = 100;
/// Longest rationale, in characters, under a grammar.
const RATIONALE_CHARS: usize = 80;
/// Most examples per pattern, under a grammar.
const GRAMMAR_EXAMPLES: usize = 1;

/// The schema of one batch's answer: `{"c1": [pattern, ...], "c2": [...], ...}`, one key per
/// cluster of the batch (its number in the prompt's `CLUSTER n` header), every key required and
/// no other allowed, each holding `range.min..=range.max` patterns of four required fields.
///
/// It keeps to what `OpenAI`'s strict mode accepts (every property required,
/// `additionalProperties: false`, `minItems`/`maxItems`) and what llama.cpp's and vLLM's
/// grammar converters read. With `length_caps` (for grammars: the small local models they
/// serve write until a limit stops them), every text gets a `maxLength` (name 40, template 80,
/// example 100, rationale 80 characters), a pattern one example, and a cluster the strategy's
/// least number of patterns, so that a complete answer fits the design's 300 tokens per
/// cluster. `OpenAI`'s strict mode does not take `maxLength`, so it is left out there.
pub fn batch_schema(clusters: usize, range: PatternRange, length_caps: bool) -> Value {
    let text = |cap: usize| {
        if length_caps {
            json!({"type": "string", "minLength": 1, "maxLength": cap})
        } else {
            json!({"type": "string"})
        }
    };
    let examples = if length_caps {
        GRAMMAR_EXAMPLES
    } else {
        MAX_EXAMPLES
    };
    let pattern = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["pattern", "template", "examples", "rationale"],
        "properties": {
            "pattern": text(NAME_CHARS),
            "template": text(TEMPLATE_CHARS),
            "examples": {"type": "array", "items": text(EXAMPLE_CHARS),
                         "minItems": 1, "maxItems": examples},
            "rationale": text(RATIONALE_CHARS),
        }
    });
    let min = range.min.min(range.max);
    let max = if length_caps { min } else { range.max };
    let patterns = json!({
        "type": "array",
        "items": pattern,
        "minItems": min,
        "maxItems": max,
    });
    let keys: Vec<String> = (1..=clusters).map(|n| format!("c{n}")).collect();
    let properties: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.clone(), patterns.clone())).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": keys,
        "properties": properties,
    })
}

/// The schema of the design's answer shape, `{"clusters": [{"cluster": n, "patterns": [...]}]}`
/// every field required and no others allowed. Not
/// tied to a batch: [`batch_schema`] is what the schema modes send.
pub fn response_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["clusters"],
        "properties": {
            "clusters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["cluster", "patterns"],
                    "properties": {
                        "cluster": {"type": "integer"},
                        "patterns": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["pattern", "template", "examples", "rationale"],
                                "properties": {
                                    "pattern": {"type": "string"},
                                    "template": {"type": "string"},
                                    "examples": {"type": "array", "items": {"type": "string"}},
                                    "rationale": {"type": "string"}
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::response_schema;
    use crate::response::{ClusterAnswer, PatternResponse, RawPattern};

    /// The strict schema is tied to the response type: a fully populated `PatternResponse`
    /// serializes with exactly the properties the schema lists, all required, and reads back.
    #[test]
    fn strict_schema_matches_the_response_type() {
        let full = PatternResponse {
            clusters: vec![ClusterAnswer {
                cluster: 1,
                patterns: vec![RawPattern {
                    pattern: "p".into(),
                    template: Some("t".into()),
                    examples: vec!["e".into()],
                    rationale: Some("r".into()),
                }],
            }],
        };
        let value = serde_json::to_value(&full).unwrap();
        let schema = response_schema();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let required = |s: &serde_json::Value| -> Vec<String> {
            let mut r: Vec<String> = s["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            r.sort();
            r
        };
        assert_eq!(keys(&value), keys(&schema["properties"]));
        assert_eq!(keys(&value), required(&schema));
        let cluster_schema = &schema["properties"]["clusters"]["items"];
        assert_eq!(
            keys(&value["clusters"][0]),
            keys(&cluster_schema["properties"])
        );
        assert_eq!(keys(&value["clusters"][0]), required(cluster_schema));
        let pattern_schema = &cluster_schema["properties"]["patterns"]["items"];
        assert_eq!(
            keys(&value["clusters"][0]["patterns"][0]),
            keys(&pattern_schema["properties"])
        );
        assert_eq!(
            keys(&value["clusters"][0]["patterns"][0]),
            required(pattern_schema)
        );
        for s in [&schema, cluster_schema, pattern_schema] {
            assert_eq!(s["additionalProperties"], false);
        }
        let back: PatternResponse = serde_json::from_value(value).unwrap();
        assert_eq!(back, full);
    }
}

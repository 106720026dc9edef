//! [`JudgedMerger`]: embeddings propose, a model confirms. Each distinct pattern's nearest
//! neighbours by embedding become questions ("are these one pattern?"); the questions are
//! packed into token-bounded requests, each with a strict schema of one required key per
//! question; answers are validated, failed requests retried and split, unanswered questions
//! asked once more; confirmed pairs join their groups, named as the judge named them. Every
//! question ends answered or listed as unanswered, and the judge's usage and cost are reported
//! apart from the discovery calls.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::semantic::{block_members, groups_of, normalized};
use super::{MergeUsage, Merged, PatternMerger, assemble, occurrences};
use crate::backend::{
    BackendError, ChatMessage, ChatRequest, Embedder, LlmBackend, ResponseFormat, Role, TokenUsage,
};
use crate::error::Error;
use crate::patterns::Support;
use crate::timer::Timer;

/// The judge's instructions.
const SYSTEM: &str = "You compare names of YouTube title patterns found by different analysts. \
For each question, two names are given. Answer whether they name the same title pattern (the same \
formula a creator would reuse, even in other words), not merely the same topic. When they do, give \
the clearest short name for the pattern. Answer with one JSON object: for each question key \
(\"q1\", \"q2\", ...), {\"same\": true or false, \"name\": \"the merged name, or empty\"}.";
/// Completion tokens allowed per question.
const ANSWER_TOKENS: u32 = 24;

/// Merges patterns a model confirms as one. Each distinct pattern's nearest neighbours by
/// embedding become questions ("are these one pattern?"), packed into token-bounded requests
/// with a strict schema of one required key per question; answers are validated, failed
/// requests retried and split, unanswered questions asked once more; confirmed pairs join
/// their groups, named as the judge named them. Every question ends answered or listed as
/// unanswered in a warning, and the judge's usage is reported apart from the discovery calls.
#[derive(Debug, Clone)]
pub struct JudgedMerger {
    embedder: Arc<dyn Embedder>,
    judge: Arc<dyn LlmBackend>,
    timer: Arc<dyn Timer>,
    model: String,
    neighbours: usize,
    min_similarity: f32,
    tokens_per_request: usize,
    max_retries: u32,
}

/// One question: two distinct texts.
#[derive(Debug, Clone, Copy)]
struct Question {
    a: usize,
    b: usize,
}

/// A judge's verdict on a question.
#[derive(Debug, Clone)]
struct Verdict {
    same: bool,
    name: String,
}

impl JudgedMerger {
    /// Proposes with `embedder`'s vectors and asks `judge` (with `model`, waiting on `timer`):
    /// each pattern's 5 nearest neighbours (no similarity floor: the judge decides), up to 2,000
    /// prompt tokens of questions per request, 3 retries per request.
    pub fn new(
        embedder: impl Embedder + 'static,
        judge: impl LlmBackend + 'static,
        model: impl Into<String>,
        timer: impl Timer + 'static,
    ) -> Self {
        Self {
            embedder: Arc::new(embedder),
            judge: Arc::new(judge),
            timer: Arc::new(timer),
            model: model.into(),
            neighbours: 5,
            min_similarity: 0.0,
            tokens_per_request: 2000,
            max_retries: 3,
        }
    }

    /// Questions per pattern: its `k` nearest neighbours (at least 1).
    #[must_use]
    pub fn with_neighbours(mut self, k: usize) -> Self {
        self.neighbours = k.max(1);
        self
    }

    /// The least cosine similarity a proposed pair has.
    #[must_use]
    pub fn with_min_similarity(mut self, similarity: f32) -> Self {
        self.min_similarity = similarity;
        self
    }

    /// Prompt tokens of questions per request (at least 100).
    #[must_use]
    pub fn with_tokens_per_request(mut self, tokens: usize) -> Self {
        self.tokens_per_request = tokens.max(100);
        self
    }

    /// The proposed pairs: each text's nearest neighbours at `min_similarity` or more, each
    /// pair once, most similar first.
    fn propose(&self, vectors: &[Vec<f32>]) -> Vec<Question> {
        let unit = normalized(vectors);
        let mut best: HashMap<(usize, usize), f32> = HashMap::new();
        for members in block_members(&unit) {
            for &i in &members {
                let mut near: Vec<(f32, usize)> = members
                    .iter()
                    .filter(|&&j| j != i && unit[i].len() == unit[j].len())
                    .map(|&j| (super::semantic::dot(&unit[i], &unit[j]), j))
                    .filter(|(s, _)| *s >= self.min_similarity)
                    .collect();
                near.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                for &(s, j) in near.iter().take(self.neighbours) {
                    best.insert((i.min(j), i.max(j)), s);
                }
            }
        }
        let mut pairs: Vec<((usize, usize), f32)> = best.into_iter().collect();
        pairs.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        pairs
            .into_iter()
            .map(|((a, b), _)| Question { a, b })
            .collect()
    }

    /// A question's line and its estimated tokens.
    fn line(texts: &[String], n: usize, q: Question) -> (String, usize) {
        let line = format!("q{n}: A = {:?} | B = {:?}\n", texts[q.a], texts[q.b]);
        let tokens = line.len() / 4 + 1;
        (line, tokens)
    }

    /// `questions` packed into requests of at most `tokens_per_request` question tokens, in
    /// order (first fit).
    fn pack(&self, texts: &[String], questions: &[usize], all: &[Question]) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut tokens = 0;
        for &q in questions {
            let (_, t) = Self::line(texts, 1, all[q]);
            match out.last_mut() {
                Some(current) if tokens + t <= self.tokens_per_request => {
                    current.push(q);
                    tokens += t;
                }
                _ => {
                    out.push(vec![q]);
                    tokens = t;
                }
            }
        }
        out
    }

    /// The request for `batch` (indices into `all`).
    fn request(&self, texts: &[String], batch: &[usize], all: &[Question]) -> ChatRequest {
        let mut prompt = String::from("Questions:\n");
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for (n, &q) in batch.iter().enumerate() {
            let (line, _) = Self::line(texts, n + 1, all[q]);
            prompt.push_str(&line);
            let key = format!("q{}", n + 1);
            properties.insert(
                key.clone(),
                json!({"type": "object", "additionalProperties": false,
                       "required": ["same", "name"],
                       "properties": {"same": {"type": "boolean"}, "name": {"type": "string"}}}),
            );
            required.push(Value::String(key));
        }
        let _ = write!(prompt, "Answer all {} questions.", batch.len());
        let schema = json!({"type": "object", "additionalProperties": false,
                            "required": required, "properties": properties});
        ChatRequest {
            model: self.model.clone(),
            messages: vec![
                ChatMessage {
                    role: Role::System,
                    content: SYSTEM.to_owned(),
                },
                ChatMessage {
                    role: Role::User,
                    content: prompt,
                },
            ],
            temperature: 0.0,
            max_tokens: ANSWER_TOKENS
                .saturating_mul(u32::try_from(batch.len()).unwrap_or(u32::MAX))
                .saturating_add(64),
            response_format: ResponseFormat::JsonSchema {
                name: "pattern_pairs".into(),
                schema,
                strict: true,
            },
            batch: None,
        }
    }

    /// The verdicts an answer gives, by position in the batch (`None` where it gives none).
    fn read(content: &str, n: usize) -> Vec<Option<Verdict>> {
        let text = content.trim();
        let text = text
            .strip_prefix("```json")
            .or_else(|| text.strip_prefix("```"))
            .map_or(text, |t| t.trim_end_matches("```"));
        let value: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
        (1..=n)
            .map(|k| {
                let v = value.get(format!("q{k}"))?;
                Some(Verdict {
                    same: v.get("same")?.as_bool()?,
                    name: v
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                })
            })
            .collect()
    }

    /// Asks `batch`, retrying transient errors; a request that fails for good is split, and a
    /// lone question that fails is left unanswered. Verdicts go to `verdicts`.
    async fn ask(
        &self,
        texts: &[String],
        batch: Vec<usize>,
        all: &[Question],
        verdicts: &mut HashMap<usize, Verdict>,
        usage: &mut (MergeUsage, TokenUsage, Option<String>),
    ) {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let request = self.request(texts, &batch, all);
            let mut attempt = 0;
            let answer = loop {
                usage.0.judge_calls += 1;
                match self.judge.complete(&request).await {
                    Ok(answer) => break Ok(answer),
                    Err(e) if e.is_retryable() && attempt < self.max_retries => {
                        attempt += 1;
                        let wait = e.retry_after().unwrap_or_else(|| {
                            Duration::from_millis(500)
                                .saturating_mul(2u32.saturating_pow(attempt - 1))
                                .min(Duration::from_secs(8))
                        });
                        self.timer.sleep(wait).await;
                    }
                    Err(e) => break Err(e),
                }
            };
            match answer {
                Ok(answer) => {
                    if let Some(u) = answer.usage {
                        usage.1 = usage.1.plus(u);
                    }
                    if usage.2.is_none() && !answer.model.is_empty() {
                        usage.2 = Some(answer.model.clone());
                    }
                    for (k, verdict) in Self::read(&answer.content, batch.len())
                        .into_iter()
                        .enumerate()
                    {
                        if let Some(v) = verdict {
                            verdicts.insert(batch[k], v);
                        }
                    }
                }
                Err(e) if e.is_account_wide() => return,
                Err(BackendError::RateLimited { .. }) => {}
                Err(_) if batch.len() > 1 => {
                    let (first, second) = batch.split_at(batch.len() / 2);
                    pending.push(second.to_vec());
                    pending.push(first.to_vec());
                }
                Err(_) => {}
            }
        }
    }
}

/// Confirmed pairs joined, most similar first: each text's group root, and each root's name
/// (its first confirmed pair's merged name).
fn join(
    texts: usize,
    questions: &[Question],
    verdicts: &HashMap<usize, Verdict>,
) -> (Vec<usize>, Vec<Option<String>>) {
    let mut parent: Vec<usize> = (0..texts).collect();
    let mut names: Vec<Option<String>> = vec![None; texts];
    for (q, question) in questions.iter().enumerate() {
        let Some(v) = verdicts.get(&q).filter(|v| v.same) else {
            continue;
        };
        let (ra, rb) = (
            super::semantic::root(&mut parent, question.a),
            super::semantic::root(&mut parent, question.b),
        );
        if ra == rb {
            continue;
        }
        let (keep, gone) = (ra.min(rb), ra.max(rb));
        parent[gone] = keep;
        let name = names[keep].take().or_else(|| names[gone].take());
        names[keep] = name.or_else(|| (!v.name.is_empty()).then(|| v.name.clone()));
    }
    let roots = (0..texts)
        .map(|i| super::semantic::root(&mut parent, i))
        .collect();
    (roots, names)
}

#[async_trait]
impl PatternMerger for JudgedMerger {
    async fn merge(&self, support: &[Support]) -> Result<Merged, Error> {
        let occurrences = occurrences(support);
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut texts: Vec<String> = Vec::new();
        let of: Vec<usize> = occurrences
            .iter()
            .map(|o| {
                let text = o.text();
                *index.entry(text.to_lowercase()).or_insert_with(|| {
                    texts.push(text);
                    texts.len() - 1
                })
            })
            .collect();
        let lower: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
        let embedded = super::embed_all(&*self.embedder, &lower).await?;
        let questions = self.propose(&embedded.vectors);
        let all_indices: Vec<usize> = (0..questions.len()).collect();
        let total_tokens: usize = questions.iter().map(|&q| Self::line(&texts, 1, q).1).sum();
        let mut usage = (MergeUsage::of("judged"), TokenUsage::default(), None);
        usage.0.embedded = texts.len() as u64;
        usage.0.embedding_calls = embedded.calls;
        usage.0.embedding_tokens = embedded.tokens;
        usage.0.questions = questions.len() as u64;
        usage.0.judge_calls_planned = total_tokens.div_ceil(self.tokens_per_request) as u64;
        let mut verdicts: HashMap<usize, Verdict> = HashMap::new();
        for batch in self.pack(&texts, &all_indices, &questions) {
            self.ask(&texts, batch, &questions, &mut verdicts, &mut usage)
                .await;
        }
        // Unanswered questions are asked once more, packed anew.
        let missing: Vec<usize> = all_indices
            .iter()
            .copied()
            .filter(|q| !verdicts.contains_key(q))
            .collect();
        for batch in self.pack(&texts, &missing, &questions) {
            self.ask(&texts, batch, &questions, &mut verdicts, &mut usage)
                .await;
        }
        let (roots, names) = join(texts.len(), &questions, &verdicts);
        let groups = groups_of(of.iter().map(|&t| roots[t]));
        // Group g's name: its root's, when the judge gave one.
        let group_names: Vec<Option<String>> = groups
            .iter()
            .map(|members| names[roots[of[members[0]]]].clone())
            .collect();
        let unanswered = questions.len() - verdicts.len();
        usage.0.answered = verdicts.len() as u64;
        usage.0.judge_prompt_tokens = usage.1.prompt_tokens;
        usage.0.judge_completion_tokens = usage.1.completion_tokens;
        usage.0.judge_model = Some(usage.2.unwrap_or_else(|| self.model.clone()));
        let mut warnings = Vec::new();
        if unanswered > 0 {
            let list: Vec<String> = questions
                .iter()
                .enumerate()
                .filter(|(q, _)| !verdicts.contains_key(q))
                .map(|(_, q)| format!("{:?} / {:?}", texts[q.a], texts[q.b]))
                .collect();
            warnings.push(format!(
                "consolidation: {unanswered} of {} questions to the judge unanswered (left apart): {}",
                questions.len(),
                list.join("; ")
            ));
        }
        Ok(Merged {
            patterns: assemble(&occurrences, &groups, &group_names),
            usage: usage.0,
            warnings,
        })
    }
}

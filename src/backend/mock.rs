//! [`MockBackend`] (feature `mock`): a deterministic, scriptable backend that records every
//! request. By default it answers from the prompt itself — it reads the `CLUSTER` blocks and
//! returns, per cluster, the word skeletons its titles share (differing words become `[X]`) — so
//! offline runs look real.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::{BackendError, ChatRequest, ChatResponse, FinishReason, LlmBackend, TokenUsage};
use crate::timer::Timer;

/// What one scripted call does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MockStep {
    /// Answer from the prompt (the default behaviour).
    Answer,
    /// 429, with the server's retry-after if given.
    RateLimited(Option<Duration>),
    /// 500.
    ServerError,
    /// A timeout.
    Timeout,
    /// 401.
    Unauthorized,
    /// 429 `insufficient_quota`.
    QuotaExhausted,
    /// A 200 whose content is not JSON.
    Malformed,
    /// The answer cut in half, with `finish_reason: length`.
    Truncated,
    /// The answer without these cluster numbers.
    Missing(Vec<i64>),
    /// The answer plus an entry for a cluster number the batch does not have.
    UnknownCluster(i64),
    /// A refusal: empty content, `refusal` set.
    Refusal,
    /// This exact content, `finish_reason: stop`.
    Content(String),
}

impl MockStep {
    /// Every fault the mock can inject, for random fault mixes.
    pub fn faults() -> Vec<MockStep> {
        vec![
            Self::RateLimited(Some(Duration::from_secs(1))),
            Self::ServerError,
            Self::Timeout,
            Self::Malformed,
            Self::Truncated,
            Self::Missing(vec![1]),
            Self::UnknownCluster(99),
            Self::Refusal,
        ]
    }
}

/// What happens when a script runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterScript {
    /// Fail loudly: every further call is an error naming the script's length.
    Fail,
    /// Answer from the prompt.
    Answer,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<MockStep>,
    requests: Vec<ChatRequest>,
    /// How often each user prompt (by hash) was sent.
    seen: std::collections::HashMap<u64, u64>,
    calls: u64,
    overrun: u64,
}

/// A deterministic backend for tests and offline runs. See the module docs.
///
/// ```
/// use dynbatch::backend::mock::{MockBackend, MockStep};
/// let mock = MockBackend::scripted([MockStep::ServerError, MockStep::Answer]);
/// assert_eq!(mock.remaining(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct MockBackend {
    state: Arc<Mutex<State>>,
    after: AfterScript,
    latency: Duration,
    timer: Option<Arc<dyn Timer>>,
    faults: Option<(f64, u64)>,
}

impl Default for MockBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MockBackend {
    /// Answers every call from the prompt, with no latency.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            after: AfterScript::Answer,
            latency: Duration::ZERO,
            timer: None,
            faults: None,
        }
    }

    /// Plays `steps` in order, one per call; once they run out, every call fails loudly (an
    /// error naming the script's length, and [`MockBackend::overrun`] counts them).
    pub fn scripted(steps: impl IntoIterator<Item = MockStep>) -> Self {
        let mock = Self {
            after: AfterScript::Fail,
            ..Self::new()
        };
        mock.lock().script = steps.into_iter().collect();
        mock
    }

    /// After the script, answer from the prompt instead of failing.
    #[must_use]
    pub fn then_answer(mut self) -> Self {
        self.after = AfterScript::Answer;
        self
    }

    /// Waits `latency` on `timer` before each answer.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration, timer: impl Timer + 'static) -> Self {
        self.latency = latency;
        self.timer = Some(Arc::new(timer));
        self
    }

    /// Outside the script, injects a fault from [`MockStep::faults`] into a fraction `rate` of
    /// calls. Which calls and which faults depend only on `seed`, the request's text and how
    /// often that same request was sent before, so a run is reproducible whatever the order
    /// in which concurrent requests arrive.
    #[must_use]
    pub fn with_faults(mut self, rate: f64, seed: u64) -> Self {
        self.faults = Some((rate.clamp(0.0, 1.0), seed));
        self
    }

    /// Every request received, in order of arrival.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.lock().requests.clone()
    }

    /// Calls received.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Scripted steps not yet played.
    pub fn remaining(&self) -> usize {
        self.lock().script.len()
    }

    /// Calls made after a strict script ran out (each one failed).
    pub fn overrun(&self) -> u64 {
        self.lock().overrun
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_step(&self, request: &ChatRequest) -> Result<MockStep, BackendError> {
        let mut state = self.lock();
        state.calls += 1;
        let prompt_hash = fnv(request.user_text().as_bytes());
        let seen = state.seen.entry(prompt_hash).or_insert(0);
        let repeats = *seen;
        *seen += 1;
        state.requests.push(request.clone());
        if let Some(step) = state.script.pop_front() {
            return Ok(step);
        }
        if self.after == AfterScript::Fail {
            state.overrun += 1;
            let played = state.calls - state.overrun;
            tracing::error!(played, "MockBackend: script exhausted");
            return Err(BackendError::Other {
                retryable: false,
                source: format!("MockBackend script exhausted: it had {played} steps").into(),
            });
        }
        if let Some((rate, seed)) = self.faults {
            let roll = mix(seed ^ prompt_hash ^ repeats.wrapping_mul(0x9E37_79B9));
            #[allow(clippy::cast_precision_loss)] // 53 bits of a hash: a uniform fraction
            let fraction = (roll >> 11) as f64 / (1u64 << 53) as f64;
            if fraction < rate {
                let faults = MockStep::faults();
                let pick = usize::try_from(mix(roll) % faults.len() as u64).unwrap_or(0);
                return Ok(faults[pick].clone());
            }
        }
        Ok(MockStep::Answer)
    }
}

#[async_trait]
impl LlmBackend for MockBackend {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        let step = self.next_step(request)?;
        if let (Some(timer), false) = (&self.timer, self.latency.is_zero()) {
            timer.sleep(self.latency).await;
        }
        let answer = |missing: &[i64], extra: Option<i64>| {
            answer_from_prompt(&request.user_text(), missing, extra)
        };
        let (content, finish_reason, refusal) = match step {
            MockStep::Answer => (answer(&[], None), FinishReason::Stop, None),
            MockStep::RateLimited(retry_after) => {
                return Err(BackendError::RateLimited {
                    retry_after,
                    message: "mock: rate limited".into(),
                });
            }
            MockStep::ServerError => {
                return Err(BackendError::Overloaded {
                    status: Some(500),
                    retry_after: None,
                    message: "mock: internal server error".into(),
                });
            }
            MockStep::Timeout => return Err(BackendError::Timeout(Duration::from_secs(60))),
            MockStep::Unauthorized => {
                return Err(BackendError::Authentication("mock: invalid API key".into()));
            }
            MockStep::QuotaExhausted => {
                return Err(BackendError::QuotaExhausted(
                    "mock: insufficient_quota".into(),
                ));
            }
            MockStep::Malformed => (
                "Here are the patterns: {\"clusters\": [".into(),
                FinishReason::Stop,
                None,
            ),
            MockStep::Truncated => {
                let full = answer(&[], None);
                let half: String = full.chars().take(full.chars().count() / 2).collect();
                (half, FinishReason::Length, None)
            }
            MockStep::Missing(numbers) => (answer(&numbers, None), FinishReason::Stop, None),
            MockStep::UnknownCluster(n) => (answer(&[], Some(n)), FinishReason::Stop, None),
            MockStep::Refusal => (
                String::new(),
                FinishReason::Stop,
                Some("I'm sorry, I can't help with that.".to_owned()),
            ),
            MockStep::Content(text) => (text, FinishReason::Stop, None),
        };
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        Ok(ChatResponse {
            usage: Some(TokenUsage {
                prompt_tokens: (prompt_chars / 4) as u64,
                completion_tokens: (content.len() / 4) as u64,
            }),
            content,
            finish_reason,
            model: request.model.clone(),
            refusal,
            request_id: None,
        })
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Reads the `CLUSTER n` blocks and their quoted titles back out of a user prompt.
fn read_clusters(prompt: &str) -> Vec<(i64, Vec<String>)> {
    let mut clusters: Vec<(i64, Vec<String>)> = Vec::new();
    for line in prompt.lines() {
        if let Some(rest) = line.strip_prefix("CLUSTER ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                clusters.push((n, Vec::new()));
            }
        } else if let (Some(title), Some(current)) = (quoted_title(line), clusters.last_mut()) {
            current.1.push(title);
        }
    }
    clusters
}

fn quoted_title(line: &str) -> Option<String> {
    let body = line.strip_prefix("- \"")?;
    let end = body.rfind("\" (")?;
    Some(body[..end].replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// The "Identify a-b title patterns" range of the prompt; 3-5 if absent.
fn pattern_range(prompt: &str) -> (usize, usize) {
    prompt
        .lines()
        .find_map(|l| l.strip_prefix("Identify "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|range| range.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((3, 5))
}

/// Patterns of one cluster: for each pair of titles, their longest common subsequence of words
/// (ignoring case), with `[X]` wherever either title has words in between; ranked by how many
/// titles follow the skeleton, then by how many words it fixes.
fn skeletons(titles: &[String], most: usize) -> Vec<(String, Vec<String>)> {
    let words: Vec<Vec<&str>> = titles
        .iter()
        .map(|t| t.split_whitespace().collect())
        .collect();
    let mut found: Vec<(String, Vec<String>, usize)> = Vec::new();
    for (i, a) in words.iter().enumerate() {
        for b in &words[i + 1..] {
            let parts = skeleton(a, b);
            let fixed = parts.iter().filter(|p| **p != "[X]").count();
            if fixed < 2 || !parts.contains(&"[X]") {
                continue;
            }
            let template = parts.join(" ");
            if found.iter().any(|f| f.0 == template) {
                continue;
            }
            let examples: Vec<String> = titles
                .iter()
                .zip(&words)
                .filter(|(_, w)| matches_skeleton(w, &parts))
                .map(|(t, _)| t.clone())
                .collect();
            found.push((template, examples, fixed));
        }
    }
    found.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });
    let mut out: Vec<(String, Vec<String>)> = found
        .into_iter()
        .take(most)
        .map(|(t, e, _)| (t, e))
        .collect();
    if out.is_empty() {
        if let Some(first) = titles.first() {
            let lead: Vec<&str> = first.split_whitespace().take(2).collect();
            out.push((format!("{} [X]", lead.join(" ")), vec![first.clone()]));
        }
    }
    out
}

/// A template and the titles that follow it.
type Skeleton = (String, Vec<String>);

/// The longest common subsequence of two word lists, with `[X]` for the gaps.
#[allow(clippy::many_single_char_names)] // the textbook LCS names
fn skeleton<'w>(a: &[&'w str], b: &[&str]) -> Vec<&'w str> {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // table[i * width + j]: LCS length of a[i..] and b[j..].
    let mut table = vec![0usize; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * width + j] = if a[i].eq_ignore_ascii_case(b[j]) {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut parts: Vec<&'w str> = Vec::new();
    let mut gap = false;
    while i < n && j < m {
        if a[i].eq_ignore_ascii_case(b[j]) {
            if gap && parts.last() != Some(&"[X]") {
                parts.push("[X]");
            }
            gap = false;
            parts.push(a[i]);
            i += 1;
            j += 1;
        } else {
            gap = true;
            if table[(i + 1) * width + j] >= table[i * width + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    if (gap || i < n || j < m) && parts.last() != Some(&"[X]") {
        parts.push("[X]");
    }
    parts
}

fn matches_skeleton(words: &[&str], parts: &[&str]) -> bool {
    // Fixed words must appear in order; a placeholder stands for one or more words.
    let fixed: Vec<&str> = parts.iter().copied().filter(|p| *p != "[X]").collect();
    let mut it = words.iter();
    fixed.iter().all(|f| it.any(|w| w.eq_ignore_ascii_case(f)))
}

fn answer_from_prompt(prompt: &str, missing: &[i64], extra: Option<i64>) -> String {
    let (_, most) = pattern_range(prompt);
    let mut out = String::from("{\"clusters\": [");
    let mut first = true;
    let mut entries: Vec<(i64, Vec<Skeleton>)> = read_clusters(prompt)
        .into_iter()
        .filter(|(n, _)| !missing.contains(n))
        .map(|(n, titles)| (n, skeletons(&titles, most)))
        .collect();
    if let Some(n) = extra {
        entries.push((
            n,
            vec![("Invented [X]".into(), vec!["Not a real title".into()])],
        ));
    }
    for (n, patterns) in entries {
        if !first {
            out.push_str(", ");
        }
        first = false;
        let _ = write!(out, "{{\"cluster\": {n}, \"patterns\": [");
        let rendered: Vec<String> = patterns
            .iter()
            .map(|(template, examples)| {
                serde_json::json!({
                    "pattern": template.replace("[X]", "…"),
                    "template": template,
                    "examples": examples,
                    "rationale": format!("Shared by {} of the cluster's top titles", examples.len()),
                })
                .to_string()
            })
            .collect();
        out.push_str(&rendered.join(", "));
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_find_shared_words() {
        let titles: Vec<String> = [
            "I Tried the Flair 58 for 30 Days",
            "I Tried the Gaggia Classic for 100 Days",
            "Why Your Espresso Tastes Sour",
        ]
        .map(String::from)
        .to_vec();
        let s = skeletons(&titles, 5);
        assert_eq!(s[0].0, "I Tried the [X] for [X] Days");
        assert_eq!(s[0].1.len(), 2);
        let a = ["I", "Tried", "Chess", "for", "30", "Days"];
        let b = ["I", "Tried", "Chess", "Gear", "for", "100", "Days"];
        assert_eq!(skeleton(&a, &b).join(" "), "I Tried Chess [X] for [X] Days");
    }

    #[test]
    fn reads_clusters_back_from_a_prompt() {
        let prompt = "Analyze 2 video clusters for \"x\":\n\nCLUSTER 1 [WIDE] - Quality: 90%\nTop performers:\n- \"A \\\"quoted\\\" title\" (2.0x)\n---\nCLUSTER 2 [DEEP] - Quality: 60%\n- \"B\" (1.0x)\n\nIdentify 3-5 title patterns per cluster.";
        let c = read_clusters(prompt);
        assert_eq!(
            c,
            vec![
                (1, vec!["A \"quoted\" title".to_owned()]),
                (2, vec!["B".to_owned()])
            ]
        );
        assert_eq!(pattern_range(prompt), (3, 5));
    }
}

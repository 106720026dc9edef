//! A fake Anthropic Message Batches API on a wiremock server, shared by the tests and
//! `examples/batch_server.rs`: `POST /v1/messages/batches` (requests in the body, `custom_id`s
//! checked), retrieve, list (newest first, `after_id`), cancel, results as JSONL at the batch's
//! `results_url` (absolute for even batches, a path for odd ones), and live `POST /v1/messages`.
//! Each batch has a scripted fate. Answers come from the offline mock backend. It counts what a
//! client did, so tests can check that nothing was paid for twice.

#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::{ChatMessage, ChatRequest, LlmBackend, ResponseFormat, Role};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What becomes of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Every request succeeds (`fail_every`: every n-th one is an `api_error` instead).
    Complete { fail_every: Option<usize> },
    /// Every request is `errored` with an `invalid_request_error`.
    Invalid,
    /// The 24 h pass after `answered` requests; the rest are `expired`.
    Expire { answered: usize },
    /// Ends, but the results are cut off in the middle of their last line.
    Truncated,
}

#[derive(Debug, Clone)]
struct Batch {
    id: String,
    requests: Vec<Value>,
    fate: Fate,
    /// Polls in progress still to report.
    polls_left: usize,
    ended: bool,
    cancel_initiated: bool,
    created_at: u64,
    results: Option<String>,
    /// (succeeded, errored, canceled, expired)
    counts: (usize, usize, usize, usize),
}

/// What the fake was asked to do.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub creates: usize,
    pub retrieves: usize,
    pub lists: usize,
    pub cancels: usize,
    pub result_reads: usize,
    /// Live messages served (outside any batch).
    pub live_calls: usize,
    /// Requests (by `custom_id`) answered, with how often: more than once is paid twice.
    pub answered: BTreeMap<String, usize>,
}

#[derive(Debug, Default)]
struct State {
    batches: Vec<Batch>,
    fates: VecDeque<Fate>,
    in_progress_polls: usize,
    counts: Counts,
    /// Failures to play before handling a request: (path fragment, status), once each.
    faults: VecDeque<(String, u16)>,
    /// Creates that succeed but whose answer is a 500: the client never learns the id.
    lost_creates: usize,
}

/// A handle on the fake's state.
#[derive(Debug, Clone, Default)]
pub struct FakeMessageBatches {
    state: Arc<Mutex<State>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl FakeMessageBatches {
    /// Starts a server; batches end after `in_progress_polls` polls in progress.
    pub async fn start(in_progress_polls: usize) -> (MockServer, Self) {
        let server = MockServer::start().await;
        let fake = Self::mount(&server, in_progress_polls).await;
        (server, fake)
    }

    /// Serves the fake on `server`, under `/v1/messages` (ahead of anything else mounted).
    pub async fn mount(server: &MockServer, in_progress_polls: usize) -> Self {
        let fake = Self::default();
        fake.lock().in_progress_polls = in_progress_polls;
        Mock::given(wiremock::matchers::path_regex("^/v1/messages"))
            .respond_with(fake.clone())
            .with_priority(1)
            .mount(server)
            .await;
        fake
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fates of the next batches created, in order (then `Complete`).
    pub fn fates(&self, fates: impl IntoIterator<Item = Fate>) {
        self.lock().fates.extend(fates);
    }

    /// Answers the next request whose path contains `path` with `status`, once.
    pub fn fault(&self, path: &str, status: u16) {
        self.lock().faults.push_back((path.to_owned(), status));
    }

    /// The next `n` creates succeed but answer 500: the batch exists, its id is lost.
    pub fn lose_creates(&self, n: usize) {
        self.lock().lost_creates = n;
    }

    /// Lets every batch still running end at its next poll.
    pub fn release(&self) {
        for b in &mut self.lock().batches {
            b.polls_left = 0;
        }
    }

    /// What was asked so far.
    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// The ids of the batches created, in order.
    pub fn batch_ids(&self) -> Vec<String> {
        self.lock().batches.iter().map(|b| b.id.clone()).collect()
    }

    /// Requests in each batch created, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.lock()
            .batches
            .iter()
            .map(|b| b.requests.len())
            .collect()
    }
}

fn error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("request-id", "req_fake")
        .set_body_json(
            json!({"type": "error", "error": {"type": kind, "message": message},
                              "request_id": "req_fake"}),
        )
}

/// The chat request a Messages API body stands for.
pub fn chat_request(params: &Value) -> ChatRequest {
    let mut messages = Vec::new();
    if let Some(system) = params["system"].as_str() {
        messages.push(ChatMessage {
            role: Role::System,
            content: system.to_owned(),
        });
    }
    for m in params["messages"].as_array().into_iter().flatten() {
        messages.push(ChatMessage {
            role: Role::User,
            content: m["content"].as_str().unwrap_or_default().to_owned(),
        });
    }
    ChatRequest::new(
        params["model"].as_str().unwrap_or("claude").to_owned(),
        messages,
    )
    .with_temperature(params["temperature"].as_f64().unwrap_or(0.7))
    .with_max_tokens(
        params["max_tokens"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1000),
    )
    .with_response_format(ResponseFormat::JsonObject)
}

/// A message for `params`, answered by the offline mock: a `tool_use` block when a tool is
/// forced, text otherwise.
pub fn message(params: &Value, n: usize) -> Result<Value, String> {
    let response = futures::executor::block_on(MockBackend::new().complete(&chat_request(params)))
        .map_err(|e| e.to_string())?;
    message_json(params, &response, n)
}

/// The Messages API body of `response`, the answer to `params`.
pub fn message_json(
    params: &Value,
    response: &dynbatch::backend::ChatResponse,
    n: usize,
) -> Result<Value, String> {
    let block = if let Some(tool) = params["tool_choice"]["name"].as_str() {
        let input: Value = serde_json::from_str(&response.content).map_err(|e| e.to_string())?;
        json!({"type": "tool_use", "id": format!("toolu_{n}"), "name": tool, "input": input})
    } else {
        json!({"type": "text", "text": response.content})
    };
    let usage = response.usage.unwrap_or_default();
    Ok(json!({
        "id": format!("msg_{n}"), "type": "message", "role": "assistant",
        "model": params["model"], "content": [block],
        "stop_reason": if params["tool_choice"].is_object() { "tool_use" } else { "end_turn" },
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    }))
}

fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Batch {
    fn json(&self, origin: &str, index: usize) -> Value {
        let (succeeded, errored, canceled, expired) = self.counts;
        let processing = if self.ended { 0 } else { self.requests.len() };
        let status = if self.ended {
            "ended"
        } else if self.cancel_initiated {
            "canceling"
        } else {
            "in_progress"
        };
        let path = format!("/v1/messages/batches/{}/results", self.id);
        let url = if index % 2 == 0 {
            format!("{origin}{path}")
        } else {
            path
        };
        json!({
            "id": self.id, "type": "message_batch", "processing_status": status,
            "request_counts": {"processing": processing, "succeeded": succeeded,
                "errored": errored, "canceled": canceled, "expired": expired},
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.created_at + 86_400),
            "ended_at": self.ended.then(|| rfc3339(self.created_at + 60)),
            "cancel_initiated_at": self.cancel_initiated.then(|| rfc3339(self.created_at + 30)),
            "archived_at": null,
            "results_url": self.ended.then_some(url),
        })
    }
}

impl State {
    /// Runs a batch to its end: writes its results.
    fn finish(&mut self, i: usize) {
        let b = self.batches[i].clone();
        let mut lines = Vec::new();
        let mut counts = (0, 0, 0, 0);
        for (n, request) in b.requests.iter().enumerate() {
            let id = request["custom_id"].clone();
            let result = match &b.fate {
                _ if b.cancel_initiated => {
                    counts.2 += 1;
                    json!({"type": "canceled"})
                }
                Fate::Invalid => {
                    counts.1 += 1;
                    json!({"type": "errored", "error": {"type": "error", "error":
                        {"type": "invalid_request_error", "message": "max_tokens: too large for the model"}}})
                }
                Fate::Expire { answered } if n >= *answered => {
                    counts.3 += 1;
                    json!({"type": "expired"})
                }
                Fate::Complete {
                    fail_every: Some(k),
                } if (n + 1) % k == 0 => {
                    counts.1 += 1;
                    json!({"type": "errored", "error": {"type": "error", "error":
                        {"type": "api_error", "message": "Internal server error"}}})
                }
                _ => match message(&request["params"], n) {
                    Ok(message) => {
                        counts.0 += 1;
                        let key = id.as_str().unwrap_or_default().to_owned();
                        *self.counts.answered.entry(key).or_insert(0) += 1;
                        json!({"type": "succeeded", "message": message})
                    }
                    Err(e) => {
                        counts.1 += 1;
                        json!({"type": "errored", "error": {"type": "error", "error":
                            {"type": "api_error", "message": e}}})
                    }
                },
            };
            lines.push(json!({"custom_id": id, "result": result}));
        }
        // Results come in any order.
        lines.reverse();
        let mut text = lines.iter().fold(String::new(), |mut out, l| {
            out.push_str(&l.to_string());
            out.push('\n');
            out
        });
        if b.fate == Fate::Truncated && text.len() > 40 {
            text.truncate(text.len() - 30);
        }
        let b = &mut self.batches[i];
        b.results = Some(text);
        b.counts = counts;
        b.ended = true;
    }

    fn create(&mut self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error(400, "invalid_request_error", "the body is not JSON");
        };
        let Some(requests) = body["requests"].as_array().cloned() else {
            return error(400, "invalid_request_error", "requests: field required");
        };
        let mut seen = HashSet::new();
        for r in &requests {
            let id = r["custom_id"].as_str().unwrap_or_default();
            if !valid_custom_id(id) {
                return error(
                    400,
                    "invalid_request_error",
                    &format!("custom_id {id:?}: must be 1-64 characters of [a-zA-Z0-9_-]"),
                );
            }
            if !seen.insert(id.to_owned()) {
                return error(
                    400,
                    "invalid_request_error",
                    &format!("custom_id {id:?} appears twice"),
                );
            }
            if !r["params"]["messages"].is_array() || !r["params"]["max_tokens"].is_u64() {
                return error(
                    400,
                    "invalid_request_error",
                    "params: messages and max_tokens required",
                );
            }
        }
        if requests.is_empty() || requests.len() > 100_000 {
            return error(400, "invalid_request_error", "requests: 1 to 100,000");
        }
        self.counts.creates += 1;
        let fate = self
            .fates
            .pop_front()
            .unwrap_or(Fate::Complete { fail_every: None });
        let n = self.batches.len();
        let batch = Batch {
            id: format!("msgbatch_{n:03}"),
            requests,
            fate,
            polls_left: self.in_progress_polls,
            ended: false,
            cancel_initiated: false,
            created_at: unix_now(),
            results: None,
            counts: (0, 0, 0, 0),
        };
        let json = batch.json(&origin(request), n);
        self.batches.push(batch);
        if self.lost_creates > 0 {
            self.lost_creates -= 1;
            return error(500, "api_error", "Internal server error");
        }
        ResponseTemplate::new(200).set_body_json(json)
    }

    fn retrieve(&mut self, id: &str, origin: &str) -> Option<Value> {
        let i = self.batches.iter().position(|b| b.id == id)?;
        self.counts.retrieves += 1;
        let b = &mut self.batches[i];
        if !b.ended {
            if b.polls_left == 0 || b.cancel_initiated {
                self.finish(i);
            } else {
                b.polls_left -= 1;
            }
        }
        Some(self.batches[i].json(origin, i))
    }
}

/// Where the client reached the server (its `host` header), as an absolute URL's start.
fn origin(request: &Request) -> String {
    let host = request
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

impl Respond for FakeMessageBatches {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut guard = self.lock();
        let state = &mut *guard;
        let path = request.url.path().trim_start_matches("/v1/").to_owned();
        let verb = request.method.as_str().to_owned();
        if request.headers.get("x-api-key").is_none()
            || request.headers.get("anthropic-version").is_none()
        {
            return error(
                401,
                "authentication_error",
                "x-api-key and anthropic-version required",
            );
        }
        if let Some(at) = state
            .faults
            .iter()
            .position(|(p, _)| path.contains(p.as_str()))
        {
            let (_, status) = state.faults.remove(at).unwrap_or_default();
            let kind = if status == 529 {
                "overloaded_error"
            } else {
                "api_error"
            };
            return error(status, kind, "scripted fault");
        }
        let origin = origin(request);
        let parts: Vec<&str> = path.split('/').collect();
        match (verb.as_str(), parts.as_slice()) {
            ("POST", ["messages"]) => {
                let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                    return error(400, "invalid_request_error", "the body is not JSON");
                };
                state.counts.live_calls += 1;
                match message(&body, state.counts.live_calls) {
                    Ok(json) => ResponseTemplate::new(200).set_body_json(json),
                    Err(e) => error(500, "api_error", &e),
                }
            }
            ("POST", ["messages", "batches"]) => state.create(request),
            ("GET", ["messages", "batches"]) => {
                state.counts.lists += 1;
                let after = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "after_id")
                    .map(|(_, v)| v.into_owned());
                let all: Vec<(usize, &Batch)> = state.batches.iter().enumerate().rev().collect();
                let start = after
                    .and_then(|a| all.iter().position(|(_, b)| b.id == a).map(|p| p + 1))
                    .unwrap_or(0);
                // Pages of 2, so clients follow `has_more`.
                let page: Vec<Value> = all
                    .iter()
                    .skip(start)
                    .take(2)
                    .map(|(i, b)| b.json(&origin, *i))
                    .collect();
                let has_more = all.len() > start + 2;
                ResponseTemplate::new(200).set_body_json(json!({
                    "data": page, "has_more": has_more,
                    "first_id": page.first().map(|b| b["id"].clone()),
                    "last_id": page.last().map(|b| b["id"].clone()),
                }))
            }
            ("GET", ["messages", "batches", id]) => match state.retrieve(id, &origin) {
                Some(json) => ResponseTemplate::new(200).set_body_json(json),
                None => error(404, "not_found_error", "no such batch"),
            },
            ("GET", ["messages", "batches", id, "results"]) => {
                state.counts.result_reads += 1;
                match state.batches.iter().find(|b| b.id == *id) {
                    Some(Batch {
                        results: Some(text),
                        ..
                    }) => ResponseTemplate::new(200)
                        .insert_header("content-type", "application/binary")
                        .set_body_string(text.clone()),
                    Some(_) => error(400, "invalid_request_error", "the batch has not ended"),
                    None => error(404, "not_found_error", "no such batch"),
                }
            }
            ("POST", ["messages", "batches", id, "cancel"]) => {
                let Some(i) = state.batches.iter().position(|b| b.id == *id) else {
                    return error(404, "not_found_error", "no such batch");
                };
                state.counts.cancels += 1;
                let b = &mut state.batches[i];
                if !b.ended {
                    b.cancel_initiated = true;
                }
                let json = state.batches[i].json(&origin, i);
                ResponseTemplate::new(200).set_body_json(json)
            }
            _ => error(
                404,
                "not_found_error",
                &format!("{verb} /v1/{path} is not part of the Message Batches API"),
            ),
        }
    }
}

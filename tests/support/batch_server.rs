//! A fake `OpenAI` Batch API on a wiremock server, shared by the tests and
//! `examples/batch_server.rs`: `/v1/files` (multipart upload, content download) and
//! `/v1/batches` (create, retrieve, list, cancel), with a scripted fate per batch. Answers come
//! from the offline mock backend. It counts what a client did, so tests can check that nothing
//! was paid for twice.

#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::{ChatMessage, ChatRequest, LlmBackend, ResponseFormat};
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What becomes of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Every line answered (`fail_every`: every n-th line is a 500 in the error file instead).
    Complete { fail_every: Option<usize> },
    /// Validation fails: no line runs.
    Fail,
    /// The window passes after `answered` lines; the rest are `batch_expired` errors.
    Expire { answered: usize },
    /// Completes, but the output file is cut off in the middle of its last line.
    Truncated,
}

#[derive(Debug, Clone)]
struct Batch {
    id: String,
    input_file_id: String,
    metadata: Value,
    fate: Fate,
    /// Statuses still to report, one per retrieve; the last one stays.
    script: VecDeque<&'static str>,
    status: &'static str,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    created_at: u64,
    total: usize,
    completed: usize,
    failed: usize,
}

/// What the fake was asked to do.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub uploads: usize,
    pub creates: usize,
    pub retrieves: usize,
    pub lists: usize,
    pub cancels: usize,
    pub downloads: usize,
    /// Chat completions served live (outside any batch).
    pub live_calls: usize,
    /// Requests (by `custom_id`) answered, with how often: more than once is paid twice.
    pub answered: BTreeMap<String, usize>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, String>,
    batches: Vec<Batch>,
    fates: VecDeque<Fate>,
    in_progress_polls: usize,
    counts: Counts,
    /// Failures to play before handling a request: (path fragment, status), once each.
    faults: VecDeque<(String, u16)>,
}

/// A handle on the fake's state.
#[derive(Debug, Clone, Default)]
pub struct FakeBatchApi {
    state: Arc<Mutex<State>>,
}

impl FakeBatchApi {
    /// Starts a server; batches complete after `in_progress_polls` polls in progress.
    pub async fn start(in_progress_polls: usize) -> (MockServer, Self) {
        let server = MockServer::start().await;
        let fake = Self::mount(&server, in_progress_polls).await;
        (server, fake)
    }

    /// Serves the fake on `server`.
    pub async fn mount(server: &MockServer, in_progress_polls: usize) -> Self {
        let fake = Self::default();
        fake.lock().in_progress_polls = in_progress_polls;
        Mock::given(wiremock::matchers::any())
            .respond_with(fake.clone())
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

    /// Lets every batch still running finish at its next polls (finalizing, then its fate).
    pub fn release(&self) {
        let mut state = self.lock();
        for b in &mut state.batches {
            if let Some(last) = b.script.back().copied() {
                if matches!(b.status, "validating" | "in_progress") {
                    b.script = VecDeque::from(["finalizing", last]);
                }
            }
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
        self.lock().batches.iter().map(|b| b.total).collect()
    }
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": message, "type": "invalid_request_error"}}))
}

fn batch_json(b: &Batch) -> Value {
    let errors = (b.status == "failed").then(|| {
        json!({"object": "list", "data": [{"code": "invalid_request", "line": 1,
               "message": "the model does not support the Batch API"}]})
    });
    json!({
        "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
        "errors": errors, "input_file_id": b.input_file_id, "completion_window": "24h",
        "status": b.status, "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "created_at": b.created_at, "metadata": b.metadata,
        "request_counts": {"total": b.total, "completed": b.completed, "failed": b.failed},
    })
}

/// The file part of a multipart body.
fn multipart_file(request: &Request) -> Option<String> {
    let kind = request.headers.get("content-type")?.to_str().ok()?;
    let boundary = kind.split("boundary=").nth(1)?.trim_matches('"');
    let body = String::from_utf8_lossy(&request.body);
    let mut purpose = None;
    let mut file = None;
    for part in body.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        if head.contains("name=\"purpose\"") {
            purpose = Some(content.to_owned());
        } else if head.contains("name=\"file\"") {
            file = Some(content.to_owned());
        }
    }
    (purpose.as_deref() == Some("batch"))
        .then_some(file)
        .flatten()
}

fn chat_request(body: &Value) -> ChatRequest {
    let messages: Vec<ChatMessage> =
        serde_json::from_value(body["messages"].clone()).unwrap_or_default();
    ChatRequest::new(
        body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned(),
        messages,
    )
    .with_temperature(body["temperature"].as_f64().unwrap_or(0.7))
    .with_max_tokens(
        body["max_tokens"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1000),
    )
    .with_response_format(ResponseFormat::JsonObject)
}

/// A chat completion for `body`, answered by the offline mock.
fn completion(mock: &MockBackend, body: &Value, n: usize) -> Result<Value, String> {
    let response = futures::executor::block_on(mock.complete(&chat_request(body)))
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": response.model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": response.content}}],
        "usage": response.usage.map(|u| json!({"prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}))}))
}

fn answer_line(mock: &MockBackend, line: &Value, n: usize) -> Value {
    match completion(mock, &line["body"], n) {
        Ok(body) => json!({"id": format!("batch_req_{n}"), "custom_id": line["custom_id"],
            "error": null,
            "response": {"status_code": 200, "request_id": format!("req_{n}"), "body": body}}),
        Err(e) => error_line(line, n, "server_error", &e),
    }
}

fn error_line(line: &Value, n: usize, code: &str, message: &str) -> Value {
    json!({"id": format!("batch_req_{n}"), "custom_id": line["custom_id"], "response": null,
           "error": {"code": code, "message": message}})
}

impl State {
    /// Runs a batch to its end: writes its result files.
    fn finish(&mut self, i: usize) {
        let mock = MockBackend::new();
        let b = self.batches[i].clone();
        let input = self
            .files
            .get(&b.input_file_id)
            .cloned()
            .unwrap_or_default();
        let lines: Vec<Value> = input
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        let (mut completed, mut failed) = (0, 0);
        for (n, line) in lines.iter().enumerate() {
            let fails = match &b.fate {
                Fate::Fail => return,
                Fate::Complete {
                    fail_every: Some(k),
                } => (n + 1) % k == 0,
                Fate::Expire { answered } if n >= *answered => {
                    errors.push(error_line(
                        line,
                        n,
                        "batch_expired",
                        "This request could not be executed before the completion window expired.",
                    ));
                    failed += 1;
                    continue;
                }
                _ => false,
            };
            if fails {
                errors.push(json!({"id": format!("batch_req_{n}"), "custom_id": line["custom_id"],
                    "response": {"status_code": 500, "request_id": format!("req_{n}"),
                                 "body": {"error": {"message": "The server had an error", "type": "server_error"}}},
                    "error": null}));
                failed += 1;
            } else {
                output.push(answer_line(&mock, line, n));
                completed += 1;
                let id = line["custom_id"].as_str().unwrap_or_default().to_owned();
                *self.counts.answered.entry(id).or_insert(0) += 1;
            }
        }
        let join = |v: &[Value]| {
            v.iter().fold(String::new(), |mut out, l| {
                out.push_str(&l.to_string());
                out.push('\n');
                out
            })
        };
        let mut output = join(&output);
        if b.fate == Fate::Truncated && output.len() > 40 {
            output.truncate(output.len() - 30);
        }
        let n = self.files.len();
        let b = &mut self.batches[i];
        if completed > 0 {
            let id = format!("file-out-{n}");
            self.files.insert(id.clone(), output);
            b.output_file_id = Some(id);
        }
        if !errors.is_empty() {
            let id = format!("file-err-{n}");
            self.files.insert(id.clone(), join(&errors));
            b.error_file_id = Some(id);
        }
        b.completed = completed;
        b.failed = failed;
    }

    fn create(&mut self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error(400, "the body is not JSON");
        };
        if body["endpoint"] != "/v1/chat/completions" || body["completion_window"] != "24h" {
            return error(400, "endpoint or completion_window not supported");
        }
        let file = body["input_file_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(total) = self.files.get(&file).map(|f| f.lines().count()) else {
            return error(404, "no such input file");
        };
        self.counts.creates += 1;
        let fate = self
            .fates
            .pop_front()
            .unwrap_or(Fate::Complete { fail_every: None });
        let mut script: VecDeque<&'static str> = VecDeque::from(["validating"]);
        if fate == Fate::Fail {
            script.push_back("failed");
        } else {
            script.extend(std::iter::repeat_n("in_progress", self.in_progress_polls));
            script.push_back("finalizing");
            script.push_back(if matches!(fate, Fate::Expire { .. }) {
                "expired"
            } else {
                "completed"
            });
        }
        let n = self.batches.len();
        let batch = Batch {
            id: format!("batch_{n:03}"),
            input_file_id: file,
            metadata: body["metadata"].clone(),
            fate,
            script,
            status: "validating",
            output_file_id: None,
            error_file_id: None,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            total,
            completed: 0,
            failed: 0,
        };
        let json = batch_json(&batch);
        self.batches.push(batch);
        ResponseTemplate::new(200).set_body_json(json)
    }

    fn retrieve(&mut self, id: &str) -> Option<Value> {
        let i = self.batches.iter().position(|b| b.id == id)?;
        self.counts.retrieves += 1;
        let b = &mut self.batches[i];
        if let Some(next) = b.script.pop_front() {
            b.status = next;
            if matches!(next, "completed" | "expired") {
                self.finish(i);
            }
        }
        Some(batch_json(&self.batches[i]))
    }
}

impl Respond for FakeBatchApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut guard = self.lock();
        let state = &mut *guard;
        let path = request.url.path().trim_start_matches("/v1/").to_owned();
        let verb = request.method.as_str().to_owned();
        if let Some(at) = state
            .faults
            .iter()
            .position(|(p, _)| path.contains(p.as_str()))
        {
            let (_, status) = state.faults.remove(at).unwrap_or_default();
            return error(status, "scripted fault");
        }
        let parts: Vec<&str> = path.split('/').collect();
        match (verb.as_str(), parts.as_slice()) {
            // Live calls too, for the requests a batch left unanswered.
            ("POST", ["chat", "completions"]) => {
                let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                    return error(400, "the body is not JSON");
                };
                state.counts.live_calls += 1;
                match completion(&MockBackend::new(), &body, state.counts.live_calls) {
                    Ok(json) => ResponseTemplate::new(200).set_body_json(json),
                    Err(e) => error(500, &e),
                }
            }
            ("POST", ["files"]) => {
                let Some(content) = multipart_file(request) else {
                    return error(
                        400,
                        "expected a multipart body with purpose=batch and a file",
                    );
                };
                state.counts.uploads += 1;
                let id = format!("file-in-{}", state.files.len());
                let bytes = content.len();
                state.files.insert(id.clone(), content);
                ResponseTemplate::new(200).set_body_json(json!({"id": id, "object": "file",
                    "bytes": bytes, "purpose": "batch", "filename": "dynbatch.jsonl"}))
            }
            ("GET", ["files", id, "content"]) => {
                state.counts.downloads += 1;
                match state.files.get(*id) {
                    Some(text) => ResponseTemplate::new(200).set_body_string(text.clone()),
                    None => error(404, "no such file"),
                }
            }
            ("POST", ["batches"]) => state.create(request),
            ("GET", ["batches"]) => {
                state.counts.lists += 1;
                let data: Vec<Value> = state.batches.iter().rev().map(batch_json).collect();
                ResponseTemplate::new(200)
                    .set_body_json(json!({"object": "list", "data": data, "has_more": false}))
            }
            ("GET", ["batches", id]) => match state.retrieve(id) {
                Some(json) => ResponseTemplate::new(200).set_body_json(json),
                None => error(404, "no such batch"),
            },
            ("POST", ["batches", id, "cancel"]) => {
                let Some(b) = state.batches.iter_mut().find(|b| b.id == *id) else {
                    return error(404, "no such batch");
                };
                state.counts.cancels += 1;
                b.script = VecDeque::from(["cancelled"]);
                b.status = "cancelling";
                let json = batch_json(b);
                ResponseTemplate::new(200).set_body_json(json)
            }
            _ => error(
                404,
                &format!("{verb} /v1/{path} is not part of the Batch API"),
            ),
        }
    }
}

//! [`OpenAiBatches`]: `OpenAI`'s Batch API (Files + Batches) as a [`BatchBackend`], and the
//! reader of its output and error files ([`read_batch_file`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Deserializer};

use super::{OpenAiBuilder, classify, parse_response, request_body};
use crate::backend::http::{Calls, Transport, timed, transport_error};
use crate::backend::{
    BackendError, BatchBackend, BatchErrorInfo, BatchInfo, BatchLimits, BatchOutput, BatchPage,
    BatchStatus, ChatRequest, LineOutcome, RequestCounts, ResultLine,
};
use crate::error::Error;

/// The metadata key that ties a batch to the key of its input.
const KEY_FIELD: &str = "dynbatch_key";

/// `OpenAI`'s Batch API over HTTP (feature `openai`): input files uploaded to `/files`,
/// batches at `/batches` (endpoint `/v1/chat/completions`, window 24 h), results in an output
/// and an error file. Same configuration and auth as an
/// [`OpenAiBackend`](super::OpenAiBackend): build it with [`OpenAiBuilder::build_batches`] or
/// [`OpenAiBatches::from_env`], and drive it with [`BatchRunner`](crate::batch::BatchRunner).
///
/// Servers: `OpenAI`; Azure `OpenAI` (its v1 API, base URL
/// `https://NAME.openai.azure.com/openai/v1` with `OPENAI_API_KEY_HEADER=api-key`); any server
/// with `/v1/files` and `/v1/batches` in `OpenAI`'s shape (e.g. Groq, the `LiteLLM` proxy).
#[derive(Debug, Clone)]
pub struct OpenAiBatches {
    http: Transport,
    config: OpenAiBuilder,
}

impl OpenAiBuilder {
    /// The Batch API client of this configuration: the same base URL, auth, headers, model and
    /// `max_tokens` field.
    ///
    /// # Errors
    /// As [`OpenAiBuilder::build`].
    pub fn build_batches(self) -> Result<OpenAiBatches, Error> {
        Ok(OpenAiBatches {
            http: self.http_client()?,
            config: self,
        })
    }
}

impl OpenAiBatches {
    /// From the same environment variables as [`OpenAiBackend::from_env`](super::OpenAiBackend::from_env).
    ///
    /// # Errors
    /// As [`OpenAiBuilder::build`].
    pub fn from_env() -> Result<Self, Error> {
        OpenAiBuilder::from_env().build_batches()
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        self.config.base()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.base())
    }

    fn timeout(&self) -> Duration {
        self.config.reported_timeout()
    }

    /// How a file is downloaded: as other calls, with the download timeout.
    fn downloads(&self) -> Calls<'_> {
        Calls {
            timeout: self.config.reported_download_timeout(),
            ..self.calls()
        }
    }

    /// How calls are sent: a non-2xx answer is classified as a chat completion's would be.
    fn calls(&self) -> Calls<'_> {
        Calls {
            transport: &self.http,
            timeout: self.timeout(),
            id_header: "x-request-id",
            classify,
        }
    }

    async fn batch_call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<BatchInfo, BackendError> {
        let batch: WireBatch = self.calls().json(request, "a batch").await?;
        Ok(batch.into())
    }

    /// Uploads an input file (`POST /files`, purpose `batch`); returns its id.
    async fn upload(&self, jsonl: &str) -> Result<String, BackendError> {
        #[derive(Deserialize)]
        struct File {
            id: String,
        }
        let part = reqwest::multipart::Part::text(jsonl.to_owned())
            .file_name("dynbatch.jsonl")
            .mime_str("application/jsonl")
            .map_err(|e| transport_error(e, self.timeout()))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let file: File = self
            .calls()
            .json(self.http.post(self.url("files")).multipart(form), "a file")
            .await?;
        Ok(file.id)
    }

    /// A file's content (`GET /files/{id}/content`).
    /// Reads the file `file_id` as it downloads (`name` says which in warnings).
    async fn download(&self, file_id: &str, name: &str) -> Result<BatchOutput, BackendError> {
        let request = timed(
            self.http.get(self.url(&format!("files/{file_id}/content"))),
            self.config.download_timeout,
        );
        Ok(self
            .downloads()
            .read_lines(request, name, read_line)
            .await?
            .into())
    }
}

#[async_trait]
impl BatchBackend for OpenAiBatches {
    fn limits(&self) -> BatchLimits {
        BatchLimits::OPENAI
    }

    fn encode(&self, custom_id: &str, request: &ChatRequest) -> String {
        serde_json::json!({
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": request_body(request, self.config.model_override(), self.config.tokens_field()),
        })
        .to_string()
    }

    /// Uploads `jsonl` as an input file, then creates its batch with `key` in its metadata.
    async fn create(&self, jsonl: &str, key: &str) -> Result<BatchInfo, BackendError> {
        let file = self.upload(jsonl).await?;
        let body = serde_json::json!({
            "input_file_id": file,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": { KEY_FIELD: key },
        });
        self.batch_call(
            self.http
                .post(self.url("batches"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn get(&self, id: &str) -> Result<BatchInfo, BackendError> {
        self.batch_call(self.http.get(self.url(&format!("batches/{id}"))))
            .await
    }

    /// Downloads the output and the error file, whichever there are.
    async fn results(&self, batch: &BatchInfo) -> Result<BatchOutput, BackendError> {
        let mut out = BatchOutput::default();
        for kind in ["output", "errors"] {
            if let Some(file) = batch.location(kind) {
                let name = format!("batch {} {kind} file {file}", batch.id);
                out.extend(self.download(file, &name).await?);
            }
        }
        if let Some(model) = self.config.model_override() {
            for line in &mut out.lines {
                if let LineOutcome::Answered(answer) = &mut line.outcome {
                    if answer.model.is_empty() {
                        model.clone_into(&mut answer.model);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn cancel(&self, id: &str) -> Result<BatchInfo, BackendError> {
        self.batch_call(self.http.post(self.url(&format!("batches/{id}/cancel"))))
            .await
    }

    async fn list(&self, after: Option<&str>) -> Result<BatchPage, BackendError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            data: Vec<WireBatch>,
            #[serde(default)]
            has_more: bool,
        }
        let mut request = self
            .http
            .get(self.url("batches"))
            .query(&[("limit", "100")]);
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        let page: Page = self.calls().json(request, "a list of batches").await?;
        Ok(BatchPage {
            batches: page.data.into_iter().map(BatchInfo::from).collect(),
            has_more: page.has_more,
        })
    }

    /// Reads the `custom_id`s of the batch's input file.
    async fn custom_ids(&self, batch: &BatchInfo) -> Result<Option<Vec<String>>, BackendError> {
        #[derive(Deserialize)]
        struct Line {
            custom_id: String,
        }
        let Some(file) = batch.location("input") else {
            return Ok(None);
        };
        let name = format!("batch {}: its input file {file}", batch.id);
        let request = timed(
            self.http.get(self.url(&format!("files/{file}/content"))),
            self.config.download_timeout,
        );
        let lines = self
            .downloads()
            .read_lines(request, &name, |raw| {
                serde_json::from_str::<Line>(raw)
                    .map(|line| line.custom_id)
                    .map_err(|e| format!("not a request: {e}"))
            })
            .await?;
        if let Some(first) = lines.warnings.into_iter().next() {
            return Err(BackendError::InvalidResponse(first));
        }
        Ok(Some(lines.items))
    }
}

/// A batch as `/v1/batches` returns it.
#[derive(Debug, Deserialize)]
struct WireBatch {
    id: String,
    status: BatchStatus,
    #[serde(default)]
    input_file_id: Option<String>,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    request_counts: RequestCounts,
    #[serde(default, deserialize_with = "error_list")]
    errors: Vec<BatchErrorInfo>,
    #[serde(default, deserialize_with = "null_default")]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    created_at: Option<u64>,
}

impl From<WireBatch> for BatchInfo {
    fn from(w: WireBatch) -> Self {
        let mut info = BatchInfo::new(w.id, w.status);
        info.request_counts = w.request_counts;
        info.created_at = w.created_at;
        info.errors = w.errors;
        info.key = w.metadata.get(KEY_FIELD).cloned();
        for (name, id) in [
            ("input", w.input_file_id),
            ("output", w.output_file_id),
            ("errors", w.error_file_id),
        ] {
            if let Some(id) = id.filter(|id| !id.is_empty()) {
                info.locations.insert(name.to_owned(), id);
            }
        }
        info
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn error_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BatchErrorInfo>, D::Error> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        data: Vec<BatchErrorInfo>,
    }
    Ok(Option::<List>::deserialize(d)?.map_or_else(Vec::new, |l| l.data))
}

#[derive(Debug, Deserialize)]
struct Line {
    custom_id: String,
    #[serde(default)]
    response: Option<LineResponse>,
    #[serde(default)]
    error: Option<LineError>,
}

#[derive(Debug, Deserialize)]
struct LineResponse {
    status_code: u16,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    body: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct LineError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Reads a Batch API output or error file (JSONL, any order; `name` says which in warnings).
/// A 2xx line is read as a chat completion; other lines are failures, worth another batch when
/// the batch expired or the server failed (408, 409, 429, 5xx, `server_error`, `rate_limit…`,
/// `timeout`).
pub fn read_batch_file(name: &str, text: &str) -> BatchOutput {
    BatchOutput::read(name, text, read_line)
}

/// One line of an output or error file.
fn read_line(raw: &str) -> Result<ResultLine, String> {
    {
        let line: Line =
            serde_json::from_str(raw).map_err(|e| format!("not a Batch API result: {e}"))?;
        let outcome = match (line.response, line.error) {
            (Some(r), _) => {
                let body = r.body.to_string();
                match parse_response(r.status_code, &HeaderMap::new(), &body, r.request_id, "") {
                    Ok(answer) => LineOutcome::Answered(Box::new(answer)),
                    Err(e) => LineOutcome::Failed {
                        code: format!("http_{}", r.status_code),
                        message: format!("{}: {e}", e.kind()),
                        retry: !(200..300).contains(&r.status_code)
                            && matches!(r.status_code, 408 | 409 | 429 | 500..=599),
                    },
                }
            }
            (None, Some(e)) => {
                let code = e.code.unwrap_or_else(|| "error".into());
                LineOutcome::Failed {
                    retry: code == "batch_expired"
                        || code.contains("server_error")
                        || code.contains("rate_limit")
                        || code.contains("timeout"),
                    code,
                    message: e.message.unwrap_or_default(),
                }
            }
            (None, None) => LineOutcome::Failed {
                code: "malformed".into(),
                message: "the line has neither a response nor an error".into(),
                retry: false,
            },
        };
        Ok(ResultLine {
            custom_id: line.custom_id,
            outcome,
        })
    }
}

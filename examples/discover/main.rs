//! The whole pipeline on a clusters file, with the offline mock backend.
//!
//! ```text
//! cargo run --example discover -- [FILE|-] [--concept TEXT] [--concurrency N] [--config CONFIG.json]
//!                                  [--rpm N] [--tpm N] [--mock-rpm N] [--journal FILE]
//!                                  [--dry-run] [--json] [--fail-rate P --seed S]
//!                                  [--batch-api [--attach ID,ID] [--cancel] [--remainder batch|live|leave]]
//!                                  [--provider openai|anthropic] [--quality-probe K]
//! ```
//!
//! FILE defaults to the bundled `examples/data/clusters.json`. Human output (plan summary,
//! progress, the top consolidated patterns with provenance, usage and cost) goes to stderr;
//! `--json` prints the `DiscoveryReport` on stdout. `--dry-run` prints every rendered request
//! and the cost estimate and makes no call. `--fail-rate P --seed S` makes the mock inject a
//! reproducible mix of faults into a fraction P of calls. Bad input: one message, exit code 2.
//!
//! Rate limits need no setting: they are learnt from the server. `--rpm`/`--tpm` tell the
//! runner the account's limits up front; `--mock-rpm N` makes the offline mock enforce N
//! requests per minute, as a provider would, to watch the pacing. The progress bar shows what
//! the runner waits for.
//!
//! `--batch-api` (with `--features openai` and `OPENAI_API_KEY`/`OPENAI_BASE_URL`) sends the plan
//! through the provider's Batch API at half the price: it prints the batch ids, keeps them in
//! the journal when there is one (run the same command again to attach to them instead of
//! submitting again), polls until they end and reports as a live run would. `--attach ID,ID`
//! attaches by id; `--cancel` cancels them; `--remainder batch|live|leave` says what becomes of
//! requests a batch left unanswered (expired, server errors): new batches (the default), live
//! calls, or failed clusters with the reason. `cargo run --example batch_server` is a local
//! Batch API to try it on.
//!
//! `--quality-probe K` asks K batched clusters again, each alone, after the run, and reports
//! how far the batched answers agree with the single ones: what batching costs, without
//! labels.
//!
//! `--journal FILE` keeps every answer in an SQLite journal (created if missing): run the same
//! command again after any interruption (a crash, `kill -9`, Ctrl-C) and only what was not
//! answered is sent again. Ctrl-C stops sending, waits for the requests in flight, and exits
//! with code 130 saying how to resume.

#[cfg(any(feature = "openai", feature = "anthropic"))]
mod batch;

#[path = "../common/output.rs"]
mod output;

use std::io::Read;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::LlmBackend;
use dynbatch::backend::mock::{MockBackend, MockRateLimit};
use dynbatch::html::{Page, Timeline, write_html};
use dynbatch::prompt::OutputMode;
use dynbatch::report::DiscoveryReport;
use dynbatch::report::LimitSource;
use dynbatch::store::SqliteStore;
use dynbatch::{Batcher, BatchingConfig, Cluster};
use dynbatch::{RunConfig, RunEvent, Runner};
use indicatif::{ProgressBar, ProgressStyle};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/clusters.json");
const USAGE: &str = "usage: discover [FILE|-] [--concept TEXT] [--concurrency N] [--config CONFIG.json] [--output auto|object|strict|object-schema|text] \
                     [--rpm N] [--tpm N] [--mock-rpm N] [--journal FILE] [--dry-run] [--json] [--fail-rate P --seed S] \
                     [--batch-api [--attach ID,ID] [--cancel] [--remainder batch|live|leave] [--poll-secs S]] [--provider openai|anthropic] [--merge lexical|semantic|judged] [--html FILE] [--quality-probe K]";
/// Simulated latency of the mock, so the progress is visible.
const MOCK_LATENCY: Duration = Duration::from_millis(400);
/// The Claude model used when `ANTHROPIC_MODEL` is not set.
#[cfg(feature = "anthropic")]
const DEFAULT_CLAUDE: &str = "claude-haiku-4-5";

#[derive(Debug, Default)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
struct Args {
    file: Option<String>,
    concept: Option<String>,
    concurrency: Option<usize>,
    config: Option<String>,
    dry_run: bool,
    output: Option<OutputMode>,
    json: bool,
    html: Option<String>,
    fail_rate: Option<f64>,
    seed: Option<u64>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    mock_rpm: Option<u32>,
    journal: Option<String>,
    batch_api: bool,
    attach: Vec<String>,
    cancel: bool,
    remainder: Rest,
    poll_secs: Option<f64>,
    /// `--provider`: `None` picks by the environment.
    provider: Option<Provider>,
    merge: Option<String>,
    quality_probe: Option<usize>,
}

/// Which real API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    /// `--provider`, else Anthropic when only `ANTHROPIC_API_KEY` or `ANTHROPIC_BASE_URL` is
    /// set, else `OpenAI`.
    fn chosen(args: &Args) -> Self {
        let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        args.provider.unwrap_or(
            if (set("ANTHROPIC_API_KEY") || set("ANTHROPIC_BASE_URL"))
                && !set("OPENAI_API_KEY")
                && !set("OPENAI_BASE_URL")
            {
                Self::Anthropic
            } else {
                Self::OpenAi
            },
        )
    }
}

/// What to do with requests the batches left unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Rest {
    /// New batches (the default).
    #[default]
    Batch,
    /// Live calls, at once.
    Live,
    /// Report them failed, with the reason.
    Leave,
}

fn parse_merge(v: &str) -> Result<String, String> {
    match v {
        "lexical" | "semantic" | "judged" => Ok(v.to_owned()),
        other => Err(format!("--merge {other:?}: lexical, semantic or judged")),
    }
}

fn parse_rest(v: &str) -> Result<Rest, String> {
    match v {
        "batch" => Ok(Rest::Batch),
        "live" => Ok(Rest::Live),
        "leave" => Ok(Rest::Leave),
        other => Err(format!("--remainder {other:?}: batch, live or leave")),
    }
}

fn positive(name: &str, v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} {v:?} is not a positive whole number")),
    }
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--concept" => args.concept = Some(value("--concept")?),
            "--concurrency" => {
                args.concurrency =
                    Some(positive("--concurrency", &value("--concurrency")?)? as usize);
            }
            "--config" => args.config = Some(value("--config")?),
            "--journal" => args.journal = Some(value("--journal")?),
            "--rpm" => args.rpm = Some(positive("--rpm", &value("--rpm")?)?),
            "--tpm" => args.tpm = Some(positive("--tpm", &value("--tpm")?)?),
            "--mock-rpm" => args.mock_rpm = Some(positive("--mock-rpm", &value("--mock-rpm")?)?),
            "--quality-probe" => {
                args.quality_probe =
                    Some(positive("--quality-probe", &value("--quality-probe")?)? as usize);
            }
            "--fail-rate" => {
                let v = value("--fail-rate")?;
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("--fail-rate {v:?} is not a number"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("--fail-rate {p} is outside 0..=1"));
                }
                args.fail_rate = Some(p);
            }
            "--seed" => {
                let v = value("--seed")?;
                args.seed = Some(
                    v.parse()
                        .map_err(|_| format!("--seed {v:?} is not a whole number"))?,
                );
            }
            "--output" => args.output = Some(output::parse_output(&value("--output")?)?),
            "--batch-api" => args.batch_api = true,
            "--merge" => args.merge = Some(parse_merge(&value("--merge")?)?),
            "--provider" => {
                args.provider = Some(match value("--provider")?.as_str() {
                    "openai" => Provider::OpenAi,
                    "anthropic" => Provider::Anthropic,
                    other => return Err(format!("--provider {other:?}: openai or anthropic")),
                });
            }
            "--attach" => {
                args.attach = value("--attach")?
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--cancel" => args.cancel = true,
            "--remainder" => args.remainder = parse_rest(&value("--remainder")?)?,
            "--poll-secs" => {
                let v = value("--poll-secs")?;
                args.poll_secs = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| format!("--poll-secs {v:?} is not a positive number"))?,
                );
            }
            "--dry-run" => args.dry_run = true,
            "--json" => args.json = true,
            "--html" => args.html = Some(value("--html")?),
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(None);
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if args.file.is_none() => args.file = Some(path.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }
    check(&args).map(|()| Some(args))
}

/// Options that go together.
fn check(args: &Args) -> Result<(), String> {
    let batch_only = !args.attach.is_empty()
        || args.cancel
        || args.remainder != Rest::Batch
        || args.poll_secs.is_some();
    if batch_only && !args.batch_api {
        return Err("--attach, --cancel, --remainder and --poll-secs go with --batch-api".into());
    }
    if args.batch_api && (args.fail_rate.is_some() || args.mock_rpm.is_some() || args.dry_run) {
        return Err("--batch-api goes with neither --fail-rate, --mock-rpm nor --dry-run".into());
    }
    if args.seed.is_some() && args.fail_rate.is_none() {
        return Err("--seed goes with --fail-rate".into());
    }
    Ok(())
}

fn read(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on Ctrl-C (never, where signals cannot be listened to).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        futures::future::pending::<()>().await;
    }
    eprintln!("\ninterrupted: sending nothing more, waiting for the requests in flight…");
}

async fn run() -> Result<ExitCode, String> {
    let Some(args) = parse_args()? else {
        return Ok(ExitCode::SUCCESS);
    };
    let config = match &args.config {
        Some(path) => serde_json::from_str::<BatchingConfig>(&read(path)?)
            .map_err(|e| format!("{path}: {e}"))?,
        None => BatchingConfig::default(),
    };
    let target_tokens = config.target_tokens_per_batch();
    let path = args.file.clone().unwrap_or_else(|| BUNDLED.to_owned());
    let clusters: Vec<Cluster> = serde_json::from_str(&read(&path)?)
        .map_err(|e| format!("{path}: not a JSON array of clusters: {e}"))?;
    let concept = args
        .concept
        .clone()
        .unwrap_or_else(|| "home espresso".to_owned());

    let plan = Batcher::new(config)
        .plan(&clusters)
        .map_err(|e| e.to_string())?;
    eprint!("{plan}");

    let run_config = run_config(&args)?;
    if args.batch_api {
        return batch_api(&args, plan, &clusters, &concept, run_config).await;
    }
    let backend = backend(&args, &run_config)?;

    if args.dry_run {
        let model = answering_model(&args, &run_config);
        return dry_run(
            &Runner::new(backend, TokioTimer).with_config(run_config),
            &plan,
            &clusters,
            &concept,
            &model,
        )
        .map(|()| ExitCode::SUCCESS);
    }

    let bar = progress_bar(plan.batches.iter().map(|b| b.clusters.len() as u64).sum());
    let progress = bar.clone();
    let timeline = Arc::new(Mutex::new(Timeline::new()));
    let (record, started) = (Arc::clone(&timeline), std::time::Instant::now());
    let mut runner = Runner::new(backend, TokioTimer)
        .with_merger(merger(&args, &run_config)?)
        .with_config(run_config)
        .on_event(move |event| show(&progress, event))
        .on_event(move |event| lock(&record).record(started.elapsed(), event));
    if let Some(journal) = open_journal(&args)? {
        runner = runner.with_store(journal);
    }
    let report = runner
        .run_until(plan, &clusters, &concept, ctrl_c())
        .await
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    summary(&report);
    finish_json(&args, &report)?;
    write_page(&args, &report, take(&timeline), target_tokens)?;
    let u = &report.usage;
    if let Some(path) = &args.journal {
        eprintln!(
            "Journal: reused {} answers from {path} ({} calls made{})",
            u.cached,
            u.calls_made,
            u.saved_cost_usd
                .map(|c| format!(", ${c:.5} saved"))
                .unwrap_or_default()
        );
    }
    let interrupted = report
        .outcomes
        .iter()
        .filter(|o| {
            o.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("interrupted"))
        })
        .count();
    if interrupted > 0 {
        match &args.journal {
            Some(path) => eprintln!(
                "interrupted: {interrupted} clusters not answered yet; every answer so far is in {path}: run the same command again to resume"
            ),
            None => eprintln!(
                "interrupted: {interrupted} clusters not answered; nothing was kept (run with --journal FILE to resume a run)"
            ),
        }
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// The runner's settings the options ask for.
fn run_config(args: &Args) -> Result<RunConfig, String> {
    let mut builder = RunConfig::builder()
        .quality_probe(args.quality_probe.unwrap_or(0))
        .concurrency(args.concurrency.unwrap_or(4))
        .requests_per_minute(args.rpm)
        .tokens_per_minute(args.tpm);
    if let Some(output) = args.output {
        builder = builder.request_with(|r| r.output = output);
    }
    if let Ok(model) = std::env::var("OPENAI_MODEL") {
        builder = builder.request_with(|r| r.model = model);
    }
    builder.build().map_err(|e| e.to_string())
}

/// `--batch-api`: the plan through the provider's batch API.
#[cfg(any(feature = "openai", feature = "anthropic"))]
async fn batch_api(
    args: &Args,
    plan: dynbatch::BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    run_config: RunConfig,
) -> Result<ExitCode, String> {
    batch::run(args, plan, clusters, concept, run_config).await
}

#[cfg(not(any(feature = "openai", feature = "anthropic")))]
#[allow(clippy::unused_async)]
async fn batch_api(
    _: &Args,
    _: dynbatch::BatchPlan<'_>,
    _: &[Cluster],
    _: &str,
    _: RunConfig,
) -> Result<ExitCode, String> {
    Err("--batch-api needs the openai or anthropic feature: cargo run --features openai --example discover -- --batch-api ...".into())
}

/// `--journal FILE`, opened, saying what it holds.
fn open_journal(args: &Args) -> Result<Option<SqliteStore>, String> {
    let Some(path) = &args.journal else {
        return Ok(None);
    };
    let journal = SqliteStore::open(path).map_err(|e| e.to_string())?;
    match journal.len().map_err(|e| e.to_string())? {
        0 => eprintln!("journal {path}: new; every answer is kept as it arrives"),
        n => eprintln!("journal {path}: {n} answers recorded; resuming"),
    }
    Ok(Some(journal))
}

fn take<T: Default>(m: &Mutex<T>) -> T {
    std::mem::take(&mut *lock(m))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the page of `report` to `--html FILE`, when asked.
fn write_page(
    args: &Args,
    report: &DiscoveryReport<'_>,
    timeline: Timeline,
    target_tokens: u64,
) -> Result<(), String> {
    let Some(path) = &args.html else {
        return Ok(());
    };
    let provider = if std::env::var_os("OPENAI_BASE_URL").is_some()
        || std::env::var_os("OPENAI_API_KEY").is_some()
        || std::env::var_os("ANTHROPIC_API_KEY").is_some()
        || std::env::var_os("ANTHROPIC_BASE_URL").is_some()
    {
        format!("{:?}", Provider::chosen(args))
    } else {
        "offline mock".to_owned()
    };
    let page = Page::new()
        .with_provider(provider)
        .with_when(utc_now())
        .with_timeline(timeline)
        .with_target_tokens(target_tokens);
    let file = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = std::io::BufWriter::new(file);
    write_html(report, &page, &mut out).map_err(|e| format!("{path}: {e}"))?;
    eprintln!("page written to {path}");
    Ok(())
}

/// The time now, UTC, as `2026-12-06 07:45 UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Prints the report as JSON on stdout when `--json` asks for it.
fn finish_json(args: &Args, report: &DiscoveryReport<'_>) -> Result<ExitCode, String> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| e.to_string())?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--merge semantic|judged`: the merger, with embeddings from `EMBEDDINGS_BASE_URL` (else
/// `OPENAI_BASE_URL`), journalled with `--journal`; the judge is the run's own backend.
#[cfg(feature = "openai")]
fn merger(
    args: &Args,
    run_config: &RunConfig,
) -> Result<Box<dyn dynbatch::patterns::PatternMerger>, String> {
    use dynbatch::Embedding;
    use dynbatch::patterns::{JudgedMerger, LexicalMerger, SemanticMerger};
    let kind = match args.merge.as_deref() {
        None | Some("lexical") => {
            return Ok(Box::new(LexicalMerger::new(run_config.merge_similarity())));
        }
        Some(kind) => kind,
    };
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("EMBEDDINGS_BASE_URL") && !set("OPENAI_BASE_URL") && !set("OPENAI_API_KEY") {
        return Err(format!(
            "--merge {kind} needs embeddings: set EMBEDDINGS_BASE_URL (try scripts/embed-server.sh) or OPENAI_API_KEY"
        ));
    }
    let mut embedder = Embedding::new(
        dynbatch::backend::openai::OpenAiEmbedder::from_env().map_err(|e| e.to_string())?,
        TokioTimer,
        run_config.clone(),
    );
    if let Some(path) = &args.journal {
        embedder = embedder.with_store(SqliteStore::open(path).map_err(|e| e.to_string())?);
    }
    eprintln!("consolidation: {kind}, embeddings from {}", embedder_base());
    Ok(if kind == "semantic" {
        Box::new(SemanticMerger::new(embedder))
    } else {
        let judge = backend(args, run_config)?;
        Box::new(JudgedMerger::new(
            embedder,
            judge,
            answering_model(args, run_config),
            TokioTimer,
        ))
    })
}

#[cfg(feature = "openai")]
fn embedder_base() -> String {
    std::env::var("EMBEDDINGS_BASE_URL")
        .or_else(|_| std::env::var("OPENAI_BASE_URL"))
        .unwrap_or_else(|_| dynbatch::backend::openai::OPENAI_BASE_URL.to_owned())
}

#[cfg(not(feature = "openai"))]
fn merger(
    args: &Args,
    run_config: &RunConfig,
) -> Result<Box<dyn dynbatch::patterns::PatternMerger>, String> {
    match args.merge.as_deref() {
        None | Some("lexical") => Ok(Box::new(dynbatch::patterns::LexicalMerger::new(
            run_config.merge_similarity(),
        ))),
        Some(kind) => Err(format!(
            "--merge {kind} needs the openai feature (embeddings): cargo run --features openai --example discover -- --merge {kind}"
        )),
    }
}

/// Anthropic's configuration from the `ANTHROPIC_*` variables, with a Claude model when
/// `ANTHROPIC_MODEL` names none (the plan's requests name an `OpenAI` model by default).
#[cfg(feature = "anthropic")]
fn claude_builder() -> dynbatch::backend::anthropic::AnthropicBuilder {
    let builder = dynbatch::backend::anthropic::AnthropicBuilder::from_env();
    if std::env::var_os("ANTHROPIC_MODEL").is_none() {
        builder.model(DEFAULT_CLAUDE)
    } else {
        builder
    }
}

/// The real backend when built with `--features openai` and `OPENAI_API_KEY` or
/// `OPENAI_BASE_URL` is set; otherwise the offline mock.
fn backend(args: &Args, run_config: &RunConfig) -> Result<Box<dyn LlmBackend>, String> {
    #[cfg(feature = "anthropic")]
    if Provider::chosen(args) == Provider::Anthropic {
        if args.fail_rate.is_some() || args.mock_rpm.is_some() {
            return Err("--fail-rate and --mock-rpm shape the mock backend; unset ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL".into());
        }
        let backend = claude_builder().build().map_err(|e| e.to_string())?;
        eprintln!(
            "backend: {} (model {}), from the ANTHROPIC_* environment variables",
            backend.endpoint(),
            std::env::var("ANTHROPIC_MODEL").unwrap_or_else(|_| DEFAULT_CLAUDE.into())
        );
        return Ok(Box::new(backend));
    }
    #[cfg(feature = "openai")]
    if std::env::var_os("OPENAI_API_KEY").is_some() || std::env::var_os("OPENAI_BASE_URL").is_some()
    {
        if args.fail_rate.is_some() || args.mock_rpm.is_some() {
            return Err("--fail-rate and --mock-rpm shape the mock backend; unset OPENAI_API_KEY and OPENAI_BASE_URL".into());
        }
        let backend =
            dynbatch::backend::openai::OpenAiBackend::from_env().map_err(|e| e.to_string())?;
        eprintln!(
            "backend: {} (model {}), from the OPENAI_* environment variables",
            backend.endpoint(),
            run_config.request().model
        );
        return Ok(Box::new(backend));
    }
    let _ = &run_config;
    let mut mock = MockBackend::new().with_latency(MOCK_LATENCY, TokioTimer);
    if let Some(rate) = args.fail_rate {
        mock = mock.with_faults(rate, args.seed.unwrap_or(0));
        eprintln!(
            "mock backend: injecting faults into {:.0}% of calls (seed {})",
            rate * 100.0,
            args.seed.unwrap_or(0)
        );
    } else {
        eprintln!("mock backend: offline, answers derived from the prompts");
    }
    if let Some(rpm) = args.mock_rpm {
        mock = mock.with_rate_limit(MockRateLimit::requests_per_minute(rpm), TokioTimer);
        eprintln!("mock backend: enforcing {rpm} requests per minute, as a provider would");
    }
    Ok(Box::new(mock))
}

fn progress_bar(clusters: u64) -> ProgressBar {
    let bar = ProgressBar::new(clusters);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} clusters {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Moves the bar and notes retries, splits and re-asks. A hidden bar (stderr not a terminal)
/// drops its `println`, so the notes then go to stderr directly.
fn show(bar: &ProgressBar, event: &RunEvent) {
    let note = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    match event {
        RunEvent::Succeeded { clusters, .. } | RunEvent::Failed { clusters, .. } => {
            bar.inc(*clusters as u64);
        }
        RunEvent::Throttled { wait, total } => bar.set_message(format!(
            "waiting for rate limit {:.1} s ({:.0} s in all)",
            wait.as_secs_f64(),
            total.as_secs_f64()
        )),
        RunEvent::RateLimited { batch, wait, .. } => bar.set_message(format!(
            "429 on batch {}: waiting for rate limit {:.1} s",
            batch + 1,
            wait.as_secs_f64()
        )),
        RunEvent::LimitChanged {
            kind,
            per_minute,
            source,
        } => note(format!(
            "  pacing at {per_minute} {kind} per minute ({})",
            match source {
                LimitSource::Headers => "reported by the server",
                LimitSource::Configured => "as configured",
                LimitSource::Inferred => "inferred from 429s",
                _ => "learnt",
            }
        )),
        RunEvent::ConcurrencyChanged { from, to } => {
            bar.set_message(format!("concurrency {from} → {to}"));
        }
        RunEvent::CircuitOpened { failures, wait } => note(format!(
            "  {failures} failures in a row: pausing {:.1} s, then one probe",
            wait.as_secs_f64()
        )),
        RunEvent::CircuitClosed => note("  the server answers again: resuming".to_owned()),
        RunEvent::Stopped { reason, .. } => note(format!("  stopped sending: {reason}")),
        RunEvent::Requeued {
            batch, attempts, ..
        } => note(format!(
            "  batch {}: {attempts} attempts failed, back of the queue",
            batch + 1
        )),
        RunEvent::Retried {
            batch,
            delay,
            error,
            ..
        } => {
            note(format!(
                "  batch {}: retry in {delay:.1?} after {error}",
                batch + 1
            ));
        }
        RunEvent::Split {
            batch,
            clusters,
            reason,
            ..
        } => {
            note(format!(
                "  batch {}: split {clusters} clusters: {reason}",
                batch + 1
            ));
        }
        RunEvent::Reasked { batch, clusters } => {
            note(format!(
                "  batch {}: asking {clusters} left-out clusters again",
                batch + 1
            ));
        }
        _ => {}
    }
}

/// The model that will answer: the provider's model variable, Claude's default, or the one
/// the requests name.
fn answering_model(args: &Args, run_config: &RunConfig) -> String {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match Provider::chosen(args) {
        #[cfg(feature = "anthropic")]
        Provider::Anthropic => var("ANTHROPIC_MODEL").unwrap_or_else(|| DEFAULT_CLAUDE.into()),
        #[cfg(not(feature = "anthropic"))]
        Provider::Anthropic => var("ANTHROPIC_MODEL").unwrap_or_default(),
        Provider::OpenAi => {
            var("OPENAI_MODEL").unwrap_or_else(|| run_config.request().model.clone())
        }
    }
}

fn dry_run(
    runner: &Runner<Box<dyn LlmBackend>, TokioTimer>,
    plan: &dynbatch::BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    model: &str,
) -> Result<(), String> {
    let requests = runner
        .requests(plan, clusters, concept)
        .map_err(|e| e.to_string())?;
    let config = runner.config();
    let mut max_completion = 0u64;
    for (i, (request, batch)) in requests.iter().zip(&plan.batches).enumerate() {
        println!(
            "=== request {} of {}: {} clusters, ~{} estimated prompt tokens, max_tokens {}, temperature {}",
            i + 1,
            requests.len(),
            batch.clusters.len(),
            batch.estimated_tokens,
            request.max_tokens,
            request.temperature
        );
        for message in &request.messages {
            println!("--- {:?}\n{}", message.role, message.content);
        }
        max_completion += u64::from(request.max_tokens);
    }
    let prompt: u64 = plan.batches.iter().map(|b| b.estimated_tokens).sum();
    let usage = dynbatch::backend::TokenUsage::new(prompt, max_completion);
    match config.prices().cost(model, &usage) {
        Some(cost) => eprintln!(
            "dry run: {} requests, ~{prompt} prompt tokens, at most {max_completion} completion tokens: at most ${cost:.4} on {model}",
            requests.len(),
        ),
        None => eprintln!("dry run: {} requests; no price for {model}", requests.len()),
    }
    Ok(())
}

fn summary(report: &DiscoveryReport<'_>) {
    let (ok, failed) = report.outcome_counts();
    eprintln!(
        "\nTop patterns for \"{}\" ({ok} clusters succeeded, {failed} failed):",
        report.concept
    );
    eprintln!(
        "  {:<44} {:>8} {:>4} {:>7}  {:<5} example",
        "template", "evidence", "#", "covers", "wide"
    );
    for p in report.patterns.iter().take(10) {
        let template = p.template.as_deref().unwrap_or(&p.pattern);
        let example = p.examples.first().map_or("", String::as_str);
        // Shown titles of its clusters that its templates match: computed, not claimed.
        let covers = p.coverage.map_or_else(|| "-".to_owned(), |c| c.to_string());
        eprintln!(
            "  {:<44} {:>8.2} {:>4} {:>7}  {:<5} {}",
            truncate(template, 44),
            p.evidence,
            p.clusters.len(),
            covers,
            if p.wide { "WIDE" } else { "" },
            truncate(example, 50)
        );
        eprintln!("  {:<44} from {}", "", truncate(&p.clusters.join(", "), 70));
    }
    // Failures grouped by reason, the first few clusters of each named.
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for o in &report.outcomes {
        if let Some(reason) = o.reason.as_deref() {
            match reasons.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, ids)) => ids.push(&o.id),
                None => reasons.push((reason, vec![&o.id])),
            }
        }
    }
    for (reason, ids) in reasons.iter().take(10) {
        let more = ids.len().saturating_sub(3);
        let shown = ids[..ids.len().min(3)].join(", ");
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        eprintln!("  failed: {shown}{more}: {reason}");
    }
    if reasons.len() > 10 {
        eprintln!("  ... and {} other reasons", reasons.len() - 10);
    }
    let u = &report.usage;
    eprintln!(
        "\nUsage: {} calls planned, {} made ({} retries, {} splits, {} re-asks; {} of {} extra calls)",
        u.calls_planned,
        u.calls_made,
        u.retries,
        u.splits,
        u.reasks,
        u.extra_calls,
        u.max_extra_calls
    );
    eprintln!(
        "Time: {:.1} s; {} calls answered 429 (not failures, no extra calls), {:.1} s waiting for the rate limit{}",
        u.elapsed_secs,
        u.rate_limited,
        u.rate_limit_wait_secs,
        match (
            u.rate_limits.requests_per_minute,
            u.rate_limits.tokens_per_minute
        ) {
            (None, None) => String::new(),
            (r, t) => format!(
                "; paced at {}{}",
                r.map(|r| format!("{r} requests/min")).unwrap_or_default(),
                t.map(|t| format!(" {t} tokens/min")).unwrap_or_default()
            ),
        }
    );
    eprintln!(
        "Tokens: ~{} estimated prompt, {} prompt and {} completion reported; cost {} on {}",
        u.estimated_prompt_tokens,
        u.prompt_tokens,
        u.completion_tokens,
        u.estimated_cost_usd
            .map_or_else(|| "unknown".to_owned(), |c| format!("${c:.5}")),
        u.model
    );
    if let Some(error) = u.prompt_estimate_error {
        eprintln!(
            "Prompt estimate vs reported, over {} answered requests: {:+.1}% (the mock reports characters / 4)",
            report.requests.len(),
            error * 100.0
        );
    }
    notes(report);
}

/// The quality probe and the first warnings.
fn notes(report: &DiscoveryReport<'_>) {
    if let Some(probe) = &report.quality_probe {
        eprintln!("Quality probe: {probe}");
    }
    // Warnings of one kind once, with how often and the first of them.
    let mut kinds: Vec<(String, usize, &str)> = Vec::new();
    for w in &report.warnings {
        let kind = warning_kind(w);
        match kinds.iter_mut().find(|(k, ..)| *k == kind) {
            Some((_, n, _)) => *n += 1,
            None => kinds.push((kind, 1, w)),
        }
    }
    for (_, n, first) in kinds.iter().take(5) {
        match n {
            1 => eprintln!("warning: {first}"),
            n => eprintln!("warning ({n} like it): {first}"),
        }
    }
    if kinds.len() > 5 {
        eprintln!(
            "... and {} more kinds of warnings (--json lists them all)",
            kinds.len() - 5
        );
    }
}

/// A warning without the batch and cluster it names, its numbers as `#`.
fn warning_kind(warning: &str) -> String {
    let mut rest = warning;
    for prefix in ["batch ", "cluster "] {
        if let Some((_, after)) = rest.strip_prefix(prefix).and_then(|r| r.split_once(": ")) {
            rest = after;
        }
    }
    let mut kind = String::with_capacity(rest.len());
    for c in rest.chars() {
        if c.is_ascii_digit() {
            if !kind.ends_with('#') {
                kind.push('#');
            }
        } else {
            kind.push(c);
        }
    }
    kind
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

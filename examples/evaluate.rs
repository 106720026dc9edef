//! Scores what dynbatch finds against labelled titles (`dynbatch::eval`).
//!
//! ```text
//! cargo run --example evaluate -- CLUSTERS LABELS [--report REPORT.json] [--json]
//!     [--provider offline|openai|anthropic] [--concept TEXT] [--concurrency N]
//!     [--config CONFIG.json] [--output auto|object|strict|object-schema|text]
//!     [--rpm N] [--tpm N] [--timeout-secs S] [--compare-singles]
//! ```
//!
//! CLUSTERS is a clusters file, LABELS a JSON array of `{"name", "regex", "cluster"?}`. The
//! clusters are planned and run as `discover` runs them: offline with `FormulaFinder` (the
//! default: no key, no network), or against a real server with `--provider openai` (feature
//! `openai`: `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_MODEL`) or `--provider anthropic`
//! (feature `anthropic`: the `ANTHROPIC_*` variables), with `discover`'s `--concurrency`,
//! `--output`, `--rpm`, `--tpm` and `--config`. `--report` scores a report saved by
//! `discover --json` instead of running. `--compare-singles` also runs the same clusters one
//! per call on the same backend and prints both side by side. `--json` prints the figures as
//! JSON on stdout. Bad input: one message, exit code 2.

#[path = "common/output.rs"]
mod output;

use std::process::ExitCode;
use std::time::Duration;

use dynbatch::backend::LlmBackend;
use dynbatch::backend::formulas::FormulaFinder;
use dynbatch::eval::{Evaluation, LabelSet, evaluate};
use dynbatch::prompt::OutputMode;
use dynbatch::report::DiscoveryReport;
use dynbatch::{Batcher, BatchingConfig, Cluster, RunConfig, Runner, TokioTimer};

const USAGE: &str = "usage: evaluate CLUSTERS LABELS [--report REPORT.json] [--json] \
                     [--provider offline|openai|anthropic] [--concept TEXT] [--concurrency N] \
                     [--config CONFIG.json] [--output auto|object|strict|object-schema|text] \
                     [--rpm N] [--tpm N] [--timeout-secs S] [--compare-singles]";

#[derive(Debug, Default)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
struct Args {
    files: Vec<String>,
    report: Option<String>,
    json: bool,
    provider: Option<String>,
    concept: Option<String>,
    concurrency: Option<usize>,
    config: Option<String>,
    output: Option<OutputMode>,
    timeout: Option<Duration>,
    rpm: Option<u32>,
    tpm: Option<u32>,
    compare_singles: bool,
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
            "--report" => args.report = Some(value("--report")?),
            "--json" => args.json = true,
            "--compare-singles" => args.compare_singles = true,
            "--provider" => {
                let v = value("--provider")?;
                if !matches!(v.as_str(), "offline" | "openai" | "anthropic") {
                    return Err(format!("--provider {v:?}: offline, openai or anthropic"));
                }
                args.provider = Some(v);
            }
            "--concept" => args.concept = Some(value("--concept")?),
            "--config" => args.config = Some(value("--config")?),
            "--concurrency" => {
                let v = value("--concurrency")?;
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => args.concurrency = Some(n),
                    _ => {
                        return Err(format!(
                            "--concurrency {v:?} is not a positive whole number"
                        ));
                    }
                }
            }
            "--rpm" | "--tpm" => {
                let v = value(&arg)?;
                let n = match v.parse::<u32>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("{arg} {v:?} is not a positive whole number")),
                };
                if arg == "--rpm" {
                    args.rpm = Some(n);
                } else {
                    args.tpm = Some(n);
                }
            }
            "--timeout-secs" => {
                let v = value("--timeout-secs")?;
                match v
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                {
                    Some(d) if !d.is_zero() => args.timeout = Some(d),
                    _ => return Err(format!("--timeout-secs {v:?} is not a positive number")),
                }
            }
            "--output" => args.output = Some(output::parse_output(&value("--output")?)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            file => args.files.push(file.to_owned()),
        }
    }
    if args.files.len() != 2 {
        return Err(format!(
            "two files are needed, CLUSTERS and LABELS\n{USAGE}"
        ));
    }
    if args.report.is_some() && args.compare_singles {
        return Err("--compare-singles runs the clusters; it does not go with --report".into());
    }
    Ok(Some(args))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The backend `--provider` names.
fn backend(args: &Args) -> Result<Box<dyn LlmBackend>, String> {
    match args.provider.as_deref().unwrap_or("offline") {
        #[cfg(feature = "openai")]
        "openai" => {
            let b =
                dynbatch::backend::openai::OpenAiBackend::from_env().map_err(|e| e.to_string())?;
            eprintln!("backend: {}", b.endpoint());
            Ok(Box::new(b))
        }
        #[cfg(feature = "anthropic")]
        "anthropic" => {
            let b = dynbatch::backend::anthropic::AnthropicBackend::from_env()
                .map_err(|e| e.to_string())?;
            eprintln!("backend: {}", b.endpoint());
            Ok(Box::new(b))
        }
        "offline" => {
            eprintln!("backend: FormulaFinder (offline, no model)");
            Ok(Box::new(FormulaFinder::new()))
        }
        other => Err(format!("--provider {other}: this build lacks its feature")),
    }
}

fn run_config(args: &Args) -> Result<RunConfig, String> {
    let mut builder = RunConfig::builder()
        .concurrency(args.concurrency.unwrap_or(4))
        .requests_per_minute(args.rpm)
        .tokens_per_minute(args.tpm);
    if let Some(output) = args.output {
        builder = builder.request_with(|r| r.output = output);
    }
    if let Some(timeout) = args.timeout {
        builder = builder.request_timeout(timeout);
    }
    let model = match args.provider.as_deref() {
        Some("anthropic") => std::env::var("ANTHROPIC_MODEL").ok(),
        _ => std::env::var("OPENAI_MODEL").ok(),
    };
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        builder = builder.request_with(|r| r.model = model);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Plans `clusters` with `config` and runs the plan.
async fn discover<'a>(
    clusters: &'a [Cluster],
    config: BatchingConfig,
    runner: &Runner<Box<dyn LlmBackend>, TokioTimer>,
    concept: &str,
) -> Result<DiscoveryReport<'a>, String> {
    let plan = Batcher::new(config)
        .plan(clusters)
        .map_err(|e| e.to_string())?;
    if plan.batches.iter().all(|b| b.clusters.len() == 1) {
        eprintln!("one cluster per call: {} calls", plan.batches.len());
    } else {
        eprint!("{plan}");
    }
    runner
        .run(plan, clusters, concept)
        .await
        .map_err(|e| e.to_string())
}

/// The same configuration with one cluster per batch, and room for a call per cluster.
fn singles(config: &BatchingConfig, clusters: usize) -> Result<BatchingConfig, String> {
    config
        .to_builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(clusters.max(1))
        .build()
        .map_err(|e| e.to_string())
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

/// The two evaluations side by side.
fn side_by_side(batched: &Evaluation, singles: &Evaluation) {
    let row = |name: &str, a: String, b: String| println!("  {name:<28} {a:>12} {b:>12}");
    println!("  {:<28} {:>12} {:>12}", "", "batched", "one per call");
    row("recall", cell(batched.recall), cell(singles.recall));
    row(
        "labels found / eligible",
        format!("{}/{}", batched.found, batched.eligible),
        format!("{}/{}", singles.found, singles.eligible),
    );
    row(
        "fragments per formula",
        cell(batched.fragments_per_formula),
        cell(singles.fragments_per_formula),
    );
    row(
        "templates",
        batched.templates.to_string(),
        singles.templates.to_string(),
    );
    row(
        "generic share",
        cell(batched.generic_share),
        cell(singles.generic_share),
    );
    row(
        "grounded share",
        cell(batched.grounded_share),
        cell(singles.grounded_share),
    );
    row(
        "calls",
        batched.calls.to_string(),
        singles.calls.to_string(),
    );
    row(
        "prompt tokens",
        batched.prompt_tokens.to_string(),
        singles.prompt_tokens.to_string(),
    );
    row(
        "completion tokens",
        batched.completion_tokens.to_string(),
        singles.completion_tokens.to_string(),
    );
    let cost = |c: Option<f64>| c.map_or_else(|| "–".to_owned(), |c| format!("${c:.5}"));
    row("cost", cost(batched.cost_usd), cost(singles.cost_usd));
    // By position: every position of the batched run beside the one of the singles (all 1).
    let at = |buckets: &[dynbatch::eval::RecallBucket], key: usize| {
        buckets
            .iter()
            .find(|b| b.key == key)
            .map_or_else(String::new, |b| {
                format!("{:.3} ({}/{})", b.recall, b.found, b.eligible)
            })
    };
    let last = batched.by_position.iter().map(|b| b.key).max().unwrap_or(1);
    for key in 1..=last {
        row(
            &format!("recall at position {key}"),
            at(&batched.by_position, key),
            at(&singles.by_position, key),
        );
    }
}

async fn run() -> Result<ExitCode, String> {
    let Some(args) = parse_args()? else {
        return Ok(ExitCode::SUCCESS);
    };
    let (clusters_path, labels_path) = (&args.files[0], &args.files[1]);
    let clusters: Vec<Cluster> = serde_json::from_str(&read(clusters_path)?)
        .map_err(|e| format!("{clusters_path}: not a JSON array of clusters: {e}"))?;
    let labels =
        LabelSet::from_json(&read(labels_path)?).map_err(|e| format!("{labels_path}: {e}"))?;
    if let Some(path) = &args.report {
        let report: DiscoveryReport<'static> = serde_json::from_str(&read(path)?)
            .map_err(|e| format!("{path}: not a discovery report: {e}"))?;
        let scored = evaluate(&report, &clusters, &labels);
        print(&args, &scored, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = match &args.config {
        Some(path) => serde_json::from_str::<BatchingConfig>(&read(path)?)
            .map_err(|e| format!("{path}: {e}"))?,
        None => BatchingConfig::default(),
    };
    let concept = args.concept.clone().unwrap_or_else(|| "videos".to_owned());
    let runner = Runner::new(backend(&args)?, TokioTimer).with_config(run_config(&args)?);
    let report = discover(&clusters, config.clone(), &runner, &concept).await?;
    let batched = evaluate(&report, &clusters, &labels);
    let singles = if args.compare_singles {
        let config = singles(&config, clusters.len())?;
        let report = discover(&clusters, config, &runner, &concept).await?;
        Some(evaluate(&report, &clusters, &labels))
    } else {
        None
    };
    print(&args, &batched, singles.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

fn print(args: &Args, batched: &Evaluation, singles: Option<&Evaluation>) -> Result<(), String> {
    if args.json {
        let value = match singles {
            Some(s) => serde_json::json!({ "batched": batched, "singles": s }),
            None => serde_json::json!(batched),
        };
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        println!("{text}");
    } else if let Some(s) = singles {
        side_by_side(batched, s);
    } else {
        print!("{batched}");
    }
    Ok(())
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

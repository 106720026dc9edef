//! `OpenAI` Batch API files for a plan, with no network: `export` writes the input JSONL,
//! `import` reads the output (and error) JSONL back into the discovery report.
//!
//! ```text
//! cargo run --features openai --example batch_api -- export [CLUSTERS] [--concept TEXT] > batch.jsonl
//! openai api batches ... (upload batch.jsonl, wait, download output and error files)
//! cargo run --features openai --example batch_api -- import OUTPUT.jsonl [--errors ERRORS.jsonl]
//!     [--clusters CLUSTERS] [--concept TEXT] [--json]
//! ```
//!
//! Import plans the same clusters again (planning is deterministic, so the custom ids match)
//! and must be given the same clusters and concept as the export. Bad input: one message, exit 2.

use std::process::ExitCode;

use dynbatch::RunConfig;
use dynbatch::backend::openai::{OpenAiBuilder, read_batch_file};
use dynbatch::batch::{export, import};
use dynbatch::{Batcher, Cluster};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/clusters.json");
const USAGE: &str = "usage: batch_api export [CLUSTERS] [--concept TEXT]\n       batch_api import OUTPUT.jsonl [--errors ERRORS.jsonl] [--clusters CLUSTERS] [--concept TEXT] [--json]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or(USAGE)?;
    let (mut positional, mut concept, mut errors, mut clusters_path, mut json) =
        (None, "home espresso".to_owned(), None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--concept" => concept = args.next().ok_or("--concept needs a value")?,
            "--errors" => errors = Some(args.next().ok_or("--errors needs a file")?),
            "--clusters" => clusters_path = Some(args.next().ok_or("--clusters needs a file")?),
            "--json" => json = true,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if positional.is_none() => positional = Some(path.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }
    let config = RunConfig::default();
    match command.as_str() {
        "export" => {
            let path = positional.unwrap_or_else(|| BUNDLED.to_owned());
            let clusters: Vec<Cluster> =
                serde_json::from_str(&read(&path)?).map_err(|e| format!("{path}: {e}"))?;
            let plan = Batcher::default()
                .plan(&clusters)
                .map_err(|e| e.to_string())?;
            // Encoding sends nothing: the client needs a key to be built, never to encode.
            let encoder = OpenAiBuilder::default()
                .api_key("unused: export only")
                .build_batches()
                .map_err(|e| e.to_string())?;
            let jsonl =
                export(&plan, &clusters, &concept, &config, &encoder).map_err(|e| e.to_string())?;
            print!("{jsonl}");
            eprintln!(
                "{} requests for {} clusters ({} not batched: see the plan)",
                plan.batches.len(),
                plan.counts().batched,
                clusters.len() - plan.counts().batched
            );
            Ok(())
        }
        "import" => {
            let output_path = positional.ok_or(format!("import needs the output file\n{USAGE}"))?;
            let path = clusters_path.unwrap_or_else(|| BUNDLED.to_owned());
            let clusters: Vec<Cluster> =
                serde_json::from_str(&read(&path)?).map_err(|e| format!("{path}: {e}"))?;
            let plan = Batcher::default()
                .plan(&clusters)
                .map_err(|e| e.to_string())?;
            let mut results = read_batch_file(&output_path, &read(&output_path)?);
            if let Some(path) = errors {
                results.extend(read_batch_file(&path, &read(&path)?));
            }
            let report = import(plan, &clusters, &concept, &config, results)
                .await
                .map_err(|e| e.to_string())?;
            let (ok, failed) = report.outcome_counts();
            eprintln!(
                "{ok} clusters succeeded, {failed} failed, {} patterns",
                report.patterns.len()
            );
            for o in report.outcomes.iter().filter(|o| o.reason.is_some()) {
                eprintln!("  failed: {}: {}", o.id, o.reason.as_deref().unwrap_or(""));
            }
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            }
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

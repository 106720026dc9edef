//! Plans a clusters file and prints the plan.
//!
//! ```text
//! cargo run --example plan -- [FILE] [--config CONFIG.json] [--budget N]
//! ```
//!
//! FILE is a JSON array of clusters (`-` reads standard input; default: the bundled
//! `examples/data/clusters.json`). The plan's JSON goes to stdout, the summary to stderr. Bad
//! input prints one message naming the problem and exits with code 2.

use std::io::{Read, Write};
use std::process::ExitCode;

use dynbatch::{Batcher, BatchingConfig, Cluster};

/// The binary's allocator is the binary's choice (the library sets none). Reading 100,000s of
/// clusters makes millions of small allocations on several threads at once; with mimalloc the
/// whole run takes about three quarters of the time it takes with the system's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/clusters.json");
const USAGE: &str = "usage: plan [FILE|-] [--config CONFIG.json] [--budget N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut file = None;
    let mut config_path = None;
    let mut budget = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = Some(args.next().ok_or("--config needs a file")?),
            "--budget" => {
                let value = args.next().ok_or("--budget needs a number")?;
                budget = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("--budget {value:?} is not a whole number"))?,
                );
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if file.is_none() => file = Some(path.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }

    let mut config = match &config_path {
        Some(path) => {
            let text = read(path)?;
            serde_json::from_str::<BatchingConfig>(&text).map_err(|e| format!("{path}: {e}"))?
        }
        None => BatchingConfig::default(),
    };
    if let Some(calls) = budget {
        config = config
            .to_builder()
            .max_total_calls(calls)
            .build()
            .map_err(|e| format!("--budget: {e}"))?;
    }

    let path = file.unwrap_or_else(|| BUNDLED.to_owned());
    // One cluster at a time: the input's text is never all in memory beside the clusters.
    let threads = std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
    let clusters: Vec<Cluster> = dynbatch::read_clusters_parallel(open(&path)?, threads)
        .map_err(|e| format!("{path}: {e}"))?;

    let plan = Batcher::new(config)
        .plan(&clusters)
        .map_err(|e| e.to_string())?;
    eprint!("{plan}");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &plan).map_err(|e| e.to_string())?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    // Everything is written: leave without freeing 100,000s of small allocations one by one
    // (the operating system takes the whole heap back at once), as compilers and search tools
    // do. A library user's process keeps its clusters as long as it wants them.
    std::mem::forget(plan);
    std::mem::forget(clusters);
    Ok(())
}

fn open(path: &str) -> Result<Box<dyn std::io::Read>, String> {
    if path == "-" {
        Ok(Box::new(std::io::stdin()))
    } else {
        std::fs::File::open(path)
            .map(|f| Box::new(f) as Box<dyn std::io::Read>)
            .map_err(|e| format!("{path}: {e}"))
    }
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

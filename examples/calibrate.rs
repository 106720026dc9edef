//! Calibration of the token estimators on a clusters file (default: the bundled data).
//!
//! ```text
//! cargo run --example calibrate --features tiktoken -- [FILE] [--concept TEXT]
//! ```
//!
//! For each strategy it plans the clusters with the design's estimator, renders every request
//! exactly as the runner would, counts its tokens with `o200k_base` (the gpt-4o family's
//! tokenizer, chat overhead included), and prints the design's estimate, the exact estimator's
//! and the true count, as a Markdown table.

use std::process::ExitCode;

use dynbatch::prompt::{PromptCluster, RequestSettings};
use dynbatch::{
    Batcher, BatchingConfig, Cluster, Scored, StrategySelector, StrategySettings, TokenEstimator,
};
use dynbatch::{Encoding, TiktokenEstimator};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/clusters.json");

#[derive(Debug)]
struct Fixed(StrategySettings);
impl StrategySelector for Fixed {
    fn select(&self, _: &[Scored<'_>]) -> StrategySettings {
        self.0.clone()
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
fn pct(estimate: u64, truth: u64) -> f64 {
    (estimate as f64 - truth as f64) / truth as f64 * 100.0
}

fn run() -> Result<(), String> {
    let mut file = BUNDLED.to_owned();
    let mut concept = "home espresso".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--concept" => concept = args.next().ok_or("--concept needs a value")?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => path.clone_into(&mut file),
        }
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    let clusters: Vec<Cluster> = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    let exact =
        TiktokenEstimator::new(Encoding::O200kBase, concept.as_str()).map_err(|e| e.to_string())?;
    let settings = RequestSettings::default();
    let config = BatchingConfig::builder()
        .max_total_calls(1000)
        .build()
        .map_err(|e| e.to_string())?;

    println!(
        "| strategy | batches | design estimate | exact estimator | rendered requests (o200k_base) | design error | exact error |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for strategy in [
        StrategySettings::thorough(),
        StrategySettings::adaptive(),
        StrategySettings::efficient(),
        StrategySettings::balanced(),
    ] {
        let plan = Batcher::new(config.clone())
            .with_selector(Fixed(strategy.clone()))
            .plan(&clusters)
            .map_err(|e| e.to_string())?;
        let (mut design, mut estimated, mut truth) = (0u64, 0u64, 0u64);
        for batch in &plan.batches {
            let members: Vec<PromptCluster<'_>> = batch
                .clusters
                .iter()
                .filter_map(|id| {
                    let i = plan.clusters.iter().position(|e| e.id == *id)?;
                    Some(PromptCluster {
                        cluster: &clusters[i],
                        quality: plan.clusters[i].quality.unwrap_or(0.0),
                    })
                })
                .collect();
            let request = settings.request(&concept, &plan.strategy, &members);
            design += batch.estimated_tokens;
            estimated += u64::from(exact.request_overhead(&strategy))
                + members
                    .iter()
                    .map(|m| u64::from(exact.estimate(m.cluster, &strategy)))
                    .sum::<u64>();
            truth += exact.count_request(&request);
        }
        println!(
            "| {} | {} | {design} | {estimated} | {truth} | {:+.1}% | {:+.1}% |",
            strategy.kind,
            plan.batches.len(),
            pct(design, truth),
            pct(estimated, truth)
        );
    }
    Ok(())
}

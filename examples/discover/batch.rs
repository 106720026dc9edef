//! `discover --batch-api`: the plan through the provider's batch API (`OpenAI`'s Batch API with
//! feature `openai`, Anthropic's Message Batches with feature `anthropic`).

use std::process::ExitCode;
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::BatchBackend;
use dynbatch::batch::{
    BatchInput, BatchJob, BatchRun, BatchRunner, PollConfig, Remainder, SubmittedBatch,
};
use dynbatch::store::{MemoryStore, RunStore, SqliteStore};
use dynbatch::{BatchPlan, Cluster};
use dynbatch::{RunConfig, Runner};

use super::{Args, Provider, Rest, summary};

pub(crate) async fn run(
    args: &Args,
    plan: BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    run_config: RunConfig,
) -> Result<ExitCode, String> {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    #[cfg(feature = "anthropic")]
    if Provider::chosen(args) == Provider::Anthropic {
        if !set("ANTHROPIC_API_KEY") && !set("ANTHROPIC_BASE_URL") {
            return Err("--batch-api needs a server: set ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL for another server than Anthropic's); try `cargo run --example batch_server -- --anthropic`".into());
        }
        let batches = super::claude_builder()
            .build_batches()
            .map_err(|e| e.to_string())?;
        let base = batches.base_url().to_owned();
        return run_with(batches, &base, args, plan, clusters, concept, run_config).await;
    }
    #[cfg(feature = "openai")]
    if Provider::chosen(args) == Provider::OpenAi {
        if !set("OPENAI_API_KEY") && !set("OPENAI_BASE_URL") {
            return Err("--batch-api needs a server: set OPENAI_API_KEY (and OPENAI_BASE_URL for another server than OpenAI's); try `cargo run --example batch_server`".into());
        }
        let batches =
            dynbatch::backend::openai::OpenAiBatches::from_env().map_err(|e| e.to_string())?;
        let base = batches.base_url().to_owned();
        return run_with(batches, &base, args, plan, clusters, concept, run_config).await;
    }
    let _ = set;
    Err(format!(
        "--batch-api with {:?} needs the feature of that provider",
        Provider::chosen(args)
    ))
}

async fn run_with<B: BatchBackend + 'static>(
    batches: B,
    base: &str,
    args: &Args,
    plan: BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    run_config: RunConfig,
) -> Result<ExitCode, String> {
    let mut poll = PollConfig::default();
    if let Some(secs) = args.poll_secs {
        poll.first = Duration::from_secs_f64(secs);
        poll.max = poll.max.max(poll.first);
    }
    let mut client = BatchRunner::new(batches, TokioTimer)
        .with_poll(poll)
        .with_remainder(match args.remainder {
            Rest::Batch => Remainder::default(),
            Rest::Live | Rest::Leave => Remainder::Leave,
        })
        .on_event(|event| eprintln!("batch api: {event}"));
    eprintln!("batch api: {base} (costs at batch prices)");
    if let Some(path) = &args.journal {
        client = client.with_store(SqliteStore::open(path).map_err(|e| e.to_string())?);
        eprintln!(
            "journal {path}: batch ids are kept here; run the same command again to attach to them"
        );
    }
    let input = client
        .input(&plan, clusters, concept, &run_config)
        .map_err(|e| e.to_string())?;
    let batches = submit_or_attach(&client, args, &input).await?;
    let ids: Vec<&str> = batches.iter().map(|b| b.batch_id.as_str()).collect();
    eprintln!(
        "batch api: batches {} (attach again with --attach {})",
        ids.join(", "),
        ids.join(",")
    );
    if args.cancel {
        let job = BatchJob { batches };
        let cancelled = client.cancel_job(&job).await.map_err(|e| e.to_string())?;
        eprintln!(
            "batch api: cancelled {cancelled} of {} batches (the others had ended); what already ran stays in the result files",
            job.batches.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = client
        .finish(plan.clone(), clusters, concept, &run_config, input, batches)
        .await
        .map_err(|e| e.to_string())?;
    let unanswered = outcome.unanswered.len();
    if args.remainder != Rest::Live || unanswered == 0 {
        summary(&outcome.report);
        if unanswered > 0 {
            eprintln!(
                "batch api: {unanswered} requests unanswered; their clusters are failed with the reason (--remainder batch or live to send them again)"
            );
        }
        return super::finish_json(args, &outcome.report);
    }
    live_rest(args, plan, clusters, concept, run_config, &outcome).await
}

/// The rest, live: the batch answers go to the journal (or memory), and a live run of the same
/// plan with it sends only what they did not answer.
async fn live_rest(
    args: &Args,
    plan: BatchPlan<'_>,
    clusters: &[Cluster],
    concept: &str,
    run_config: RunConfig,
    outcome: &BatchRun<'_>,
) -> Result<ExitCode, String> {
    eprintln!(
        "batch api: {} requests unanswered; sending them live",
        outcome.unanswered.len()
    );
    let memory = MemoryStore::default();
    let live_store: Box<dyn RunStore> = match &args.journal {
        Some(path) => Box::new(SqliteStore::open(path).map_err(|e| e.to_string())?),
        None => Box::new(memory),
    };
    outcome
        .results
        .record(&outcome.input, &*live_store)
        .map_err(|e| e.to_string())?;
    let backend = super::backend(args, &run_config)?;
    let report = Runner::new(backend, TokioTimer)
        .with_config(run_config)
        .with_store(live_store)
        .run(plan, clusters, concept)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "batch api: {} requests answered by the batches (${:.5} at batch prices), {} live calls",
        report.usage.cached,
        outcome.report.usage.estimated_cost_usd.unwrap_or(0.0),
        report.usage.calls_made
    );
    summary(&report);
    super::finish_json(args, &report)
}

/// The batches of `input`: attached to by id when `--attach` names them, else submitted (or
/// found in the journal).
async fn submit_or_attach<B: BatchBackend>(
    client: &BatchRunner<B>,
    args: &Args,
    input: &BatchInput,
) -> Result<Vec<SubmittedBatch>, String> {
    if args.attach.is_empty() {
        let all: Vec<usize> = (0..input.len()).collect();
        client.submit(input, &all).await
    } else {
        client.attach(input, &args.attach).await
    }
    .map_err(|e| e.to_string())
}

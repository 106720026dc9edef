//! Consolidates patterns again, with the merger of your choice: by shared words (the default),
//! by what they mean (embeddings), or with a model confirming what the embeddings propose.
//!
//! ```text
//! cargo run --example consolidate --features openai -- FILE [--merge lexical|semantic|judged]
//!     [--threshold T] [--json]
//! ```
//!
//! FILE is a report written by `discover --json` (its per-cluster patterns are consolidated
//! again, each cluster weighed by its priority in the plan) or a JSON array of
//! `{"pattern", "template", "cluster"}` objects (optional `examples`, `rationale`). Embeddings
//! come from `EMBEDDINGS_BASE_URL` (default `OPENAI_BASE_URL`) with `EMBEDDINGS_MODEL` (default
//! `text-embedding-3-small`) and `EMBEDDINGS_API_KEY` or `OPENAI_API_KEY`, batched, paced,
//! retried and journalled (`--journal FILE`, with feature `store`: a rerun makes no embedding
//! call). The judge is
//! the same chat backend as `discover`'s (`OPENAI_*`, or `ANTHROPIC_*` with feature
//! `anthropic`). `--threshold` is the Jaccard similarity for `lexical` (default 0.6) and the
//! cosine similarity for `semantic` (default 0.65). `--json` prints `{"patterns": [...],
//! "consolidation": {...}}`.
//!
//! Try it offline on all-MiniLM-L6-v2: `scripts/embed-server.sh setup && scripts/embed-server.sh
//! start`, then `EMBEDDINGS_BASE_URL=http://127.0.0.1:8766/v1 EMBEDDINGS_MODEL=all-MiniLM-L6-v2
//! cargo run --example consolidate --features openai -- tests/data/paraphrased_patterns.json
//! --merge semantic`.

use std::process::ExitCode;

use dynbatch::TokioTimer;
use dynbatch::backend::LlmBackend;
use dynbatch::backend::openai::{OpenAiBackend, OpenAiEmbedder};
use dynbatch::patterns::{
    ConsolidatedPattern, JudgedMerger, LexicalMerger, Merged, Pattern, PatternMerger,
    SemanticMerger, Support,
};
use dynbatch::{Embedding, RunConfig};
use serde_json::Value;

const USAGE: &str = "usage: consolidate FILE [--merge lexical|semantic|judged] [--threshold T] [--journal FILE] [--json]";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The clusters' patterns of a `discover --json` report, or of an array of patterns.
fn support(value: &Value) -> Result<Vec<Support>, String> {
    let pattern = |p: &Value| -> Result<Pattern, String> {
        serde_json::from_value(serde_json::json!({
            "pattern": p["pattern"], "template": p.get("template").cloned().unwrap_or(Value::Null),
            "examples": p.get("examples").cloned().unwrap_or_else(|| serde_json::json!([])),
            "rationale": p.get("rationale").cloned().unwrap_or(Value::Null),
        }))
        .map_err(|e| format!("a pattern: {e}"))
    };
    if let Some(clusters) = value.get("cluster_patterns").and_then(Value::as_array) {
        let priority = |id: &str| {
            value["plan"]["clusters"]
                .as_array()
                .and_then(|all| all.iter().find(|c| c["id"] == id))
                .and_then(|c| c["priority"].as_f64())
                .unwrap_or(1.0)
        };
        return clusters
            .iter()
            .map(|c| {
                let id = c["id"]
                    .as_str()
                    .ok_or("a cluster without an id")?
                    .to_owned();
                Ok(Support {
                    priority: priority(&id),
                    avg_performance: 1.0,
                    is_wide: false,
                    patterns: c["patterns"]
                        .as_array()
                        .ok_or("a cluster without patterns")?
                        .iter()
                        .map(pattern)
                        .collect::<Result<_, _>>()?,
                    id,
                })
            })
            .collect();
    }
    let items = value
        .as_array()
        .ok_or("FILE is neither a discover report nor an array of patterns")?;
    let mut out: Vec<Support> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let cluster = item["cluster"]
            .as_str()
            .map_or_else(|| format!("item-{n}"), str::to_owned);
        let p = pattern(item).map_err(|e| format!("item {n}: {e}"))?;
        match out.iter_mut().find(|s| s.id == cluster) {
            Some(s) => s.patterns.push(p),
            None => out.push(Support {
                id: cluster,
                priority: 1.0,
                avg_performance: 1.0,
                is_wide: false,
                patterns: vec![p],
            }),
        }
    }
    Ok(out)
}

/// The chat backend `discover` would use, and its model.
fn judge() -> Result<(Box<dyn LlmBackend>, String), String> {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    #[cfg(feature = "anthropic")]
    if (set("ANTHROPIC_API_KEY") || set("ANTHROPIC_BASE_URL"))
        && !set("OPENAI_API_KEY")
        && !set("OPENAI_BASE_URL")
    {
        let model =
            std::env::var("ANTHROPIC_MODEL").unwrap_or_else(|_| "claude-haiku-4-5".to_owned());
        let backend = dynbatch::backend::anthropic::AnthropicBuilder::from_env()
            .model(model.clone())
            .build()
            .map_err(|e| e.to_string())?;
        return Ok((Box::new(backend), model));
    }
    if !set("OPENAI_API_KEY") && !set("OPENAI_BASE_URL") {
        return Err("--merge judged needs a chat backend: set OPENAI_API_KEY or OPENAI_BASE_URL (or ANTHROPIC_*)".into());
    }
    let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let backend = OpenAiBackend::from_env().map_err(|e| e.to_string())?;
    Ok((Box::new(backend), model))
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut merge, mut threshold, mut journal, mut json) =
        (None, "lexical".to_owned(), None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--merge" => merge = args.next().ok_or("--merge needs a value")?,
            "--threshold" => {
                let v = args.next().ok_or("--threshold needs a value")?;
                threshold = Some(v.parse::<f64>().map_err(|_| format!("--threshold {v:?}"))?);
            }
            "--journal" => journal = Some(args.next().ok_or("--journal needs a file")?),
            "--json" => json = true,
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{USAGE}"));
            }
            path if file.is_none() => file = Some(path.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}\n{USAGE}")),
        }
    }
    let file = file.ok_or(USAGE)?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    let support = support(&value)?;
    let embedder = || -> Result<Embedding<OpenAiEmbedder>, String> {
        let mut e = Embedding::new(
            OpenAiEmbedder::from_env().map_err(|e| e.to_string())?,
            TokioTimer,
            RunConfig::default(),
        );
        if let Some(path) = &journal {
            #[cfg(feature = "store")]
            {
                e = e.with_store(
                    dynbatch::store::SqliteStore::open(path).map_err(|e| e.to_string())?,
                );
            }
            #[cfg(not(feature = "store"))]
            return Err(format!(
                "--journal {path} needs the store feature: --features openai,store"
            ));
        }
        Ok(e)
    };
    let merger: Box<dyn PatternMerger> = match merge.as_str() {
        "lexical" => Box::new(LexicalMerger::new(threshold.unwrap_or(0.6))),
        "semantic" => {
            let mut m = SemanticMerger::new(embedder()?);
            if let Some(t) = threshold {
                #[allow(clippy::cast_possible_truncation)]
                {
                    m = m.with_threshold(t as f32);
                }
            }
            Box::new(m)
        }
        "judged" => {
            let (backend, model) = judge()?;
            Box::new(JudgedMerger::new(embedder()?, backend, model, TokioTimer))
        }
        other => return Err(format!("--merge {other:?}: lexical, semantic or judged")),
    };
    let patterns: usize = support.iter().map(|s| s.patterns.len()).sum();
    let out: Merged = merger.merge(&support).await.map_err(|e| e.to_string())?;
    eprintln!(
        "{patterns} patterns of {} clusters → {} ({merge})",
        support.len(),
        out.patterns.len()
    );
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        let out = serde_json::json!({"patterns": out.patterns, "consolidation": out.usage});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        print_table(&out.patterns);
    }
    Ok(())
}

fn print_table(patterns: &[ConsolidatedPattern]) {
    for p in patterns.iter().filter(|p| p.aliases.len() > 1).take(30) {
        let names: Vec<&str> = p.aliases.iter().map(|a| a.pattern.as_str()).collect();
        println!("{} ({} clusters)", p.pattern, p.clusters.len());
        println!("    = {}", names.join(" | "));
    }
    let single = patterns.iter().filter(|p| p.aliases.len() <= 1).count();
    println!("... and {single} patterns merged with no other");
}

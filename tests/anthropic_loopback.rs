//! `discover --provider anthropic` against `examples/limited_server.rs --anthropic` on loopback:
//! a Messages API that limits input and output tokens per minute apart, counts a request's
//! `max_tokens` against the output limit when it starts, and says so only in its
//! `anthropic-ratelimit-*` headers (resets as RFC 3339 times). The client is not told the
//! limit: nothing lost, done near the least time the output limit allows, few 429s.
//! Real time: about 6 s.

#![cfg(feature = "anthropic")]
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::process::{Command, Stdio};
use std::time::Instant;

use dynbatch::Runner;
use dynbatch::TokioTimer;
use dynbatch::{Batcher, BatchingConfig};
use serde_json::Value;

/// Requests the output limit lets through per minute.
const PER_MINUTE: u64 = 1200;
const REQUESTS: usize = 1300;
const LATENCY_MS: u64 = 50;

use crate::loopback::{example, limited_server};

#[test]
fn paced_by_the_output_token_limit_it_learns_from_anthropic_headers() {
    let dir = std::env::temp_dir().join(format!("dynbatch-claude-limit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(REQUESTS)
        .build()
        .unwrap();
    let clusters = dynbatch::testing::distinct_clusters(REQUESTS);
    // Every request asks for the same max_tokens: the output limit is that many requests'.
    let plan = Batcher::new(config.clone()).plan(&clusters).unwrap();
    let requests = Runner::new(dynbatch::backend::mock::MockBackend::new(), TokioTimer)
        .requests(&plan, &clusters, "x")
        .unwrap();
    let max_tokens = u64::from(requests[0].max_tokens);
    assert!(
        requests
            .iter()
            .all(|r| u64::from(r.max_tokens) == max_tokens)
    );
    let otpm = PER_MINUTE * max_tokens;

    let (otpm_arg, latency) = (otpm.to_string(), LATENCY_MS.to_string());
    let (_server, port) = limited_server(&[
        "--anthropic",
        "--no-rpm",
        "--itpm",
        "100000000",
        "--otpm",
        &otpm_arg,
        "--latency-ms",
        &latency,
    ]);

    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let input = dir.join("clusters.json");
    std::fs::write(&input, serde_json::to_string(&clusters).unwrap()).unwrap();
    let start = Instant::now();
    let output = Command::new(example("discover"))
        .arg(&input)
        .arg("--config")
        .arg(&config_path)
        .args(["--provider", "anthropic", "--concurrency", "16", "--json"])
        .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("ANTHROPIC_API_KEY", "sk-ant-loopback")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), REQUESTS);
    assert!(
        outcomes.iter().all(|o| o["status"] == "succeeded"),
        "nothing lost"
    );
    let usage = &report["usage"];
    let calls = usage["calls_made"].as_u64().unwrap();
    let refused = usage["rate_limited"].as_u64().unwrap();
    let limits = &usage["rate_limits"];
    assert_eq!(limits["output_tokens_per_minute"], otpm, "{limits}");
    assert_eq!(limits["output_tokens_source"], "headers");
    // Anthropic's combined tokens headers are not paced by when input and output are there.
    assert!(limits.get("tokens_per_minute").is_none(), "{limits}");
    // A full bucket at once, then the refill rate, plus one answer's latency.
    let least_time = (REQUESTS as f64 - PER_MINUTE as f64) * 60.0 / PER_MINUTE as f64
        + LATENCY_MS as f64 / 1000.0;
    let ratio = elapsed.as_secs_f64() / least_time;
    let share = refused as f64 / calls as f64;
    eprintln!(
        "{REQUESTS} requests, output limit {otpm}/min ({PER_MINUTE} requests' max_tokens): \
         done in {elapsed:.1?} = {ratio:.3} × the least time; {refused} 429s of {calls} \
         requests ({:.1}%)",
        100.0 * share
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ratio <= 1.15, "{ratio}\n{stderr}");
    assert!(share <= 0.05, "{share}");
}

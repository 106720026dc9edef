//! Two `discover` processes on one API key, against `examples/limited_server.rs` on loopback
//! enforcing the key's limit with `x-ratelimit-*` headers (as providers do), neither told the
//! limit: nothing lost, the last done near the least time the shared limit allows, few 429s.
//! Real time: about 10 s.

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use dynbatch::BatchingConfig;
use serde_json::Value;

const RPM: u32 = 1200;
const PER_PROCESS: usize = 700;
const LATENCY_MS: u64 = 100;

use crate::loopback::{example, limited_server};

#[test]
fn two_processes_on_one_key_share_it_politely() {
    let rpm = RPM.to_string();
    let latency = LATENCY_MS.to_string();
    let (_server, port) = limited_server(&["--rpm", &rpm, "--latency-ms", &latency]);

    let dir = std::env::temp_dir().join(format!("dynbatch-shared-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(PER_PROCESS)
        .build()
        .unwrap();
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let all = dynbatch::testing::distinct_clusters(2 * PER_PROCESS);
    let start = Instant::now();
    let children: Vec<Child> = all
        .chunks(PER_PROCESS)
        .enumerate()
        .map(|(i, clusters)| {
            let input = dir.join(format!("clusters-{i}.json"));
            std::fs::write(&input, serde_json::to_string(clusters).unwrap()).unwrap();
            Command::new(example("discover"))
                .arg(&input)
                .arg("--config")
                .arg(&config_path)
                .args(["--concurrency", "16", "--json"])
                .env("OPENAI_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
                .env("OPENAI_API_KEY", "sk-loopback")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut calls, mut refused, mut most) = (0u64, 0u64, 0u64);
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let outcomes = report["outcomes"].as_array().unwrap();
        assert_eq!(outcomes.len(), PER_PROCESS);
        assert!(
            outcomes.iter().all(|o| o["status"] == "succeeded"),
            "nothing lost"
        );
        calls += report["usage"]["calls_made"].as_u64().unwrap();
        refused += report["usage"]["rate_limited"].as_u64().unwrap();
        most = most.max(
            outcomes
                .iter()
                .map(|o| o["attempts"].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0),
        );
    }
    let last = start.elapsed();
    let total = (2 * PER_PROCESS) as f64;
    let least_time = (total - f64::from(RPM)) * 60.0 / f64::from(RPM) + LATENCY_MS as f64 / 1000.0;
    let ratio = last.as_secs_f64() / least_time;
    let share = refused as f64 / calls as f64;
    eprintln!(
        "2 processes × {PER_PROCESS} at {RPM}/min: last done in {last:.1?} = {ratio:.3} × the least \
         time; {refused} 429s of {calls} requests ({:.1}%); at most {most} calls for one request",
        100.0 * share
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ratio <= 1.15, "{ratio}");
    assert!(share <= 0.05, "{share}");
    assert!(most <= 10, "{most}");
}

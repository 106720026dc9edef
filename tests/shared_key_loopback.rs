//! Two `discover` processes on one API key, against `examples/limited_server.rs` on loopback
//! enforcing the key's limit with `x-ratelimit-*` headers (as providers do), neither told the
//! limit: nothing lost, the last done near the least time the shared limit allows, few 429s.
//! Real time: about 30 s.

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dynbatch::BatchingConfig;
use serde_json::Value;

const RPM: u32 = 600;
const PER_PROCESS: usize = 450;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let path = debug.join("examples").join(name);
    assert!(
        path.exists(),
        "{} (cargo test builds the examples)",
        path.display()
    );
    path
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_processes_on_one_key_share_it_politely() {
    let port = free_port();
    let _server = Server(
        Command::new(example("limited_server"))
            .args(["--port", &port.to_string(), "--rpm", &RPM.to_string()])
            .args(["--latency-ms", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "limited_server did not start");

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
    let least_time = (total - f64::from(RPM)) * 60.0 / f64::from(RPM) + 0.3;
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

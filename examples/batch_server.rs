//! A local `OpenAI`-compatible Batch API on loopback (files and batches), to try
//! `discover --batch-api` with no account and no network.
//!
//! ```text
//! cargo run --example batch_server -- [--port 8090] [--polls 3] [--fates expire:2,complete]
//! OPENAI_BASE_URL=http://127.0.0.1:8090/v1 cargo run --features openai --example discover -- \
//!     --batch-api --poll-secs 1 --journal batch.journal
//! ```
//!
//! Each batch reports `validating`, then `in_progress` for `--polls` polls, `finalizing`, and
//! its fate: `complete` (every line answered by the offline mock), `complete:N` (every N-th
//! line a 500 in the error file), `expire:N` (N lines answered, the rest `batch_expired`),
//! `fail` (validation fails), `truncated` (the output file cut off). `--fates` sets the fates
//! of the batches in the order they are created; later ones complete. Every 5 s it prints
//! what it was asked, and how many requests it answered more than once (paid twice).

#[path = "../tests/support/batch_server.rs"]
mod batch_server;

use std::net::TcpListener;
use std::time::Duration;

use batch_server::{FakeBatchApi, Fate};
use wiremock::MockServer;

fn fates(text: &str) -> Result<Vec<Fate>, String> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, n) = part.split_once(':').unwrap_or((part, ""));
            let n = || {
                n.parse::<usize>()
                    .map_err(|_| format!("--fates: {part:?} needs a number after ':'"))
            };
            Ok(match name {
                "complete" if part.contains(':') => Fate::Complete {
                    fail_every: Some(n()?.max(1)),
                },
                "complete" => Fate::Complete { fail_every: None },
                "expire" => Fate::Expire { answered: n()? },
                "fail" => Fate::Fail,
                "truncated" => Fate::Truncated,
                other => return Err(format!("--fates: unknown fate {other:?}")),
            })
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let (mut port, mut polls, mut scripted) = (8090u16, 3usize, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--polls" => polls = value()?.parse().map_err(|e| format!("--polls: {e}"))?,
            "--fates" => scripted = fates(&value()?)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("port {port}: {e}"))?;
    let server = MockServer::builder().listener(listener).start().await;
    let fake = FakeBatchApi::mount(&server, polls).await;
    fake.fates(scripted);
    eprintln!("Batch API on {}/v1", server.uri());
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let c = fake.counts();
        let twice = c.answered.values().filter(|n| **n > 1).count();
        let line = format!(
            "uploads {}, batches created {}, polls {}, lists {}, cancels {}, downloads {}; requests answered {}, more than once {twice}",
            c.uploads,
            c.creates,
            c.retrieves,
            c.lists,
            c.cancels,
            c.downloads,
            c.answered.len()
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
    }
}

//! Local batch APIs on loopback, to try `discover --batch-api` with no account and no network:
//! `OpenAI`'s (files and batches, under `/v1`) and Anthropic's Message Batches (under
//! `/v1/messages`), on one port.
//!
//! ```text
//! cargo run --example batch_server -- [--port 8090] [--polls 3] [--fates expire:2,complete]
//! OPENAI_BASE_URL=http://127.0.0.1:8090/v1 cargo run --features openai --example discover -- \
//!     --batch-api --poll-secs 1 --journal batch.journal
//! ANTHROPIC_BASE_URL=http://127.0.0.1:8090 ANTHROPIC_API_KEY=local \
//!     cargo run --features anthropic --example discover -- --batch-api --poll-secs 1
//! ```
//!
//! Each batch runs for `--polls` polls, then meets its fate: `complete` (every request answered
//! by the offline mock), `complete:N` (every N-th request a server error, worth another batch),
//! `expire:N` (N requests answered, the rest expired), `fail` (`OpenAI`: validation fails;
//! Anthropic: every request an `invalid_request_error`), `truncated` (the results cut off).
//! `--fates` sets the fates of the batches in the order they are created, for each API; later
//! ones complete. Every 5 s it prints what it was asked, and how many requests it answered more
//! than once (paid twice).

#[path = "../tests/support/batch_server.rs"]
mod batch_server;
#[path = "../tests/support/message_batches.rs"]
mod message_batches;

use std::net::TcpListener;
use std::time::Duration;

use batch_server::{FakeBatchApi, Fate};
use message_batches::FakeMessageBatches;
use wiremock::MockServer;

/// The Message Batches fate of an `OpenAI` one.
fn claude_fate(fate: &Fate) -> message_batches::Fate {
    match fate {
        Fate::Complete { fail_every } => message_batches::Fate::Complete {
            fail_every: *fail_every,
        },
        Fate::Fail => message_batches::Fate::Invalid,
        Fate::Expire { answered } => message_batches::Fate::Expire {
            answered: *answered,
        },
        Fate::Truncated => message_batches::Fate::Truncated,
    }
}

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
    let claude = FakeMessageBatches::mount(&server, polls).await;
    claude.fates(scripted.iter().map(claude_fate));
    let fake = FakeBatchApi::mount(&server, polls).await;
    fake.fates(scripted);
    eprintln!(
        "OpenAI Batch API on {0}/v1, Anthropic Message Batches on {0}/v1/messages/batches",
        server.uri()
    );
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let c = fake.counts();
        let twice = c.answered.values().filter(|n| **n > 1).count();
        let m = claude.counts();
        let claude_twice = m.answered.values().filter(|n| **n > 1).count();
        let line = format!(
            "openai: uploads {}, batches created {}, polls {}, lists {}, cancels {}, downloads {}; requests answered {}, more than once {twice}\n\
             anthropic: batches created {}, polls {}, lists {}, cancels {}, result reads {}; requests answered {}, more than once {claude_twice}",
            c.uploads,
            c.creates,
            c.retrieves,
            c.lists,
            c.cancels,
            c.downloads,
            c.answered.len(),
            m.creates,
            m.retrieves,
            m.lists,
            m.cancels,
            m.result_reads,
            m.answered.len(),
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
    }
}

//! Several clients on one API key, on Tokio's paused clock: each runner has a limiter of its
//! own (as separate processes do) and one server enforces the key's limit for all of them,
//! with `x-ratelimit-*` headers, as providers do. Nobody is told the limit.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockRateLimit};
use dynbatch::{RateLimiter, RunConfig, Runner};
use tokio::time::Instant;

use crate::runs;

use runs::one_per_batch;

const LATENCY: Duration = Duration::from_millis(300);

/// `clients` runners of `n` one-cluster calls each, at `rpm` shared: (time of the last to
/// finish as a multiple of the least time, share of 429s, most calls for one batch).
async fn replicas(clients: usize, n: usize, rpm: u32) -> (f64, f64, u64) {
    clients_on_one_key(clients, n, rpm, false).await
}

/// As [`replicas`], the runners sharing one [`RateLimiter`] when `shared`.
async fn clients_on_one_key(clients: usize, n: usize, rpm: u32, shared: bool) -> (f64, f64, u64) {
    let limiter = RateLimiter::new(&RunConfig::default(), &TokioTimer);
    let server = MockBackend::new()
        .with_latency(LATENCY, TokioTimer)
        .with_rate_limit(MockRateLimit::requests_per_minute(rpm), TokioTimer);
    let start = Instant::now();
    let runs = (0..clients).map(|c| {
        let server = server.clone();
        let limiter = limiter.clone();
        async move {
            let clusters = dynbatch::testing::distinct_clusters(n)
                .into_iter()
                .map(|mut cl| {
                    cl.id = format!("{c}-{}", cl.id);
                    cl
                })
                .collect::<Vec<_>>();
            let plan = one_per_batch::plan(&clusters);
            let mut runner = Runner::new(server, TokioTimer)
                .with_config(RunConfig::builder().concurrency(16).build().unwrap());
            if shared {
                runner = runner.with_rate_limiter(limiter);
            }
            let runner = runner.on_event(move |e| {
                if std::env::var_os("TRACE_429S").is_some() {
                    match e {
                        dynbatch::RunEvent::RateLimited { .. } => {
                            eprintln!("{c} 429 at {:.1}", start.elapsed().as_secs_f64());
                        }
                        dynbatch::RunEvent::LimitChanged { .. } => {
                            eprintln!("{c} {e:?} at {:.1}", start.elapsed().as_secs_f64());
                        }
                        _ => {}
                    }
                }
            });
            let report = runner.run(plan, &clusters, "x").await.unwrap().into_owned();
            report.check_accounting().unwrap();
            assert_eq!(report.outcome_counts(), (n, 0), "client {c} lost nothing");
            (start.elapsed(), report.usage.calls_made)
        }
    });
    let done = futures::future::join_all(runs).await;
    let last = done.iter().map(|(t, _)| *t).max().unwrap();
    let total = (clients * n) as f64;
    let least_time =
        (total - f64::from(rpm)).max(0.0) * 60.0 / f64::from(rpm) + LATENCY.as_secs_f64();
    let calls = server.calls() as f64;
    let refused = server.rate_limited() as f64;
    // The most calls one request took: each prompt's occurrences (clients whose batches
    // read the same count together: an upper bound).
    let mut per_prompt = std::collections::HashMap::new();
    for r in server.requests() {
        *per_prompt.entry(r.user_text()).or_insert(0u64) += 1;
    }
    let most = per_prompt.values().copied().max().unwrap_or(0);
    let ratio = last.as_secs_f64() / least_time;
    eprintln!(
        "{clients} clients × {n} at {rpm}/min{}: last done in {last:.1?} = {ratio:.3} × the least time; \
         {refused} 429s of {calls} requests ({:.1}%); at most {most} calls for one request",
        if shared { ", one shared limiter" } else { "" },
        100.0 * refused / calls
    );
    (ratio, refused / calls, most)
}

#[tokio::test(start_paused = true)]
async fn two_replicas_on_one_key_share_it_politely() {
    let (ratio, refused, most) = replicas(2, 1000, 120).await;
    assert!(ratio <= 1.15, "{ratio}");
    assert!(refused <= 0.05, "{refused}");
    assert!(most <= 10, "{most}");
}

#[tokio::test(start_paused = true)]
async fn four_replicas_on_one_key_share_it_politely() {
    let (ratio, refused, most) = replicas(4, 500, 120).await;
    assert!(ratio <= 1.15, "{ratio}");
    assert!(refused <= 0.05, "{refused}");
    assert!(most <= 10, "{most}");
}

#[tokio::test(start_paused = true)]
async fn runners_sharing_one_limiter_pace_as_one_client() {
    let (ratio, refused, most) = clients_on_one_key(3, 200, 120, true).await;
    assert!(ratio <= 1.05, "{ratio}");
    // As one client: the first burst's in-flight requests at most, then none.
    assert!(refused <= 0.03, "{refused}");
    assert!(most <= 3, "{most}");
}

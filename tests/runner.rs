//! The runner under every scripted fault, on Tokio's paused clock (no real sleeping): retries,
//! splits, re-asks, final states and accounting.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::report::{DiscoveryReport, OutcomeStatus};
use dynbatch::{Batcher, BatchingConfig, Cluster, ClusterState, Video};
use dynbatch::{RunConfig, RunEvent, Runner};
use tokio::time::Instant;

/// `n` high-quality clusters whose titles share skeletons, so the mock finds patterns.
fn clusters(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let topic = ["Espresso", "Sourdough", "Chess", "Running"][i % 4];
            let mut c = Cluster::new(
                format!("c{i:02}"),
                vec![
                    Video::new(format!("I Tried {topic} for 30 Days"), 5.0),
                    Video::new(format!("I Tried {topic} Gear for 100 Days"), 4.6),
                    Video::new(format!("Why {topic} Is Overrated"), 4.4),
                    Video::new(format!("Why Cheap {topic} Is Overrated"), 4.2),
                ],
            );
            c.size = 20;
            c.avg_performance = 4.5;
            c.thread_sources = (0..5).map(|s| format!("source {s}")).collect();
            c.is_wide = i % 3 == 0;
            c
        })
        .collect()
}

/// 9 clusters with a batch size of 3: three batches of three (THOROUGH).
fn nine() -> Vec<Cluster> {
    clusters(9)
}

fn runner(mock: &MockBackend, config: RunConfig) -> Runner<MockBackend, TokioTimer> {
    Runner::new(mock.clone(), TokioTimer).with_config(config)
}

async fn discover<'a>(
    input: &'a [Cluster],
    mock: &MockBackend,
    config: RunConfig,
) -> DiscoveryReport<'a> {
    let report = Batcher::default()
        .discover(input, "home hobbies", &runner(mock, config))
        .await
        .unwrap();
    assert_accounted(input, &report);
    report
}

/// Every input cluster has exactly one final state across plan and report.
fn assert_accounted(input: &[Cluster], report: &DiscoveryReport<'_>) {
    let batched: Vec<&str> = report
        .plan
        .batches
        .iter()
        .flat_map(|b| b.clusters.iter().map(AsRef::as_ref))
        .collect();
    let outcomes: Vec<&str> = report.outcomes.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        outcomes, batched,
        "one outcome per batched cluster, in plan order"
    );
    for entry in &report.plan.clusters {
        let has_outcome = outcomes.contains(&entry.id.as_ref());
        assert_eq!(
            has_outcome,
            matches!(entry.state, ClusterState::Batched { .. }),
            "{}",
            entry.id
        );
    }
    assert_eq!(report.plan.clusters.len(), input.len());
    report.check_accounting().unwrap();
    for o in &report.outcomes {
        assert_eq!(
            o.status == OutcomeStatus::Failed,
            o.reason.is_some(),
            "{o:?}"
        );
        assert!(o.attempts >= 1 || o.status == OutcomeStatus::Failed);
    }
    let u = &report.usage;
    assert!(u.calls_made <= u.calls_planned + u.max_extra_calls, "{u:?}");
    assert!(u.extra_calls <= u.max_extra_calls);
}

fn status(report: &DiscoveryReport<'_>, id: &str) -> (OutcomeStatus, Option<String>, u32) {
    let o = report.outcomes.iter().find(|o| o.id == id).unwrap();
    (o.status, o.reason.clone(), o.attempts)
}

#[tokio::test(start_paused = true)]
async fn everything_succeeds_with_one_call_per_batch() {
    let input = nine();
    let mock = MockBackend::new();
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (9, 0));
    assert_eq!(report.usage.calls_planned, 3);
    assert_eq!(report.usage.calls_made, 3);
    assert_eq!(
        (
            report.usage.retries,
            report.usage.splits,
            report.usage.reasks
        ),
        (0, 0, 0)
    );
    assert!(report.usage.prompt_tokens > 0 && report.usage.estimated_cost_usd.unwrap() > 0.0);
    // The mock derives real skeletons; consolidation merges them across clusters.
    let top = &report.patterns[0];
    assert!(top.clusters.len() > 1 && top.wide, "{top:?}");
    // "I Tried Espresso [X] for [X] Days" and "I Tried Chess [X] for [X] Days" are one pattern.
    let tried = report
        .patterns
        .iter()
        .find(|p| {
            p.template
                .as_deref()
                .is_some_and(|t| t.starts_with("I Tried"))
        })
        .unwrap();
    assert!(tried.clusters.len() >= 4, "{tried:?}");
    assert!(
        report
            .cluster_patterns
            .iter()
            .all(|c| !c.patterns.is_empty())
    );
}

#[tokio::test(start_paused = true)]
async fn event_handlers_add_up_and_each_sees_every_event() {
    let input = clusters(3);
    let mock = MockBackend::new();
    let (first, second) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let (a, b) = (first.clone(), second.clone());
    let runner = runner(&mock, RunConfig::default())
        .on_event(move |e| a.lock().unwrap().push(format!("{e:?}")))
        .on_event(move |e| b.lock().unwrap().push(format!("{e:?}")));
    Batcher::default()
        .discover(&input, "x", &runner)
        .await
        .unwrap();
    let (first, second) = (first.lock().unwrap(), second.lock().unwrap());
    assert!(first.len() >= 2, "{first:?}");
    assert_eq!(*first, *second);
}

#[test]
fn an_invariant_violation_is_an_error() {
    fn check(plan: &dynbatch::BatchPlan<'_>) -> Result<(), dynbatch::Error> {
        plan.check(&dynbatch::BatchingConfig::default())?;
        Ok(())
    }
    let input = clusters(3);
    let mut plan = Batcher::default().plan(&input).unwrap();
    assert!(check(&plan).is_ok());
    plan.batches.clear(); // the batched clusters are in no batch now
    assert!(matches!(check(&plan), Err(dynbatch::Error::Invariant(_))));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let input = clusters(3);
    let mock = MockBackend::scripted([
        MockStep::RateLimited(Some(Duration::from_secs(7))),
        MockStep::Answer,
    ]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let runner =
        runner(&mock, RunConfig::default()).on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let start = Instant::now();
    let report = Batcher::default()
        .discover(&input, "x", &runner)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report.outcome_counts(), (3, 0));
    // A 429 is neither a retry nor an extra call.
    let u = &report.usage;
    assert_eq!(
        (u.retries, u.rate_limited, u.extra_calls, u.calls_made),
        (0, 1, 0, 2)
    );
    assert!((u.rate_limit_wait_secs - 7.0).abs() < 1e-6, "{u:?}");
    assert_eq!(status(&report, "c00").2, 2);
    let events = events.lock().unwrap();
    assert!(matches!(
        events[0],
        RunEvent::BatchStarted { clusters: 3, .. }
    ));
    assert!(
        matches!(events[1], RunEvent::RateLimited { batch: 0, wait, .. } if wait == Duration::from_secs(7)),
        "{events:?}"
    );
    // One 429 alone is no evidence of a limit: the concurrency stays. Sending waits for the
    // server's delay, and says so.
    assert!(
        matches!(events[2], RunEvent::Throttled { wait, .. } if wait == Duration::from_secs(7)),
        "{events:?}"
    );
    assert!(matches!(events[3], RunEvent::Succeeded { clusters: 3, .. }));
    assert_eq!(mock.remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn server_errors_beyond_the_retries_requeue_the_batch_and_lose_nothing() {
    let mut input = nine();
    for (i, c) in input.iter_mut().enumerate() {
        c.videos[0].title = format!("I Tried Topic{i} for 30 Days");
    }
    let mock = MockBackend::scripted([
        MockStep::ServerError,
        MockStep::ServerError,
        MockStep::ServerError,
    ])
    .then_answer();
    let config = RunConfig::builder().concurrency(1).build().unwrap();
    let start = Instant::now();
    let report = discover(&input, &mock, config).await;
    assert_eq!(report.outcome_counts(), (9, 0));
    let u = &report.usage;
    // While batch 0 backs off, batches 1 and 2 go (no head-of-line blocking) and fail too;
    // three failures in a row pause sending (the circuit breaker) until a probe succeeds.
    assert_eq!(
        (
            u.retries,
            u.requeued,
            u.circuit_opened,
            u.calls_made,
            u.extra_calls
        ),
        (3, 0, 1, 6, 3)
    );
    let order: Vec<usize> = mock
        .requests()
        .iter()
        .map(|r| {
            report
                .plan
                .batches
                .iter()
                .position(|b| {
                    let c = input
                        .iter()
                        .find(|c| c.id == b.clusters[0].as_ref())
                        .unwrap();
                    r.messages[1].content.contains(&c.videos[0].title)
                })
                .unwrap()
        })
        .collect();
    assert_eq!(order[..3], [0, 1, 2]);
    let mut again = order[3..].to_vec();
    again.sort_unstable();
    assert_eq!(again, [0, 1, 2], "{order:?}");
    let first = &report.plan.batches[0].clusters[0];
    assert_eq!(status(&report, first).2, 2);
    let waited = start.elapsed();
    assert!(waited <= Duration::from_secs(1), "{waited:?}");

    // One batch: two retries, then to the back of the queue, then the probe succeeds.
    let input = clusters(3);
    let mock = MockBackend::scripted([
        MockStep::ServerError,
        MockStep::ServerError,
        MockStep::ServerError,
        MockStep::Answer,
    ]);
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (3, 0));
    let u = &report.usage;
    assert_eq!(
        (
            u.retries,
            u.requeued,
            u.circuit_opened,
            u.calls_made,
            u.extra_calls
        ),
        (2, 1, 1, 4, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_fail_at_once() {
    for (step, kind) in [
        (MockStep::Unauthorized, "authentication"),
        (MockStep::QuotaExhausted, "quota_exhausted"),
    ] {
        let input = clusters(3);
        let mock = MockBackend::scripted([step]);
        let report = discover(&input, &mock, RunConfig::default()).await;
        assert_eq!(report.outcome_counts(), (0, 3));
        let (_, reason, attempts) = status(&report, "c00");
        assert_eq!(attempts, 1);
        assert!(reason.unwrap().starts_with(&format!("{kind}: ")));
        assert_eq!(report.usage.calls_made, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_wait_beyond_the_patience_fails_without_sleeping() {
    let input = clusters(3);
    let mock = MockBackend::scripted([MockStep::RateLimited(Some(Duration::from_secs(3600)))]);
    let start = Instant::now();
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert!(start.elapsed() < Duration::from_secs(1));
    let reason = status(&report, "c00").1.unwrap();
    assert!(
        reason.starts_with("rate_limited: no answer for 600s while waiting for the rate limit (rate_limit_patience)"),
        "{reason}"
    );
    assert_eq!(mock.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn slow_backend_times_out_and_is_retried() {
    let input = clusters(3);
    let mock = MockBackend::new().with_latency(Duration::from_secs(90), TokioTimer);
    let config = RunConfig::builder()
        .request_timeout(Duration::from_secs(30))
        .max_retries(1)
        .max_extra_calls(1)
        .build()
        .unwrap();
    let start = Instant::now();
    let report = discover(&input, &mock, config).await;
    assert_eq!(report.outcome_counts(), (0, 3));
    let (_, reason, attempts) = status(&report, "c00");
    assert_eq!(attempts, 2);
    assert!(reason.unwrap().starts_with("timeout after 2 attempts"));
    assert!(
        start.elapsed() >= Duration::from_secs(60) && start.elapsed() < Duration::from_secs(62)
    );
}

#[tokio::test(start_paused = true)]
async fn unusable_answers_split_the_batch_down_to_single_clusters() {
    for fault in [MockStep::Malformed, MockStep::Refusal] {
        let input = clusters(3);
        let mock = MockBackend::scripted([fault.clone()]).then_answer();
        let report = discover(&input, &mock, RunConfig::default()).await;
        assert_eq!(report.outcome_counts(), (3, 0), "{fault:?}");
        assert_eq!(
            (report.usage.splits, report.usage.calls_made),
            (1, 3),
            "{fault:?}"
        );
        // Halves: 1 cluster, then 2.
        let sizes: Vec<usize> = mock
            .requests()
            .iter()
            .map(|r| r.messages[1].content.matches("\nCLUSTER ").count())
            .collect();
        assert_eq!(sizes, vec![3, 1, 2], "{fault:?}");
    }
    // An answer cut off at max_tokens keeps the clusters it completed (the first of three,
    // here) and asks again for the rest, together; no split.
    let input = clusters(3);
    let mock = MockBackend::scripted([MockStep::Truncated]).then_answer();
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (3, 0));
    let u = &report.usage;
    assert_eq!((u.splits, u.reasks, u.calls_made), (0, 1, 2));
    let sizes: Vec<usize> = mock
        .requests()
        .iter()
        .map(|r| r.messages[1].content.matches("\nCLUSTER ").count())
        .collect();
    assert_eq!(sizes, vec![3, 2]);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("cut off at max_tokens after 1 of 3 clusters")),
        "{:?}",
        report.warnings
    );
    // A re-ask cut off again is split; a lone cluster cut off cannot be: it fails with the
    // reason.
    let mock = MockBackend::scripted([
        MockStep::Truncated,
        MockStep::Truncated,
        MockStep::Answer,
        MockStep::Truncated,
    ]);
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (2, 1));
    let failed = report
        .outcomes
        .iter()
        .find(|o| o.status == OutcomeStatus::Failed)
        .unwrap();
    assert!(
        failed
            .reason
            .as_ref()
            .unwrap()
            .contains("cut off at max_tokens"),
        "{failed:?}"
    );
    assert_eq!(report.usage.splits, 1);
    assert_eq!(mock.remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn missing_clusters_are_asked_again_once() {
    let input = clusters(3);
    let mock = MockBackend::scripted([MockStep::Missing(vec![2]), MockStep::Answer]);
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (3, 0));
    assert_eq!(report.usage.reasks, 1);
    let asked_again = &mock.requests()[1].messages[1].content;
    assert!(asked_again.starts_with("Analyze 1 video clusters"));

    let mock = MockBackend::scripted([MockStep::Missing(vec![2]), MockStep::Missing(vec![1])]);
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (2, 1));
    let failed = report
        .outcomes
        .iter()
        .find(|o| o.status == OutcomeStatus::Failed)
        .unwrap();
    assert_eq!(
        failed.reason.as_deref(),
        Some("not answered, even when asked again")
    );
    assert_eq!(failed.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn unknown_cluster_numbers_are_reported_not_used() {
    let input = clusters(3);
    let mock = MockBackend::scripted([MockStep::UnknownCluster(42)]);
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert_eq!(report.outcome_counts(), (3, 0));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("names cluster 42")),
        "{:?}",
        report.warnings
    );
    assert!(report.patterns.iter().all(|p| p.pattern != "Invented …"));
}

#[tokio::test(start_paused = true)]
async fn the_extra_call_cap_is_respected_and_reported() {
    let input = nine();
    let mock = MockBackend::scripted([
        MockStep::ServerError,
        MockStep::Truncated,
        MockStep::ServerError,
    ])
    .then_answer();
    let config = RunConfig::builder()
        .max_extra_calls(1)
        .concurrency(1)
        .build()
        .unwrap();
    let report = discover(&input, &mock, config).await;
    assert_eq!(report.usage.extra_calls, 1);
    assert!(report.outcomes.iter().any(|o| {
        o.reason
            .as_deref()
            .is_some_and(|r| r.contains("extra-call budget exhausted"))
    }));
}

#[tokio::test(start_paused = true)]
async fn concurrency_bounds_requests_in_flight_and_keeps_plan_order() {
    let input = clusters(24); // EFFICIENT/BALANCED: several batches
    let mock = MockBackend::new().with_latency(Duration::from_secs(1), TokioTimer);
    let plan = Batcher::default().plan(&input).unwrap();
    let batches = u32::try_from(plan.batches.len()).unwrap();
    let start = Instant::now();
    let report = runner(
        &mock,
        RunConfig::builder()
            .concurrency(2)
            // Two in flight from the first request (`Auto` would send one alone first).
            .request_with(|r| {
                r.output = dynbatch::prompt::OutputMode::JsonObject;
            })
            .build()
            .unwrap(),
    )
    .run(plan, &input, "x")
    .await
    .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(u64::from(batches.div_ceil(2)))
    );
    assert_eq!(
        report.outcome_counts(),
        (
            input.len() - report.plan.counts().deferred - report.plan.counts().below_threshold,
            0
        )
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_starts_no_new_request() {
    let input = nine();
    let mock = MockBackend::new().with_latency(Duration::from_secs(10), TokioTimer);
    let runner = runner(&mock, RunConfig::builder().concurrency(1).build().unwrap());
    let batcher = Batcher::default();
    let run = batcher.discover(&input, "x", &runner);
    assert!(
        tokio::time::timeout(Duration::from_secs(15), run)
            .await
            .is_err()
    );
    assert_eq!(mock.calls(), 2);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(mock.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_script_fails_loudly() {
    let input = clusters(3);
    let mock = MockBackend::scripted([]);
    let report = discover(&input, &mock, RunConfig::default()).await;
    assert!(
        status(&report, "c00")
            .1
            .unwrap()
            .contains("MockBackend script exhausted: it had 0 steps")
    );
    assert_eq!(mock.overrun(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_plan_from_other_clusters_is_an_error() {
    let input = nine();
    let other = clusters(4);
    let plan = Batcher::default().plan(&other).unwrap();
    let err = runner(&MockBackend::new(), RunConfig::default())
        .run(plan, &input, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            dynbatch::Error::PlanMismatch(dynbatch::PlanMismatch::ClusterCount {
                plan: 4,
                input: 9
            })
        ),
        "{err}"
    );
    let _ = BatchingConfig::default();
}

#[tokio::test(start_paused = true)]
async fn requests_too_big_for_the_context_window_are_split_before_any_call() {
    use dynbatch::prompt::ModelLimits;
    // One THOROUGH batch of 3 clusters at 400 estimated tokens each, max_tokens 300 each.
    let input = clusters(3);
    let limits = |context_window| {
        RunConfig::builder()
            .request_with(|r| {
                r.model_limits = Some(ModelLimits {
                    context_window,
                    max_output_tokens: 500,
                });
            })
            .build()
            .unwrap()
    };
    // 1200 + 500 > 1200: split 1 + 2; 800 + 500 > 1200: split again; 400 + 300 fits.
    let mock = MockBackend::new();
    let report = discover(&input, &mock, limits(1200)).await;
    assert_eq!(report.outcome_counts(), (3, 0));
    assert_eq!(
        (report.usage.splits, report.usage.calls_made, mock.calls()),
        (2, 3, 3)
    );
    assert!(mock.requests().iter().all(|r| {
        r.messages[1]
            .content
            .starts_with("Analyze 1 video clusters")
    }));
    // A single cluster that cannot fit fails with the figures, and nothing is sent.
    let mock = MockBackend::new();
    let report = discover(&input, &mock, limits(500)).await;
    assert_eq!(report.outcome_counts(), (0, 3));
    assert_eq!(mock.calls(), 0);
    assert_eq!(
        status(&report, "c00").1.as_deref(),
        Some(
            "the estimated prompt (400 tokens) plus max_tokens (300) exceeds the context window (500)"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn the_report_compares_estimated_and_reported_prompt_tokens() {
    let input = nine();
    let mock = MockBackend::scripted([MockStep::Malformed]).then_answer();
    let report = discover(
        &input,
        &mock,
        RunConfig::builder().concurrency(1).build().unwrap(),
    )
    .await;
    // 3 planned requests + 2 halves, each answered and recorded, in batch order.
    assert_eq!(report.requests.len(), 5);
    assert!(report.requests.windows(2).all(|w| w[0].batch <= w[1].batch));
    assert_eq!(
        report
            .requests
            .iter()
            .map(|r| r.clusters)
            .collect::<Vec<_>>(),
        vec![3, 1, 2, 3, 3]
    );
    assert_eq!(report.requests[1].estimated_prompt_tokens, 400);
    let reported: u64 = report.requests.iter().filter_map(|r| r.prompt_tokens).sum();
    assert_eq!(reported, report.usage.prompt_tokens);
    let estimated: u64 = report
        .requests
        .iter()
        .map(|r| r.estimated_prompt_tokens)
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let expected = (reported as f64 - estimated as f64) / estimated as f64;
    assert!((report.usage.prompt_estimate_error.unwrap() - expected).abs() < 1e-12);
}

#[test]
fn the_run_future_is_send_so_it_can_be_spawned() {
    fn spawnable<F: std::future::Future + Send>(_: &F) {}
    let input = nine();
    let runner = runner(&MockBackend::new(), RunConfig::default());
    let plan = Batcher::default().plan(&input).unwrap();
    let run = runner.run(plan, &input, "x");
    spawnable(&run);
    let backend: Box<dyn dynbatch::backend::LlmBackend> = Box::new(MockBackend::new());
    let boxed = Runner::new(backend, TokioTimer);
    let plan = Batcher::default().plan(&input).unwrap();
    spawnable(&boxed.run(plan, &input, "x"));
}

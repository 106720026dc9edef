//! Anthropic's Message Batches end to end over real HTTP (a fake on wiremock): create with the
//! requests in the body, polls, results at `results_url` (absolute or a path), errored,
//! expired and cancelled requests, partial results, resume by journal and by id, a create
//! whose answer was lost (found by time and request count, or an error naming the
//! candidates). Polling sleeps on a paused Tokio clock.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use crate::support_message_batches as message_batches;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynbatch::TokioTimer;
use dynbatch::backend::anthropic::{AnthropicBackend, AnthropicBatches, read_batch_results};
use dynbatch::backend::{BatchBackend, BatchStatus, LineOutcome, TokenUsage};
use dynbatch::batch::{BatchEvent, BatchJob, BatchRunner, PollConfig, Remainder, export};
use dynbatch::report::{OutcomeStatus, PriceTier};
use dynbatch::store::{BatchRecord, MemoryStore, RequestKey, RunStore, SqliteStore};
use dynbatch::{Batcher, Error};
use dynbatch::{RunConfig, Runner};
use message_batches::{FakeMessageBatches, Fate};

use crate::support_bundled;
use support_bundled::bundled;

const CONCEPT: &str = "home espresso";
const MODEL: &str = "claude-haiku-4-5";

fn batches(server: &wiremock::MockServer) -> AnthropicBatches {
    AnthropicBackend::builder()
        .base_url(server.uri())
        .api_key("sk-ant-test")
        .model(MODEL)
        // Tokio's clock is paused: a request timeout would fire while the server answers.
        .without_timeouts()
        .build_batches()
        .unwrap()
}

fn runner(
    server: &wiremock::MockServer,
    events: &Arc<Mutex<Vec<BatchEvent>>>,
) -> BatchRunner<AnthropicBatches> {
    let events = Arc::clone(events);
    BatchRunner::new(batches(server), TokioTimer)
        .on_event(move |e| events.lock().unwrap().push(e.clone()))
}

fn all_succeeded(report: &dynbatch::report::DiscoveryReport<'_>) -> bool {
    report
        .outcomes
        .iter()
        .all(|o| o.status == OutcomeStatus::Succeeded)
}

#[tokio::test(start_paused = true)]
async fn the_whole_flow_creates_polls_reads_results_and_prices_at_the_batch_tier() {
    let (server, fake) = FakeMessageBatches::start(2).await;
    // Every third request is an api_error: worth another batch.
    fake.fates([Fate::Complete {
        fail_every: Some(3),
    }]);
    let events = Arc::default();
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();
    let run = runner(&server, &events)
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(all_succeeded(&run.report), "{:?}", run.report.outcomes);
    assert!(run.unanswered.is_empty());
    let counts = fake.counts();
    assert_eq!(counts.creates, 2);
    assert_eq!(fake.batch_sizes(), vec![n, n / 3]);
    // Every request answered exactly once: none paid twice.
    assert_eq!(counts.answered.len(), n);
    assert!(counts.answered.values().all(|&k| k == 1));
    // Results read from an absolute URL (batch 0) and from a path (batch 1).
    assert_eq!(counts.result_reads, 2);
    let polled: Vec<BatchStatus> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BatchEvent::Polled { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    let once = [
        BatchStatus::InProgress,
        BatchStatus::InProgress,
        BatchStatus::Completed,
    ];
    assert_eq!(polled, [once, once].concat());
    // Costs at Claude's batch prices: half of Haiku 4.5's $1 in, $5 out.
    assert_eq!(run.report.usage.price_tier, PriceTier::Batch);
    let live = RunConfig::default()
        .prices()
        .cost(
            MODEL,
            &TokenUsage::new(
                run.report.usage.prompt_tokens,
                run.report.usage.completion_tokens,
            ),
        )
        .unwrap();
    let cost = run.report.usage.estimated_cost_usd.unwrap();
    assert!(cost > 0.0);
    assert!((cost - live / 2.0).abs() < 1e-12, "{cost} vs {live}");
    // One call per request that has a line, as for a live run without retries.
    assert_eq!(run.report.usage.calls_made, n as u64);
}

#[tokio::test(start_paused = true)]
async fn invalid_requests_fail_with_the_reason_and_are_not_sent_again() {
    let (server, fake) = FakeMessageBatches::start(1).await;
    fake.fates([Fate::Invalid]);
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let run = runner(&server, &Arc::default())
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(!run.report.outcomes.is_empty());
    for o in &run.report.outcomes {
        assert_eq!(o.status, OutcomeStatus::Failed);
        let reason = o.reason.as_deref().unwrap();
        assert!(
            reason.contains("invalid_request_error: max_tokens: too large"),
            "{reason}"
        );
    }
    assert_eq!(fake.counts().creates, 1);
    assert!(run.unanswered.is_empty());
}

/// Real time (a live run over HTTP on a paused clock would see its request timeouts fire
/// while the server answers), with polls 1 ms apart.
#[tokio::test]
async fn expired_requests_go_to_a_new_batch_or_to_a_live_run() {
    let fast =
        PollConfig::default().with_backoff(Duration::from_millis(1), 1.5, Duration::from_millis(1));
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();

    let (server, fake) = FakeMessageBatches::start(1).await;
    fake.fates([Fate::Expire { answered: 3 }]);
    let events = Arc::default();
    let run = runner(&server, &events)
        .with_poll(fast)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(all_succeeded(&run.report));
    assert_eq!(fake.batch_sizes(), vec![n, n - 3]);
    assert!(events.lock().unwrap().contains(&BatchEvent::Resubmitting {
        requests: n - 3,
        round: 1
    }));
    assert!(fake.counts().answered.values().all(|&k| k == 1));

    // Left for a live run: the answers go to a journal, and a live run with that journal
    // sends only the rest, to the Messages API.
    let (server, fake) = FakeMessageBatches::start(1).await;
    fake.fates([Fate::Expire { answered: 3 }]);
    let run = runner(&server, &Arc::default())
        .with_poll(fast)
        .with_remainder(Remainder::Leave)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert_eq!(run.unanswered.len(), n - 3);
    let failed = run
        .report
        .outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Failed);
    for o in failed {
        assert!(o.reason.as_deref().unwrap().contains("expired"), "{o:?}");
    }
    let journal = MemoryStore::default();
    assert_eq!(run.results.record(&run.input, &journal).unwrap(), 3);
    let live = AnthropicBackend::builder()
        .base_url(server.uri())
        .api_key("sk-ant-test")
        .model(MODEL)
        .without_timeouts()
        .build()
        .unwrap();
    let report = Runner::new(live, TokioTimer)
        .with_store(journal)
        .run(plan, &clusters, CONCEPT)
        .await
        .unwrap();
    report.check_accounting().unwrap();
    assert!(all_succeeded(&report), "{:?}", report.outcomes);
    assert_eq!(report.usage.cached, 3);
    assert_eq!(fake.counts().live_calls, n - 3, "{:?}", report.usage);
}

#[tokio::test(start_paused = true)]
async fn partial_results_never_lose_a_cluster() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let (server, fake) = FakeMessageBatches::start(1).await;
    fake.fates([Fate::Truncated]);
    let run = runner(&server, &Arc::default())
        .with_remainder(Remainder::Leave)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(
        run.report
            .warnings
            .iter()
            .any(|w| w.contains("not a message batch result")),
        "{:?}",
        run.report.warnings
    );
    // The cut line's request has no line: unanswered, and its clusters failed with why.
    assert_eq!(run.unanswered.len(), 1);
    let cut = run.unanswered[0];
    for o in run.report.outcomes.iter().filter(|o| o.batch == cut) {
        assert_eq!(o.status, OutcomeStatus::Failed);
        assert!(
            o.reason
                .as_deref()
                .unwrap()
                .contains("no result line for it"),
            "{o:?}"
        );
    }
    // With new batches, the cut request is sent once more and answered.
    let (server, fake) = FakeMessageBatches::start(1).await;
    fake.fates([Fate::Truncated]);
    let run = runner(&server, &Arc::default())
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    assert!(all_succeeded(&run.report));
    assert_eq!(fake.batch_sizes()[1], 1);
}

#[tokio::test(start_paused = true)]
async fn a_second_run_with_the_journal_attaches_and_an_id_attaches_with_no_journal() {
    let dir = std::env::temp_dir().join(format!("dynbatch-msgbatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resume.journal");
    let _ = std::fs::remove_file(&path);
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let (server, fake) = FakeMessageBatches::start(50).await;

    // The first run gives up waiting (as if killed).
    let err = runner(&server, &Arc::default())
        .with_poll(PollConfig::default().with_max_wait(Duration::from_secs(60)))
        .with_store(SqliteStore::open(&path).unwrap())
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BatchApi { operation, .. } if operation.contains("msgbatch_000")),
        "{err}"
    );
    // The second attaches to it from the journal.
    let events = Arc::default();
    let run = runner(&server, &events)
        .with_store(SqliteStore::open(&path).unwrap())
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    assert!(all_succeeded(&run.report));
    assert_eq!(fake.counts().creates, 1);
    assert!(run.job.batches[0].attached);

    // By id, with no journal: Anthropic keeps no input, so the requests come from the results.
    let runner = runner(&server, &Arc::default());
    let input = runner
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    let attached = runner
        .attach(&input, &["msgbatch_000".to_owned()])
        .await
        .unwrap();
    assert!(attached[0].requests.is_empty());
    let run = runner
        .finish(
            plan.clone(),
            &clusters,
            CONCEPT,
            &RunConfig::default(),
            input,
            attached,
        )
        .await
        .unwrap();
    assert!(all_succeeded(&run.report));
    assert_eq!(
        run.job.batches[0].requests.len(),
        plan.batches.len(),
        "learnt from the results"
    );
    assert_eq!(fake.counts().creates, 1);
    // A batch of other clusters is refused by name.
    let other = clusters[..clusters.len() / 2].to_vec();
    let other_plan = Batcher::default().plan(&other).unwrap();
    let other_input = runner
        .input(&other_plan, &other, CONCEPT, &RunConfig::default())
        .unwrap();
    let foreign = runner
        .attach(&other_input, &["msgbatch_000".to_owned()])
        .await
        .unwrap();
    let err = runner
        .finish(
            other_plan,
            &other,
            CONCEPT,
            &RunConfig::default(),
            other_input,
            foreign,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a request of this plan"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_answer_was_lost_is_found_by_time_and_count_not_paid_twice() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();

    // In the same run: the create's answer is a 500, but the batch exists.
    let (server, fake) = FakeMessageBatches::start(1).await;
    fake.lose_creates(1);
    let events = Arc::default();
    let run = runner(&server, &events)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    assert!(all_succeeded(&run.report));
    assert_eq!(fake.counts().creates, 1, "found, not created again");
    assert!(fake.counts().lists >= 1);
    assert!(run.job.batches[0].attached);
    assert!(fake.counts().answered.values().all(|&k| k == 1));

    // After a kill: the journal holds the create as pending, and the account has one batch
    // that fits (and an older one of another size, over two pages).
    let (server, fake) = FakeMessageBatches::start(1).await;
    let backend = batches(&server);
    let runner = runner(&server, &Arc::default());
    let input = runner
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    assert_eq!(input.len(), n);
    // The whole plan fits one batch: its input is the export.
    let jsonl = export(&plan, &clusters, CONCEPT, &RunConfig::default(), &backend).unwrap();
    let key = RequestKey::of_batch_input(jsonl.as_bytes());
    let small = format!("{}\n", jsonl.lines().next().unwrap());
    for _ in 0..2 {
        backend.create(&small, "x").await.unwrap();
    }
    let journal = MemoryStore::default();
    let pending = BatchRecord {
        batch_id: None,
        sent_at: Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        ),
        requests: n,
    };
    journal.put_batch(&key, &pending).unwrap();
    backend.create(&jsonl, "x").await.unwrap();
    let run = runner
        .with_store(journal.clone())
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    assert!(all_succeeded(&run.report));
    assert_eq!(fake.counts().creates, 3);
    assert_eq!(run.job.batch_ids(), ["msgbatch_002"]);
    assert_eq!(
        journal
            .get_batch(&key)
            .unwrap()
            .unwrap()
            .batch_id
            .as_deref(),
        Some("msgbatch_002")
    );

    // Two that fit: which one is for a person to say; the error names both.
    let (server, fake) = FakeMessageBatches::start(1).await;
    let backend = batches(&server);
    backend.create(&jsonl, "x").await.unwrap();
    backend.create(&jsonl, "x").await.unwrap();
    let journal = MemoryStore::default();
    journal.put_batch(&key, &pending).unwrap();
    let err = self::runner(&server, &Arc::default())
        .with_store(journal)
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap_err();
    match &err {
        Error::UnsureBatch {
            requests,
            candidates,
        } => {
            assert_eq!(*requests, n);
            assert_eq!(candidates, &["msgbatch_001", "msgbatch_000"]);
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("msgbatch_001, msgbatch_000"),
        "{err}"
    );
    assert_eq!(fake.counts().creates, 2, "nothing more was created");
}

#[tokio::test(start_paused = true)]
async fn overloaded_calls_are_retried_and_cancel_ends_a_batch() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let (server, fake) = FakeMessageBatches::start(3).await;
    fake.fault("messages/batches/msgbatch_000", 529);
    fake.fault("messages/batches/msgbatch_000", 529);
    let events = Arc::default();
    let runner = runner(&server, &events);
    let input = runner
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    let batches = runner
        .submit(&input, &(0..input.len()).collect::<Vec<_>>())
        .await
        .unwrap();
    let job = BatchJob { batches };
    assert_eq!(runner.cancel_job(&job).await.unwrap(), 1);
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, BatchEvent::CallFailed { .. }))
        .count();
    assert_eq!(failed, 2, "two 529s, each tried again");
    let run = runner
        .finish(
            plan,
            &clusters,
            CONCEPT,
            &RunConfig::default(),
            input,
            job.batches,
        )
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert_eq!(fake.counts().cancels, 1);
    assert_eq!(
        fake.counts().creates,
        1,
        "a cancelled batch is not sent again"
    );
    assert!(run.report.outcomes.iter().all(|o| {
        o.status == OutcomeStatus::Failed && o.reason.as_deref().unwrap().contains("canceled")
    }));
}

#[test]
fn result_lines_of_every_type_and_shape() {
    let text = [
        r#"{"custom_id":"a","result":{"type":"succeeded","message":{"type":"message","model":"claude-x","content":[{"type":"text","text":"{}"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":4}}}}"#,
        r#"{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"busy"}}}}"#,
        r#"{"custom_id":"c","result":{"type":"errored","error":{"type":"invalid_request_error","message":"bad"}}}"#,
        r#"{"custom_id":"d","result":{"type":"expired"}}"#,
        r#"{"custom_id":"e","result":{"type":"canceled"}}"#,
        r#"{"custom_id":"f","result":{"type":"vanished"}}"#,
        r#"{"custom_id":"g"}"#,
        "",
        "garbage",
    ]
    .join("\n");
    let out = read_batch_results("r", &text);
    assert_eq!(out.lines.len(), 6);
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(
        out.warnings[0].starts_with("r line 7:"),
        "{:?}",
        out.warnings
    );
    match &out.lines[0].outcome {
        LineOutcome::Answered(a) => {
            assert_eq!(a.model, "claude-x");
            assert_eq!(a.finish_reason, dynbatch::backend::FinishReason::Length);
        }
        other => panic!("{other:?}"),
    }
    let failed: Vec<(&str, bool)> = out.lines[1..]
        .iter()
        .map(|l| match &l.outcome {
            LineOutcome::Failed { code, retry, .. } => (code.as_str(), *retry),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        failed,
        [
            ("overloaded_error", true),
            ("invalid_request_error", false),
            ("expired", true),
            ("canceled", false),
            ("vanished", false),
        ]
    );
}

//! The Batch API end to end over real HTTP (a fake Batch API on wiremock): upload, create,
//! polls, output and error files, failed and expired batches, splits, resume by journal and
//! by batch id, cancel, malformed result files. Polling sleeps on a paused Tokio clock.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use crate::batch_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use batch_server::{FakeBatchApi, Fate};
use dynbatch::backend::mock::MockBackend;
use dynbatch::backend::openai::{OpenAiBackend, OpenAiBatches, read_batch_file};
use dynbatch::backend::{BatchBackend, BatchLimits, BatchStatus};
use dynbatch::batch::{BatchEvent, BatchJob, BatchRunner, PollConfig, Remainder, export};
use dynbatch::report::{OutcomeStatus, PriceTier};
use dynbatch::store::{BatchRecord, MemoryStore, RequestKey, RunStore, SqliteStore};
use dynbatch::{Batcher, Cluster, Error};
use dynbatch::{RunConfig, Runner};
use dynbatch::{Sleep, Timer, TokioTimer};

use crate::support_bundled;
use support_bundled::bundled;

/// The Tokio clock (paused in these tests), recording every wait asked for.
#[derive(Debug, Default, Clone)]
struct Clock(Arc<Mutex<Vec<Duration>>>);

impl Timer for Clock {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.0.lock().unwrap().push(duration);
        TokioTimer.sleep(duration)
    }
    fn now(&self) -> std::time::Instant {
        TokioTimer.now()
    }
}

fn client(
    server: &wiremock::MockServer,
    events: &Arc<Mutex<Vec<BatchEvent>>>,
) -> BatchRunner<OpenAiBatches> {
    client_on(server, events, Clock::default())
}

fn client_on(
    server: &wiremock::MockServer,
    events: &Arc<Mutex<Vec<BatchEvent>>>,
    clock: Clock,
) -> BatchRunner<OpenAiBatches> {
    let events = Arc::clone(events);
    let batches = OpenAiBackend::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key("sk-test")
        // Tokio's clock is paused: a request timeout would fire while the server answers.
        .without_timeouts()
        .build_batches()
        .unwrap();
    BatchRunner::new(batches, clock).on_event(move |e| events.lock().unwrap().push(e.clone()))
}

fn statuses(events: &Arc<Mutex<Vec<BatchEvent>>>) -> Vec<BatchStatus> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BatchEvent::Polled { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

const CONCEPT: &str = "home espresso";

#[tokio::test(start_paused = true)]
async fn the_whole_flow_uploads_creates_polls_downloads_and_reports() {
    let (server, fake) = FakeBatchApi::start(2).await;
    // Every third line fails with a 500 (in the error file): retryable, so a second batch.
    fake.fates([Fate::Complete {
        fail_every: Some(3),
    }]);
    let events = Arc::default();
    let clock = Clock::default();
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();
    let run = client_on(&server, &events, clock.clone())
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(
        run.report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded),
        "{:?}",
        run.report.outcomes
    );
    assert!(run.unanswered.is_empty());
    let counts = fake.counts();
    assert_eq!((counts.uploads, counts.creates), (2, 2));
    assert_eq!(fake.batch_sizes(), vec![n, n / 3]);
    // Every request answered exactly once: none paid twice.
    assert_eq!(counts.answered.len(), n);
    assert!(counts.answered.values().all(|&k| k == 1));
    assert_eq!(run.job.batches.len(), 2);
    // Each batch seen through validating, in progress (twice), finalizing, completed.
    let once = [
        BatchStatus::Validating,
        BatchStatus::InProgress,
        BatchStatus::InProgress,
        BatchStatus::Finalizing,
        BatchStatus::Completed,
    ];
    assert_eq!(statuses(&events), [once, once].concat());
    // The polls back off: 10 s, then 1.5 times longer each time, capped at 5 min.
    let waits = clock.0.lock().unwrap().clone();
    assert_eq!(
        waits[..4],
        [10.0, 15.0, 22.5, 33.75].map(Duration::from_secs_f64)
    );
    assert!(waits.iter().all(|w| *w <= Duration::from_secs(300)));
    // Costs at batch prices, and the calls are the lines the files held.
    assert_eq!(run.report.usage.price_tier, PriceTier::Batch);
    let live = RunConfig::default()
        .prices()
        .cost(
            "gpt-4o-mini",
            &dynbatch::backend::TokenUsage::new(
                run.report.usage.prompt_tokens,
                run.report.usage.completion_tokens,
            ),
        )
        .unwrap();
    let cost = run.report.usage.estimated_cost_usd.unwrap();
    assert!((cost - live / 2.0).abs() < 1e-12, "{cost} vs {live}");
    assert_eq!(run.report.usage.calls_made, n as u64);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_fails_its_clusters_with_the_reason_and_is_not_sent_again() {
    let (server, fake) = FakeBatchApi::start(1).await;
    fake.fates([Fate::Fail]);
    let events = Arc::default();
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let batched = plan.counts().batched;
    let run = client(&server, &events)
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert_eq!(run.report.outcomes.len(), batched);
    for o in &run.report.outcomes {
        assert_eq!(o.status, OutcomeStatus::Failed);
        let reason = o.reason.as_deref().unwrap();
        assert!(
            reason
                .contains("batch_000 failed: invalid_request (line 1): the model does not support"),
            "{reason}"
        );
    }
    assert_eq!(fake.counts().creates, 1);
    assert!(run.unanswered.is_empty(), "a failed batch would fail again");
    assert_eq!(run.report.usage.calls_made, 0);
}

#[tokio::test(start_paused = true)]
async fn an_expired_batch_leaves_the_rest_for_a_new_batch_or_a_live_run() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();

    // A new batch for the rest.
    let (server, fake) = FakeBatchApi::start(1).await;
    fake.fates([Fate::Expire { answered: 2 }]);
    let events = Arc::default();
    let run = client(&server, &events)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(
        run.report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded)
    );
    assert_eq!(fake.batch_sizes(), vec![n, n - 2]);
    assert!(events.lock().unwrap().contains(&BatchEvent::Resubmitting {
        requests: n - 2,
        round: 1
    }));

    // Left for a live run: the report says why, the answers go to a journal, and a live run
    // with that journal calls only for the rest.
    let (server, fake) = FakeBatchApi::start(1).await;
    fake.fates([Fate::Expire { answered: 2 }]);
    let run = client(&server, &Arc::default())
        .with_remainder(Remainder::Leave)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert_eq!(fake.counts().creates, 1);
    assert_eq!(run.unanswered, (2..n).collect::<Vec<_>>());
    let failed: Vec<_> = run
        .report
        .outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Failed)
        .collect();
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|o| o.batch >= 2 && o.reason.as_deref().unwrap().contains("batch_expired"))
    );
    let journal = MemoryStore::default();
    assert_eq!(run.results.record(&run.input, &journal).unwrap(), 2);
    let mock = MockBackend::new();
    let live = Runner::new(&mock, TokioTimer)
        .with_store(journal.clone())
        .run(plan, &clusters, CONCEPT)
        .await
        .unwrap();
    live.check_accounting().unwrap();
    assert!(
        live.outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded)
    );
    assert_eq!(mock.calls(), (n - 2) as u64);
    assert_eq!(live.usage.cached, 2);
}

#[tokio::test(start_paused = true)]
async fn a_plan_over_the_limits_is_split_into_batches_and_merged() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();
    let (server, fake) = FakeBatchApi::start(1).await;
    let client = client(&server, &Arc::default());
    // By request count.
    let run = client
        .with_limits(BatchLimits::new(n.div_ceil(2), usize::MAX))
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert_eq!(fake.batch_sizes(), vec![n.div_ceil(2), n / 2]);
    assert!(
        run.report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded)
    );
    let mut ids: Vec<usize> = run
        .job
        .batches
        .iter()
        .flat_map(|b| b.requests.clone())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());

    // By bytes: no file over the limit, every request in exactly one.
    let client = self::client(&server, &Arc::default());
    let input = client
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    let all: Vec<usize> = (0..n).collect();
    let whole = export(
        &plan,
        &clusters,
        CONCEPT,
        &RunConfig::default(),
        client.backend(),
    )
    .unwrap();
    let limit = whole.len() / 3;
    let submitted = client
        .with_limits(BatchLimits::new(50_000, limit))
        .submit(&input, &all)
        .await
        .unwrap();
    assert!(submitted.len() >= 3);
    assert_eq!(
        submitted
            .iter()
            .flat_map(|s| s.requests.clone())
            .collect::<Vec<_>>(),
        all
    );
    // One request larger than a whole file: an error that says which, and nothing sent.
    let uploads = fake.counts().uploads;
    let err = self::client(&server, &Arc::default())
        .with_limits(BatchLimits::new(50_000, 100))
        .submit(&input, &all)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than a whole batch"), "{err}");
    assert_eq!(fake.counts().uploads, uploads);
}

#[tokio::test(start_paused = true)]
async fn a_second_run_with_the_journal_attaches_instead_of_submitting_again() {
    let dir = std::env::temp_dir().join(format!("dynbatch-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resume.journal");
    let _ = std::fs::remove_file(&path);
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let (server, fake) = FakeBatchApi::start(50).await;

    // The first run gives up waiting (the process might as well have been killed).
    let impatient = client(&server, &Arc::default())
        .with_poll(PollConfig::default().with_max_wait(Duration::from_secs(60)));
    let err = impatient
        .with_store(SqliteStore::open(&path).unwrap())
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BatchApi { operation, .. } if operation.contains("batch_000")),
        "{err}"
    );
    assert_eq!(fake.counts().creates, 1);

    // The second, from the same journal, attaches to batch_000 and finishes it.
    let events = Arc::default();
    let run = client(&server, &events)
        .with_store(SqliteStore::open(&path).unwrap())
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(
        run.report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded)
    );
    let counts = fake.counts();
    assert_eq!((counts.uploads, counts.creates), (1, 1));
    assert!(run.job.batches[0].attached);
    assert!(matches!(
        events.lock().unwrap()[0],
        BatchEvent::Attached { ref batch_id, .. } if batch_id == "batch_000"
    ));

    // Attach by id, with no journal at all: the batch's requests come from its input file.
    let client = client(&server, &Arc::default());
    let input = client
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    let batches = client
        .attach(&input, &["batch_000".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        batches[0].requests,
        (0..plan.batches.len()).collect::<Vec<_>>()
    );
    let run = client
        .finish(
            plan.clone(),
            &clusters,
            CONCEPT,
            &RunConfig::default(),
            input,
            batches,
        )
        .await
        .unwrap();
    assert!(
        run.report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Succeeded)
    );
    assert_eq!(fake.counts().creates, 1);
    // A batch of other clusters is refused by name.
    let other: Vec<Cluster> = clusters[..clusters.len() / 2].to_vec();
    let other_plan = Batcher::default().plan(&other).unwrap();
    let other_input = client
        .input(&other_plan, &other, CONCEPT, &RunConfig::default())
        .unwrap();
    let err = client
        .attach(&other_input, &["batch_000".to_owned()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a request of this plan"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_batch_created_but_not_recorded_is_found_by_its_key_not_paid_twice() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let (server, fake) = FakeBatchApi::start(1).await;
    let client = client(&server, &Arc::default());
    let input = client
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    // The whole plan fits one file: its input is the export.
    let jsonl = export(
        &plan,
        &clusters,
        CONCEPT,
        &RunConfig::default(),
        client.backend(),
    )
    .unwrap();
    let key = RequestKey::of_batch_input(jsonl.as_bytes());
    // A process that recorded the batch as pending, created it and died before recording it.
    let journal = MemoryStore::default();
    journal
        .put_batch(
            &key,
            &BatchRecord {
                batch_id: None,
                sent_at: Some(0),
                requests: input.len(),
            },
        )
        .unwrap();
    client
        .backend()
        .create(&jsonl, &key.to_string())
        .await
        .unwrap();
    let run = client
        .with_store(journal.clone())
        .run(plan, &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert_eq!((fake.counts().uploads, fake.counts().creates), (1, 1));
    assert_eq!(
        journal
            .get_batch(&key)
            .unwrap()
            .unwrap()
            .batch_id
            .as_deref(),
        Some("batch_000")
    );
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_and_cancel_ends_a_batch() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let (server, fake) = FakeBatchApi::start(3).await;
    fake.fault("files", 503);
    fake.fault("batches/batch_000", 500);
    let events = Arc::default();
    let client = client(&server, &events);
    let input = client
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    let batches = client
        .submit(&input, &(0..input.len()).collect::<Vec<_>>())
        .await
        .unwrap();
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, BatchEvent::CallFailed { .. }))
        .count();
    assert_eq!(failed, 1, "the 503 upload was tried again");
    let job = BatchJob { batches };
    assert_eq!(client.cancel_job(&job).await.unwrap(), 1);
    let run = client
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
    assert!(
        run.report
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Failed
                && o.reason.as_deref().unwrap().contains("cancelled"))
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_result_files_never_panic_or_lose_a_cluster() {
    let clusters = bundled();
    let plan = Batcher::default().plan(&clusters).unwrap();
    let n = plan.batches.len();
    // Over HTTP: an output file cut off in its last line.
    let (server, fake) = FakeBatchApi::start(1).await;
    fake.fates([Fate::Truncated, Fate::Truncated, Fate::Truncated]);
    let run = client(&server, &Arc::default())
        .with_remainder(Remainder::Leave)
        .run(plan.clone(), &clusters, CONCEPT, &RunConfig::default())
        .await
        .unwrap();
    run.report.check_accounting().unwrap();
    assert!(
        run.report
            .warnings
            .iter()
            .any(|w| w.contains("not a Batch API result"))
    );
    assert_eq!(
        run.unanswered.len(),
        1,
        "the cut line's request is unanswered"
    );
    let last = run.unanswered[0];
    assert!(
        run.report
            .outcomes
            .iter()
            .filter(|o| o.batch == last)
            .all(|o| {
                o.status == OutcomeStatus::Failed
                    && o.reason
                        .as_deref()
                        .unwrap()
                        .contains("no result line for it")
            })
    );

    // Files of any shape: garbage, unknown and duplicate ids, lines with neither part.
    let client = client(&server, &Arc::default());
    let input = client
        .input(&plan, &clusters, CONCEPT, &RunConfig::default())
        .unwrap();
    let id = |i: usize| input.custom_ids()[i].clone();
    let file = format!(
        "{{not json\n\n[1,2]\n\u{0}\u{ffff}\n{{\"custom_id\":\"nope\",\"response\":null}}\n{{\"custom_id\":\"{}\"}}\n{{\"custom_id\":\"{}\",\"error\":{{\"code\":\"first_error\"}}}}\n{{\"custom_id\":\"{}\",\"error\":{{\"code\":\"second_error\"}}}}",
        id(0),
        id(1),
        id(1)
    );
    let report = dynbatch::batch::import(
        plan.clone(),
        &clusters,
        CONCEPT,
        &RunConfig::default(),
        read_batch_file("output", &file),
    )
    .await
    .unwrap();
    let warnings = report.warnings.join("\n");
    assert!(
        warnings.contains("unknown custom_id \"nope\""),
        "{warnings}"
    );
    assert!(warnings.contains("appears again"), "{warnings}");
    assert!(warnings.contains("not a Batch API result"), "{warnings}");
    report.check_accounting().unwrap();
    assert_eq!(report.outcomes.len(), plan.counts().batched);
    let reason = |b: usize| {
        report
            .outcomes
            .iter()
            .find(|o| o.batch == b)
            .unwrap()
            .reason
            .clone()
            .unwrap()
    };
    assert!(
        reason(0).contains("neither a response nor an error"),
        "{}",
        reason(0)
    );
    assert!(reason(1).contains("second_error"), "{}", reason(1));
    assert!(
        reason(n - 1).contains("no result line for"),
        "{}",
        reason(n - 1)
    );
}

//! The journal of answers: a run dropped or interrupted at any point and run again with the
//! same store pays no answered call twice and ends with the uninterrupted run's results; a
//! changed request is never served a stale answer; results stream as they arrive; the SQLite
//! journal refuses foreign, newer or damaged files with a clear error.

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::hash::{Hash, Hasher};

use dynbatch::TokioTimer;
use dynbatch::backend::mock::{MockBackend, MockStep};
use dynbatch::backend::{BackendError, ChatRequest, ChatResponse, LlmBackend};
use dynbatch::report::{DiscoveryReport, OutcomeStatus};
use dynbatch::store::{MemoryStore, RequestKey, RunStore, SqliteStore, StoreError};
use dynbatch::{BatchPlan, Batcher, BatchingConfig, Cluster};
use dynbatch::{RunConfig, RunEvent, Runner};
use proptest::prelude::*;

const LATENCY: Duration = Duration::from_secs(1);

fn one_per_batch(n: usize) -> (Vec<Cluster>, BatchPlan<'static>) {
    let clusters = dynbatch::testing::distinct_clusters(n);
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(2)
        .max_total_calls(n)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(&clusters).unwrap().into_owned();
    (clusters, plan)
}

fn config(concurrency: usize) -> RunConfig {
    // Budgets and patience that never bind: what a resume changes is what is paid, and a
    // binding budget or patience would end the two runs at different points.
    RunConfig::builder()
        .concurrency(concurrency)
        .max_extra_calls(1_000)
        .rate_limit_patience(Duration::from_secs(86_400))
        // A fixed output mode: full concurrency from the first request (`Auto` sends one
        // request alone until the server has taken a mode), so the drop lands where counted.
        .request_with(|r| {
            r.output = dynbatch::prompt::OutputMode::JsonObject;
        })
        .build()
        .unwrap()
}

/// What must not depend on interruptions: each cluster's state and reason, the patterns, the
/// warnings.
fn results(report: &DiscoveryReport<'_>) -> impl PartialEq + std::fmt::Debug {
    let outcomes: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| (o.id.clone(), o.status, o.reason.clone()))
        .collect();
    let warnings: BTreeSet<String> = report.warnings.iter().cloned().collect();
    (
        outcomes,
        report.patterns.clone(),
        report.cluster_patterns.clone(),
        warnings,
    )
}

fn answered_calls(report: &DiscoveryReport<'_>) -> usize {
    report.requests.iter().filter(|r| !r.cached).count()
}

#[tokio::test(start_paused = true)]
async fn a_dropped_run_resumes_with_exactly_the_missing_calls() {
    let (clusters, plan) = one_per_batch(16);
    let n = plan.batches.len();
    let store = MemoryStore::default();
    let first = MockBackend::new().with_latency(LATENCY, TokioTimer);
    let runner = Runner::new(first.clone(), TokioTimer)
        .with_config(config(2))
        .with_store(store.clone());
    // Two rounds of two answers, then dropped with two in flight.
    let dropped = tokio::time::timeout(
        Duration::from_millis(2500),
        runner.run(plan.clone(), &clusters, "x"),
    )
    .await;
    assert!(dropped.is_err());
    assert_eq!((store.len(), first.calls()), (4, 6));

    let second = MockBackend::new().with_latency(LATENCY, TokioTimer);
    let runner = Runner::new(second.clone(), TokioTimer)
        .with_config(config(2))
        .with_store(store.clone());
    let resumed = runner.run(plan.clone(), &clusters, "x").await.unwrap();
    assert_eq!(second.calls() as usize, n - 4, "only what was not answered");
    assert_eq!(resumed.usage.cached, 4);
    assert_eq!(resumed.usage.calls_made as usize, n - 4);
    assert!(resumed.usage.cached_prompt_tokens > 0);
    assert!(resumed.usage.saved_cost_usd.unwrap() > 0.0);
    assert_eq!(resumed.outcome_counts(), (clusters.len(), 0));

    let fresh = Runner::new(MockBackend::new(), TokioTimer).with_config(config(2));
    let uninterrupted = fresh.run(plan.clone(), &clusters, "x").await.unwrap();
    assert_eq!(results(&resumed), results(&uninterrupted));
    // Attempts count answers from the journal too: the same as one uninterrupted run.
    let attempts =
        |r: &DiscoveryReport<'_>| r.outcomes.iter().map(|o| o.attempts).collect::<Vec<_>>();
    assert_eq!(attempts(&resumed), attempts(&uninterrupted));

    // A third run is served entirely from the journal.
    let third = MockBackend::scripted([]);
    let runner = Runner::new(third.clone(), TokioTimer)
        .with_config(config(2))
        .with_store(store.clone());
    let again = runner.run(plan, &clusters, "x").await.unwrap();
    assert_eq!((third.calls(), again.usage.cached as usize), (0, n));
    assert_eq!(results(&again), results(&uninterrupted));
}

#[tokio::test(start_paused = true)]
async fn a_changed_request_is_never_served_a_stale_answer() {
    let (clusters, plan) = one_per_batch(6);
    let store = MemoryStore::default();
    let runner = |mock: &MockBackend, config: RunConfig| {
        Runner::new(mock.clone(), TokioTimer)
            .with_config(config)
            .with_store(store.clone())
    };
    let mock = MockBackend::new();
    runner(&mock, RunConfig::default())
        .run(plan.clone(), &clusters, "x")
        .await
        .unwrap();
    let n = mock.calls();
    // Another concept, another model, another output cap: every request is new.
    let other_model = RunConfig::builder()
        .request_with(|r| r.model = "gpt-4o".into())
        .build()
        .unwrap();
    let other_cap = RunConfig::builder()
        .request_with(|r| r.max_tokens_cap = 299)
        .build()
        .unwrap();
    for (config, concept) in [
        (RunConfig::default(), "y"),
        (other_model, "x"),
        (other_cap, "x"),
    ] {
        let mock = MockBackend::new();
        let report = runner(&mock, config)
            .run(plan.clone(), &clusters, concept)
            .await
            .unwrap();
        assert_eq!((mock.calls(), report.usage.cached), (n, 0), "{concept}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_run_waits_for_what_is_in_flight_and_says_how_to_resume() {
    let (clusters, plan) = one_per_batch(12);
    let store = MemoryStore::default();
    let mock = MockBackend::new().with_latency(LATENCY, TokioTimer);
    let runner = Runner::new(mock.clone(), TokioTimer)
        .with_config(config(3))
        .with_store(store.clone());
    let interrupt = tokio::time::sleep(Duration::from_millis(1500));
    let report = runner
        .run_until(plan.clone(), &clusters, "x", interrupt)
        .await
        .unwrap();
    report.check_accounting().unwrap();
    // Three answered at 1 s; three more sent then, answered at 2 s although interrupted at 1.5 s.
    assert_eq!(mock.calls(), 6);
    assert_eq!(store.len(), 6);
    let (ok, failed) = report.outcome_counts();
    assert_eq!(ok + failed, clusters.len());
    for o in report
        .outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Failed)
    {
        assert_eq!(
            o.reason.as_deref(),
            Some("interrupted (not sent: the run stopped)")
        );
    }
    let mock = MockBackend::new();
    let resumed = Runner::new(mock.clone(), TokioTimer)
        .with_config(config(4))
        .with_store(store.clone())
        .run(plan.clone(), &clusters, "x")
        .await
        .unwrap();
    assert_eq!(resumed.outcome_counts(), (clusters.len(), 0));
    assert_eq!(resumed.usage.cached, 6);
    assert_eq!(mock.calls() as usize, plan.batches.len() - 6);
}

#[tokio::test(start_paused = true)]
async fn results_stream_as_they_arrive_and_match_the_report() {
    let (clusters, plan) = one_per_batch(10);
    let mock = MockBackend::new().with_latency(LATENCY, TokioTimer);
    let (runner, mut events) = Runner::new(mock, TokioTimer)
        .with_config(config(4))
        .event_stream();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let consume = async move {
        let mut finished = false;
        while let Some(event) = events.next().await {
            match event {
                RunEvent::Succeeded { results, .. } => {
                    let at = tokio::time::Instant::now();
                    seen.lock()
                        .unwrap()
                        .extend(results.into_iter().map(|r| (r, at)));
                }
                RunEvent::Finished { succeeded, failed } => {
                    assert_eq!(failed, 0);
                    assert_eq!(succeeded, seen.lock().unwrap().len());
                    finished = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(finished);
    };
    let start = tokio::time::Instant::now();
    let (report, ()) = futures::join!(runner.run(plan, &clusters, "x"), consume);
    let report = report.unwrap();
    let arrivals = arrivals.lock().unwrap();
    // The first results came a whole run before the end.
    assert_eq!(arrivals[0].1 - start, LATENCY);
    assert!(start.elapsed() >= LATENCY * 2);
    let mut streamed: Vec<_> = arrivals.iter().map(|(r, _)| r.clone()).collect();
    streamed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut reported = report.cluster_patterns.clone();
    reported.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(streamed, reported);
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dynbatch-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn answer(n: usize) -> dynbatch::backend::ChatResponse {
    dynbatch::backend::ChatResponse {
        content: format!("{{\"n\": {n}}}"),
        ..Default::default()
    }
}

fn key(n: usize) -> RequestKey {
    RequestKey::of(
        &dynbatch::backend::ChatRequest::new("m", vec![])
            .with_temperature(0.0)
            .with_max_tokens(n as u32)
            .with_response_format(dynbatch::backend::ResponseFormat::JsonObject),
    )
}

#[test]
fn the_sqlite_journal_keeps_answers_across_opens() {
    let path = temp_path("reopen.journal");
    {
        let journal = SqliteStore::open(&path).unwrap();
        assert!(journal.is_empty().unwrap());
        journal.put(&key(1), &answer(1)).unwrap();
        journal.put(&key(2), &answer(2)).unwrap();
    }
    let journal = SqliteStore::open(&path).unwrap();
    assert_eq!(journal.len().unwrap(), 2);
    assert_eq!(journal.get(&key(2)).unwrap().unwrap(), answer(2));
    assert!(journal.get(&key(3)).unwrap().is_none());
}

#[test]
fn foreign_newer_and_damaged_journals_are_refused_with_a_reason() {
    // Not a database at all.
    let path = temp_path("text.journal");
    std::fs::write(&path, "these are my notes, not a journal\n".repeat(100)).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().len(),
        3400,
        "left as it was"
    );

    // Another program's database.
    let path = temp_path("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE invoices (id INTEGER);")
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("other tables (invoices)"), "{err}");

    // A journal of a newer format.
    let path = temp_path("newer.journal");
    drop(SqliteStore::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "UPDATE dynbatch_meta SET value = '7' WHERE key = 'version'",
            [],
        )
        .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerFormat {
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade dynbatch"), "{err}");

    // A damaged entry: an error for that entry, not a panic and not a silent miss.
    let path = temp_path("damaged.journal");
    let journal = SqliteStore::open(&path).unwrap();
    journal.put(&key(1), &answer(1)).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute("UPDATE dynbatch_answers SET answer = '{not json'", [])
            .unwrap();
    }
    let err = journal.get(&key(1)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_damaged_entry_is_sent_again_with_a_warning() {
    let (clusters, plan) = one_per_batch(2);
    let path = temp_path("damaged-run.journal");
    let journal = Arc::new(SqliteStore::open(&path).unwrap());
    let runner = Runner::new(MockBackend::new(), TokioTimer).with_store(journal.clone());
    runner.run(plan.clone(), &clusters, "x").await.unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute("UPDATE dynbatch_answers SET answer = 'garbage'", [])
            .unwrap();
    }
    let mock = MockBackend::new();
    let report = Runner::new(mock.clone(), TokioTimer)
        .with_store(journal.clone())
        .run(plan.clone(), &clusters, "x")
        .await
        .unwrap();
    assert_eq!(mock.calls() as usize, plan.batches.len());
    assert_eq!(report.outcome_counts(), (clusters.len(), 0));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("corrupt journal entry") && w.contains("sent again")),
        "{:?}",
        report.warnings
    );
    // And the fresh answers replaced the damaged ones.
    let mock = MockBackend::scripted([]);
    Runner::new(mock.clone(), TokioTimer)
        .with_store(journal)
        .run(plan, &clusters, "x")
        .await
        .unwrap();
    assert_eq!(mock.calls(), 0);
}

#[test]
fn concurrent_writers_are_safe() {
    let path = temp_path("concurrent.journal");
    drop(SqliteStore::open(&path).unwrap());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each writer its own connection, as separate processes would have.
                let journal = SqliteStore::open(&path).unwrap();
                for i in 0..100 {
                    let n = w * 1000 + i;
                    journal.put(&key(n), &answer(n)).unwrap();
                    assert_eq!(journal.get(&key(n)).unwrap().unwrap(), answer(n));
                }
            })
        })
        .collect();
    // And one shared by threads.
    let shared = Arc::new(SqliteStore::open(&path).unwrap());
    let sharers: Vec<_> = (4..6)
        .map(|w| {
            let journal = shared.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    journal
                        .put(&key(w * 1000 + i), &answer(w * 1000 + i))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in writers.into_iter().chain(sharers) {
        t.join().unwrap();
    }
    assert_eq!(shared.len().unwrap(), 600);
    for w in 0..6 {
        for i in (0..100).step_by(17) {
            assert_eq!(
                shared.get(&key(w * 1000 + i)).unwrap().unwrap(),
                answer(w * 1000 + i)
            );
        }
    }
}

/// A server with a reproducible mix of faults: what it answers depends only on the request and
/// how many answers to it were delivered before (a call dropped in flight delivered nothing),
/// so an interrupted and resumed run meets exactly the answers of an uninterrupted one.
#[derive(Debug, Clone)]
struct Faulty {
    rate: f64,
    seed: u64,
    delivered: Arc<Mutex<std::collections::HashMap<String, u64>>>,
}

impl Faulty {
    fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate,
            seed,
            delivered: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl LlmBackend for Faulty {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, BackendError> {
        tokio::time::sleep(LATENCY).await;
        let text = request.user_text();
        let n = {
            let mut delivered = self.delivered.lock().unwrap();
            let count = delivered.entry(text.clone()).or_insert(0);
            *count += 1;
            *count - 1
        };
        let mut h = std::hash::DefaultHasher::new();
        (self.seed, &text, n).hash(&mut h);
        let roll = h.finish();
        #[allow(clippy::cast_precision_loss)]
        let fraction = (roll >> 11) as f64 / (1u64 << 53) as f64;
        let step = if fraction < self.rate {
            let faults = MockStep::faults();
            faults[(roll % faults.len() as u64) as usize].clone()
        } else {
            MockStep::Answer
        };
        MockBackend::scripted([step]).complete(request).await
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For any interruption point, concurrency and fault mix: the resumed run's results are
    /// the uninterrupted run's, every answer paid before the interruption is used, and no
    /// answered request is paid twice.
    #[test]
    fn invariant_a_resumed_run_equals_an_uninterrupted_one_and_pays_nothing_twice(
        n in 1usize..14,
        concurrency in 1usize..5,
        interrupt_ms in 0u64..9_000,
        fault_rate in 0.0f64..0.5,
        seed in 0u64..1_000,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (clusters, plan) = one_per_batch(n);
        let run = |store: Option<MemoryStore>, backend: Faulty| {
            let mut runner = Runner::new(backend, TokioTimer).with_config(config(concurrency));
            if let Some(store) = store {
                runner = runner.with_store(store);
            }
            runner
        };
        let uninterrupted = runtime
            .block_on(run(None, Faulty::new(fault_rate, seed)).run(plan.clone(), &clusters, "x"))
            .unwrap();

        // The same server before and after the interruption.
        let server = Faulty::new(fault_rate, seed);
        let store = MemoryStore::default();
        let interrupted = run(Some(store.clone()), server.clone());
        let dropped = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_millis(interrupt_ms),
                interrupted.run(plan.clone(), &clusters, "x"),
            )
            .await
        });
        let paid_before = store.len();
        let resumed = runtime
            .block_on(run(Some(store.clone()), server).run(plan.clone(), &clusters, "x"))
            .unwrap();
        prop_assert_eq!(results(&resumed), results(&uninterrupted));
        if dropped.is_err() {
            // Every answer paid before the interruption is used, none is paid again.
            prop_assert_eq!(resumed.usage.cached as usize, paid_before);
            prop_assert_eq!(paid_before + answered_calls(&resumed), answered_calls(&uninterrupted));
        }
    }
}

#[test]
fn both_stores_pass_the_store_conformance_suite() {
    dynbatch::testing::run_store_conformance(&MemoryStore::default()).unwrap();
    let dir =
        std::env::temp_dir().join(format!("dynbatch-store-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conformance.journal");
    let _ = std::fs::remove_file(&path);
    let sqlite = SqliteStore::open(&path).unwrap();
    dynbatch::testing::run_store_conformance(&sqlite).unwrap();
    // And it holds across a reopen: what was written is there.
    drop(sqlite);
    let again = SqliteStore::open(&path).unwrap();
    assert!(again.len().unwrap() >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store that keeps answers but no batch records passes too: it says so.
#[test]
fn a_store_without_batch_records_passes_by_saying_so() {
    #[derive(Debug, Default)]
    struct AnswersOnly(MemoryStore);
    impl RunStore for AnswersOnly {
        fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
            self.0.get(key)
        }
        fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
            self.0.put(key, answer)
        }
    }
    dynbatch::testing::run_store_conformance(&AnswersOnly::default()).unwrap();
}

/// A journal whose writes wait until another task of the run's runtime opens a gate: on the
/// executor's own thread, that task could never run.
#[derive(Debug, Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    waited_out: Arc<std::sync::atomic::AtomicBool>,
    recorded: Arc<Mutex<usize>>,
}

impl RunStore for Gate {
    fn get(&self, _: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        Ok(None)
    }
    fn put(&self, _: &RequestKey, _: &ChatResponse) -> Result<(), StoreError> {
        let (flag, signal) = &*self.open;
        let guard = flag.lock().unwrap();
        let (guard, timeout) = signal
            .wait_timeout_while(guard, Duration::from_secs(5), |open| !*open)
            .unwrap();
        drop(guard);
        if timeout.timed_out() {
            self.waited_out
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        *self.recorded.lock().unwrap() += 1;
        Ok(())
    }
}

#[test]
fn journal_writes_never_hold_the_executor() {
    let (clusters, plan) = one_per_batch(6);
    let gate = Gate::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let runner = Runner::new(MockBackend::new(), TokioTimer)
        .with_config(config(4))
        .with_store(gate.clone());
    let opener = gate.clone();
    let report = rt.block_on(async {
        // Opens the gate once the run is under way, from the run's own (only) thread.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (flag, signal) = &*opener.open;
            *flag.lock().unwrap() = true;
            signal.notify_all();
        });
        runner.run(plan.clone(), &clusters, "x").await.unwrap()
    });
    assert!(
        !gate.waited_out.load(std::sync::atomic::Ordering::SeqCst),
        "a journal write held the executor's only thread"
    );
    assert_eq!(*gate.recorded.lock().unwrap(), plan.batches.len());
    assert_eq!(report.outcome_counts(), (6, 0));
}

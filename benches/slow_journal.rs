//! The journal off the executor: runs of 50 ms answers at concurrency 64 on a current-thread
//! Tokio runtime, with no journal, with a journal whose every write takes 20 ms, and with
//! `SqliteStore` (one fsync per transaction). *Inline* wraps the same store so that it says its
//! writes do not block: the runner then writes on the executor, one answer at a time, as it did
//! before the writer thread.
//!
//! ```text
//! cargo bench --bench slow_journal --features mock,tokio,store
//! ```

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dynbatch::backend::ChatResponse;
use dynbatch::backend::mock::MockBackend;
use dynbatch::store::{RequestKey, RunStore, SqliteStore, StoreError};
use dynbatch::{Batcher, BatchingConfig, Cluster, RunConfig, Runner, TokioTimer, Video};

/// A journal whose every write takes 20 ms (a remote store, a slow disk).
#[derive(Debug, Default)]
struct Slow;

impl RunStore for Slow {
    fn get(&self, _: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        Ok(None)
    }
    fn put(&self, _: &RequestKey, _: &ChatResponse) -> Result<(), StoreError> {
        std::thread::sleep(Duration::from_millis(20));
        Ok(())
    }
}

/// A store that says its writes never block: the runner writes it in place.
#[derive(Debug)]
struct Inline<S>(S);

impl<S: RunStore> RunStore for Inline<S> {
    fn get(&self, key: &RequestKey) -> Result<Option<ChatResponse>, StoreError> {
        self.0.get(key)
    }
    fn put(&self, key: &RequestKey, answer: &ChatResponse) -> Result<(), StoreError> {
        self.0.put(key, answer)
    }
    fn writes_block(&self) -> bool {
        false
    }
}

fn clusters(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let mut c = Cluster::new(
                format!("c{i:04}"),
                vec![
                    Video::new(format!("I Tried Topic {i} for 30 Days"), 5.0),
                    Video::new(format!("I Tried Topic {i} for 7 Days"), 4.0),
                ],
            );
            (c.size, c.avg_performance) = (20, 4.0);
            c.thread_sources = vec!["a".into(), "b".into(), "c".into()];
            c
        })
        .collect()
}

/// One run of `n` one-cluster requests of 50 ms at concurrency 64, with `store` if any.
fn run(clusters: &[Cluster], store: Option<Box<dyn RunStore>>) {
    let n = clusters.len();
    let config = BatchingConfig::builder()
        .min_batch_size(1)
        .max_batch_size(1)
        .max_total_calls(n)
        .build()
        .unwrap();
    let plan = Batcher::new(config).plan(clusters).unwrap();
    let mock = MockBackend::new().with_latency(Duration::from_millis(50), TokioTimer);
    let mut runner = Runner::new(mock, TokioTimer)
        .with_config(RunConfig::builder().concurrency(64).build().unwrap());
    if let Some(store) = store {
        runner = runner.with_store(store);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let report = rt.block_on(runner.run(plan, clusters, "x")).unwrap();
    assert_eq!(report.outcome_counts(), (n, 0));
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("dynbatch-slow-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut journals = 0;
    let mut sqlite = || {
        journals += 1;
        SqliteStore::open(dir.join(format!("{journals}.journal"))).unwrap()
    };
    let mut group = c.benchmark_group("journal_off_the_executor");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(12));
    for n in [200, 1_000] {
        let input = clusters(n);
        group.bench_with_input(BenchmarkId::new("no journal", n), &input, |b, input| {
            b.iter(|| run(input, None));
        });
        group.bench_with_input(BenchmarkId::new("20 ms writes", n), &input, |b, input| {
            b.iter(|| run(input, Some(Box::new(Slow))));
        });
        group.bench_with_input(BenchmarkId::new("sqlite", n), &input, |b, input| {
            b.iter(|| run(input, Some(Box::new(sqlite()))));
        });
        group.bench_with_input(BenchmarkId::new("sqlite inline", n), &input, |b, input| {
            b.iter(|| run(input, Some(Box::new(Inline(sqlite())))));
        });
    }
    // Inline 20 ms writes are serialised: 200 answers take 4 s at least.
    let input = clusters(200);
    group.bench_with_input(
        BenchmarkId::new("20 ms writes inline", 200),
        &input,
        |b, input| {
            b.iter(|| run(input, Some(Box::new(Inline(Slow)))));
        },
    );
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

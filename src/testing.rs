//! Test support for plug-in authors and property tests (feature `testing`): proptest strategies
//! that generate realistic clusters and valid configs, [`check_plan`] (every invariant of one
//! plan, plus determinism and the JSON round trip), and [`run_conformance`], the suite a
//! plug-in author runs on their own [`Batcher`].
//!
//! ```
//! use dynbatch::{Batcher, BatchingConfig, Cluster, QualityScorer};
//!
//! #[derive(Debug)]
//! struct Flat;
//! impl QualityScorer for Flat {
//!     fn quality(&self, _: &Cluster) -> f64 { 0.7 }
//! }
//!
//! let batcher = Batcher::new(BatchingConfig::default()).with_scorer(Flat);
//! dynbatch::testing::run_conformance(&batcher, 32).unwrap();
//! ```

/// The `proptest` this module's strategies are built with, re-exported so property tests of
/// plug-ins use the same version without a dependency of their own.
pub use proptest;

/// The key [`consolidate`](crate::patterns::consolidate()) groups patterns by: lowercase words
/// of the text, punctuation dropped.
pub use crate::patterns::consolidate::normalize;
/// Checks only the batches' shapes (sizes, token targets, the call budget); [`check_plan`] checks
/// everything.
pub use crate::plan::check::check_batch_shapes;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};

use crate::config::{BatchingConfig, OverBudget};
use crate::model::{Cluster, Video};
use crate::plan::{BatchPlan, Batcher, ClusterState};
use crate::quality::QualityScorer;
use crate::strategy::StrategySelector;
use crate::tokens::TokenEstimator;

const SUBJECTS: &[&str] = &[
    "Sourdough",
    "Home Espresso",
    "Minecraft",
    "Marathon Training",
    "Budget Travel",
    "Python",
    "Elden Ring",
    "Houseplants",
    "iPhone 16",
    "Van Life",
    "Meal Prep",
    "Chess",
];

const TEMPLATES: &[&str] = &[
    "I Tried {s} for 30 Days",
    "{s}: What Nobody Tells You",
    "Why {s} Is Overrated",
    "The Ultimate {s} Guide ({n})",
    "{n} {s} Mistakes Beginners Make",
    "Stop Doing This With {s}",
    "I Spent ${n} on {s} (Was It Worth It?)",
    "{s} in {n} Minutes",
    "Every {s} Tip I Wish I Knew Sooner",
    "The Truth About {s}",
];

const SOURCES: &[&str] = &[
    "r/Cooking",
    "r/Coffee",
    "search: beginner guide",
    "channel: MKBHD",
    "channel: Joshua Weissman",
    "trending",
    "search: 30 day challenge",
    "r/running",
];

/// A realistic video title: a common `YouTube` title template filled with a subject and a number.
pub fn arb_title() -> impl Strategy<Value = String> {
    (
        0..TEMPLATES.len(),
        0..SUBJECTS.len(),
        prop_oneof![
            Just(3u32),
            Just(5),
            Just(7),
            Just(10),
            Just(100),
            2020u32..2027
        ],
    )
        .prop_map(|(t, s, n)| {
            TEMPLATES[t]
                .replace("{s}", SUBJECTS[s])
                .replace("{n}", &n.to_string())
        })
}

/// A realistic video: a generated title and a performance ratio between 0.1 and 12.
pub fn arb_video() -> impl Strategy<Value = Video> {
    (arb_title(), 0.1f64..12.0).prop_map(|(title, ratio)| Video::new(title, ratio))
}

/// A valid, realistic cluster with the given id: 1 to 12 videos (best first), `size` from the
/// number of videos up to 60 beyond it, 0 to 7 sources, WIDE or DEEP.
pub fn arb_cluster(id: String) -> impl Strategy<Value = Cluster> {
    (
        prop::collection::vec(arb_video(), 1..=12),
        0u32..60,
        prop::sample::subsequence(SOURCES, 0..=7),
        any::<bool>(),
        0.0f64..1.0,
    )
        .prop_map(move |(mut videos, extra_size, sources, is_wide, drift)| {
            videos.sort_by(|a, b| b.performance_ratio.total_cmp(&a.performance_ratio));
            let mut cluster = Cluster::new(id.clone(), videos);
            cluster.size = cluster.size.saturating_add(extra_size);
            cluster.avg_performance *= 0.5 + drift;
            cluster.thread_sources = sources.into_iter().map(str::to_owned).collect();
            cluster.is_wide = is_wide;
            cluster
        })
}

/// Valid clusters with unique ids `c0`, `c1`, … ; the count is drawn from `count`.
pub fn arb_clusters(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Cluster>> {
    count.prop_flat_map(|n| {
        (0..n)
            .map(|i| arb_cluster(format!("c{i}")))
            .collect::<Vec<_>>()
    })
}

/// Ways a generated cluster is made invalid (or an edge case) by [`arb_dirty_clusters`].
#[derive(Debug, Clone, Copy)]
enum Damage {
    None,
    NanAverage,
    NegativeRatio,
    InfiniteRatio,
    EmptyId,
    DuplicateId,
    NoVideos,
    SizeBelowVideos,
    EmptyTitle,
    ZeroRatios,
}

fn damage(mut cluster: Cluster, how: Damage) -> Cluster {
    match how {
        Damage::None => {}
        Damage::NanAverage => cluster.avg_performance = f64::NAN,
        Damage::NegativeRatio => cluster.videos[0].performance_ratio = -1.0,
        Damage::InfiniteRatio => cluster.videos[0].performance_ratio = f64::INFINITY,
        Damage::EmptyId => cluster.id.clear(),
        Damage::DuplicateId => "c0".clone_into(&mut cluster.id),
        Damage::NoVideos => cluster.videos.clear(),
        Damage::SizeBelowVideos => {
            cluster.videos.push(cluster.videos[0].clone());
            cluster.size = 1;
        }
        Damage::EmptyTitle => " ".clone_into(&mut cluster.videos[0].title),
        Damage::ZeroRatios => {
            for v in &mut cluster.videos {
                v.performance_ratio = 0.0;
            }
            cluster.avg_performance = 0.0;
        }
    }
    cluster
}

/// Like [`arb_clusters`], but about one cluster in six is damaged: NaN or negative numbers, an
/// empty or duplicate id, no videos, `size` below the video count, an empty title, or all-zero
/// ratios (valid, but the consistency ratio is undefined).
pub fn arb_dirty_clusters(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Cluster>> {
    let how = prop_oneof![
        40 => Just(Damage::None),
        1 => Just(Damage::NanAverage),
        1 => Just(Damage::NegativeRatio),
        1 => Just(Damage::InfiniteRatio),
        1 => Just(Damage::EmptyId),
        1 => Just(Damage::DuplicateId),
        1 => Just(Damage::NoVideos),
        1 => Just(Damage::SizeBelowVideos),
        1 => Just(Damage::EmptyTitle),
        1 => Just(Damage::ZeroRatios),
    ];
    count.prop_flat_map(move |n| {
        (0..n)
            .map(|i| (arb_cluster(format!("c{i}")), how.clone()))
            .collect::<Vec<_>>()
            .prop_map(|pairs| pairs.into_iter().map(|(c, h)| damage(c, h)).collect())
    })
}

/// A valid config: batch sizes 1 to 13, token targets 200 to 6000, 1 to 12 calls, thresholds
/// 0 to 0.9, either over-budget policy.
pub fn arb_config() -> impl Strategy<Value = BatchingConfig> {
    (
        1usize..=5,
        0usize..=8,
        200u64..=6000,
        1usize..=12,
        0.0f64..0.9,
        prop_oneof![Just(OverBudget::GrowBatches), Just(OverBudget::Defer)],
    )
        .prop_filter_map(
            "valid config",
            |(min, spread, target, calls, threshold, over)| {
                BatchingConfig::builder()
                    .min_batch_size(min)
                    .max_batch_size(min + spread)
                    .target_tokens_per_batch(target)
                    .max_total_calls(calls)
                    .quality_threshold(threshold)
                    .over_budget(over)
                    .build()
                    .ok()
            },
        )
}

/// Plans `clusters` with `batcher` and checks everything a plan owes its input: planning
/// succeeds; one entry per input cluster, in input order, with its id; invalid input clusters
/// are rejected; [`BatchPlan::check`] passes; planning again gives the same plan
/// (determinism); the plan's JSON reads back as the same plan.
///
/// Returns the plan so callers can assert more. Use it inside `proptest!` with `?`.
///
/// # Errors
/// A [`TestCaseError`] saying which check failed and how.
pub fn check_plan<'a, Scorer, Estimator, Selector>(
    batcher: &Batcher<Scorer, Estimator, Selector>,
    clusters: &'a [Cluster],
) -> Result<BatchPlan<'a>, TestCaseError>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    let fail = |what: String| TestCaseError::fail(what);
    let plan = batcher
        .plan(clusters)
        .map_err(|e| fail(format!("planning failed: {e}")))?;
    if plan.clusters.len() != clusters.len() {
        return Err(fail(format!(
            "accounting: {} input clusters but {} plan entries",
            clusters.len(),
            plan.clusters.len()
        )));
    }
    for (i, (entry, cluster)) in plan.clusters.iter().zip(clusters).enumerate() {
        if entry.id != cluster.id {
            return Err(fail(format!(
                "accounting: entry {i} is {:?}, input cluster {i} is {:?}",
                entry.id, cluster.id
            )));
        }
        if cluster.validate().is_err() && !matches!(entry.state, ClusterState::Rejected { .. }) {
            return Err(fail(format!(
                "accounting: invalid input cluster {i} ({:?}) is {}",
                cluster.id,
                entry.state.name()
            )));
        }
    }
    plan.check(batcher.config())
        .map_err(|v| fail(format!("invariant violated: {v}")))?;
    let again = batcher
        .plan(clusters)
        .map_err(|e| fail(format!("planning failed the second time: {e}")))?;
    if again != plan {
        return Err(fail("determinism: planning twice gave two plans".into()));
    }
    let json = serde_json::to_string(&plan).map_err(|e| fail(format!("plan to JSON: {e}")))?;
    let back: BatchPlan<'static> =
        serde_json::from_str(&json).map_err(|e| fail(format!("plan from JSON: {e}")))?;
    if back != plan.clone().into_owned() {
        return Err(fail(
            "serde: the plan's JSON does not read back as the plan".into(),
        ));
    }
    Ok(plan)
}

/// The conformance suite for plug-ins: runs [`check_plan`] with `batcher` over `cases` generated
/// inputs ([`arb_dirty_clusters`] of 0 to 60 clusters), deterministically seeded, and returns the
/// smallest failing input found, if any. A plug-in that reads fields the generated clusters
/// lack (extra fields, say) should use [`run_conformance_with`] and its own generator.
///
/// # Errors
/// proptest's [`TestError`], whose `Display` names the failed check and the minimal input;
/// also when no generated input got a single cluster batched (nothing was tested).
pub fn run_conformance<Scorer, Estimator, Selector>(
    batcher: &Batcher<Scorer, Estimator, Selector>,
    cases: u32,
) -> Result<(), TestError<Vec<Cluster>>>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    run_conformance_with(batcher, cases, arb_dirty_clusters(0..60))
}

/// [`run_conformance`] over inputs of `clusters`, your own generator (with the extra fields
/// your scorer reads, for instance).
///
/// # Errors
/// As [`run_conformance`].
pub fn run_conformance_with<Scorer, Estimator, Selector>(
    batcher: &Batcher<Scorer, Estimator, Selector>,
    cases: u32,
    clusters: impl Strategy<Value = Vec<Cluster>>,
) -> Result<(), TestError<Vec<Cluster>>>
where
    Scorer: QualityScorer,
    Estimator: TokenEstimator,
    Selector: StrategySelector,
{
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let total_batched = std::sync::atomic::AtomicUsize::new(0);
    runner.run(&clusters, |clusters| {
        let plan = check_plan(batcher, &clusters)?;
        total_batched.fetch_add(plan.counts().batched, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })?;
    if total_batched.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return Err(TestError::Fail(
            "no generated input got a single cluster batched, so no plan was tested: does the \
             scorer read fields the generated clusters lack? Pass inputs that have them to \
             run_conformance_with"
                .into(),
            Vec::new(),
        ));
    }
    Ok(())
}

/// `n` high-quality clusters (size 20, five thread sources, mean performance 4.5), each with
/// four titles of a formula of its own (`I Tried Topic{i} Setup {k} for {d} Days`): a fixed,
/// realistic input for runner tests and benches, on which the mock finds one distinct pattern
/// per cluster. Ids are `c0`, `c1`, …
pub fn distinct_clusters(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let videos = (0..4)
                .map(|k| {
                    Video::new(
                        format!("I Tried Topic{i} Setup {k} for {} Days", 7 * (k + 1)),
                        5.0 - f64::from(k) * 0.2,
                    )
                })
                .collect();
            let mut c = Cluster::new(format!("c{i}"), videos);
            c.size = 20;
            c.avg_performance = 4.5;
            c.thread_sources = (0..5).map(|s| format!("source {s}")).collect();
            c
        })
        .collect()
}

/// The conformance suite for [`LlmBackend`](crate::backend::LlmBackend) plug-ins: sends
/// `backend` the requests the runner renders for a small plan, once in every
/// [`OutputMode`](crate::prompt::OutputMode) it can be asked for, and checks that each answer
/// keeps the prompt's contract. Returns the number of requests answered.
///
/// Checked, per request:
/// - the call's future is `Send` (checked when this compiles: the runner spawns on any runtime);
/// - an answer parses (in either shape the prompt allows: [`PatternResponse`](crate::prompt::PatternResponse) or the keyed schema), names only the request's clusters, and
///   answers at least one; its `finish_reason` is `stop`; its usage, when reported, has prompt
///   tokens;
/// - a failure is a [`BackendError`](crate::backend::BackendError) whose class agrees with
///   itself: a retryable error is not account-wide, and `retry_after` only comes with a
///   rate limit or an overload.
///
/// A backend that cannot take a mode says so with
/// [`BackendError::UnsupportedFormat`](crate::backend::BackendError::UnsupportedFormat),
/// which passes.
///
/// # Errors
/// The first broken rule, naming the request and the output mode.
pub async fn run_backend_conformance<B: crate::backend::LlmBackend>(
    backend: &B,
) -> Result<usize, String> {
    use crate::backend::BackendError;
    use crate::prompt::{OutputMode, PromptCluster, RequestSettings};

    fn send<F: Send>(future: F) -> F {
        future
    }
    let clusters = distinct_clusters(3);
    let strategy = crate::strategy::Strategy::balanced();
    let prompt: Vec<PromptCluster<'_>> = clusters
        .iter()
        .map(|cluster| PromptCluster {
            cluster,
            quality: 0.9,
        })
        .collect();
    let mut answered = 0;
    for output in OutputMode::FALLBACKS {
        let settings = RequestSettings {
            output,
            ..RequestSettings::default()
        };
        let request = settings.request("conformance", &strategy, &prompt);
        let at = format!("output mode {output}");
        match send(backend.complete(&request)).await {
            Ok(response) => {
                let parsed = crate::response::parse(&response.content)
                    .map_err(|e| format!("{at}: {e}: {:?}", response.content))?;
                if parsed.clusters.is_empty() {
                    return Err(format!("{at}: the answer names no cluster"));
                }
                if let Some(n) = parsed
                    .clusters
                    .iter()
                    .map(|c| c.cluster)
                    .find(|n| !(1..=3).contains(n))
                {
                    return Err(format!(
                        "{at}: the answer names cluster {n}; the request has 1-3"
                    ));
                }
                if response.finish_reason != crate::backend::FinishReason::Stop {
                    return Err(format!(
                        "{at}: finish_reason {:?} for a complete answer",
                        response.finish_reason
                    ));
                }
                if response.usage.is_some_and(|u| u.prompt_tokens == 0) {
                    return Err(format!("{at}: usage reported with 0 prompt tokens"));
                }
                answered += 1;
            }
            Err(BackendError::UnsupportedFormat(_)) => {}
            Err(e) => {
                if e.is_retryable() && e.is_account_wide() {
                    return Err(format!("{at}: {e} is both retryable and account-wide"));
                }
                if e.retry_after().is_some()
                    && !matches!(
                        e,
                        BackendError::RateLimited { .. } | BackendError::Overloaded { .. }
                    )
                {
                    return Err(format!("{at}: {e} carries a retry-after"));
                }
                return Err(format!("{at}: the request failed: {e}"));
            }
        }
    }
    Ok(answered)
}

/// What a [`RunStore`](crate::store::RunStore) did that a journal must not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreConformanceError {
    /// A call failed.
    #[error("{check}: {source}")]
    Store {
        /// Which check.
        check: &'static str,
        /// The store's error.
        #[source]
        source: crate::store::StoreError,
    },
    /// A call answered, but not what it should have.
    #[error("{check}: {what}")]
    Wrong {
        /// Which check.
        check: &'static str,
        /// What was wrong.
        what: String,
    },
}

/// The conformance suite for [`RunStore`](crate::store::RunStore) implementations, as
/// [`run_backend_conformance`] is for backends: a key never written is absent; an answer
/// comes back exactly as written (every field, unicode and a megabyte of content included),
/// and a second write replaces it; keys of different requests and of a request's later
/// occurrences are apart; batch records come back as written, pending then created (or the
/// store says it keeps none with [`StoreError::Unsupported`](crate::store::StoreError), and
/// then `get_batch` finds nothing). Run it on a fresh store: it writes a few entries.
///
/// ```
/// # #[cfg(feature = "testing")] {
/// dynbatch::testing::run_store_conformance(&dynbatch::MemoryStore::default()).unwrap();
/// # }
/// ```
///
/// # Errors
/// The first check that failed, and why.
pub fn run_store_conformance(
    store: &dyn crate::store::RunStore,
) -> Result<(), StoreConformanceError> {
    use crate::backend::{
        ChatMessage, ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, TokenUsage,
    };
    use crate::store::RequestKey;

    let wrong = |check, what: String| StoreConformanceError::Wrong { check, what };
    let call = |check| move |source| StoreConformanceError::Store { check, source };
    let request = |text: &str| ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: text.into(),
        }],
        temperature: 0.7,
        max_tokens: 100,
        response_format: ResponseFormat::JsonObject,
        batch: None,
    };
    let a = RequestKey::of(&request("conformance: a"));
    let b = RequestKey::of(&request("conformance: b"));
    if store
        .get(&a)
        .map_err(call("get of a key never written"))?
        .is_some()
    {
        return Err(wrong(
            "get of a key never written",
            "found an answer".into(),
        ));
    }
    let answer = ChatResponse {
        content: format!("{{\"c1\": [\"é漢字🙂\"]}}{}", " ".repeat(1 << 20)),
        finish_reason: FinishReason::Length,
        usage: Some(TokenUsage {
            prompt_tokens: 12,
            completion_tokens: 34,
            cache_write_tokens: 5,
            cache_read_tokens: 6,
        }),
        model: "gpt-4o-mini-2024-07-18".into(),
        refusal: Some("no".into()),
        request_id: Some("req_1".into()),
        rate_limits: None,
    };
    store.put(&a, &answer).map_err(call("put"))?;
    match store.get(&a).map_err(call("get after put"))? {
        Some(got) if got == answer => {}
        Some(got) => {
            return Err(wrong(
                "get after put",
                format!("another answer came back: {:?}", got.model),
            ));
        }
        None => return Err(wrong("get after put", "no answer".into())),
    }
    if store.get(&b).map_err(call("get of another key"))?.is_some()
        || store
            .get(&a.occurrence(1))
            .map_err(call("get of a later occurrence"))?
            .is_some()
    {
        return Err(wrong(
            "keys apart",
            "another key found the answer written under one".into(),
        ));
    }
    let second = ChatResponse {
        content: "{}".into(),
        ..answer.clone()
    };
    store.put(&a, &second).map_err(call("second put"))?;
    if store
        .get(&a)
        .map_err(call("get after a second put"))?
        .as_ref()
        != Some(&second)
    {
        return Err(wrong("a second put", "did not replace the first".into()));
    }
    check_batch_records(store)
}

/// The batch-record part of [`run_store_conformance`].
fn check_batch_records(store: &dyn crate::store::RunStore) -> Result<(), StoreConformanceError> {
    use crate::store::{BatchRecord, RequestKey, StoreError};
    let wrong = |check, what: String| StoreConformanceError::Wrong { check, what };
    let call = |check| move |source| StoreConformanceError::Store { check, source };
    let key = RequestKey::of_batch_input(b"conformance batch input");
    let pending = BatchRecord {
        batch_id: None,
        sent_at: Some(1_700_000_000),
        requests: 3,
    };
    match store.put_batch(&key, &pending) {
        Err(StoreError::Unsupported(_)) => {
            if store.get_batch(&key).map_err(call("get_batch"))?.is_some() {
                return Err(wrong(
                    "batch records",
                    "put_batch is unsupported, yet get_batch found one".into(),
                ));
            }
            return Ok(());
        }
        Err(e) => return Err(call("put_batch")(e)),
        Ok(()) => {}
    }
    if store.get_batch(&key).map_err(call("get_batch"))?.as_ref() != Some(&pending) {
        return Err(wrong(
            "batch records",
            "the pending record did not come back".into(),
        ));
    }
    let created = BatchRecord {
        batch_id: Some("batch_1".into()),
        ..pending
    };
    store.put_batch(&key, &created).map_err(call("put_batch"))?;
    if store.get_batch(&key).map_err(call("get_batch"))?.as_ref() != Some(&created) {
        return Err(wrong(
            "batch records",
            "the created record did not replace the pending one".into(),
        ));
    }
    Ok(())
}

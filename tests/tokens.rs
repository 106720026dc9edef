//! Exact token accounting: with `TiktokenEstimator`, a batch's `estimated_tokens` equals the
//! token count of the request the runner sends, to the token, for every strategy and for
//! hostile text (very long titles, emoji, combining marks, right-to-left scripts).

#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use dynbatch::Runner;
use dynbatch::TokioTimer;
use dynbatch::backend::mock::MockBackend;
use dynbatch::{
    Batcher, BatchingConfig, Cluster, Scored, StrategySelector, StrategySettings, Video,
};
use dynbatch::{Encoding, TiktokenEstimator};

#[derive(Debug)]
struct Fixed(StrategySettings);
impl StrategySelector for Fixed {
    fn select(&self, _: &[Scored<'_>]) -> StrategySettings {
        self.0.clone()
    }
}

use crate::support_bundled;
use support_bundled::bundled;

/// Plans `clusters` with the exact estimator under `strategy` and checks every batch.
fn assert_exact(
    clusters: &[Cluster],
    strategy: StrategySettings,
    encoding: Encoding,
    concept: &str,
) -> usize {
    let estimator = TiktokenEstimator::new(encoding, concept).unwrap();
    let config = BatchingConfig::builder()
        .max_total_calls(100)
        .build()
        .unwrap();
    let plan = Batcher::new(config)
        .with_estimator(estimator.clone())
        .with_selector(Fixed(strategy))
        .plan(clusters)
        .unwrap();
    assert!(plan.request_overhead_tokens > 0);
    let runner = Runner::new(MockBackend::new(), TokioTimer);
    let requests = runner.requests(&plan, clusters, concept).unwrap();
    assert_eq!(requests.len(), plan.batches.len());
    for (request, batch) in requests.iter().zip(&plan.batches) {
        assert_eq!(
            estimator.count_request(request),
            batch.estimated_tokens,
            "{} clusters",
            batch.clusters.len()
        );
    }
    plan.batches.len()
}

#[test]
fn exact_estimate_equals_the_rendered_request_for_every_strategy() {
    let clusters = bundled();
    for strategy in [
        StrategySettings::thorough(),
        StrategySettings::adaptive(),
        StrategySettings::efficient(),
        StrategySettings::balanced(),
    ] {
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            assert!(assert_exact(&clusters, strategy.clone(), encoding, "home espresso") > 1);
        }
    }
}

#[test]
fn hostile_text_never_panics_and_counts_stay_exact() {
    let titles = [
        "x".repeat(5000),
        "🔥🔥🔥 I Tried Espresso for 30 Days 😱☕️👨‍👩‍👧‍👦".to_owned(),
        "Café crème: zalgo t̷̛̙e̴̟͝x̸̨̛t̵̰̊ and e\u{301}\u{302}\u{303}".to_owned(),
        "قهوة الإسبريسو في المنزل: تجربة ٣٠ يومًا".to_owned(),
        "שלושים יום של אספרסו \u{202E}desrever\u{202C}".to_owned(),
        "Tabs\tand\nnew\r\nlines \"quoted\" \\ back".to_owned(),
        "日本語のタイトル：エスプレッソを30日間".to_owned(),
    ];
    let clusters: Vec<Cluster> = (0..12)
        .map(|i| {
            let videos = titles
                .iter()
                .enumerate()
                .map(|(k, t)| Video::new(format!("{t} {i}{k}"), 9.0 - k as f64))
                .collect();
            let mut c = Cluster::new(format!("h{i}"), videos);
            c.size = 20;
            c.avg_performance = 4.5;
            c.thread_sources = vec!["r/☕".into(), "канал: Кофе".into(), "x".repeat(300)];
            c
        })
        .collect();
    for strategy in [StrategySettings::thorough(), StrategySettings::efficient()] {
        assert_exact(
            &clusters,
            strategy,
            Encoding::O200kBase,
            "эспрессо ☕ \"дома\"\n",
        );
    }
}

#[test]
fn the_design_estimator_has_no_overhead_and_stays_the_default() {
    let input = bundled();
    let plan = Batcher::default().plan(&input).unwrap();
    assert_eq!(plan.request_overhead_tokens, 0);
    let json = serde_json::to_value(&plan).unwrap();
    assert!(json.get("request_overhead_tokens").is_none());
}

//! Proptest strategies for realistic and damaged clusters and valid configs, and a fixed
//! realistic input.

use proptest::prelude::*;

use crate::config::{BatchingConfig, OverBudget};
use crate::model::{Cluster, Video};

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

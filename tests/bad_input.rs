//! Every kind of bad input has a documented outcome (the guide's planning chapter, "Bad input") and never panics.

#![allow(clippy::unwrap_used, clippy::panic)]

use dynbatch::{
    Batcher, BatchingConfig, Cluster, ClusterState, QualityFactors, QualityScorer, Rejection,
    Scored, StrategyKind, StrategySelector, StrategySettings, TokenEstimator, Video,
};

fn good(id: &str) -> Cluster {
    let mut c = Cluster::new(
        id,
        vec![
            Video::new("How I Learned Chess in 30 Days", 4.0),
            Video::new("Chess Openings Ranked", 5.0),
        ],
    );
    c.size = 20;
    c.thread_sources = vec!["a".into(), "b".into(), "c".into()];
    c
}

fn rejection(plan: &dynbatch::BatchPlan<'_>, i: usize) -> Rejection {
    match &plan.clusters[i].state {
        ClusterState::Rejected { rejection } => rejection.clone(),
        other => panic!("cluster {i} is {other:?}, not rejected"),
    }
}

/// The text people read, as the guide's "Bad input" documents it.
fn reason(plan: &dynbatch::BatchPlan<'_>, i: usize) -> String {
    rejection(plan, i).to_string()
}

fn plan_one(bad: Cluster) -> dynbatch::BatchPlan<'static> {
    let input = [good("ok"), bad];
    let plan = Batcher::default().plan(&input).unwrap().into_owned();
    plan.check(&BatchingConfig::default()).unwrap();
    // The good cluster is planned normally.
    assert!(matches!(
        plan.clusters[0].state,
        ClusterState::Batched { batch: 0 }
    ));
    plan
}

#[test]
fn non_finite_numbers_are_rejected_with_their_place() {
    let mut c = good("nan");
    c.avg_performance = f64::NAN;
    assert_eq!(
        reason(&plan_one(c), 1),
        "avg_performance is not a finite number"
    );
    let mut c = good("inf");
    c.videos[1].performance_ratio = f64::INFINITY;
    assert_eq!(
        reason(&plan_one(c), 1),
        "videos[1].performance_ratio is not a finite number"
    );
}

#[test]
fn negative_numbers_are_rejected_with_their_place() {
    let mut c = good("neg");
    c.videos[0].performance_ratio = -2.5;
    assert_eq!(
        reason(&plan_one(c), 1),
        "videos[0].performance_ratio is negative (-2.5)"
    );
    let mut c = good("neg-avg");
    c.avg_performance = -1.0;
    assert_eq!(reason(&plan_one(c), 1), "avg_performance is negative (-1)");
}

#[test]
fn empty_id_is_rejected() {
    let c = good("   ");
    assert_eq!(reason(&plan_one(c), 1), "id is empty");
}

#[test]
fn duplicate_id_the_first_one_wins() {
    let plan = plan_one(good("ok"));
    assert_eq!(
        reason(&plan, 1),
        "duplicate id: the cluster at input index 0 has it first"
    );
    // Even an invalid first occurrence keeps the id: input order decides, not validity.
    let mut first = good("dup");
    first.videos.clear();
    let input = [first, good("dup")];
    let plan = Batcher::default().plan(&input).unwrap();
    assert_eq!(reason(&plan, 0), "videos is empty: nothing to analyse");
    assert_eq!(
        reason(&plan, 1),
        "duplicate id: the cluster at input index 0 has it first"
    );
}

#[test]
fn cluster_without_videos_is_rejected() {
    let mut c = good("empty");
    c.videos.clear();
    assert_eq!(
        reason(&plan_one(c), 1),
        "videos is empty: nothing to analyse"
    );
}

#[test]
fn size_below_video_count_is_rejected() {
    let mut c = good("small");
    c.size = 1;
    assert_eq!(
        reason(&plan_one(c), 1),
        "size 1 is smaller than the 2 videos given"
    );
}

#[test]
fn empty_title_is_rejected() {
    let mut c = good("untitled");
    c.videos[1].title = "\n\t ".into();
    assert_eq!(reason(&plan_one(c), 1), "videos[1].title is empty");
}

#[test]
fn zero_mean_performance_counts_as_worst_consistency() {
    let mut c = good("zero");
    for v in &mut c.videos {
        v.performance_ratio = 0.0;
    }
    c.avg_performance = 0.0;
    assert!((QualityFactors::of(&c).consistency - 0.5).abs() < f64::EPSILON);
    // Not rejected: scored, here below the threshold (size 1.0, performance 0, diversity 0.6).
    let input = [c];
    let plan = Batcher::default().plan(&input).unwrap();
    let q = plan.clusters[0].quality.unwrap();
    assert!((q - (0.25 + 0.6 * 0.25 + 0.5 * 0.15)).abs() < 1e-12, "{q}");
    assert!(matches!(
        plan.clusters[0].state,
        ClusterState::BelowThreshold { .. }
    ));
}

#[test]
fn empty_input_is_an_empty_plan() {
    let plan = Batcher::default().plan(&[]).unwrap();
    assert!(plan.batches.is_empty() && plan.clusters.is_empty());
    assert_eq!(plan.strategy.kind, StrategyKind::Thorough);
    plan.check(&BatchingConfig::default()).unwrap();
    let summary = plan.to_string();
    assert!(
        summary.contains("Total clusters: 0") && summary.contains("Avg clusters/batch: 0.0"),
        "{summary}"
    );
}

#[test]
fn scorer_returning_nan_rejects_the_cluster_not_the_plan() {
    #[derive(Debug)]
    struct Nan;
    impl QualityScorer for Nan {
        fn quality(&self, c: &Cluster) -> f64 {
            if c.id == "bad" { f64::NAN } else { 0.9 }
        }
    }
    let input = [good("ok"), good("bad")];
    let plan = Batcher::default().with_scorer(Nan).plan(&input).unwrap();
    assert_eq!(
        reason(&plan, 1),
        "the quality scorer returned a non-finite quality (NaN)"
    );
    assert!(matches!(
        plan.clusters[0].state,
        ClusterState::Batched { .. }
    ));
}

#[test]
fn selector_returning_an_invalid_strategy_is_a_typed_error() {
    #[derive(Debug)]
    struct Zero;
    impl StrategySelector for Zero {
        fn select(&self, _: &[Scored<'_>]) -> StrategySettings {
            StrategySettings::custom("ZERO").with_videos_per_cluster(0)
        }
    }
    let err = Batcher::default()
        .with_selector(Zero)
        .plan(&[good("ok")])
        .unwrap_err();
    assert!(
        matches!(
            err,
            dynbatch::PlanError::InvalidStrategy(dynbatch::StrategyError::ZeroVideosPerCluster)
        ),
        "{err}"
    );
}

#[test]
fn huge_token_estimates_go_alone_flagged_without_overflow() {
    #[derive(Debug)]
    struct Huge;
    impl TokenEstimator for Huge {
        fn estimate(&self, _: &Cluster, _: &StrategySettings) -> u32 {
            u32::MAX
        }
    }
    let input: Vec<Cluster> = (0..5).map(|i| good(&format!("c{i}"))).collect();
    let config = BatchingConfig::default();
    let plan = Batcher::new(config.clone())
        .with_estimator(Huge)
        .plan(&input)
        .unwrap();
    assert_eq!(plan.batches.len(), 5);
    assert!(
        plan.batches
            .iter()
            .all(|b| b.oversized && b.clusters.len() == 1)
    );
    plan.check(&config).unwrap();
}

#[test]
fn json_with_a_negative_size_is_a_parse_error_naming_the_place() {
    let json = r#"[{"id": "a", "size": -3, "avg_performance": 1.0, "thread_sources": [],
        "is_wide": false, "videos": [{"title": "x", "performance_ratio": 1.0}]}]"#;
    let err = serde_json::from_str::<Vec<Cluster>>(json).unwrap_err();
    assert!(err.to_string().contains("-3"), "{err}");
    assert!(err.line() >= 1);
}

/// Each rejection is a variant with its data, matched without reading text; in JSON it has
/// its rule, data and reason, and reads back as it was (a non-finite score as `null`).
#[test]
fn each_rejection_is_a_variant_with_its_data() {
    #[derive(Debug)]
    struct Inf;
    impl QualityScorer for Inf {
        fn quality(&self, c: &Cluster) -> f64 {
            if c.id == "inf-score" {
                f64::INFINITY
            } else {
                0.9
            }
        }
    }
    let mut input = vec![good("ok")];
    let mut c = good("nan");
    c.avg_performance = f64::NAN;
    input.push(c);
    let mut c = good("neg");
    c.videos[1].performance_ratio = -2.5;
    input.push(c);
    input.push(good("  "));
    input.push(good("ok"));
    let mut c = good("none");
    c.videos.clear();
    input.push(c);
    let mut c = good("small");
    c.size = 1;
    input.push(c);
    let mut c = good("title");
    c.videos[0].title = " ".into();
    input.push(c);
    input.push(good("inf-score"));
    let plan = Batcher::default().with_scorer(Inf).plan(&input).unwrap();
    let expected = [
        Rejection::NonFinite {
            field: "avg_performance".into(),
        },
        Rejection::Negative {
            field: "videos[1].performance_ratio".into(),
            value: -2.5,
        },
        Rejection::EmptyId,
        Rejection::DuplicateId { first_index: 0 },
        Rejection::NoVideos,
        Rejection::SizeBelowVideoCount { size: 1, videos: 2 },
        Rejection::EmptyTitle { video: 0 },
        Rejection::ScorerOutput {
            what: dynbatch::ScoreKind::Quality,
            value: f64::INFINITY,
        },
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = rejection(&plan, i + 1);
        assert_eq!(&got, want, "cluster {}", i + 1);
        let json = serde_json::to_value(&plan.clusters[i + 1].state).unwrap();
        assert_eq!(json["status"], "rejected");
        assert_eq!(json["rejection"]["rule"], got.rule());
        assert_eq!(json["rejection"]["reason"], got.to_string());
        let back: ClusterState<'_> = serde_json::from_value(json).unwrap();
        match back {
            ClusterState::Rejected {
                rejection: Rejection::ScorerOutput { what, value },
            } => {
                assert_eq!(what, dynbatch::ScoreKind::Quality);
                assert!(value.is_nan(), "null reads back as NaN");
            }
            ClusterState::Rejected { rejection } => assert_eq!(&rejection, want),
            other => panic!("{other:?}"),
        }
    }
}

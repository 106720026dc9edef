//! Scoring a report against labels (`dynbatch::eval::evaluate`) at scale: a 10,000-cluster
//! report of the offline finder over planted formulas across topic clusters (the shape of
//! `examples/data/planted`), against 12 labels across clusters and 200 labels of clusters.
//! The goal is under a second.
//!
//! ```text
//! cargo bench --bench eval
//! ```

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dynbatch::backend::formulas::FormulaFinder;
use dynbatch::eval::{Label, LabelSet, evaluate};
use dynbatch::{Batcher, BatchingConfig, Cluster, Runner, TokioTimer, Video};

const FORMULAS: [(&str, &str); 12] = [
    (
        "{n} {t} Hacks That Actually Work",
        r"^\d+ .+ Hacks That Actually Work",
    ),
    ("Why {t} Is Overrated", r"^Why .+ Is Overrated"),
    ("The Truth About {t}", r"^The Truth About .+"),
    ("I Tried {t} for {n} Days", r"^I Tried .+ for \d+ Days"),
    (
        "{t} for Beginners: Everything You Need to Know",
        r"for Beginners: Everything",
    ),
    (
        "Stop Making These {n} {t} Mistakes",
        r"^Stop Making These \d+ .+ Mistakes",
    ),
    (
        "{t} vs the Cheap Option: Which Is Better?",
        r"^.+ vs .+: Which Is Better\?",
    ),
    (
        "I Spent ${n} on {t} So You Don't Have To",
        r"^I Spent \$\d+ on .+",
    ),
    (
        "How to Get Better at {t} in {n} Minutes a Day",
        r"^How to Get Better at .+",
    ),
    ("{t} Tier List ({n} Edition)", r"Tier List \(\d+ Edition\)"),
    (
        "Nobody Talks About This {t} Secret",
        r"^Nobody Talks About This .+ Secret",
    ),
    (
        "{n} Things I Wish I Knew Before Starting {t}",
        r"^\d+ Things I Wish I Knew",
    ),
];
const WORDS: [&str; 16] = [
    "Sourdough",
    "Chess",
    "Bonsai",
    "Kayak",
    "Vinyl",
    "Pottery",
    "Garden",
    "Drone",
    "Knitting",
    "Climbing",
    "Espresso",
    "Tarot",
    "Origami",
    "Aquarium",
    "Camping",
    "Skating",
];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `n` clusters, each of a topic of its own (two words), its titles following four formulas.
fn clusters(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let r = splitmix(i as u64);
            let topic = format!(
                "{} {}",
                WORDS[(r % 16) as usize],
                WORDS[((r >> 8) % 16) as usize]
            );
            let videos = (0..8u32)
                .map(|k| {
                    let f = FORMULAS[((r >> (16 + 4 * (k / 2))) % 12) as usize].0;
                    let number = (splitmix(r ^ u64::from(k)) % 90 + 3).to_string();
                    let title = f.replace("{t}", &topic).replace("{n}", &number);
                    Video::new(title, 8.0 - f64::from(k) * 0.5)
                })
                .collect();
            let mut c = Cluster::new(format!("c{i:05}"), videos);
            c.size = 30;
            c.avg_performance = 4.0;
            c.thread_sources = vec!["a".into(), "b".into(), "c".into(), "d".into()];
            c
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = 10_000;
    let clusters = clusters(n);
    let config = BatchingConfig::builder()
        .max_total_calls(n)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let runner = Runner::new(FormulaFinder::new(), TokioTimer);
    let report = runtime
        .block_on(Batcher::new(config).discover(&clusters, "hobbies", &runner))
        .unwrap();
    let mut labels: Vec<Label> = FORMULAS
        .iter()
        .enumerate()
        .map(|(i, (_, regex))| Label::new(format!("formula {i}"), *regex))
        .collect();
    for (i, cluster) in clusters.iter().step_by(n / 200).enumerate() {
        let (_, regex) = FORMULAS[i % 12];
        labels.push(Label::new(format!("cluster {i}"), regex).in_cluster(&cluster.id));
    }
    let labels = LabelSet::new(labels).unwrap();
    let scored = evaluate(&report, &clusters, &labels);
    eprintln!(
        "{} batched clusters, {} consolidated patterns: {}",
        report.outcomes.len(),
        report.patterns.len(),
        scored.to_string().lines().next().unwrap_or_default()
    );
    let mut group = c.benchmark_group("evaluate");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("10k clusters, 212 labels", |b| {
        b.iter(|| evaluate(&report, &clusters, &labels));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

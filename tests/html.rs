//! The HTML page of a report: hostile titles and names show as text (no browser needed), the
//! bundled sample's page stays small, a 20,000-cluster report's page stays under its stated
//! size; and, ignored unless `DYNBATCH_CHROMIUM` names a Chromium (`scripts/browser-test.sh`
//! installs Debian's), both pages rendered in headless Chromium: every pattern on the page, no
//! script from the data run, a screenshot saved.

#![cfg(all(feature = "html", feature = "mock", feature = "tokio"))]
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::path::PathBuf;
use std::process::Command;

use dynbatch::Runner;
use dynbatch::TokioTimer;
use dynbatch::backend::mock::MockBackend;
use dynbatch::html::{Page, Timeline, to_html};
use dynbatch::report::DiscoveryReport;
use dynbatch::{Batcher, Cluster, Video};

use crate::support_bundled;
use support_bundled::bundled;

const HOSTILE: [&str; 4] = [
    "</td><script>document.title='PWNED'</script>",
    "<img src=x onerror=\"document.title='PWNED'\"> Espresso Tricks",
    "Latte \"Art\" & <b>Foam</b> for 30 Days",
    "<style>body{display:none}</style> I Tried Cold Brew",
];

/// Clusters whose titles are hostile (each cluster's share one, so that the mock finds it as a
/// formula and it reaches the patterns), with ids that are too.
fn hostile() -> Vec<Cluster> {
    (0..4)
        .map(|i| {
            let videos = (0..4)
                .map(|k| Video::new(format!("{} #{k}", HOSTILE[i % 4]), 5.0 - f64::from(k) * 0.3))
                .collect();
            let mut c = Cluster::new(format!("<i>c{i}</i>"), videos);
            c.is_wide = i % 2 == 0;
            c.thread_sources = vec!["a".into(), "b".into(), "c".into()];
            c
        })
        .collect()
}

async fn report(clusters: &[Cluster]) -> (DiscoveryReport<'_>, Timeline) {
    let plan = Batcher::default().plan(clusters).unwrap();
    let timeline = std::sync::Arc::new(std::sync::Mutex::new(Timeline::new()));
    let record = std::sync::Arc::clone(&timeline);
    let started = std::time::Instant::now();
    let report = Runner::new(MockBackend::new(), TokioTimer)
        .on_event(move |e| record.lock().unwrap().record(started.elapsed(), e))
        .run(plan, clusters, "home <espresso>")
        .await
        .unwrap();
    let timeline = timeline.lock().unwrap().clone();
    (report, timeline)
}

/// Text as it appears escaped in the page.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test]
async fn hostile_titles_and_names_show_as_text() {
    let clusters = hostile();
    let (report, timeline) = report(&clusters).await;
    assert!(!report.patterns.is_empty());
    let page = to_html(&report, &Page::new().with_timeline(timeline));
    // No markup from the data: the page has no script at all, and the data's tags are text.
    assert!(!page.contains("<script"), "a script tag in the page");
    assert!(!page.contains("<img"), "an img tag in the page");
    assert!(!page.contains("onerror=\""), "an event handler in the page");
    assert!(!page.contains("<i>c0"), "a cluster id as markup");
    assert_eq!(
        page.matches("<style>").count(),
        1,
        "only the page's own style"
    );
    assert!(page.contains("&lt;i&gt;c0&lt;/i&gt;"), "the id as text");
    assert!(page.contains(&escaped("home <espresso>")));
    // Every pattern is on the page, escaped.
    for p in &report.patterns {
        assert!(
            page.contains(&escaped(&p.pattern)),
            "{:?} missing",
            p.pattern
        );
    }
    // The chart is there, drawn from the timeline.
    assert!(page.contains("<svg"));
}

#[tokio::test]
async fn the_bundled_page_is_small_and_a_huge_report_stays_under_its_cap() {
    let clusters = bundled();
    let (report, timeline) = report(&clusters).await;
    let page = to_html(&report, &Page::new().with_timeline(timeline));
    assert!(page.len() < 60_000, "{} bytes", page.len());
    for p in &report.patterns {
        assert!(page.contains(&escaped(&p.pattern)));
    }
    // 20,000 clusters: its JSON report is large, its page is not (500 of each listed, and the
    // page says how many more the JSON holds).
    let n = 20_000;
    let mut value = serde_json::to_value(&report).unwrap();
    let entry = value["plan"]["clusters"][0].clone();
    let outcome = value["outcomes"][0].clone();
    let pattern = value["patterns"][0].clone();
    let batch = value["plan"]["batches"][0].clone();
    let many = |template: &serde_json::Value, field: &str| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| {
                let mut v = template.clone();
                if !field.is_empty() {
                    v[field] = serde_json::json!(format!("c{i} <b>x</b>"));
                }
                v
            })
            .collect()
    };
    value["plan"]["clusters"] = serde_json::Value::Array(many(&entry, "id"));
    value["outcomes"] = serde_json::Value::Array(many(&outcome, "id"));
    value["patterns"] = serde_json::Value::Array(many(&pattern, "pattern"));
    value["plan"]["batches"] = serde_json::Value::Array(many(&batch, ""));
    let huge: DiscoveryReport<'static> = serde_json::from_value(value).unwrap();
    let mut out = Vec::new();
    dynbatch::html::write_html(&huge, &Page::new(), &mut out).unwrap();
    assert!(out.len() < 2_000_000, "{} bytes", out.len());
    let page = String::from_utf8(out).unwrap();
    assert!(page.contains("19500 more patterns are in the JSON report."));
}

fn chromium() -> Option<PathBuf> {
    std::env::var_os("DYNBATCH_CHROMIUM").map(PathBuf::from)
}

/// Runs headless Chromium on `page`: the DOM after load, and the console output.
fn render(
    chromium: &PathBuf,
    page: &std::path::Path,
    screenshot: Option<&std::path::Path>,
) -> (String, String) {
    let url = format!("file://{}", page.display());
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,1800",
    ]);
    if let Some(shot) = screenshot {
        command.arg(format!("--screenshot={}", shot.display()));
    } else {
        command.arg("--dump-dom");
    }
    let out = command.arg(&url).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs Chromium: scripts/browser-test.sh"]
async fn in_headless_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!("DYNBATCH_CHROMIUM not set: skipped");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("html-test");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, clusters) in [("bundled", bundled()), ("hostile", hostile())] {
        let (report, timeline) = report(&clusters).await;
        let path = dir.join(format!("{name}.html"));
        std::fs::write(
            &path,
            to_html(&report, &Page::new().with_timeline(timeline)),
        )
        .unwrap();
        let (dom, log) = render(&chromium, &path, None);
        // No console error, no script ran (it would have renamed the page), no script element.
        assert!(!log.contains("CONSOLE"), "{name}: {log}");
        assert!(dom.contains("<title>Title patterns for"), "{name}");
        assert!(
            !dom.contains("PWNED</title>"),
            "{name}: a script from the data ran"
        );
        assert!(!dom.contains("<script"), "{name}: a script element");
        for p in &report.patterns {
            assert!(
                dom.contains(&escaped(&p.pattern).replace("&quot;", "\"")),
                "{name}: {:?}",
                p.pattern
            );
        }
        let shot = dir.join(format!("{name}.png"));
        render(&chromium, &path, Some(&shot));
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 10_000,
            "{name}: screenshot"
        );
        eprintln!(
            "{name}: {} bytes, screenshot {}",
            std::fs::metadata(&path).unwrap().len(),
            shot.display()
        );
    }
}

//! A [`DiscoveryReport`] as one self-contained HTML page (feature `html`): inline CSS and SVG,
//! no script, no external asset or font, so it opens offline and can be mailed or served as
//! it is. Built with maud, whose templates escape every value by default: titles, pattern
//! names and everything else from the input or the model show as text, never as markup.
//!
//! Long lists are folded (`<details>`) and capped ([`Page::max_listed`]); the page says what
//! it left out, and the JSON report holds everything. Each section is written to the output
//! as soon as it is rendered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::plan::ClusterState;
use crate::report::{DiscoveryReport, Failure, OutcomeStatus};
use crate::run::RunEvent;

/// What happened over a run, for the page's chart: requests sent, answers, 429s and waits,
/// each at its time from the start. Fill it from [`Runner::on_event`](crate::Runner::on_event).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    marks: Vec<(f64, Mark)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    Sent,
    Answered,
    RateLimited,
    Waited(f64),
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `event`, which happened `at` after the run started.
    pub fn record(&mut self, at: Duration, event: &RunEvent) {
        let t = at.as_secs_f64();
        let mark = match event {
            RunEvent::BatchStarted { .. } => Mark::Sent,
            RunEvent::Succeeded { .. } | RunEvent::Failed { .. } => Mark::Answered,
            RunEvent::RateLimited { .. } => Mark::RateLimited,
            RunEvent::Throttled { wait, .. } => Mark::Waited(wait.as_secs_f64()),
            _ => return,
        };
        self.marks.push((t, mark));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

/// The page's settings and what the report does not hold.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page {
    /// The provider or server, for the header.
    pub provider: Option<String>,
    /// When the run happened, as text, for the header.
    pub when: Option<String>,
    /// The run over time, for the chart.
    pub timeline: Option<Timeline>,
    /// The most patterns, batches, clusters, failures and warnings listed in full, each;
    /// the page says how many more the JSON report holds. Default 500.
    pub max_listed: usize,
    /// The plan's target tokens per batch, that each batch's bar is drawn against; the
    /// largest batch when not given.
    pub target_tokens: Option<u64>,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            provider: None,
            when: None,
            timeline: None,
            max_listed: 500,
            target_tokens: None,
        }
    }
}

impl Page {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `provider` in the header.
    #[must_use]
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// With `when` in the header.
    #[must_use]
    pub fn with_when(mut self, when: impl Into<String>) -> Self {
        self.when = Some(when.into());
        self
    }

    /// With the run's timeline, drawn as a chart.
    #[must_use]
    pub fn with_timeline(mut self, timeline: Timeline) -> Self {
        self.timeline = Some(timeline);
        self
    }

    /// Draws each batch's tokens against `target` tokens per batch
    /// ([`BatchingConfig::target_tokens_per_batch`](crate::BatchingConfig::target_tokens_per_batch)).
    #[must_use]
    pub fn with_target_tokens(mut self, target: u64) -> Self {
        self.target_tokens = Some(target.max(1));
        self
    }

    /// Lists at most `n` items of each kind in full.
    #[must_use]
    pub fn with_max_listed(mut self, n: usize) -> Self {
        self.max_listed = n.max(1);
        self
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#1d2430;background:#fbfbfd}\
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #dde;padding-bottom:.2em}\
.meta{color:#556}.figs{display:flex;flex-wrap:wrap;gap:.6em}.fig{background:#fff;border:1px solid #dde;border-radius:6px;padding:.5em .8em;min-width:8em}\
.fig b{display:block;font-size:1.3em}.fig span{color:#667;font-size:.85em}\
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #eef;padding:.35em .5em;text-align:left;vertical-align:top}\
th{font-size:.85em;color:#556}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.tpl{font-family:ui-monospace,monospace;font-size:.9em;color:#334}.wide{color:#0a6;font-size:.8em}\
details{margin:.2em 0}summary{cursor:pointer;color:#235}.bar{background:#e6ebf5;height:.7em;border-radius:3px;width:12em;display:inline-block;vertical-align:middle}\
.bar i{display:block;height:100%;background:#5a7bd8;border-radius:3px}.bar i.over{background:#d8735a}\
.fail{color:#b33}.note{color:#667;font-size:.9em}ul.ex{margin:.2em 0 .2em 1.2em;padding:0}svg text{font:11px system-ui,sans-serif;fill:#556}";

/// Writes the page of `report` to `out`, section by section.
///
/// ```
/// # #[cfg(all(feature = "mock", feature = "tokio"))] {
/// use dynbatch::html::{Page, write_html};
/// use dynbatch::{Batcher, Cluster, Runner, TokioTimer, Video};
/// use dynbatch::backend::mock::MockBackend;
///
/// let clusters = vec![Cluster::new("c1", vec![Video::new("I Tried Latte Art for 30 Days", 4.0)])];
/// let plan = Batcher::default().plan(&clusters)?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// let concept = "<b>latte</b> art";
/// let report = rt.block_on(Runner::new(MockBackend::new(), TokioTimer).run(plan, &clusters, concept))?;
/// let mut page = Vec::new();
/// write_html(&report, &Page::new(), &mut page)?;
/// let page = String::from_utf8(page)?;
/// assert!(page.contains("&lt;b&gt;latte&lt;/b&gt; art") && !page.contains("<b>latte"));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// What writing to `out` returns.
pub fn write_html(
    report: &DiscoveryReport<'_>,
    page: &Page,
    out: &mut impl io::Write,
) -> io::Result<()> {
    let title = format!("Title patterns for “{}”", report.concept);
    let head = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
        }
    };
    // The document is streamed: the head's closing tags are left off and written at the end.
    let head = head.into_string();
    let head = head.trim_end_matches("</html>").trim_end_matches("</head>");
    out.write_all(head.as_bytes())?;
    out.write_all(b"</head><body>")?;
    for section in [
        header(report, page, &title),
        figures(report),
        patterns(report, page.max_listed),
        probe(report, page.max_listed),
        chart(page.timeline.as_ref(), report.usage.elapsed_secs),
        plan(report, page.max_listed, page.target_tokens),
        failures(report, page.max_listed),
        warnings(report, page.max_listed),
    ] {
        out.write_all(section.into_string().as_bytes())?;
    }
    out.write_all(b"</body></html>\n")
}

/// The page as a string.
pub fn to_html(report: &DiscoveryReport<'_>, page: &Page) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and the page is UTF-8 throughout.
    let _ = write_html(report, page, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn header(report: &DiscoveryReport<'_>, page: &Page, title: &str) -> Markup {
    let u = &report.usage;
    html! {
        h1 { (title) }
        p.meta {
            "Model " b { (u.model) }
            @if let Some(p) = &page.provider { " · provider " (p) }
            @if let Some(w) = &page.when { " · " (w) }
            " · " (format!("{:.1}", u.elapsed_secs)) " s"
            " · " (format!("{:?}", u.price_tier).to_lowercase()) " prices"
        }
    }
}

/// `n` and the noun that goes with it.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn fig(value: impl std::fmt::Display, label: &str) -> Markup {
    html! { div.fig { b { (value) } span { (label) } } }
}

fn figures(report: &DiscoveryReport<'_>) -> Markup {
    let counts = report.plan.counts();
    let (ok, failed) = report.outcome_counts();
    let u = &report.usage;
    let cost = u
        .estimated_cost_usd
        .map_or_else(|| "—".to_owned(), |c| format!("${c:.4}"));
    html! {
        h2 { "Summary" }
        div.figs {
            (fig(report.plan.clusters.len(), "clusters in"))
            (fig(counts.batched, "batched"))
            (fig(ok, "succeeded"))
            (fig(failed, "failed"))
            (fig(counts.below_threshold, "below threshold"))
            (fig(counts.deferred, "deferred (budget)"))
            (fig(counts.rejected, "rejected (invalid)"))
            (fig(format!("{} / {}", u.calls_made, u.calls_planned), "calls made / planned"))
            (fig(format!("{} / {}", u.prompt_tokens, u.completion_tokens), "tokens in / out"))
            (fig(cost, "cost"))
            @if u.cached > 0 {
                (fig(u.cached, "answers from the journal"))
                (fig(u.saved_cost_usd.map_or_else(|| "—".to_owned(), |c| format!("${c:.4}")), "saved by the journal"))
            }
            (fig(report.patterns.len(), "patterns"))
        }
    }
}

/// The rationale the model gave for one of `pattern`'s names, if any.
fn rationale<'r>(report: &'r DiscoveryReport<'_>, names: &[(&str, &str)]) -> Option<&'r str> {
    names.iter().find_map(|(cluster, name)| {
        report
            .cluster_patterns
            .iter()
            .find(|c| c.id == *cluster)?
            .patterns
            .iter()
            .find(|p| p.pattern == *name)?
            .rationale
            .as_deref()
    })
}

fn patterns(report: &DiscoveryReport<'_>, max: usize) -> Markup {
    let shown = report.patterns.len().min(max);
    html! {
        h2 { "Patterns, by evidence" }
        table {
            tr { th { "#" } th { "pattern" } th { "evidence" } th { "clusters" }
                th title="shown titles of its clusters that its templates match, counted by dynbatch" { "covers" }
                th { "behind it" } }
            @for (n, p) in report.patterns.iter().take(max).enumerate() {
                @let names: Vec<(&str, &str)> = p.aliases.iter().map(|a| (a.cluster.as_str(), a.pattern.as_str())).collect();
                @let batches: std::collections::BTreeSet<usize> = p.aliases.iter().filter_map(|a| a.batch).collect();
                @let merged: std::collections::BTreeSet<&str> = p.aliases.iter().map(|a| a.pattern.as_str()).filter(|a| *a != p.pattern).collect();
                tr {
                    td.n { (n + 1) }
                    td {
                        b { (p.pattern) }
                        @if p.wide { " " span.wide { "WIDE" } }
                        @if let Some(t) = &p.template { br; span.tpl { (t) } }
                        @if let Some(r) = rationale(report, &names) { br; span.note { (r) } }
                    }
                    td.n { (format!("{:.2}", p.evidence)) }
                    td.n { (p.clusters.len()) }
                    td.n { @if let Some(c) = p.coverage { (c) } @else { "–" } }
                    td {
                        details {
                            summary { (count(p.examples.len(), "title", "titles")) ", " (count(p.clusters.len(), "cluster", "clusters")) ", " (count(batches.len(), "batch", "batches"))
                                @if !merged.is_empty() { ", " (count(merged.len(), "other name", "other names")) } }
                            @if !p.examples.is_empty() {
                                ul.ex { @for e in p.examples.iter().take(20) { li { (e) } } }
                            }
                            p.note { "clusters: " (p.clusters.iter().take(50).cloned().collect::<Vec<_>>().join(", "))
                                @if p.clusters.len() > 50 { " …" } }
                            @if !batches.is_empty() {
                                p.note { "batches: " (batches.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                            }
                            @if !merged.is_empty() {
                                p.note { "also named: " (merged.iter().take(30).copied().collect::<Vec<_>>().join(" · ")) }
                            }
                        }
                    }
                }
            }
        }
        @if report.patterns.len() > shown {
            p.note { (report.patterns.len() - shown) " more patterns are in the JSON report." }
        }
    }
}

fn chart(timeline: Option<&Timeline>, elapsed: f64) -> Markup {
    let Some(timeline) = timeline.filter(|t| !t.is_empty()) else {
        return html! {};
    };
    let end = timeline
        .marks
        .iter()
        .map(|(t, _)| *t)
        .fold(elapsed, f64::max)
        .max(0.001);
    let (width, height) = (1000.0, 180.0);
    let sent_total = timeline
        .marks
        .iter()
        .filter(|(_, m)| *m == Mark::Sent)
        .count()
        .max(1);
    #[allow(clippy::cast_precision_loss)]
    let y = |n: usize| height - 10.0 - (height - 30.0) * n as f64 / sent_total as f64;
    let x = |t: f64| 40.0 + (width - 50.0) * t / end;
    let mut sent_path = String::from("M40,170");
    let mut answered_path = String::from("M40,170");
    let (mut sent, mut answered) = (0, 0);
    let mut refusals = Vec::new();
    let mut waits = Vec::new();
    for &(t, mark) in &timeline.marks {
        match mark {
            Mark::Sent => {
                sent += 1;
                let _ = write!(sent_path, " L{:.1},{:.1}", x(t), y(sent));
            }
            Mark::Answered => {
                answered += 1;
                let _ = write!(answered_path, " L{:.1},{:.1}", x(t), y(answered));
            }
            Mark::RateLimited => refusals.push(x(t)),
            Mark::Waited(w) => waits.push((x(t), (x(t + w) - x(t)).max(0.5))),
        }
    }
    let refused = refusals.len();
    html! {
        h2 { "The run over time" }
        svg width="100%" viewBox=(format!("0 0 {width} {height}")) role="img" {
            title { "Requests sent and answered over time, with 429s and waits for the rate limit" }
            @for (wx, ww) in waits.iter().take(2000) {
                rect x=(format!("{wx:.1}")) y="10" width=(format!("{ww:.1}")) height="160" fill="#f3e9c8" {}
            }
            line x1="40" y1="170" x2=(width - 10.0) y2="170" stroke="#99a" {}
            path d=(sent_path) fill="none" stroke="#5a7bd8" stroke-width="2" {}
            path d=(answered_path) fill="none" stroke="#2a9d5c" stroke-width="2" {}
            @for rx in refusals.iter().take(2000) {
                line x1=(format!("{rx:.1}")) y1="165" x2=(format!("{rx:.1}")) y2="175" stroke="#c33" {}
            }
            text x="40" y="8" { "requests sent (blue), answered (green), 429s (red ticks), waiting for the rate limit (shaded)" }
            text x=(width - 60.0) y="180" { (format!("{end:.1} s")) }
            text x="2" y="24" { (sent) }
        }
        p.note { (sent) " requests sent, " (answered) " answered or given up, " (refused) " answered 429." }
    }
}

/// `part` of `whole`, in percent.
#[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
fn percent(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// What each strategy does, in words.
fn strategy_note(report: &DiscoveryReport<'_>) -> String {
    let s = &report.plan.strategy;
    let size = s.batch_size.map_or_else(
        || "batches sized by tokens".to_owned(),
        |n| format!("batches of {n}"),
    );
    format!(
        "{size}, {} videos per cluster, {}–{} patterns per cluster, temperature {}",
        s.videos_per_cluster, s.patterns_per_cluster.min, s.patterns_per_cluster.max, s.temperature
    )
}

fn plan(report: &DiscoveryReport<'_>, max: usize, target: Option<u64>) -> Markup {
    let largest = report
        .plan
        .batches
        .iter()
        .map(|b| b.estimated_tokens)
        .max()
        .unwrap_or(1);
    // The bar's full width: the target, or the largest batch; over it, the bar is full and red.
    let scale = target.unwrap_or(largest).max(1);
    let not_batched: Vec<_> = report
        .plan
        .clusters
        .iter()
        .filter(|c| !matches!(c.state, ClusterState::Batched { .. }))
        .collect();
    html! {
        h2 { "The plan" }
        p { "Strategy " b { (report.plan.strategy.kind.as_str()) } ": " (strategy_note(report)) "." }
        details {
            summary { (report.plan.batches.len()) " batches" }
            table {
                tr { th { "batch" } th { "clusters" } th { "estimated tokens" }
                    th { @if let Some(t) = target { "against the target of " (t) } @else { "against the largest batch" } } }
                @for (i, b) in report.plan.batches.iter().enumerate().take(max) {
                    @let pct = percent(b.estimated_tokens, scale);
                    tr {
                        td.n { (i) }
                        td { (b.clusters.len()) ": " span.note { (b.clusters.iter().take(12).map(AsRef::as_ref).collect::<Vec<&str>>().join(", ")) @if b.clusters.len() > 12 { " …" } } }
                        td.n { (b.estimated_tokens) }
                        td { span.bar { i class=(if b.oversized || pct > 100.0 { "over" } else { "" }) style=(format!("width:{:.0}%", pct.min(100.0))) {} } }
                    }
                }
            }
            @if report.plan.batches.len() > max { p.note { (report.plan.batches.len() - max) " more batches are in the JSON report." } }
        }
        @if !not_batched.is_empty() {
            details {
                summary { (not_batched.len()) " clusters not batched" }
                table {
                    tr { th { "cluster" } th { "state" } th { "why" } }
                    @for c in not_batched.iter().take(max) {
                        tr {
                            td { (c.id) }
                            td { (c.state.name()) }
                            td { (match &c.state {
                                ClusterState::BelowThreshold { reason } | ClusterState::Deferred { reason } => reason.to_string(),
                                ClusterState::Rejected { rejection } => rejection.to_string(),
                                ClusterState::Batched { .. } => String::new(),
                            }) }
                        }
                    }
                }
                @if not_batched.len() > max { p.note { (not_batched.len() - max) " more are in the JSON report." } }
            }
        }
    }
}

/// What to do about a failure, for people.
fn advice(failure: Option<&Failure>) -> &'static str {
    match failure {
        Some(Failure::Backend { .. }) => {
            "The server refused the request for good: check the key, the model and the request's size."
        }
        Some(Failure::BudgetExhausted { .. }) => {
            "Transient errors used the extra-call budget: run again with a journal to send only these, or raise max_extra_calls."
        }
        Some(Failure::TooBigToSend) => {
            "The cluster alone is larger than the model or the account allows: fewer videos per cluster, or a larger model."
        }
        Some(Failure::Stopped { .. }) => {
            "The run stopped sending: run again with the same journal to resume."
        }
        Some(Failure::Unusable { .. }) => {
            "The model's answers could not be used: try another output mode or a larger model."
        }
        _ => "See the reason.",
    }
}

/// The quality probe, when the run had one.
fn probe(report: &DiscoveryReport<'_>, max: usize) -> Markup {
    let Some(probe) = &report.quality_probe else {
        return html! {};
    };
    html! {
        h2 { "Quality probe" }
        p { (probe.to_string()) @if let Some(cost) = probe.cost_usd { ", " (format!("${cost:.5}")) } "." }
        @if probe.is_low() {
            p.fail { "Under the " (format!("{:.0}%", probe.threshold * 100.0)) " threshold: smaller batches may find more." }
        }
        table {
            tr { th { "cluster" } th { "batch" } th { "position" } th { "of" } th { "agreed" } th { "compared" } th { "note" } }
            @for c in probe.clusters.iter().take(max) {
                tr {
                    td { (c.id) }
                    td.n { (c.batch) }
                    td.n { (c.position) }
                    td.n { (c.batch_size) }
                    td.n { (c.agreed) }
                    td.n { (c.compared) }
                    td { (c.failed.as_deref().unwrap_or("")) }
                }
            }
        }
    }
}

fn failures(report: &DiscoveryReport<'_>, max: usize) -> Markup {
    let failed: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| o.status == OutcomeStatus::Failed)
        .collect();
    if failed.is_empty() {
        return html! {};
    }
    // Grouped by advice, so that one cause reads once.
    let mut by_advice: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for o in &failed {
        by_advice
            .entry(advice(o.failure.as_ref()))
            .or_default()
            .push(*o);
    }
    html! {
        h2.fail { (failed.len()) " clusters failed" }
        @for (advice, outcomes) in &by_advice {
            details open {
                summary { (outcomes.len()) " · " (advice) }
                table {
                    tr { th { "cluster" } th { "batch" } th { "attempts" } th { "why" } }
                    @for o in outcomes.iter().take(max) {
                        tr {
                            td { (o.id) }
                            td.n { (o.batch) }
                            td.n { (o.attempts) }
                            td { (o.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
                @if outcomes.len() > max { p.note { (outcomes.len() - max) " more are in the JSON report." } }
            }
        }
    }
}

/// A warning's kind: its text without the batch and cluster it names, digits as `#`.
fn warning_kind(warning: &str) -> String {
    let mut rest = warning;
    for prefix in ["batch ", "cluster "] {
        if let Some(after) = rest.strip_prefix(prefix) {
            rest = after.split_once(": ").map_or(after, |(_, r)| r);
        }
    }
    rest.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

fn warnings(report: &DiscoveryReport<'_>, max: usize) -> Markup {
    if report.warnings.is_empty() {
        return html! {};
    }
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for w in &report.warnings {
        groups.entry(warning_kind(w)).or_default().push(w);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    html! {
        h2 { (report.warnings.len()) " warnings" }
        @for (kind, list) in groups.iter().take(max) {
            details {
                summary { (list.len()) " × " (kind) }
                ul.ex { @for w in list.iter().take(max) { li { (w) } } }
            }
        }
    }
}

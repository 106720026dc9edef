//! What a run keeps as it goes (each cluster's result, counters, request records, warnings),
//! and the [`DiscoveryReport`] made from it at the end, in plan order.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::TokenUsage;
use crate::model::Cluster;
use crate::patterns::{ClusterPatterns, Support};
use crate::plan::BatchPlan;
use crate::response::Pattern;

use super::RunConfig;
use crate::report::{
    ClusterOutcome, DiscoveryReport, Failure, OutcomeStatus, PriceTable, RateLimitSummary,
    RequestRecord, RunUsage,
};

/// One batched cluster's result so far.
#[derive(Debug, Default, Clone)]
pub(super) struct ClusterResult {
    pub(super) patterns: Option<Vec<Pattern>>,
    pub(super) failure: Option<(String, Failure)>,
    pub(super) attempts: u32,
}

/// Counters of a run.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) calls: u64,
    pub(super) retries: u64,
    pub(super) requeued: u64,
    pub(super) splits: u64,
    pub(super) reasks: u64,
    pub(super) rate_limited: u64,
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) reported_usage: u64,
    pub(super) waited: Duration,
    pub(super) cached: u64,
    pub(super) cached_prompt_tokens: u64,
    pub(super) cached_completion_tokens: u64,
    /// Reported usage by the model that answered.
    pub(super) by_model: BTreeMap<String, TokenUsage>,
    /// Usage of the journal's answers, by model.
    pub(super) cached_by_model: BTreeMap<String, TokenUsage>,
}

/// Everything the run keeps until the report.
#[derive(Debug)]
pub(super) struct Tally {
    /// By input index.
    pub(super) results: Vec<ClusterResult>,
    pub(super) counters: Counters,
    pub(super) records: Vec<RequestRecord>,
    pub(super) warnings: Vec<String>,
}

/// What the runner's parts counted, for the usage.
#[derive(Debug)]
pub(super) struct Extras {
    pub(super) extra_calls: u64,
    pub(super) circuit_opened: u64,
    pub(super) rate_limits: RateLimitSummary,
    pub(super) elapsed: Duration,
    pub(super) output_mode: crate::prompt::OutputMode,
}

impl Tally {
    pub(super) fn new(clusters: usize) -> Self {
        Self {
            results: vec![ClusterResult::default(); clusters],
            counters: Counters::default(),
            records: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A call was sent carrying `members`.
    pub(super) fn sent(&mut self, members: &[usize]) {
        self.counters.calls += 1;
        for &m in members {
            self.results[m].attempts += 1;
        }
    }

    pub(super) fn fail(&mut self, members: &[usize], reason: &str, failure: &Failure) {
        for &m in members {
            self.results[m].failure = Some((reason.to_owned(), failure.clone()));
        }
    }

    /// An answer from the journal carrying `members`: an attempt, not a call.
    pub(super) fn served(&mut self, members: &[usize], usage: Option<TokenUsage>, model: &str) {
        self.counters.cached += 1;
        for &m in members {
            self.results[m].attempts += 1;
        }
        if let Some(u) = usage {
            self.counters.cached_prompt_tokens += u.prompt_tokens;
            self.counters.cached_completion_tokens += u.completion_tokens;
            add(&mut self.counters.cached_by_model, model, u);
        }
    }

    pub(super) fn usage(&mut self, usage: Option<TokenUsage>, model: &str) {
        if let Some(u) = usage {
            self.counters.prompt_tokens += u.prompt_tokens;
            self.counters.completion_tokens += u.completion_tokens;
            self.counters.reported_usage += 1;
            add(&mut self.counters.by_model, model, u);
        }
    }

    /// The report, in plan order: `members` are the input indices of each batch.
    pub(super) fn finish<'a>(
        self,
        plan: BatchPlan<'a>,
        clusters: &[Cluster],
        members: &[Vec<usize>],
        concept: &str,
        config: &RunConfig,
        extras: &Extras,
    ) -> (DiscoveryReport<'a>, Vec<Support>) {
        let Tally {
            mut results,
            counters: c,
            mut records,
            warnings,
        } = self;
        let mut outcomes = Vec::new();
        let mut cluster_patterns = Vec::new();
        let mut support = Vec::new();
        for (batch, m) in members.iter().enumerate() {
            for &i in m {
                let r = std::mem::take(&mut results[i]);
                let id = clusters[i].id.clone();
                let (status, reason, failure) = match (&r.patterns, r.failure) {
                    (Some(_), _) => (OutcomeStatus::Succeeded, None, None),
                    (None, Some((reason, failure))) => {
                        (OutcomeStatus::Failed, Some(reason), Some(failure))
                    }
                    // Every batched cluster is answered or failed before the run ends.
                    (None, None) => (
                        OutcomeStatus::Failed,
                        Some("not answered".to_owned()),
                        Some(Failure::NotAnswered { asked_again: false }),
                    ),
                };
                outcomes.push(ClusterOutcome {
                    id: id.clone(),
                    batch,
                    status,
                    reason,
                    failure,
                    attempts: r.attempts,
                });
                if let Some(patterns) = r.patterns {
                    let cluster = &clusters[i];
                    support.push(Support {
                        id: id.clone(),
                        priority: plan.clusters[i].priority.unwrap_or(0.0),
                        avg_performance: cluster.avg_performance,
                        is_wide: cluster.is_wide,
                        patterns: patterns.clone(),
                    });
                    cluster_patterns.push(ClusterPatterns { id, patterns });
                }
            }
        }
        records.sort_by_key(|r| r.batch); // stable: a batch's requests stay in order
        // Warnings name their batch ("batch 3: …"): in batch order, whatever the arrival order.
        let mut warnings = warnings;
        warnings.sort_by_key(|w| {
            w.strip_prefix("batch ")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        let usage = usage(&c, &records, &plan, members, config, extras);
        let report = DiscoveryReport {
            concept: concept.to_owned(),
            patterns: Vec::new(),
            plan,
            outcomes,
            cluster_patterns,
            requests: records,
            usage,
            warnings,
            quality_probe: None,
        };
        (report, support)
    }
}

impl Tally {
    /// What the calls counted so far cost, at `config`'s prices.
    pub(super) fn cost(&self, config: &RunConfig) -> Option<f64> {
        cost(
            &config.prices,
            &self.counters.by_model,
            &config.request.model,
        )
    }
}

fn add(by_model: &mut BTreeMap<String, TokenUsage>, model: &str, usage: TokenUsage) {
    let slot = by_model.entry(model.to_owned()).or_default();
    *slot = slot.plus(usage);
}

/// The cost of usage by model, each at its model's price, else at `fallback`'s (a model the
/// server named that the table does not know, or none); `None` when neither has a price.
fn cost(
    prices: &PriceTable,
    by_model: &BTreeMap<String, TokenUsage>,
    fallback: &str,
) -> Option<f64> {
    by_model.iter().try_fold(0.0, |sum, (model, usage)| {
        let model = if prices.price(model).is_some() {
            model.as_str()
        } else {
            fallback
        };
        Some(sum + prices.cost(model, usage)?)
    })
}

/// The usage of a run: calls, tokens, cost, waits, the journal's savings.
fn usage(
    c: &Counters,
    records: &[RequestRecord],
    plan: &BatchPlan<'_>,
    members: &[Vec<usize>],
    config: &RunConfig,
    extras: &Extras,
) -> RunUsage {
    let (estimated, reported) = records
        .iter()
        .filter_map(|r| Some((r.estimated_prompt_tokens, r.prompt_tokens?)))
        .fold((0u64, 0u64), |(e, a), (re, ra)| (e + re, a + ra));
    #[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
    let prompt_estimate_error =
        (estimated > 0).then(|| (reported as f64 - estimated as f64) / estimated as f64);
    RunUsage {
        calls_planned: plan.batches.len() as u64,
        calls_made: c.calls,
        retries: c.retries,
        splits: c.splits,
        reasks: c.reasks,
        extra_calls: extras.extra_calls,
        max_extra_calls: config.max_extra_calls,
        estimated_prompt_tokens: plan.batches.iter().map(|b| b.estimated_tokens).sum(),
        estimated_completion_tokens: members
            .iter()
            .map(|m| u64::from(config.request.max_tokens(m.len(), &plan.strategy)))
            .sum(),
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        usage_reported: c.reported_usage,
        prompt_estimate_error,
        model: c
            .by_model
            .iter()
            .chain(&c.cached_by_model)
            .filter(|(model, _)| !model.is_empty())
            .max_by_key(|(_, u)| u.prompt_tokens + u.completion_tokens)
            .map_or_else(|| config.request.model.clone(), |(model, _)| model.clone()),
        estimated_cost_usd: cost(&config.prices, &c.by_model, &config.request.model),
        rate_limited: c.rate_limited,
        requeued: c.requeued,
        circuit_opened: extras.circuit_opened,
        rate_limit_wait_secs: c.waited.as_secs_f64(),
        elapsed_secs: extras.elapsed.as_secs_f64(),
        rate_limits: extras.rate_limits,
        cached: c.cached,
        cached_prompt_tokens: c.cached_prompt_tokens,
        cached_completion_tokens: c.cached_completion_tokens,
        saved_cost_usd: cost(&config.prices, &c.cached_by_model, &config.request.model),
        price_tier: crate::report::PriceTier::Standard,
        consolidation: None,
        output_mode: Some(extras.output_mode),
    }
}

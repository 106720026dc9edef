//! [`QualityProbe`]: how far a run's batched answers agree with single-cluster answers, a check
//! of what batching costs that needs no labels.

use serde::{Deserialize, Serialize};

use crate::template::{Overlap, Template, TitleIndex};

/// What the quality probe ([`RunConfig::quality_probe`](crate::RunConfig::quality_probe))
/// found: some batched clusters were asked again, each alone, and each single-call template
/// compared with the cluster's batched templates over its shown titles.
///
/// A single-call template **agrees** when some batched template of the same cluster matches at
/// least half of the shown titles it matches, and at least half of the titles that batched
/// template matches are among them (the rule by which `dynbatch::eval` finds a labelled
/// formula, with the single-call template's titles as the label). Templates that match no
/// shown title are not compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QualityProbe {
    /// The clusters asked again, in plan order.
    pub clusters: Vec<ProbedCluster>,
    /// Single-call templates compared, over every probed cluster.
    pub compared: usize,
    /// Of those, the ones a batched template agrees with.
    pub agreed: usize,
    /// `agreed / compared`; `None` when nothing could be compared.
    pub agreement: Option<f64>,
    /// The agreement under which the report warns.
    pub threshold: f64,
    /// Calls the probe made (beyond the run's).
    pub calls: u64,
    /// Prompt tokens those calls reported.
    pub prompt_tokens: u64,
    /// Completion tokens those calls reported.
    pub completion_tokens: u64,
    /// What those calls cost, when the model has a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// One cluster the probe asked again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProbedCluster {
    /// Its id.
    pub id: String,
    /// Its planned batch.
    pub batch: usize,
    /// The size of its planned batch.
    pub batch_size: usize,
    /// Its position in the batch (1-based).
    pub position: usize,
    /// Single-call templates compared.
    pub compared: usize,
    /// Of those, the ones a batched template agrees with.
    pub agreed: usize,
    /// Why the single call gave nothing to compare, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl ProbedCluster {
    /// A probed cluster: its id, (batch, batch size, position), (compared, agreed), and why its
    /// single call failed, if it did.
    pub(crate) fn new(
        id: String,
        (batch, batch_size, position): (usize, usize, usize),
        (compared, agreed): (usize, usize),
        failed: Option<String>,
    ) -> Self {
        Self {
            id,
            batch,
            batch_size,
            position,
            compared,
            agreed,
            failed,
        }
    }
}

impl QualityProbe {
    /// A probe of `clusters`, with the calls' usage.
    pub(crate) fn new(
        clusters: Vec<ProbedCluster>,
        threshold: f64,
        (calls, prompt_tokens, completion_tokens, cost_usd): (u64, u64, u64, Option<f64>),
    ) -> Self {
        let compared = clusters.iter().map(|c| c.compared).sum();
        let agreed = clusters.iter().map(|c| c.agreed).sum();
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let agreement = (compared > 0).then(|| agreed as f64 / compared as f64);
        Self {
            clusters,
            compared,
            agreed,
            agreement,
            threshold,
            calls,
            prompt_tokens,
            completion_tokens,
            cost_usd,
        }
    }

    /// The agreement is under the threshold.
    pub fn is_low(&self) -> bool {
        self.agreement.is_some_and(|a| a < self.threshold)
    }
}

impl std::fmt::Display for QualityProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.agreement {
            Some(a) => write!(
                f,
                "batched answers agree with single-cluster answers on {:.0}% of templates ({} of {}, {} clusters asked again, {} extra calls)",
                a * 100.0,
                self.agreed,
                self.compared,
                self.clusters.len(),
                self.calls
            ),
            None => write!(
                f,
                "nothing to compare ({} clusters asked again, {} extra calls)",
                self.clusters.len(),
                self.calls
            ),
        }
    }
}

/// (compared, agreed): each of `single`'s templates that matches a title of `shown` (folded)
/// against `batched`'s, by the rule of [`QualityProbe`].
pub(crate) fn agreement(single: &[&str], batched: &[&str], shown: &[String]) -> (usize, usize) {
    let index = TitleIndex::new(shown);
    let batched: Vec<(Template, Vec<u32>)> = batched
        .iter()
        .map(|t| {
            let t = Template::new(t);
            let hits = index.matching(&t);
            (t, hits)
        })
        .collect();
    let (mut compared, mut agreed) = (0, 0);
    for s in single {
        let hits = index.matching(&Template::new(s));
        if hits.is_empty() {
            continue;
        }
        compared += 1;
        let mut target = vec![false; shown.len()];
        for &i in &hits {
            target[i as usize] = true;
        }
        let found = batched
            .iter()
            .any(|(t, matched)| Overlap::of(t, matched, &target, hits.len()).finds());
        agreed += usize::from(found);
    }
    (compared, agreed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::fold;

    #[test]
    fn single_templates_agree_when_a_batched_one_finds_their_titles() {
        let shown: Vec<String> = [
            "I Tried Chess for 30 Days",
            "I Tried Chess for 7 Days",
            "Why Chess Is Overrated",
            "The Truth About Chess",
        ]
        .iter()
        .map(|t| fold(t))
        .collect();
        let single = [
            "I Tried [X] for [N] Days",
            "Why [X] Is Overrated",
            "Invented [X] formula",
        ];
        // The first agrees (same titles), the second has no batched match, the third matches
        // no title and is not compared.
        let batched = ["I Tried Chess for [N] Days", "[X] About [X]"];
        assert_eq!(agreement(&single, &batched, &shown), (2, 1));
        // A batched template that matches every title agrees with nothing narrower.
        assert_eq!(agreement(&single[..1], &["[X] [X]"], &shown), (1, 0));
    }
}

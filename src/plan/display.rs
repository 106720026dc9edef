//! The design's console summary of a plan, and one line per batch.

use std::fmt;

use super::types::BatchPlan;

impl fmt::Display for BatchPlan<'_> {
    /// The design's console summary, then one line per batch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.counts();
        #[allow(clippy::cast_precision_loss)] // counts are far below 2^52
        let avg = if self.batches.is_empty() {
            0.0
        } else {
            counts.batched as f64 / self.batches.len() as f64
        };
        writeln!(f, "📊 Dynamic batching strategy:")?;
        writeln!(f, "    - Total clusters: {}", self.clusters.len())?;
        writeln!(f, "    - Quality clusters: {}", counts.batched)?;
        writeln!(f, "    - Batches created: {}", self.batches.len())?;
        writeln!(f, "    - Strategy: {}", self.strategy.kind)?;
        writeln!(f, "    - Avg clusters/batch: {avg:.1}")?;
        writeln!(
            f,
            "    - Not batched: {} below threshold, {} deferred by budget, {} rejected",
            counts.below_threshold, counts.deferred, counts.rejected
        )?;
        for (i, batch) in self.batches.iter().enumerate() {
            writeln!(
                f,
                "  batch {}: {} cluster{}, ~{} tokens{}: {}",
                i + 1,
                batch.clusters.len(),
                if batch.clusters.len() == 1 { "" } else { "s" },
                batch.estimated_tokens,
                if batch.oversized { " (oversized)" } else { "" },
                batch.clusters.join(", ")
            )?;
        }
        Ok(())
    }
}

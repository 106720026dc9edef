//! The bundled sample clusters (`examples/data/clusters.json`), for tests that run on them.

use dynbatch::Cluster;

/// The 40 bundled clusters, as `serde_json` reads them.
#[allow(clippy::unwrap_used)]
pub(crate) fn bundled() -> Vec<Cluster> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/clusters.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

//! Test harnesses shared across crates. Dev-dependency only.
//!
//! - [`prometheus`]: a real Prometheus server (Debian package) on a free loopback port, with a
//!   temp TSDB, loaded from OpenMetrics history through `promtool tsdb create-blocks-from`.
//! - [`kube_api`]: a fake Kubernetes API server serving real Kubernetes JSON.
//! - [`intensity_api`]: a fake Electricity Maps and WattTime API answering their documented
//!   response shapes.

#![warn(missing_docs)]

pub mod intensity_api;
pub mod kube_api;
pub mod prometheus;

/// The repository's fixture folder (`fixtures/`, provenance in `fixtures/PROVENANCE.md`).
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

/// The fixture folder of the checkout being tested: `cargo test` sets `CARGO_MANIFEST_DIR`
/// for the test process, which stays right when the shared target dir holds a testkit built
/// from another worktree of the same workspace ([`FIXTURES`] is where it was compiled).
fn fixtures_dir() -> String {
    match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(dir) if std::path::Path::new(&format!("{dir}/../../fixtures")).is_dir() => {
            format!("{dir}/../../fixtures")
        }
        _ => FIXTURES.to_owned(),
    }
}

/// A fixture's text, by its path under `fixtures/`. Panics (tests only) naming the file.
pub fn fixture(path: &str) -> String {
    let full = format!("{}/{path}", fixtures_dir());
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

/// The chart's default ledger config: the `config.yaml` of the ConfigMap in
/// `deploy/jobcarbon.yaml` (the rendered chart), unindented.
pub fn chart_ledger_config() -> String {
    let path = format!("{}/../deploy/jobcarbon.yaml", fixtures_dir());
    let rendered =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("rendered chart {path}: {e}"));
    let mut lines = rendered
        .lines()
        .skip_while(|l| l.trim() != "config.yaml: |");
    lines.next();
    lines
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect()
}

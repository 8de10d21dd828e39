//! jobcarbon-telemetry: energy sources behind one trait.
//!
//! A source returns cumulative counter readings at a given time (so the ledger can also ask
//! for the past when it backfills); counter tracking turns them into non-negative deltas.

use async_trait::async_trait;
use jobcarbon_core::{EnergyReading, Seconds};

/// Why a source could not be read. Each variant's [`SourceError::kind`] is a metric label value.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: Prometheus at {url} unreachable: {reason}")]
    Unreachable {
        source_name: String,
        url: String,
        reason: String,
    },
    #[error("{source_name}: query {query:?} failed: {reason}")]
    Query {
        source_name: String,
        query: String,
        reason: String,
    },
    #[error("{source_name}: {reason}")]
    Unsupported { source_name: String, reason: String },
}

impl SourceError {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unreachable { .. } => "unreachable",
            SourceError::Query { .. } => "query",
            SourceError::Unsupported { .. } => "unsupported",
        }
    }
}

/// One energy source (Kepler, DCGM, the node agent's NVML counters).
#[async_trait]
pub trait EnergySource: Send + Sync {
    /// Short name for logs and the `source` metric label: `kepler`, `dcgm`, `node-agent`.
    fn name(&self) -> &str;
    /// Cumulative counters as of time `at` (seconds since the Unix epoch).
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError>;
}

/// Well-known inference-server request counters (DESIGN §4 `inference.requests.preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestPreset {
    Vllm,
    Triton,
    Tgi,
    Kserve,
}

/// How to count a product's inference requests.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RequestQuery {
    /// A preset counter, restricted to the pods serving the product (label matchers,
    /// e.g. `namespace`, `pod`).
    Preset {
        preset: RequestPreset,
        matchers: std::collections::BTreeMap<String, String>,
    },
    /// A user PromQL expression that evaluates to one cumulative request count.
    Promql(String),
}

/// Cumulative counters and live scalars that are not energy: request counts, live grid
/// intensity. Implemented over Prometheus, and by the demo's simulation.
#[async_trait]
pub trait MetricQuery: Send + Sync {
    /// Cumulative requests at `at` (counter resets are the caller's business, as for energy).
    async fn cumulative_requests(
        &self,
        query: &RequestQuery,
        at: Seconds,
    ) -> Result<f64, SourceError>;
    /// A PromQL expression that evaluates to one number at `at` (e.g. live gCO2e/kWh).
    async fn scalar(&self, promql: &str, at: Seconds) -> Result<f64, SourceError>;
}

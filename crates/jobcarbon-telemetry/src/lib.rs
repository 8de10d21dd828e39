//! jobcarbon-telemetry: energy sources behind one trait.
//!
//! A source returns cumulative counter readings at a given time (so the ledger can also ask
//! for the past when it backfills); counter tracking turns them into non-negative deltas.

#![warn(missing_docs)]

use async_trait::async_trait;
use jobcarbon_core::{EnergyReading, Seconds};

mod access;
mod counters;
pub mod dcgm;
mod estimated;
mod gpu;
pub mod intensity;
pub mod kepler;
mod node_agent;
pub mod node_agent_source;
pub mod podresources;
pub mod prom;

pub use counters::{CountSample, CountTracker, CounterTracker, FirstSight, Observed, Rejection};
pub use dcgm::{DcgmConfig, DcgmSource};
pub use estimated::{EstimatedNode, EstimatedSource, EstimationCell};
pub use gpu::{FakeGpu, FakeGpuBackend, GpuBackend, GpuError, NvmlBackend};
pub use intensity::{IntensityProvider, PolledProvider, ProviderError};
pub use kepler::{KeplerConfig, KeplerSource};
pub use node_agent::{GpuSeriesLabels, NodeAgent};
pub use node_agent_source::{NodeAgentSource, NodeAgentSourceConfig};
pub use podresources::{GpuAssignment, PodResourcesClient, PodResourcesError};
pub use prom::{PromClient, PromConfig, PromMetrics};

/// Why a source could not be read. Each variant's [`SourceError::kind`] is a metric label value.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Prometheus server could not be reached.
    #[error("{source_name}: Prometheus at {url} unreachable: {reason}")]
    Unreachable {
        /// The source (`kepler`, `dcgm`, …).
        source_name: String,
        /// The Prometheus URL, without credentials.
        url: String,
        /// What failed.
        reason: String,
    },
    /// Prometheus rejected or failed the query.
    #[error("{source_name}: query {query:?} failed: {reason}")]
    Query {
        /// The source.
        source_name: String,
        /// The PromQL sent.
        query: String,
        /// Prometheus' error.
        reason: String,
    },
    /// The answer is not the documented shape.
    #[error("{source_name}: Prometheus at {url} gave a bad response: {reason}")]
    BadResponse {
        /// The source.
        source_name: String,
        /// The Prometheus URL, without credentials.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The source cannot do what was asked (e.g. no metric of a known generation).
    #[error("{source_name}: {reason}")]
    Unsupported {
        /// The source.
        source_name: String,
        /// Why.
        reason: String,
    },
}

impl SourceError {
    /// The `kind` label of `jobcarbon_source_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unreachable { .. } => "unreachable",
            SourceError::Query { .. } => "query",
            SourceError::BadResponse { .. } => "bad_response",
            SourceError::Unsupported { .. } => "unsupported",
        }
    }
}

/// How a source fared on its last read, for the `source errors` and `last successful read`
/// self-metrics and for `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceHealth {
    /// Whether the last read succeeded (false before the first read).
    pub healthy: bool,
    /// Wall-clock time of the last successful read.
    pub last_success: Option<Seconds>,
    /// The last error's [`SourceError::kind`] and message, cleared on success.
    pub last_error: Option<(String, String)>,
    /// Failed reads since start.
    pub errors_total: u64,
}

impl SourceHealth {
    /// Records the outcome of one read.
    pub fn record<T>(&mut self, result: &Result<T, SourceError>) {
        match result {
            Ok(_) => {
                self.healthy = true;
                self.last_success = Some(now());
                self.last_error = None;
            }
            Err(e) => {
                self.healthy = false;
                self.errors_total += 1;
                self.last_error = Some((e.kind().to_owned(), e.to_string()));
            }
        }
    }
}

/// A source's [`SourceHealth`] behind a lock, shared by the Prometheus-backed sources.
#[derive(Debug, Default)]
pub(crate) struct HealthCell(std::sync::Mutex<SourceHealth>);

impl HealthCell {
    /// Records `result` and hands it back.
    pub fn record<T>(&self, result: Result<T, SourceError>) -> Result<T, SourceError> {
        if let Ok(mut h) = self.0.lock() {
            h.record(&result);
        }
        result
    }

    /// A copy of the current health.
    pub fn get(&self) -> SourceHealth {
        self.0.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// Wall-clock now, seconds since the Unix epoch.
pub fn now() -> Seconds {
    Seconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    )
}

/// One energy source (Kepler, DCGM, the node agent's NVML counters).
#[async_trait]
pub trait EnergySource: Send + Sync {
    /// Short name for logs and the `source` metric label: `kepler`, `dcgm`, `node-agent`.
    fn name(&self) -> &str;
    /// Cumulative counters as of time `at` (seconds since the Unix epoch).
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError>;
    /// Whether a per-pod series starts counting at 0 with its pod (Kepler, the node agent),
    /// so a series first seen for a pod created since the previous read is booked whole.
    /// False for counters since device boot (DCGM): a first sight is never a delta.
    fn counters_start_with_pod(&self) -> bool {
        false
    }
    /// Whether the source meters CPU energy (Kepler): under `energy.cpu: auto` the nodes it
    /// reports are never estimated.
    fn measures_cpu(&self) -> bool {
        false
    }
    /// Whether the source maps GPUs to pods through kubelet pod-resources `List`, which still
    /// names pods that have finished (kubernetes#119423): the ledger then treats lines of pods
    /// that do not run as unmapped GPU energy.
    fn may_name_finished_pods(&self) -> bool {
        false
    }
    /// The outcome of the last read. Sources that cannot fail may keep the default.
    fn health(&self) -> SourceHealth {
        SourceHealth {
            healthy: true,
            ..SourceHealth::default()
        }
    }
}

/// Well-known inference-server request counters (DESIGN §4 `inference.requests.preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestPreset {
    /// vLLM (`vllm:request_success_total`).
    Vllm,
    /// NVIDIA Triton (`nv_inference_request_success`).
    Triton,
    /// Hugging Face TGI (`tgi_request_success`).
    Tgi,
    /// KServe (`request_predict_seconds_count`).
    Kserve,
}

/// How to count a product's inference requests.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RequestQuery {
    /// A preset counter, restricted to the pods serving the product (label matchers,
    /// e.g. `namespace`, `pod`).
    Preset {
        /// Which counter.
        preset: RequestPreset,
        /// Label matchers selecting the product's pods.
        matchers: std::collections::BTreeMap<String, String>,
    },
    /// A user PromQL expression giving cumulative request counters; each series it returns
    /// is tracked on its own and counts for the product.
    Promql(String),
}

/// Cumulative counters and live scalars that are not energy: request counts, live grid
/// intensity. Implemented over Prometheus, and by the demo's simulation.
#[async_trait]
pub trait MetricQuery: Send + Sync {
    /// Every request counter series the query selects at `at`, each with its identity and
    /// pod (deltas, resets and first sights are the caller's business, as for energy).
    async fn request_series(
        &self,
        query: &RequestQuery,
        at: Seconds,
    ) -> Result<Vec<CountSample>, SourceError>;
    /// A PromQL expression that evaluates to one number at `at` (e.g. live gCO2e/kWh).
    async fn scalar(&self, promql: &str, at: Seconds) -> Result<f64, SourceError>;
}

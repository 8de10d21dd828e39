//! The query path for pods that lived only inside a gap: kube-state-metrics' pod families as
//! Prometheus kept them for one interval, read through the ledger's own Prometheus client
//! (same URL, TLS, auth, headers and replica-label deduplication as the energy sources).
//! The translation into pod facts is pure (`jobcarbon_kube::ksm`).

use jobcarbon_core::Seconds;
use jobcarbon_kube::ksm::{KSM_FAMILIES, KsmSamples, KsmSeries};
use jobcarbon_telemetry::SourceError;
use jobcarbon_telemetry::prom::PromClient;

/// Name of this source in logs and errors.
pub const KSM_SOURCE: &str = "kube-state-metrics";

/// kube-state-metrics history in Prometheus.
#[derive(Debug, Clone)]
pub struct KsmHistory {
    client: PromClient,
}

impl KsmHistory {
    /// Reads pod history through `client`.
    pub fn new(client: PromClient) -> Self {
        Self { client }
    }

    /// The last sample of each KSM pod family over `(at − window, at]`: every pod KSM saw
    /// during the interval, also those deleted before its end (their series end with a
    /// staleness marker, which `last_over_time` steps over). Only the current phase of
    /// `kube_pod_status_phase` is read (`== 1`). `kube_pod_info` is read first; without it
    /// nothing else is (a cluster without kube-state-metrics pays one query per interval).
    pub async fn samples(&self, at: Seconds, window: Seconds) -> Result<KsmSamples, SourceError> {
        let range = window.value().ceil().max(1.0) as u64;
        let mut samples = KsmSamples::default();
        for family in KSM_FAMILIES {
            let filter = if family == "kube_pod_status_phase" {
                " == 1"
            } else {
                ""
            };
            let promql = format!("last_over_time({family}[{range}s]){filter}");
            let read = self.client.instant(KSM_SOURCE, &promql, at).await?;
            if family == KSM_FAMILIES[0] && read.is_empty() {
                // No kube-state-metrics (or no samples then): one query per interval, not six.
                return Ok(samples);
            }
            if let Some(into) = samples.family_mut(family) {
                into.extend(read.into_iter().map(|s| KsmSeries {
                    labels: s.labels,
                    value: s.value,
                }));
            }
        }
        Ok(samples)
    }
}

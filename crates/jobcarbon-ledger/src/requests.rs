//! Inference requests per product: every counter series tracked on its own under the counter
//! rule (a replica leaving is not a reset, counts from before the ledger started are not
//! booked, a new replica counts from 0), and each product narrowed to its own inference pods.

use crate::state::LedgerState;
use jobcarbon_core::{ClusterSnapshot, Phase, PodFacts, PodKey, Seconds};
use jobcarbon_telemetry::{CountSample, CountTracker, MetricQuery, RequestQuery, SourceError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How a product's requests fared on the last read (served by `/readyz` and as staleness).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// Time of the last successful read.
    pub last_success: Option<Seconds>,
    /// Why the last read failed, cleared on success.
    pub last_error: Option<String>,
}

/// Per-product request trackers (checkpointed with the ledger).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestBooks {
    trackers: BTreeMap<String, CountTracker>,
}

/// What one interval's request read gave.
#[derive(Debug, Default)]
pub struct RequestRead {
    /// Requests served in the interval, by product.
    pub requests: BTreeMap<String, f64>,
    /// Products whose requests could not be read (their per-request figure is held).
    pub unknown: BTreeSet<String>,
}

/// The inference pods of `product`: running in the snapshot, or known to the ledger's state
/// (finished within the grace period, so their final counts are still attributed).
fn serving_pods<'a>(
    product: &str,
    snapshot: &'a ClusterSnapshot,
    state: &'a LedgerState,
) -> BTreeSet<&'a PodKey> {
    let from_snapshot = snapshot
        .pods
        .iter()
        .filter(|p| p.phase == Phase::Inference && p.product.as_deref() == Some(product))
        .map(|p| &p.key);
    let from_state = state
        .pods
        .iter()
        .filter(|(_, a)| a.phase == Phase::Inference && a.product.as_deref() == Some(product))
        .map(|(k, _)| k);
    from_snapshot.chain(from_state).collect()
}

/// The series of `samples` that count for `product`: with explicit matchers (or a PromQL
/// query), all of them; a preset without matchers only those of the product's own pods.
fn for_product(
    query: &RequestQuery,
    product: &str,
    samples: &[CountSample],
    snapshot: &ClusterSnapshot,
    state: &LedgerState,
) -> Vec<CountSample> {
    match query {
        RequestQuery::Preset { matchers, .. } if matchers.is_empty() => {
            let pods = serving_pods(product, snapshot, state);
            samples
                .iter()
                .filter(|s| s.pod.as_ref().is_some_and(|p| pods.contains(p)))
                .cloned()
                .collect()
        }
        _ => samples.to_vec(),
    }
}

impl RequestBooks {
    /// Reads every product's request series at `at` (one query per distinct query) and books
    /// their deltas; `statuses` records each product's outcome.
    pub async fn read(
        &mut self,
        metrics: &dyn MetricQuery,
        queries: &BTreeMap<String, RequestQuery>,
        context: (&ClusterSnapshot, &LedgerState),
        at: Seconds,
        retention: Seconds,
        statuses: &mut BTreeMap<String, RequestStatus>,
    ) -> RequestRead {
        let (snapshot, state) = context;
        let mut answers: BTreeMap<String, Result<Vec<CountSample>, String>> = BTreeMap::new();
        let mut out = RequestRead::default();
        let created: BTreeMap<&PodKey, &PodFacts> =
            snapshot.pods.iter().map(|p| (&p.key, p)).collect();
        for (product, query) in queries {
            let key = format!("{query:?}");
            if !answers.contains_key(&key) {
                let answer = metrics.request_series(query, at).await;
                answers.insert(key.clone(), answer.map_err(|e: SourceError| e.to_string()));
            }
            let status = statuses.entry(product.clone()).or_default();
            match answers.get(&key) {
                Some(Ok(samples)) => {
                    let mine = for_product(query, product, samples, snapshot, state);
                    // A replica created since the last read started its counter at 0.
                    let started = |s: &CountSample, since: Seconds| {
                        s.pod
                            .as_ref()
                            .and_then(|p| created.get(p))
                            .and_then(|p| p.created)
                            .is_some_and(|c| c >= since)
                    };
                    let tracker = self.trackers.entry(product.clone()).or_default();
                    out.requests
                        .insert(product.clone(), tracker.observe(&mine, &started));
                    tracker.forget_older_than(at - retention);
                    status.last_success = Some(at);
                    status.last_error = None;
                }
                Some(Err(_)) | None => {
                    let reason = reason_or_unknown(answers.get(&key));
                    tracing::warn!(product = %product, error = %reason, "request counters unreadable; the per-request figure is held");
                    status.last_error = Some(reason);
                    out.unknown.insert(product.clone());
                }
            }
        }
        out
    }

    /// Series tracked for `product`.
    pub fn series(&self, product: &str) -> usize {
        self.trackers.get(product).map_or(0, CountTracker::len)
    }
}

fn reason_or_unknown(answer: Option<&Result<Vec<CountSample>, String>>) -> String {
    match answer {
        Some(Err(reason)) => reason.clone(),
        _ => "no answer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pod: &str, value: f64, at: f64) -> CountSample {
        CountSample {
            series: format!("vllm:request_success_total{{pod={pod:?}}}"),
            pod: Some(PodKey::new("serve", pod)),
            value,
            at: Seconds(at),
        }
    }

    #[test]
    fn presets_without_matchers_count_only_the_products_own_pods() {
        let snapshot = ClusterSnapshot {
            pods: vec![
                PodFacts::new("serve", "a-1")
                    .phase(Phase::Inference)
                    .product(Some("a")),
                PodFacts::new("serve", "b-1")
                    .phase(Phase::Inference)
                    .product(Some("b")),
            ],
            ..Default::default()
        };
        let samples = vec![sample("a-1", 10.0, 0.0), sample("b-1", 99.0, 0.0)];
        let preset = RequestQuery::Preset {
            preset: jobcarbon_telemetry::RequestPreset::Vllm,
            matchers: BTreeMap::new(),
        };
        let state = LedgerState::default();
        let a = for_product(&preset, "a", &samples, &snapshot, &state);
        assert_eq!(a, vec![samples[0].clone()]);
        let explicit = RequestQuery::Promql("sum(x)".into());
        assert_eq!(
            for_product(&explicit, "a", &samples, &snapshot, &state).len(),
            2
        );
    }
}

//! The Kubernetes watchers (`jobcarbon_kube::ClusterState`) as the ledger's [`ClusterSource`],
//! with the pods they never saw filled in from kube-state-metrics history when the interval
//! being booked lies in a gap (a backfill after a restart) or the API server is failing.

use crate::clock::SharedClock;
use crate::config::request_query;
use crate::ksm_history::{KSM_SOURCE, KsmHistory};
use crate::runner::{ClusterError, ClusterSource};
use async_trait::async_trait;
use jobcarbon_core::{ClusterSnapshot, PodKey, Seconds};
use jobcarbon_kube::ClusterState;
use jobcarbon_kube::WatchedResource;
use jobcarbon_telemetry::RequestQuery;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

/// Pods, nodes and products from the reflector stores; CRD products' request counters.
pub struct KubeCluster {
    /// The watchers' shared cluster state.
    pub state: ClusterState,
    history: Option<GapHistory>,
}

/// Where and when pods the watchers missed are looked up.
struct GapHistory {
    ksm: KsmHistory,
    clock: SharedClock,
    interval: Seconds,
    /// Pod watch (lists, errors) when the pods were last listed: errors since then mean the
    /// API server is failing now.
    since_list: Mutex<(u64, u64)>,
}

impl KubeCluster {
    /// The watchers alone: pods they never saw are booked `unallocated{unknown_pod}`.
    pub fn new(state: ClusterState) -> Self {
        Self {
            state,
            history: None,
        }
    }

    /// Also look pods up in kube-state-metrics history for intervals that ended more than
    /// one `interval` before `clock`'s now (a backfill) or while the pod watch is failing.
    pub fn with_history(mut self, ksm: KsmHistory, clock: SharedClock, interval: Seconds) -> Self {
        self.history = Some(GapHistory {
            ksm,
            clock,
            interval,
            since_list: Mutex::new((0, 0)),
        });
        self
    }

    /// Whether the pod watch has failed since its last completed list.
    fn api_failing(&self, history: &GapHistory) -> bool {
        let health = self.state.health();
        let lists = health.lists_of(WatchedResource::Pods);
        let errors: u64 = health
            .errors
            .iter()
            .filter(|((resource, _), _)| *resource == WatchedResource::Pods)
            .map(|(_, n)| *n)
            .sum();
        let mut since = history
            .since_list
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failing_since_list(&mut since, lists, errors)
    }
}

/// Whether the pod watch failed since its last completed list: `since` is (lists, errors) as
/// of that list, updated when a new list completes.
fn failing_since_list(since: &mut (u64, u64), lists: u64, errors: u64) -> bool {
    if since.0 != lists {
        *since = (lists, errors);
    }
    errors > since.1
}

#[async_trait]
impl ClusterSource for KubeCluster {
    async fn snapshot(&self, at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        let mut snapshot = self.state.snapshot();
        let Some(history) = &self.history else {
            return Ok(snapshot);
        };
        let in_gap = history.clock.now() - at > history.interval;
        if !in_gap && !self.api_failing(history) {
            return Ok(snapshot);
        }
        match history.ksm.samples(at, history.interval).await {
            Ok(samples) => {
                let known: BTreeSet<PodKey> = snapshot.pods.iter().map(|p| p.key.clone()).collect();
                let found = self.state.pods_from_history(&samples, &known);
                if !found.is_empty() {
                    tracing::info!(at = at.value(), pods = found.len(), first = %found[0].key, "pods the watchers never saw, attributed from kube-state-metrics history");
                }
                snapshot.pods.extend(found);
                snapshot.pods.sort_by(|a, b| a.key.cmp(&b.key));
            }
            Err(e) => {
                tracing::warn!(source = KSM_SOURCE, at = at.value(), error = %e, "kube-state-metrics history unavailable: energy of pods the watchers never saw stays unallocated{{reason=\"unknown_pod\"}}");
            }
        }
        Ok(snapshot)
    }

    async fn request_queries(&self) -> BTreeMap<String, RequestQuery> {
        self.state
            .products()
            .valid
            .iter()
            .filter_map(|p| Some((p.def.name.clone(), request_query(p.inference.as_ref()?)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::failing_since_list;

    #[test]
    fn the_pod_watch_is_failing_from_an_error_until_the_next_list() {
        let mut since = (0, 0);
        // Listed once, no errors: healthy.
        assert!(!failing_since_list(&mut since, 1, 0));
        // The API server goes away: watch errors pile up, no list completes.
        assert!(failing_since_list(&mut since, 1, 1));
        assert!(failing_since_list(&mut since, 1, 4));
        // Back: the relist completes; the errors before it no longer count.
        assert!(!failing_since_list(&mut since, 2, 4));
        assert!(!failing_since_list(&mut since, 2, 4));
        assert!(failing_since_list(&mut since, 2, 5));
    }
}

//! The Kubernetes watchers (`jobcarbon_kube::ClusterState`) as the ledger's [`ClusterSource`].

use crate::config::request_query;
use crate::runner::{ClusterError, ClusterSource};
use async_trait::async_trait;
use jobcarbon_core::{ClusterSnapshot, Seconds};
use jobcarbon_kube::ClusterState;
use jobcarbon_telemetry::RequestQuery;
use std::collections::BTreeMap;

/// Pods, nodes and products from the reflector stores; CRD products' request counters.
pub struct KubeCluster {
    pub state: ClusterState,
}

#[async_trait]
impl ClusterSource for KubeCluster {
    async fn snapshot(&self, _at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        Ok(self.state.snapshot())
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

//! What the I/O crates observe, in core terms. This is the contract between the edges and the
//! ledger: `jobcarbon-kube` produces [`PodFacts`] and [`NodeFacts`], `jobcarbon-telemetry`
//! produces [`EnergyReading`]s, and the ledger books them.

use crate::domain::{Component, Phase, WorkloadRef};
use crate::units::{Joules, Seconds};
use serde::{Deserialize, Serialize};

/// A pod as `namespace/name`, the join key between Kubernetes and energy telemetry
/// (Kepler and DCGM label pods by name and namespace; pod-resources has no UID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodKey {
    pub namespace: String,
    pub pod: String,
}

impl PodKey {
    pub fn new(namespace: impl Into<String>, pod: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            pod: pod.into(),
        }
    }
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.pod)
    }
}

/// Everything attribution needs to know about one pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodFacts {
    pub key: PodKey,
    pub uid: String,
    pub workload: WorkloadRef,
    pub phase: Phase,
    /// The SoftwareProduct it builds or serves, if labelled (validated label value).
    pub product: Option<String>,
    pub node: Option<String>,
    /// Platform pods carry the platform's operational overhead (DESIGN §4).
    pub platform: bool,
    /// Fraction of the node this pod reserves, in [0, 1], for the embodied-system share
    /// (max over CPU, memory and GPU of request / allocatable).
    pub reserved_share: f64,
    /// Whether the pod is running now (Pending and finished pods do not take concurrency).
    pub running: bool,
}

/// Everything attribution needs to know about one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub name: String,
    /// Region key into the configured regions (from `topology.kubernetes.io/region`).
    pub region: Option<String>,
    pub instance_type: Option<String>,
    pub gpu_count: u32,
    pub gpu_model: Option<String>,
    /// All node labels, for matching `systems` entries of the config.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Who an energy reading belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EnergyOwner {
    /// A workload container (container name may be empty when the source is per pod).
    Pod { key: PodKey, container: String },
    /// Node-level idle energy (Kepler v2 `kepler_node_cpu_idle_joules_total`, legacy `mode="idle"`).
    NodeIdle,
    /// Non-pod work on the node (Kepler `system_processes`).
    NodeSystem,
    /// A GPU no pod holds (idle or unmapped).
    UnmappedGpu { uuid: String },
}

/// One cumulative counter value as a source exported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// Stable identity of the underlying counter (source + series labels), for delta tracking.
    pub series: String,
    pub node: String,
    pub owner: EnergyOwner,
    pub component: Component,
    /// Cumulative joules since the counter's start.
    pub cumulative: Joules,
    /// Sample time, seconds since the Unix epoch.
    pub at: Seconds,
}

/// Energy consumed in one interval by one owner and component, after delta tracking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyDelta {
    pub node: String,
    pub owner: EnergyOwner,
    pub component: Component,
    pub energy: Joules,
}

/// A consistent view of the cluster at one moment: what the kube watchers (or the demo's
/// simulation) hand the ledger each interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub pods: Vec<PodFacts>,
    pub nodes: Vec<NodeFacts>,
    /// Products that passed validation.
    pub products: Vec<crate::product::ProductDef>,
    /// Products that failed validation, with the reason (never silently dropped).
    pub invalid_products: Vec<(String, String)>,
}

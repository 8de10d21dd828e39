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
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name (unique in its namespace at any one time).
    pub pod: String,
}

impl PodKey {
    /// The key of pod `pod` in `namespace`.
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
    /// The pod's `namespace/name`.
    pub key: PodKey,
    /// The pod's UID (tells apart a pod re-created under the same name).
    pub uid: String,
    /// The workload the user submitted, which the pod's carbon is booked to.
    pub workload: WorkloadRef,
    /// Life-cycle phase from the `jobcarbon.io/phase` label.
    pub phase: Phase,
    /// The SoftwareProduct it builds or serves, if labelled (validated label value).
    pub product: Option<String>,
    /// The node it is scheduled on (`None` while Pending).
    pub node: Option<String>,
    /// Platform pods carry the platform's operational overhead (DESIGN §4).
    pub platform: bool,
    /// Fraction of the node this pod reserves, in [0, 1], for the embodied-system share
    /// (max over CPU, memory and GPU of request / allocatable).
    pub reserved_share: f64,
    /// Whether the pod is running now (Pending and finished pods do not take concurrency).
    pub running: bool,
    /// Creation time: a per-pod counter first seen after it provably counted from 0 inside
    /// the interval (DESIGN §5). `None` when unknown (then a first sight books nothing).
    #[serde(default)]
    pub created: Option<Seconds>,
    /// GPUs the pod requests (`nvidia.com/gpu`): whether a node's unmapped GPU energy is idle
    /// (no running pod holds a GPU) or unmapped (someone's, but not known whose).
    #[serde(default)]
    pub gpus: f64,
    /// The run this pod belongs to when its workload runs again and again (a CronJob's Job,
    /// `Job/nightly-retrain-29412960`): the workload stays one series, each run stays visible.
    #[serde(default)]
    pub run: Option<String>,
}

impl PodFacts {
    /// A running, unlabelled bare pod with no node; the setters below fill in the rest.
    pub fn new(namespace: &str, pod: &str) -> Self {
        Self {
            key: PodKey::new(namespace, pod),
            uid: String::new(),
            workload: WorkloadRef::new(namespace, "Pod", pod),
            phase: Phase::Unlabelled,
            product: None,
            node: None,
            platform: false,
            reserved_share: 0.0,
            running: true,
            created: None,
            gpus: 0.0,
            run: None,
        }
    }
    /// Sets the controlling workload, `Kind/name` split as `kind`, `name`.
    pub fn workload(mut self, kind: &str, name: &str) -> Self {
        self.workload = WorkloadRef::new(self.key.namespace.clone(), kind, name);
        self
    }
    /// Sets the life-cycle phase.
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }
    /// Sets the product it builds or serves.
    pub fn product(mut self, product: Option<&str>) -> Self {
        self.product = product.map(str::to_owned);
        self
    }
    /// Sets the node it runs on.
    pub fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }
    /// Sets the UID.
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = uid.to_owned();
        self
    }
    /// Marks it as a platform pod.
    pub fn platform(mut self, platform: bool) -> Self {
        self.platform = platform;
        self
    }
    /// Sets its reserved fraction of the node, in [0, 1].
    pub fn reserved_share(mut self, share: f64) -> Self {
        self.reserved_share = share;
        self
    }
    /// Sets whether it runs now.
    pub fn running(mut self, running: bool) -> Self {
        self.running = running;
        self
    }
    /// Sets its creation time.
    pub fn created(mut self, at: Seconds) -> Self {
        self.created = Some(at);
        self
    }
    /// Sets the GPUs it requests.
    pub fn gpus(mut self, gpus: f64) -> Self {
        self.gpus = gpus;
        self
    }
    /// Sets the run (`Kind/name`, e.g. a CronJob's `Job/<name>`).
    pub fn run(mut self, run: &str) -> Self {
        self.run = Some(run.to_owned());
        self
    }
}

/// Everything attribution needs to know about one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// The node's name (also the `node` label of energy readings).
    pub name: String,
    /// Region key into the configured regions (from `topology.kubernetes.io/region`).
    pub region: Option<String>,
    /// Cloud instance type (`node.kubernetes.io/instance-type`), for estimation coefficients.
    pub instance_type: Option<String>,
    /// Number of GPUs the node offers.
    pub gpu_count: u32,
    /// GPU product name (e.g. from the `nvidia.com/gpu.product` label), for matching `systems`.
    pub gpu_model: Option<String>,
    /// All node labels, for matching `systems` entries of the config.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Allocatable vCPUs (for the estimated source's node idle).
    #[serde(default)]
    pub cpus: f64,
}

/// Who an energy reading belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EnergyOwner {
    /// A workload container (container name may be empty when the source is per pod).
    Pod {
        /// The pod.
        key: PodKey,
        /// The container name.
        container: String,
    },
    /// Node-level idle energy (Kepler v2 `kepler_node_cpu_idle_joules_total`, legacy `mode="idle"`).
    NodeIdle,
    /// Non-pod work on the node (Kepler `system_processes`).
    NodeSystem,
    /// A GPU line that names no workload (idle, or a pod the exporter could not map).
    UnmappedGpu {
        /// The GPU's UUID.
        uuid: String,
    },
    /// Node active energy that contains its pods' (Kepler ≥ 0.10 `kepler_node_cpu_active_*`):
    /// what the node's pods do not account for is non-pod work (kubelet, runtime).
    NodeActive,
}

impl EnergyOwner {
    /// A container of pod `namespace/pod` (empty `container`: the whole pod).
    pub fn pod(
        namespace: impl Into<String>,
        pod: impl Into<String>,
        container: impl Into<String>,
    ) -> Self {
        EnergyOwner::Pod {
            key: PodKey::new(namespace, pod),
            container: container.into(),
        }
    }
}

/// How a reading shares its counter with the other readings of the same `series` (a
/// time-sliced GPU, MIG instances): the series' delta goes to its slots by `weight`, and a
/// slot's part equally to its readings. A lone reading takes the whole delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// The slot within the counter (a MIG instance id); empty for the whole device.
    pub slot: String,
    /// The slot's weight (a MIG instance's compute slices); 1 for the whole device.
    pub weight: f64,
}

impl Default for Share {
    fn default() -> Self {
        Self {
            slot: String::new(),
            weight: 1.0,
        }
    }
}

/// One cumulative counter value as a source exported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    /// Stable identity of the underlying counter (source + series labels), for delta tracking.
    pub series: String,
    /// The node the counter lives on.
    pub node: String,
    /// Who the energy belongs to.
    pub owner: EnergyOwner,
    /// Which part of the machine consumed it.
    pub component: Component,
    /// Cumulative joules since the counter's start.
    pub cumulative: Joules,
    /// Sample time, seconds since the Unix epoch.
    pub at: Seconds,
    /// The reading's part of a shared counter.
    #[serde(default)]
    pub share: Share,
    /// Estimated from utilisation and coefficients, not measured.
    #[serde(default)]
    pub estimated: bool,
}

impl EnergyReading {
    /// A reading that owns its whole counter.
    pub fn new(
        series: impl Into<String>,
        node: impl Into<String>,
        owner: EnergyOwner,
        component: Component,
        cumulative: Joules,
        at: Seconds,
    ) -> Self {
        Self {
            series: series.into(),
            node: node.into(),
            owner,
            component,
            cumulative,
            at,
            share: Share::default(),
            estimated: false,
        }
    }

    /// Marks the reading as estimated rather than measured.
    pub fn estimated(mut self) -> Self {
        self.estimated = true;
        self
    }

    /// The reading's slot and weight in a shared counter.
    pub fn with_share(mut self, slot: impl Into<String>, weight: f64) -> Self {
        self.share = Share {
            slot: slot.into(),
            weight,
        };
        self
    }
}

/// Energy consumed in one interval by one owner and component, after delta tracking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyDelta {
    /// The node the energy was consumed on.
    pub node: String,
    /// Who consumed it.
    pub owner: EnergyOwner,
    /// Which part of the machine consumed it.
    pub component: Component,
    /// Energy over the interval (non-negative).
    pub energy: Joules,
    /// Estimated from utilisation and coefficients, not measured (never mixed up).
    #[serde(default)]
    pub estimated: bool,
}

/// A consistent view of the cluster at one moment: what the kube watchers (or the demo's
/// simulation) hand the ledger each interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// Pods known to the watchers (running, pending, and recently finished).
    pub pods: Vec<PodFacts>,
    /// Nodes of the cluster.
    pub nodes: Vec<NodeFacts>,
    /// Products that passed validation.
    pub products: Vec<crate::product::ProductDef>,
    /// Products that failed validation, with the reason (never silently dropped).
    pub invalid_products: Vec<(String, String)>,
}

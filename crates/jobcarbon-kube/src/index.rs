//! The pure attribution layer: Kubernetes objects in, core facts out. No API server, no async;
//! the watchers feed it from their stores and tests feed it from fixture builders.

use crate::labels::{LabelIssue, LabelSchema, PlatformSelector};
use crate::owner::{ParentOwners, WorkloadRule, default_workload_rules, resolve_submitted};
use crate::resources::{Resources, node_allocatable, parse_quantity, pod_requests};
use crate::slim::SlimPod;
use jobcarbon_core::{ClusterSnapshot, NodeFacts, PodFacts, PodKey, Seconds};
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Default node label carrying the region (DESIGN §11 `nodeRegionLabel`).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// Node labels carrying the instance type, newest first.
pub const INSTANCE_TYPE_LABELS: [&str; 2] = [
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];
/// Node label set by NVIDIA GPU feature discovery.
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

/// How pods and nodes are read: label keys, platform pods, the region label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributionConfig {
    /// Label keys for phase and product.
    #[serde(default)]
    pub labels: LabelSchema,
    /// Which pods are platform pods.
    #[serde(default)]
    pub platform: PlatformSelector,
    /// Node label holding the region (default `topology.kubernetes.io/region`).
    #[serde(default = "default_region_label")]
    pub node_region_label: String,
    /// Pod labels naming the submitted workload, first match wins ([`default_workload_rules`]).
    #[serde(default = "default_workload_rules")]
    pub workload_rules: Vec<WorkloadRule>,
}

fn default_region_label() -> String {
    REGION_LABEL.to_owned()
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            labels: LabelSchema::default(),
            platform: PlatformSelector::default(),
            node_region_label: default_region_label(),
            workload_rules: default_workload_rules(),
        }
    }
}

/// One pod resolved to core facts, with any label issues found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPod {
    pub facts: PodFacts,
    pub issues: Vec<LabelIssue>,
}

/// Counts of what the index could not take at face value. Reported, never silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexIssues {
    /// Pods by label issue.
    pub labels: BTreeMap<LabelIssue, u64>,
    /// Pods without a name or namespace (malformed objects), left out of the snapshot.
    pub pods_without_identity: u64,
    /// Nodes without a name, left out of the snapshot.
    pub nodes_without_name: u64,
    /// Pods bound to a node the store does not know (their reserved share is 0).
    pub pods_on_unknown_nodes: u64,
}

/// Nodes by name with what pod resolution needs from them.
#[derive(Debug, Clone, Default)]
pub struct NodeTable {
    allocatable: HashMap<String, Resources>,
}

impl NodeTable {
    /// Allocatable resources of `nodes`, by node name (nodes without a name are skipped).
    pub fn new<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let allocatable = nodes
            .into_iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, node_allocatable(n))))
            .collect();
        Self { allocatable }
    }

    /// The allocatable resources of `node`, if known.
    pub fn allocatable(&self, node: &str) -> Option<&Resources> {
        self.allocatable.get(node)
    }

    /// Number of nodes known.
    pub fn len(&self) -> usize {
        self.allocatable.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.allocatable.is_empty()
    }
}

impl AttributionConfig {
    /// Resolve one pod. `None` for a pod without name or namespace. `parents` are the Jobs
    /// and RayClusters known so far (empty: each pod stays with its controller).
    pub fn resolve_pod(
        &self,
        pod: &SlimPod,
        nodes: &NodeTable,
        parents: &ParentOwners,
    ) -> Option<ResolvedPod> {
        let meta = &pod.metadata;
        let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
        let namespace = meta.namespace.as_deref().filter(|n| !n.is_empty())?;
        let labels = meta.labels.as_ref();
        let reading = self.labels.read(labels);
        let submitted = resolve_submitted(
            namespace,
            name,
            (meta.owner_references.as_deref(), labels),
            &self.workload_rules,
            parents,
        );
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let requests = pod_requests(pod.spec.as_ref());
        let reserved_share = node
            .as_deref()
            .and_then(|n| nodes.allocatable(n))
            .map_or(0.0, |alloc| requests.share_of(alloc));
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        Some(ResolvedPod {
            facts: PodFacts {
                key: PodKey::new(namespace, name),
                uid: meta.uid.clone().unwrap_or_default(),
                workload: submitted.workload,
                phase: reading.phase,
                product: reading.product,
                node,
                platform: self.platform.matches(namespace, labels),
                reserved_share,
                running,
                created: meta
                    .creation_timestamp
                    .as_ref()
                    .map(|t| Seconds(t.0.as_second() as f64)),
                gpus: requests.gpu,
                run: submitted.run,
            },
            issues: reading.issues,
        })
    }

    /// Node facts. `None` for a node without a name.
    pub fn node_facts(&self, node: &Node) -> Option<NodeFacts> {
        let name = node.metadata.name.clone().filter(|n| !n.is_empty())?;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
        let status = node.status.as_ref();
        let gpu_count = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .and_then(|m| m.get(crate::resources::GPU_RESOURCE))
            .and_then(|q| parse_quantity(&q.0))
            .map_or(0, |n| n.min(f64::from(u32::MAX)) as u32);
        let cpus = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .and_then(|m| m.get("cpu"))
            .and_then(|q| parse_quantity(&q.0))
            .unwrap_or(0.0);
        Some(NodeFacts {
            name,
            region: label(&self.node_region_label),
            instance_type: INSTANCE_TYPE_LABELS.iter().find_map(|k| label(k)),
            gpu_count,
            gpu_model: label(GPU_PRODUCT_LABEL),
            labels,
            cpus,
        })
    }

    /// The pod label keys attribution reads: phase, product, workload rules (and their
    /// conditions), platform `matchLabels`, and `pod-template-hash` (a ReplicaSet's pod books
    /// to its Deployment). A pod rebuilt from kube-state-metrics history needs exactly these
    /// in KSM's `--metric-labels-allowlist` ([`crate::ksm`]).
    pub fn label_keys(&self) -> std::collections::BTreeSet<String> {
        let mut keys: std::collections::BTreeSet<String> = [
            self.labels.phase_key.clone(),
            self.labels.product_key.clone(),
            crate::owner::POD_TEMPLATE_HASH_LABEL.to_owned(),
        ]
        .into();
        for rule in &self.workload_rules {
            keys.insert(rule.label.clone());
            if let Some(when) = &rule.when {
                keys.insert(when.label.clone());
            }
        }
        keys.extend(self.platform.match_labels.keys().cloned());
        keys
    }

    /// Index a whole cluster: every pod and node, sorted by key, with the issues found.
    /// Products are validated separately ([`crate::product::validate_products`]).
    pub fn index<'a>(
        &self,
        pods: impl IntoIterator<Item = &'a SlimPod>,
        nodes: impl IntoIterator<Item = &'a Node> + Clone,
    ) -> (ClusterSnapshot, IndexIssues) {
        self.index_with_parents(pods, nodes, &ParentOwners::default())
    }

    /// [`Self::index`] with the Jobs and RayClusters the metadata watches know.
    pub fn index_with_parents<'a>(
        &self,
        pods: impl IntoIterator<Item = &'a SlimPod>,
        nodes: impl IntoIterator<Item = &'a Node> + Clone,
        parents: &ParentOwners,
    ) -> (ClusterSnapshot, IndexIssues) {
        let mut issues = IndexIssues::default();
        let table = NodeTable::new(nodes.clone());
        let mut node_facts = Vec::with_capacity(table.len());
        for node in nodes {
            match self.node_facts(node) {
                Some(facts) => node_facts.push(facts),
                None => issues.nodes_without_name += 1,
            }
        }
        node_facts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut pod_facts = Vec::new();
        for pod in pods {
            let Some(resolved) = self.resolve_pod(pod, &table, parents) else {
                issues.pods_without_identity += 1;
                continue;
            };
            for issue in resolved.issues {
                *issues.labels.entry(issue).or_default() += 1;
            }
            if let Some(node) = &resolved.facts.node
                && table.allocatable(node).is_none()
            {
                issues.pods_on_unknown_nodes += 1;
            }
            pod_facts.push(resolved.facts);
        }
        pod_facts.sort_by(|a, b| a.key.cmp(&b.key));
        let snapshot = ClusterSnapshot {
            pods: pod_facts,
            nodes: node_facts,
            products: Vec::new(),
            invalid_products: Vec::new(),
        };
        (snapshot, issues)
    }
}

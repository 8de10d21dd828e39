//! Pods from kube-state-metrics history: the pods the watchers never saw (they lived only
//! inside a ledger or API-server outage) rebuilt from what Prometheus kept of KSM's series.
//!
//! The translation is pure: KSM samples in, [`SlimPod`]s out, which then go through the very
//! same attribution as watched pods ([`crate::AttributionConfig::resolve_pod`]). Families and
//! labels are the ones KSM v2 exposes (`internal/store/pod.go`, docs/metrics/workload/
//! pod-metrics.md):
//!
//! - `kube_pod_info{namespace, pod, uid, node, created_by_kind, created_by_name, …}`
//! - `kube_pod_owner{namespace, pod, uid, owner_kind, owner_name, owner_is_controller}`
//! - `kube_pod_labels{namespace, pod, uid, label_<key>…}`: only the keys allowed by
//!   `--metric-labels-allowlist=pods=[…]`, each sanitised (`[^a-zA-Z0-9_]` → `_`, then
//!   snake case: `jobcarbon.io/phase` → `label_jobcarbon_io_phase`)
//! - `kube_pod_created{namespace, pod, uid}`: the creation time, Unix seconds
//! - `kube_pod_status_phase{namespace, pod, uid, phase}`: 1 for the current phase
//! - `kube_pod_container_resource_requests{namespace, pod, uid, container, resource, unit}`
//!   (`cpu` in cores, `memory` in bytes, `nvidia_com_gpu` …)
//!
//! KSM writes `<none>` for a pod without owner. Scraped without `honor_labels`, KSM's own
//! `namespace` and `pod` become `exported_namespace` and `exported_pod`; those win.

use crate::slim::{SlimContainer, SlimPod, SlimPodSpec, SlimPodStatus, SlimResources};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use std::collections::{BTreeMap, BTreeSet};

/// The KSM families read, in the order of [`KsmSamples`]' fields.
pub const KSM_FAMILIES: [&str; 6] = [
    "kube_pod_info",
    "kube_pod_labels",
    "kube_pod_owner",
    "kube_pod_created",
    "kube_pod_status_phase",
    "kube_pod_container_resource_requests",
];

/// One sample of a KSM series: its labels (as Prometheus returns them) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct KsmSeries {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// The sample's value.
    pub value: f64,
}

impl KsmSeries {
    /// A sample with `labels` and `value` (tests and the fake history).
    pub fn new(labels: &[(&str, &str)], value: f64) -> Self {
        Self {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }

    /// A label's value, preferring `exported_<name>`; `""` and KSM's `<none>` are absent.
    fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .get(&format!("exported_{name}"))
            .or_else(|| self.labels.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty() && *v != "<none>")
    }

    /// `(namespace, pod)`, when both are there.
    fn pod(&self) -> Option<(String, String)> {
        Some((
            self.get("namespace")?.to_owned(),
            self.get("pod")?.to_owned(),
        ))
    }
}

/// The last sample of each KSM family over one interval, by family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KsmSamples {
    /// `kube_pod_info`: UID, node and creator.
    pub info: Vec<KsmSeries>,
    /// `kube_pod_labels`: the allow-listed pod labels.
    pub labels: Vec<KsmSeries>,
    /// `kube_pod_owner`: the controlling owner.
    pub owner: Vec<KsmSeries>,
    /// `kube_pod_created`: creation time.
    pub created: Vec<KsmSeries>,
    /// `kube_pod_status_phase`: the pod phase.
    pub phase: Vec<KsmSeries>,
    /// `kube_pod_container_resource_requests`: requests, for the reserved share.
    pub requests: Vec<KsmSeries>,
}

impl KsmSamples {
    /// The samples of `family` (one of [`KSM_FAMILIES`]); `None` for another name.
    pub fn family_mut(&mut self, family: &str) -> Option<&mut Vec<KsmSeries>> {
        Some(match family {
            "kube_pod_info" => &mut self.info,
            "kube_pod_labels" => &mut self.labels,
            "kube_pod_owner" => &mut self.owner,
            "kube_pod_created" => &mut self.created,
            "kube_pod_status_phase" => &mut self.phase,
            "kube_pod_container_resource_requests" => &mut self.requests,
            _ => return None,
        })
    }

    /// Whether no pod was seen (no `kube_pod_info` sample).
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }
}

/// The name KSM gives pod label `key` in `kube_pod_labels`: `label_` + the key with every
/// character outside `[a-zA-Z0-9_]` replaced by `_`, in snake case (KSM's `labelName`,
/// `sanitizeLabelName` and `toSnakeCase`).
pub fn ksm_label_name(key: &str) -> String {
    let sanitised: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // `([a-z0-9])([A-Z])` → `$1_$2`, then lower case.
    let chars: Vec<char> = sanitised.chars().collect();
    let mut snake = String::with_capacity(sanitised.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        let after_lower =
            i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
        if c.is_ascii_uppercase() && after_lower {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    format!("label_{snake}")
}

/// The pods KSM knew during the interval, as the watchers would have seen them: metadata
/// (uid, the `label_keys` that KSM exported, owners, creation time), node, requests and
/// phase. Only pods with a `kube_pod_info` series are returned (it is the one family every
/// KSM exposes by default). `label_keys` are the pod label keys attribution reads.
pub fn pods_from_ksm(samples: &KsmSamples, label_keys: &BTreeSet<String>) -> Vec<SlimPod> {
    let mut pods: BTreeMap<(String, String), SlimPod> = BTreeMap::new();
    for info in &samples.info {
        let Some((namespace, name)) = info.pod() else {
            continue;
        };
        let mut meta = ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: info.get("uid").map(str::to_owned),
            ..ObjectMeta::default()
        };
        if let (Some(kind), Some(owner)) =
            (info.get("created_by_kind"), info.get("created_by_name"))
        {
            meta.owner_references = Some(vec![owner_ref(kind, owner, true)]);
        }
        let spec = SlimPodSpec {
            node_name: info.get("node").map(str::to_owned),
            ..SlimPodSpec::default()
        };
        let pod = SlimPod {
            metadata: meta,
            spec: Some(spec),
            status: None,
        };
        pods.insert((namespace, name), pod);
    }
    let same_pod = |s: &KsmSeries, pods: &BTreeMap<(String, String), SlimPod>| {
        let key = s.pod()?;
        let pod = pods.get(&key)?;
        // A pod of the same name but another uid (recreated in the window) is not this one.
        let uid = pod.metadata.uid.as_deref();
        (uid.is_none() || s.get("uid").is_none() || s.get("uid") == uid).then_some(())?;
        Some(key)
    };
    add_owners(samples, &mut pods, &same_pod);
    for s in &samples.labels {
        if let Some(key) = same_pod(s, &pods) {
            let labels = allowed_labels(s, label_keys);
            if let Some(pod) = pods.get_mut(&key) {
                pod.metadata.labels = Some(labels);
            }
        }
    }
    for s in &samples.created {
        if let Some(key) = same_pod(s, &pods)
            && let Some(pod) = pods.get_mut(&key)
        {
            pod.metadata.creation_timestamp = creation_time(s.value);
        }
    }
    for s in samples.phase.iter().filter(|s| s.value >= 0.5) {
        if let (Some(key), Some(phase)) = (same_pod(s, &pods), s.get("phase"))
            && let Some(pod) = pods.get_mut(&key)
        {
            pod.status = Some(SlimPodStatus {
                phase: Some(phase.to_owned()),
            });
        }
    }
    add_requests(samples, &mut pods, &same_pod);
    pods.into_values().collect()
}

type SamePod<'a> =
    dyn Fn(&KsmSeries, &BTreeMap<(String, String), SlimPod>) -> Option<(String, String)> + 'a;

/// `kube_pod_owner` replaces `created_by_*` when present (it has `owner_is_controller`).
fn add_owners(
    samples: &KsmSamples,
    pods: &mut BTreeMap<(String, String), SlimPod>,
    same_pod: &SamePod<'_>,
) {
    let mut owners: BTreeMap<(String, String), Vec<OwnerReference>> = BTreeMap::new();
    for s in &samples.owner {
        let (Some(key), Some(kind), Some(name)) =
            (same_pod(s, pods), s.get("owner_kind"), s.get("owner_name"))
        else {
            continue;
        };
        let controller = s.get("owner_is_controller") == Some("true");
        let refs = owners.entry(key).or_default();
        let owner = owner_ref(kind, name, controller);
        // Two KSM replicas (or scrape jobs) export the same owner twice.
        if !refs.contains(&owner) {
            refs.push(owner);
        }
    }
    for (key, refs) in owners {
        if let Some(pod) = pods.get_mut(&key) {
            pod.metadata.owner_references = Some(refs);
        }
    }
}

/// One container per `kube_pod_container_resource_requests` container, with the requests in
/// the API's resource names (`nvidia_com_gpu` → `nvidia.com/gpu`).
fn add_requests(
    samples: &KsmSamples,
    pods: &mut BTreeMap<(String, String), SlimPod>,
    same_pod: &SamePod<'_>,
) {
    let mut containers: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, Quantity>>> =
        BTreeMap::new();
    for s in &samples.requests {
        let (Some(key), Some(resource)) = (same_pod(s, pods), s.get("resource")) else {
            continue;
        };
        if !s.value.is_finite() || s.value < 0.0 {
            continue;
        }
        let container = s.get("container").unwrap_or_default().to_owned();
        containers
            .entry(key)
            .or_default()
            .entry(container)
            .or_default()
            .insert(
                api_resource_name(resource),
                Quantity(format!("{}", s.value)),
            );
    }
    for (key, by_container) in containers {
        if let Some(spec) = pods.get_mut(&key).and_then(|p| p.spec.as_mut()) {
            spec.containers = by_container
                .into_values()
                .map(|requests| SlimContainer {
                    resources: Some(SlimResources {
                        requests: Some(requests),
                    }),
                })
                .collect();
        }
    }
}

/// KSM sanitises extended resource names (`nvidia.com/gpu` → `nvidia_com_gpu`).
fn api_resource_name(ksm: &str) -> String {
    match ksm {
        "nvidia_com_gpu" => "nvidia.com/gpu".to_owned(),
        "amd_com_gpu" => "amd.com/gpu".to_owned(),
        other => other.to_owned(),
    }
}

/// The pod labels among `label_keys` that KSM exported (under their sanitised names).
fn allowed_labels(s: &KsmSeries, label_keys: &BTreeSet<String>) -> BTreeMap<String, String> {
    label_keys
        .iter()
        .filter_map(|key| {
            let value = s.labels.get(&ksm_label_name(key))?;
            (!value.is_empty()).then(|| (key.clone(), value.clone()))
        })
        .collect()
}

fn owner_ref(kind: &str, name: &str, controller: bool) -> OwnerReference {
    OwnerReference {
        kind: kind.to_owned(),
        name: name.to_owned(),
        controller: Some(controller),
        ..OwnerReference::default()
    }
}

fn creation_time(unix: f64) -> Option<Time> {
    use k8s_openapi::jiff::Timestamp;
    if !unix.is_finite() || unix <= 0.0 {
        return None;
    }
    Timestamp::from_second(unix.floor() as i64).ok().map(Time)
}

//! Owner resolution: the job a pod belongs to is the object the user submitted (DESIGN §4).
//!
//! Three steps, each a pure function of what the watchers saw:
//! 1. [`WorkloadRule`]s on the pod's labels, in order, the first match winning (JobSet,
//!    KubeRay, KServe, Knative, LeaderWorkerSet, Kubeflow training jobs set them);
//! 2. otherwise the pod's controlling owner ([`resolve_workload`], the behaviour before rules);
//! 3. one step up through [`ParentOwners`]: a `Job` or `RayCluster` whose metadata the watchers
//!    hold is replaced by its own controller (a CronJob, a RayJob). A CronJob's Job is kept
//!    as the pod's `run`. Unknown parents leave the step-2 answer as it is.

use crate::labels::is_valid_label_value;
use jobcarbon_core::WorkloadRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet is named
/// `<deployment>-<hash>`, so the Deployment is known without watching ReplicaSets.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Kinds whose metadata the watchers keep so a pod can be lifted to their controller.
pub const PARENT_KINDS: [&str; 2] = ["Job", "RayCluster"];

/// A pod label naming the submitted object: `label`'s value is the name, `kind` its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRule {
    /// The pod label whose value names the submitted object.
    pub label: String,
    /// The submitted object's kind (`RayJob`, `PyTorchJob`, …).
    pub kind: String,
    /// Only when another label has this value (KubeRay names the CRD in a second label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<LabelCondition>,
}

/// `label == value` on the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelCondition {
    pub label: String,
    pub value: String,
}

impl WorkloadRule {
    /// A rule: `label`'s value names an object of kind `kind`.
    pub fn new(label: &str, kind: &str) -> Self {
        Self {
            label: label.to_owned(),
            kind: kind.to_owned(),
            when: None,
        }
    }

    /// Applies the rule only when the pod's `label` equals `value`.
    pub fn when(mut self, label: &str, value: &str) -> Self {
        self.when = Some(LabelCondition {
            label: label.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// The name this rule reads from `labels`, if it applies.
    fn name_in<'a>(&self, labels: &'a BTreeMap<String, String>) -> Option<&'a str> {
        if let Some(cond) = &self.when
            && labels.get(&cond.label) != Some(&cond.value)
        {
            return None;
        }
        labels
            .get(&self.label)
            .map(String::as_str)
            .filter(|name| !name.is_empty() && is_valid_label_value(name))
    }

    /// What is wrong with this rule, if anything (a config check; `None` when valid).
    pub fn problem(&self) -> Option<String> {
        if !is_valid_label_key(&self.label) {
            return Some(format!("label {:?} is not a label key", self.label));
        }
        let kind_ok = self.kind.starts_with(|c: char| c.is_ascii_uppercase())
            && self.kind.chars().all(|c| c.is_ascii_alphanumeric());
        if !kind_ok {
            return Some(format!(
                "kind {:?} is not a Kind (CamelCase letters and digits)",
                self.kind
            ));
        }
        let cond = self.when.as_ref()?;
        if !is_valid_label_key(&cond.label) {
            return Some(format!("when.label {:?} is not a label key", cond.label));
        }
        (cond.value.is_empty() || !is_valid_label_value(&cond.value))
            .then(|| format!("when.value {:?} is not a label value", cond.value))
    }
}

/// `[prefix/]name`: a DNS subdomain prefix of at most 253 characters, a name that is a
/// non-empty label value.
pub fn is_valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    });
    prefix_ok && !name.is_empty() && is_valid_label_value(name)
}

/// Label values are at most 63 characters of `[A-Za-z0-9._-]` by the API server's own
/// validation; anything else (a hand-edited store, a test) is not trusted as a name.
fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Kubeflow Training Operator v1 controller names (`training.kubeflow.org/operator-name`)
/// and the kinds they run.
const KUBEFLOW_OPERATORS: [(&str, &str); 6] = [
    ("pytorchjob-controller", "PyTorchJob"),
    ("tfjob-controller", "TFJob"),
    ("mpijob-controller", "MPIJob"),
    ("xgboostjob-controller", "XGBoostJob"),
    ("paddlejob-controller", "PaddleJob"),
    ("jaxjob-controller", "JAXJob"),
];

/// The built-in rules, most specific first. Label names are those the controllers set on
/// the pods they create (see docs/kubernetes.md and fixtures/PROVENANCE.md for the sources).
pub fn default_workload_rules() -> Vec<WorkloadRule> {
    const RAY_NAME: &str = "ray.io/originated-from-cr-name";
    const RAY_CRD: &str = "ray.io/originated-from-crd";
    let mut rules = vec![
        WorkloadRule::new(RAY_NAME, "RayJob").when(RAY_CRD, "RayJob"),
        WorkloadRule::new(RAY_NAME, "RayService").when(RAY_CRD, "RayService"),
        // KServe serverless pods also carry Knative's labels: the InferenceService wins.
        WorkloadRule::new("serving.kserve.io/inferenceservice", "InferenceService"),
        WorkloadRule::new("serving.knative.dev/service", "Service"),
        WorkloadRule::new("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"),
        WorkloadRule::new("jobset.sigs.k8s.io/jobset-name", "JobSet"),
    ];
    rules.extend(KUBEFLOW_OPERATORS.iter().map(|(operator, kind)| {
        WorkloadRule::new("training.kubeflow.org/job-name", kind)
            .when("training.kubeflow.org/operator-name", operator)
    }));
    // Head and worker pods name only their RayCluster; its owner lifts it (step 3).
    rules.push(WorkloadRule::new("ray.io/cluster", "RayCluster"));
    rules
}

/// The controller of each watched parent object (`Job`, `RayCluster`), by namespace, kind
/// and name. Built from metadata-only watches.
#[derive(Debug, Clone, Default)]
pub struct ParentOwners {
    controllers: HashMap<(String, String, String), (String, String)>,
}

impl ParentOwners {
    /// Record the controllers of `objects` of `kind`. Objects without a controller are still
    /// recorded as known (their pods keep the parent as workload).
    pub fn add<'a>(&mut self, kind: &str, objects: impl IntoIterator<Item = &'a ObjectMeta>) {
        for meta in objects {
            let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
                continue;
            };
            let controller = meta
                .owner_references
                .as_deref()
                .and_then(controller_of)
                .filter(|o| !o.kind.is_empty() && is_object_name(&o.name))
                .map(|o| (o.kind.clone(), o.name.clone()))
                .unwrap_or_default();
            self.controllers.insert(
                (ns.to_owned(), kind.to_owned(), name.to_owned()),
                controller,
            );
        }
    }

    /// The controller of `kind/name`: `None` when the object is unknown or has no controller.
    pub fn controller(&self, namespace: &str, kind: &str, name: &str) -> Option<(&str, &str)> {
        let key = (namespace.to_owned(), kind.to_owned(), name.to_owned());
        self.controllers
            .get(&key)
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, n)| (k.as_str(), n.as_str()))
    }

    /// Number of parents known.
    pub fn len(&self) -> usize {
        self.controllers.len()
    }

    /// Whether no parent is known.
    pub fn is_empty(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// The object a pod belongs to, and the run of it when it runs repeatedly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub workload: WorkloadRef,
    /// `Job/<name>` for a CronJob's pod.
    pub run: Option<String>,
}

/// Resolve the submitted workload of a pod: rules, then the controller, then one step up
/// through a known parent (see the module docs).
pub fn resolve_submitted(
    namespace: &str,
    pod_name: &str,
    meta: (Option<&[OwnerReference]>, Option<&BTreeMap<String, String>>),
    rules: &[WorkloadRule],
    parents: &ParentOwners,
) -> Submitted {
    let (owners, labels) = meta;
    let by_rule = labels.and_then(|labels| {
        rules
            .iter()
            .find_map(|rule| Some((rule.kind.as_str(), rule.name_in(labels)?)))
    });
    let (kind, name) = match by_rule {
        Some(found) => found,
        None => {
            let workload = resolve_workload(namespace, pod_name, owners, labels);
            return lift(workload, parents);
        }
    };
    lift(WorkloadRef::new(namespace, kind, name), parents)
}

/// Step 3: replace a known parent by its controller.
fn lift(workload: WorkloadRef, parents: &ParentOwners) -> Submitted {
    let unchanged = |workload| Submitted {
        workload,
        run: None,
    };
    let Some((kind, name)) = workload.workload.split_once('/') else {
        return unchanged(workload);
    };
    if !PARENT_KINDS.contains(&kind) {
        return unchanged(workload);
    }
    match parents.controller(&workload.namespace, kind, name) {
        Some((owner_kind, owner_name)) => Submitted {
            run: (kind == "Job" && owner_kind == "CronJob").then(|| workload.workload.clone()),
            workload: WorkloadRef::new(workload.namespace.clone(), owner_kind, owner_name),
        },
        None => unchanged(workload),
    }
}

fn controller_of(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first().filter(|_| owners.len() == 1))
}

/// Resolve the controlling workload of a pod.
///
/// - batch Job → `Job/<name>`;
/// - ReplicaSet created by a Deployment (pod-template-hash suffix) → `Deployment/<name>`,
///   any other ReplicaSet → `ReplicaSet/<name>`;
/// - StatefulSet, DaemonSet and other controllers → `<Kind>/<name>`;
/// - no controller (or a static pod mirrored by its Node) → `Pod/<pod>`.
pub fn resolve_workload(
    namespace: &str,
    pod_name: &str,
    owners: Option<&[OwnerReference]>,
    labels: Option<&BTreeMap<String, String>>,
) -> WorkloadRef {
    let Some(owner) = controller_of(owners.unwrap_or_default()) else {
        return WorkloadRef::new(namespace, "Pod", pod_name);
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = labels.and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL));
            match hash.and_then(|h| deployment_of(&owner.name, h)) {
                Some(deployment) => WorkloadRef::new(namespace, "Deployment", deployment),
                None => WorkloadRef::new(namespace, "ReplicaSet", &owner.name),
            }
        }
        "Node" | "" => WorkloadRef::new(namespace, "Pod", pod_name),
        kind if owner.name.is_empty() => WorkloadRef::new(namespace, kind, pod_name),
        kind => WorkloadRef::new(namespace, kind, &owner.name),
    }
}

fn deployment_of<'a>(replica_set: &'a str, hash: &str) -> Option<&'a str> {
    let prefix = replica_set.strip_suffix(hash)?.strip_suffix('-')?;
    (!prefix.is_empty()).then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: &str, name: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller,
            block_owner_deletion: None,
        }
    }

    fn hash(h: &str) -> BTreeMap<String, String> {
        [(POD_TEMPLATE_HASH_LABEL.to_owned(), h.to_owned())].into()
    }

    #[test]
    fn job_owned_pod_is_the_job() {
        let o = [owner("Job", "bert-base-train", Some(true))];
        let w = resolve_workload("ml", "bert-base-train-7x9kq", Some(&o), None);
        assert_eq!(w.workload, "Job/bert-base-train");
        assert_eq!(w.namespace, "ml");
    }

    #[test]
    fn replicaset_with_template_hash_is_its_deployment() {
        let o = [owner(
            "ReplicaSet",
            "bert-base-serve-6d8f7b9c5d",
            Some(true),
        )];
        let l = hash("6d8f7b9c5d");
        let w = resolve_workload("s", "p", Some(&o), Some(&l));
        assert_eq!(w.workload, "Deployment/bert-base-serve");
        let w = resolve_workload("s", "p", Some(&o), None);
        assert_eq!(w.workload, "ReplicaSet/bert-base-serve-6d8f7b9c5d");
        let l = hash("other");
        let w = resolve_workload("s", "p", Some(&o), Some(&l));
        assert_eq!(w.workload, "ReplicaSet/bert-base-serve-6d8f7b9c5d");
    }

    #[test]
    fn statefulset_daemonset_and_bare_pods() {
        let o = [owner("StatefulSet", "db", Some(true))];
        assert_eq!(
            resolve_workload("n", "db-0", Some(&o), None).workload,
            "StatefulSet/db"
        );
        let o = [owner("DaemonSet", "kepler", Some(true))];
        assert_eq!(
            resolve_workload("n", "k", Some(&o), None).workload,
            "DaemonSet/kepler"
        );
        assert_eq!(
            resolve_workload("n", "solo", None, None).workload,
            "Pod/solo"
        );
        let o = [owner("Node", "gpu-node-a1", Some(true))];
        assert_eq!(
            resolve_workload("n", "etcd-x", Some(&o), None).workload,
            "Pod/etcd-x"
        );
    }

    #[test]
    fn controller_wins_over_other_owners() {
        let o = [owner("ConfigMap", "c", None), owner("Job", "j", Some(true))];
        assert_eq!(resolve_workload("n", "p", Some(&o), None).workload, "Job/j");
        let o = [owner("ConfigMap", "c", None), owner("Secret", "s", None)];
        assert_eq!(resolve_workload("n", "p", Some(&o), None).workload, "Pod/p");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn meta(ns: &str, name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        }
    }

    fn submitted(
        owners: &[OwnerReference],
        l: &BTreeMap<String, String>,
        parents: &ParentOwners,
    ) -> Submitted {
        let rules = default_workload_rules();
        resolve_submitted("ml", "p-0", (Some(owners), Some(l)), &rules, parents)
    }

    #[test]
    fn the_default_rules_are_valid_and_bad_rules_are_named() {
        for rule in default_workload_rules() {
            assert_eq!(rule.problem(), None, "{rule:?}");
        }
        let bad = WorkloadRule::new("jobset.sigs.k8s.io/", "JobSet");
        assert!(bad.problem().unwrap_or_default().contains("label"));
        let bad = WorkloadRule::new("a/b", "job set");
        assert!(bad.problem().unwrap_or_default().contains("kind"));
        let bad = WorkloadRule::new("a/b", "X").when("c", "");
        assert!(bad.problem().unwrap_or_default().contains("when.value"));
    }

    #[test]
    fn the_first_matching_rule_wins() {
        // A KServe serverless pod: Knative Deployment owner, KServe and Knative labels.
        let o = [owner(
            "ReplicaSet",
            "llama-chat-predictor-00001-deployment-5d8f",
            Some(true),
        )];
        let l = labels(&[
            ("serving.knative.dev/service", "llama-chat-predictor"),
            ("serving.kserve.io/inferenceservice", "llama-chat"),
        ]);
        let s = submitted(&o, &l, &ParentOwners::default());
        assert_eq!(s.workload.workload, "InferenceService/llama-chat");
        assert_eq!(s.run, None);
    }

    #[test]
    fn kuberay_condition_picks_the_kind_and_unknown_crds_fall_through() {
        let o = [owner("Job", "tune-sweep", Some(true))];
        let l = labels(&[
            ("ray.io/originated-from-crd", "RayJob"),
            ("ray.io/originated-from-cr-name", "tune-sweep"),
        ]);
        let none = ParentOwners::default();
        assert_eq!(
            submitted(&o, &l, &none).workload.workload,
            "RayJob/tune-sweep"
        );
        let l = labels(&[
            ("ray.io/originated-from-crd", "RayCronJob"),
            ("ray.io/originated-from-cr-name", "x"),
        ]);
        assert_eq!(submitted(&o, &l, &none).workload.workload, "Job/tune-sweep");
    }

    #[test]
    fn bad_label_values_are_not_names() {
        let o = [owner("Job", "j", Some(true))];
        for bad in ["", "a/b", "two words", "x\ny"] {
            let l = labels(&[("jobset.sigs.k8s.io/jobset-name", bad)]);
            let s = submitted(&o, &l, &ParentOwners::default());
            assert_eq!(s.workload.workload, "Job/j", "{bad:?}");
        }
    }

    #[test]
    fn known_jobs_lift_to_their_cronjob_and_keep_the_run() {
        let o = [owner("Job", "nightly-retrain-29412960", Some(true))];
        let mut parents = ParentOwners::default();
        let job = meta(
            "ml",
            "nightly-retrain-29412960",
            vec![owner("CronJob", "nightly-retrain", Some(true))],
        );
        parents.add("Job", [&job]);
        let s = submitted(&o, &BTreeMap::new(), &parents);
        assert_eq!(s.workload.workload, "CronJob/nightly-retrain");
        assert_eq!(s.run.as_deref(), Some("Job/nightly-retrain-29412960"));
    }

    #[test]
    fn broken_chains_fall_back_without_error() {
        let o = [owner("Job", "nightly-retrain-29412960", Some(true))];
        // Not known yet: the name suffix alone proves nothing.
        let s = submitted(&o, &BTreeMap::new(), &ParentOwners::default());
        assert_eq!(s.workload.workload, "Job/nightly-retrain-29412960");
        // A Job without owner, one whose CronJob was orphaned, one in another namespace.
        let mut parents = ParentOwners::default();
        let bare = meta("ml", "nightly-retrain-29412960", vec![]);
        let elsewhere = meta("other", "x", vec![owner("CronJob", "c", Some(true))]);
        let nameless = meta("ml", "y", vec![owner("CronJob", "", Some(true))]);
        parents.add("Job", [&bare, &elsewhere, &nameless]);
        let s = submitted(&o, &BTreeMap::new(), &parents);
        assert_eq!(s.workload.workload, "Job/nightly-retrain-29412960");
        assert_eq!(s.run, None);
        let o = [owner("Job", "y", Some(true))];
        assert_eq!(
            submitted(&o, &BTreeMap::new(), &parents).workload.workload,
            "Job/y"
        );
        // A Deployment is not a parent kind: never lifted.
        let rs = [owner("ReplicaSet", "web-6d8f", Some(true))];
        let l = labels(&[(POD_TEMPLATE_HASH_LABEL, "6d8f")]);
        assert_eq!(
            submitted(&rs, &l, &parents).workload.workload,
            "Deployment/web"
        );
    }

    #[test]
    fn ray_clusters_lift_to_their_rayjob_without_a_run() {
        let o = [owner("RayCluster", "tune-sweep-x7k2p", Some(true))];
        let l = labels(&[("ray.io/cluster", "tune-sweep-x7k2p")]);
        let none = ParentOwners::default();
        assert_eq!(
            submitted(&o, &l, &none).workload.workload,
            "RayCluster/tune-sweep-x7k2p"
        );
        let mut parents = ParentOwners::default();
        let cluster = meta(
            "ml",
            "tune-sweep-x7k2p",
            vec![owner("RayJob", "tune-sweep", Some(true))],
        );
        parents.add("RayCluster", [&cluster]);
        let s = submitted(&o, &l, &parents);
        assert_eq!(s.workload.workload, "RayJob/tune-sweep");
        assert_eq!(s.run, None);
    }
}

//! Owner resolution: the job a pod belongs to is its controlling workload (DESIGN §4).

use jobcarbon_core::WorkloadRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;

/// The label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet is named
/// `<deployment>-<hash>`, so the Deployment is known without watching ReplicaSets.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

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
    let owners = owners.unwrap_or_default();
    let controller = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first().filter(|_| owners.len() == 1));
    let Some(owner) = controller else {
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
}

//! What the reflector stores keep: only the fields attribution reads. Applied with
//! `WatchStreamExt::modify` before objects reach the store, so 100k pods stay small. Pods are
//! already [`SlimPod`]s (no env, volumes, probes); this drops the metadata they still carry.

use crate::slim::SlimPod;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn trim_meta(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        labels: meta.labels.take(),
        owner_references: meta.owner_references.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        creation_timestamp: meta.creation_timestamp.take(),
        ..ObjectMeta::default()
    };
}

/// Keep name, namespace, uid, labels, owners; drop managed fields, annotations and the rest
/// of the metadata.
pub fn trim_pod(pod: &mut SlimPod) {
    trim_meta(&mut pod.metadata);
}

/// A parent's metadata (a Job, a RayCluster) is read for its controller only: keep name,
/// namespace, resourceVersion and the controlling owner reference; drop labels, annotations,
/// managed fields and any other owner.
pub fn trim_parent(meta: &mut ObjectMeta) {
    let controller = meta.owner_references.take().and_then(|owners| {
        let single = owners.len() == 1;
        owners
            .into_iter()
            .find(|o| o.controller == Some(true) || single)
            .map(|o| vec![o])
    });
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        owner_references: controller,
        ..ObjectMeta::default()
    };
}

/// Keep name, labels, allocatable and capacity; drop images, conditions, addresses and the rest.
pub fn trim_node(node: &mut Node) {
    trim_meta(&mut node.metadata);
    node.metadata.owner_references = None;
    node.spec = None;
    node.status = node.status.take().map(|status| NodeStatus {
        allocatable: status.allocatable,
        capacity: status.capacity,
        ..NodeStatus::default()
    });
}

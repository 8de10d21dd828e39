//! What the reflector stores keep: only the fields attribution reads. Applied with
//! `WatchStreamExt::modify` before objects reach the store, so 100k pods stay small.

use k8s_openapi::api::core::v1::{
    Container, Node, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements,
};
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
        ..ObjectMeta::default()
    };
}

fn trim_container(container: &mut Container) {
    *container = Container {
        name: std::mem::take(&mut container.name),
        resources: container.resources.take().map(|r| ResourceRequirements {
            requests: r.requests,
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    };
}

/// Keep name, namespace, uid, labels, owners, node, requests and phase; drop managed fields,
/// annotations, env, volumes, probes and the rest.
pub fn trim_pod(pod: &mut Pod) {
    trim_meta(&mut pod.metadata);
    pod.spec = pod.spec.take().map(|mut spec| {
        spec.containers.iter_mut().for_each(trim_container);
        let mut init = spec.init_containers.take();
        init.iter_mut().flatten().for_each(trim_container);
        PodSpec {
            containers: spec.containers,
            init_containers: init,
            node_name: spec.node_name,
            overhead: spec.overhead,
            ..PodSpec::default()
        }
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        ..PodStatus::default()
    });
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

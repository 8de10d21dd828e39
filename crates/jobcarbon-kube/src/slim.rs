//! The pod type the store keeps. A `k8s_openapi` `Pod` is 2.2 KB inline plus 2.1 KB per
//! container before any string; at 100k pods that alone is ~700 MiB. `SlimPod` deserializes
//! only what attribution reads from the same API JSON (`GET /api/v1/pods`, watch events), so
//! env, volumes, probes, images and statuses are never even allocated.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A `v1` Pod reduced to metadata, node, requests and phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlimPod {
    /// Name, namespace, UID, labels, owners and creation time.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Node, containers (requests) and overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SlimPodSpec>,
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SlimPodStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<SlimContainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<SlimContainer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<BTreeMap<String, Quantity>>,
}

/// A container's resource requests (its name and everything else are not needed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlimContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<SlimResources>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlimResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlimPodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn slim_container(container: Container) -> SlimContainer {
    SlimContainer {
        resources: container.resources.map(|r| SlimResources {
            requests: r.requests,
        }),
    }
}

impl From<Pod> for SlimPod {
    fn from(pod: Pod) -> Self {
        let mut slim = SlimPod {
            metadata: pod.metadata,
            spec: pod.spec.map(|spec| SlimPodSpec {
                node_name: spec.node_name,
                containers: spec.containers.into_iter().map(slim_container).collect(),
                init_containers: spec
                    .init_containers
                    .map(|c| c.into_iter().map(slim_container).collect()),
                overhead: spec.overhead,
            }),
            status: pod.status.map(|s| SlimPodStatus { phase: s.phase }),
        };
        crate::trim::trim_pod(&mut slim);
        slim
    }
}

/// KubeRay's `RayCluster` (`ray.io/v1`), as a type for metadata-only requests: only its
/// `ObjectMeta` is ever read (`PartialObjectMeta<RayCluster>`), so it carries nothing else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RayCluster {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

impl k8s_openapi::Resource for RayCluster {
    const API_VERSION: &'static str = "ray.io/v1";
    const GROUP: &'static str = "ray.io";
    const KIND: &'static str = "RayCluster";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "rayclusters";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for RayCluster {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

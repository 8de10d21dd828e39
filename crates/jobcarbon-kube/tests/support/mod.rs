//! Fixture builders for pods and nodes: typed Kubernetes objects without an API server
//! (shared by the index tests and the benchmarks).
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{
    Container, Node, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

pub struct PodBuilder(Pod);

impl PodBuilder {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self(Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{namespace}-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..PodStatus::default()
            }),
        })
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn owner(mut self, kind: &str, name: &str) -> Self {
        self.0
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                api_version: "apps/v1".into(),
                kind: kind.into(),
                name: name.into(),
                uid: format!("uid-{name}"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.node_name = Some(node.into());
        }
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        });
        self
    }

    fn container(name: &str, cpu: &str, memory: &str, gpu: u32) -> Container {
        let mut requests = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ]);
        if gpu > 0 {
            requests.insert("nvidia.com/gpu".into(), Quantity(gpu.to_string()));
        }
        Container {
            name: name.into(),
            image: Some("nvcr.io/nvidia/pytorch:24.05-py3".into()),
            resources: Some(ResourceRequirements {
                limits: Some(requests.clone()),
                requests: Some(requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    pub fn container_requests(mut self, cpu: &str, memory: &str, gpu: u32) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            let name = format!("c{}", spec.containers.len());
            spec.containers
                .push(Self::container(&name, cpu, memory, gpu));
        }
        self
    }

    pub fn init_container_requests(mut self, cpu: &str, memory: &str, gpu: u32) -> Self {
        if let Some(spec) = self.0.spec.as_mut() {
            spec.init_containers
                .get_or_insert_with(Vec::new)
                .push(Self::container("init", cpu, memory, gpu));
        }
        self
    }

    /// The pod as the store keeps it.
    pub fn build(self) -> jobcarbon_kube::SlimPod {
        self.0.into()
    }

    /// The full `v1` Pod.
    pub fn build_full(self) -> Pod {
        self.0
    }
}

pub fn node(name: &str, cpu: &str, memory: &str, gpus: u32, labels: &[(&str, &str)]) -> Node {
    let mut allocatable = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.into())),
        ("memory".to_owned(), Quantity(memory.into())),
        ("pods".to_owned(), Quantity("110".into())),
    ]);
    if gpus > 0 {
        allocatable.insert("nvidia.com/gpu".into(), Quantity(gpus.to_string()));
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(allocatable.clone()),
            allocatable: Some(allocatable),
            ..NodeStatus::default()
        }),
    }
}

/// `pod` as the API server sends it, decoded the way the watcher decodes it and trimmed.
pub fn decode_as_store_does(pod: &Pod) -> jobcarbon_kube::SlimPod {
    let json = serde_json::to_vec(pod).unwrap_or_default();
    let mut slim: jobcarbon_kube::SlimPod = serde_json::from_slice(&json).unwrap_or_default();
    jobcarbon_kube::trim_pod(&mut slim);
    slim
}

/// A realistic training pod as the API server stores it (labels, owner, requests, env, volumes).
pub fn training_pod(index: usize, node_name: &str) -> Pod {
    let job = format!("train-{}", index / 4);
    let mut pod = PodBuilder::new(
        &format!("team-{}", index % 50),
        &format!("{job}-{index:06x}"),
    )
    .label("jobcarbon.io/phase", "training")
    .label("jobcarbon.io/product", &format!("model-{}", index % 200))
    .label("batch.kubernetes.io/job-name", &job)
    .label(
        "batch.kubernetes.io/controller-uid",
        "d142880e-8427-4bee-8129-75fd55911ea2",
    )
    .annotation(
        "kubectl.kubernetes.io/last-applied-configuration",
        &"{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\"}".repeat(8),
    )
    .owner("Job", &job)
    .node(node_name)
    .container_requests("8", "64Gi", 1)
    .build_full();
    if let Some(spec) = pod.spec.as_mut() {
        for c in &mut spec.containers {
            c.env = Some(
                (0..12)
                    .map(|i| k8s_openapi::api::core::v1::EnvVar {
                        name: format!("VAR_{i}"),
                        value: Some(format!("value-{i}-{index}")),
                        ..Default::default()
                    })
                    .collect(),
            );
        }
        spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: "kube-api-access".into(),
            ..Default::default()
        }]);
    }
    pod
}

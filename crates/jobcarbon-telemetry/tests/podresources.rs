//! The pod-resources client against a fake kubelet (a tonic server on a temp Unix socket)
//! serving the fixture's `List` answer, and the node agent on top of it with a fake GPU
//! backend: two GPUs, one shared by two pods, one idle.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::{Seconds, Watts};
use jobcarbon_telemetry::NodeAgent;
use jobcarbon_telemetry::podresources::v1;
use jobcarbon_telemetry::podresources::v1::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use jobcarbon_telemetry::{FakeGpu, FakeGpuBackend};
use jobcarbon_telemetry::{PodResourcesClient, PodResourcesError};
use serde_json::Value;
use std::sync::Arc;
use tokio_stream::wrappers::UnixListenerStream;

const GPU0: &str = "GPU-a84bba07-931d-b925-306a-0799dc6ebd71";
const GPU1: &str = "GPU-8b8c764d-1c0a-cb3d-ea13-519a60a077bb";

fn fixture() -> Value {
    let text = jobcarbon_testkit::fixture("kubelet/podresources-v1-list-2xA100.json");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// proto3 canonical JSON (as grpcurl prints it) → the generated message.
fn from_json(v: &Value) -> v1::ListPodResourcesResponse {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let pods = v["podResources"].as_array().cloned().unwrap_or_default();
    v1::ListPodResourcesResponse {
        pod_resources: pods
            .iter()
            .map(|p| v1::PodResources {
                name: s(p, "name"),
                namespace: s(p, "namespace"),
                containers: p["containers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| v1::ContainerResources {
                        name: s(c, "name"),
                        devices: c["devices"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|d| v1::ContainerDevices {
                                resource_name: s(d, "resourceName"),
                                device_ids: strings(&d["deviceIds"]),
                                topology: Some(v1::TopologyInfo {
                                    nodes: d["topology"]["nodes"]
                                        .as_array()
                                        .cloned()
                                        .unwrap_or_default()
                                        .iter()
                                        .map(|n| v1::NumaNode {
                                            id: n["ID"]
                                                .as_str()
                                                .and_then(|x| x.parse().ok())
                                                .unwrap_or(0),
                                        })
                                        .collect(),
                                }),
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
    }
}

struct FakeKubelet {
    answer: v1::ListPodResourcesResponse,
}

#[tonic::async_trait]
impl PodResourcesLister for FakeKubelet {
    async fn list(
        &self,
        _: tonic::Request<v1::ListPodResourcesRequest>,
    ) -> Result<tonic::Response<v1::ListPodResourcesResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }
    async fn get_allocatable_resources(
        &self,
        _: tonic::Request<v1::AllocatableResourcesRequest>,
    ) -> Result<tonic::Response<v1::AllocatableResourcesResponse>, tonic::Status> {
        // What the kubelet can allocate: the devices of the List answer, as on a full node.
        let devices = self
            .answer
            .pod_resources
            .iter()
            .flat_map(|p| &p.containers)
            .flat_map(|c| c.devices.clone())
            .collect();
        Ok(tonic::Response::new(v1::AllocatableResourcesResponse {
            devices,
            ..Default::default()
        }))
    }
    async fn get(
        &self,
        _: tonic::Request<v1::GetPodResourcesRequest>,
    ) -> Result<tonic::Response<v1::GetPodResourcesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }
}

/// Starts a fake kubelet on `dir/kubelet.sock`.
fn serve(dir: &std::path::Path, answer: v1::ListPodResourcesResponse) -> std::path::PathBuf {
    let socket = dir.join("kubelet.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind socket");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(PodResourcesListerServer::new(FakeKubelet { answer }))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
    });
    socket
}

#[tokio::test]
async fn lists_gpu_assignments_from_fake_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(dir.path(), from_json(&fixture()));
    let client = PodResourcesClient::new(&socket);
    assert_eq!(
        client.allocatable_gpus().await.unwrap(),
        2,
        "both A100s allocatable"
    );
    let raw = client.list().await.unwrap();
    assert_eq!(raw.pod_resources.len(), 4);
    let gpus = client.gpu_assignments().await.unwrap();
    assert_eq!(gpus.len(), 2);
    let trainer = gpus.iter().find(|a| a.device_id == GPU0).unwrap();
    assert_eq!(
        (
            trainer.namespace.as_str(),
            trainer.pod.as_str(),
            trainer.container.as_str()
        ),
        ("ml-training", "bert-base-train-7x9kq", "trainer")
    );
    let server = gpus.iter().find(|a| a.device_id == GPU1).unwrap();
    assert_eq!(server.container, "server");
}

#[tokio::test]
async fn missing_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = PodResourcesClient::new(dir.path().join("absent.sock"));
    let err = client.list().await.unwrap_err();
    assert!(matches!(err, PodResourcesError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("absent.sock"), "{err}");
}

#[tokio::test]
async fn node_agent_two_gpus_one_shared_by_two_pods_one_idle() {
    // GPU 0 time-sliced between the trainer and a second pod (replica ids `::0`, `::1`);
    // GPU 1 held by nobody.
    let mut answer = from_json(&fixture());
    answer
        .pod_resources
        .retain(|p| p.name != "bert-base-serve-6d8f7b9c5d-k2m4x");
    for p in &mut answer.pod_resources {
        for c in &mut p.containers {
            for d in &mut c.devices {
                for id in &mut d.device_ids {
                    *id = format!("{id}::0");
                }
            }
        }
    }
    answer.pod_resources.push(v1::PodResources {
        name: "eval-0".into(),
        namespace: "ml-training".into(),
        containers: vec![v1::ContainerResources {
            name: "eval".into(),
            devices: vec![v1::ContainerDevices {
                resource_name: "nvidia.com/gpu".into(),
                device_ids: vec![format!("{GPU0}::1")],
                topology: None,
            }],
            ..Default::default()
        }],
    });
    let dir = tempfile::tempdir().unwrap();
    let client = PodResourcesClient::new(serve(dir.path(), answer));

    let fake = Arc::new(FakeGpuBackend::new(vec![
        FakeGpu::new(GPU0, "NVIDIA A100-SXM4-80GB", Watts(352.811)),
        FakeGpu::new(GPU1, "NVIDIA A100-SXM4-80GB", Watts(61.02)),
    ]));
    let mut agent = NodeAgent::new(Box::new(fake.clone()));
    let assignments = client.gpu_assignments().await.unwrap();
    agent.tick(&assignments, Seconds(0.0)).unwrap();
    fake.advance(30.0);
    let summary = agent.tick(&assignments, Seconds(30.0)).unwrap();
    assert_eq!(summary.gpus, 2);
    let energy = agent.energy();
    let of = |pod: &str, uuid: &str| -> f64 {
        energy
            .iter()
            .filter(|(l, _)| l.pod == pod && l.gpu_uuid == uuid)
            .map(|(_, e)| e.value())
            .sum()
    };
    // 352.811 W × 30 s = 10584.33 J, split in two; NVML's mJ resolution floors the counter.
    assert!((of("bert-base-train-7x9kq", GPU0) - 10584.33 / 2.0).abs() < 1e-3);
    assert!((of("eval-0", GPU0) - 10584.33 / 2.0).abs() < 1e-3);
    // 61.02 W × 30 s on the idle GPU, under empty pod labels.
    assert!((of("", GPU1) - 1830.6).abs() < 1e-3);
    let total: f64 = energy.iter().map(|(_, e)| e.value()).sum();
    assert!((total - summary.energy.value()).abs() < 1e-6);
    assert_eq!(energy.len(), 3);
    assert!(
        energy
            .iter()
            .all(|(l, _)| l.gpu_model == "NVIDIA A100-SXM4-80GB")
    );
}

//! kubelet pod-resources v1 client over its Unix socket: which container holds which GPU.
//!
//! `List` answers pod → container → devices; for NVIDIA the device ids are GPU UUIDs
//! (`nvidia.com/gpu`) or MIG UUIDs (`nvidia.com/mig-*`). With time-slicing the device plugin
//! hands out replicas `GPU-…::N`; the replica suffix is stripped, so every pod sharing a GPU
//! maps to the same UUID. The answer carries no pod UID (pods are keyed by namespace/name).

use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Generated from the vendored `proto/podresources/v1/api.proto`.
// Generated code: its long functions are tonic's, not ours.
#[allow(clippy::all, clippy::too_many_lines, missing_docs)]
pub mod v1 {
    tonic::include_proto!("v1");
}

/// The kubelet's default socket.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// Why pod-resources could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    /// The socket cannot be reached.
    #[error("pod-resources socket {path}: cannot connect: {reason}")]
    Connect {
        /// The socket path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The `List` call failed.
    #[error("pod-resources socket {path}: List failed: {reason}")]
    List {
        /// The socket path.
        path: String,
        /// gRPC's status.
        reason: String,
    },
}

impl PodResourcesError {
    /// Metric label value.
    pub fn kind(&self) -> &'static str {
        match self {
            PodResourcesError::Connect { .. } => "connect",
            PodResourcesError::List { .. } => "list",
        }
    }
}

/// One GPU (or MIG instance) held by one container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuAssignment {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container holding the device.
    pub container: String,
    /// `nvidia.com/gpu`, `nvidia.com/mig-1g.10gb`, …
    pub resource_name: String,
    /// GPU or MIG UUID, replica suffix removed.
    pub device_id: String,
}

/// Resource names that carry NVIDIA GPUs.
pub(crate) fn is_gpu_resource(resource_name: &str) -> bool {
    resource_name == "nvidia.com/gpu"
        || resource_name.starts_with("nvidia.com/mig-")
        || resource_name == "nvidia.com/gpu.shared"
}

/// `GPU-…::3` → `GPU-…` (time-slicing replicas of one GPU).
pub(crate) fn strip_replica(device_id: &str) -> &str {
    device_id.split_once("::").map_or(device_id, |(id, _)| id)
}

/// The GPU assignments in a `List` answer.
pub(crate) fn gpu_assignments(response: &v1::ListPodResourcesResponse) -> Vec<GpuAssignment> {
    let mut out = Vec::new();
    for pod in &response.pod_resources {
        for container in &pod.containers {
            for devices in &container.devices {
                if !is_gpu_resource(&devices.resource_name) {
                    continue;
                }
                for id in &devices.device_ids {
                    out.push(GpuAssignment {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        container: container.name.clone(),
                        resource_name: devices.resource_name.clone(),
                        device_id: strip_replica(id).to_owned(),
                    });
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A pod-resources client bound to one socket path; connects per call, so a kubelet restart
/// (which recreates the socket) needs nothing special.
#[derive(Debug, Clone)]
pub struct PodResourcesClient {
    path: PathBuf,
    timeout: Duration,
}

impl PodResourcesClient {
    /// A client for the socket at `path`, with a 5 s timeout.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The socket path (for logs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn channel(&self) -> Result<Channel, PodResourcesError> {
        let path = self.path.clone();
        // The URI is required by the API but unused: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://kubelet.invalid").timeout(self.timeout);
        endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| PodResourcesError::Connect {
                path: self.path.display().to_string(),
                reason: crate::prom::error_chain(&e),
            })
    }

    async fn client(
        &self,
    ) -> Result<v1::pod_resources_lister_client::PodResourcesListerClient<Channel>, PodResourcesError>
    {
        let channel = tokio::time::timeout(self.timeout, self.channel())
            .await
            .map_err(|_| PodResourcesError::Connect {
                path: self.path.display().to_string(),
                reason: format!("timed out after {:?}", self.timeout),
            })??;
        Ok(v1::pod_resources_lister_client::PodResourcesListerClient::new(channel))
    }

    fn call_error(&self, status: &tonic::Status) -> PodResourcesError {
        PodResourcesError::List {
            path: self.path.display().to_string(),
            reason: format!("{:?}: {}", status.code(), status.message()),
        }
    }

    /// Calls `List`.
    pub async fn list(&self) -> Result<v1::ListPodResourcesResponse, PodResourcesError> {
        self.client()
            .await?
            .list(v1::ListPodResourcesRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_error(&status))
    }

    /// GPUs (and MIG instances) the kubelet can allocate on this node
    /// (`GetAllocatableResources`), to tell "no GPU" from "GPUs the agent cannot see".
    pub async fn allocatable_gpus(&self) -> Result<usize, PodResourcesError> {
        let answer = self
            .client()
            .await?
            .get_allocatable_resources(v1::AllocatableResourcesRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_error(&status))?;
        Ok(answer
            .devices
            .iter()
            .filter(|d| is_gpu_resource(&d.resource_name))
            .map(|d| d.device_ids.len())
            .sum())
    }

    /// `List`, reduced to GPU assignments.
    pub async fn gpu_assignments(&self) -> Result<Vec<GpuAssignment>, PodResourcesError> {
        Ok(gpu_assignments(&self.list().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_and_resources() {
        assert_eq!(strip_replica("GPU-a::3"), "GPU-a");
        assert_eq!(strip_replica("MIG-b"), "MIG-b");
        assert!(is_gpu_resource("nvidia.com/mig-1g.10gb"));
        assert!(!is_gpu_resource("example.com/fpga"));
        let resp = v1::ListPodResourcesResponse {
            pod_resources: vec![v1::PodResources {
                name: "p".into(),
                namespace: "n".into(),
                containers: vec![v1::ContainerResources {
                    name: "c".into(),
                    devices: vec![
                        v1::ContainerDevices {
                            resource_name: "nvidia.com/gpu".into(),
                            device_ids: vec!["GPU-a::0".into(), "GPU-a::1".into()],
                            topology: None,
                        },
                        v1::ContainerDevices {
                            resource_name: "example.com/nic".into(),
                            device_ids: vec!["x".into()],
                            topology: None,
                        },
                    ],
                    ..Default::default()
                }],
            }],
        };
        let a = gpu_assignments(&resp);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].device_id, "GPU-a");
    }
}

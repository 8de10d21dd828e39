//! Reserved resources: what a pod requests and what a node can allocate, for the
//! embodied-system share (reserved / allocatable, SCI's RR/ToR).

use crate::slim::{SlimContainer, SlimPodSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The extended resource NVIDIA's device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// MIG instances under the device plugin's mixed strategy.
pub const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";

/// CPU (cores), memory (bytes) and GPUs (devices).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
    pub gpu: f64,
}

impl Resources {
    fn from_map(map: Option<&BTreeMap<String, Quantity>>) -> Self {
        let get = |key: &str| {
            map.and_then(|m| m.get(key))
                .and_then(|q| parse_quantity(&q.0))
                .unwrap_or(0.0)
        };
        // MIG instances (`nvidia.com/mig-3g.40gb`, mixed strategy) are GPUs a pod holds too.
        let mig: f64 = map
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(MIG_RESOURCE_PREFIX))
            .filter_map(|(_, q)| parse_quantity(&q.0))
            .sum();
        Self {
            cpu: get("cpu"),
            memory: get("memory"),
            gpu: get(GPU_RESOURCE) + mig,
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            cpu: self.cpu + other.cpu,
            memory: self.memory + other.memory,
            gpu: self.gpu + other.gpu,
        }
    }

    fn max(self, other: Self) -> Self {
        Self {
            cpu: self.cpu.max(other.cpu),
            memory: self.memory.max(other.memory),
            gpu: self.gpu.max(other.gpu),
        }
    }

    /// The pod's share of a node: the largest of its CPU, memory and GPU fractions, in [0, 1].
    /// A pod that reserves a node's GPU holds the GPU's embodied carbon even when it asks for
    /// little CPU, hence the maximum rather than an average.
    pub fn share_of(&self, allocatable: &Resources) -> f64 {
        let frac = |used: f64, total: f64| {
            if total > 0.0 && used.is_finite() {
                (used / total).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        frac(self.cpu, allocatable.cpu)
            .max(frac(self.memory, allocatable.memory))
            .max(frac(self.gpu, allocatable.gpu))
    }
}

/// Effective requests the scheduler reserves for a pod: the larger of the sum over app
/// containers and the largest init container, plus pod overhead.
pub fn pod_requests(spec: Option<&SlimPodSpec>) -> Resources {
    let Some(spec) = spec else {
        return Resources::default();
    };
    let requests = |c: &SlimContainer| {
        Resources::from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
    };
    let app = spec
        .containers
        .iter()
        .map(requests)
        .fold(Resources::default(), Resources::add);
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(requests)
        .fold(Resources::default(), Resources::max);
    app.max(init)
        .add(Resources::from_map(spec.overhead.as_ref()))
}

/// What a node can allocate to pods (falls back to capacity where allocatable is absent).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    let capacity = status.and_then(|s| s.capacity.as_ref());
    Resources::from_map(allocatable.or(capacity))
}

/// Parse a Kubernetes resource quantity (`8`, `500m`, `64Gi`, `1e9`, `1.5k`) to a number in
/// base units. `None` for anything malformed: untrusted input is ignored, never trusted.
pub fn parse_quantity(input: &str) -> Option<f64> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp.get(1..)?.parse::<i32>().ok()?),
        _ => return None,
    };
    let value = number * factor;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("8"), Some(8.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("64Gi"), Some(64.0 * 1024f64.powi(3)));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1.5k"), Some(1500.0));
        assert_eq!(parse_quantity("12Zi"), None);
        assert_eq!(parse_quantity("-1"), None);
        assert_eq!(parse_quantity("e"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn share_is_the_largest_fraction() {
        let node = Resources {
            cpu: 96.0,
            memory: 1e12,
            gpu: 8.0,
        };
        let pod = Resources {
            cpu: 8.0,
            memory: 1e11,
            gpu: 2.0,
        };
        assert_eq!(pod.share_of(&node), 0.25);
        assert_eq!(pod.share_of(&Resources::default()), 0.0);
        let greedy = Resources {
            cpu: 1000.0,
            ..Resources::default()
        };
        assert_eq!(greedy.share_of(&node), 1.0);
    }
}

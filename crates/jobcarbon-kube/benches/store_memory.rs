//! Memory at scale: 100,000 pods on 5,000 nodes through the reflector store (trimmed as the
//! watcher trims them) and the index. Prints peak RSS and bytes per pod.
//!
//! `cargo bench -p jobcarbon-kube --bench store_memory` (optionally `-- PODS NODES`).

#[path = "../tests/support/mod.rs"]
mod support;

use jobcarbon_kube::AttributionConfig;
use jobcarbon_kube::SlimPod;
use jobcarbon_kube::trim_node;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

/// (current RSS, peak RSS) in bytes from /proc/self/status.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let pods = args.first().copied().unwrap_or(100_000);
    let nodes = args.get(1).copied().unwrap_or(5_000);

    let (base, _) = rss();
    let (node_store, mut node_writer) = reflector::store::<Node>();
    let (pod_store, mut pod_writer) = reflector::store::<SlimPod>();
    // The watcher's initial list: objects arrive one by one, are trimmed, buffered, then swapped in.
    node_writer.apply_watcher_event(&Event::Init);
    for i in 0..nodes {
        let mut n = support::node(
            &format!("node-{i:05}"),
            "96",
            "1000Gi",
            8,
            &[
                ("topology.kubernetes.io/region", "us-east-1"),
                ("node.kubernetes.io/instance-type", "p4d.24xlarge"),
                ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"),
                ("kubernetes.io/hostname", &format!("node-{i:05}")),
            ],
        );
        trim_node(&mut n);
        node_writer.apply_watcher_event(&Event::InitApply(n));
    }
    node_writer.apply_watcher_event(&Event::InitDone);
    pod_writer.apply_watcher_event(&Event::Init);
    for i in 0..pods {
        // Decoded from the JSON an API server sends, as the watcher does.
        let full = support::training_pod(i, &format!("node-{:05}", i % nodes.max(1)));
        let p = support::decode_as_store_does(&full);
        drop(full);
        pod_writer.apply_watcher_event(&Event::InitApply(p));
    }
    pod_writer.apply_watcher_event(&Event::InitDone);
    let (stored, stored_peak) = rss();

    let pod_state = pod_store.state();
    let node_state = node_store.state();
    let (snapshot, _) = AttributionConfig::default().index(
        pod_state.iter().map(|p| &**p),
        node_state.iter().map(|n| &**n),
    );
    let (_, peak) = rss();
    assert_eq!(snapshot.pods.len(), pods);

    let store_bytes = stored.saturating_sub(base);
    println!("kube store memory: {pods} pods on {nodes} nodes (SlimPod, trimmed)");
    println!("  RSS before stores          {:8.1} MiB", mib(base));
    println!("  RSS with stores            {:8.1} MiB", mib(stored));
    println!("  peak RSS while listing     {:8.1} MiB", mib(stored_peak));
    println!("  peak RSS incl. a snapshot  {:8.1} MiB", mib(peak));
    println!(
        "  store bytes per pod        {:8.0} B  (RSS growth / pods, nodes included)",
        store_bytes as f64 / pods.max(1) as f64
    );
}

//! Any pod or node JSON, decoded and resolved the way the watcher does: no panic, and the
//! facts the ledger books by are finite (reserved share, creation time, CPUs).
#![no_main]
use jobcarbon_kube::{AttributionConfig, SlimPod};
use jobcarbon_kube::{trim_node, trim_pod};
use k8s_openapi::api::core::v1::{Node, Pod};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = AttributionConfig::default();
    let mut nodes: Vec<Node> = Vec::new();
    if let Ok(mut node) = serde_json::from_slice::<Node>(data) {
        trim_node(&mut node);
        if let Some(facts) = config.node_facts(&node) {
            assert!(facts.cpus.is_finite() && facts.cpus >= 0.0, "{facts:?}");
        }
        nodes.push(node);
    }
    if let Ok(pod) = serde_json::from_slice::<Pod>(data) {
        let mut slim = SlimPod::from(pod);
        trim_pod(&mut slim);
        let (snapshot, _issues) = config.index([&slim], &nodes);
        for facts in &snapshot.pods {
            assert!(
                facts.reserved_share.is_finite() && facts.reserved_share >= 0.0,
                "{facts:?}"
            );
            assert!(
                facts.created.is_none_or(|t| t.value().is_finite()),
                "{facts:?}"
            );
        }
    }
});

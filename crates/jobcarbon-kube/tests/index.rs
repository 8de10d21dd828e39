//! The pure attribution layer with fixture builders and no API server at all.

mod support;

use jobcarbon_core::Phase;
use jobcarbon_kube::SlimPod;
use jobcarbon_kube::trim_node;
use jobcarbon_kube::{AttributionConfig, LabelIssue, LabelSchema, NodeTable, PlatformSelector};
use jobcarbon_kube::{PHASE_LABEL, PRODUCT_LABEL, is_valid_product_name};
use proptest::prelude::*;
use std::collections::BTreeMap;
use support::{PodBuilder, decode_as_store_does, node, training_pod};

fn gpu_node() -> k8s_openapi::api::core::v1::Node {
    node(
        "n1",
        "96",
        "1000Gi",
        8,
        &[
            ("topology.kubernetes.io/region", "eu-west-1"),
            ("node.kubernetes.io/instance-type", "p4d.24xlarge"),
            ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"),
        ],
    )
}

#[test]
fn index_resolves_pods_and_counts_every_issue() {
    let nodes = [gpu_node()];
    let pods = [
        PodBuilder::new("ml", "train-0")
            .label(PHASE_LABEL, "training")
            .label(PRODUCT_LABEL, "llama")
            .owner("Job", "train")
            .node("n1")
            .container_requests("24", "100Gi", 2)
            .build(),
        PodBuilder::new("ml", "huge")
            .label(PHASE_LABEL, &"x".repeat(1 << 20))
            .node("n1")
            .build(),
        PodBuilder::new("ml", "quotes")
            .label(PHASE_LABEL, "\"training\"\n")
            .label(PRODUCT_LABEL, "llama\"; drop")
            .build(),
        PodBuilder::new("ml", "unknown-phase")
            .label(PHASE_LABEL, "pretraining")
            .build(),
        PodBuilder::new("ml", "no-product")
            .label(PHASE_LABEL, "inference")
            .build(),
        PodBuilder::new("ml", "elsewhere").node("gone").build(),
        PodBuilder::new("", "no-namespace").build(),
    ];
    let (snapshot, issues) = AttributionConfig::default().index(&pods, &nodes);
    assert_eq!(snapshot.pods.len(), 6);
    assert_eq!(issues.pods_without_identity, 1);
    assert_eq!(issues.pods_on_unknown_nodes, 1);
    assert_eq!(issues.labels[&LabelIssue::InvalidPhase], 3);
    assert_eq!(issues.labels[&LabelIssue::InvalidProduct], 1);
    assert_eq!(issues.labels[&LabelIssue::MissingProduct], 1);
    let by_name: BTreeMap<&str, _> = snapshot
        .pods
        .iter()
        .map(|p| (p.key.pod.as_str(), p))
        .collect();
    let train = by_name["train-0"];
    assert_eq!(train.phase, Phase::Training);
    assert_eq!(train.workload.workload, "Job/train");
    assert_eq!(train.reserved_share, 0.25);
    assert_eq!(by_name["huge"].phase, Phase::Invalid);
    assert_eq!(by_name["quotes"].phase, Phase::Invalid);
    assert_eq!(by_name["quotes"].product, None);
    assert_eq!(by_name["unknown-phase"].phase, Phase::Invalid);
    assert_eq!(by_name["elsewhere"].phase, Phase::Unlabelled);
    assert_eq!(by_name["elsewhere"].reserved_share, 0.0);
    assert_eq!(by_name["elsewhere"].workload.workload, "Pod/elsewhere");
    // Sorted by key, so snapshots compare stably between intervals.
    let keys: Vec<_> = snapshot.pods.iter().map(|p| p.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    let n = &snapshot.nodes[0];
    assert_eq!(n.region.as_deref(), Some("eu-west-1"));
    assert_eq!(n.instance_type.as_deref(), Some("p4d.24xlarge"));
    assert_eq!(
        (n.gpu_count, n.gpu_model.as_deref()),
        (8, Some("NVIDIA-A100-SXM4-40GB"))
    );
}

#[test]
fn platform_pods_and_custom_region_label() {
    let config = AttributionConfig {
        platform: PlatformSelector {
            namespaces: ["kube-system".to_owned(), "monitoring".to_owned()].into(),
            match_labels: [("jobcarbon.io/platform".to_owned(), "true".to_owned())].into(),
        },
        node_region_label: "example.com/dc".into(),
        labels: LabelSchema::default(),
        ..AttributionConfig::default()
    };
    let nodes = [node("n1", "8", "32Gi", 0, &[("example.com/dc", "dallas")])];
    let pods = [
        PodBuilder::new("kube-system", "coredns").build(),
        PodBuilder::new("ml", "ingress")
            .label("jobcarbon.io/platform", "true")
            .build(),
        PodBuilder::new("ml", "job").build(),
    ];
    let (snapshot, _) = config.index(&pods, &nodes);
    let platform: Vec<bool> = snapshot.pods.iter().map(|p| p.platform).collect();
    // Sorted: kube-system/coredns, ml/ingress, ml/job.
    assert_eq!(platform, [true, true, false]);
    assert_eq!(snapshot.nodes[0].region.as_deref(), Some("dallas"));
    assert_eq!(snapshot.nodes[0].gpu_count, 0);
}

#[test]
fn reserved_share_counts_init_containers_and_pending_pods_do_not_run() {
    let table = NodeTable::new([&gpu_node()]);
    let pod = PodBuilder::new("ml", "p")
        .node("n1")
        .container_requests("12", "10Gi", 0)
        .container_requests("12", "10Gi", 0)
        .init_container_requests("48", "1Gi", 0)
        .phase("Pending")
        .build();
    let resolved = AttributionConfig::default()
        .resolve_pod(&pod, &table, &Default::default())
        .unwrap_or_else(|| panic!("unresolved"));
    assert_eq!(resolved.facts.reserved_share, 0.5);
    assert!(!resolved.facts.running);
}

#[test]
fn slim_pods_keep_every_fact_attribution_reads() {
    let nodes = [gpu_node()];
    let table = NodeTable::new(&nodes);
    let config = AttributionConfig::default();
    for i in 0..20 {
        let full = training_pod(i, "n1");
        let decoded = decode_as_store_does(&full);
        let converted = SlimPod::from(full);
        assert_eq!(decoded, converted);
        assert!(decoded.metadata.annotations.is_none());
        assert!(decoded.metadata.managed_fields.is_none());
        let facts = config
            .resolve_pod(&decoded, &table, &Default::default())
            .unwrap_or_else(|| panic!("unresolved"));
        assert_eq!(facts.facts.phase, Phase::Training);
        assert_eq!(facts.facts.reserved_share, 0.125);
        assert_eq!(
            facts.facts.workload.workload,
            format!("Job/train-{}", i / 4)
        );
    }
    let mut n = gpu_node();
    let before = config.node_facts(&n);
    trim_node(&mut n);
    assert_eq!(config.node_facts(&n), before);
}

proptest! {
    #[test]
    fn label_reading_never_trusts_or_panics(phase in any::<String>(), product in any::<String>()) {
        let labels: BTreeMap<String, String> =
            [(PHASE_LABEL.to_owned(), phase.clone()), (PRODUCT_LABEL.to_owned(), product.clone())].into();
        let reading = LabelSchema::default().read(Some(&labels));
        match phase.parse::<Phase>() {
            Ok(p) => prop_assert_eq!(reading.phase, p),
            Err(_) => {
                prop_assert_eq!(reading.phase, Phase::Invalid);
                prop_assert!(reading.issues.contains(&LabelIssue::InvalidPhase));
            }
        }
        if let Some(p) = &reading.product {
            prop_assert!(is_valid_product_name(p));
            prop_assert_eq!(p, &product);
        } else if !product.is_empty() {
            prop_assert!(reading.issues.contains(&LabelIssue::InvalidProduct));
        }
    }

    #[test]
    fn known_phases_with_valid_products_read_clean(
        phase in prop::sample::select(Phase::LABELLED.to_vec()),
        product in "[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?",
    ) {
        let labels: BTreeMap<String, String> =
            [(PHASE_LABEL.to_owned(), phase.as_str().to_owned()), (PRODUCT_LABEL.to_owned(), product.clone())].into();
        let reading = LabelSchema::default().read(Some(&labels));
        prop_assert_eq!(reading.phase, phase);
        prop_assert_eq!(reading.product, Some(product));
        prop_assert!(reading.issues.is_empty());
    }
}

//! Pods rebuilt from kube-state-metrics samples resolve to the same facts as the same pods
//! read from the API server: the fixture `kube-state-metrics/ksm-v2-pods-gpu-node.prom` is
//! what KSM v2 exposes for the pods of `kube/podlist-gpu-node.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jobcarbon_core::{PodFacts, PodKey};
use jobcarbon_kube::ParentOwners;
use jobcarbon_kube::ksm::{KsmSamples, KsmSeries, ksm_label_name, pods_from_ksm};
use jobcarbon_kube::{AttributionConfig, NodeTable, SlimPod};
use jobcarbon_testkit::fixture;
use jobcarbon_testkit::prometheus::exposition_samples;
use std::collections::BTreeMap;
use support::node;

fn samples(text: &str) -> KsmSamples {
    let mut samples = KsmSamples::default();
    for (name, labels, value) in exposition_samples(text).unwrap() {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(family) = samples.family_mut(&name) {
            family.push(KsmSeries::new(&labels, value));
        }
    }
    samples
}

fn gpu_node() -> k8s_openapi::api::core::v1::Node {
    node("gpu-node-a1", "96", "1152Gi", 2, &[])
}

fn resolve(pods: &[SlimPod]) -> BTreeMap<PodKey, PodFacts> {
    let nodes = [gpu_node()];
    let table = NodeTable::new(nodes.iter());
    let config = AttributionConfig::default();
    pods.iter()
        .filter_map(|p| config.resolve_pod(p, &table, &ParentOwners::default()))
        .map(|r| (r.facts.key.clone(), r.facts))
        .collect()
}

#[test]
fn ksm_label_names_are_sanitised_like_kube_state_metrics() {
    assert_eq!(
        ksm_label_name("jobcarbon.io/phase"),
        "label_jobcarbon_io_phase"
    );
    assert_eq!(
        ksm_label_name("pod-template-hash"),
        "label_pod_template_hash"
    );
    assert_eq!(
        ksm_label_name("app.kubernetes.io/name"),
        "label_app_kubernetes_io_name"
    );
    // KSM's toSnakeCase: `([a-z0-9])([A-Z])` → `$1_$2`, lower case.
    assert_eq!(ksm_label_name("myLabelKey"), "label_my_label_key");
}

#[test]
fn pods_from_ksm_resolve_like_the_same_pods_from_the_api_server() {
    let ksm = samples(&fixture("kube-state-metrics/ksm-v2-pods-gpu-node.prom"));
    let keys = AttributionConfig::default().label_keys();
    let from_ksm = resolve(&pods_from_ksm(&ksm, &keys));

    let list: serde_json::Value =
        serde_json::from_str(&fixture("kube/podlist-gpu-node.json")).unwrap();
    let api_pods: Vec<SlimPod> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::from_value(p.clone()).unwrap())
        .collect();
    let from_api = resolve(&api_pods);

    assert_eq!(from_ksm.len(), 4);
    assert_eq!(
        from_ksm.keys().collect::<Vec<_>>(),
        from_api.keys().collect::<Vec<_>>()
    );
    for (key, api) in &from_api {
        let ksm = &from_ksm[key];
        assert_eq!(ksm.uid, api.uid, "{key:?} uid");
        assert_eq!(ksm.workload, api.workload, "{key:?} workload");
        assert_eq!(ksm.phase, api.phase, "{key:?} phase");
        assert_eq!(ksm.product, api.product, "{key:?} product");
        assert_eq!(ksm.node, api.node, "{key:?} node");
        assert_eq!(ksm.running, api.running, "{key:?} running");
        assert_eq!(ksm.created, api.created, "{key:?} created");
        assert_eq!(ksm.gpus, api.gpus, "{key:?} gpus");
        assert!(
            (ksm.reserved_share - api.reserved_share).abs() < 1e-12,
            "{key:?} reserved share {} vs {}",
            ksm.reserved_share,
            api.reserved_share
        );
    }
    // The ReplicaSet's pod books to its Deployment through the allow-listed hash label.
    let serve = &from_ksm[&PodKey::new("ml-serving", "bert-base-serve-6d8f7b9c5d-k2m4x")];
    assert_eq!(serve.workload.workload, "Deployment/bert-base-serve");
}

#[test]
fn without_the_allow_list_pods_keep_owner_and_node_but_no_phase() {
    // KSM's default: `kube_pod_labels` carries no `label_*` at all.
    let text: String = fixture("kube-state-metrics/ksm-v2-pods-gpu-node.prom")
        .lines()
        .map(|l| match l.strip_prefix("kube_pod_labels{") {
            Some(rest) => {
                let kept: Vec<&str> = rest
                    .trim_end_matches("} 1")
                    .split(',')
                    .filter(|kv| !kv.starts_with("label_"))
                    .collect();
                format!("kube_pod_labels{{{}}} 1", kept.join(","))
            }
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let ksm = samples(&text);
    let facts = resolve(&pods_from_ksm(
        &ksm,
        &AttributionConfig::default().label_keys(),
    ));
    let train = &facts[&PodKey::new("ml-training", "bert-base-train-7x9kq")];
    assert_eq!(train.workload.workload, "Job/bert-base-train");
    assert_eq!(train.phase, jobcarbon_core::Phase::Unlabelled);
    assert_eq!(train.product, None);
    assert_eq!(train.node.as_deref(), Some("gpu-node-a1"));
    // No hash label: the pod stays with its ReplicaSet.
    let serve = &facts[&PodKey::new("ml-serving", "bert-base-serve-6d8f7b9c5d-k2m4x")];
    assert_eq!(
        serve.workload.workload,
        "ReplicaSet/bert-base-serve-6d8f7b9c5d"
    );
}

#[test]
fn exported_labels_win_and_none_owners_and_other_uids_are_ignored() {
    // Scraped without honor_labels: KSM's namespace/pod are `exported_*`, the target's win
    // the plain names. A bare pod has `<none>` owners. A same-named pod of another uid (a
    // StatefulSet pod recreated in the window) must not lend its labels.
    let ksm = KsmSamples {
        info: vec![KsmSeries::new(
            &[
                ("namespace", "monitoring"),
                ("pod", "kube-state-metrics-0"),
                ("exported_namespace", "scratch"),
                ("exported_pod", "adhoc"),
                ("uid", "u1"),
                ("node", "gpu-node-a1"),
                ("created_by_kind", "<none>"),
                ("created_by_name", "<none>"),
            ],
            1.0,
        )],
        labels: vec![KsmSeries::new(
            &[
                ("exported_namespace", "scratch"),
                ("exported_pod", "adhoc"),
                ("uid", "u0"),
                ("label_jobcarbon_io_phase", "training"),
            ],
            1.0,
        )],
        phase: vec![
            KsmSeries::new(
                &[
                    ("exported_namespace", "scratch"),
                    ("exported_pod", "adhoc"),
                    ("uid", "u1"),
                    ("phase", "Succeeded"),
                ],
                1.0,
            ),
            KsmSeries::new(
                &[
                    ("exported_namespace", "scratch"),
                    ("exported_pod", "adhoc"),
                    ("uid", "u1"),
                    ("phase", "Running"),
                ],
                0.0,
            ),
        ],
        ..KsmSamples::default()
    };
    let facts = resolve(&pods_from_ksm(
        &ksm,
        &AttributionConfig::default().label_keys(),
    ));
    let pod = &facts[&PodKey::new("scratch", "adhoc")];
    assert_eq!(pod.workload.workload, "Pod/adhoc");
    assert_eq!(pod.phase, jobcarbon_core::Phase::Unlabelled);
    assert!(!pod.running);
    assert_eq!(facts.len(), 1);
}

//! Energy where there is no meter, end to end: a real Prometheus with the kubelet's cAdvisor
//! series (fixture) for a cloud VM without RAPL and a bare-metal node that Kepler meters, the
//! ledger with the config's own source mapping (`energy.cpu: auto`), and the exporter. The VM's
//! pod gets CCF-estimated CPU, memory and idle energy labelled `source="estimated"`; the metered
//! node's pod gets Kepler's energy only — no node is counted by both paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use jobcarbon_core::{ClusterSnapshot, Component, NodeFacts, Phase, PodFacts, PodKey, Seconds};
use jobcarbon_exporter::{Format, encode_metrics};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{ClusterError, ClusterSource, Config, Ledger, Sources};
use jobcarbon_telemetry::prom::{PromClient, PromConfig};
use jobcarbon_testkit::fixture;
use jobcarbon_testkit::prometheus::{History, PromServer, unix_now};
use std::collections::BTreeMap;
use std::time::Duration;

struct TwoNodes;

fn node(name: &str, instance_type: &str, cpus: f64) -> NodeFacts {
    NodeFacts {
        name: name.to_owned(),
        region: None,
        instance_type: Some(instance_type.to_owned()),
        gpu_count: 0,
        gpu_model: None,
        labels: BTreeMap::from([(
            "node.kubernetes.io/instance-type".to_owned(),
            instance_type.to_owned(),
        )]),
        cpus,
    }
}

#[async_trait]
impl ClusterSource for TwoNodes {
    async fn snapshot(&self, _at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        Ok(ClusterSnapshot {
            pods: vec![
                PodFacts::new("etl", "prep-shards-4kq8n")
                    .workload("Job", "prep-shards")
                    .phase(Phase::DataPrep)
                    .node("vm-1")
                    .created(Seconds(0.0)),
                PodFacts::new("ml-training", "bert-base-train-7x9kq")
                    .workload("Job", "bert-base-train")
                    .phase(Phase::Training)
                    .node("metal-1")
                    .created(Seconds(0.0)),
            ],
            nodes: vec![
                node("vm-1", "m5.2xlarge", 8.0),
                node("metal-1", "metal", 64.0),
            ],
            ..Default::default()
        })
    }
}

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: expected {expected}, got {actual}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_pods_are_estimated_metered_pods_are_not_counted_twice() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let h = history(t0, t1);
    let prom = tokio::task::spawn_blocking(move || PromServer::builder().history(&h).start())
        .await
        .unwrap()
        .unwrap();
    let config = Config::parse(
        &format!(
            "interval: 60s\nprometheus: {{url: \"{}\"}}\nenergy: {{kepler: v2, gpu: off, cpu: auto, nodeIdle: by-energy}}\nsystems: []\n",
            prom.url()
        ),
        "estimated.yaml",
    )
    .unwrap();
    let mut pc = PromConfig::new(prom.url());
    pc.timeout = Duration::from_secs(10);
    let client = PromClient::new(pc).unwrap();
    let energy = jobcarbon_ledger::sources::energy_sources(&config, &client).unwrap();
    let view = LedgerView::shared();
    let mut ledger = Ledger::new(
        config.settings(),
        Sources {
            energy: energy.sources,
            metrics: None,
            cluster: Box::new(TwoNodes),
        },
        Vec::new(),
        BTreeMap::new(),
        view.clone(),
    )
    .with_estimation(energy.estimation);
    ledger.run_interval(Seconds(t0 as f64)).await;
    ledger.run_interval(Seconds(t1 as f64)).await;

    // m5.2xlarge → Skylake, CCF 0.64–4.05 W per vCPU; memory 0.392 W/GB.
    let prep = &ledger.state().pods[&PodKey::new("etl", "prep-shards-4kq8n")];
    let cpu_seconds = 0.1 * (1600.25 + 280.2); // the pod cgroup and pause are not counted
    close(
        prep.energy[&Component::Cpu].value(),
        cpu_seconds * (4.05 - 0.64),
        "VM pod CPU",
    );
    close(
        prep.energy[&Component::Dram].value(),
        6.0 * 60.0 * 0.392,
        "VM pod memory",
    );
    close(
        prep.energy[&Component::IdleShare].value(),
        8.0 * 0.64 * 60.0,
        "VM idle, to its only pod",
    );
    let estimated: Vec<Component> = prep.estimated.iter().copied().collect();
    assert_eq!(
        estimated,
        vec![Component::Cpu, Component::Dram, Component::IdleShare]
    );

    let trainer = &ledger.state().pods[&PodKey::new("ml-training", "bert-base-train-7x9kq")];
    close(
        trainer.energy[&Component::Cpu].value(),
        500.0,
        "metered pod: Kepler only",
    );
    assert!(trainer.estimated.is_empty());
    assert!(
        !trainer.energy.contains_key(&Component::Dram),
        "no estimate on a metered node"
    );

    metrics_say_which_energy_is_estimated(&view);
}

/// cAdvisor for both nodes over `[t0, t1]`, and Kepler for metal-1 only.
fn history(t0: i64, t1: i64) -> History {
    let cadvisor = fixture("cadvisor/kubelet-cadvisor-two-nodes.prom");
    let (memory, cpu): (Vec<&str>, Vec<&str>) = cadvisor
        .lines()
        .partition(|l| l.contains("container_memory_working_set_bytes"));
    let mut h = History::new();
    // CPU counters grow by 10 % of the fixture value; working sets stay constant.
    h.exposition_at(&cpu.join("\n"), &[(t0, 0.9), (t1, 1.0)])
        .unwrap();
    h.exposition_at(&memory.join("\n"), &[(t0, 1.0), (t1, 1.0)])
        .unwrap();
    // Kepler meters metal-1 only.
    h.series(
        "kepler_pod_cpu_joules_total",
        &[
            ("pod_id", "8995efeb-a903-4050-909c-5892503e12b4"),
            ("pod_name", "bert-base-train-7x9kq"),
            ("pod_namespace", "ml-training"),
            ("zone", "package"),
            ("state", "running"),
            ("node_name", "metal-1"),
        ],
        &[(t0, 1000.0), (t1, 1500.0)],
    );
    h
}

fn metrics_say_which_energy_is_estimated(view: &jobcarbon_ledger::view::SharedView) {
    let text = encode_metrics(view, Format::PrometheusText).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("jobcarbon_workload_energy_joules_total{")
                && l.contains("workload=\"Job/prep-shards\"")
                && l.contains("component=\"cpu\"")
                && l.contains("source=\"estimated\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("jobcarbon_workload_energy_joules_total{")
                && l.contains("workload=\"Job/bert-base-train\"")
                && l.contains("component=\"cpu\"")
                && l.contains("source=\"measured\"")),
        "{text}"
    );
}

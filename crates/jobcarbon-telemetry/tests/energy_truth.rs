//! The energy traps of real exporter deployments (issue "energy telemetry truth"), each through
//! a real Prometheus loaded with the exporters' upstream label sets as a ServiceMonitor stores
//! them (`honor_labels` false or true, target labels `pod`/`namespace`/`container`), and each
//! against joules computed by hand.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::{Component, EnergyOwner, EnergyReading, PodKey, Seconds};
use jobcarbon_telemetry::dcgm::{DcgmConfig, DcgmSource};
use jobcarbon_telemetry::kepler::{KeplerConfig, KeplerSource};
use jobcarbon_telemetry::prom::{PromClient, PromConfig};
use jobcarbon_telemetry::{CounterTracker, EnergySource, FirstSight, Observed};
use jobcarbon_testkit::fixture;
use jobcarbon_testkit::prometheus::{History, PromServer, as_scraped, unix_now};
use std::time::Duration;

const GPU0: &str = "GPU-a84bba07-931d-b925-306a-0799dc6ebd71";
const GPU1: &str = "GPU-8b8c764d-1c0a-cb3d-ea13-519a60a077bb";
const TRAIN: (&str, &str) = ("ml-training", "bert-base-train-7x9kq");
const SERVE: (&str, &str) = ("ml-serving", "bert-base-serve-6d8f7b9c5d-k2m4x");
/// The fixture's counters (mJ) → the 10 % growth between its two samples, in J.
const GPU0_DELTA: f64 = 271_834.210_5;
const GPU1_DELTA: f64 = 90_411.766;

fn client(url: &str) -> PromClient {
    let mut c = PromConfig::new(url);
    c.timeout = Duration::from_secs(30);
    PromClient::new(c).unwrap()
}

/// Reads `times` in order through one tracker with the ledger's first-sight rule (every pod
/// counts as created just now, the worst case for a since-boot counter); returns each
/// observation.
async fn observe_all(sources: &[&dyn EnergySource], times: &[i64]) -> Vec<Observed> {
    let mut trackers: Vec<CounterTracker> = sources
        .iter()
        .map(|_| CounterTracker::new(FirstSight::Baseline))
        .collect();
    let mut out = Vec::new();
    for t in times {
        let mut merged = Observed::default();
        for (source, tracker) in sources.iter().zip(&mut trackers) {
            let per_pod = source.counters_start_with_pod();
            let started = |r: &EnergyReading, _since: Seconds| {
                per_pod && matches!(r.owner, EnergyOwner::Pod { .. })
            };
            let readings = source.read(Seconds(*t as f64)).await.unwrap();
            let obs = tracker.observe_since(&readings, &started);
            tracker.forget_older_than(Seconds(*t as f64) - Seconds::from_hours(24.0));
            merged.deltas.extend(obs.deltas);
        }
        out.push(merged);
    }
    out
}

fn pod_joules(obs: &Observed, (ns, pod): (&str, &str), component: Component) -> f64 {
    obs.deltas
        .iter()
        .filter(|d| d.component == component)
        .filter(
            |d| matches!(&d.owner, EnergyOwner::Pod { key, .. } if key == &PodKey::new(ns, pod)),
        )
        .map(|d| d.energy.value())
        .sum()
}

fn owner_joules(obs: &Observed, owner: &EnergyOwner) -> f64 {
    obs.deltas
        .iter()
        .filter(|d| &d.owner == owner)
        .map(|d| d.energy.value())
        .sum()
}

fn within_1pct(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 0.01 * expected.abs().max(1e-9),
        "{what}: expected {expected} J, booked {actual} J"
    );
}

/// No pod whose name is an exporter's ever gets energy.
fn no_exporter_pod(obs: &Observed) {
    for d in &obs.deltas {
        if let EnergyOwner::Pod { key, .. } = &d.owner {
            assert!(
                !key.pod.contains("dcgm-exporter") && !key.pod.contains("kepler"),
                "exporter pod {key} booked {} J",
                d.energy
            );
        }
    }
}

fn dcgm(url: &str) -> DcgmSource {
    DcgmSource::new(client(url), DcgmConfig::default())
}

/// The DCGM fixture with GPU 1 idle: its line carries no workload labels (as dcgm-exporter
/// renders a GPU no pod holds).
fn dcgm_gpu1_idle() -> String {
    fixture("dcgm/dcgm-exporter-4.5.2-4.8.1-k8s-2xA100.prom").replace(
        ",container=\"server\",namespace=\"ml-serving\",pod=\"bert-base-serve-6d8f7b9c5d-k2m4x\"",
        "",
    )
}

#[tokio::test]
async fn kepler_gpu_and_dcgm_count_gpu_energy_once() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut h = History::new();
    let kepler = fixture("kepler/kepler-v0.11.4-gpu-node.prom");
    h.exposition_at(&kepler, &[(t0, 0.9), (t1, 1.0)]).unwrap();
    let dcgm_text = fixture("dcgm/dcgm-exporter-4.5.2-4.8.1-k8s-2xA100.prom");
    h.exposition_at(&dcgm_text, &[(t0, 0.9), (t1, 1.0)])
        .unwrap();
    let prom = PromServer::builder().history(&h).start().unwrap();

    // energy.gpu: dcgm (default): Kepler's GPU series are not read.
    let k = KeplerSource::new(client(&prom.url()), KeplerConfig::default()).unwrap();
    let d = dcgm(&prom.url());
    let obs = observe_all(&[&k, &d], &[t0, t1]).await;
    within_1pct(
        pod_joules(&obs[1], TRAIN, Component::Gpu),
        GPU0_DELTA,
        "training pod GPU, Kepler GPU + DCGM",
    );
    let kepler_only = observe_all(&[&k], &[t0, t1]).await;
    assert!(
        kepler_only[1]
            .deltas
            .iter()
            .all(|d| d.component != Component::Gpu),
        "Kepler GPU series read while DCGM is the GPU source"
    );

    // energy.gpu: kepler: Kepler is the only GPU source and its GPU series are read.
    let kepler_gpu = KeplerConfig {
        gpu: true,
        ..KeplerConfig::default()
    };
    let k = KeplerSource::new(client(&prom.url()), kepler_gpu).unwrap();
    let obs = observe_all(&[&k], &[t0, t1]).await;
    assert!(pod_joules(&obs[1], TRAIN, Component::Gpu) > 0.0);
}

#[tokio::test]
async fn gpu_first_seen_mid_run_books_only_what_it_drew_since() {
    let now = unix_now();
    let (t0, t1, t2) = (now - 180, now - 120, now - 60);
    let mut h = History::new();
    // GPU 0 is there from the start; GPU 1's exporter (a node joining) first answers at t1
    // with 7.2 MJ since driver load, then draws 6 kJ (100 W × 60 s).
    let labels = |uuid: &'static str, host: &'static str| {
        [
            ("gpu", "0"),
            ("UUID", uuid),
            ("modelName", "NVIDIA A100-SXM4-80GB"),
            ("Hostname", host),
            ("container", "trainer"),
            ("namespace", "ml"),
            ("pod", "late"),
        ]
    };
    h.series(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        &labels(GPU0, "node-a"),
        &[(t0, 1e9), (t1, 1.01e9), (t2, 1.02e9)],
    );
    h.series(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        &labels(GPU1, "node-b"),
        &[(t1, 7.2e9), (t2, 7.2e9 + 6e6)],
    );
    let prom = PromServer::builder().history(&h).start().unwrap();
    let d = dcgm(&prom.url());
    let obs = observe_all(&[&d], &[t0, t1, t2]).await;
    let gpu1 = |o: &Observed| {
        o.deltas
            .iter()
            .filter(|x| x.node == "node-b")
            .map(|x| x.energy.value())
            .sum::<f64>()
    };
    assert_eq!(gpu1(&obs[1]), 0.0, "first sight of a since-boot counter");
    within_1pct(gpu1(&obs[2]), 6_000.0, "GPU 1 after its first sight");
    within_1pct(obs[1].total().value(), 10_000.0, "GPU 0 between t0 and t1");
}

#[tokio::test]
async fn exporter_restart_with_a_new_hostname_is_the_same_gpu() {
    let now = unix_now();
    let (t0, t1, t2) = (now - 180, now - 120, now - 60);
    let mut h = History::new();
    // Without NODE_NAME, Hostname is the exporter pod's name, new after every restart.
    for (host, points) in [
        ("dcgm-exporter-7x2kq", vec![(t0, 5e9), (t1, 5.012e9)]),
        ("dcgm-exporter-p9w4d", vec![(t2, 5.024e9)]),
    ] {
        h.series(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            &[
                ("gpu", "0"),
                ("UUID", GPU0),
                ("Hostname", host),
                ("exported_pod", "train-0"),
                ("exported_namespace", "ml"),
                ("exported_container", "trainer"),
                ("pod", host),
                ("namespace", "gpu-monitoring"),
                ("container", "exporter"),
            ],
            &points,
        );
    }
    let prom = PromServer::builder().history(&h).start().unwrap();
    let d = dcgm(&prom.url());
    let obs = observe_all(&[&d], &[t0, t1, t2]).await;
    within_1pct(
        pod_joules(&obs[1], ("ml", "train-0"), Component::Gpu),
        12_000.0,
        "t0→t1",
    );
    within_1pct(
        pod_joules(&obs[2], ("ml", "train-0"), Component::Gpu),
        12_000.0,
        "t1→t2 across the exporter restart",
    );
    no_exporter_pod(&obs[2]);
}

/// The upstream chart (container `exporter`) and the GPU operator (`nvidia-dcgm-exporter`),
/// scraped with `honor_labels` false and true, and `--use-old-namespace`.
#[tokio::test]
async fn exporter_pods_are_never_workloads() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let old_names = dcgm_gpu1_idle()
        .replace("container=", "container_name=")
        .replace("namespace=", "pod_namespace=")
        .replace("pod=", "pod_name=");
    let variants = [
        (
            "upstream chart",
            "dcgm-exporter-5lq8v",
            "exporter",
            dcgm_gpu1_idle(),
        ),
        (
            "GPU operator",
            "nvidia-dcgm-exporter-tg2xq",
            "nvidia-dcgm-exporter",
            dcgm_gpu1_idle(),
        ),
        (
            "--use-old-namespace",
            "dcgm-exporter-5lq8v",
            "exporter",
            old_names,
        ),
    ];
    for (chart, exporter_pod, container, text) in variants {
        for honor in [false, true] {
            let target = [
                ("pod", exporter_pod),
                ("namespace", "gpu-monitoring"),
                ("container", container),
                ("service", "dcgm-exporter"),
                ("endpoint", "metrics"),
                ("job", "dcgm-exporter"),
                ("instance", "10.0.3.17:9400"),
            ];
            let scraped = as_scraped(&text, &target, honor).unwrap();
            let mut h = History::new();
            h.exposition_at(&scraped, &[(t0, 0.9), (t1, 1.0)]).unwrap();
            let prom = PromServer::builder().history(&h).start().unwrap();
            let d = dcgm(&prom.url());
            let obs = observe_all(&[&d], &[t0, t1]).await;
            let what = format!("{chart}, honor_labels {honor}");
            no_exporter_pod(&obs[1]);
            within_1pct(
                pod_joules(&obs[1], TRAIN, Component::Gpu),
                GPU0_DELTA,
                &format!("{what}: training pod"),
            );
            within_1pct(
                owner_joules(&obs[1], &EnergyOwner::UnmappedGpu { uuid: GPU1.into() }),
                GPU1_DELTA,
                &format!("{what}: idle GPU is node-level"),
            );
        }
    }
}

#[tokio::test]
async fn series_absent_two_hours_then_back_books_its_increase_not_its_since_boot_value() {
    let now = unix_now();
    let (t0, t1, t2) = (now - 7260, now - 3660, now - 60);
    let mut h = History::new();
    let line = |uuid: &'static str, pod: &'static str| {
        [
            ("gpu", "0"),
            ("UUID", uuid),
            ("Hostname", "node-a"),
            ("namespace", "ml"),
            ("pod", pod),
            ("container", "c"),
        ]
    };
    // GPU 0 answers throughout; GPU 1's exporter is down from t0 to t2 (two hours).
    h.series(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        &line(GPU0, "steady"),
        &[(t0, 1e9), (t1, 1.36e9), (t2, 1.72e9)],
    );
    h.series(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        &line(GPU1, "back"),
        &[(t0, 7.2e9), (t2, 7.2e9 + 2.52e9)],
    );
    let prom = PromServer::builder().history(&h).start().unwrap();
    let d = dcgm(&prom.url());
    let obs = observe_all(&[&d], &[t0, t1, t2]).await;
    assert_eq!(pod_joules(&obs[1], ("ml", "back"), Component::Gpu), 0.0);
    // 2.52 MJ drawn over the two hours (350 W), not the 9.72 MJ since driver load.
    within_1pct(
        pod_joules(&obs[2], ("ml", "back"), Component::Gpu),
        2.52e6,
        "GPU back after two hours",
    );
}

/// Time-slicing: without `KUBERNETES_VIRTUAL_GPUS` the exporter names one sharing pod per
/// scrape (here alternating); with it, every sharing pod gets a line with the whole GPU.
#[tokio::test]
async fn time_sliced_gpu_is_split_over_the_pods_that_held_it() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    for virtual_gpus in [false, true] {
        let mut h = History::new();
        // 60 kJ over the minute (1 kW), scraped every 15 s.
        let scrapes: Vec<(i64, f64)> = (0..=4)
            .map(|i| (t0 + 15 * i, 1e9 + 15e6 * i as f64))
            .collect();
        for (k, pod) in ["chat-a", "chat-b"].into_iter().enumerate() {
            let points: Vec<(i64, f64)> = scrapes
                .iter()
                .enumerate()
                .filter(|(i, _)| virtual_gpus || i % 2 == k)
                .map(|(_, p)| *p)
                .collect();
            h.series(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                &[
                    ("gpu", "0"),
                    ("UUID", GPU0),
                    ("Hostname", "node-a"),
                    ("namespace", "serving"),
                    ("pod", pod),
                    ("container", "server"),
                ],
                &points,
            );
        }
        let prom = PromServer::builder().history(&h).start().unwrap();
        let d = dcgm(&prom.url());
        let obs = observe_all(&[&d], &[t0, t1]).await;
        let what = format!("KUBERNETES_VIRTUAL_GPUS={virtual_gpus}");
        within_1pct(
            obs[1].total().value(),
            60_000.0,
            &format!("{what}: GPU total"),
        );
        for pod in ["chat-a", "chat-b"] {
            within_1pct(
                pod_joules(&obs[1], ("serving", pod), Component::Gpu),
                30_000.0,
                &format!("{what}: {pod}"),
            );
        }
    }
}

/// MIG on an A100 (7 compute slices): 3g.40gb and 2g.20gb held by pods, 1g.10gb idle, one
/// slice not carved out. Every line repeats the whole GPU's counter.
#[tokio::test]
async fn mig_instances_split_by_compute_slices() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut h = History::new();
    for (id, profile, pod) in [
        ("1", "3g.40gb", Some("big")),
        ("5", "2g.20gb", Some("small")),
        ("13", "1g.10gb", None),
    ] {
        let mut labels = vec![
            ("gpu", "0"),
            ("UUID", GPU0),
            ("device", "nvidia0"),
            ("modelName", "NVIDIA A100-SXM4-80GB"),
            ("GPU_I_PROFILE", profile),
            ("GPU_I_ID", id),
            ("Hostname", "node-a"),
        ];
        if let Some(pod) = pod {
            labels.extend([("namespace", "ml"), ("pod", pod), ("container", "c")]);
        }
        h.series(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            &labels,
            &[(t0, 2e9), (t1, 2e9 + 70e6)],
        );
    }
    let prom = PromServer::builder().history(&h).start().unwrap();
    let d = dcgm(&prom.url());
    let obs = observe_all(&[&d], &[t0, t1]).await;
    // 70 kJ for the GPU, once: 3/7, 2/7, 1/7 idle instance (unmapped), 1/7 unused (node idle).
    within_1pct(obs[1].total().value(), 70_000.0, "GPU total");
    within_1pct(
        pod_joules(&obs[1], ("ml", "big"), Component::Gpu),
        30_000.0,
        "3g.40gb",
    );
    within_1pct(
        pod_joules(&obs[1], ("ml", "small"), Component::Gpu),
        20_000.0,
        "2g.20gb",
    );
    within_1pct(
        owner_joules(&obs[1], &EnergyOwner::UnmappedGpu { uuid: GPU0.into() }),
        10_000.0,
        "idle 1g.10gb",
    );
    within_1pct(
        owner_joules(&obs[1], &EnergyOwner::NodeIdle),
        10_000.0,
        "unused slice",
    );
}

/// An HA Prometheus pair that is not deduplicated: every line twice, with
/// `prometheus_replica`, scraped a moment apart (the second replica a little behind).
#[tokio::test]
async fn ha_pair_lines_count_once() {
    let now = unix_now();
    let (t0, t1, t2) = (now - 180, now - 120, now - 60);
    let text = fixture("dcgm/dcgm-exporter-4.5.2-4.8.1-k8s-2xA100.prom");
    let mut h = History::new();
    for (replica, lag) in [("prometheus-k8s-0", 1.0), ("prometheus-k8s-1", 0.9999)] {
        let with_replica = text.replace(
            "Hostname=",
            &format!("prometheus_replica=\"{replica}\",Hostname="),
        );
        h.exposition_at(
            &with_replica,
            &[(t0, 0.8 * lag), (t1, 0.9 * lag), (t2, lag)],
        )
        .unwrap();
    }
    let prom = PromServer::builder().history(&h).start().unwrap();
    let d = dcgm(&prom.url());
    let obs = observe_all(&[&d], &[t0, t1, t2]).await;
    for o in &obs[1..] {
        within_1pct(
            pod_joules(o, TRAIN, Component::Gpu),
            GPU0_DELTA,
            "training pod",
        );
        within_1pct(
            pod_joules(o, SERVE, Component::Gpu),
            GPU1_DELTA,
            "serving pod",
        );
    }
}

#[tokio::test]
async fn kepler_v2_reports_node_active_for_non_pod_work() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut h = History::new();
    let kepler = fixture("kepler/kepler-v0.11.4-gpu-node.prom");
    h.exposition_at(&kepler, &[(t0, 0.9), (t1, 1.0)]).unwrap();
    let prom = PromServer::builder().history(&h).start().unwrap();
    let k = KeplerSource::new(client(&prom.url()), KeplerConfig::default()).unwrap();
    let obs = observe_all(&[&k], &[t0, t1]).await;
    // 10 % of the fixture's node active package joules, summed over its package zone lines.
    let active: f64 = kepler
        .lines()
        .filter(|l| {
            l.starts_with("kepler_node_cpu_active_joules_total{") && l.contains("zone=\"package\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        * 0.1;
    assert!(active > 0.0, "fixture has node active package energy");
    let booked: f64 = obs[1]
        .deltas
        .iter()
        .filter(|d| d.owner == EnergyOwner::NodeActive && d.component == Component::Cpu)
        .map(|d| d.energy.value())
        .sum();
    within_1pct(booked, active, "node active package");
}

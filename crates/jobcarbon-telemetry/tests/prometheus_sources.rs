//! Kepler (both generations), DCGM and request counters against a real Prometheus server
//! loaded with fixture-shaped histories. Expected energies are computed by hand from the
//! fixture values: every history has the fixture at 90 % at t0 and 100 % at t1, so each
//! series' delta is 10 % of its fixture value.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::{Component, EnergyOwner, Joules, PodKey, Seconds};
use jobcarbon_telemetry::dcgm::{DcgmConfig, DcgmSource};
use jobcarbon_telemetry::kepler::{KeplerConfig, KeplerMode, KeplerSource};
use jobcarbon_telemetry::prom::{PromClient, PromConfig, PromMetrics};
use jobcarbon_telemetry::{
    CounterTracker, EnergySource, FirstSight, MetricQuery, Observed, RequestPreset, RequestQuery,
    SourceError,
};
use jobcarbon_testkit::fixture;
use jobcarbon_testkit::prometheus::{History, PromServer, unix_now};
use std::collections::BTreeMap;
use std::time::Duration;

/// These tests check Kepler's own GPU series too: `energy.gpu: kepler`.
fn kepler_with_gpu() -> KeplerConfig {
    KeplerConfig {
        gpu: true,
        ..KeplerConfig::default()
    }
}

fn client(url: &str) -> PromClient {
    let mut c = PromConfig::new(url);
    // Generous: CI machines are shared; a slow answer is not what these tests check.
    c.timeout = Duration::from_secs(30);
    PromClient::new(c).unwrap()
}

async fn deltas(source: &dyn EnergySource, t0: i64, t1: i64) -> Observed {
    let mut tracker = CounterTracker::new(FirstSight::Baseline);
    tracker.observe(&source.read(Seconds(t0 as f64)).await.unwrap());
    tracker.observe(&source.read(Seconds(t1 as f64)).await.unwrap())
}

fn pod_energy(obs: &Observed, ns: &str, pod: &str, component: Component) -> f64 {
    obs.deltas
        .iter()
        .filter(|d| {
            d.component == component
                && matches!(&d.owner, EnergyOwner::Pod { key, .. } if key == &PodKey::new(ns, pod))
        })
        .map(|d| d.energy.value())
        .sum()
}

fn owner_energy(obs: &Observed, owner: &EnergyOwner, component: Option<Component>) -> f64 {
    obs.deltas
        .iter()
        .filter(|d| &d.owner == owner && component.is_none_or(|c| d.component == c))
        .map(|d| d.energy.value())
        .sum()
}

/// Asserts each `((namespace, pod), component, joules)`.
fn expect_pods(obs: &Observed, expected: &[((&str, &str), Component, f64)]) {
    for ((ns, pod), component, joules) in expected {
        let actual = pod_energy(obs, ns, pod, *component);
        assert!(
            (actual - joules).abs() <= 1e-6 * joules.abs().max(1.0),
            "{ns}/{pod} {component}: expected {joules}, got {actual}"
        );
    }
}

/// Asserts a node-level owner's energy per component.
fn expect_node(obs: &Observed, owner: &EnergyOwner, expected: &[(Component, f64)]) {
    for (component, joules) in expected {
        let actual = owner_energy(obs, owner, Some(*component));
        assert!(
            (actual - joules).abs() <= 1e-6 * joules.abs().max(1.0),
            "{owner:?} {component}: expected {joules}, got {actual}"
        );
    }
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "expected {expected}, got {actual}"
    );
}

#[tokio::test]
async fn kepler_v2_fixture_by_hand() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut h = History::new();
    let text = fixture("kepler/kepler-v0.11.4-gpu-node.prom");
    // The terminated pod was running at t0 and is exported as terminated at t1.
    let running = text.replace("state=\"terminated\"", "state=\"running\"");
    let terminated_only: String = text
        .lines()
        .filter(|l| l.contains("terminated"))
        .collect::<Vec<_>>()
        .join("\n");
    let running_only: String = running
        .lines()
        .filter(|l| l.contains("5f0c2b7e"))
        .collect::<Vec<_>>()
        .join("\n");
    let others: String = text
        .lines()
        .filter(|l| !l.contains("5f0c2b7e"))
        .collect::<Vec<_>>()
        .join("\n");
    h.exposition_at(&others, &[(t0, 0.9), (t1, 1.0)]).unwrap();
    h.exposition_at(&running_only, &[(t0, 0.9)]).unwrap();
    h.exposition_at(&terminated_only, &[(t1, 1.0)]).unwrap();
    let prom = PromServer::builder().history(&h).start().unwrap();
    let source = KeplerSource::new(client(&prom.url()), kepler_with_gpu()).unwrap();
    let obs = deltas(&source, t0, t1).await;

    const TRAIN: (&str, &str) = ("ml-training", "bert-base-train-7x9kq");
    const SERVE: (&str, &str) = ("ml-serving", "bert-base-serve-6d8f7b9c5d-k2m4x");
    // The terminated pod's final value continues its running counter.
    const DONE: (&str, &str) = ("ml-training", "bert-base-train-m4d2z");
    expect_pods(
        &obs,
        &[
            (TRAIN, Component::Cpu, 40211.3774019),
            (TRAIN, Component::Dram, 3187.7208311),
            (TRAIN, Component::Gpu, 170822.1337),
            (SERVE, Component::Gpu, 54541.2003),
            (DONE, Component::Cpu, 30187.745112),
            (DONE, Component::Dram, 2201.4809677),
        ],
    );
    // Node idle stays at node level: package + dram zones, and both GPUs' idle.
    expect_node(
        &obs,
        &EnergyOwner::NodeIdle,
        &[
            (Component::Cpu, 72673.7515945),
            (Component::Dram, 13569.0511187),
            (Component::Gpu, 112296.2528),
        ],
    );
    assert!(obs.deltas.iter().all(|d| d.node == "gpu-node-a1"));
    assert!(source.health().healthy);
}

#[tokio::test]
async fn kepler_legacy_fixture_by_hand_and_auto_detection() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut h = History::new();
    h.exposition_at(
        &fixture("kepler/kepler-v0.7.12-gpu-node-source-label.prom"),
        &[(t0, 0.9), (t1, 1.0)],
    )
    .unwrap();
    let prom = PromServer::builder().history(&h).start().unwrap();
    for mode in [KeplerMode::Auto, KeplerMode::Legacy] {
        let config = KeplerConfig {
            mode,
            ..kepler_with_gpu()
        };
        let source = KeplerSource::new(client(&prom.url()), config).unwrap();
        let obs = deltas(&source, t0, t1).await;
        // mode="dynamic" only; the per-container idle repeats are never booked.
        const TRAIN: (&str, &str) = ("ml-training", "bert-base-train-7x9kq");
        expect_pods(
            &obs,
            &[
                (TRAIN, Component::Cpu, 40211.3774),
                (TRAIN, Component::Dram, 3187.7208),
                (TRAIN, Component::Gpu, 170822.1337),
                (TRAIN, Component::Other, 0.0),
            ],
        );
        // system_processes + kernel_processes: node overhead, kept apart.
        close(
            owner_energy(&obs, &EnergyOwner::NodeSystem, None),
            10786.6046,
        );
        // Node idle from kepler_node_*{mode="idle"}: 2 × 388117.4 package, 2 × 39260.41 dram.
        expect_node(
            &obs,
            &EnergyOwner::NodeIdle,
            &[(Component::Cpu, 77623.48), (Component::Dram, 7852.082)],
        );
    }
    // Asking for v2 where only legacy metrics exist is a clear error.
    let v2 = KeplerSource::new(
        client(&prom.url()),
        KeplerConfig {
            mode: KeplerMode::V2,
            ..kepler_with_gpu()
        },
    )
    .unwrap();
    let err = v2.read(Seconds(t1 as f64)).await.unwrap_err();
    assert_eq!(err.kind(), "query");
    assert!(!v2.health().healthy);
}

#[tokio::test]
async fn kepler_restart_is_a_reset_and_missing_metrics_are_an_error() {
    let now = unix_now();
    let labels = [
        ("pod_id", "u1"),
        ("pod_name", "p"),
        ("pod_namespace", "ns"),
        ("node_name", "n1"),
        ("state", "running"),
        ("zone", "package"),
    ];
    let mut h = History::new();
    h.series(
        "kepler_pod_cpu_joules_total",
        &labels,
        &[
            (now - 180, 100.0),
            (now - 150, 400.0),
            (now - 120, 30.0),
            (now - 90, 80.0),
        ],
    );
    let prom = PromServer::builder().history(&h).start().unwrap();
    let source = KeplerSource::new(client(&prom.url()), kepler_with_gpu()).unwrap();
    let mut tracker = CounterTracker::new(FirstSight::Baseline);
    let mut booked = Vec::new();
    for t in [now - 180, now - 150, now - 120, now - 90] {
        let obs = tracker.observe(&source.read(Seconds(t as f64)).await.unwrap());
        booked.push(obs.total().value());
    }
    // Baseline, +300, reset (the new value 30 is the delta), +50.
    assert_eq!(booked, vec![0.0, 300.0, 30.0, 50.0]);

    // Long after the last sample nothing is there: an error, not zero energy.
    let err = source.read(Seconds((now + 3600) as f64)).await.unwrap_err();
    assert!(matches!(err, SourceError::Query { .. }), "{err}");
}

fn dcgm_history(text: &str, t0: i64, t1: i64) -> History {
    let mut h = History::new();
    h.exposition_at(text, &[(t0, 0.9), (t1, 1.0)]).unwrap();
    h
}

#[tokio::test]
async fn dcgm_with_pod_labels_and_exported_labels() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let text = fixture("dcgm/dcgm-exporter-4.5.2-4.8.1-k8s-2xA100.prom");
    // As scraped without honor_labels: pod labels become exported_*, hostname lower-case.
    let exported = text
        .replace("container=\"", "exported_container=\"")
        .replace("namespace=\"", "exported_namespace=\"")
        .replace("pod=\"", "exported_pod=\"")
        .replace("Hostname=", "hostname=")
        .replace("DCGM_FI_DRIVER_VERSION=", "pod=\"nvidia-dcgm-exporter-7rq\",namespace=\"gpu-operator\",container=\"nvidia-dcgm-exporter\",DCGM_FI_DRIVER_VERSION=");
    for variant in [&text, &exported] {
        let prom = PromServer::builder()
            .history(&dcgm_history(variant, t0, t1))
            .start()
            .unwrap();
        let source = DcgmSource::new(client(&prom.url()), DcgmConfig::default());
        let obs = deltas(&source, t0, t1).await;
        // 10 % of 2718342105 mJ and 904117660 mJ.
        expect_pods(
            &obs,
            &[
                (
                    ("ml-training", "bert-base-train-7x9kq"),
                    Component::Gpu,
                    271834.2105,
                ),
                (
                    ("ml-serving", "bert-base-serve-6d8f7b9c5d-k2m4x"),
                    Component::Gpu,
                    90411.766,
                ),
            ],
        );
        close(obs.total().value(), 271834.2105 + 90411.766);
        assert!(obs.deltas.iter().all(|d| d.node == "gpu-node-a1"));
    }
}

#[tokio::test]
async fn dcgm_without_pod_labels_time_sliced_and_mig_power_fallback() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut h = History::new();
    // A GPU time-sliced between two pods: both lines carry the whole GPU's counter.
    for pod in ["a", "b"] {
        h.series(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            &[
                ("UUID", "GPU-shared"),
                ("Hostname", "n1"),
                ("gpu", "0"),
                ("pod", pod),
                ("namespace", "x"),
                ("container", "c"),
            ],
            &[(t0, 1_000_000.0), (t1, 1_600_000.0)],
        );
    }
    // The MIG capture: no energy field, power repeated per instance, no pod labels.
    let mig = fixture("dcgm/dcgm-exporter-mig-a30-issue317-excerpt.prom");
    let times: Vec<(i64, f64)> = (0..=8).map(|i| (t0 + i * 15, 1.0)).collect();
    h.exposition_at(&mig, &times).unwrap();
    let prom = PromServer::builder().history(&h).start().unwrap();
    let source = DcgmSource::new(client(&prom.url()), DcgmConfig::default());
    let obs = deltas(&source, t0, t1).await;
    // 600 J split, not 1200 J.
    close(pod_energy(&obs, "x", "a", Component::Gpu), 300.0);
    close(pod_energy(&obs, "x", "b", Component::Gpu), 300.0);
    // MIG: each GPU counted once at its (mean) whole-GPU power × 60 s, not once per instance.
    let gpu0 = (52.636 + 52.636 + 52.746 + 52.746) / 4.0 * 60.0;
    let gpu1 = (56.121 + 56.127) / 2.0 * 60.0;
    let unmapped = |uuid: &str| EnergyOwner::UnmappedGpu { uuid: uuid.into() };
    close(
        owner_energy(
            &obs,
            &unmapped("GPU-265c9814-6156-355b-e589-ff2064894f16"),
            None,
        ),
        gpu0,
    );
    // GPU 1 (an A30: 4 compute slices) has two 1g.6gb instances: half its energy is the
    // instances' (no pod: unmapped), the uncarved half node idle.
    close(
        owner_energy(
            &obs,
            &unmapped("GPU-2d20791a-b4a6-ba59-97f1-e95b99fe5b49"),
            None,
        ),
        gpu1 / 2.0,
    );
    close(owner_energy(&obs, &EnergyOwner::NodeIdle, None), gpu1 / 2.0);
    assert!(obs.deltas.iter().all(|d| d.energy.value() >= 0.0));
}

#[tokio::test]
async fn dcgm_missing_metric_marks_source_unhealthy() {
    let now = unix_now();
    let mut h = History::new();
    h.series("up", &[("job", "x")], &[(now - 60, 1.0)]);
    let prom = PromServer::builder().history(&h).start().unwrap();
    let source = DcgmSource::new(client(&prom.url()), DcgmConfig::default());
    let err = source.read(Seconds((now - 30) as f64)).await.unwrap_err();
    assert_eq!(err.kind(), "query");
    assert!(
        err.to_string()
            .contains("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
        "{err}"
    );
    let health = source.health();
    assert!(!health.healthy);
    assert_eq!(health.errors_total, 1);
}

#[tokio::test]
async fn prometheus_down_then_back() {
    let now = unix_now();
    let mut h = History::new();
    h.series(
        "kepler_pod_cpu_joules_total",
        &[
            ("pod_name", "p"),
            ("pod_namespace", "ns"),
            ("zone", "package"),
            ("node_name", "n"),
        ],
        &[(now - 60, 10.0)],
    );
    let mut prom = PromServer::builder().history(&h).start().unwrap();
    let source = KeplerSource::new(client(&prom.url()), kepler_with_gpu()).unwrap();
    assert!(source.read(Seconds((now - 30) as f64)).await.is_ok());
    prom.stop();
    let err = source.read(Seconds((now - 30) as f64)).await.unwrap_err();
    assert_eq!(err.kind(), "unreachable", "{err}");
    assert!(err.to_string().contains(&prom.url()), "{err}");
    assert!(!source.health().healthy);
    assert!(source.health().last_success.is_some());
    prom.restart().unwrap();
    let readings = source.read(Seconds((now - 30) as f64)).await.unwrap();
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0].cumulative, Joules(10.0));
    assert!(source.health().healthy);
}

/// A one-shot HTTP server answering every request with `status`, `content_type` and `body`.
async fn canned_server(status: &'static str, content_type: &'static str, body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn http_5xx_and_bad_data_are_clear_errors() {
    let url = canned_server(
        "503 Service Unavailable",
        "text/plain",
        "upstream down".into(),
    )
    .await;
    let source = DcgmSource::new(client(&url), DcgmConfig::default());
    let err = source.read(Seconds(1.0e9)).await.unwrap_err();
    assert_eq!(err.kind(), "bad_response", "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert!(!source.health().healthy);

    let body = fixture("prometheus/api-error-bad-data.json");
    let url = canned_server("400 Bad Request", "application/json", body).await;
    let metrics = PromMetrics::new(client(&url));
    let err = metrics.scalar("sum(", Seconds(1.0e9)).await.unwrap_err();
    assert_eq!(err.kind(), "query", "{err}");
    assert!(err.to_string().contains("bad_data"), "{err}");
    assert!(err.to_string().contains("unexpected end of input"), "{err}");
}

#[tokio::test]
async fn request_presets_and_scalars() {
    let now = unix_now();
    let mut h = History::new();
    for (pod, v) in [("srv-1", 120.0), ("srv-2", 30.0)] {
        h.series(
            "vllm:request_success_total",
            &[
                ("namespace", "ml-serving"),
                ("pod", pod),
                ("finished_reason", "stop"),
            ],
            &[(now - 60, v)],
        );
    }
    h.series(
        "vllm:request_success_total",
        &[
            ("namespace", "other"),
            ("pod", "x"),
            ("finished_reason", "stop"),
        ],
        &[(now - 60, 1000.0)],
    );
    h.series("grid_intensity", &[("region", "eu")], &[(now - 60, 321.5)]);
    let prom = PromServer::builder().history(&h).start().unwrap();
    let metrics = PromMetrics::new(client(&prom.url()));
    let mut matchers = BTreeMap::new();
    matchers.insert("namespace".to_owned(), "ml-serving".to_owned());
    let q = RequestQuery::Preset {
        preset: RequestPreset::Vllm,
        matchers,
    };
    let at = Seconds((now - 30) as f64);
    // One sample per serving pod (never a sum), each with its pod; the other namespace is
    // not selected.
    let series = metrics.request_series(&q, at).await.unwrap();
    let mut by_pod: Vec<(String, f64)> = series
        .iter()
        .map(|s| {
            (
                s.pod.as_ref().map(|p| p.pod.clone()).unwrap_or_default(),
                s.value,
            )
        })
        .collect();
    by_pod.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_pod,
        vec![("srv-1".to_owned(), 120.0), ("srv-2".to_owned(), 30.0)]
    );
    assert!(series.iter().all(|s| s.series.contains("finished_reason")));
    assert_eq!(
        metrics
            .scalar("grid_intensity{region=\"eu\"}", at)
            .await
            .unwrap(),
        321.5
    );
    let err = metrics
        .scalar("grid_intensity", Seconds((now + 3600) as f64))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no data"), "{err}");
}

#[tokio::test]
async fn scraped_live_kepler_endpoint() {
    // The harness' scrape mode: Prometheus scrapes a local exporter serving the v0.11.4 fixture.
    let url = canned_server(
        "200 OK",
        "text/plain; version=0.0.4; charset=utf-8",
        fixture("kepler/kepler-v0.11.4-gpu-node.prom"),
    )
    .await;
    let target = url.trim_start_matches("http://").to_owned();
    let prom = tokio::task::spawn_blocking(move || {
        let prom = PromServer::builder()
            .scrape(target, Duration::from_secs(1))
            .start()
            .unwrap();
        prom.wait_for_data("kepler_pod_cpu_joules_total", Duration::from_secs(30))
            .unwrap();
        prom
    })
    .await
    .unwrap();
    let source = KeplerSource::new(client(&prom.url()), kepler_with_gpu()).unwrap();
    // The API takes whole seconds: evaluate just after the first scrape, which may have
    // happened within the current second.
    let readings = source.read(Seconds((unix_now() + 1) as f64)).await.unwrap();
    // 5 pods × (package, dram) + 2 pod GPU series + 2 idle zones + 2 idle GPUs + 2 active zones.
    assert_eq!(readings.len(), 18, "{readings:#?}");
    let trainer_gpu = readings
        .iter()
        .find(|r| {
            r.component == Component::Gpu
                && matches!(&r.owner, EnergyOwner::Pod { key, .. } if key.pod == "bert-base-train-7x9kq")
        })
        .unwrap();
    assert_eq!(trainer_gpu.cumulative, Joules(1.708221337e6));
}

/// The node agent's own accounting (fake NVML backend, two GPUs: one shared by two pods, one
/// idle) at two ticks, exported the way `jobcarbon node` does and scraped through the chart's
/// ServiceMonitor (relabelled `node`), read back by the ledger's node-agent source.
#[tokio::test]
async fn node_agent_counters_through_prometheus() {
    use jobcarbon_core::Watts;
    use jobcarbon_telemetry::{
        FakeGpu, FakeGpuBackend, GpuAssignment, NodeAgent, NodeAgentSource, NodeAgentSourceConfig,
    };
    use std::sync::Arc;

    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let fake = Arc::new(FakeGpuBackend::new(vec![
        FakeGpu::new("GPU-0", "NVIDIA A100-SXM4-80GB", Watts(300.0)),
        FakeGpu::new("GPU-1", "NVIDIA A100-SXM4-80GB", Watts(60.0)),
    ]));
    let mut agent = NodeAgent::new(Box::new(fake.clone()));
    let holds = |pod: &str| GpuAssignment {
        namespace: "ml".into(),
        pod: pod.into(),
        container: "main".into(),
        resource_name: "nvidia.com/gpu".into(),
        device_id: "GPU-0".into(),
    };
    let assignments = vec![holds("a"), holds("b")];
    let mut h = History::new();
    // The agent's first tick is its baseline; then two exported ticks 60 s apart.
    agent.tick(&assignments, Seconds((t0 - 60) as f64)).unwrap();
    for t in [t0, t1] {
        fake.advance(60.0);
        agent.tick(&assignments, Seconds(t as f64)).unwrap();
        for (labels, energy) in agent.energy() {
            // How the honour-labels scrape stores them: empty labels are absent.
            let all = [
                ("gpu_uuid", labels.gpu_uuid.as_str()),
                ("gpu_model", labels.gpu_model.as_str()),
                ("namespace", labels.namespace.as_str()),
                ("pod", labels.pod.as_str()),
                ("container", labels.container.as_str()),
                ("node", "gpu-node-a1"),
            ];
            let present: Vec<(&str, &str)> =
                all.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            h.series(
                "jobcarbon_node_gpu_energy_joules_total",
                &present,
                &[(t, energy.value())],
            );
        }
        h.series(
            "jobcarbon_node_gpus",
            &[("node", "gpu-node-a1")],
            &[(t, 2.0)],
        );
    }
    let prom = PromServer::builder().history(&h).start().unwrap();
    let source = NodeAgentSource::new(client(&prom.url()), NodeAgentSourceConfig::default());
    let obs = deltas(&source, t0, t1).await;
    // GPU-0: 300 W × 60 s split over a and b; GPU-1: 60 W × 60 s, held by no one.
    expect_pods(
        &obs,
        &[
            (("ml", "a"), Component::Gpu, 9000.0),
            (("ml", "b"), Component::Gpu, 9000.0),
        ],
    );
    close(
        owner_energy(
            &obs,
            &EnergyOwner::UnmappedGpu {
                uuid: "GPU-1".into(),
            },
            Some(Component::Gpu),
        ),
        3600.0,
    );
    close(obs.total().value(), 21600.0);
    assert!(obs.deltas.iter().all(|d| d.node == "gpu-node-a1"));
    assert!(source.health().healthy);

    // Long after the last sample nothing is there: an error naming the agent, not zero energy.
    let err = source.read(Seconds((now + 3600) as f64)).await.unwrap_err();
    assert!(err.to_string().contains("node agent"), "{err}");
    assert!(!source.health().healthy);
}

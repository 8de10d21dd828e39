//! End to end: a real Prometheus holding Kepler (v0.11.4 fixture) and vLLM request histories,
//! a fake Kubernetes API server serving the fixture's labelled pods, the real ledger loop and
//! the real exporter. The exported per-workload energy, carbon and per-request values are
//! checked against values computed by hand from the fixture numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::Seconds;
use jobcarbon_exporter::{Format, encode_metrics};
use jobcarbon_kube::ClusterState;
use jobcarbon_ledger::KsmHistory;
use jobcarbon_ledger::KubeCluster;
use jobcarbon_ledger::clock::ManualClock;
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Config, Ledger, SharedView, Sources};
use jobcarbon_telemetry::prom::{PromClient, PromConfig, PromMetrics};
use jobcarbon_testkit::fixture;
use jobcarbon_testkit::kube_api::{FakeKubeApi, WatchScript, list};
use jobcarbon_testkit::prometheus::{History, PromServer, unix_now};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn node() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "gpu-node-a1",
            "resourceVersion": "1480200",
            "labels": {
                "kubernetes.io/hostname": "gpu-node-a1",
                "node.kubernetes.io/instance-type": "p4d.24xlarge",
                "topology.kubernetes.io/region": "us-south"
            }
        },
        "status": {
            "capacity": {"cpu": "96", "memory": "1152Gi", "nvidia.com/gpu": "2", "pods": "110"},
            "allocatable": {"cpu": "96", "memory": "1152Gi", "nvidia.com/gpu": "2", "pods": "110"}
        }
    })
}

/// `name{labels} value` → (labels, value) for one metric name.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series[name.len() + 1..series.len() - 1]
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn value(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-6),
        "{what}: expected {expected}, got {actual}"
    );
}

/// The Kepler fixture at 90 % at t0 and 100 % at t1: every delta is 10 % of the fixture value.
fn kepler_history(t0: i64, t1: i64) -> History {
    let kepler_text: String = fixture("kepler/kepler-v0.11.4-gpu-node.prom")
        .lines()
        .filter(|l| !l.contains("state=\"terminated\""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut history = History::new();
    history
        .exposition_at(&kepler_text, &[(t0, 0.9), (t1, 1.0)])
        .unwrap();
    history
}

/// The training pod's 10 % deltas (cpu (package), dram, gpu) from the Kepler fixture.
const TRAIN_JOULES: [f64; 3] = [40211.3774019, 3187.7208311, 170822.1337];

/// A real Prometheus holding `history`, a fake API server serving `pods` and one node, the
/// e2e config, and the watchers over that API server.
struct World {
    prom: PromServer,
    _api: FakeKubeApi,
    config: Config,
    state: ClusterState,
    driver: tokio::task::JoinHandle<()>,
}

impl World {
    async fn start(history: History, pods: Vec<serde_json::Value>) -> Self {
        let prom =
            tokio::task::spawn_blocking(move || PromServer::builder().history(&history).start())
                .await
                .unwrap()
                .unwrap();
        let api = FakeKubeApi::start().await.unwrap();
        api.push_list("/api/v1/pods", list("v1", "PodList", "1480301", pods));
        api.push_watch("/api/v1/pods", WatchScript::hang(vec![]));
        api.push_list(
            "/api/v1/nodes",
            list("v1", "NodeList", "1480301", vec![node()]),
        );
        api.push_watch("/api/v1/nodes", WatchScript::hang(vec![]));
        let config = Config::parse(
            &format!(
                r#"
interval: 60s
prometheus: {{url: "{url}", timeout: 5s}}
energy: {{kepler: v2, gpu: kepler, nodeIdle: by-energy}}
regions:
  us-south: {{pue: 1.1, intensity: 400}}
defaultRegion: us-south
systems: []
platform: {{namespaces: [kube-system, kepler], epc: 0g}}
products:
  bert-base: {{type: model, lifetime: 1y, inference: {{requests: {{preset: vllm}}}}}}
"#,
                url = prom.url()
            ),
            "e2e.yaml",
        )
        .unwrap();
        let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
        let (state, driver) = ClusterState::new(client, config.watch_config());
        let driver = tokio::spawn(driver);
        tokio::time::timeout(Duration::from_secs(20), state.wait_until_ready())
            .await
            .expect("pods and nodes listed");
        Self {
            prom,
            _api: api,
            config,
            state,
            driver,
        }
    }

    fn prom_client(&self) -> PromClient {
        let mut prom_config = PromConfig::new(self.prom.url());
        prom_config.timeout = Duration::from_secs(5);
        PromClient::new(prom_config).unwrap()
    }

    /// The ledger over the real sources, its cluster built from the watchers by `cluster`.
    fn ledger(&self, cluster: impl FnOnce(ClusterState) -> KubeCluster) -> (Ledger, SharedView) {
        let prom_client = self.prom_client();
        // The config's own mapping: `energy: {kepler: v2, gpu: kepler}` reads Kepler's GPU series.
        let energy = jobcarbon_ledger::sources::energy_sources(&self.config, &prom_client)
            .unwrap()
            .sources;
        let view = LedgerView::shared();
        let ledger = Ledger::new(
            self.config.settings(),
            Sources {
                energy,
                metrics: Some(Box::new(PromMetrics::new(prom_client))),
                cluster: Box::new(cluster(self.state.clone())),
            },
            self.config.product_defs(),
            self.config.request_queries(),
            view.clone(),
        );
        (ledger, view)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_books_real_prometheus_and_api_server_data_as_computed_by_hand() {
    // History: the Kepler fixture at 90 % at t0 and 100 % at t1 (so every delta is 10 % of
    // the fixture value), and a vLLM counter going from 9000 to 9600 requests.
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut history = kepler_history(t0, t1);
    history.series(
        "vllm:request_success_total",
        &[
            ("namespace", "ml-serving"),
            ("pod", "bert-base-serve-6d8f7b9c5d-k2m4x"),
            ("finished_reason", "stop"),
        ],
        &[(t0, 9000.0), (t1, 9600.0)],
    );
    let pods: serde_json::Value =
        serde_json::from_str(&fixture("kube/podlist-gpu-node.json")).unwrap();
    let world = World::start(history, pods["items"].as_array().unwrap().clone()).await;
    let (mut ledger, view) = world.ledger(KubeCluster::new);
    ledger.run_interval(Seconds(t0 as f64)).await;
    let report = ledger.run_interval(Seconds(t1 as f64)).await;
    assert!(report.emissions.conservation_error() < 1e-12);
    assert!(report.transfers.conservation_error() < 1e-12);

    let text = encode_metrics(&view, Format::PrometheusText).unwrap();
    let hand = ByHand::compute();
    train_series_match(&text, &hand);
    serve_and_product_series_match(&text, &hand);
    // Platform pods keep their energy series but carry no carbon of their own.
    assert!(
        value(
            &text,
            "jobcarbon_workload_energy_joules_total",
            &[("namespace", "kube-system")]
        ) > 0.0
    );
    assert_eq!(
        value(
            &text,
            "jobcarbon_workload_asce_grams_total",
            &[("namespace", "kube-system")]
        ),
        0.0
    );
    // Every workload's ASCe is the sum of its terms.
    for (labels, asce) in samples(&text, "jobcarbon_workload_asce_grams_total") {
        let terms = value(
            &text,
            "jobcarbon_workload_carbon_grams_total",
            &[("workload", &labels["workload"])],
        );
        close(terms, asce, &labels["workload"]);
    }
    // The sources read fine.
    assert!(text.contains("jobcarbon_source_last_success_timestamp_seconds{source=\"kepler\"}"));
    assert!(!text.contains("jobcarbon_source_errors_total{"), "{text}");

    world.driver.abort();
}

/// The hand computation from the fixture (10 % deltas).
#[derive(Clone, Copy)]
struct ByHand {
    train_idle: f64,
    train_operational: f64,
    /// The platform pods' carbon (with their idle share), split equally over the two jobs.
    platform: f64,
    train_asce: f64,
    model_epc: f64,
    serve_asce: f64,
}

impl ByHand {
    fn compute() -> Self {
        let train = TRAIN_JOULES;
        let serve = [12073.4336319, 1210.3255526, 54541.2003];
        let coredns = 811.2450671 + 70.1220958;
        let kepler_pod = 1598.7602114 + 120.4775013;
        let idle = 72673.7515945 + 13569.0511187 + 84268.6053 + 28027.6475;
        let e_train: f64 = train.iter().sum();
        let e_serve: f64 = serve.iter().sum();
        let e_all = e_train + e_serve + coredns + kepler_pod;
        let idle_of = |e: f64| idle * e / e_all; // nodeIdle: by-energy
        let k = 1.1 * 400.0 / 3.6e6; // g per J
        // Platform pods' carbon (with their idle share) split equally over the two jobs.
        let platform = k * (coredns + kepler_pod + idle_of(coredns) + idle_of(kepler_pod));
        let train_operational = k * (e_train + idle_of(e_train));
        let train_asce = train_operational + platform / 2.0;
        // bert-base's EPC is the training job's ASCe; serving takes EPC × 60 s / 1 y.
        let model_epc = train_asce * 60.0 / (365.0 * 86_400.0);
        let serve_operational = k * (e_serve + idle_of(e_serve));
        let serve_asce = serve_operational + platform / 2.0 + model_epc;
        Self {
            train_idle: idle_of(e_train),
            train_operational,
            platform,
            train_asce,
            model_epc,
            serve_asce,
        }
    }
}

fn train_series_match(text: &str, hand: &ByHand) {
    let ByHand {
        train_idle,
        train_operational,
        platform,
        train_asce,
        ..
    } = *hand;
    // One pod per workload in the fixture: the workload series is the pod's.
    let train_pod = ("workload", "Job/bert-base-train");
    for (component, joules) in ["cpu", "dram", "gpu"].iter().zip(TRAIN_JOULES) {
        close(
            value(
                text,
                "jobcarbon_workload_energy_joules_total",
                &[train_pod, ("component", component)],
            ),
            joules,
            &format!("train {component} energy"),
        );
    }
    close(
        value(
            text,
            "jobcarbon_workload_energy_joules_total",
            &[train_pod, ("component", "idle_share")],
        ),
        train_idle,
        "train idle share",
    );
    close(
        value(
            text,
            "jobcarbon_workload_carbon_grams_total",
            &[train_pod, ("term", "operational")],
        ),
        train_operational,
        "train operational",
    );
    close(
        value(
            text,
            "jobcarbon_workload_carbon_grams_total",
            &[train_pod, ("term", "platform_operational")],
        ),
        platform / 2.0,
        "train platform tax",
    );
    close(
        value(text, "jobcarbon_workload_asce_grams_total", &[train_pod]),
        train_asce,
        "train ASCe",
    );
}

fn serve_and_product_series_match(text: &str, hand: &ByHand) {
    let ByHand {
        train_asce,
        model_epc,
        serve_asce,
        ..
    } = *hand;
    let serve_pod = ("workload", "Deployment/bert-base-serve");
    close(
        value(
            text,
            "jobcarbon_workload_carbon_grams_total",
            &[serve_pod, ("term", "model_epc")],
        ),
        model_epc,
        "serve model EPC share",
    );
    close(
        value(text, "jobcarbon_workload_asce_grams_total", &[serve_pod]),
        serve_asce,
        "serve ASCe",
    );
    close(
        value(
            text,
            "jobcarbon_product_epc_grams",
            &[("product", "bert-base"), ("part", "measured")],
        ),
        train_asce,
        "bert-base measured EPC",
    );
    close(
        value(
            text,
            "jobcarbon_inference_requests_total",
            &[("product", "bert-base")],
        ),
        600.0,
        "requests",
    );
    close(
        value(
            text,
            "jobcarbon_inference_carbon_grams_per_request",
            &[("product", "bert-base"), ("namespace", "ml-serving")],
        ),
        serve_asce / 600.0,
        "grams per request",
    );
}

/// The labels of `workload`'s ASCe series include `want`.
fn assert_labels(text: &str, workload: &str, want: &[(&str, &str)]) {
    let (labels, _) = samples(text, "jobcarbon_workload_asce_grams_total")
        .into_iter()
        .find(|(l, _)| l.get("workload").map(String::as_str) == Some(workload))
        .expect("the workload has its series");
    for (k, v) in want {
        assert_eq!(
            labels.get(*k).map(String::as_str),
            Some(*v),
            "{workload} label {k}"
        );
    }
}

/// A training pod that lived only inside a gap: the API server (and so the watchers) never
/// had it, kube-state-metrics' history in Prometheus does (the KSM fixture, as KSM exposes
/// these pods with the documented allow-list). Intervals booked after the fact attribute it
/// from that history with the same labels and energy as the watched pod of the test above;
/// without the history its energy is `unallocated{reason="unknown_pod"}`, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_lived_only_in_the_gap_is_attributed_from_kube_state_metrics_history() {
    let now = unix_now();
    let (t0, t1) = (now - 120, now - 60);
    let mut history = kepler_history(t0, t1);
    history
        .exposition_at(
            &fixture("kube-state-metrics/ksm-v2-pods-gpu-node.prom"),
            &[(t0, 1.0), (t1, 1.0)],
        )
        .unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&fixture("kube/podlist-gpu-node.json")).unwrap();
    let train_pod = "bert-base-train-7x9kq";
    let pods: Vec<serde_json::Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["name"] != train_pod)
        .cloned()
        .collect();
    let world = World::start(history, pods).await;
    // Both intervals ended more than one interval before "now": a backfill.
    let clock = ManualClock::new(Seconds((now + 30) as f64));
    let (mut with_ksm, view) = world.ledger(|state| {
        KubeCluster::new(state).with_history(
            KsmHistory::new(world.prom_client()),
            clock.clone(),
            Seconds(60.0),
        )
    });
    let (mut without, view_without) = world.ledger(KubeCluster::new);
    for at in [t0, t1] {
        with_ksm.run_interval(Seconds(at as f64)).await;
        without.run_interval(Seconds(at as f64)).await;
    }

    let text = encode_metrics(&view, Format::PrometheusText).unwrap();
    let pod = ("workload", "Job/bert-base-train");
    gap_pod_is_booked_like_the_watched_one(&text);

    // Without the history: the pod is unknown and its energy's carbon is unallocated.
    let text = encode_metrics(&view_without, Format::PrometheusText).unwrap();
    assert_eq!(
        value(&text, "jobcarbon_workload_energy_joules_total", &[pod]),
        0.0
    );
    let k = 1.1 * 400.0 / 3.6e6;
    close(
        value(
            &text,
            "jobcarbon_unallocated_grams_total",
            &[("reason", "unknown_pod")],
        ),
        k * TRAIN_JOULES.iter().sum::<f64>(),
        "unknown_pod without KSM history",
    );
    world.driver.abort();
}

/// With KSM history: the gap pod has the watched pod's energy and labels, nothing is unknown.
fn gap_pod_is_booked_like_the_watched_one(text: &str) {
    let train = "Job/bert-base-train";
    let pod = ("workload", train);
    for (component, joules) in ["cpu", "dram", "gpu"].iter().zip(TRAIN_JOULES) {
        close(
            value(
                text,
                "jobcarbon_workload_energy_joules_total",
                &[pod, ("component", component)],
            ),
            joules,
            &format!("train {component} energy from KSM"),
        );
    }
    assert_labels(
        text,
        train,
        &[
            ("namespace", "ml-training"),
            ("workload", "Job/bert-base-train"),
            ("phase", "training"),
            ("product", "bert-base"),
        ],
    );
    assert!(
        value(
            text,
            "jobcarbon_product_epc_grams",
            &[("product", "bert-base"), ("part", "measured")],
        ) > 0.0
    );
    assert_eq!(
        value(
            text,
            "jobcarbon_unallocated_grams_total",
            &[("reason", "unknown_pod")]
        ),
        0.0
    );
}

//! Inference requests booked per series, through the ledger and a real Prometheus: two vLLM
//! products in one namespace, counts from before the ledger started, a replica scaled down, a
//! pod restart (counter reset), a new replica, an undeduplicated HA pair, and a ledger restart
//! from its resume state. Booked requests must equal the requests served while the ledger ran,
//! as Prometheus scraped them.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use jobcarbon_core::{ClusterSnapshot, Phase, PodFacts, ProductDef, ProductType, Seconds};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{ClusterError, ClusterSource, Ledger, Settings, Sources};
use jobcarbon_telemetry::prom::{PromClient, PromConfig, PromMetrics};
use jobcarbon_telemetry::{RequestPreset, RequestQuery};
use jobcarbon_testkit::prometheus::{History, PromServer, unix_now};
use std::collections::BTreeMap;
use std::time::Duration;

const STEP: i64 = 60;

/// The serving pods as the API server lists them at each time: chat-b is scaled down after
/// t3, chat-c is created between t3 and t4.
struct Serving {
    t0: i64,
}

#[async_trait]
impl ClusterSource for Serving {
    async fn snapshot(&self, at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        let t = at.value() as i64 - self.t0;
        let pod = |name: &str, product: &str, created: i64| {
            PodFacts::new("serve", name)
                .workload("Deployment", product)
                .phase(Phase::Inference)
                .product(Some(product))
                .node("n1")
                .created(Seconds((self.t0 + created) as f64))
        };
        let mut pods = vec![
            pod("chat-a", "chat", -86_400),
            pod("embed-a", "embed", -86_400),
        ];
        if t <= 3 * STEP {
            pods.push(pod("chat-b", "chat", -86_400));
        }
        if t > 3 * STEP {
            pods.push(pod("chat-c", "chat", 3 * STEP + 10));
        }
        Ok(ClusterSnapshot {
            pods,
            products: ["chat", "embed"]
                .map(|p| ProductDef::new(p, ProductType::Model, Seconds::from_years(1.0)))
                .to_vec(),
            ..Default::default()
        })
    }
}

/// (namespace, pod, points) of one request counter.
type CounterSeries<'a> = (&'a str, &'a str, Vec<(i64, f64)>);

/// Per-pod counters, scraped by both replicas of an HA pair (the second 0.2 % behind).
fn history(t0: i64) -> History {
    let at = |i: i64| t0 + i * STEP;
    let mut h = History::new();
    let series: [CounterSeries; 4] = [
        // Counted long before the ledger started; restarts between t3 and t4 (30 served
        // since the restart at t4).
        (
            "chat-a",
            "chat",
            vec![
                (at(0), 50_000.0),
                (at(1), 50_100.0),
                (at(2), 50_200.0),
                (at(3), 50_300.0),
                (at(4), 30.0),
                (at(5), 130.0),
                (at(6), 230.0),
            ],
        ),
        // Scaled down after t3: its series vanishes.
        (
            "chat-b",
            "chat",
            vec![
                (at(0), 40_000.0),
                (at(1), 40_100.0),
                (at(2), 40_200.0),
                (at(3), 40_300.0),
            ],
        ),
        // A new replica: its counter starts at 0 when it starts.
        (
            "chat-c",
            "chat",
            vec![(at(4), 80.0), (at(5), 180.0), (at(6), 280.0)],
        ),
        // Another product in the same namespace.
        (
            "embed-a",
            "embed",
            (0..=6).map(|i| (at(i), 9_000.0 + 7.0 * i as f64)).collect(),
        ),
    ];
    for (pod, model, points) in series {
        for (replica, factor) in [("prometheus-k8s-0", 1.0), ("prometheus-k8s-1", 0.998)] {
            let lagging: Vec<(i64, f64)> = points.iter().map(|(t, v)| (*t, v * factor)).collect();
            h.series(
                "vllm:request_success_total",
                &[
                    ("namespace", "serve"),
                    ("pod", pod),
                    ("model_name", model),
                    ("finished_reason", "stop"),
                    ("prometheus_replica", replica),
                ],
                &lagging,
            );
        }
    }
    h
}

fn ledger(url: &str, t0: i64) -> Ledger {
    let mut config = PromConfig::new(url);
    config.timeout = Duration::from_secs(5);
    let client = PromClient::new(config).unwrap();
    let preset = RequestQuery::Preset {
        preset: RequestPreset::Vllm,
        matchers: BTreeMap::new(),
    };
    let mut settings =
        Settings::simple(jobcarbon_core::Pue(1.1), jobcarbon_core::GramsPerKwh(400.0));
    settings.interval = Seconds(STEP as f64);
    Ledger::new(
        settings,
        Sources {
            energy: Vec::new(),
            metrics: Some(Box::new(PromMetrics::new(client))),
            cluster: Box::new(Serving { t0 }),
        },
        Vec::new(),
        BTreeMap::from([
            ("chat".to_owned(), preset.clone()),
            ("embed".to_owned(), preset),
        ]),
        LedgerView::shared(),
    )
}

fn requests(ledger: &Ledger, product: &str) -> f64 {
    ledger.state().products[product].requests_total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_booked_equal_requests_served() {
    let t0 = unix_now() - 7 * STEP - 30;
    let h = history(t0);
    let prom = tokio::task::spawn_blocking(move || PromServer::builder().history(&h).start())
        .await
        .unwrap()
        .unwrap();
    let at = |i: i64| Seconds((t0 + i * STEP) as f64);

    let mut first = ledger(&prom.url(), t0);
    for i in 0..=3 {
        first.run_interval(at(i)).await;
    }
    // chat: a and b +100 each per interval; embed +7. Nothing from before t0.
    assert_eq!(requests(&first, "chat"), 600.0);
    assert_eq!(requests(&first, "embed"), 21.0);

    // The ledger restarts from its resume state (what a checkpoint holds).
    let resume = first.resume_state();
    drop(first);
    let mut second = ledger(&prom.url(), t0);
    second.restore(resume);
    for i in 4..=6 {
        second.run_interval(at(i)).await;
    }
    // t3→t4: a restarted (30), b scaled down (nothing), c new since t3 (80); then +100 each
    // for a and c twice.
    let served_chat = 600.0 + 30.0 + 80.0 + 2.0 * 200.0;
    let booked = requests(&second, "chat");
    assert!(
        (booked - served_chat).abs() <= 0.01 * served_chat,
        "chat: booked {booked}, served {served_chat}"
    );
    assert_eq!(requests(&second, "embed"), 42.0);
}

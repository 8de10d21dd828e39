//! `/api/v1/allocation` answered from a real Prometheus holding hand-written history of the
//! ledger's own counters (loaded with `promtool tsdb create-blocks-from openmetrics`), checked
//! against hand-computed windows: a window starting before the data, steps, every aggregate,
//! a counter reset, a series born inside the window, a window starting during a ledger outage,
//! an HA replica duplicate, another ledger's series, bad parameters, and Prometheus failures.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use http_body_util::BodyExt;
use jobcarbon_core::Seconds;
use jobcarbon_exporter::{router, router_with};
use jobcarbon_ledger::LedgerView;
use jobcarbon_ledger::allocation_prom::PromHistory;
use jobcarbon_telemetry::prom::{PromClient, PromConfig};
use jobcarbon_testkit::prometheus::{History, PromServer, unix_now};
use serde_json::Value;
use tower::ServiceExt;

const ID: &str = "jc/jobcarbon";
const CARBON: &str = "jobcarbon_workload_carbon_grams_total";
const ENERGY: &str = "jobcarbon_workload_energy_joules_total";
const UNALLOCATED: &str = "jobcarbon_unallocated_grams_total";

async fn get(app: &axum::Router, path: &str) -> (u16, String, String) {
    let response = app
        .clone()
        .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let source = response
        .headers()
        .get("x-jobcarbon-source")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), source)
}

async fn json(app: &axum::Router, path: &str) -> Value {
    let (status, body, _) = get(app, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Minutes of the ledger outage: no scrape from 70 to 85 min; it restored its state, so the
/// counters carry on (what it booked meanwhile shows at 86 min).
const OUTAGE: std::ops::RangeInclusive<i64> = 70..=85;

/// One point a minute from `from` to `to` minutes after `t0`, `value(k)` at minute k, none
/// during the [`OUTAGE`].
fn minutes(t0: i64, from: i64, to: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (from..=to)
        .filter(|k| !OUTAGE.contains(k))
        .map(|k| (t0 + 60 * k, value(k)))
        .collect()
}

fn workload<'a>(
    ns: &'a str,
    workload: &'a str,
    pod: &'a str,
    phase: &'a str,
    product: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("namespace", ns),
        ("workload", workload),
        ("pod", pod),
        ("phase", phase),
        ("product", product),
        ("ledger", ID),
    ]
}

fn with<'a>(
    mut labels: Vec<(&'a str, &'a str)>,
    k: &'a str,
    v: &'a str,
) -> Vec<(&'a str, &'a str)> {
    labels.push((k, v));
    labels
}

/// Two hours of the ledger's counters from `t0`, one scrape a minute:
/// - `ml/Job/train` (training, bert): operational 1 g/min, embodied_system 0.5 g/min,
///   energy cpu 100 J/min + gpu 200 J/min;
/// - `serve/Deployment/api` (inference, bert): model_epc 2 g/min, its series born at 30 min
///   (first sample 2 g at 31 min);
/// - `ml/Job/prep` (data-prep, no product): operational 3 g/min, reset at 60 min (a restart
///   without restore: 180 g, then 3 g at 61 min);
/// - unallocated node_idle 0.25 g/min, given twice (an HA replica pair), unknown_pod 0;
/// - another ledger's series, 1000 g/min, never counted.
fn history(t0: i64) -> History {
    let mut h = History::new();
    let train = workload("ml", "Job/train", "train-0", "training", "bert");
    h.series(
        CARBON,
        &with(train.clone(), "term", "operational"),
        &minutes(t0, 0, 120, |k| k as f64),
    );
    h.series(
        CARBON,
        &with(train.clone(), "term", "embodied_system"),
        &minutes(t0, 0, 120, |k| 0.5 * k as f64),
    );
    let measured = with(train.clone(), "source", "measured");
    h.series(
        ENERGY,
        &with(measured.clone(), "component", "cpu"),
        &minutes(t0, 0, 120, |k| 100.0 * k as f64),
    );
    h.series(
        ENERGY,
        &with(measured, "component", "gpu"),
        &minutes(t0, 0, 120, |k| 200.0 * k as f64),
    );
    let api = workload("serve", "Deployment/api", "api-0", "inference", "bert");
    h.series(
        CARBON,
        &with(api, "term", "model_epc"),
        &minutes(t0, 31, 120, |k| 2.0 * (k - 30) as f64),
    );
    let prep = workload("ml", "Job/prep", "prep-0", "data-prep", "");
    h.series(
        CARBON,
        &with(prep, "term", "operational"),
        &minutes(t0, 0, 120, |k| {
            if k <= 60 {
                3.0 * k as f64
            } else {
                3.0 * (k - 60) as f64
            }
        }),
    );
    for replica in ["prom-a", "prom-b"] {
        h.series(
            UNALLOCATED,
            &[
                ("reason", "node_idle"),
                ("ledger", ID),
                ("prometheus_replica", replica),
            ],
            &minutes(t0, 0, 120, |k| 0.25 * k as f64),
        );
    }
    h.series(
        UNALLOCATED,
        &[("reason", "unknown_pod"), ("ledger", ID)],
        &minutes(t0, 0, 120, |_| 0.0),
    );
    let other = [
        ("namespace", "ml"),
        ("workload", "Job/train"),
        ("pod", "train-0"),
        ("phase", "training"),
        ("product", "bert"),
        ("term", "operational"),
        ("ledger", "other/jobcarbon"),
    ];
    h.series(CARBON, &other, &minutes(t0, 0, 120, |k| 1000.0 * k as f64));
    h
}

struct Fixture {
    _prom: PromServer,
    app: axum::Router,
    t0: i64,
}

fn fixture() -> Fixture {
    // Four hours ago on the hour, so 1 h steps fall on minutes of the data.
    let t0 = unix_now().div_euclid(3600) * 3600 - 4 * 3600;
    let prom = PromServer::builder().history(&history(t0)).start().unwrap();
    let client = PromClient::new(PromConfig::new(prom.url())).unwrap();
    // A 1 h lookback searches the baseline a minute apart: on the samples' minutes.
    let source = PromHistory::new(client, ID, Seconds::from_hours(1.0));
    let app = router_with(LedgerView::shared(), Some(source));
    Fixture {
        _prom: prom,
        app,
        t0,
    }
}

fn item<'a>(answer: &'a Value, field: &str, value: &Value) -> &'a Value {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| &i["key"][field] == value)
        .unwrap_or_else(|| panic!("no {field}={value} in {answer}"))
}

fn asce(answer: &Value, field: &str, value: &str) -> f64 {
    item(answer, field, &Value::from(value))["asce_g"]
        .as_f64()
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Σ items + unallocated = total, for one window or step.
fn conserves(answer: &Value) {
    let items: f64 = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["asce_g"].as_f64().unwrap())
        .sum();
    let unallocated: f64 = answer["unallocated"]
        .as_object()
        .unwrap()
        .values()
        .map(|g| g.as_f64().unwrap())
        .sum();
    let total = answer["total"]["asce_g"].as_f64().unwrap();
    assert!(close(items + unallocated, total), "{answer}");
}

/// The allocation by workload over `(t0 + from, t0 + to]`.
async fn by_workload(app: &axum::Router, t0: i64, from: i64, to: i64) -> Value {
    let window = format!("{},{}", t0 + from, t0 + to);
    json(
        app,
        &format!("/api/v1/allocation?window={window}&aggregate=workload"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn allocation_from_prometheus_history_matches_hand_computed_windows() {
    let f = fixture();
    let (t0, app) = (f.t0, &f.app);

    // The whole two hours by workload.
    let all = by_workload(app, t0, 0, 7200).await;
    assert_eq!(all["source"], "prometheus");
    assert!(close(asce(&all, "workload", "Job/train"), 180.0), "{all}");
    let train = item(&all, "workload", &Value::from("Job/train"));
    assert!(close(train["energy_j"].as_f64().unwrap(), 300.0 * 120.0));
    assert!(close(
        train["terms"]["operational"].as_f64().unwrap(),
        120.0
    ));
    assert!(close(
        train["terms"]["embodied_system"].as_f64().unwrap(),
        60.0
    ));
    // Born at 30 min: counted from zero.
    assert!(close(asce(&all, "workload", "Deployment/api"), 180.0));
    // Reset at 60 min: 180 g before, 180 g after.
    assert!(close(asce(&all, "workload", "Job/prep"), 360.0));
    // The HA pair counted once; the other ledger not at all.
    assert!(
        close(all["unallocated"]["node_idle"].as_f64().unwrap(), 30.0),
        "{all}"
    );
    assert!(
        close(all["total"]["asce_g"].as_f64().unwrap(), 750.0),
        "{all}"
    );
    conserves(&all);

    // A window starting an hour before the data: counts from the first sample.
    let early = by_workload(app, t0, -3600, 1800).await;
    assert!(
        close(asce(&early, "workload", "Job/train"), 45.0),
        "{early}"
    );
    assert!(close(asce(&early, "workload", "Job/prep"), 90.0));
    assert!(
        early["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["key"]["workload"] != "Deployment/api")
    );
    assert!(close(
        early["unallocated"]["node_idle"].as_f64().unwrap(),
        7.5
    ));
    conserves(&early);

    // Edges between scrapes read the last sample at or before them (no extrapolation):
    // (10.5 min, 40.5 min] holds the samples of minutes 11 to 40.
    let between = by_workload(app, t0, 630, 2430).await;
    assert!(
        close(asce(&between, "workload", "Job/train"), 45.0),
        "{between}"
    );
    assert!(close(asce(&between, "workload", "Deployment/api"), 20.0));

    // A window starting during the outage: the baseline is the last value before it (69 min),
    // not zero; what was booked during the outage counts.
    let outage = by_workload(app, t0, 4800, 7200).await;
    assert!(
        close(asce(&outage, "workload", "Job/train"), 51.0 + 25.5),
        "{outage}"
    );
    assert!(close(asce(&outage, "workload", "Job/prep"), 180.0 - 27.0));
    assert!(close(
        asce(&outage, "workload", "Deployment/api"),
        180.0 - 78.0
    ));
    assert!(close(
        outage["unallocated"]["node_idle"].as_f64().unwrap(),
        30.0 - 17.25
    ));
    conserves(&outage);

    // A duration ending now (the wall clock) covers all of it.
    let recent = json(app, "/api/v1/allocation?window=5h&aggregate=namespace").await;
    assert!(close(asce(&recent, "namespace", "ml"), 540.0), "{recent}");
    assert!(close(asce(&recent, "namespace", "serve"), 180.0));
    assert!(close(recent["total"]["asce_g"].as_f64().unwrap(), 750.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_and_every_aggregate_from_prometheus() {
    let f = fixture();
    let (t0, app) = (f.t0, &f.app);
    let stepped = json(
        app,
        &format!(
            "/api/v1/allocation?window={},{}&aggregate=workload&step=1h",
            t0,
            t0 + 7200
        ),
    )
    .await;
    let steps = stepped["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    let expected = [
        // (train, prep, api, node_idle) per hour
        (90.0, 180.0, 60.0, 15.0),
        (90.0, 180.0, 120.0, 15.0),
    ];
    for (step, (train, prep, api, idle)) in steps.iter().zip(expected) {
        assert!(close(asce(step, "workload", "Job/train"), train), "{step}");
        assert!(close(asce(step, "workload", "Job/prep"), prep), "{step}");
        assert!(
            close(asce(step, "workload", "Deployment/api"), api),
            "{step}"
        );
        assert!(close(
            step["unallocated"]["node_idle"].as_f64().unwrap(),
            idle
        ));
        conserves(step);
    }
    assert!(close(stepped["total"]["asce_g"].as_f64().unwrap(), 750.0));

    let window = format!("{},{}", t0, t0 + 7200);
    let by = |field: &'static str| format!("/api/v1/allocation?window={window}&aggregate={field}");
    let phase = json(app, &by("phase")).await;
    assert!(close(asce(&phase, "phase", "training"), 180.0));
    assert!(close(asce(&phase, "phase", "data-prep"), 360.0));
    assert!(close(asce(&phase, "phase", "inference"), 180.0));
    let product = json(app, &by("product")).await;
    assert!(close(asce(&product, "product", "bert"), 360.0), "{product}");
    // No product: null.
    assert!(close(
        item(&product, "product", &Value::Null)["asce_g"]
            .as_f64()
            .unwrap(),
        360.0
    ));
    let all = json(app, &format!("/api/v1/allocation?window={window}")).await;
    let api = item(&all, "workload", &Value::from("Deployment/api"));
    assert_eq!(api["key"]["namespace"], "serve");
    assert_eq!(api["key"]["phase"], "inference");
    assert_eq!(api["key"]["product"], "bert");
    assert!(close(api["terms"]["model_epc"].as_f64().unwrap(), 180.0));
    for answer in [&phase, &product, &all] {
        conserves(answer);
    }

    let (status, csv, source) = get(app, &format!("{}&format=csv", by("namespace"))).await;
    assert_eq!((status, source.as_str()), (200, "prometheus"));
    let ml = csv.lines().find(|l| l.contains(",ml,")).unwrap();
    assert_eq!(
        ml.split(',').nth(8).map(|v| v.parse::<f64>().unwrap()),
        Some(540.0),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_and_prometheus_failures_are_json_errors() {
    let f = fixture();
    for (query, parameter) in [
        ("window=yesterday", "window"),
        ("window=1h&aggregate=team", "aggregate"),
        ("window=1h&step=0s", "step"),
        ("window=365d&step=1m", "step"),
        ("aggregate=namespace", "window"),
        ("window=1h&format=xml", "format"),
    ] {
        let (status, body, _) = get(&f.app, &format!("/api/v1/allocation?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["parameter"], parameter, "{query}: {body}");
    }

    // Nothing listens: 503. Something that is not Prometheus: 502. Never a panic.
    let unreachable = PromClient::new(PromConfig::new("http://127.0.0.1:9")).unwrap();
    let app = router_with(
        LedgerView::shared(),
        Some(PromHistory::new(unreachable, ID, Seconds::from_days(7.0))),
    );
    let (status, body, _) = get(&app, "/api/v1/allocation?window=1h").await;
    assert_eq!(status, 503, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["source"], "prometheus");
    let wrong =
        PromClient::new(PromConfig::new(format!("{}/not-prometheus", f._prom.url()))).unwrap();
    let app = router_with(
        LedgerView::shared(),
        Some(PromHistory::new(wrong, ID, Seconds::from_days(7.0))),
    );
    let (status, body, _) = get(&app, "/api/v1/allocation?window=1h").await;
    assert_eq!(status, 502, "{body}");

    // Without Prometheus: the in-memory history answers, and says so.
    let memory = json(
        &router(LedgerView::shared()),
        "/api/v1/allocation?window=1h",
    )
    .await;
    assert_eq!(memory["source"], "memory");
}

fn train_workload() -> jobcarbon_core::WorkloadRef {
    jobcarbon_core::WorkloadRef::new("ml", "Job", "train")
}

fn operational(g: f64) -> jobcarbon_core::Terms {
    use jobcarbon_core::{Grams, Term, Terms};
    Terms::of(Term::Operational, Grams(g))
}

/// A state holding one running pod of `Job/train` with `g` grams.
fn pod_state(g: f64) -> jobcarbon_ledger::state::LedgerState {
    use jobcarbon_core::{Phase, PodKey};
    use jobcarbon_ledger::state::{LedgerState, PodAccount};
    let mut state = LedgerState::default();
    let at = Seconds(unix_now() as f64);
    state.pods.insert(
        PodKey::new("ml", "train-0"),
        PodAccount {
            workload: train_workload(),
            phase: Phase::Training,
            product: Some("bert".to_owned()),
            node: None,
            platform: false,
            running: true,
            ever_ran: true,
            energy: Default::default(),
            carbon: operational(g),
            first_seen: at,
            last_seen: at,
            finished_at: None,
            estimated: Default::default(),
            run: None,
        },
    );
    state
}

/// A state holding `Job/train` rolled up with `g` grams, and g/10 of node idle unallocated.
fn rolled_up_state(g: f64) -> jobcarbon_ledger::state::LedgerState {
    use jobcarbon_core::{Grams, Phase, UnallocatedReason};
    use jobcarbon_ledger::state::{LedgerState, RollupAccount, RollupKey};
    let mut state = LedgerState::default();
    let rollup_key = RollupKey {
        workload: train_workload(),
        phase: Phase::Training,
        product: Some("bert".to_owned()),
    };
    state.rolled_up.insert(
        rollup_key,
        RollupAccount {
            carbon: operational(g),
            pods: 1,
            ..RollupAccount::default()
        },
    );
    state
        .unallocated
        .insert(UnallocatedReason::NodeIdle, Grams(g / 10.0));
    state
}

/// The ledger's real exposition scraped by a real Prometheus (1 s): a pod's series ends after
/// its grace period while its grams move into the workload's roll-up in the same scrape, then
/// the counters reset (a restart without restore). Counted per series that would be
/// 20 + 25 + 4 g; the key's sum gives what was booked: 25 + 4 g.
#[tokio::test(flavor = "multi_thread")]
async fn a_scraped_ledger_rolling_up_and_resetting_is_counted_once() {
    let view = LedgerView::shared();
    view.write().unwrap().identity = Some(ID.to_owned());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = jobcarbon_exporter::spawn(listener, view.clone());
    let prom = PromServer::builder()
        .scrape(target, std::time::Duration::from_secs(1))
        .start()
        .unwrap();
    let start = unix_now() - 1;
    for state in [
        pod_state(10.0),
        pod_state(20.0),
        rolled_up_state(20.0),
        rolled_up_state(25.0),
        rolled_up_state(4.0),
    ] {
        view.write().unwrap().state = state.into();
        // Three scrapes of each state.
        tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    }
    let client = PromClient::new(PromConfig::new(prom.url())).unwrap();
    let app = router_with(
        LedgerView::shared(),
        Some(PromHistory::new(client, ID, Seconds::from_days(7.0)).with_finest_grid(1)),
    );
    let answer = json(
        &app,
        &format!(
            "/api/v1/allocation?window={start},{}&aggregate=workload",
            unix_now()
        ),
    )
    .await;
    assert!(
        close(asce(&answer, "workload", "Job/train"), 29.0),
        "{answer}"
    );
    // node_idle: 2.0 → 2.5, reset, 0.4.
    assert!(
        close(answer["unallocated"]["node_idle"].as_f64().unwrap(), 2.9),
        "{answer}"
    );
    conserves(&answer);
    server.shutdown().await.unwrap();
}

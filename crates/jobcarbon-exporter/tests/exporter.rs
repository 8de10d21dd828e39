//! The exporter over a booked ledger state: exact DESIGN §8 names, promtool-clean exposition,
//! ASCe = Σ terms per workload, the JSON API and the health endpoints.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use http_body_util::BodyExt;
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, GramsPerKwh, GramsPerSecond, Joules,
    NodeFacts, Phase, PodFacts, ProductDef, ProductType, Pue, Seconds,
};
use jobcarbon_exporter::{Format, encode_metrics, router};
use jobcarbon_ledger::view::{LedgerView, RegionStatus};
use jobcarbon_ledger::{Conditions, IntervalInput, LedgerState, Settings, book_interval};
use std::collections::BTreeMap;
use tower::ServiceExt;

fn pod(name: &str, phase: Phase, product: Option<&str>) -> PodFacts {
    PodFacts::new("ml", name)
        .uid(name)
        .workload("Job", name)
        .phase(phase)
        .product(product)
        .node("n1")
        .reserved_share(0.5)
}

fn booked_view() -> LedgerView {
    let mut settings = Settings::simple(Pue(1.2), GramsPerKwh(400.0));
    settings.platform.overhead = GramsPerSecond::per_minute(5.0);
    // Training runs nightly from a CronJob: one workload, each Job a run.
    let train = pod("train", Phase::Training, Some("m"))
        .workload("CronJob", "train")
        .run("Job/train-29412960");
    let serve = pod("serve", Phase::Inference, Some("m"));
    let snapshot = ClusterSnapshot {
        pods: vec![train.clone(), serve.clone()],
        nodes: vec![NodeFacts {
            name: "n1".into(),
            region: None,
            instance_type: None,
            gpu_count: 0,
            gpu_model: None,
            labels: BTreeMap::new(),
            cpus: 0.0,
        }],
        products: vec![ProductDef::new("m", ProductType::Model, Seconds(3600.0))],
        invalid_products: vec![],
    };
    let conditions = BTreeMap::from([(
        "default".to_owned(),
        Conditions {
            pue: Pue(1.2),
            intensity: GramsPerKwh(400.0),
        },
    )]);
    let mut state = LedgerState::default();
    let mut history = jobcarbon_ledger::history::AllocationHistory::default();
    for (i, at) in [0.0, 30.0, 60.0].into_iter().enumerate() {
        let energy = [&train, &serve]
            .iter()
            .map(|p| EnergyDelta {
                node: "n1".into(),
                owner: EnergyOwner::Pod {
                    key: p.key.clone(),
                    container: "c".into(),
                },
                component: Component::Gpu,
                energy: Joules(1e5 * (i as f64 + 1.0)),
                estimated: false,
            })
            .collect();
        let input = IntervalInput {
            at: Seconds(at),
            snapshot: snapshot.clone(),
            energy,
            requests: BTreeMap::from([("m".to_owned(), 100.0)]),
            conditions: conditions.clone(),
            requests_unknown: Default::default(),
        };
        let (next, report) = book_interval(&state, &settings, &input);
        history.record(&jobcarbon_ledger::history::interval_delta(
            &state, &next, &report,
        ));
        state = next;
    }
    let mut view = LedgerView {
        state: state.into(),
        history: history.into(),
        ..Default::default()
    };
    view.regions.insert(
        "default".into(),
        RegionStatus::fixed(Pue(1.2), GramsPerKwh(400.0)),
    );
    view.interval_seconds.observe(0.003);
    view
}

/// `name{labels} value` lines of the exposition.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((name.to_owned(), labels, value.parse().ok()?))
        })
        .collect()
}

#[test]
fn exposition_has_the_design_names_and_asce_is_the_sum_of_terms() {
    let shared = std::sync::Arc::new(std::sync::RwLock::new(booked_view()));
    let text = encode_metrics(&shared, Format::OpenMetrics).unwrap();
    for family in [
        "jobcarbon_workload_energy_joules_total",
        "jobcarbon_workload_carbon_grams_total",
        "jobcarbon_workload_asce_grams_total",
        "jobcarbon_inference_carbon_grams_per_request",
        "jobcarbon_inference_requests_total",
        "jobcarbon_product_epc_grams",
        "jobcarbon_grid_intensity_grams_per_kwh",
        "jobcarbon_pue",
        "jobcarbon_unallocated_grams_total",
        "jobcarbon_interval_duration_seconds_bucket",
        "jobcarbon_tracked_pods",
        "jobcarbon_series",
        "jobcarbon_series_dropped_total",
        "jobcarbon_energy_joules_total",
        "jobcarbon_carbon_grams_total",
        "jobcarbon_workloads_retired_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} missing:\n{text}"
        );
    }
    assert!(text.trim_end().ends_with("# EOF"));
    assert!(
        !text.contains("job=\""),
        "the label `job` belongs to Prometheus"
    );

    let samples = samples(&text);
    let mut terms: BTreeMap<String, f64> = BTreeMap::new();
    let mut asce: BTreeMap<String, f64> = BTreeMap::new();
    for (name, labels, value) in &samples {
        // Workload series by default: no pod label.
        assert!(!labels.contains_key("pod"), "{name}{labels:?}");
        let key = || format!("{}/{}", labels["workload"], labels["phase"]);
        match name.as_str() {
            "jobcarbon_workload_carbon_grams_total" => *terms.entry(key()).or_default() += value,
            "jobcarbon_workload_asce_grams_total" => {
                asce.insert(key(), *value);
            }
            _ => {}
        }
    }
    assert_eq!(asce.len(), 2);
    for (key, total) in &asce {
        assert!(*total > 0.0);
        assert!((total - terms[key]).abs() <= 1e-9 * total, "{key}");
    }
    // 1.2 × 400 g/kWh: training used 1e5 + 2e5 J after the baseline interval... its energy
    // counter is the sum of deltas booked after the first (baseline) interval.
    let energy: f64 = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "jobcarbon_workload_energy_joules_total"
                && l["workload"] == "CronJob/train"
                && l["component"] == "gpu"
        })
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(energy, 6e5);
    let operational: f64 = samples
        .iter()
        .find(|(n, l, _)| {
            n == "jobcarbon_workload_carbon_grams_total"
                && l["workload"] == "CronJob/train"
                && l["term"] == "operational"
        })
        .map(|(_, _, v)| *v)
        .unwrap();
    assert!((operational - 6e5 * 1.2 * 400.0 / 3.6e6).abs() < 1e-9);
}

#[test]
fn the_totals_family_holds_the_workloads_and_no_series_is_only_zero() {
    let shared = std::sync::Arc::new(std::sync::RwLock::new(booked_view()));
    let samples = samples(&encode_metrics(&shared, Format::OpenMetrics).unwrap());
    let sum = |family: &str| -> f64 {
        samples
            .iter()
            .filter(|(n, _, _)| n == family)
            .map(|(_, _, v)| v)
            .sum()
    };
    // By namespace, phase, product and term: the same grams as the workload series.
    let total = sum("jobcarbon_carbon_grams_total");
    let workloads = sum("jobcarbon_workload_asce_grams_total");
    assert!(total > 0.0);
    assert!(
        (total - workloads).abs() <= 1e-9 * total,
        "{total} vs {workloads}"
    );
    for (name, labels, value) in &samples {
        if name.starts_with("jobcarbon_workload_") || name == "jobcarbon_carbon_grams_total" {
            assert!(*value > 0.0, "{name}{labels:?} is zero");
        }
    }
}

#[test]
fn pod_series_are_an_option() {
    let mut view = booked_view();
    view.pod_series = true;
    let shared = std::sync::Arc::new(std::sync::RwLock::new(view));
    let text = encode_metrics(&shared, Format::OpenMetrics).unwrap();
    let pods: std::collections::BTreeSet<String> = samples(&text)
        .into_iter()
        .filter(|(n, _, _)| n == "jobcarbon_workload_asce_grams_total")
        .map(|(_, l, _)| l["pod"].clone())
        .collect();
    assert_eq!(pods.len(), 2, "{text}");
    let series: f64 = samples(&text)
        .iter()
        .find(|(n, _, _)| n == "jobcarbon_series")
        .map(|(_, _, v)| *v)
        .unwrap();
    let exported = samples(&text)
        .iter()
        .filter(|(n, _, _)| n.starts_with("jobcarbon_workload_"))
        .count();
    assert_eq!(series, exported as f64);
}

#[test]
fn promtool_check_metrics_is_clean() {
    let shared = std::sync::Arc::new(std::sync::RwLock::new(booked_view()));
    let text = encode_metrics(&shared, Format::PrometheusText).unwrap();
    let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(&text).unwrap();
    let report = lint.output;
    assert!(lint.passed && report.trim().is_empty(), "{report}\n{text}");
}

async fn get(app: &axum::Router, path: &str) -> (u16, String) {
    let response = app
        .clone()
        .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn endpoints_serve_json_health_and_readiness() {
    let empty = LedgerView::shared();
    let app = router(empty.clone());
    assert_eq!(get(&app, "/healthz").await.0, 200);
    assert_eq!(get(&app, "/readyz").await.0, 503);
    *empty.write().unwrap() = booked_view();
    assert_eq!(get(&app, "/readyz").await.0, 200);

    let (status, body) = get(&app, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("jobcarbon_workload_asce_grams_total"));
    assert!(
        !body.contains("# EOF"),
        "plain clients get the Prometheus text format"
    );
    let response = app
        .clone()
        .oneshot(
            axum::http::Request::get("/metrics")
                .header(
                    "accept",
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).trim_end().ends_with("# EOF"));

    let (status, body) = get(&app, "/api/v1/workloads").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let workloads = json["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 2);
    for w in workloads {
        let terms: f64 = w["terms"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((w["asce_g"].as_f64().unwrap() - terms).abs() < 1e-9);
    }
    let train = workloads.iter().find(|w| w["pod"] == "train").unwrap();
    assert_eq!(train["workload"], "CronJob/train");
    assert_eq!(train["run"], "Job/train-29412960");
    // The run, listed with its own ASCe: here the whole of the CronJob's only run.
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["workload"], "CronJob/train");
    assert_eq!(runs[0]["run"], "Job/train-29412960");
    assert_eq!(runs[0]["asce_g"], train["asce_g"]);
    assert_eq!(runs[0]["energy_j"]["gpu"].as_f64().unwrap(), 6e5);

    let (status, body) = get(&app, "/api/v1/products").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["products"][0]["name"], "m");

    let (status, body) = get(&app, "/api/v1/products/m").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["measured_g"].as_f64().unwrap() > 0.0);
    assert_eq!(json["requests_total"], 300.0);
    assert!(json["grams_per_request"].as_f64().unwrap() > 0.0);

    let (status, body) = get(&app, "/api/v1/products/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("nope"));

    // Hostile path parameters: a 400 naming the parameter, never an echo of the whole input.
    let long = "a".repeat(5000);
    for bad in ["UPPER", "a%20b", "-x", long.as_str(), "%F0%9F%94%A5"] {
        let (status, body) = get(&app, &format!("/api/v1/products/{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["parameter"], "name");
        assert!(body.len() < 500, "the error does not echo the input");
    }
}

#[tokio::test]
async fn standby_is_ready_and_says_it_is_not_leader() {
    let view = LedgerView::shared();
    let app = router(view.clone());
    // Without election: no gauge, not ready before the first interval.
    assert!(!get(&app, "/metrics").await.1.contains("jobcarbon_leader"));
    view.write().unwrap().leader = Some(false);
    assert_eq!(get(&app, "/readyz").await.0, 200);
    assert!(get(&app, "/metrics").await.1.contains("jobcarbon_leader 0"));
    // A new leader is ready once it has booked an interval.
    view.write().unwrap().leader = Some(true);
    assert_eq!(get(&app, "/readyz").await.0, 503);
    let mut booked = booked_view();
    booked.leader = Some(true);
    *view.write().unwrap() = booked;
    assert_eq!(get(&app, "/readyz").await.0, 200);
    assert!(get(&app, "/metrics").await.1.contains("jobcarbon_leader 1"));
}

#[tokio::test]
async fn allocation_answers_json_csv_and_400() {
    let view = booked_view();
    let workloads_asce: f64 = view
        .state
        .pods
        .values()
        .map(|a| a.carbon.asce().value())
        .sum();
    let unallocated: f64 = view.state.unallocated.values().map(|g| g.value()).sum();
    let app = router(std::sync::Arc::new(std::sync::RwLock::new(view)));

    let (status, body) = get(
        &app,
        "/api/v1/allocation?window=1h&aggregate=workload,phase",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let a: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = a["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["key"].as_object().unwrap().len(), 2);
    let items_asce: f64 = items.iter().map(|i| i["asce_g"].as_f64().unwrap()).sum();
    let total = a["total"]["asce_g"].as_f64().unwrap();
    assert!((total - (items_asce + a["total"]["unallocated_g"].as_f64().unwrap())).abs() < 1e-9);
    assert!(
        (total - (workloads_asce + unallocated)).abs() <= 1e-9 * total,
        "{total}"
    );
    assert_eq!(
        a["window"]["end"], "1970-01-01T00:01:00Z",
        "now: the last booked interval"
    );

    let response = app
        .clone()
        .oneshot(
            axum::http::Request::get("/api/v1/allocation?window=0,60&format=csv&step=30s")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.into_body().collect().await.unwrap().to_bytes();
    let csv = String::from_utf8_lossy(&csv);
    assert!(csv.starts_with("start,end,namespace,workload,phase,product,unallocated_reason,"));
    assert!(csv.lines().count() > 2, "{csv}");

    let (status, body) = get(&app, "/api/v1/allocation?window=1h&aggregate=node").await;
    assert_eq!(status, 400);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["parameter"], "aggregate");
    assert!(e["error"].as_str().unwrap().contains("node"));
    assert_eq!(get(&app, "/api/v1/allocation").await.0, 400);

    // The web view is embedded and calls the API.
    let (status, html) = get(&app, "/").await;
    assert_eq!(status, 200);
    assert!(html.contains("<script src=\"/ui.js\">"));
    let (status, js) = get(&app, "/ui.js").await;
    assert_eq!(status, 200);
    assert!(
        js.contains("/api/v1/allocation") && !js.contains("https:"),
        "no CDN"
    );
}

//! `GET /api/v1/advice` and the forecast gauge over a hand-built view: the energy of the
//! product's re-training runs, the best start and region from the regions' forecasts, the
//! saving against starting now, 400 with `{"error", "parameter"}` for bad parameters, and the
//! `signal` label of the intensity gauge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use http_body_util::BodyExt;
use jobcarbon_core::intensity::{IntensityPoint, IntensitySeries, Signal};
use jobcarbon_core::{
    Component, GramsPerKwh, Joules, Phase, PodKey, ProductType, Pue, Seconds, Terms, WorkloadRef,
};
use jobcarbon_exporter::{Format, encode_metrics, router};
use jobcarbon_ledger::SharedView;
use jobcarbon_ledger::state::{PodAccount, ProductAccount, RollupAccount, RollupKey};
use jobcarbon_ledger::view::{LedgerView, RegionStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tower::ServiceExt;

fn now() -> f64 {
    jobcarbon_ledger::durable::wall_clock_now().value()
}

/// distilbert was re-trained twice: one run still has its pod (200 kWh), one is rolled up
/// (300 kWh): the next run is planned at their mean, 250 kWh.
fn state() -> jobcarbon_ledger::LedgerState {
    let mut state = jobcarbon_ledger::LedgerState::default();
    let run = WorkloadRef::new("ml", "Job", "retrain-d1");
    state.pods.insert(
        PodKey::new("ml", "retrain-d1-x"),
        PodAccount {
            workload: run,
            phase: Phase::Retraining,
            product: Some("distilbert".into()),
            node: Some("n1".into()),
            platform: false,
            running: false,
            ever_ran: true,
            energy: BTreeMap::from([
                (Component::Gpu, Joules::from_kwh(150.0)),
                (Component::Cpu, Joules::from_kwh(50.0)),
            ]),
            carbon: Terms::default(),
            first_seen: Seconds(0.0),
            last_seen: Seconds(0.0),
            finished_at: None,
            estimated: Default::default(),
            run: None,
        },
    );
    state.rolled_up.insert(
        RollupKey {
            workload: WorkloadRef::new("ml", "Job", "retrain-d0"),
            phase: Phase::Retraining,
            product: Some("distilbert".into()),
        },
        RollupAccount {
            energy: BTreeMap::from([(Component::Gpu, Joules::from_kwh(300.0))]),
            carbon: Terms::default(),
            pods: 1,
            estimated: Default::default(),
        },
    );
    state
        .products
        .insert("distilbert".into(), ProductAccount::new(ProductType::Model));
    state
        .products
        .insert("bert".into(), ProductAccount::new(ProductType::Model));
    state.last_booked = Some(Seconds(now()));
    state
}

/// `de` (home, PUE 1.2): 500 g/kWh for the next 3 hours, then 100 for 2 hours, then 500;
/// `fr` static at 60 g/kWh with PUE 1.5; `ca` marginal.
fn view() -> SharedView {
    let t0 = now() - 10.0;
    let mut values = [500.0; 20];
    values[3] = 100.0;
    values[4] = 100.0;
    let forecast = IntensitySeries::new(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| IntensityPoint {
                at: Seconds(t0 + 3600.0 * i as f64),
                value: GramsPerKwh(*v),
            })
            .collect(),
        Seconds(3600.0),
    );
    let mut de = RegionStatus::fixed(Pue(1.2), GramsPerKwh(500.0));
    de.forecast = Some(forecast);
    de.staleness = Some(Seconds(0.0));
    let mut ca = RegionStatus::fixed(Pue(1.1), GramsPerKwh(900.0));
    ca.signal = Signal::Marginal;
    let view = LedgerView {
        state: state().into(),
        regions: BTreeMap::from([
            ("de".to_owned(), de),
            (
                "fr".to_owned(),
                RegionStatus::fixed(Pue(1.5), GramsPerKwh(60.0)),
            ),
            ("ca".to_owned(), ca),
        ]),
        default_region: Some("de".into()),
        ..LedgerView::default()
    };
    Arc::new(RwLock::new(view))
}

async fn get(view: &SharedView, path: &str) -> (u16, Value) {
    let response = router(view.clone())
        .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-6 * want.abs().max(1.0),
        "{got} vs {want}"
    );
}

#[tokio::test]
async fn advice_picks_the_clean_window_from_the_retraining_energy() {
    let view = view();
    // Home region only: 250 kWh × 1.2 × 500 = 150 kg now; 3 h from the first point the
    // forecast drops to 100 for 2 hours: 250 × 1.2 × 100 = 30 kg, saving 120 kg (80 %).
    let (status, a) = get(
        &view,
        "/api/v1/advice?product=distilbert&duration=2h&within=24h&regions=de",
    )
    .await;
    assert_eq!(status, 200, "{a}");
    close(&a["energy"]["energy_kwh"], 250.0);
    assert_eq!(a["energy"]["runs"], 2);
    assert_eq!(a["signal"], "average");
    close(&a["now"]["grams"], 150_000.0);
    close(&a["best"]["grams"], 30_000.0);
    close(&a["saving_g"], 120_000.0);
    close(&a["saving_percent"], 80.0);
    let t0 = view.read().unwrap().regions["de"]
        .forecast
        .as_ref()
        .unwrap()
        .points[0]
        .at
        .value();
    close(&a["best"]["start_unix"], t0 + 3.0 * 3600.0);
    assert!(a["forecast"]["de"].as_array().unwrap().len() >= 12, "{a}");

    // Default regions: de first, then fr (same kind); ca is marginal and left out.
    // fr: 250 × 1.5 × 60 = 22.5 kg, now: the cleanest.
    let (status, a) = get(
        &view,
        "/api/v1/advice?product=distilbert&duration=2h&within=24h",
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["best"]["region"], "fr");
    close(&a["best"]["grams"], 22_500.0);
    close(&a["saving_g"], 150_000.0 - 22_500.0);
    assert_eq!(a["by_region"].as_array().unwrap().len(), 2);

    // A given energy wins over the booked runs.
    let (_, a) = get(
        &view,
        "/api/v1/advice?product=new&duration=1h&energy=1MWh&regions=fr",
    )
    .await;
    close(&a["energy"]["energy_j"], 3.6e9);
    close(&a["best"]["grams"], 1000.0 * 1.5 * 60.0);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let view = view();
    for (query, parameter) in [
        ("duration=2h", "product"),
        ("product=distilbert", "duration"),
        ("product=distilbert&duration=2fortnights", "duration"),
        ("product=distilbert&duration=0h", "duration"),
        ("product=distilbert&duration=2h&within=soon", "within"),
        ("product=distilbert&duration=2h&energy=5apples", "energy"),
        ("product=nope&duration=2h", "product"),
        ("product=bert&duration=2h", "energy"),
        ("product=distilbert&duration=2h&regions=mars", "regions"),
        ("product=distilbert&duration=2h&regions=de,ca", "regions"),
    ] {
        let (status, body) = get(&view, &format!("/api/v1/advice?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}

#[test]
fn the_intensity_gauge_carries_the_signal_and_forecasts_have_horizons() {
    let text = encode_metrics(&view(), Format::PrometheusText).unwrap();
    assert!(
        text.contains(
            "jobcarbon_grid_intensity_grams_per_kwh{region=\"ca\",signal=\"marginal\"} 900"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "jobcarbon_grid_intensity_grams_per_kwh{region=\"de\",signal=\"average\"} 500"
        )
    );
    for (horizon, value) in [("1h", 500), ("6h", 500), ("12h", 500)] {
        let line = format!(
            "jobcarbon_grid_intensity_forecast_grams_per_kwh{{region=\"de\",horizon=\"{horizon}\"}} {value}"
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
    // 3–5 h ahead is the clean part; 24 h is past the forecast's end: no series.
    assert!(!text.contains("horizon=\"24h\""), "{text}");
    assert!(
        !text.contains("forecast_grams_per_kwh{region=\"fr\""),
        "{text}"
    );
    let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(&text).unwrap();
    assert!(
        lint.passed && lint.output.trim().is_empty(),
        "{}",
        lint.output
    );
}

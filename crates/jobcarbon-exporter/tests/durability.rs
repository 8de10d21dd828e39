//! Outage health on the HTTP surface: stale figures stay served with a staleness gauge,
//! `/readyz` says degraded while booking is held, `/healthz` stays up; promtool-clean.

// Test and bench code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use http_body_util::BodyExt;
use jobcarbon_core::Seconds;
use jobcarbon_exporter::{Format, encode_metrics, router};
use jobcarbon_ledger::durable::wall_clock_now;
use jobcarbon_ledger::{DurabilityStatus, LedgerView};
use std::collections::BTreeMap;
use tower::ServiceExt;

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

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[tokio::test]
async fn outage_is_degraded_but_served_with_staleness() {
    let view = LedgerView::shared();
    let last_booked = Seconds((wall_clock_now().value() / 30.0).floor() * 30.0 - 300.0);
    {
        let mut v = view.write().unwrap();
        let state = std::sync::Arc::make_mut(&mut v.state);
        state.intervals_booked = 12;
        state.last_booked = Some(last_booked);
        v.durability = DurabilityStatus {
            last_booked: Some(last_booked),
            held_by: vec!["kepler".to_owned()],
            backfilled_intervals_total: 3,
            restored_from: "previous".to_owned(),
            recovered_from_error: Some("truncated".to_owned()),
            checkpoint_writes_total: 12,
            checkpoint_errors: BTreeMap::from([("io".to_owned(), 1)]),
            last_checkpoint: Some(last_booked),
            restored_state: Some(jobcarbon_ledger::durable::RestoredFrom {
                from: "checkpoint".to_owned(),
                missing: String::new(),
            }),
        };
    }
    let app = router(view.clone());
    assert_eq!(get(&app, "/healthz").await.0, 200);
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("degraded:") && body.contains("kepler"),
        "{body}"
    );

    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, 200);
    let staleness = value(&text, "jobcarbon_ledger_staleness_seconds ");
    assert!((300.0..400.0).contains(&staleness), "{staleness}");
    assert_eq!(
        value(&text, "jobcarbon_ledger_booking_held{source=\"kepler\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "jobcarbon_ledger_backfilled_intervals_total "),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "jobcarbon_checkpoint_restored_info{generation=\"previous\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "jobcarbon_checkpoint_errors_total{kind=\"io\"}"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "jobcarbon_state_restored_info{from=\"checkpoint\",missing=\"\"}"
        ),
        1.0
    );

    // Recovery: held cleared → ready again, and no held series.
    view.write().unwrap().durability.held_by.clear();
    assert_eq!(get(&app, "/readyz").await.0, 200);
    let text = encode_metrics(&view, Format::PrometheusText).unwrap();
    assert!(!text.contains("jobcarbon_ledger_booking_held{"));

    let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(&text).unwrap();
    let report = lint.output;
    assert!(lint.passed && report.trim().is_empty(), "{report}");
}

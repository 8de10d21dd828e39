//! A scrape works on a snapshot of the view: the view's lock is free while the exposition is
//! encoded, booking can publish a new state in the middle of a streamed `/metrics` response,
//! and the streamed body is byte for byte [`encode_metrics`], in both formats.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use http_body_util::BodyExt;
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, GramsPerKwh, Joules, Phase, PodFacts,
    Pue, Seconds,
};
use jobcarbon_exporter::CHUNK_BYTES;
use jobcarbon_exporter::{Format, OPENMETRICS, encode_metrics, router, write_metrics};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{
    Conditions, IntervalInput, LedgerState, Settings, SharedView, book_interval,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// `pods` training pods booked over two intervals: an exposition of several chunks.
fn booked(pods: usize) -> LedgerState {
    let settings = Settings::simple(Pue(1.1), GramsPerKwh(400.0));
    let facts: Vec<PodFacts> = (0..pods)
        .map(|i| {
            PodFacts::new("ml", &format!("pod-{i}"))
                .uid(&format!("uid-{i}"))
                .workload("Job", &format!("job-{i}"))
                .phase(Phase::Training)
                .node("n1")
        })
        .collect();
    let energy: Vec<EnergyDelta> = facts
        .iter()
        .map(|p| EnergyDelta {
            node: "n1".into(),
            owner: EnergyOwner::Pod {
                key: p.key.clone(),
                container: "c".into(),
            },
            component: Component::Cpu,
            energy: Joules(1000.0),
            estimated: false,
        })
        .collect();
    let conditions = BTreeMap::from([(
        "default".to_owned(),
        Conditions {
            pue: Pue(1.1),
            intensity: GramsPerKwh(400.0),
        },
    )]);
    let mut state = LedgerState::default();
    for at in [30.0, 60.0] {
        let input = IntervalInput {
            at: Seconds(at),
            snapshot: ClusterSnapshot {
                pods: facts.clone(),
                ..Default::default()
            },
            energy: energy.clone(),
            requests: BTreeMap::new(),
            requests_unknown: Default::default(),
            conditions: conditions.clone(),
        };
        state = book_interval(&state, &settings, &input).0;
    }
    state
}

fn shared(state: LedgerState) -> SharedView {
    Arc::new(std::sync::RwLock::new(LedgerView {
        state: state.into(),
        identity: Some("monitoring/jobcarbon".to_owned()),
        ..Default::default()
    }))
}

/// Checks at every write that the view's write lock could be taken (a booking would not wait).
struct LockProbe {
    view: SharedView,
    text: String,
    writes: usize,
    blocked: usize,
}

impl std::fmt::Write for LockProbe {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.writes += 1;
        if self.view.try_write().is_err() {
            self.blocked += 1;
        }
        self.text.push_str(s);
        Ok(())
    }
}

#[test]
fn the_view_lock_is_free_while_a_scrape_encodes() {
    let view = shared(booked(200));
    let mut probe = LockProbe {
        view: view.clone(),
        text: String::new(),
        writes: 0,
        blocked: 0,
    };
    write_metrics(&view, Format::OpenMetrics, &mut probe).unwrap();
    assert!(probe.writes > 10, "{} writes", probe.writes);
    assert_eq!(
        probe.blocked, 0,
        "the lock was held during {} writes",
        probe.blocked
    );
    assert_eq!(
        probe.text,
        encode_metrics(&view, Format::OpenMetrics).unwrap()
    );
}

async fn get_metrics(view: &SharedView, accept: Option<&str>) -> axum::response::Response {
    let mut request = axum::http::Request::builder().uri("/metrics");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    router(view.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// The body's frames, in order.
async fn frames(response: axum::response::Response) -> Vec<Vec<u8>> {
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data.to_vec());
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_streamed_in_chunks_with_the_encoded_bytes() {
    let view = shared(booked(1600));
    for (accept, format) in [
        (
            Some("application/openmetrics-text; version=1.0.0"),
            Format::OpenMetrics,
        ),
        (None, Format::PrometheusText),
    ] {
        let expected = encode_metrics(&view, format).unwrap();
        assert!(expected.len() > 4 * CHUNK_BYTES, "{} bytes", expected.len());
        let response = get_metrics(&view, accept).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            format.content_type(),
            "{accept:?}"
        );
        let frames = frames(response).await;
        assert!(frames.len() > 1, "one frame of {} bytes", expected.len());
        assert!(frames.iter().all(|f| f.len() < CHUNK_BYTES + 4096));
        assert_eq!(String::from_utf8(frames.concat()).unwrap(), expected);
    }
    assert_eq!(Format::OpenMetrics.content_type(), OPENMETRICS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_publishes_while_a_scrape_is_being_streamed() {
    let view = shared(booked(1600));
    let before = encode_metrics(&view, Format::OpenMetrics).unwrap();
    let response = get_metrics(&view, Some("application/openmetrics-text")).await;
    // The encoder is blocked on the body (nobody reads it yet), mid-exposition: the ledger
    // still takes the write lock and publishes its next state at once.
    {
        let mut v = view.try_write().expect("the scrape holds no lock");
        v.state = Arc::new(LedgerState::default());
    }
    let body = String::from_utf8(frames(response).await.concat()).unwrap();
    // The scrape serves the snapshot it started from, whole.
    assert_eq!(body, before);
    assert!(body.ends_with("# EOF\n"));
    assert_ne!(encode_metrics(&view, Format::OpenMetrics).unwrap(), before);
}

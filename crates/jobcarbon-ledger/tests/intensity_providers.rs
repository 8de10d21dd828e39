//! The ledger with live intensity providers against a fake Electricity Maps and WattTime
//! (testkit `intensity_api`, answering their documented shapes): every interval is booked
//! with that interval's intensity — history when it is booked late (restart backfill), the
//! latest value when live — and a provider outage during backfill falls back, with the
//! staleness gauge saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use jobcarbon_core::intensity::Signal;
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyOwner, EnergyReading, GramsPerKwh, Joules, NodeFacts,
    PodFacts, PodKey, Pue, Seconds, Term,
};
use jobcarbon_ledger::{
    ClusterError, ClusterSource, DurableLedger, Ledger, LedgerState, LedgerView, Settings, Sources,
};
use jobcarbon_ledger::{IntensitySpec, RegionDef};
use jobcarbon_telemetry::intensity::{
    ElectricityMaps, ElectricityMapsConfig, PolledProvider, WattTime, WattTimeConfig,
};
use jobcarbon_telemetry::{EnergySource, SourceError};
use jobcarbon_testkit::intensity_api::{FakeIntensityApi, unix_now};
use std::collections::BTreeMap;
use std::time::Duration;

const STEP: i64 = 60;
const LB: f64 = 0.453_592_37;
const FALLBACK: f64 = 475.0;

/// Electricity Maps' hourly value (g/kWh) and WattTime's 5-minute value (lbs/MWh) at `t`:
/// distinct everywhere, so an interval booked with another interval's value shows.
fn em_value(t: i64) -> f64 {
    200.0 + (t.div_euclid(3600) % 97) as f64
}
fn wt_value(t: i64) -> f64 {
    900.0 + (t.div_euclid(300) % 89) as f64
}

async fn fake(now: i64) -> FakeIntensityApi {
    let api = FakeIntensityApi::start().await.unwrap();
    let hour = now - now.rem_euclid(3600);
    api.electricity_maps(
        "em-secret",
        (-30..48)
            .map(|h| (hour + h * 3600, em_value(hour + h * 3600)))
            .collect(),
    );
    let five = now - now.rem_euclid(300);
    api.watttime(
        "jobcarbon",
        "wt-secret",
        (-12 * 30..12 * 24)
            .map(|k| (five + k * 300, wt_value(five + k * 300)))
            .collect(),
    );
    api
}

struct Files(tempfile::TempDir);

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("em-token"), "em-secret\n").unwrap();
    std::fs::write(dir.path().join("wt-user"), "jobcarbon").unwrap();
    std::fs::write(dir.path().join("wt-password"), "wt-secret").unwrap();
    Files(dir)
}

fn providers(api: &FakeIntensityApi, f: &Files, backoff: f64) -> BTreeMap<String, PolledProvider> {
    let em = ElectricityMaps::new(&ElectricityMapsConfig {
        zone: "DE".into(),
        token_file: f.0.path().join("em-token"),
        url: api.url().into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let wt = WattTime::new(&WattTimeConfig {
        region: "CAISO_NORTH".into(),
        username_file: f.0.path().join("wt-user"),
        password_file: f.0.path().join("wt-password"),
        url: api.url().into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let polled = |p: Box<dyn jobcarbon_telemetry::IntensityProvider>| {
        PolledProvider::new(p, Seconds(300.0)).with_backoff_base(Seconds(backoff))
    };
    BTreeMap::from([
        ("de".to_owned(), polled(Box::new(em))),
        ("caiso".to_owned(), polled(Box::new(wt))),
    ])
}

fn settings() -> Settings {
    let mut s = Settings::simple(Pue(1.0), GramsPerKwh(400.0));
    s.interval = Seconds(STEP as f64);
    s.regions = BTreeMap::from([
        (
            "de".to_owned(),
            RegionDef {
                pue: Pue(1.0),
                intensity: IntensitySpec::Provider {
                    provider: "electricity-maps".into(),
                    signal: Signal::Average,
                    fallback: GramsPerKwh(FALLBACK),
                },
            },
        ),
        (
            "caiso".to_owned(),
            RegionDef {
                pue: Pue(1.0),
                intensity: IntensitySpec::Provider {
                    provider: "watttime".into(),
                    signal: Signal::Marginal,
                    fallback: GramsPerKwh(FALLBACK),
                },
            },
        ),
    ]);
    s.default_region = "de".into();
    s
}

/// Two training pods, one per region.
struct TwoRegions;

#[async_trait]
impl ClusterSource for TwoRegions {
    async fn snapshot(&self, _at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        let node = |name: &str, region: &str| NodeFacts {
            name: name.into(),
            region: Some(region.into()),
            instance_type: None,
            gpu_count: 0,
            gpu_model: None,
            labels: BTreeMap::new(),
            cpus: 0.0,
        };
        Ok(ClusterSnapshot {
            pods: vec![
                PodFacts::new("ml", "a").workload("Job", "a").node("n1"),
                PodFacts::new("ml", "b").workload("Job", "b").node("n2"),
            ],
            nodes: vec![node("n1", "de"), node("n2", "caiso")],
            products: Vec::new(),
            invalid_products: Vec::new(),
        })
    }
}

/// Cumulative energy growing by a different amount every interval.
fn joules(pod: &str, at: i64) -> f64 {
    let k = (at / STEP) as f64 % 10_000.0;
    if pod == "a" { 1e4 * k * k } else { 3e6 * k }
}

struct Counters;

#[async_trait]
impl EnergySource for Counters {
    fn name(&self) -> &str {
        "fake"
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let at = at.value() as i64;
        Ok(["a", "b"]
            .iter()
            .map(|pod| {
                EnergyReading::new(
                    format!("fake/{pod}"),
                    if *pod == "a" { "n1" } else { "n2" },
                    EnergyOwner::pod("ml", *pod, "c"),
                    Component::Cpu,
                    Joules(joules(pod, at)),
                    Seconds(at as f64),
                )
            })
            .collect())
    }
}

/// A restarted ledger whose checkpoint ends `gap` seconds before the current slot.
fn ledger(providers: BTreeMap<String, PolledProvider>, last_booked: i64) -> DurableLedger {
    let ledger = Ledger::new(
        settings(),
        Sources {
            energy: vec![Box::new(Counters)],
            metrics: None,
            cluster: Box::new(TwoRegions),
        },
        Vec::new(),
        BTreeMap::new(),
        LedgerView::shared(),
    )
    .with_intensity_providers(providers)
    .with_state(LedgerState {
        last_booked: Some(Seconds(last_booked as f64)),
        ..LedgerState::default()
    });
    DurableLedger::open(ledger, None, Seconds(STEP as f64)).unwrap()
}

/// Stay clear of minute boundaries, so the test's clock and the ledger's agree on which
/// intervals are live (ended less than the 300 s poll interval ago).
async fn away_from_boundaries() -> i64 {
    loop {
        let now = unix_now();
        if (3..45).contains(&now.rem_euclid(STEP)) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn operational(view: &LedgerView, pod: &str) -> f64 {
    view.state.pods[&PodKey::new("ml", pod)].carbon[Term::Operational].value()
}

#[tokio::test]
async fn both_providers_book_each_interval_with_its_own_intensity_also_when_backfilling() {
    let now = away_from_boundaries().await;
    let api = fake(now).await;
    let f = files();
    let due = now - now.rem_euclid(STEP);
    let start = due - 3 * 3600;
    let mut durable = ledger(providers(&api, &f, 30.0), start);
    let caught = durable.catch_up(Seconds(now as f64)).await;
    assert_eq!(caught.booked, (3 * 3600 / STEP) as u64);
    assert!(caught.held_by.is_empty());

    // The first interval after the restore is the counters' baseline; every later one books
    // its energy × its own intensity: history when it ended ≥ 300 s ago, else the latest.
    let (mut want_a, mut want_b) = (0.0, 0.0);
    for at in (start + 2 * STEP..=due).step_by(STEP as usize) {
        let live = now - at < 300;
        let t = if live { now } else { at - STEP };
        let (de, caiso) = (em_value(t), wt_value(t) * LB);
        want_a += (joules("a", at) - joules("a", at - STEP)) * de / 3.6e6;
        want_b += (joules("b", at) - joules("b", at - STEP)) * caiso / 3.6e6;
    }
    let view = durable.ledger().view();
    let view = view.read().unwrap();
    let (got_a, got_b) = (operational(&view, "a"), operational(&view, "b"));
    assert!(
        (got_a - want_a).abs() < 1e-9 * want_a,
        "{got_a} vs {want_a}"
    );
    assert!(
        (got_b - want_b).abs() < 1e-9 * want_b,
        "{got_b} vs {want_b}"
    );

    // Served as booked, with the kind of signal.
    let de = &view.regions["de"];
    assert_eq!(de.intensity, GramsPerKwh(em_value(now)));
    assert_eq!(de.signal, Signal::Average);
    assert_eq!(de.staleness, Some(Seconds(0.0)));
    let caiso = &view.regions["caiso"];
    assert!((caiso.intensity.value() - wt_value(now) * LB).abs() < 1e-9);
    assert_eq!(caiso.signal, Signal::Marginal);
    assert!(
        de.forecast
            .as_ref()
            .is_some_and(|f| f.end().unwrap().value() > (now + 23 * 3600) as f64)
    );

    // Three hours of backfill cost one history request each, not one per interval; the
    // latest and forecast were polled once each (cached for the poll interval).
    assert_eq!(api.count("/v3/carbon-intensity/history"), 1);
    assert_eq!(api.count("/v3/historical"), 1);
    assert_eq!(api.count("/v3/carbon-intensity/latest"), 1);
    assert_eq!(api.count("/login"), 1);
}

#[tokio::test]
async fn a_provider_outage_during_backfill_falls_back_and_says_how_stale() {
    let now = away_from_boundaries().await;
    let api = fake(now).await;
    let f = files();
    let due = now - now.rem_euclid(STEP);
    let start = due - 20 * STEP;
    api.fail("/v3/carbon-intensity/history", 503, None, None);
    api.fail("/v3/historical", 503, None, None);
    let mut durable = ledger(providers(&api, &f, 0.0), start);

    // Book the old intervals only: history is down, nothing was ever read.
    durable.catch_up(Seconds((now - 600) as f64)).await;
    {
        let view = durable.ledger().view();
        let view = view.read().unwrap();
        for region in ["de", "caiso"] {
            let status = &view.regions[region];
            assert_eq!(status.intensity, GramsPerKwh(FALLBACK), "{region}");
            assert_eq!(status.staleness, Some(Seconds(f64::INFINITY)), "{region}");
        }
        let errors = &view.sources["electricity-maps"].errors;
        assert!(errors.get("http").copied().unwrap_or(0) > 0, "{errors:?}");
        // Booked with the fallback: the intervals are not lost.
        assert!(operational(&view, "a") > 0.0);
    }

    // Back: the remaining intervals come from history, the current one is live and fresh.
    api.recover();
    durable.catch_up(Seconds(now as f64)).await;
    let view = durable.ledger().view();
    let view = view.read().unwrap();
    assert_eq!(view.regions["de"].intensity, GramsPerKwh(em_value(now)));
    assert_eq!(view.regions["de"].staleness, Some(Seconds(0.0)));
    assert_eq!(view.state.last_booked, Some(Seconds(due as f64)));
}

/// A PromQL intensity that changes every minute, evaluated where the ledger asks.
struct MinuteIntensity;

#[async_trait]
impl jobcarbon_telemetry::MetricQuery for MinuteIntensity {
    async fn request_series(
        &self,
        _query: &jobcarbon_telemetry::RequestQuery,
        _at: Seconds,
    ) -> Result<Vec<jobcarbon_telemetry::CountSample>, SourceError> {
        Ok(Vec::new())
    }
    async fn scalar(&self, _promql: &str, at: Seconds) -> Result<f64, SourceError> {
        Ok(promql_value(at.value() as i64))
    }
}

fn promql_value(at: i64) -> f64 {
    100.0 + (at / STEP % 50) as f64
}

#[tokio::test]
async fn a_promql_region_backfills_with_the_value_at_each_interval() {
    let now = unix_now();
    let due = now - now.rem_euclid(STEP);
    let start = due - 30 * STEP;
    let mut s = settings();
    for def in s.regions.values_mut() {
        def.intensity = IntensitySpec::Live {
            promql: "grid_intensity".into(),
            fallback: GramsPerKwh(FALLBACK),
            signal: Signal::Average,
        };
    }
    let ledger = Ledger::new(
        s,
        Sources {
            energy: vec![Box::new(Counters)],
            metrics: Some(Box::new(MinuteIntensity)),
            cluster: Box::new(TwoRegions),
        },
        Vec::new(),
        BTreeMap::new(),
        LedgerView::shared(),
    )
    .with_state(LedgerState {
        last_booked: Some(Seconds(start as f64)),
        ..LedgerState::default()
    });
    let mut durable = DurableLedger::open(ledger, None, Seconds(STEP as f64)).unwrap();
    durable.catch_up(Seconds(now as f64)).await;
    let want: f64 = (start + 2 * STEP..=due)
        .step_by(STEP as usize)
        .map(|at| (joules("a", at) - joules("a", at - STEP)) * promql_value(at) / 3.6e6)
        .sum();
    let view = durable.ledger().view();
    let got = operational(&view.read().unwrap(), "a");
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
}

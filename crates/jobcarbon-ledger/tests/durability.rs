//! Durability against a real Prometheus (testkit): restart without loss, outage backfill,
//! a Kepler counter reset and a RAPL wrap inside the gap, corrupt checkpoints, and a ledger
//! process killed with SIGKILL at several points.
//!
//! Every run books the same history on the same interval grid, so "no loss, no double count"
//! is checked as exact equality with an uninterrupted reference run.

// Test and bench code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use jobcarbon_core::{
    ClusterSnapshot, GramsPerKwh, NodeFacts, Phase, PodFacts, ProductDef, ProductType, Pue, Seconds,
};
use jobcarbon_ledger::SystemDef;
use jobcarbon_ledger::checkpoint::CheckpointFile;
use jobcarbon_ledger::{
    ClusterError, ClusterSource, DurableLedger, Ledger, LedgerState, LedgerView, ResumeState,
    Settings, Sources,
};
use jobcarbon_telemetry::{KeplerConfig, KeplerSource, PromClient, PromConfig};
use jobcarbon_testkit::prometheus::{History, PromServer, unix_now};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const STEP: i64 = 20;
const SAMPLE: i64 = 10;
/// RAPL package counters wrap at `max_energy_range_uj` (262143328850 µJ on common parts).
const RAPL_MAX: f64 = 262_143.328_850;

/// The time range every run books: `[t0, t_end]` on the 20 s grid, history ending just after.
struct Range {
    t0: i64,
    t_end: i64,
}

fn range() -> Range {
    let now = unix_now();
    let t_end = (now - 30) / STEP * STEP;
    Range {
        t0: t_end - 20 * STEP,
        t_end,
    }
}

/// Kepler v2 history: a training pod (reset inside the gap), a serving pod, and node idle
/// energy whose RAPL counter wraps inside the gap.
fn history(r: &Range) -> History {
    let mut h = History::new();
    let reset_at = r.t0 + 9 * STEP + 5;
    let pod = |name: &'static str, zone: &'static str| {
        [
            ("pod_id", name),
            ("pod_name", name),
            ("pod_namespace", "ml"),
            ("node_name", "n1"),
            ("state", "running"),
            ("zone", zone),
        ]
    };
    let times: Vec<i64> = (r.t0 - 60..=r.t_end + 40)
        .step_by(SAMPLE as usize)
        .collect();
    let train: Vec<(i64, f64)> = times
        .iter()
        .map(|&t| {
            let v = if t < reset_at {
                1000.0 + 5.0 * (t - r.t0 + 60) as f64
            } else {
                // Kepler restarted: the counter starts again from 0.
                3.0 * (t - reset_at + 1) as f64
            };
            (t, v)
        })
        .collect();
    let dram: Vec<(i64, f64)> = times
        .iter()
        .map(|&t| (t, 1.5 * (t - r.t0 + 60) as f64))
        .collect();
    let serve: Vec<(i64, f64)> = times
        .iter()
        .map(|&t| (t, 200.0 + 2.0 * (t - r.t0 + 60) as f64))
        .collect();
    let idle: Vec<(i64, f64)> = times
        .iter()
        .map(|&t| {
            (
                t,
                (RAPL_MAX - 1830.0 + 7.0 * (t - r.t0 + 60) as f64) % RAPL_MAX,
            )
        })
        .collect();
    h.series(
        "kepler_pod_cpu_joules_total",
        &pod("train-0", "package"),
        &train,
    );
    h.series(
        "kepler_pod_cpu_joules_total",
        &pod("train-0", "dram"),
        &dram,
    );
    h.series(
        "kepler_pod_cpu_joules_total",
        &pod("serve-0", "package"),
        &serve,
    );
    h.series(
        "kepler_node_cpu_idle_joules_total",
        &[("node_name", "n1"), ("zone", "package")],
        &idle,
    );
    h
}

fn pod(name: &str, workload: &str, phase: Phase) -> PodFacts {
    PodFacts::new("ml", name)
        .uid(&format!("uid-{name}"))
        .workload("Job", workload)
        .phase(phase)
        .product(Some("bert"))
        .node("n1")
        .reserved_share(0.25)
}

struct StaticCluster;

#[async_trait]
impl ClusterSource for StaticCluster {
    async fn snapshot(&self, _at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        Ok(ClusterSnapshot {
            pods: vec![
                pod("train-0", "bert-train", Phase::Training),
                pod("serve-0", "bert-serve", Phase::Inference),
            ],
            nodes: vec![NodeFacts {
                name: "n1".to_owned(),
                region: None,
                instance_type: Some("p5.48xlarge".to_owned()),
                gpu_count: 0,
                gpu_model: None,
                labels: BTreeMap::from([(
                    "node.kubernetes.io/instance-type".to_owned(),
                    "p5.48xlarge".to_owned(),
                )]),
                cpus: 0.0,
            }],
            products: vec![ProductDef::new(
                "bert",
                ProductType::Model,
                Seconds::from_years(3.0),
            )],
            invalid_products: Vec::new(),
        })
    }
}

fn settings() -> Settings {
    let mut s = Settings::simple(Pue(1.1), GramsPerKwh(400.0));
    s.interval = Seconds(STEP as f64);
    s.systems.push(SystemDef {
        matches: BTreeMap::from([(
            "node.kubernetes.io/instance-type".to_owned(),
            "p5.48xlarge".to_owned(),
        )]),
        embodied: jobcarbon_core::Grams(10_300_000.0),
        per_gpu: jobcarbon_core::Grams::ZERO,
        lifetime: Seconds::from_years(6.0),
    });
    s
}

fn ledger(url: &str) -> Ledger {
    let mut config = PromConfig::new(url);
    config.timeout = Duration::from_secs(2);
    let client = PromClient::new(config).unwrap();
    let kepler = KeplerSource::new(client, KeplerConfig::default()).unwrap();
    Ledger::new(
        settings(),
        Sources {
            energy: vec![Box::new(kepler)],
            metrics: None,
            cluster: Box::new(StaticCluster),
        },
        Vec::new(),
        BTreeMap::new(),
        LedgerView::shared(),
    )
}

fn open(url: &str, file: &Path) -> DurableLedger {
    DurableLedger::open(
        ledger(url),
        Some(CheckpointFile::new(file)),
        Seconds(STEP as f64),
    )
    .unwrap()
}

fn at(t: i64) -> Seconds {
    Seconds(t as f64)
}

/// The uninterrupted run: baseline at t0, then every interval to t_end, live.
async fn reference(url: &str, r: &Range) -> LedgerState {
    let dir = tempfile::tempdir().unwrap();
    let mut d = open(url, &dir.path().join("ref.ckpt"));
    for t in (r.t0..=r.t_end).step_by(STEP as usize) {
        assert_eq!(d.catch_up(at(t)).await.booked, 1, "interval {t}");
    }
    d.ledger().state().clone()
}

fn restored(file: &Path) -> ResumeState {
    CheckpointFile::new(file)
        .load::<ResumeState>()
        .unwrap()
        .unwrap()
        .checkpoint
        .state
}

fn total_grams(s: &LedgerState) -> f64 {
    let pods: f64 = s.pods.values().map(|p| p.carbon.asce().value()).sum();
    let unallocated: f64 = s.unallocated.values().map(|g| g.value()).sum();
    pods + unallocated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_at_any_point_books_what_an_uninterrupted_run_books() {
    let r = range();
    let prom = PromServer::builder().history(&history(&r)).start().unwrap();
    let url = prom.url();
    let expected = reference(&url, &r).await;
    assert_eq!(expected.intervals_booked, 21);
    assert!(total_grams(&expected) > 0.0);

    for crash_after in [1, 5, 9, 10, 17] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.ckpt");
        {
            let mut d = open(&url, &file);
            d.catch_up(at(r.t0)).await;
            d.catch_up(at(r.t0 + crash_after * STEP)).await;
        } // the process is gone; only the checkpoint remains
        let mut d = open(&url, &file);
        let caught = d.catch_up(at(r.t_end)).await;
        assert_eq!(
            caught.booked as i64,
            20 - crash_after,
            "backfilled intervals"
        );
        assert_eq!(d.ledger().state(), &expected, "crash after {crash_after}");
        assert_eq!(restored(&file).ledger, expected);
        let status = d.status();
        assert_eq!(status.restored_from, "current");
        assert_eq!(status.backfilled_intervals_total as i64, 19 - crash_after);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_the_checkpoint_rebooks_the_interval_once() {
    let r = range();
    let prom = PromServer::builder().history(&history(&r)).start().unwrap();
    let url = prom.url();
    let expected = reference(&url, &r).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.ckpt");
    let mut d = open(&url, &file);
    d.catch_up(at(r.t0)).await;
    d.catch_up(at(r.t0 + 4 * STEP)).await;
    let saved = std::fs::read(&file).unwrap();
    d.catch_up(at(r.t0 + 6 * STEP)).await;
    drop(d);
    // The crash came after booking 5 and 6 but before their checkpoint reached the disk.
    std::fs::write(&file, saved).unwrap();
    let mut d = open(&url, &file);
    assert_eq!(d.catch_up(at(r.t_end)).await.booked, 16);
    assert_eq!(d.ledger().state(), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_outage_is_held_then_booked_once_with_reset_and_wrap_inside() {
    let r = range();
    let mut prom = PromServer::builder().history(&history(&r)).start().unwrap();
    let url = prom.url();
    let expected = reference(&url, &r).await;

    let dir = tempfile::tempdir().unwrap();
    let mut d = open(&url, &dir.path().join("ledger.ckpt"));
    for t in (r.t0..=r.t0 + 6 * STEP).step_by(STEP as usize) {
        d.catch_up(at(t)).await;
    }
    let before = d.ledger().state().clone();
    prom.stop();
    // Several intervals pass with Prometheus down (the reset at 9 and the wrap fall in them).
    for k in 7..=12 {
        let caught = d.catch_up(at(r.t0 + k * STEP)).await;
        assert_eq!(caught.booked, 0);
        assert_eq!(caught.held_by, vec!["kepler".to_owned()]);
        let status = d.status();
        assert!(status.degraded().unwrap().contains("kepler"));
        assert_eq!(
            status.staleness(at(r.t0 + k * STEP)),
            Seconds(((k - 6) * STEP) as f64)
        );
    }
    // Nothing was booked while held: the served state is the stale one, not a partial one.
    assert_eq!(d.ledger().state(), &before);
    prom.restart().unwrap();
    let caught = d.catch_up(at(r.t_end)).await;
    assert_eq!(caught.booked, 14);
    assert!(caught.held_by.is_empty());
    assert_eq!(d.status().degraded(), None);
    assert_eq!(d.ledger().state(), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_is_booked_interval_by_interval_not_as_one_lump() {
    // Why the backfill steps through history: one read across the gap sees the Kepler reset
    // as a small counter and loses the energy before it; stepping sees what live reads saw.
    let r = range();
    let prom = PromServer::builder().history(&history(&r)).start().unwrap();
    let url = prom.url();
    let expected = reference(&url, &r).await;
    let mut lump = ledger(&url);
    lump.run_interval(at(r.t0)).await;
    lump.run_interval(at(r.t_end)).await;
    let energy = |s: &LedgerState| -> f64 {
        s.pods
            .values()
            .map(|p| p.energy_total().value())
            .sum::<f64>()
    };
    assert!(
        energy(lump.state()) < energy(&expected) - 1000.0,
        "lump {} vs stepped {}",
        energy(lump.state()),
        energy(&expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_checkpoint_falls_back_then_refuses_when_nothing_is_trusted() {
    let r = range();
    let prom = PromServer::builder().history(&history(&r)).start().unwrap();
    let url = prom.url();
    let expected = reference(&url, &r).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.ckpt");
    {
        let mut d = open(&url, &file);
        for t in (r.t0..=r.t0 + 8 * STEP).step_by(STEP as usize) {
            d.catch_up(at(t)).await;
        }
    }
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() * 2 / 3]).unwrap();
    // The previous generation is good: restore it and backfill from there, losing nothing.
    let mut d = open(&url, &file);
    let status = d.status();
    assert_eq!(status.restored_from, "previous");
    assert!(
        status.recovered_from_error.unwrap().contains("truncated"),
        "the reason is reported"
    );
    d.catch_up(at(r.t_end)).await;
    assert_eq!(d.ledger().state(), &expected);
    drop(d);

    // Both generations bad: refuse to start, naming the file, until --reset-state.
    let store = CheckpointFile::new(&file);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(store.previous_path(), b"jobcarbon-checkpoint 1 0 x\n").unwrap();
    let err = DurableLedger::open(ledger(&url), Some(store.clone()), Seconds(STEP as f64))
        .err()
        .expect("untrusted checkpoints must not be used");
    let msg = err.to_string();
    assert!(
        msg.contains("ledger.ckpt") && msg.contains("--reset-state"),
        "{msg}"
    );
    let moved = jobcarbon_ledger::durable::reset_state(&store, at(r.t_end)).unwrap();
    assert_eq!(moved.len(), 2);
    let d = DurableLedger::open(ledger(&url), Some(store), Seconds(STEP as f64)).unwrap();
    assert_eq!(d.ledger().state().intervals_booked, 0);
}

const CHILD_ENV: &str = "JOBCARBON_DURABILITY_CHILD";

/// The ledger process of `killed_with_sigkill_at_several_points_*`: this test binary re-run
/// with [`CHILD_ENV`] set (`URL FILE T0 T_END`). It books the grid live, one interval per
/// 80 ms, checkpointing each, from wherever its checkpoint says. Without the variable (a
/// normal test run) there is nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_ledger_process() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = args.split(' ').collect();
    let [url, file, t0, t_end] = args[..] else {
        panic!("{CHILD_ENV}={args:?}");
    };
    let (t0, t_end): (i64, i64) = (t0.parse().unwrap(), t_end.parse().unwrap());
    let mut d = open(url, Path::new(file));
    let start = d
        .ledger()
        .state()
        .last_booked
        .map_or(t0, |t| t.value() as i64 + STEP);
    for t in (start..=t_end).step_by(STEP as usize) {
        d.catch_up(at(t)).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
}

fn checkpointed_until(file: &Path) -> Option<i64> {
    CheckpointFile::new(file)
        .load::<ResumeState>()
        .ok()
        .flatten()
        .map(|r| r.checkpoint.last_booked.value() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_at_several_points_totals_match_an_uninterrupted_run() {
    let r = range();
    let prom = PromServer::builder().history(&history(&r)).start().unwrap();
    let url = prom.url();
    let expected = reference(&url, &r).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.ckpt");
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_ledger_process", "--nocapture"])
            .env(
                CHILD_ENV,
                format!("{url} {} {} {}", file.display(), r.t0, r.t_end),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kill after the k-th interval's checkpoint, plus an offset that lands mid-interval.
    let mut kills = Vec::new();
    for (k, offset_ms) in [(2, 0), (6, 37), (9, 61), (13, 5), (17, 73)] {
        let mut child = spawn();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while checkpointed_until(&file).is_none_or(|t| t < r.t0 + k * STEP) {
            assert!(std::time::Instant::now() < deadline, "no progress to {k}");
            assert!(child.try_wait().unwrap().is_none(), "child exited early");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(offset_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        kills.push(checkpointed_until(&file).unwrap());
    }
    assert!(
        kills.windows(2).all(|w| w[0] < w[1]),
        "kill points {kills:?}"
    );
    let status = spawn().wait().unwrap();
    assert!(status.success());
    let restored = restored(&file);
    assert_eq!(restored.ledger.last_booked, Some(at(r.t_end)));
    assert_eq!(restored.ledger, expected);
}

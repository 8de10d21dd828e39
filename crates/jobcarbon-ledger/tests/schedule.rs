//! The scheduling loop's gate and hooks ([`DurableLedger::run`]): a standby books and writes
//! nothing, taking the lead runs the restore hook once and then books, a failing restore is
//! retried with nothing booked meanwhile, and the after-booking hook sees every booked
//! interval. A fake energy source and a manual clock parked 10 ms before each grid boundary
//! keep the loop turning fast; the test moves the clock one interval at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_trait::async_trait;
use common::OnePod;
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, GramsPerKwh, Joules, Pue, Seconds};
use jobcarbon_ledger::checkpoint::CheckpointFile;
use jobcarbon_ledger::clock::ManualClock;
use jobcarbon_ledger::{
    AfterBooking, Booked, DurableLedger, Ledger, LedgerView, RestoreError, RestoreHook, Schedule,
    Settings, Sources,
};
use jobcarbon_telemetry::{EnergySource, SourceError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

const INTERVAL: f64 = 30.0;
/// A grid boundary; the clock sits at `T0 + k·INTERVAL + PARKED`.
const T0: f64 = 30_000.0;
const PARKED: f64 = INTERVAL - 0.01;

/// A counter growing 100 J per interval.
struct Counter;

#[async_trait]
impl EnergySource for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let owner = EnergyOwner::pod("ml", "p", "c");
        let joules = Joules(at.value() / INTERVAL * 100.0);
        Ok(vec![EnergyReading::new(
            "counter",
            "n1",
            owner,
            Component::Cpu,
            joules,
            at,
        )])
    }
}

/// Counts its calls; fails (Prometheus unreachable) the first `failures` of them.
#[derive(Clone)]
struct CountingRestore {
    calls: Arc<AtomicUsize>,
    failures: usize,
}

#[async_trait]
impl RestoreHook for CountingRestore {
    async fn restore(&mut self, _ledger: &mut DurableLedger) -> Result<(), RestoreError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(RestoreError::Prometheus(SourceError::Unreachable {
                source_name: "restore".into(),
                url: "http://prometheus:9090".into(),
                reason: "connection refused".into(),
            }));
        }
        Ok(())
    }
}

/// What the after-booking hook saw: each call's [`Booked`] and the checkpoint writes so far.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Booked, u64)>>>);

#[async_trait]
impl AfterBooking for Recorder {
    async fn booked(&mut self, ledger: &DurableLedger, booked: Booked) {
        assert_eq!(
            ledger.ledger().state().last_booked,
            Some(booked.last_booked)
        );
        let writes = ledger.status().checkpoint_writes_total;
        self.0.lock().unwrap().push((booked, writes));
    }
}

impl Recorder {
    fn seen(&self) -> Vec<(Booked, u64)> {
        self.0.lock().unwrap().clone()
    }
    fn last_booked(&self) -> Option<Seconds> {
        self.seen().last().map(|(b, _)| b.last_booked)
    }
}

struct Rig {
    ledger: DurableLedger,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    file: std::path::PathBuf,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let ledger = Ledger::new(
        Settings::simple(Pue(1.0), GramsPerKwh(3600.0)),
        Sources {
            energy: vec![Box::new(Counter)],
            metrics: None,
            cluster: Box::new(OnePod),
        },
        Vec::new(),
        BTreeMap::new(),
        LedgerView::shared(),
    );
    let clock = ManualClock::new(Seconds(T0 + PARKED));
    let ledger = DurableLedger::open(
        ledger,
        Some(CheckpointFile::new(file.clone())),
        Seconds(INTERVAL),
    )
    .unwrap()
    .with_clock(clock.clone());
    Rig {
        ledger,
        clock,
        _dir: dir,
        file,
    }
}

/// Parks the clock 10 ms before the end of interval `k` (interval 0 ends at `T0 + INTERVAL`).
fn rig_park(clock: &ManualClock, k: u32) {
    clock.set(Seconds(T0 + f64::from(k) * INTERVAL + PARKED));
}

/// Waits (at most 10 s) until `done`; false when it never happened.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..2000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

/// Lets the loop turn a few times (it wakes every 10 ms with the clock parked).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn schedule(
    leader: Option<watch::Receiver<bool>>,
    restore: CountingRestore,
    recorder: Recorder,
) -> Schedule<CountingRestore, Recorder> {
    Schedule::new(Seconds(INTERVAL))
        .with_leader(leader)
        .with_restore(restore)
        .with_after_booking(recorder)
        .with_retry(Duration::from_millis(10))
}

/// Ends of the intervals booked, from the hook's calls (each call books `intervals` in a row).
fn booked_ends(seen: &[(Booked, u64)]) -> Vec<f64> {
    seen.iter()
        .flat_map(|(b, _)| {
            (0..b.intervals)
                .rev()
                .map(move |i| b.last_booked.value() - i as f64 * INTERVAL)
        })
        .collect()
}

#[tokio::test]
async fn a_standby_books_nothing_and_the_new_leader_restores_once_then_books() {
    let mut rig = rig();
    let (lead, leader) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let restore = CountingRestore {
        calls: calls.clone(),
        failures: 0,
    };
    let recorder = Recorder::default();
    let sched = schedule(Some(leader), restore, recorder.clone());
    let (clock, file) = (rig.clock.clone(), rig.file.clone());
    let drive = async {
        for k in 0..3 {
            rig_park(&clock, k);
            settle().await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "a standby restores nothing"
        );
        assert!(recorder.seen().is_empty(), "a standby books nothing");
        assert!(!file.exists(), "a standby writes no checkpoint");

        lead.send_replace(true);
        assert!(eventually(|| !recorder.seen().is_empty()).await);
        for k in 3..6 {
            rig_park(&clock, k);
            let end = T0 + f64::from(k) * INTERVAL;
            assert!(eventually(|| recorder.last_booked() == Some(Seconds(end))).await);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "restored once, on taking the lead"
        );
        stop.send(()).unwrap();
    };
    tokio::join!(
        rig.ledger.run(sched, async {
            let _ = stopped.await;
        }),
        drive
    );
    let seen = recorder.seen();
    // The first booking is the counters' baseline (the slot due when the lead was taken),
    // then every interval once, in order.
    let ends = booked_ends(&seen);
    let first = T0 + 2.0 * INTERVAL;
    let want: Vec<f64> = (0..4).map(|i| first + f64::from(i) * INTERVAL).collect();
    assert_eq!(ends, want);
    let (_, writes) = seen.last().copied().unwrap();
    assert_eq!(
        rig.ledger.status().checkpoint_writes_total,
        writes + 1,
        "a leader checkpoints on shutdown"
    );
    assert!(rig.file.exists());
}

#[tokio::test]
async fn losing_the_lead_stops_booking_and_retaking_it_restores_again_then_backfills() {
    let mut rig = rig();
    let (lead, leader) = watch::channel(true);
    let (stop, stopped) = oneshot::channel::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let restore = CountingRestore {
        calls: calls.clone(),
        failures: 0,
    };
    let recorder = Recorder::default();
    let sched = schedule(Some(leader), restore, recorder.clone());
    let clock = rig.clock.clone();
    let drive = async {
        assert!(eventually(|| recorder.last_booked() == Some(Seconds(T0))).await);
        rig_park(&clock, 1);
        assert!(eventually(|| recorder.last_booked() == Some(Seconds(T0 + INTERVAL))).await);

        lead.send_replace(false);
        settle().await;
        let before = recorder.seen().len();
        for k in 2..5 {
            rig_park(&clock, k);
            settle().await;
        }
        assert_eq!(recorder.seen().len(), before, "a standby books nothing");

        lead.send_replace(true);
        let end = T0 + 4.0 * INTERVAL;
        assert!(eventually(|| recorder.last_booked() == Some(Seconds(end))).await);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "restored again on retaking the lead"
        );

        lead.send_replace(false);
        settle().await;
        stop.send(()).unwrap();
    };
    tokio::join!(
        rig.ledger.run(sched, async {
            let _ = stopped.await;
        }),
        drive
    );
    let seen = recorder.seen();
    let ends = booked_ends(&seen);
    let want: Vec<f64> = (0..5).map(|i| T0 + f64::from(i) * INTERVAL).collect();
    assert_eq!(
        ends, want,
        "the intervals missed as a standby are backfilled once"
    );
    assert_eq!(
        seen.last().map(|(b, _)| b.intervals),
        Some(3),
        "one catch-up books the three missed intervals"
    );
    let (_, writes) = seen.last().copied().unwrap();
    assert_eq!(
        rig.ledger.status().checkpoint_writes_total,
        writes,
        "a standby does not checkpoint on shutdown"
    );
}

#[tokio::test]
async fn a_failing_restore_is_retried_and_nothing_is_booked_until_it_answers() {
    let mut rig = rig();
    let (stop, stopped) = oneshot::channel::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let restore = CountingRestore {
        calls: calls.clone(),
        failures: 3,
    };
    let recorder = Recorder::default();
    // No election: this replica leads from the start.
    let sched = schedule(None, restore, recorder.clone());
    let drive = async {
        assert!(eventually(|| !recorder.seen().is_empty()).await);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "three failures, then success"
        );
        stop.send(()).unwrap();
    };
    tokio::join!(
        rig.ledger.run(sched, async {
            let _ = stopped.await;
        }),
        drive
    );
    assert_eq!(booked_ends(&recorder.seen()), vec![T0]);
}

#[tokio::test]
async fn a_leader_that_never_restored_writes_no_checkpoint_on_shutdown() {
    let mut rig = rig();
    let (stop, stopped) = oneshot::channel::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let restore = CountingRestore {
        calls: calls.clone(),
        failures: usize::MAX,
    };
    let recorder = Recorder::default();
    let sched = schedule(None, restore, recorder.clone());
    let drive = async {
        assert!(eventually(|| calls.load(Ordering::SeqCst) >= 3).await);
        stop.send(()).unwrap();
    };
    tokio::join!(
        rig.ledger.run(sched, async {
            let _ = stopped.await;
        }),
        drive
    );
    assert!(recorder.seen().is_empty());
    assert_eq!(rig.ledger.ledger().state().last_booked, None);
    assert_eq!(rig.ledger.status().checkpoint_writes_total, 0);
    assert!(!rig.file.exists());
}

//! Restart without loss and outages without double counting.
//!
//! Intervals end on a fixed grid (multiples of the interval since the Unix epoch), so a
//! restarted ledger books exactly the intervals an uninterrupted one would have. After each
//! booked interval the [`ResumeState`] (ledger state *and* the counter baselines) is
//! checkpointed; on start it is restored and every interval since the last booked one is
//! booked from Prometheus history, one by one, before the ledger goes live again. An interval
//! is booked only when every energy source answered for it ([`Ledger::try_run_interval`]):
//! during an outage nothing is booked, metrics stay served from the last state (stale, with
//! [`DurabilityStatus`] saying by how much), and on recovery the held intervals are booked
//! from history — each gram once, with the conditions of its own interval. A counter reset
//! or wrap inside the gap is seen at interval resolution, as a live ledger would have seen it.
//!
//! A crash between booking an interval and saving its checkpoint re-books that interval from
//! the previous checkpoint on restart: the result is identical, because booking is a pure
//! function of the restored state and the same history.

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointFile, Generation, Untrusted};
use crate::clock::SharedClock;
use crate::requests::RequestBooks;
use crate::runner::Ledger;
use crate::state::LedgerState;
use jobcarbon_core::Seconds;
use jobcarbon_telemetry::CounterTracker;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Everything the next interval depends on: booked totals and counter baselines.
/// Written from a borrow ([`ResumeStateRef`]), read back as this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// The ledger's books.
    pub ledger: LedgerState,
    /// Energy counter trackers by source, so restarts do not count a counter twice.
    pub energy_counters: BTreeMap<String, CounterTracker>,
    /// Per-series request counters (earlier checkpoints' `request_counters` sums are
    /// ignored: the first read after restoring one is a baseline).
    #[serde(default)]
    pub requests: RequestBooks,
}

/// [`ResumeState`] borrowed from the ledger: serialised straight into the checkpoint file,
/// with the same fields in the same order, so its JSON is byte for byte a [`ResumeState`]'s.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ResumeStateRef<'a> {
    /// The ledger's books.
    pub ledger: &'a LedgerState,
    /// Energy counter trackers by source.
    pub energy_counters: &'a BTreeMap<String, CounterTracker>,
    /// Request counters and their trackers.
    pub requests: &'a RequestBooks,
}

impl<'a> From<&'a ResumeState> for ResumeStateRef<'a> {
    fn from(resume: &'a ResumeState) -> Self {
        Self {
            ledger: &resume.ledger,
            energy_counters: &resume.energy_counters,
            requests: &resume.requests,
        }
    }
}

impl Ledger {
    /// What a checkpoint must hold to resume exactly here, borrowed (no copy): what
    /// [`DurableLedger::checkpoint`] writes.
    pub fn resume_ref(&self) -> ResumeStateRef<'_> {
        ResumeStateRef {
            ledger: &self.state,
            energy_counters: &self.energy_counters,
            requests: &self.request_books,
        }
    }

    /// An owned copy of [`Ledger::resume_ref`] (tests that hand a state to another ledger).
    pub fn resume_state(&self) -> ResumeState {
        ResumeState {
            ledger: LedgerState::clone(&self.state),
            energy_counters: self.energy_counters.clone(),
            requests: self.request_books.clone(),
        }
    }

    /// Continue from a checkpoint; the restored totals are served at once (the view gets the
    /// ledger's own `Arc`).
    pub fn restore(&mut self, resume: ResumeState) {
        let mut ledger = resume.ledger;
        ledger.backfill_totals();
        self.state = std::sync::Arc::new(ledger);
        self.energy_counters = resume.energy_counters;
        self.request_books = resume.requests;
        match self.view().write() {
            Ok(mut view) => view.state = std::sync::Arc::clone(&self.state),
            Err(_) => tracing::error!("ledger view lock poisoned; restored state not served"),
        }
    }
}

/// The ledger's durability health, served as self-metrics and by `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DurabilityStatus {
    /// End of the last booked interval.
    pub last_booked: Option<Seconds>,
    /// Energy sources that failed for the next due interval; non-empty means booking is held
    /// and the served metrics are stale (`/readyz` degraded).
    pub held_by: Vec<String>,
    /// Intervals booked later than their end because of a restart or an outage.
    pub backfilled_intervals_total: u64,
    /// Which checkpoint generation the ledger started from: `none`, `current`, `previous`.
    pub restored_from: String,
    /// Why the current checkpoint was not used when falling back to the previous one.
    pub recovered_from_error: Option<String>,
    /// Checkpoints written since start.
    pub checkpoint_writes_total: u64,
    /// Failed checkpoint writes by [`CheckpointError::kind`].
    pub checkpoint_errors: BTreeMap<String, u64>,
    /// Wall-clock time of the last successful checkpoint write.
    pub last_checkpoint: Option<Seconds>,
    /// Where the booked totals came from (`jobcarbon_state_restored_info`); `None` until the
    /// ledger decided (a standby has not yet).
    pub restored_state: Option<RestoredFrom>,
}

/// The source of the state the ledger continues from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RestoredFrom {
    /// `checkpoint`, `prometheus` or `none`.
    pub from: String,
    /// What that source could not restore (comma-separated; empty: nothing).
    pub missing: String,
}

impl DurabilityStatus {
    /// Seconds the served figures lag behind `now` (0 before the first interval).
    pub fn staleness(&self, now: Seconds) -> Seconds {
        self.last_booked
            .map(|t| (now - t).non_negative())
            .unwrap_or(Seconds::ZERO)
    }

    /// Degraded: booking held by an outage, or checkpoints failing.
    pub fn degraded(&self) -> Option<String> {
        if !self.held_by.is_empty() {
            return Some(format!(
                "booking held: energy sources unavailable: {}",
                self.held_by.join(", ")
            ));
        }
        if self.last_checkpoint.is_none() && !self.checkpoint_errors.is_empty() {
            return Some("checkpoint writes failing".to_owned());
        }
        None
    }
}

/// Wall-clock now (the exporter computes staleness at scrape time).
pub fn wall_clock_now() -> Seconds {
    jobcarbon_telemetry::now()
}

/// What one [`DurableLedger::catch_up`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatchUp {
    /// Intervals booked by this catch-up.
    pub booked: u64,
    /// Failed sources when booking stopped at an outage.
    pub held_by: Vec<String>,
}

/// A [`Ledger`] on the interval grid, checkpointed and backfilled.
pub struct DurableLedger {
    ledger: Ledger,
    store: Option<CheckpointFile>,
    interval: Seconds,
    /// Minimum wall time between checkpoints while catching up (every interval when live).
    backfill_checkpoint_every: Duration,
    /// Now: the system clock, or a test's ([`crate::clock`]).
    clock: SharedClock,
}

impl DurableLedger {
    /// Restore from `store` (when given) and take over `ledger`. Fails when checkpoints exist
    /// but none can be trusted (see [`crate::checkpoint`] for the policy).
    pub fn open(
        mut ledger: Ledger,
        store: Option<CheckpointFile>,
        interval: Seconds,
    ) -> Result<Self, Box<Untrusted>> {
        let mut status = DurabilityStatus {
            restored_from: "none".to_owned(),
            ..DurabilityStatus::default()
        };
        if let Some(file) = &store
            && let Some(restored) = file.load::<ResumeState>()?
        {
            status.restored_from = match &restored.from {
                Generation::Current => "current".to_owned(),
                Generation::Previous { current_error } => {
                    status.recovered_from_error = current_error.as_ref().map(|e| {
                            tracing::error!(error = %e, "checkpoint not trusted; restoring the previous generation and backfilling from it");
                            e.to_string()
                        });
                    "previous".to_owned()
                }
            };
            let mut resume = restored.checkpoint.state;
            // The envelope's time is the one the checksum covers.
            resume.ledger.last_booked = Some(restored.checkpoint.last_booked);
            tracing::info!(
                file = %file.path().display(),
                last_booked = restored.checkpoint.last_booked.value(),
                from = %status.restored_from,
                "ledger state restored"
            );
            ledger.restore(resume);
            status.restored_state = Some(RestoredFrom {
                from: "checkpoint".to_owned(),
                missing: String::new(),
            });
        }
        status.last_booked = ledger.state().last_booked;
        let durable = Self {
            ledger,
            store,
            interval,
            backfill_checkpoint_every: Duration::from_secs(5),
            clock: crate::clock::system(),
        };
        durable.update_status(|s| *s = status);
        Ok(durable)
    }

    /// Read time from `clock` instead of the system clock (tests: [`crate::clock`]).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by this ledger's clock.
    pub fn now(&self) -> Seconds {
        self.clock.now()
    }

    /// Durability health as served (a copy).
    pub fn status(&self) -> DurabilityStatus {
        self.ledger
            .view()
            .read()
            .map(|v| v.durability.clone())
            .unwrap_or_default()
    }

    fn update_status(&self, f: impl FnOnce(&mut DurabilityStatus)) {
        match self.ledger.view().write() {
            Ok(mut view) => f(&mut view.durability),
            Err(_) => tracing::error!("ledger view lock poisoned; durability status not updated"),
        }
    }

    /// The ledger inside (its state, settings and view).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Record where the state came from (served as `jobcarbon_state_restored_info`).
    pub fn set_restored_from(&self, from: &str, missing: &str) {
        let restored = RestoredFrom {
            from: from.to_owned(),
            missing: missing.to_owned(),
        };
        self.update_status(|s| s.restored_state = Some(restored));
    }

    /// Continue from a state rebuilt from Prometheus (`crate::prom_restore`) when it is
    /// later than what this ledger holds (its checkpoint, or nothing). The counter baselines
    /// are re-read at the restored time, so the backfill books the gap from there.
    /// Returns whether the state was adopted.
    pub async fn adopt_if_later(&mut self, restored: crate::prom_restore::Restored) -> bool {
        let held = self.ledger.state().last_booked;
        if held.is_some_and(|t| t >= restored.last_booked) {
            return false;
        }
        let at = restored.last_booked;
        self.ledger.restore(ResumeState {
            ledger: restored.state,
            energy_counters: BTreeMap::new(),
            requests: RequestBooks::default(),
        });
        self.ledger.prime(at).await;
        self.update_status(|s| s.last_booked = Some(at));
        true
    }

    /// The booking interval (the grid's step).
    pub fn interval(&self) -> Seconds {
        self.interval
    }

    /// End of the last interval that is over at `now`.
    pub fn slot(&self, now: Seconds) -> Seconds {
        let step = self.interval.value();
        Seconds((now.value() / step).floor() * step)
    }

    /// Book every interval that has ended by `now` and is not booked yet, oldest first;
    /// stop at the first one whose energy sources do not answer.
    pub async fn catch_up(&mut self, now: Seconds) -> CatchUp {
        let due = self.slot(now);
        let mut result = CatchUp::default();
        let mut last_save = Instant::now();
        let mut unsaved = false;
        let mut next = match self.ledger.state().last_booked {
            Some(last) => last + self.interval,
            // First start: the first interval is the counters' baseline.
            None => due,
        };
        while next <= due {
            match self.ledger.try_run_interval(next).await {
                Ok(_) => {
                    result.booked += 1;
                    let backfilled = next < due;
                    self.update_status(|s| {
                        s.last_booked = Some(next);
                        s.held_by.clear();
                        s.backfilled_intervals_total += u64::from(backfilled);
                    });
                    unsaved = true;
                    if !backfilled || last_save.elapsed() >= self.backfill_checkpoint_every {
                        self.checkpoint();
                        last_save = Instant::now();
                        unsaved = false;
                    }
                    next += self.interval;
                }
                Err(outage) => {
                    tracing::warn!(
                        at = next.value(),
                        failed = ?outage.failed,
                        "energy sources unavailable; holding the interval until they recover"
                    );
                    self.update_status(|s| s.held_by = outage.failed.clone());
                    result.held_by = outage.failed;
                    break;
                }
            }
        }
        if unsaved {
            // The last booked interval is always on disk before the next wait.
            self.checkpoint();
        }
        result
    }

    /// Save the current state. Failures are logged and counted, never fatal: the next
    /// interval tries again, and a restart backfills from the last good checkpoint.
    pub fn checkpoint(&mut self) {
        let Some(store) = &self.store else { return };
        let resume = self.ledger.resume_ref();
        let Some(last_booked) = resume.ledger.last_booked else {
            return;
        };
        let checkpoint = Checkpoint::new(last_booked, self.clock.now(), resume);
        let result = store.save(&checkpoint);
        self.update_status(|s| match &result {
            Ok(()) => {
                s.checkpoint_writes_total += 1;
                s.last_checkpoint = Some(checkpoint.written_at);
            }
            Err(e) => *s.checkpoint_errors.entry(e.kind().to_owned()).or_insert(0) += 1,
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "checkpoint write failed");
        }
    }
}

/// `--reset-state`: move untrusted checkpoints aside and start empty. Returns where they went.
pub fn reset_state(
    store: &CheckpointFile,
    now: Seconds,
) -> Result<Vec<std::path::PathBuf>, CheckpointError> {
    let moved = store.quarantine(now)?;
    for path in &moved {
        tracing::warn!(moved_to = %path.display(), "--reset-state: checkpoint moved aside; starting an empty ledger");
    }
    Ok(moved)
}

//! The scheduling loop: the one place that decides when intervals are booked.
//!
//! [`DurableLedger::run`] books every due interval on the grid ([`DurableLedger::catch_up`]),
//! waits for the next grid boundary (or [`Schedule::retry`] while held by an outage), and
//! checkpoints on shutdown. Three parts are plugged in:
//!
//! - a **leader gate** ([`Schedule::leader`]): a standby books and checkpoints nothing, so
//!   with several replicas only the Lease holder writes;
//! - a **restore hook** ([`RestoreHook`]), run each time the replica (re)takes the lead, before
//!   it books: it chooses the state to continue from (the checkpoint already loaded, or the
//!   ledger's own series in Prometheus, [`crate::prom_restore::LatestState`]); while it fails,
//!   nothing is booked and it is retried;
//! - an **after-booking hook** ([`AfterBooking`]), run after each catch-up that booked at
//!   least one interval (SoftwareProduct status writes, [`crate::kube_status`]).

use crate::durable::DurableLedger;
use async_trait::async_trait;
use jobcarbon_core::Seconds;
use jobcarbon_telemetry::SourceError;
use std::time::Duration;
use tokio::sync::watch;

/// How often a booking held by an energy-source outage (or a failed restore) is retried, at
/// most once an interval.
pub const OUTAGE_RETRY: Duration = Duration::from_secs(10);

/// Why the state to continue from could not be chosen; the loop retries.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read this ledger's exported state from Prometheus: {0}")]
    /// Prometheus could not be read.
    Prometheus(#[from] SourceError),
}

/// Chooses the state a replica continues from when it takes the lead.
#[async_trait]
pub trait RestoreHook: Send {
    /// `Err`: the source did not answer. Nothing is booked until a later call succeeds
    /// (starting from zero instead would publish smaller totals).
    async fn restore(&mut self, ledger: &mut DurableLedger) -> Result<(), RestoreError>;
}

/// Continue from what the ledger holds (its checkpoint, or nothing).
#[async_trait]
impl RestoreHook for () {
    async fn restore(&mut self, _ledger: &mut DurableLedger) -> Result<(), RestoreError> {
        Ok(())
    }
}

/// What one catch-up booked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Booked {
    /// Intervals booked (more than one after a restart or an outage).
    pub intervals: u64,
    /// End of the last of them.
    pub last_booked: Seconds,
}

/// Runs after each catch-up that booked at least one interval.
#[async_trait]
pub trait AfterBooking: Send {
    /// Called after each booked interval.
    async fn booked(&mut self, ledger: &DurableLedger, booked: Booked);
}

/// Nothing after booking.
#[async_trait]
impl AfterBooking for () {
    async fn booked(&mut self, _ledger: &DurableLedger, _booked: Booked) {}
}

/// How [`DurableLedger::run`] is driven: the leader gate, the hooks and the retry wait.
pub struct Schedule<R = (), A = ()> {
    /// `None`: this replica always leads (no election). Otherwise it books while the
    /// channel says `true`.
    pub leader: Option<watch::Receiver<bool>>,
    /// Restores the state before the first booking.
    pub restore: R,
    /// Runs after each booking.
    pub after_booking: A,
    /// The wait before retrying a held booking or a failed restore.
    pub retry: Duration,
}

impl Schedule {
    /// Always leading, no hooks, retrying every `OUTAGE_RETRY` (at most once an `interval`).
    pub fn new(interval: Seconds) -> Self {
        Self {
            leader: None,
            restore: (),
            after_booking: (),
            retry: Duration::from_secs_f64(interval.value().max(0.0)).min(OUTAGE_RETRY),
        }
    }
}

impl<R, A> Schedule<R, A> {
    /// Book only while `leader` says so.
    pub fn with_leader(mut self, leader: Option<watch::Receiver<bool>>) -> Self {
        self.leader = leader;
        self
    }

    /// Run `restore` each time this replica takes the lead.
    pub fn with_restore<R2: RestoreHook>(self, restore: R2) -> Schedule<R2, A> {
        Schedule {
            leader: self.leader,
            restore,
            after_booking: self.after_booking,
            retry: self.retry,
        }
    }

    /// Run `after_booking` after each catch-up that booked.
    pub fn with_after_booking<A2: AfterBooking>(self, after_booking: A2) -> Schedule<R, A2> {
        Schedule {
            leader: self.leader,
            restore: self.restore,
            after_booking,
            retry: self.retry,
        }
    }

    /// Retry held bookings and failed restores after `retry`.
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    fn leading(&self) -> bool {
        self.leader.as_ref().is_none_or(|rx| *rx.borrow())
    }
}

impl DurableLedger {
    /// Book on the wall clock (this ledger's clock) until `shutdown` resolves. Checks for
    /// due intervals at each grid boundary, and every [`Schedule::retry`] while held by an
    /// outage or a failed restore. Leadership is read at each wake-up: a standby books and
    /// writes nothing; a replica that (re)takes the lead runs the restore hook first. On
    /// shutdown the state is checkpointed only by a leader that chose its state (a standby's
    /// state is stale).
    pub async fn run<R: RestoreHook, A: AfterBooking>(
        &mut self,
        mut schedule: Schedule<R, A>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Whether this replica chose its state (checkpoint or Prometheus) since it took the lead.
        let mut restored = false;
        loop {
            let leading = schedule.leading();
            restored &= leading;
            let mut held = false;
            if leading && !restored {
                match schedule.restore.restore(self).await {
                    Ok(()) => restored = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "booking waits until the state to continue from can be read");
                        held = true;
                    }
                }
            }
            if leading && restored {
                let caught = self.catch_up(self.now()).await;
                held = !caught.held_by.is_empty();
                if caught.booked > 0
                    && let Some(last_booked) = self.ledger().state().last_booked
                {
                    let booked = Booked {
                        intervals: caught.booked,
                        last_booked,
                    };
                    schedule.after_booking.booked(self, booked).await;
                }
            }
            let wait = if held {
                schedule.retry
            } else {
                self.until_next_slot()
            };
            tokio::select! {
                () = &mut shutdown => {
                    if leading && restored {
                        self.checkpoint();
                    }
                    return;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The wall time until the next grid boundary, by this ledger's clock.
    fn until_next_slot(&self) -> Duration {
        let now = self.now();
        let next = self.slot(now) + self.interval();
        Duration::from_secs_f64((next - self.now()).value().max(0.0))
    }
}

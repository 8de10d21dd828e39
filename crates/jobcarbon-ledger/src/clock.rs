//! The ledger's clock. Everything that decides *which* intervals are due (the grid, the
//! backfill after a restart, the checkpoint's write time, whether an interval is in the past)
//! reads time through [`Clock`], so tests can simulate hours of downtime without waiting.
//!
//! `SystemClock` is the only clock production uses. [`OffsetClock`] (the wall clock shifted
//! by a fixed amount) exists for tests of the real binary (`jobcarbon ledger`'s hidden
//! `--test-clock-offset`, `JOBCARBON_TEST_CLOCK_OFFSET`); [`ManualClock`] for library tests.

use jobcarbon_core::Seconds;
use std::sync::{Arc, Mutex, PoisonError};

/// Now, in seconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, seconds since the Unix epoch.
    fn now(&self) -> Seconds;
}

/// A clock shared by the ledger's parts.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Seconds {
        jobcarbon_telemetry::now()
    }
}

/// The wall clock shifted by `offset` (negative: in the past). Test-only: a ledger started
/// two hours "in the past" and then restarted on the wall clock has been down two hours.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    /// Added to the system clock's time.
    pub offset: Seconds,
}

impl Clock for OffsetClock {
    fn now(&self) -> Seconds {
        jobcarbon_telemetry::now() + self.offset
    }
}

/// A clock that moves only when told (library tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<Seconds>);

impl ManualClock {
    /// A clock standing at `at` until [`ManualClock::set`].
    pub fn new(at: Seconds) -> Arc<Self> {
        Arc::new(Self(Mutex::new(at)))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Seconds) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Seconds {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The production clock.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

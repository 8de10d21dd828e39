//! What the exporter serves: the ledger state plus the loop's own health, shared behind a lock
//! and replaced after each interval.

use crate::state::LedgerState;
use jobcarbon_core::{GramsPerKwh, Pue, Seconds};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub type SharedView = Arc<RwLock<LedgerView>>;

/// Upper bounds (seconds) of the interval-duration histogram.
pub const INTERVAL_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerView {
    pub state: LedgerState,
    pub regions: BTreeMap<String, RegionStatus>,
    pub sources: BTreeMap<String, SourceStatus>,
    pub interval_seconds: Histogram,
    /// Checkpoint, backfill and outage health (`crate::durable`); default when not durable.
    pub durability: crate::durable::DurabilityStatus,
    /// With leader election: whether this replica holds the Lease (a standby books nothing).
    /// `None`: no election (one replica).
    pub leader: Option<bool>,
    /// The identity label value (`<namespace>/<release>`) on every exported series; `None`
    /// (the demo): no label.
    pub identity: Option<String>,
    /// Request reads by product.
    pub requests: BTreeMap<String, crate::requests::RequestStatus>,
}

impl LedgerView {
    pub fn shared() -> SharedView {
        Arc::new(RwLock::new(Self::default()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegionStatus {
    pub pue: Pue,
    pub intensity: GramsPerKwh,
    /// For live intensities: seconds since the last good value (None: static region).
    pub staleness: Option<Seconds>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceStatus {
    /// Errors by kind (`SourceError::kind`).
    pub errors: BTreeMap<String, u64>,
    /// Time of the last successful read, seconds since the Unix epoch.
    pub last_success: Option<Seconds>,
}

/// A histogram with fixed buckets ([`INTERVAL_BUCKETS`] and +Inf); counts per bucket, not
/// cumulative (the encoder accumulates).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; INTERVAL_BUCKETS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        let bucket = INTERVAL_BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(INTERVAL_BUCKETS.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// (upper bound, count in bucket) pairs, ending with +Inf.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        INTERVAL_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

//! What the exporter serves: the ledger state plus the loop's own health, shared behind a lock
//! and replaced after each interval.

use crate::state::LedgerState;
use jobcarbon_core::intensity::{IntensitySeries, Signal};
use jobcarbon_core::{GramsPerKwh, Pue, Seconds};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The view shared between the ledger (writer) and the HTTP surface (readers).
pub type SharedView = Arc<RwLock<LedgerView>>;

/// Upper bounds (seconds) of the interval-duration histogram.
pub(crate) const INTERVAL_BUCKETS: [f64; 10] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Cheap to clone: the state, the lineage and the history are shared (`Arc`), so a reader
/// takes a [`snapshot`] under the read lock and works on it after releasing the lock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerView {
    /// The booked state, as the ledger published it (the ledger keeps the same `Arc`).
    #[serde(serialize_with = "shared")]
    pub state: Arc<LedgerState>,
    /// Each region's PUE and intensity as last booked.
    pub regions: BTreeMap<String, RegionStatus>,
    /// Region of nodes without the region label (the advice's home region).
    pub default_region: Option<String>,
    /// Each energy source's errors and last success.
    pub sources: BTreeMap<String, SourceStatus>,
    /// Interval booking durations, s.
    pub interval_seconds: Histogram,
    /// Checkpoint, backfill and outage health (`crate::durable`); default when not durable.
    pub durability: crate::durable::DurabilityStatus,
    /// With leader election: whether this replica holds the Lease (a standby books nothing).
    /// `None`: no election (one replica).
    pub leader: Option<bool>,
    /// The identity label value (`<namespace>/<release>`) on every exported series; `None`
    /// (the demo): no label.
    pub identity: Option<String>,
    /// Per-pod workload series (`exporter.podSeries`) instead of one per workload.
    pub pod_series: bool,
    /// Request reads by product.
    pub requests: BTreeMap<String, crate::requests::RequestStatus>,
    /// Each product's parents (models it derives from, datasets it was trained on), as the
    /// cluster declares them now: the lineage graph of the web view.
    #[serde(serialize_with = "shared")]
    pub lineage: Arc<Lineage>,
    /// What each interval booked, in bounded buckets, for `/api/v1/allocation` (copied on
    /// write only while a reader holds a snapshot).
    #[serde(skip)]
    pub history: Arc<crate::history::AllocationHistory>,
}

/// Each product's parents, by product.
pub(crate) type Lineage = BTreeMap<String, Vec<ParentEdge>>;

impl LedgerView {
    /// An empty view, shared.
    pub fn shared() -> SharedView {
        Arc::new(RwLock::new(Self::default()))
    }
}

/// A copy of the view that shares the large parts (state, lineage, history) with it: taken
/// under the read lock, used after releasing it, so a reader never holds the lock while it
/// encodes or serialises. `None`: the lock is poisoned.
pub fn snapshot(view: &SharedView) -> Option<LedgerView> {
    view.read().ok().map(|v| v.clone())
}

/// The booked state as published (an `Arc` clone taken under the read lock). `None`: the
/// lock is poisoned.
pub fn shared_state(view: &SharedView) -> Option<Arc<LedgerState>> {
    view.read().ok().map(|v| Arc::clone(&v.state))
}

fn shared<T: Serialize, S: serde::Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    T::serialize(value, s)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
/// A region's factors at the last interval.
pub struct RegionStatus {
    /// Power usage effectiveness.
    pub pue: Pue,
    /// Grid carbon intensity, gCO2e/kWh.
    pub intensity: GramsPerKwh,
    /// For live intensities: seconds since the last good value (None: static region).
    pub staleness: Option<Seconds>,
    /// Average or marginal: the two must not be compared or summed across regions.
    pub signal: Signal,
    /// The provider's last forecast (live providers only).
    pub forecast: Option<IntensitySeries>,
}

impl RegionStatus {
    /// A static region's status (tests, the demo).
    pub fn fixed(pue: Pue, intensity: GramsPerKwh) -> Self {
        Self {
            pue,
            intensity,
            staleness: None,
            signal: Signal::Average,
            forecast: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
/// An energy source's health.
pub struct SourceStatus {
    /// Errors by kind (`SourceError::kind`).
    pub errors: BTreeMap<String, u64>,
    /// Time of the last successful read, seconds since the Unix epoch.
    pub last_success: Option<Seconds>,
}

/// A histogram with fixed buckets (`INTERVAL_BUCKETS` and +Inf); counts per bucket, not
/// cumulative (the encoder accumulates).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the last is +Inf).
    pub counts: Vec<u64>,
    /// Sum of the observed values, s.
    pub sum: f64,
    /// Observations.
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
    /// Records one observation of `value` s.
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

/// One lineage edge to a parent product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParentEdge {
    /// Parent product.
    pub product: String,
    /// Lineage weight (w₁ or w₂) of the parent's EPC.
    pub weight: f64,
    /// `model` (`derivedFrom`) or `dataset` (`datasets`).
    pub via: &'static str,
}

/// The lineage of `products`, by product.
pub(crate) fn lineage_of(products: &[jobcarbon_core::ProductDef]) -> Lineage {
    products
        .iter()
        .map(|def| {
            let edges = |list: &[jobcarbon_core::LineageEdge], via: &'static str| {
                list.iter()
                    .map(|e| ParentEdge {
                        product: e.product.clone(),
                        weight: e.weight,
                        via,
                    })
                    .collect::<Vec<_>>()
            };
            let mut parents = edges(&def.derived_from, "model");
            parents.extend(edges(&def.datasets, "dataset"));
            (def.name.clone(), parents)
        })
        .collect()
}

/// The lineage of the last product definitions seen, rebuilt only when they change (the
/// ledger publishes the same `Arc` every interval until then).
#[derive(Debug, Default)]
pub(crate) struct LineageCache {
    products: Vec<jobcarbon_core::ProductDef>,
    lineage: Arc<Lineage>,
}

impl LineageCache {
    /// The lineage of `products`: the cached one when they are the ones seen last.
    pub fn lineage(&mut self, products: &[jobcarbon_core::ProductDef]) -> Arc<Lineage> {
        if self.products.as_slice() != products {
            self.lineage = Arc::new(lineage_of(products));
            self.products = products.to_vec();
        }
        Arc::clone(&self.lineage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobcarbon_core::{LineageEdge, ProductDef, ProductType, Seconds};

    fn product(name: &str, parent: Option<&str>) -> ProductDef {
        let mut def = ProductDef::new(name, ProductType::Model, Seconds(86_400.0));
        def.derived_from = parent
            .map(|p| LineageEdge {
                product: p.to_owned(),
                weight: 1.0,
            })
            .into_iter()
            .collect();
        def
    }

    #[test]
    fn lineage_is_rebuilt_only_when_products_change() {
        let mut cache = LineageCache::default();
        let v1 = vec![product("base", None), product("chat", Some("base"))];
        let first = cache.lineage(&v1);
        assert_eq!(*first, lineage_of(&v1));
        assert!(Arc::ptr_eq(&first, &cache.lineage(&v1.clone())));
        let v2 = vec![product("base", None), product("chat", None)];
        let changed = cache.lineage(&v2);
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(*changed, lineage_of(&v2));
        assert!(changed["chat"].is_empty());
    }
}

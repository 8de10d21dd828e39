//! The ledger's own allocation history: what each interval booked, by (namespace, workload,
//! phase, product) and by unallocated reason, kept in UTC-aligned buckets so
//! `/api/v1/allocation` can answer any window without Prometheus.
//!
//! Memory is bounded by tiers: each interval is added to a fine, a medium and a coarse bucket
//! (default 5 min kept 24 h, 1 h kept 14 d, 1 d kept 400 d); a query reads each part of its
//! window from the finest tier still covering it. At most (288 + 336 + 400) buckets × the
//! keys active in them, each entry 64 bytes. Not checkpointed: a restart starts it afresh.
//!
//! An interval spanning a bucket edge is split between the buckets by time, and a bucket
//! partly inside a query window counts pro rata over the span its data covers (uniform
//! rate within an interval: the same assumption the interval itself makes).

use crate::interval::IntervalReport;
use crate::state::LedgerState;
use jobcarbon_core::{Grams, Joules, PodKey, Seconds, Terms, UnallocatedReason};
use std::collections::BTreeMap;

/// The finest key an interval is booked under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllocationKey {
    /// Namespace of the workload.
    pub namespace: String,
    /// `Kind/name`, the `workload` label.
    pub workload: String,
    /// Phase label (`training`, `inference`, ...).
    pub phase: String,
    /// Software product, if any.
    pub product: Option<String>,
}

/// Energy and carbon booked to one key.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Amounts {
    /// Energy, J.
    pub energy: Joules,
    /// Carbon by term, gCO2e.
    pub terms: Terms,
}

impl Amounts {
    fn add_scaled(&mut self, other: &Amounts, factor: f64) {
        self.energy += other.energy * factor;
        self.terms += other.terms.scaled(factor);
    }
}

/// What one interval `(start, end]` booked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalDelta {
    /// Interval start, seconds since the Unix epoch.
    pub start: Seconds,
    /// Interval end, seconds since the Unix epoch.
    pub end: Seconds,
    /// What each group was booked in the interval.
    pub items: BTreeMap<AllocationKey, Amounts>,
    /// Carbon no workload was given, gCO2e, by reason.
    pub unallocated: BTreeMap<UnallocatedReason, Grams>,
}

/// The key of a pod booked in the interval from `before` to `after`: its account (pods that
/// rolled up this interval are only in `before`), or its roll-up when over the series cap.
fn key_of(before: &LedgerState, after: &LedgerState, pod: &PodKey) -> Option<AllocationKey> {
    if let Some(a) = after.pods.get(pod).or_else(|| before.pods.get(pod)) {
        return Some(AllocationKey {
            namespace: a.workload.namespace.clone(),
            workload: a.workload.workload.clone(),
            phase: a.phase.as_str().to_owned(),
            product: a.product.clone(),
        });
    }
    let r = &after.overflow.get(pod)?.rollup;
    Some(AllocationKey {
        namespace: r.workload.namespace.clone(),
        workload: r.workload.workload.clone(),
        phase: r.phase.as_str().to_owned(),
        product: r.product.clone(),
    })
}

/// The delta of one booked interval, from the states around it and its report.
pub fn interval_delta(
    before: &LedgerState,
    after: &LedgerState,
    report: &IntervalReport,
) -> IntervalDelta {
    let mut delta = IntervalDelta {
        start: report.at - report.duration,
        end: report.at,
        ..IntervalDelta::default()
    };
    let pods = report.pod_terms.keys().chain(report.pod_energy.keys());
    let pods: std::collections::BTreeSet<&PodKey> = pods.collect();
    for pod in pods {
        let amounts = Amounts {
            energy: report.pod_energy.get(pod).copied().unwrap_or(Joules::ZERO),
            terms: report.pod_terms.get(pod).copied().unwrap_or(Terms::ZERO),
        };
        match key_of(before, after, pod) {
            Some(key) => delta
                .items
                .entry(key)
                .or_default()
                .add_scaled(&amounts, 1.0),
            // Cannot happen for a booked pod; kept so no gram is ever dropped.
            None => {
                *delta
                    .unallocated
                    .entry(UnallocatedReason::UnknownPod)
                    .or_insert(Grams::ZERO) += amounts.terms.asce()
            }
        }
    }
    let books = [&report.emissions.unallocated, &report.transfers.unallocated];
    for (reason, grams) in books.into_iter().flatten() {
        *delta.unallocated.entry(*reason).or_insert(Grams::ZERO) += *grams;
    }
    delta
}

/// Bucket sizes and how long each tier keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// (bucket size, kept for), finest first; each size divides the next.
    pub tiers: [(Seconds, Seconds); 3],
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            tiers: [
                (Seconds::from_minutes(5.0), Seconds::from_hours(24.0)),
                (Seconds::from_hours(1.0), Seconds::from_days(14.0)),
                (Seconds::from_days(1.0), Seconds::from_days(400.0)),
            ],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Bucket {
    /// The span its data covers, within the bucket.
    lo: f64,
    hi: f64,
    items: BTreeMap<u32, Amounts>,
    unallocated: BTreeMap<UnallocatedReason, Grams>,
}

#[derive(Debug, Clone, PartialEq)]
struct Tier {
    size: f64,
    keep: f64,
    /// Everything booked since this time is in the tier (older buckets were dropped).
    covers_from: f64,
    /// Buckets by index (start / size).
    buckets: BTreeMap<i64, Bucket>,
}

/// The history itself (`crate::view::LedgerView::history`).
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationHistory {
    keys: Vec<AllocationKey>,
    index: BTreeMap<AllocationKey, u32>,
    tiers: Vec<Tier>,
    /// End of the last recorded interval.
    pub latest: Option<Seconds>,
    /// Start of the first recorded interval.
    pub earliest: Option<Seconds>,
}

impl Default for AllocationHistory {
    fn default() -> Self {
        Self::new(Retention::default())
    }
}

/// Bucket index of `t` (the bucket `[i·size, (i+1)·size)` holding it).
fn index_of(t: f64, size: f64) -> i64 {
    (t / size).floor() as i64
}

impl AllocationHistory {
    /// An empty history keeping what `retention` allows.
    pub fn new(retention: Retention) -> Self {
        let tiers = retention
            .tiers
            .iter()
            .map(|(size, keep)| Tier {
                size: size.value().max(1.0),
                keep: keep.value().max(size.value()),
                covers_from: f64::NEG_INFINITY,
                buckets: BTreeMap::new(),
            })
            .collect();
        Self {
            keys: Vec::new(),
            index: BTreeMap::new(),
            tiers,
            latest: None,
            earliest: None,
        }
    }

    fn intern(&mut self, key: &AllocationKey) -> u32 {
        if let Some(i) = self.index.get(key) {
            return *i;
        }
        let i = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        self.keys.push(key.clone());
        self.index.insert(key.clone(), i);
        i
    }

    /// Adds one interval to every tier, then drops what each tier no longer keeps.
    pub fn record(&mut self, delta: &IntervalDelta) {
        let (start, end) = (delta.start.value(), delta.end.value());
        if !(start.is_finite() && end.is_finite()) || end < start {
            return;
        }
        let items: Vec<(u32, &Amounts)> = delta
            .items
            .iter()
            .map(|(k, a)| (self.intern(k), a))
            .collect();
        let coarser: Vec<f64> = self.tiers.iter().skip(1).map(|t| t.size).collect();
        for (n, tier) in self.tiers.iter_mut().enumerate() {
            tier.add(start, end, &items, &delta.unallocated);
            // Cut at a boundary of the next tier so tiers hand over on bucket edges.
            let align = coarser.get(n).copied().unwrap_or(tier.size);
            let cut = ((end - tier.keep) / align).floor() * align;
            if cut > tier.covers_from {
                tier.covers_from = cut;
                let first = index_of(cut, tier.size);
                tier.buckets = tier.buckets.split_off(&first);
            }
        }
        self.latest = Some(Seconds(self.latest.map_or(end, |l| l.value().max(end))));
        self.earliest = Some(Seconds(
            self.earliest.map_or(start, |e| e.value().min(start)),
        ));
    }

    /// Σ of everything booked in `[from, to)`, by key and by unallocated reason.
    pub fn sum(&self, from: Seconds, to: Seconds) -> Sums {
        let mut sums = Sums::default();
        let (from, to) = (from.value(), to.value());
        // Finest tier first: each coarser tier only answers for what the finer ones dropped.
        let mut upper = to;
        for tier in &self.tiers {
            let lower = from.max(tier.covers_from);
            if lower < upper {
                tier.sum_into(lower, upper, &mut sums);
            }
            upper = upper.min(tier.covers_from);
        }
        let items = std::mem::take(&mut sums.by_index);
        for (i, amounts) in items {
            if let Some(key) = self.keys.get(i as usize) {
                sums.items.insert(key.clone(), amounts);
            }
        }
        sums
    }
}

/// What [`AllocationHistory::sum`] found (or Prometheus: `crate::allocation_prom`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sums {
    /// What each group was booked over the span.
    pub items: BTreeMap<AllocationKey, Amounts>,
    /// Carbon no workload was given over the span, gCO2e, by reason.
    pub unallocated: BTreeMap<UnallocatedReason, Grams>,
    by_index: BTreeMap<u32, Amounts>,
}

impl Sums {
    /// Adds `amounts` to `key`.
    pub fn add_item(&mut self, key: AllocationKey, amounts: &Amounts) {
        self.items.entry(key).or_default().add_scaled(amounts, 1.0);
    }

    /// Adds `grams` to `reason`.
    pub fn add_unallocated(&mut self, reason: UnallocatedReason, grams: Grams) {
        *self.unallocated.entry(reason).or_insert(Grams::ZERO) += grams;
    }

    /// Adds everything of `other` (the window of consecutive steps is their sum).
    pub fn add(&mut self, other: &Sums) {
        for (key, amounts) in &other.items {
            self.add_item(key.clone(), amounts);
        }
        for (reason, grams) in &other.unallocated {
            self.add_unallocated(*reason, *grams);
        }
    }
}

impl Tier {
    fn add(
        &mut self,
        start: f64,
        end: f64,
        items: &[(u32, &Amounts)],
        unallocated: &BTreeMap<UnallocatedReason, Grams>,
    ) {
        let span = end - start;
        let (first, last) = if span > 0.0 {
            // `(start, end]`: an interval ending on an edge belongs to the bucket before it.
            (
                index_of(start, self.size),
                (end / self.size).ceil() as i64 - 1,
            )
        } else {
            (index_of(end, self.size), index_of(end, self.size))
        };
        for i in first..=last.max(first) {
            let (b0, b1) = (i as f64 * self.size, (i + 1) as f64 * self.size);
            let (lo, hi) = (start.max(b0), end.min(b1));
            let fraction = if span > 0.0 { (hi - lo) / span } else { 1.0 };
            let bucket = self.buckets.entry(i).or_insert_with(|| Bucket {
                lo,
                hi,
                ..Bucket::default()
            });
            bucket.lo = bucket.lo.min(lo);
            bucket.hi = bucket.hi.max(hi);
            for (key, amounts) in items {
                bucket
                    .items
                    .entry(*key)
                    .or_default()
                    .add_scaled(amounts, fraction);
            }
            for (reason, grams) in unallocated {
                *bucket.unallocated.entry(*reason).or_insert(Grams::ZERO) += *grams * fraction;
            }
        }
    }

    fn sum_into(&self, from: f64, to: f64, sums: &mut Sums) {
        let first = index_of(from, self.size);
        for (_, bucket) in self.buckets.range(first..) {
            if bucket.lo >= to {
                break;
            }
            let fraction = if bucket.hi > bucket.lo {
                ((bucket.hi.min(to) - bucket.lo.max(from)) / (bucket.hi - bucket.lo)).max(0.0)
            } else if (from..to).contains(&bucket.lo) {
                1.0
            } else {
                0.0
            };
            if fraction <= 0.0 {
                continue;
            }
            for (key, amounts) in &bucket.items {
                sums.by_index
                    .entry(*key)
                    .or_default()
                    .add_scaled(amounts, fraction);
            }
            for (reason, grams) in &bucket.unallocated {
                *sums.unallocated.entry(*reason).or_insert(Grams::ZERO) += *grams * fraction;
            }
        }
    }
}

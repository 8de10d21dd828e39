//! Cumulative counters → non-negative per-interval deltas: the one counter rule of
//! `docs/telemetry.md`, for joules and request counts alike.
//!
//! - Energy is booked only when it provably happened inside the booked interval. A series
//!   seen for the first time books nothing of its past, unless the caller proves it started
//!   since the previous observation (a Kepler pod series whose pod was created after it):
//!   see [`CounterTracker::observe_since`].
//! - A decrease is a reset (the counter restarted at 0, the new value is the delta); a
//!   decrease from near a known maximum is a wrap; a decrease of less than
//!   [`JITTER`] of the value is jitter between scrapes of the same counter (an HA pair): it
//!   books nothing and keeps the higher baseline.
//! - A series that vanishes keeps what it booked; one that returns books its increase since
//!   its last sample. Series unseen for longer than the retention are forgotten by
//!   [`CounterTracker::forget_older_than`], and the first-sight rule applies when they return.
//! - Readings that share one `series` are one counter shared by several owners (a
//!   time-sliced GPU, the MIG instances of one GPU): its delta goes to the readings' slots by
//!   weight, and a slot's part equally over its readings, so it is counted once.
//! - Energy is never negative; non-finite or negative samples are rejected, not booked.
//!
//! The tracker is `Serialize`/`Deserialize` so the ledger can checkpoint it. It remembers
//! each series under one shared `Arc<str>` (cloning a tracker copies no identity strings)
//! and serialises them as a map sorted by identity, the form checkpoints have always had.

use jobcarbon_core::allocation::{split_equal, split_weighted};
use jobcarbon_core::{
    Component, EnergyDelta, EnergyOwner, EnergyReading, Joules, PodKey, Seconds, UnallocatedReason,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A decrease smaller than this fraction of the previous value is jitter, not a reset.
pub const JITTER: f64 = 0.01;

/// What to book the first time a series is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstSight {
    /// Book nothing of the past, unless the caller proves the series started since the
    /// previous observation ([`CounterTracker::observe_since`]).
    #[default]
    #[serde(alias = "book-after-first-observation")]
    Baseline,
    /// Book the whole cumulative value (counters known to start at 0 with the tracker).
    BookAll,
}

/// A counter's known maximum: a decrease from near it is a wrap, not a reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrapRule {
    /// Applies to series whose identity starts with this prefix.
    pub series_prefix: String,
    /// The value at which the counter wraps to 0.
    pub maximum: Joules,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LastSample {
    cumulative: Joules,
    at: Seconds,
}

/// Why a reading was not booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// NaN, infinite or negative cumulative value.
    InvalidValue,
    /// Older than the last sample of the series (an out-of-order or repeated backfill read).
    OutOfOrder,
}

/// The result of one [`CounterTracker::observe`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Non-negative deltas, one per owner, node and component that consumed energy.
    pub deltas: Vec<EnergyDelta>,
    /// Series booked as a reset (counter decreased).
    pub resets: Vec<String>,
    /// Series booked as a wrap of their known maximum.
    pub wraps: Vec<String>,
    /// Series seen for the first time.
    pub new_series: Vec<String>,
    /// Readings not booked, with the reason.
    pub rejected: Vec<(String, Rejection)>,
}

impl Observed {
    /// Σ of all deltas.
    pub fn total(&self) -> Joules {
        self.deltas.iter().map(|d| d.energy).sum()
    }
}

/// Turns cumulative readings into deltas; remembers the last sample of every series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterTracker {
    first_sight: FirstSight,
    wrap_rules: Vec<WrapRule>,
    #[serde(with = "series_map")]
    last: HashMap<Arc<str>, LastSample>,
    observations: u64,
    /// The latest sample time of the previous observation.
    #[serde(default)]
    previous_at: Option<Seconds>,
}

impl CounterTracker {
    /// An empty tracker applying `first_sight` to series it has not seen.
    pub fn new(first_sight: FirstSight) -> Self {
        Self {
            first_sight,
            ..Self::default()
        }
    }

    /// Declares that series starting with `series_prefix` wrap to 0 after `maximum`.
    pub fn with_wrap(mut self, series_prefix: impl Into<String>, maximum: Joules) -> Self {
        self.wrap_rules.push(WrapRule {
            series_prefix: series_prefix.into(),
            maximum,
        });
        self
    }

    /// Number of series remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The last cumulative value seen for `series`.
    pub fn last_value(&self, series: &str) -> Option<Joules> {
        self.last.get(series).map(|s| s.cumulative)
    }

    /// Forgets series whose last sample is older than `before` (vanished long ago), so
    /// memory does not grow with every pod that ever ran. What they booked stays booked.
    pub fn forget_older_than(&mut self, before: Seconds) -> usize {
        let n = self.last.len();
        self.last.retain(|_, s| s.at >= before);
        n - self.last.len()
    }

    fn wrap_maximum(&self, series: &str) -> Option<Joules> {
        self.wrap_rules
            .iter()
            .find(|r| series.starts_with(&r.series_prefix))
            .map(|r| r.maximum)
    }

    /// Books one batch of readings (normally one source's answer for one time). A new
    /// series books nothing of its past.
    pub fn observe(&mut self, readings: &[EnergyReading]) -> Observed {
        self.observe_since(readings, &|_, _| false)
    }

    /// Like [`CounterTracker::observe`], but a new series whose reading `started(reading,
    /// since)` proves it began counting from 0 after `since` (the previous observation's
    /// time) books its whole value. Never on the tracker's first observation.
    pub fn observe_since(
        &mut self,
        readings: &[EnergyReading],
        started: &dyn Fn(&EnergyReading, Seconds) -> bool,
    ) -> Observed {
        let mut out = Observed::default();
        let by_series = valid_by_series(readings, &mut out.rejected);
        let previous_at = self.previous_at;
        let mut booked: Vec<Booking<'_>> = Vec::with_capacity(by_series.len());
        let mut latest = previous_at;
        for group in by_series.chunk_by(|a, b| a.series == b.series) {
            let series = group[0].series.as_str();
            // A shared counter reports one value; take the largest in case of jitter.
            let value = group
                .iter()
                .map(|r| r.cumulative)
                .fold(Joules::ZERO, Joules::max);
            let at = group.iter().map(|r| r.at).fold(Seconds::ZERO, Seconds::max);
            let Some(delta) = self.step(series, value, at, previous_at, group, started, &mut out)
            else {
                continue;
            };
            latest = Some(latest.map_or(at, |l| l.max(at)));
            if delta > Joules::ZERO {
                book_shared(delta, group, &mut booked);
            }
        }
        self.observations += 1;
        self.previous_at = latest;
        out.deltas = merged(booked);
        out
    }

    /// One series' delta under the counter rule; `None` when the reading is rejected.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        series: &str,
        value: Joules,
        at: Seconds,
        previous_at: Option<Seconds>,
        group: &[&EnergyReading],
        started: &dyn Fn(&EnergyReading, Seconds) -> bool,
        out: &mut Observed,
    ) -> Option<Joules> {
        let wrap = self.wrap_maximum(series).map(Joules::value);
        let first_sight = self.first_sight;
        let slot = self.last.get_mut(series);
        let previous = slot.as_ref().map(|p| (p.cumulative.value(), p.at));
        // Only a first sight asks the caller for proof (`counter_step` ignores it otherwise).
        let book_first_sight = previous.is_none()
            && match first_sight {
                FirstSight::BookAll => true,
                FirstSight::Baseline => {
                    previous_at.is_some_and(|since| group.iter().all(|r| started(r, since)))
                }
            };
        let step = counter_step(previous, value.value(), at, book_first_sight, wrap);
        match step.kind {
            StepKind::OutOfOrder => {
                out.rejected
                    .push((series.to_owned(), Rejection::OutOfOrder));
                return None;
            }
            StepKind::FirstSight => out.new_series.push(series.to_owned()),
            StepKind::Reset => out.resets.push(series.to_owned()),
            StepKind::Wrap => out.wraps.push(series.to_owned()),
            StepKind::Increase | StepKind::Jitter => {}
        }
        let sample = LastSample {
            cumulative: Joules(step.baseline),
            at,
        };
        match slot {
            Some(kept) => *kept = sample,
            None => {
                self.last.insert(Arc::from(series), sample);
            }
        }
        Some(Joules(step.delta).non_negative())
    }
}

/// What the counter rule made of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    FirstSight,
    Increase,
    Jitter,
    Reset,
    Wrap,
    OutOfOrder,
}

/// One sample under the counter rule: what to book and the baseline to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub delta: f64,
    pub baseline: f64,
}

/// The counter rule for one series (the module docs), shared by energy and request counters:
/// `previous` is the last baseline and its time, `book_first_sight` whether a first sight
/// provably counted from 0 inside the interval, `wrap` a known maximum.
pub fn counter_step(
    previous: Option<(f64, Seconds)>,
    value: f64,
    at: Seconds,
    book_first_sight: bool,
    wrap: Option<f64>,
) -> Step {
    let step = |kind, delta: f64, baseline| Step {
        kind,
        delta: delta.max(0.0),
        baseline,
    };
    match previous {
        None => step(
            StepKind::FirstSight,
            if book_first_sight { value } else { 0.0 },
            value,
        ),
        Some((_, prev_at)) if at < prev_at => step(StepKind::OutOfOrder, 0.0, value),
        Some((prev, _)) if value >= prev => step(StepKind::Increase, value - prev, value),
        Some((prev, _)) if value >= prev * (1.0 - JITTER) => step(StepKind::Jitter, 0.0, prev),
        Some((prev, _)) => match wrap {
            Some(max) if is_wrap(Joules(prev), Joules(value), Joules(max)) => {
                step(StepKind::Wrap, (max - prev) + value, value)
            }
            _ => step(StepKind::Reset, value, value),
        },
    }
}

/// One sample of a request counter (or any plain cumulative count).
#[derive(Debug, Clone, PartialEq)]
pub struct CountSample {
    /// Stable identity: the series' labels without replica labels.
    pub series: String,
    /// The pod the series belongs to, when its labels name one.
    pub pod: Option<PodKey>,
    /// The cumulative count.
    pub value: f64,
    /// Sample time, seconds since the Unix epoch.
    pub at: Seconds,
}

/// Per-series request counters under the same rule as energy: deltas are summed, never
/// values, so a replica leaving is not a reset and counts from before the ledger started are
/// not booked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CountTracker {
    last: BTreeMap<String, (f64, Seconds)>,
    previous_at: Option<Seconds>,
}

impl CountTracker {
    /// Σ of the samples' deltas; a new series counts whole when `started(sample, since)`
    /// proves it began at 0 after the previous observation (a new replica).
    pub fn observe(
        &mut self,
        samples: &[CountSample],
        started: &dyn Fn(&CountSample, Seconds) -> bool,
    ) -> f64 {
        let previous_at = self.previous_at;
        let mut total = 0.0;
        let mut latest = previous_at;
        for s in samples
            .iter()
            .filter(|s| s.value.is_finite() && s.value >= 0.0)
        {
            let book_first = previous_at.is_some_and(|since| started(s, since));
            let step = counter_step(
                self.last.get(&s.series).copied(),
                s.value,
                s.at,
                book_first,
                None,
            );
            if step.kind == StepKind::OutOfOrder {
                continue;
            }
            self.last.insert(s.series.clone(), (step.baseline, s.at));
            total += step.delta;
            latest = Some(latest.map_or(s.at, |l| l.max(s.at)));
        }
        self.previous_at = latest;
        total
    }

    /// Forgets series unseen since `before`.
    pub fn forget_older_than(&mut self, before: Seconds) {
        self.last.retain(|_, (_, at)| *at >= before);
    }

    /// Number of series remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Who one part of a delta goes to: node, owner, component, estimated (borrowed from the
/// reading; owned only once per delta in [`merged`]).
type DeltaKey<'a> = (&'a str, &'a EnergyOwner, Component, bool);

/// One part of a delta, in booking order.
type Booking<'a> = (DeltaKey<'a>, Joules);

/// The valid readings in series order (a stable sort: a shared series' readings keep their
/// order); invalid ones are rejected, in input order.
fn valid_by_series<'a>(
    readings: &'a [EnergyReading],
    rejected: &mut Vec<(String, Rejection)>,
) -> Vec<&'a EnergyReading> {
    let mut valid = Vec::with_capacity(readings.len());
    for r in readings {
        if !r.cumulative.value().is_finite() || r.cumulative.value() < 0.0 {
            rejected.push((r.series.clone(), Rejection::InvalidValue));
        } else {
            valid.push(r);
        }
    }
    valid.sort_by(|a, b| a.series.cmp(&b.series));
    valid
}

/// One delta per key, keys ascending; parts of the same key summed in booking order (the
/// same sums, bit for bit, as adding them up in a map as they come).
fn merged(mut booked: Vec<Booking<'_>>) -> Vec<EnergyDelta> {
    booked.sort_by(|a, b| a.0.cmp(&b.0));
    booked
        .chunk_by(|a, b| a.0 == b.0)
        .map(|parts| {
            let ((node, owner, component, estimated), _) = parts[0];
            EnergyDelta {
                node: node.to_owned(),
                owner: owner.clone(),
                component,
                energy: parts.iter().fold(Joules::ZERO, |sum, (_, e)| sum + *e),
                estimated,
            }
        })
        .collect()
}

fn key_of(reading: &EnergyReading) -> DeltaKey<'_> {
    (
        reading.node.as_str(),
        &reading.owner,
        reading.component,
        reading.estimated,
    )
}

/// Splits one shared counter's delta over its readings: slots by weight, then each slot's
/// part equally over the slot's readings. A lone reading takes the whole delta.
fn book_shared<'a>(delta: Joules, group: &[&'a EnergyReading], booked: &mut Vec<Booking<'a>>) {
    if let [only] = group {
        booked.push((key_of(only), delta.non_negative()));
        return;
    }
    let mut slots: BTreeMap<&str, (f64, Vec<&EnergyReading>)> = BTreeMap::new();
    for r in group {
        let slot = slots
            .entry(r.share.slot.as_str())
            .or_insert((0.0, Vec::new()));
        let weight = if r.share.weight.is_finite() {
            r.share.weight.max(0.0)
        } else {
            0.0
        };
        slot.0 = slot.0.max(weight);
        slot.1.push(r);
    }
    // All weights zero: split_weighted shares equally rather than losing the energy.
    let weights = slots.iter().map(|(slot, (w, _))| (*slot, *w));
    let parts = split_weighted(delta, weights, UnallocatedReason::Rounding).shares;
    for (slot, part) in parts {
        let Some((_, readings)) = slots.get(slot) else {
            continue;
        };
        let split = split_equal(part, readings.iter().copied(), UnallocatedReason::Rounding);
        for (reading, share) in split.shares {
            booked.push((key_of(reading), share.non_negative()));
        }
    }
}

/// The checkpoint form of the remembered series: a map sorted by identity (as the
/// `BTreeMap<String, _>` it used to be, byte for byte in JSON).
mod series_map {
    use super::LastSample;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::HashMap;
    use std::sync::Arc;

    pub(super) fn serialize<S: Serializer>(
        last: &HashMap<Arc<str>, LastSample>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<(&str, &LastSample)> =
            last.iter().map(|(series, s)| (&**series, s)).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_map(sorted)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<HashMap<Arc<str>, LastSample>, D::Error> {
        let last = HashMap::<String, LastSample>::deserialize(deserializer)?;
        Ok(last
            .into_iter()
            .map(|(series, s)| (Arc::from(series), s))
            .collect())
    }
}

/// A decrease is a wrap when the wrapped-around delta is less than half the counter's range
/// and the previous value was within range; otherwise it is a reset (restart at 0).
fn is_wrap(previous: Joules, new: Joules, maximum: Joules) -> bool {
    previous <= maximum && (maximum - previous) + new < maximum * 0.5
}

/// The tracker as it was before series were interned (`BTreeMap<String, _>`, a map entry per
/// owner key): the reference the interned tracker must match exactly, and the checkpoint
/// form older ledgers wrote.
#[cfg(test)]
mod reference {
    #![allow(clippy::too_many_lines)]
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct OldTracker {
        pub first_sight: FirstSight,
        pub wrap_rules: Vec<WrapRule>,
        pub last: BTreeMap<String, LastSample>,
        pub observations: u64,
        #[serde(default)]
        pub previous_at: Option<Seconds>,
    }

    impl OldTracker {
        fn wrap_maximum(&self, series: &str) -> Option<Joules> {
            self.wrap_rules
                .iter()
                .find(|r| series.starts_with(&r.series_prefix))
                .map(|r| r.maximum)
        }

        pub fn observe_since(
            &mut self,
            readings: &[EnergyReading],
            started: &dyn Fn(&EnergyReading, Seconds) -> bool,
        ) -> Observed {
            let mut out = Observed::default();
            let mut groups: BTreeMap<&str, Vec<&EnergyReading>> = BTreeMap::new();
            for r in readings {
                if !r.cumulative.value().is_finite() || r.cumulative.value() < 0.0 {
                    out.rejected
                        .push((r.series.clone(), Rejection::InvalidValue));
                    continue;
                }
                groups.entry(r.series.as_str()).or_default().push(r);
            }
            let previous_at = self.previous_at;
            let mut booked: BTreeMap<(String, EnergyOwner, Component, bool), Joules> =
                BTreeMap::new();
            let mut latest = previous_at;
            for (series, group) in groups {
                // A shared counter reports one value; take the largest in case of jitter.
                let value = group
                    .iter()
                    .map(|r| r.cumulative)
                    .fold(Joules::ZERO, Joules::max);
                let at = group.iter().map(|r| r.at).fold(Seconds::ZERO, Seconds::max);
                let Some(delta) =
                    self.step(series, value, at, previous_at, &group, started, &mut out)
                else {
                    continue;
                };
                latest = Some(latest.map_or(at, |l| l.max(at)));
                if delta > Joules::ZERO {
                    book_shared(delta, &group, &mut booked);
                }
            }
            self.observations += 1;
            self.previous_at = latest;
            out.deltas = booked
                .into_iter()
                .map(
                    |((node, owner, component, estimated), energy)| EnergyDelta {
                        node,
                        owner,
                        component,
                        energy,
                        estimated,
                    },
                )
                .collect();
            out
        }

        /// One series' delta under the counter rule; `None` when the reading is rejected.
        #[allow(clippy::too_many_arguments)]
        fn step(
            &mut self,
            series: &str,
            value: Joules,
            at: Seconds,
            previous_at: Option<Seconds>,
            group: &[&EnergyReading],
            started: &dyn Fn(&EnergyReading, Seconds) -> bool,
            out: &mut Observed,
        ) -> Option<Joules> {
            let previous = self.last.get(series).map(|p| (p.cumulative.value(), p.at));
            let book_first_sight = match self.first_sight {
                FirstSight::BookAll => true,
                FirstSight::Baseline => {
                    previous_at.is_some_and(|since| group.iter().all(|r| started(r, since)))
                }
            };
            let wrap = self.wrap_maximum(series).map(Joules::value);
            let step = counter_step(previous, value.value(), at, book_first_sight, wrap);
            match step.kind {
                StepKind::OutOfOrder => {
                    out.rejected
                        .push((series.to_owned(), Rejection::OutOfOrder));
                    return None;
                }
                StepKind::FirstSight => out.new_series.push(series.to_owned()),
                StepKind::Reset => out.resets.push(series.to_owned()),
                StepKind::Wrap => out.wraps.push(series.to_owned()),
                StepKind::Increase | StepKind::Jitter => {}
            }
            self.last.insert(
                series.to_owned(),
                LastSample {
                    cumulative: Joules(step.baseline),
                    at,
                },
            );
            Some(Joules(step.delta).non_negative())
        }
    }

    /// Splits one shared counter's delta over its readings: slots by weight, then each slot's
    /// part equally over the slot's readings.
    fn book_shared(
        delta: Joules,
        group: &[&EnergyReading],
        booked: &mut BTreeMap<(String, EnergyOwner, Component, bool), Joules>,
    ) {
        let mut slots: BTreeMap<&str, (f64, Vec<&EnergyReading>)> = BTreeMap::new();
        for r in group {
            let slot = slots
                .entry(r.share.slot.as_str())
                .or_insert((0.0, Vec::new()));
            let weight = if r.share.weight.is_finite() {
                r.share.weight.max(0.0)
            } else {
                0.0
            };
            slot.0 = slot.0.max(weight);
            slot.1.push(r);
        }
        // All weights zero: split_weighted shares equally rather than losing the energy.
        let weights = slots.iter().map(|(slot, (w, _))| (*slot, *w));
        let parts = split_weighted(delta, weights, UnallocatedReason::Rounding).shares;
        for (slot, part) in parts {
            let Some((_, readings)) = slots.get(slot) else {
                continue;
            };
            let split = split_equal(part, readings.iter().copied(), UnallocatedReason::Rounding);
            for (reading, share) in split.shares {
                *booked
                    .entry((
                        reading.node.clone(),
                        reading.owner.clone(),
                        reading.component,
                        reading.estimated,
                    ))
                    .or_insert(Joules::ZERO) += share.non_negative();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reading(series: &str, pod: &str, value: f64, at: f64) -> EnergyReading {
        EnergyReading::new(
            series,
            "n1",
            EnergyOwner::pod("ns", pod, "c"),
            Component::Cpu,
            Joules(value),
            Seconds(at),
        )
    }

    fn pod_total(obs: &Observed, pod: &str) -> f64 {
        obs.deltas
            .iter()
            .filter(|d| matches!(&d.owner, EnergyOwner::Pod { key, .. } if key.pod == pod))
            .map(|d| d.energy.value())
            .sum()
    }

    fn total(obs: &Observed) -> f64 {
        obs.total().value()
    }

    #[test]
    fn first_sight_is_baseline_then_deltas() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        assert_eq!(total(&t.observe(&[reading("s", "p", 100.0, 0.0)])), 0.0);
        assert_eq!(total(&t.observe(&[reading("s", "p", 130.0, 30.0)])), 30.0);
        assert_eq!(total(&t.observe(&[reading("s", "p", 130.0, 60.0)])), 0.0);
    }

    #[test]
    fn book_all_and_started_since_previous_observation() {
        let mut t = CounterTracker::new(FirstSight::BookAll);
        assert_eq!(total(&t.observe(&[reading("s", "p", 100.0, 0.0)])), 100.0);
        // Only series the caller proves started after the previous observation (t = 0).
        let started = |r: &EnergyReading, since: Seconds| {
            assert_eq!(since, Seconds(0.0));
            matches!(&r.owner, EnergyOwner::Pod { key, .. } if key.pod == "new")
        };
        let mut t = CounterTracker::new(FirstSight::Baseline);
        assert_eq!(
            total(&t.observe_since(&[reading("a", "new", 100.0, 0.0)], &started)),
            0.0,
            "never on the first observation"
        );
        let obs = t.observe_since(
            &[
                reading("a", "new", 110.0, 30.0),
                reading("b", "new", 7.0, 30.0),
                reading("c", "old", 7.2e6, 30.0),
            ],
            &started,
        );
        assert_eq!(total(&obs), 17.0, "a GPU's since-boot 7.2 MJ is not booked");
        assert_eq!(obs.new_series, vec!["b".to_owned(), "c".to_owned()]);
    }

    #[test]
    fn forgotten_series_returning_books_nothing_of_its_past() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&[reading("g", "p", 1000.0, 0.0), reading("h", "p", 5.0, 0.0)]);
        // g is absent for two hours: still remembered (24 h retention), so its return books
        // the increase over the gap, not its since-boot value.
        t.observe(&[reading("h", "p", 6.0, 3600.0)]);
        let obs = t.observe(&[reading("g", "p", 1500.0, 7200.0)]);
        assert_eq!(total(&obs), 500.0);
        // Beyond retention it is forgotten; on return the first-sight rule applies.
        assert_eq!(t.forget_older_than(Seconds(7200.0 - 60.0)), 1);
        let obs = t.observe(&[reading("h", "p", 9.0, 7230.0)]);
        assert_eq!(
            total(&obs),
            0.0,
            "h is a new series again: its 9 J are its past"
        );
    }

    #[test]
    fn small_decrease_is_jitter_not_reset() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&[reading("s", "p", 1_000_000.0, 0.0)]);
        // An undeduplicated HA replica scraped a moment earlier: 0.1 % lower.
        let obs = t.observe(&[reading("s", "p", 999_000.0, 30.0)]);
        assert_eq!(total(&obs), 0.0);
        assert!(obs.resets.is_empty());
        assert_eq!(
            total(&t.observe(&[reading("s", "p", 1_000_300.0, 60.0)])),
            300.0
        );
    }

    #[test]
    fn slots_split_by_weight_then_equally() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        let batch = |v: f64, at: f64| {
            vec![
                reading("gpu", "a", v, at).with_share("mig-1", 3.0),
                reading("gpu", "b", v, at).with_share("mig-2", 1.0),
                reading("gpu", "c", v, at).with_share("mig-2", 1.0),
                reading("gpu", "idle", v, at).with_share("unused", 3.0),
            ]
        };
        t.observe(&batch(0.0, 0.0));
        let obs = t.observe(&batch(700.0, 30.0));
        assert!((pod_total(&obs, "a") - 300.0).abs() < 1e-9);
        assert!((pod_total(&obs, "b") - 50.0).abs() < 1e-9);
        assert!((pod_total(&obs, "c") - 50.0).abs() < 1e-9);
        assert!((pod_total(&obs, "idle") - 300.0).abs() < 1e-9);
        assert!((total(&obs) - 700.0).abs() < 1e-9);
    }

    #[test]
    fn decrease_is_reset_new_value_is_delta() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&[reading("s", "p", 500.0, 0.0)]);
        let obs = t.observe(&[reading("s", "p", 20.0, 30.0)]);
        assert_eq!(total(&obs), 20.0);
        assert_eq!(obs.resets, vec!["s".to_owned()]);
        assert_eq!(total(&t.observe(&[reading("s", "p", 25.0, 60.0)])), 5.0);
    }

    #[test]
    fn wrap_of_known_maximum() {
        let mut t = CounterTracker::new(FirstSight::Baseline).with_wrap("rapl/", Joules(1000.0));
        t.observe(&[reading("rapl/pkg", "p", 990.0, 0.0)]);
        let obs = t.observe(&[reading("rapl/pkg", "p", 15.0, 30.0)]);
        assert_eq!(total(&obs), 25.0);
        assert_eq!(obs.wraps.len(), 1);
        // A large drop is a restart, even with a maximum known.
        t.observe(&[reading("rapl/pkg", "p", 400.0, 60.0)]);
        let obs = t.observe(&[reading("rapl/pkg", "p", 10.0, 90.0)]);
        assert_eq!(total(&obs), 10.0);
        assert_eq!(obs.resets.len(), 1);
    }

    #[test]
    fn vanished_series_keeps_booking_and_returning_does_not_double_count() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&[reading("a", "p", 10.0, 0.0), reading("b", "q", 10.0, 0.0)]);
        let obs = t.observe(&[reading("a", "p", 20.0, 30.0), reading("b", "q", 15.0, 30.0)]);
        assert_eq!(total(&obs), 15.0);
        // b vanishes: nothing is taken back.
        let obs = t.observe(&[reading("a", "p", 25.0, 60.0)]);
        assert_eq!(total(&obs), 5.0);
        assert_eq!(t.last_value("b"), Some(Joules(15.0)));
        // b reappears with the same value: no double count.
        let obs = t.observe(&[reading("b", "q", 15.0, 90.0)]);
        assert_eq!(total(&obs), 0.0);
        assert_eq!(t.forget_older_than(Seconds(80.0)), 1);
    }

    #[test]
    fn shared_series_is_split_not_multiplied() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&[
            reading("gpu0", "p", 1000.0, 0.0),
            reading("gpu0", "q", 1000.0, 0.0),
        ]);
        let obs = t.observe(&[
            reading("gpu0", "p", 1300.0, 30.0),
            reading("gpu0", "q", 1300.0, 30.0),
        ]);
        assert_eq!(total(&obs), 300.0);
        assert_eq!(obs.deltas.len(), 2);
        assert!(obs.deltas.iter().all(|d| d.energy == Joules(150.0)));
    }

    #[test]
    fn invalid_and_out_of_order_are_rejected() {
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&[reading("s", "p", 10.0, 30.0)]);
        let obs = t.observe(&[
            reading("s", "p", 5.0, 0.0),
            reading("x", "p", f64::NAN, 30.0),
            reading("y", "p", -4.0, 30.0),
            reading("z", "p", f64::INFINITY, 30.0),
        ]);
        assert_eq!(total(&obs), 0.0);
        assert_eq!(obs.rejected.len(), 4);
        assert_eq!(t.last_value("s"), Some(Joules(10.0)));
    }

    #[test]
    fn checkpoint_round_trip() {
        let mut t = CounterTracker::new(FirstSight::Baseline).with_wrap("x", Joules(10.0));
        t.observe(&[reading("s", "p", 10.0, 0.0)]);
        let json = serde_json::to_string(&t).unwrap();
        let mut back: CounterTracker = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(total(&back.observe(&[reading("s", "p", 12.0, 30.0)])), 2.0);
    }

    /// A checkpoint as the tracker wrote it before series were interned.
    const PRE_INTERNING: &str = r#"{"first_sight":"baseline","wrap_rules":[{"series_prefix":"rapl/","maximum":1000.0}],"last":{"gpu0":{"cumulative":700.0,"at":30.0},"rapl/pkg":{"cumulative":990.0,"at":30.0}},"observations":2,"previous_at":30.0}"#;

    #[test]
    fn pre_interning_checkpoint_loads_and_is_written_back_byte_identical() {
        // The literal is what the old definition writes.
        let old: reference::OldTracker = serde_json::from_str(PRE_INTERNING).unwrap();
        assert_eq!(serde_json::to_string(&old).unwrap(), PRE_INTERNING);
        let mut t: CounterTracker = serde_json::from_str(PRE_INTERNING).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), PRE_INTERNING);
        assert_eq!(t.len(), 2);
        assert_eq!(t.last_value("gpu0"), Some(Joules(700.0)));
        // It goes on from the checkpoint: the stored wrap rule and baselines apply.
        let obs = t.observe(&[
            reading("rapl/pkg", "p", 15.0, 60.0),
            reading("gpu0", "q", 750.0, 60.0),
        ]);
        assert_eq!(obs.wraps, vec!["rapl/pkg".to_owned()]);
        assert_eq!(total(&obs), 25.0 + 50.0);
        // A clone shares the identities and still compares and serialises equal.
        assert_eq!(
            serde_json::to_string(&t.clone()).unwrap(),
            serde_json::to_string(&t).unwrap()
        );
    }

    type RawReading = (usize, usize, usize, usize, f64, bool);

    fn arb_batch() -> impl Strategy<Value = Vec<RawReading>> {
        let value = prop_oneof![
            6 => 0.0f64..1e4,
            1 => Just(f64::NAN),
            1 => -10.0f64..0.0,
        ];
        proptest::collection::vec(
            (
                0usize..6,
                0usize..5,
                0usize..3,
                0usize..3,
                value,
                any::<bool>(),
            ),
            0..12,
        )
    }

    fn raw_readings(batch: &[RawReading], at: f64) -> Vec<EnergyReading> {
        batch
            .iter()
            .map(|&(series, pod, node, slot, value, estimated)| {
                let owner = match pod {
                    4 => EnergyOwner::NodeIdle,
                    _ => EnergyOwner::pod("ns", format!("p{pod}"), "c"),
                };
                let component = if series.is_multiple_of(2) {
                    Component::Cpu
                } else {
                    Component::Gpu
                };
                let mut r = EnergyReading::new(
                    format!("s{series}"),
                    format!("n{node}"),
                    owner,
                    component,
                    Joules(value),
                    Seconds(at),
                )
                .with_share(format!("slot{slot}"), slot as f64);
                r.estimated = estimated;
                r
            })
            .collect()
    }

    proptest! {
        /// The interned tracker books exactly what the `BTreeMap` one did: the same deltas
        /// in the same order (bit for bit), the same series lists, the same checkpoint.
        #[test]
        fn interned_tracker_matches_the_reference_exactly(
            batches in proptest::collection::vec((arb_batch(), -40.0f64..60.0), 1..8),
            book_all in any::<bool>(),
        ) {
            let first = if book_all { FirstSight::BookAll } else { FirstSight::Baseline };
            let mut new = CounterTracker::new(first).with_wrap("s1", Joules(5e3));
            let mut old = reference::OldTracker {
                first_sight: first,
                wrap_rules: new.wrap_rules.clone(),
                ..Default::default()
            };
            let started = |r: &EnergyReading, _: Seconds| {
                matches!(&r.owner, EnergyOwner::Pod { key, .. } if key.pod != "p1")
            };
            let mut at = 0.0;
            for (batch, step) in batches {
                at += step;
                let readings = raw_readings(&batch, at);
                prop_assert_eq!(
                    new.observe_since(&readings, &started),
                    old.observe_since(&readings, &started)
                );
                prop_assert_eq!(
                    serde_json::to_string(&new).unwrap(),
                    serde_json::to_string(&old).unwrap()
                );
            }
        }
    }

    proptest! {
        /// Never negative; Σ deltas follows the reset rule exactly.
        #[test]
        fn deltas_never_negative_and_follow_reset_rule(
            steps in proptest::collection::vec((0.0f64..1e6, any::<bool>()), 1..50),
            sharers in 1usize..4,
        ) {
            let mut t = CounterTracker::new(FirstSight::Baseline).with_wrap("w", Joules(5e6));
            let mut value = 0.0;
            let mut baseline = 0.0;
            let mut expected = 0.0;
            let mut booked = 0.0;
            for (i, (step, reset)) in steps.iter().enumerate() {
                value = if *reset { *step } else { value + step };
                if i == 0 {
                    baseline = value;
                } else if value >= baseline {
                    expected += value - baseline;
                    baseline = value;
                } else if value < baseline * (1.0 - JITTER) {
                    expected += value;
                    baseline = value;
                }
                let batch: Vec<_> = (0..sharers)
                    .map(|k| reading("s", &format!("p{k}"), value, i as f64))
                    .collect();
                let obs = t.observe(&batch);
                prop_assert!(obs.deltas.iter().all(|d| d.energy.value() >= 0.0));
                booked += obs.total().value();
            }
            prop_assert!((booked - expected).abs() <= 1e-6 * expected.max(1.0));
        }

        #[test]
        fn conservation_over_monotone_counters(
            increments in proptest::collection::vec(0.0f64..1e5, 2..40),
            sharers in 1usize..5,
        ) {
            let mut t = CounterTracker::new(FirstSight::Baseline);
            let mut value = 1234.0;
            let mut booked = 0.0;
            for (i, inc) in increments.iter().enumerate() {
                value += inc;
                let batch: Vec<_> = (0..sharers)
                    .map(|k| reading("s", &format!("p{k}"), value, i as f64))
                    .collect();
                booked += t.observe(&batch).total().value();
            }
            let increase = value - 1234.0 - increments[0];
            prop_assert!((booked - increase).abs() <= 1e-6 * increase.max(1.0));
        }

        #[test]
        fn arbitrary_values_never_negative(
            values in proptest::collection::vec(proptest::num::f64::ANY, 1..40),
        ) {
            let mut t = CounterTracker::new(FirstSight::BookAll).with_wrap("s", Joules(1e9));
            for (i, v) in values.iter().enumerate() {
                let obs = t.observe(&[reading("s", "p", *v, i as f64)]);
                prop_assert!(obs.deltas.iter().all(|d| d.energy.value() >= 0.0 && d.energy.value().is_finite()));
            }
        }
    }
}

//! `/api/v1/allocation` from Prometheus: what the ledger booked between the window's edges,
//! read back from the history of its own counters (every series carries
//! `ledger="<namespace>/<release>"`), so the answer survives restarts and scales out with
//! Thanos or Mimir. It produces the same per-key [`Sums`] as the in-memory history, and
//! `crate::allocation_query` groups and renders both.
//!
//! How the numbers are read (never `increase()`, which extrapolates to the range's edges):
//! - Per family (energy by component, carbon by term, unallocated by reason) the query is the
//!   key's sum, `sum by (namespace, workload, phase, product, term, <replica labels>)`, not
//!   each series: a pod's series stops after its grace period while the same grams appear in
//!   its workload's roll-up (`pod=""`) in the same scrape, and a component that turns
//!   `source="estimated"` changes its series; the key's sum stays continuous through both.
//! - Its values are raw: Prometheus evaluates a sum at time t over each series' latest sample
//!   at or before t. They are read at every window and step edge, and on a grid between them
//!   (`/api/v1/query_range`, at most `MAX_POINTS` points; `MIN_RESOLUTION` at best).
//! - The increase between consecutive points is their difference; a decrease is a counter
//!   reset (the ledger restarted without restoring its state) and the new value is the
//!   increase since. So a reset costs at most what was booked between the last grid point
//!   before it and the reset.
//! - The baseline at the window's start is the key's sum there. When the ledger was not
//!   scraped at that time (no series of the family at all), it is each key's last value within
//!   `lookback` (the restore lookback: a ledger down for longer restarts from zero anyway). A
//!   key with no baseline started in the window and counts from zero.
//! - Replica labels of an undeduplicated HA pair are kept apart by the query and merged by
//!   the client (the larger value per time), as for every other Prometheus read.

use crate::allocation_query::{AllocationQuery, Source, edges, from_step_sums};
use crate::history::{AllocationKey, Amounts, Sums};
use crate::prom_restore::{CARBON, ENERGY, UNALLOCATED};
use jobcarbon_core::{Grams, Joules, Seconds, Term, Terms, UnallocatedReason};
pub use jobcarbon_telemetry::SourceError;
use jobcarbon_telemetry::prom::{PromClient, PromSeries};
use std::collections::BTreeMap;

/// Grid points per series and query: bounds the answer's size (keys × points), and so how
/// much a counter reset can lose (at most one grid step of bookings).
pub(crate) const MAX_POINTS: i64 = 1_000;
/// The finest grid between edges by default, seconds (the usual scrape interval or finer).
pub(crate) const MIN_RESOLUTION: i64 = 15;
/// Points the baseline search looks at over the lookback.
const BASELINE_POINTS: i64 = 1_000;
const SOURCE_NAME: &str = "allocation";

/// Seconds between grid points: fine enough for the span, and a divisor of the step so every
/// step edge is a grid point.
pub(crate) fn resolution(span: i64, step: Option<Seconds>, finest: i64) -> i64 {
    let coarsest = finest.max(1).max((span + MAX_POINTS - 1) / MAX_POINTS);
    match step.map(|s| s.value()) {
        Some(s) if s >= 1.0 && s.fract() == 0.0 => {
            let s = s as i64;
            (coarsest..=s).find(|d| s % d == 0).unwrap_or(s)
        }
        _ => coarsest,
    }
}

/// What each bucket `(edges[i], edges[i+1]]` gained, from the counter's `baseline` at
/// `edges[0]` (`None`: the counter did not exist yet) and its later `points` (times ascending,
/// all after `edges[0]`): consecutive differences, a decrease being a reset (the new value is
/// the increase since), each added to the bucket of the later point.
pub(crate) fn bucket_increases(
    baseline: Option<f64>,
    points: &[(f64, f64)],
    edges: &[f64],
) -> Vec<f64> {
    let mut out = vec![0.0; edges.len().saturating_sub(1)];
    let mut previous = baseline.filter(|v| v.is_finite());
    for (t, v) in points {
        if !v.is_finite() {
            continue;
        }
        let increase = match previous {
            Some(p) if *v >= p => v - p,
            // Born in the window, or reset: everything it holds came since.
            _ => v.max(0.0),
        };
        previous = Some(*v);
        // The bucket whose (start, end] holds t.
        let i = edges.partition_point(|e| e < t);
        if let Some(slot) = i.checked_sub(1).and_then(|i| out.get_mut(i)) {
            *slot += increase;
        }
    }
    out
}

/// A PromQL string literal.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One family of the ledger's counters and how its series map onto [`Sums`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Energy,
    Carbon,
    Unallocated,
}

impl Family {
    const ALL: [Family; 3] = [Family::Energy, Family::Carbon, Family::Unallocated];

    fn metric(self) -> &'static str {
        match self {
            Family::Energy => ENERGY,
            Family::Carbon => CARBON,
            Family::Unallocated => UNALLOCATED,
        }
    }

    /// The labels the sum keeps (besides the replica labels): the key, and the term or the
    /// reason. Energy is summed over its components.
    fn by(self) -> Vec<&'static str> {
        match self {
            Family::Energy => KEY_LABELS.to_vec(),
            Family::Carbon => KEY_LABELS.into_iter().chain(["term"]).collect(),
            Family::Unallocated => vec!["reason"],
        }
    }

    /// Adds one key's `grams` or joules to `sums`; `None`: the labels name nothing known.
    fn book(self, series: &PromSeries, amount: f64, sums: &mut Sums) -> Option<()> {
        if self == Family::Unallocated {
            let name = series.label("reason")?;
            let reason = UnallocatedReason::ALL
                .into_iter()
                .find(|r| r.as_str() == name)?;
            sums.add_unallocated(reason, Grams(amount));
            return Some(());
        }
        let key = AllocationKey {
            namespace: series.label("namespace")?.to_owned(),
            workload: series.label("workload")?.to_owned(),
            phase: series.label("phase")?.to_owned(),
            product: series.label("product").map(str::to_owned),
        };
        let amounts = match self {
            Family::Energy => Amounts {
                energy: Joules(amount),
                terms: Terms::ZERO,
            },
            _ => {
                let name = series.label("term")?;
                let term = Term::ALL.into_iter().find(|t| t.as_str() == name)?;
                Amounts {
                    energy: Joules::ZERO,
                    terms: Terms::of(term, Grams(amount)),
                }
            }
        };
        sums.add_item(key, &amounts);
        Some(())
    }
}

/// The allocation key's labels, and their `exported_` forms (a scrape without
/// `honor_labels` renames the ledger's `namespace` so).
const KEY_LABELS: [&str; 8] = [
    "namespace",
    "exported_namespace",
    "workload",
    "exported_workload",
    "phase",
    "exported_phase",
    "product",
    "exported_product",
];

/// The ledger's history in Prometheus, as `/api/v1/allocation` reads it.
#[derive(Debug, Clone)]
pub struct PromHistory {
    client: PromClient,
    identity: String,
    lookback: Seconds,
    finest: i64,
}

/// One family's answer: per series (labels without the replica labels), its baseline and
/// its points after the window's start.
type Read = BTreeMap<BTreeMap<String, String>, (PromSeries, Option<f64>, BTreeMap<i64, f64>)>;

impl PromHistory {
    /// `identity`: the ledger label value; `lookback`: how far before a window's start its
    /// baseline is searched when the ledger was not scraped at that time.
    pub fn new(client: PromClient, identity: impl Into<String>, lookback: Seconds) -> Self {
        Self {
            client,
            identity: identity.into(),
            lookback,
            finest: MIN_RESOLUTION,
        }
    }

    /// The finest grid, seconds (default `MIN_RESOLUTION`): the scrape interval, where it is
    /// shorter, reads every scrape of a short window.
    pub fn with_finest_grid(mut self, seconds: i64) -> Self {
        self.finest = seconds.max(1);
        self
    }

    /// The key's sum of one family (the PromQL every read of it uses).
    fn sum(&self, family: Family) -> String {
        let mut by = family.by();
        by.extend(self.client.replica_labels().iter().map(String::as_str));
        format!(
            "sum by ({}) ({}{{ledger={}}})",
            by.join(", "),
            family.metric(),
            quoted(&self.identity)
        )
    }

    /// Answers `query`: one [`Sums`] per step (or for the window), shared rendering.
    pub async fn allocate(
        &self,
        query: &AllocationQuery,
    ) -> Result<crate::allocation_query::Allocation, SourceError> {
        let edges = edges(query);
        let sums = self.step_sums(&edges, query.step).await?;
        Ok(from_step_sums(query, Source::Prometheus, &sums))
    }

    /// What was booked between consecutive `edges`, read at whole seconds.
    pub async fn step_sums(
        &self,
        edges: &[Seconds],
        step: Option<Seconds>,
    ) -> Result<Vec<Sums>, SourceError> {
        let at: Vec<i64> = edges.iter().map(|e| e.value().floor() as i64).collect();
        let (Some(first), Some(last)) = (at.first().copied(), at.last().copied()) else {
            return Ok(Vec::new());
        };
        let grid = resolution(last - first, step, self.finest);
        let edges_f: Vec<f64> = at.iter().map(|t| *t as f64).collect();
        let mut sums = vec![Sums::default(); edges.len().saturating_sub(1)];
        for family in Family::ALL {
            let read = self.read(family, &at, grid).await?;
            for (series, baseline, points) in read.into_values() {
                let points: Vec<(f64, f64)> = points
                    .into_iter()
                    .filter(|(t, _)| *t > first)
                    .map(|(t, v)| (t as f64, v))
                    .collect();
                let increases = bucket_increases(baseline, &points, &edges_f);
                for (slot, amount) in sums.iter_mut().zip(increases) {
                    if amount > 0.0 && family.book(&series, amount, slot).is_none() {
                        tracing::debug!(labels = ?series.labels, "allocation: a series naming nothing known is skipped");
                    }
                }
            }
        }
        Ok(sums)
    }

    /// One family: the baseline at the first edge, the grid between, every edge off the grid.
    async fn read(&self, family: Family, at: &[i64], grid: i64) -> Result<Read, SourceError> {
        let sum = self.sum(family);
        let (first, last) = match (at.first(), at.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => return Ok(Read::new()),
        };
        let mut read = Read::new();
        let lookback = self.lookback.value().max(60.0) as i64;
        let coarse = (lookback / BASELINE_POINTS).max(60);
        // Scraped at the start: every key that existed then is there (roll-ups never end), so
        // the others started later. Not scraped (down, or before the data): search back.
        let start = Seconds(first as f64);
        let mut baseline = self.client.instant(SOURCE_NAME, &sum, start).await?;
        if baseline.is_empty() {
            let search = format!("last_over_time(({sum})[{lookback}s:{coarse}s])");
            baseline = self.client.instant(SOURCE_NAME, &search, start).await?;
        }
        for s in baseline {
            let entry = read
                .entry(s.labels.clone())
                .or_insert_with(|| (series(&s.labels), None, BTreeMap::new()));
            entry.1 = Some(s.value);
        }
        let (from, to) = (
            (first + grid - 1).div_euclid(grid) * grid,
            last.div_euclid(grid) * grid,
        );
        if from <= to {
            let range = self
                .client
                .range(SOURCE_NAME, &sum, (from, to), grid as f64)
                .await?;
            for s in range {
                let points = &mut read
                    .entry(s.labels.clone())
                    .or_insert_with(|| (series(&s.labels), None, BTreeMap::new()))
                    .2;
                points.extend(s.points.iter().map(|(t, v)| (t.value().round() as i64, *v)));
            }
        }
        for edge in at.iter().skip(1).filter(|t| t.rem_euclid(grid) != 0) {
            for s in self
                .client
                .instant(SOURCE_NAME, &sum, Seconds(*edge as f64))
                .await?
            {
                read.entry(s.labels.clone())
                    .or_insert_with(|| (series(&s.labels), None, BTreeMap::new()))
                    .2
                    .insert(*edge, s.value);
            }
        }
        Ok(read)
    }
}

fn series(labels: &BTreeMap<String, String>) -> PromSeries {
    PromSeries {
        labels: labels.clone(),
        points: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_fall_in_the_bucket_of_the_later_point() {
        // Edges 0, 60, 120; counter 10 at 0, then 13 at 30, 20 at 60, 26 at 90, 30 at 120.
        let points = [(30.0, 13.0), (60.0, 20.0), (90.0, 26.0), (120.0, 30.0)];
        let got = bucket_increases(Some(10.0), &points, &[0.0, 60.0, 120.0]);
        assert_eq!(got, vec![10.0, 10.0]);
    }

    #[test]
    fn a_reset_counts_what_came_since_and_a_newcomer_counts_from_zero() {
        // 50 → 80, reset, 5 → 25: 30 + 5 + 20.
        let points = [(10.0, 80.0), (20.0, 5.0), (30.0, 25.0)];
        assert_eq!(
            bucket_increases(Some(50.0), &points, &[0.0, 30.0]),
            vec![55.0]
        );
        // No baseline: born in the window.
        assert_eq!(bucket_increases(None, &points, &[0.0, 30.0]), vec![105.0]);
        // Points outside every bucket and non-finite values are ignored.
        let odd = [(40.0, 1.0), (15.0, f64::NAN)];
        assert_eq!(bucket_increases(Some(0.0), &odd, &[0.0, 30.0]), vec![0.0]);
    }

    #[test]
    fn the_grid_divides_the_step_and_stays_under_the_point_limit() {
        let m = MIN_RESOLUTION;
        assert_eq!(resolution(3600, None, m), m);
        assert_eq!(resolution(3600, Some(Seconds(3600.0)), m), 15);
        // A week: 605 s would do; 3600 s steps need a divisor: 720 s.
        let week = 7 * 86_400;
        assert_eq!(resolution(week, Some(Seconds(3600.0)), m), 720);
        assert!(week / resolution(week, None, m) <= MAX_POINTS);
        // A step finer than the finest grid is the grid.
        assert_eq!(resolution(600, Some(Seconds(10.0)), m), 10);
        // A fractional step: edges off the grid are read one by one.
        assert_eq!(resolution(600, Some(Seconds(1.5)), m), m);
        assert_eq!(resolution(60, None, 1), 1);
    }

    #[test]
    fn the_sum_keeps_the_key_and_replica_labels() {
        let Ok(client) = PromClient::new(jobcarbon_telemetry::prom::PromConfig::new(
            "http://127.0.0.1:9",
        )) else {
            panic!("client")
        };
        let h = PromHistory::new(client, "jc/\"x\"", Seconds::from_days(7.0));
        let q = h.sum(Family::Carbon);
        assert!(q.starts_with("sum by (namespace, exported_namespace, workload"));
        assert!(q.contains("term, prometheus_replica, replica)"), "{q}");
        assert!(q.ends_with(r#"jobcarbon_workload_carbon_grams_total{ledger="jc/\"x\""})"#));
        assert!(h.sum(Family::Unallocated).starts_with("sum by (reason, "));
    }
}

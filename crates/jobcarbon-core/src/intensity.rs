//! Grid intensity over time: a provider's points as a step function, its time-weighted mean
//! over an interval, and which kind of signal it is. Pure: the providers' HTTP clients live in
//! `jobcarbon-telemetry`, and the ledger books with [`IntensitySeries::mean_over`].

use crate::units::{GramsPerKwh, Seconds};
use serde::{Deserialize, Serialize};

/// What an intensity means. Average (life-cycle) and marginal (MOER) figures answer different
/// questions and must not be mixed when regions are compared or summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// The grid's average intensity (static figures, mixes, Electricity Maps).
    #[default]
    Average,
    /// The marginal operating emissions rate (WattTime `co2_moer`).
    Marginal,
}

impl Signal {
    /// The `signal` label and config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Average => "average",
            Signal::Marginal => "marginal",
        }
    }
}

/// One value, valid from `at` for the series' period (or until the next point).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityPoint {
    /// Start of the point's validity, seconds since the Unix epoch.
    pub at: Seconds,
    /// Intensity in gCO2e/kWh.
    pub value: GramsPerKwh,
}

/// Points sorted by time; each holds from its `at` until the next point, at most `period`
/// (a longer gap is missing data and covers nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntensitySeries {
    /// The points, sorted by `at`.
    pub points: Vec<IntensityPoint>,
    /// How long a point holds when no later point follows (the provider's resolution).
    pub period: Seconds,
}

impl IntensitySeries {
    /// Sorts by time; keeps the last of points with the same time and drops non-finite or
    /// negative values (a provider glitch must not become negative carbon).
    pub fn new(mut points: Vec<IntensityPoint>, period: Seconds) -> Self {
        points.retain(|p| p.at.is_finite() && p.value.is_finite() && p.value.value() >= 0.0);
        points.sort_by(|a, b| a.at.value().total_cmp(&b.at.value()));
        let mut deduped: Vec<IntensityPoint> = Vec::with_capacity(points.len());
        for p in points {
            match deduped.last_mut() {
                Some(last) if last.at == p.at => *last = p,
                _ => deduped.push(p),
            }
        }
        let period = if period.value() > 0.0 {
            period
        } else {
            Seconds::from_hours(1.0)
        };
        Self {
            points: deduped,
            period,
        }
    }

    /// One value over `[from, to)`: a static region's "forecast".
    pub fn flat(value: GramsPerKwh, from: Seconds, to: Seconds) -> Self {
        Self {
            points: vec![IntensityPoint { at: from, value }],
            period: (to - from).max(Seconds(1.0)),
        }
    }

    /// The period of evenly spaced points: the smallest gap between two, or `default`.
    pub fn infer_period(points: &[IntensityPoint], default: Seconds) -> Seconds {
        let mut times: Vec<f64> = points.iter().map(|p| p.at.value()).collect();
        times.sort_by(f64::total_cmp);
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0.0)
            .min_by(f64::total_cmp)
            .map_or(default, Seconds)
    }

    /// Whether the series has no point at all.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// `(start, end, value)` of each covered piece, in order.
    fn pieces(&self) -> impl Iterator<Item = (f64, f64, f64)> + '_ {
        self.points.iter().enumerate().map(|(i, p)| {
            let own_end = p.at.value() + self.period.value();
            let end = self
                .points
                .get(i + 1)
                .map_or(own_end, |next| next.at.value().min(own_end));
            (p.at.value(), end, p.value.value())
        })
    }

    /// Where the series stops covering time (the end of its last point).
    pub fn end(&self) -> Option<Seconds> {
        self.pieces().last().map(|(_, end, _)| Seconds(end))
    }

    /// The value in effect at `t`, if the series covers it.
    pub fn value_at(&self, t: Seconds) -> Option<GramsPerKwh> {
        let t = t.value();
        self.pieces()
            .find(|(s, e, _)| *s <= t && t < *e)
            .map(|(_, _, v)| GramsPerKwh(v))
    }

    /// Whether every instant of `[start, end]` is covered.
    pub fn covers(&self, start: Seconds, end: Seconds) -> bool {
        let mut reached = start.value();
        for (s, e, _) in self.pieces() {
            if s > reached {
                break;
            }
            reached = reached.max(e);
        }
        reached >= end.value() && self.value_at(start).is_some()
    }

    /// Time-weighted mean over `[start, end]` (the value at `start` for an empty interval);
    /// `None` unless the series covers all of it.
    pub fn mean_over(&self, start: Seconds, end: Seconds) -> Option<GramsPerKwh> {
        if end.value() <= start.value() {
            return self.value_at(start);
        }
        if !self.covers(start, end) {
            return None;
        }
        let (a, b) = (start.value(), end.value());
        let integral: f64 = self
            .pieces()
            .map(|(s, e, v)| (e.min(b) - s.max(a)).max(0.0) * v)
            .sum();
        Some(GramsPerKwh(integral / (b - a)))
    }

    /// The series with its first value held back to `from` when it starts later: a forecast
    /// published for the current hour or 5 minutes starts a little before or after now.
    pub fn held_back_to(mut self, from: Seconds) -> Self {
        let Some(first) = self.points.first().copied() else {
            return self;
        };
        let step = self.period.value();
        let steps = ((first.at.value() - from.value()) / step).ceil();
        // Whole periods back from the first point, so gaps elsewhere stay gaps; a series
        // that starts absurdly late is left alone.
        if (1.0..=10_000.0).contains(&steps) {
            let earlier = (1..=steps as usize).rev().map(|k| IntensityPoint {
                at: Seconds((first.at.value() - k as f64 * step).max(from.value())),
                value: first.value,
            });
            let mut points: Vec<IntensityPoint> = earlier.collect();
            points.append(&mut self.points);
            self.points = points;
        }
        self
    }
}

/// WattTime and other US sources publish pounds of CO2 per megawatt-hour.
pub(crate) const GRAMS_PER_KWH_PER_LB_PER_MWH: f64 = 0.453_592_37;

/// lbs/MWh → g/kWh (1 lb = 453.59237 g, 1 MWh = 1000 kWh).
pub fn from_lbs_per_mwh(lbs_per_mwh: f64) -> GramsPerKwh {
    GramsPerKwh(lbs_per_mwh * GRAMS_PER_KWH_PER_LB_PER_MWH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64], step: f64) -> IntensitySeries {
        IntensitySeries::new(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| IntensityPoint {
                    at: Seconds(i as f64 * step),
                    value: GramsPerKwh(*v),
                })
                .collect(),
            Seconds(step),
        )
    }

    #[test]
    fn a_step_function_averages_by_time() {
        let s = series(&[100.0, 300.0], 3600.0);
        assert_eq!(s.value_at(Seconds(0.0)), Some(GramsPerKwh(100.0)));
        assert_eq!(s.value_at(Seconds(3600.0)), Some(GramsPerKwh(300.0)));
        assert_eq!(s.value_at(Seconds(7200.0)), None);
        // 30 min at 100, 30 min at 300.
        assert_eq!(
            s.mean_over(Seconds(1800.0), Seconds(5400.0)),
            Some(GramsPerKwh(200.0))
        );
        assert_eq!(s.mean_over(Seconds(1800.0), Seconds(7300.0)), None);
        assert_eq!(s.end(), Some(Seconds(7200.0)));
    }

    #[test]
    fn gaps_cover_nothing() {
        let s = IntensitySeries::new(
            vec![
                IntensityPoint {
                    at: Seconds(0.0),
                    value: GramsPerKwh(1.0),
                },
                IntensityPoint {
                    at: Seconds(600.0),
                    value: GramsPerKwh(2.0),
                },
            ],
            Seconds(300.0),
        );
        assert_eq!(s.value_at(Seconds(400.0)), None);
        assert_eq!(s.mean_over(Seconds(0.0), Seconds(700.0)), None);
        assert_eq!(
            IntensitySeries::infer_period(&s.points, Seconds(1.0)),
            Seconds(600.0)
        );
    }

    #[test]
    fn holding_back_extends_the_first_value() {
        let s = series(&[100.0, 300.0], 3600.0);
        let shifted = IntensitySeries::new(
            s.points
                .iter()
                .map(|p| IntensityPoint {
                    at: p.at + Seconds(600.0),
                    value: p.value,
                })
                .collect(),
            s.period,
        )
        .held_back_to(Seconds(0.0));
        assert_eq!(shifted.value_at(Seconds(0.0)), Some(GramsPerKwh(100.0)));
        assert_eq!(shifted.value_at(Seconds(4000.0)), Some(GramsPerKwh(100.0)));
        assert_eq!(shifted.value_at(Seconds(4300.0)), Some(GramsPerKwh(300.0)));
    }

    #[test]
    fn pounds_per_megawatt_hour_convert_exactly() {
        // 1000 lbs/MWh = 453.59237 g/kWh.
        assert!((from_lbs_per_mwh(1000.0).value() - 453.592_37).abs() < 1e-9);
    }
}

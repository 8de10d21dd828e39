//! Carbon-aware advice (DESIGN §12): when and where to start a run of known energy and
//! duration so that its expected operational carbon is least, from intensity forecasts.
//!
//! A run of energy E starting at s in region r is expected to emit
//! `E × PUE(r) × mean CI_r over [s, s + duration]`, the forecast being a step function. That
//! integral is piecewise linear in s, with breaks where s or s + duration meets a step, so the
//! minimum over a start window lies on one of those breaks or on the window's ends: the
//! candidates below are exact, not a sampled grid.

use crate::formulas::operational_carbon;
use crate::intensity::{IntensitySeries, Signal};
use crate::units::{Grams, GramsPerKwh, Joules, Pue, Seconds};
use serde::Serialize;

/// One region's forecast, with what converts energy into carbon there.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionForecast {
    /// Region name as the user gave it (echoed in each [`Window`]).
    pub region: String,
    /// The region's PUE, applied to the run's IT energy.
    pub pue: Pue,
    /// Average or marginal: regions of different kinds cannot be compared.
    pub signal: Signal,
    /// The intensity forecast, gCO2e/kWh per step.
    pub series: IntensitySeries,
}

/// What to plan: a run of `energy` lasting `duration`, starting between `now` and
/// `now + within`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdviceQuery {
    /// Earliest start, seconds since the Unix epoch.
    pub now: Seconds,
    /// How long the run lasts.
    pub duration: Seconds,
    /// Latest start, as an offset from `now`.
    pub within: Seconds,
    /// IT energy of the whole run (before PUE).
    pub energy: Joules,
}

/// One candidate run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Region the run would start in.
    pub region: String,
    /// Start of the run, seconds since the Unix epoch.
    pub start: Seconds,
    /// End of the run (`start + duration`).
    pub end: Seconds,
    /// Time-weighted mean forecast intensity over the run.
    pub mean_intensity: GramsPerKwh,
    /// Expected operational carbon: energy × PUE × mean intensity.
    pub grams: Grams,
}

/// The outcome of [`advise`]: the best window, starting now, and the difference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    /// The window with the least expected carbon over all regions and starts.
    pub best: Window,
    /// Starting now in the first region given (where the run would go unadvised).
    pub now: Window,
    /// `now.grams − best.grams` (≥ 0: starting now is a candidate).
    pub saving: Grams,
    /// The saving as a percentage of `now.grams` (0 when that is 0).
    pub saving_percent: f64,
    /// The best window of each region that has one, in the order given.
    pub by_region: Vec<Window>,
}

/// Why no advice can be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdviceError {
    /// The query named no region.
    #[error("no region to choose from")]
    NoRegions,
    /// A duration, window or energy was zero, negative or not finite.
    #[error("{what} must be positive and finite")]
    NotPositive {
        /// Which input (`duration`, `within`, `energy`).
        what: &'static str,
    },
    #[error(
        "regions {first} ({first_signal}) and {other} ({other_signal}) publish different kinds of intensity: average and marginal figures cannot be compared"
    )]
    /// Two regions publish different [`Signal`]s.
    MixedSignals {
        /// The first region.
        first: String,
        /// Its signal (`average` or `marginal`).
        first_signal: &'static str,
        /// The region whose signal differs.
        other: String,
        /// Its signal.
        other_signal: &'static str,
    },
    /// A forecast starts after `now`, so starting now cannot be priced.
    #[error("the forecast of region {region} does not cover a run starting now")]
    NotCoveredNow {
        /// The region whose forecast starts too late.
        region: String,
    },
}

fn window(r: &RegionForecast, start: Seconds, q: &AdviceQuery) -> Option<Window> {
    let end = start + q.duration;
    let mean = r.series.mean_over(start, end)?;
    Some(Window {
        region: r.region.clone(),
        start,
        end,
        mean_intensity: mean,
        grams: operational_carbon(q.energy, r.pue, mean),
    })
}

/// Every start where the expected carbon can have a minimum (see the module comment).
fn candidate_starts(series: &IntensitySeries, q: &AdviceQuery) -> Vec<Seconds> {
    let (lo, hi) = (q.now.value(), (q.now + q.within).value());
    let mut starts = vec![lo, hi];
    let step_ends = series.points.iter().map(|p| (p.at + series.period).value());
    for b in series.points.iter().map(|p| p.at.value()).chain(step_ends) {
        starts.push(b);
        starts.push(b - q.duration.value());
    }
    starts.retain(|s| (lo..=hi).contains(s));
    starts.sort_by(f64::total_cmp);
    starts.dedup();
    starts.into_iter().map(Seconds).collect()
}

/// The least-carbon window of one region, earliest on a tie.
fn best_in(r: &RegionForecast, q: &AdviceQuery) -> Option<Window> {
    candidate_starts(&r.series, q)
        .into_iter()
        .filter_map(|s| window(r, s, q))
        .fold(None, |best: Option<Window>, w| match best {
            Some(b) if !lower(&w, &b) => Some(b),
            _ => Some(w),
        })
}

/// Strictly lower carbon, beyond rounding noise.
fn lower(a: &Window, b: &Window) -> bool {
    a.grams.value() < b.grams.value() - 1e-12 * b.grams.value().abs().max(1.0)
}

fn check(q: &AdviceQuery, regions: &[RegionForecast]) -> Result<(), AdviceError> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(q.duration.value()) {
        return Err(AdviceError::NotPositive { what: "duration" });
    }
    if !(q.within.value().is_finite() && q.within.value() >= 0.0) {
        return Err(AdviceError::NotPositive { what: "within" });
    }
    if !(q.energy.value().is_finite() && q.energy.value() >= 0.0) {
        return Err(AdviceError::NotPositive { what: "energy" });
    }
    let first = regions.first().ok_or(AdviceError::NoRegions)?;
    if let Some(other) = regions.iter().find(|r| r.signal != first.signal) {
        return Err(AdviceError::MixedSignals {
            first: first.region.clone(),
            first_signal: first.signal.as_str(),
            other: other.region.clone(),
            other_signal: other.signal.as_str(),
        });
    }
    Ok(())
}

/// The start and region of least expected carbon, against starting now in the first region.
pub fn advise(q: &AdviceQuery, regions: &[RegionForecast]) -> Result<Advice, AdviceError> {
    check(q, regions)?;
    let home = &regions[0];
    let now = window(home, q.now, q).ok_or_else(|| AdviceError::NotCoveredNow {
        region: home.region.clone(),
    })?;
    let by_region: Vec<Window> = regions.iter().filter_map(|r| best_in(r, q)).collect();
    let best = by_region
        .iter()
        .fold(None, |best: Option<&Window>, w| match best {
            Some(b) if !lower(w, b) => Some(b),
            _ => Some(w),
        })
        .cloned()
        .unwrap_or_else(|| now.clone());
    let saving = (now.grams - best.grams).non_negative();
    let saving_percent = if now.grams.value() > 0.0 {
        saving.value() / now.grams.value() * 100.0
    } else {
        0.0
    };
    Ok(Advice {
        best,
        now,
        saving,
        saving_percent,
        by_region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intensity::IntensityPoint;

    fn hourly(region: &str, pue: f64, values: &[f64]) -> RegionForecast {
        RegionForecast {
            region: region.into(),
            pue: Pue(pue),
            signal: Signal::Average,
            series: IntensitySeries::new(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| IntensityPoint {
                        at: Seconds::from_hours(i as f64),
                        value: GramsPerKwh(*v),
                    })
                    .collect(),
                Seconds::from_hours(1.0),
            ),
        }
    }

    /// Worked by hand: 500 kWh over 2 h within 6 h; region a (PUE 1.1) forecasts
    /// 400, 300, 200, 100, 100, 400, 400, 400, 400 g/kWh by hour, region b (PUE 1.5) a flat 90.
    /// Now (a, 0–2 h): mean 350 → 500 × 1.1 × 350 = 192,500 g.
    /// Best in a: 3–5 h at 100 → 55,000 g. Best in b: 90 × 1.5 = 135 g/kWh → 67,500 g.
    /// Best: a at 3 h, 55,000 g; saving 137,500 g = 71.428…%.
    #[test]
    fn the_hand_computed_case() {
        let a = hourly(
            "a",
            1.1,
            &[400., 300., 200., 100., 100., 400., 400., 400., 400.],
        );
        let b = hourly("b", 1.5, &[90.; 9]);
        let q = AdviceQuery {
            now: Seconds(0.0),
            duration: Seconds::from_hours(2.0),
            within: Seconds::from_hours(6.0),
            energy: Joules::from_kwh(500.0),
        };
        let advice = advise(&q, &[a, b]).unwrap_or_else(|e| panic!("{e}"));
        let close = |g: Grams, want: f64| assert!((g.value() - want).abs() < 1e-6, "{g:?}");
        close(advice.now.grams, 192_500.0);
        assert_eq!(advice.best.region, "a");
        assert_eq!(advice.best.start, Seconds::from_hours(3.0));
        close(advice.best.grams, 55_000.0);
        close(advice.saving, 137_500.0);
        assert!((advice.saving_percent - 71.428_571_428_571).abs() < 1e-9);
        close(advice.by_region[1].grams, 67_500.0);
    }

    /// A half-hour offset: the best 90-minute run straddles steps, found exactly.
    #[test]
    fn the_minimum_between_grid_points_is_found() {
        let a = hourly("a", 1.0, &[300., 100., 200., 300., 300.]);
        let q = AdviceQuery {
            now: Seconds(0.0),
            duration: Seconds::from_minutes(90.0),
            within: Seconds::from_hours(3.0),
            energy: Joules::from_kwh(1.0),
        };
        let advice = advise(&q, &[a]).unwrap_or_else(|e| panic!("{e}"));
        // 1–2.5 h: (60 × 100 + 30 × 200) / 90 = 133.3 g/kWh; starting at 0.5 h gives 166.7.
        assert_eq!(advice.best.start, Seconds::from_hours(1.0));
        assert!((advice.best.grams.value() - 400.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn kinds_are_not_mixed_and_coverage_is_required() {
        let a = hourly("a", 1.0, &[100.; 3]);
        let mut b = hourly("b", 1.0, &[100.; 3]);
        b.signal = Signal::Marginal;
        let q = AdviceQuery {
            now: Seconds(0.0),
            duration: Seconds::from_hours(1.0),
            within: Seconds::from_hours(1.0),
            energy: Joules::from_kwh(1.0),
        };
        assert!(matches!(
            advise(&q, &[a.clone(), b]),
            Err(AdviceError::MixedSignals { .. })
        ));
        let late = AdviceQuery {
            now: Seconds::from_hours(2.5),
            ..q
        };
        assert!(matches!(
            advise(&late, &[a]),
            Err(AdviceError::NotCoveredNow { .. })
        ));
    }
}

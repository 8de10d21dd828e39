//! `GET /api/v1/advice?product=P&duration=2h&within=24h[&regions=a,b][&energy=500kWh]`
//! (DESIGN §12): when and where to start the product's next re-training run. The
//! minimisation is `jobcarbon_core::advice::advise`; this module reads the parameters, the
//! energy of the product's re-training runs and the regions' forecasts from the ledger view.
//! `jobcarbon advise` prints the same answer from the same function.

use jobcarbon_core::intensity::IntensitySeries;
use jobcarbon_core::quantity::parse;
use jobcarbon_core::{AdviceQuery, RegionForecast, Window, advise};
use jobcarbon_core::{Joules, Phase, Seconds, WorkloadRef};
use jobcarbon_ledger::LedgerState;
use jobcarbon_ledger::view::LedgerView;
use serde::Serialize;
use std::collections::BTreeMap;

/// A rejected parameter: answered as 400 `{"error", "parameter"}`.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{parameter}: {error}")]
pub struct BadParameter {
    /// What is wrong with the value.
    pub error: String,
    /// The query parameter at fault (`product`, `duration`, ...).
    pub parameter: String,
}

fn bad(parameter: &str, error: impl Into<String>) -> BadParameter {
    BadParameter {
        error: error.into(),
        parameter: parameter.to_owned(),
    }
}

/// Where the run's energy came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnergyBasis {
    /// Energy of one run, J.
    pub energy_j: f64,
    /// The same energy, kWh.
    pub energy_kwh: f64,
    /// `parameter` (energy=) or `retraining_runs` (the mean of the runs booked).
    pub source: &'static str,
    /// Re-training runs the mean is taken over (0 when `energy=` was given).
    pub runs: usize,
}

/// One window in the answer, with RFC 3339 times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowJson {
    /// Region the run would start in.
    pub region: String,
    /// Start, RFC 3339 UTC.
    pub start: String,
    /// End (start + duration), RFC 3339 UTC.
    pub end: String,
    /// Start, seconds since the Unix epoch.
    pub start_unix: f64,
    /// Mean forecast grid intensity over the window, gCO2e/kWh.
    pub mean_intensity_g_per_kwh: f64,
    /// Operational carbon of the run in this window, gCO2e.
    pub grams: f64,
}

/// One point of a region's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastPointJson {
    /// When the value applies from, RFC 3339 UTC.
    pub at: String,
    /// Forecast grid intensity, gCO2e/kWh.
    pub g_per_kwh: f64,
}

/// The answer of `/api/v1/advice` and `jobcarbon advise`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdviceJson {
    /// The product whose re-training run is planned.
    pub product: String,
    /// Length of the run, s.
    pub duration_s: f64,
    /// How far ahead the start may be put off, s.
    pub within_s: f64,
    /// Intensity signal of the forecasts (`average` or `marginal`).
    pub signal: &'static str,
    /// The run's energy and where it came from.
    pub energy: EnergyBasis,
    /// The least-carbon start over every region.
    pub best: WindowJson,
    /// Starting now in the first region, for comparison.
    pub now: WindowJson,
    /// `now.grams − best.grams`, gCO2e.
    pub saving_g: f64,
    /// The saving as a percentage of `now.grams`.
    pub saving_percent: f64,
    /// The best start in each region.
    pub by_region: Vec<WindowJson>,
    /// The forecast used per region over the planning span (`flat` regions hold one value).
    pub forecast: BTreeMap<String, Vec<ForecastPointJson>>,
}

/// RFC 3339 UTC, whole seconds.
pub(crate) fn rfc3339(at: Seconds) -> String {
    jiff::Timestamp::from_second(at.value().floor() as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

fn window_json(w: &Window) -> WindowJson {
    WindowJson {
        region: w.region.clone(),
        start: rfc3339(w.start),
        end: rfc3339(w.end),
        start_unix: w.start.value(),
        mean_intensity_g_per_kwh: w.mean_intensity.value(),
        grams: w.grams.value(),
    }
}

/// Energy of each re-training run (workload) of `product` the ledger holds: its pods and
/// the roll-ups of its finished pods.
pub(crate) fn retraining_runs(state: &LedgerState, product: &str) -> Vec<Joules> {
    let mut runs: BTreeMap<&WorkloadRef, Joules> = BTreeMap::new();
    for account in state.pods.values() {
        if account.phase == Phase::Retraining && account.product.as_deref() == Some(product) {
            *runs.entry(&account.workload).or_default() += account.energy_total();
        }
    }
    for (key, rollup) in &state.rolled_up {
        if key.phase == Phase::Retraining && key.product.as_deref() == Some(product) {
            *runs.entry(&key.workload).or_default() += rollup.energy.values().copied().sum();
        }
    }
    runs.into_values().collect()
}

fn quantity<U: jobcarbon_core::quantity::Unit>(
    params: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<U>, BadParameter> {
    params
        .get(name)
        .map(|v| parse::<U>(v).map_err(|e| bad(name, e.to_string())))
        .transpose()
}

fn energy_basis(
    view: &LedgerView,
    product: &str,
    given: Option<Joules>,
) -> Result<EnergyBasis, BadParameter> {
    let (energy, source, runs) = match given {
        Some(e) => (e, "parameter", 0),
        None => {
            let runs = retraining_runs(&view.state, product);
            if runs.is_empty() {
                let known = view.state.products.contains_key(product);
                return Err(if known {
                    bad(
                        "energy",
                        format!(
                            "product {product:?} has no re-training run booked yet: give energy=, e.g. energy=500kWh"
                        ),
                    )
                } else {
                    bad(
                        "product",
                        format!(
                            "no product named {product:?} (give energy= to plan an unknown run)"
                        ),
                    )
                });
            }
            let total: Joules = runs.iter().copied().sum();
            (
                total * (1.0 / runs.len() as f64),
                "retraining_runs",
                runs.len(),
            )
        }
    };
    Ok(EnergyBasis {
        energy_j: energy.value(),
        energy_kwh: energy.kwh(),
        source,
        runs,
    })
}

/// The regions to choose from, home first: the ones asked for, else the default region and
/// every region publishing the same kind of signal.
fn regions(
    view: &LedgerView,
    params: &BTreeMap<String, String>,
) -> Result<Vec<String>, BadParameter> {
    if let Some(list) = params.get("regions") {
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(bad("regions", "empty list"));
        }
        if let Some(unknown) = names.iter().find(|n| !view.regions.contains_key(*n)) {
            let known: Vec<&str> = view.regions.keys().map(String::as_str).collect();
            return Err(bad(
                "regions",
                format!("unknown region {unknown:?}; known: {}", known.join(", ")),
            ));
        }
        return Ok(names);
    }
    let home = view
        .default_region
        .clone()
        .filter(|r| view.regions.contains_key(r))
        .or_else(|| view.regions.keys().next().cloned())
        .ok_or_else(|| bad("regions", "the ledger has not resolved any region yet"))?;
    let signal = view.regions.get(&home).map(|r| r.signal);
    let mut names = vec![home.clone()];
    names.extend(
        view.regions
            .iter()
            .filter(|(n, r)| **n != home && Some(r.signal) == signal)
            .map(|(n, _)| n.clone()),
    );
    Ok(names)
}

fn forecast_json(series: &IntensitySeries, from: Seconds, to: Seconds) -> Vec<ForecastPointJson> {
    series
        .points
        .iter()
        .filter(|p| p.at.value() < to.value() && (p.at + series.period).value() > from.value())
        .map(|p| ForecastPointJson {
            at: rfc3339(p.at),
            g_per_kwh: p.value.value(),
        })
        .collect()
}

/// The advice for `params` (the query string) over `view`, as of `now`.
pub fn advice_json(
    view: &LedgerView,
    params: &BTreeMap<String, String>,
    now: Seconds,
) -> Result<AdviceJson, BadParameter> {
    let product = params
        .get("product")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("product", "required"))?;
    let duration: Seconds =
        quantity(params, "duration")?.ok_or_else(|| bad("duration", "required, e.g. 2h"))?;
    if duration.value() <= 0.0 {
        return Err(bad("duration", "must be positive"));
    }
    let within: Seconds = quantity(params, "within")?.unwrap_or(Seconds::from_hours(24.0));
    let energy = energy_basis(view, product, quantity(params, "energy")?)?;
    let names = regions(view, params)?;
    let span_end = now + within + duration;
    let forecasts: Vec<RegionForecast> = names
        .iter()
        .filter_map(|name| {
            let status = view.regions.get(name)?;
            let series = match &status.forecast {
                Some(f) if !f.is_empty() => f.clone().held_back_to(now),
                _ => IntensitySeries::flat(status.intensity, now, span_end),
            };
            Some(RegionForecast {
                region: name.clone(),
                pue: status.pue,
                signal: status.signal,
                series,
            })
        })
        .collect();
    let query = AdviceQuery {
        now,
        duration,
        within,
        energy: Joules(energy.energy_j),
    };
    let advice = advise(&query, &forecasts).map_err(|e| {
        use jobcarbon_core::AdviceError;
        let parameter = match e {
            AdviceError::NotPositive { what } => what,
            _ => "regions",
        };
        bad(parameter, e.to_string())
    })?;
    Ok(AdviceJson {
        product: product.clone(),
        duration_s: duration.value(),
        within_s: within.value(),
        signal: forecasts.first().map_or("average", |f| f.signal.as_str()),
        energy,
        best: window_json(&advice.best),
        now: window_json(&advice.now),
        saving_g: advice.saving.value(),
        saving_percent: advice.saving_percent,
        by_region: advice.by_region.iter().map(window_json).collect(),
        forecast: forecasts
            .iter()
            .map(|f| (f.region.clone(), forecast_json(&f.series, now, span_end)))
            .collect(),
    })
}

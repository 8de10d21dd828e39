//! Life-cycle strategy arithmetic: what a served model costs over its service life, per
//! inference, and where two strategies cost the same (Eilam et al. §2.3 and §3: "compare
//! different life cycle strategies … re-use vs. start from scratch").
//!
//! A strategy reduces to three numbers, all computed by the scenario evaluator:
//! - `upfront`: the served model's EPC (its build jobs, the weighted share of its parents'
//!   and datasets' EPC, and declared carbon);
//! - re-training: carbon per re-training and how often it happens — a cost per unit of *time*;
//! - `per_request`: the ASCᵉ terms of one inference other than model EPC and re-training —
//!   a cost per *request*.
//!
//! Over a service life `L` at traffic `r` (requests per second):
//! `total = U + C·L/I + p·r·L` and `per request = U/(r·L) + C/(r·I) + p`.
//! Re-training is a continuous rate `C/I` (so a 3-day life with weekly re-training books 3/7
//! of one); this keeps every curve smooth and monotone, and equals DESIGN §7's
//! `carbon / jobsPerInterval` with `jobsPerInterval = r·I`.

use crate::domain::Term;
use crate::quantity::Unit;
use crate::terms::Terms;
use crate::units::{Grams, Seconds};
use serde::Serialize;
use std::fmt;

/// Seconds in a day: traffic is read and printed per day.
pub(crate) const SECONDS_PER_DAY: f64 = 86_400.0;

/// Request rate in requests per second. Written `1e6/d`, `5000/h`, `20/s` (also `req/d` …).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct RequestRate(pub f64);

impl RequestRate {
    /// A rate of `requests_per_day` requests a day.
    pub fn per_day(requests_per_day: f64) -> Self {
        Self(requests_per_day / SECONDS_PER_DAY)
    }
    /// The rate in requests a day (how it is printed).
    pub fn requests_per_day(self) -> f64 {
        self.0 * SECONDS_PER_DAY
    }
    /// The rate in requests a second.
    pub const fn value(self) -> f64 {
        self.0
    }
    /// Requests served over a period at this rate.
    pub fn requests_over(self, period: Seconds) -> f64 {
        self.0 * period.value()
    }
}

impl fmt::Display for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests/day", self.requests_per_day())
    }
}

impl Unit for RequestRate {
    const KIND: &'static str = "request rate";
    const EXPECTED: &'static str = "/s, /min, /h, /d, /y (optionally req/…), e.g. 1e6/d";
    const EXAMPLE: &'static str = "1e6/d";
    fn factor(unit: &str) -> Option<f64> {
        let per = unit
            .strip_prefix("req")
            .or_else(|| unit.strip_prefix("requests"))
            .unwrap_or(unit);
        Some(match per {
            "/s" => 1.0,
            "/min" | "/m" => 1.0 / 60.0,
            "/h" => 1.0 / 3600.0,
            "/d" => 1.0 / SECONDS_PER_DAY,
            "/y" => 1.0 / crate::units::SECONDS_PER_YEAR,
            _ => return None,
        })
    }
    fn from_base(value: f64) -> Self {
        RequestRate(value)
    }
}

/// Carbon of one re-training and how often it happens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Retraining {
    /// Grams CO2e of one re-training run.
    #[serde(rename = "carbon_per_retraining_g")]
    pub carbon_per_retraining: Grams,
    /// Time between re-trainings.
    #[serde(rename = "interval_s")]
    pub interval: Seconds,
}

impl Retraining {
    /// Retrainings over a period (continuous; see the module note).
    pub fn count_over(&self, period: Seconds) -> f64 {
        period / self.interval
    }
}

/// One strategy reduced to its cost structure.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyCost {
    /// Strategy name from the plan file.
    pub name: String,
    /// The model that serves the inference.
    pub serves: String,
    /// Free-text description from the plan file.
    pub description: Option<String>,
    /// EPC of the served model: paid once, whatever the traffic.
    pub upfront: Grams,
    /// Re-training cost, if the strategy re-trains.
    pub retraining: Option<Retraining>,
    /// ASCᵉ terms of one request other than `model_epc` and `retraining`.
    pub per_request: Terms,
}

/// The conditions a plan is evaluated under.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Horizon {
    /// Inference traffic.
    pub traffic: RequestRate,
    /// How long the model serves; its EPC is paid once over this period.
    pub service_life: Seconds,
    /// Overrides every strategy's re-training interval (the re-training sweep).
    pub retraining_interval: Option<Seconds>,
}

/// Why a horizon cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Traffic is zero, negative or not finite.
    #[error("traffic must be positive and finite, got {0} requests/day")]
    Traffic(f64),
    /// Service life is zero, negative or not finite.
    #[error("service life must be positive and finite, got {0} s")]
    ServiceLife(f64),
    /// The re-training interval is zero, negative or not finite.
    #[error("re-training interval must be positive and finite, got {0} s")]
    RetrainingInterval(f64),
    /// A sweep was given no value.
    #[error("a sweep over {axis} needs at least one value")]
    EmptySweep {
        /// The swept axis.
        axis: &'static str,
    },
    /// A sweep range's ends or step count are unusable.
    #[error("sweep range over {axis}: {reason}")]
    SweepRange {
        /// The swept axis.
        axis: &'static str,
        /// What is wrong with the range.
        reason: String,
    },
}

fn positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

impl Horizon {
    /// Checks that traffic, service life and any re-training interval are positive and finite.
    pub fn validate(&self) -> Result<(), PlanError> {
        if !positive(self.traffic.value()) {
            return Err(PlanError::Traffic(self.traffic.requests_per_day()));
        }
        if !positive(self.service_life.value()) {
            return Err(PlanError::ServiceLife(self.service_life.value()));
        }
        if let Some(interval) = self.retraining_interval
            && !positive(interval.value())
        {
            return Err(PlanError::RetrainingInterval(interval.value()));
        }
        Ok(())
    }

    /// Total requests over the service life.
    pub fn requests(&self) -> f64 {
        self.traffic.requests_over(self.service_life)
    }
}

/// A strategy's life-cycle carbon under one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlook {
    /// Strategy name.
    pub strategy: String,
    /// Requests served over the service life.
    pub requests: f64,
    /// Re-trainings over the service life (continuous, so may be fractional).
    pub retrainings: f64,
    /// The served model's EPC.
    pub upfront_g: f64,
    /// Grams CO2e of those re-trainings.
    pub retraining_g: f64,
    /// The operational phase: every serving term of every request.
    pub operational_g: f64,
    /// `operational_g` by term (operational, embodied_system, platform_*).
    pub operational_terms: Terms,
    /// Life-cycle total: up-front + re-training + operational, in grams CO2e.
    pub total_g: f64,
    /// ASCᵉ of one inference at this traffic: total / requests.
    pub per_inference_g: f64,
    /// Per-inference ASCᵉ by term, with the up-front EPC as `model_epc`.
    pub per_inference_terms: Terms,
}

impl StrategyCost {
    fn effective_retraining(&self, horizon: &Horizon) -> Option<Retraining> {
        self.retraining.map(|r| Retraining {
            interval: horizon.retraining_interval.unwrap_or(r.interval),
            ..r
        })
    }

    /// Fixed carbon per second of service: `U/L + C/I`.
    fn fixed_rate(&self, horizon: &Horizon) -> f64 {
        self.upfront.value() / horizon.service_life.value() + self.retraining_rate(horizon)
    }

    fn retraining_rate(&self, horizon: &Horizon) -> f64 {
        self.effective_retraining(horizon)
            .map(|r| r.carbon_per_retraining.value() / r.interval.value())
            .unwrap_or(0.0)
    }

    /// Life-cycle carbon under `horizon`. Validate the horizon first.
    pub fn outlook(&self, horizon: &Horizon) -> Outlook {
        let requests = horizon.requests();
        let retrainings = self
            .effective_retraining(horizon)
            .map(|r| r.count_over(horizon.service_life))
            .unwrap_or(0.0);
        let retraining = self.retraining_rate(horizon) * horizon.service_life.value();
        let operational_terms = self.per_request.scaled(requests);
        let operational = operational_terms.asce().value();
        let total = self.upfront.value() + retraining + operational;
        let mut per_inference_terms = self.per_request;
        per_inference_terms[Term::ModelEpc] = self.upfront / requests;
        per_inference_terms[Term::Retraining] = Grams(retraining / requests);
        Outlook {
            strategy: self.name.clone(),
            requests,
            retrainings,
            upfront_g: self.upfront.value(),
            retraining_g: retraining,
            operational_g: operational,
            operational_terms,
            total_g: total,
            per_inference_g: total / requests,
            per_inference_terms,
        }
    }
}

/// Where two strategies' life-cycle totals meet, if anywhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakEven {
    /// Below this traffic `cheaper_below` costs less over the service life, above it
    /// `cheaper_above` does.
    At {
        /// Break-even traffic in requests a day.
        requests_per_day: f64,
        /// Requests over the service life at the break-even traffic.
        requests: f64,
        /// The strategy that costs less at lower traffic.
        cheaper_below: String,
        /// The strategy that costs less at higher traffic.
        cheaper_above: String,
    },
    /// Same per-request cost: the lines are parallel, one is cheaper at every volume by its
    /// smaller fixed cost.
    Parallel {
        /// The strategy cheaper at every volume.
        cheaper: String,
        /// Its constant advantage in grams CO2e.
        margin_g: f64,
    },
    /// They would meet only at zero or negative traffic: one is cheaper (or equal) at every
    /// volume.
    Dominated {
        /// The strategy cheaper (or equal) at every volume.
        cheaper: String,
    },
    /// Identical cost structure.
    Identical,
}

impl BreakEven {
    /// The break-even traffic, when there is one.
    pub fn traffic(&self) -> Option<RequestRate> {
        match self {
            BreakEven::At {
                requests_per_day, ..
            } => Some(RequestRate::per_day(*requests_per_day)),
            _ => None,
        }
    }
}

/// Relative tolerance under which two per-request costs count as equal.
const SAME_COST: f64 = 1e-12;

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME_COST * a.abs().max(b.abs())
}

/// Break-even traffic of `a` against `b` over `horizon`'s service life and re-training
/// cadence (its traffic is ignored). Solves `Fa + pa·r = Fb + pb·r` per second of service,
/// `F = U/L + C/I`, for `r > 0`.
pub fn break_even(a: &StrategyCost, b: &StrategyCost, horizon: &Horizon) -> BreakEven {
    let (fa, fb) = (a.fixed_rate(horizon), b.fixed_rate(horizon));
    let (pa, pb) = (a.per_request.asce().value(), b.per_request.asce().value());
    if same(pa, pb) {
        if same(fa, fb) {
            return BreakEven::Identical;
        }
        let (cheaper, margin) = if fa < fb { (a, fb - fa) } else { (b, fa - fb) };
        return BreakEven::Parallel {
            cheaper: cheaper.name.clone(),
            margin_g: margin * horizon.service_life.value(),
        };
    }
    let rate = (fb - fa) / (pa - pb);
    if !(rate.is_finite() && rate > 0.0) {
        // No crossing at positive traffic: the one with the lower per-request cost also has
        // the lower (or equal) fixed cost.
        let cheaper = if pa < pb { a } else { b };
        return BreakEven::Dominated {
            cheaper: cheaper.name.clone(),
        };
    }
    let (cheaper_below, cheaper_above) = if pa < pb { (b, a) } else { (a, b) };
    let traffic = RequestRate(rate);
    BreakEven::At {
        requests_per_day: traffic.requests_per_day(),
        requests: traffic.requests_over(horizon.service_life),
        cheaper_below: cheaper_below.name.clone(),
        cheaper_above: cheaper_above.name.clone(),
    }
}

/// Service life at which `a` and `b` cost the same at `horizon`'s traffic: the up-front
/// difference is paid back by the difference in running cost. `None` when it never is.
pub(crate) fn break_even_service_life(
    a: &StrategyCost,
    b: &StrategyCost,
    horizon: &Horizon,
) -> Option<Seconds> {
    let running = |s: &StrategyCost| {
        s.retraining_rate(horizon) + s.per_request.asce().value() * horizon.traffic.value()
    };
    let upfront_gap = b.upfront.value() - a.upfront.value();
    let running_gap = running(a) - running(b);
    if same(running(a), running(b)) {
        return None;
    }
    let life = upfront_gap / running_gap;
    (life.is_finite() && life > 0.0).then_some(Seconds(life))
}

/// One pair's break-even figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The first strategy of the pair.
    pub strategy: String,
    /// The second.
    pub against: String,
    /// Where their totals meet as traffic varies.
    pub break_even: BreakEven,
    /// Service life at which the two cost the same at the plan's traffic, in seconds.
    pub break_even_service_life_s: Option<f64>,
}

/// Every unordered pair (a listed before b), by index into `strategies`.
pub(crate) fn compare_all(strategies: &[StrategyCost], horizon: &Horizon) -> Vec<Comparison> {
    let mut out = Vec::new();
    for (i, a) in strategies.iter().enumerate() {
        for b in &strategies[i + 1..] {
            out.push(Comparison {
                strategy: a.name.clone(),
                against: b.name.clone(),
                break_even: break_even(a, b, horizon),
                break_even_service_life_s: break_even_service_life(a, b, horizon)
                    .map(Seconds::value),
            });
        }
    }
    out
}

/// The quantity a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepAxis {
    /// Inference traffic (requests/day in reports).
    Traffic,
    /// Every strategy's re-training interval (seconds).
    RetrainingInterval,
    /// The service life (seconds).
    ServiceLife,
}

impl SweepAxis {
    /// Every axis, in report order.
    pub const ALL: [SweepAxis; 3] = [
        SweepAxis::Traffic,
        SweepAxis::RetrainingInterval,
        SweepAxis::ServiceLife,
    ];
    /// The name in plan files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            SweepAxis::Traffic => "traffic",
            SweepAxis::RetrainingInterval => "retrainingInterval",
            SweepAxis::ServiceLife => "serviceLife",
        }
    }
    /// The axis value's unit in reports.
    pub const fn unit(self) -> &'static str {
        match self {
            SweepAxis::Traffic => "requests/day",
            SweepAxis::RetrainingInterval | SweepAxis::ServiceLife => "s",
        }
    }
}

impl fmt::Display for SweepAxis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Values of one sweep, in the axis's base unit (requests/s or s).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// The quantity varied.
    pub axis: SweepAxis,
    /// The values it takes, in order.
    pub values: Vec<f64>,
}

/// How a range is filled between its ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Evenly spaced on a log scale (traffic over decades).
    Log,
}

/// `steps` values from `from` to `to` inclusive.
pub fn range(
    axis: SweepAxis,
    from: f64,
    to: f64,
    steps: usize,
    scale: Scale,
) -> Result<Vec<f64>, PlanError> {
    let bad = |reason: &str| PlanError::SweepRange {
        axis: axis.as_str(),
        reason: reason.to_owned(),
    };
    if !(positive(from) && positive(to)) {
        return Err(bad("both ends must be positive"));
    }
    if from > to {
        return Err(bad("`from` is larger than `to`"));
    }
    match steps {
        0 => Err(PlanError::EmptySweep {
            axis: axis.as_str(),
        }),
        1 => Ok(vec![from]),
        n => {
            let last = (n - 1) as f64;
            Ok((0..n)
                .map(|i| {
                    let t = i as f64 / last;
                    match scale {
                        Scale::Linear => from + (to - from) * t,
                        Scale::Log => from * (to / from).powf(t),
                    }
                })
                .collect())
        }
    }
}

/// The strategy with the lowest total (ties: the first listed).
fn cheapest<'a>(outlooks: impl Iterator<Item = &'a Outlook>) -> String {
    outlooks
        .fold(None::<&Outlook>, |best, o| match best {
            Some(b) if b.total_g <= o.total_g => Some(b),
            _ => Some(o),
        })
        .map(|o| o.strategy.clone())
        .unwrap_or_default()
}

/// One value of a sweep and every strategy's outlook there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    /// In the axis's report unit (requests/day or seconds).
    pub value: f64,
    /// Every strategy's outlook at this value, in listing order.
    pub outlooks: Vec<Outlook>,
    /// Lowest total (ties: the first listed).
    pub cheapest: String,
}

/// One sweep's results: every strategy at every value of one axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// The quantity varied.
    pub axis: SweepAxis,
    /// Unit of the points' values in reports.
    pub unit: &'static str,
    /// One point per value, in order.
    pub points: Vec<SweepPoint>,
}

impl SweepSpec {
    /// The horizon at one value of this sweep.
    pub fn horizon_at(&self, base: &Horizon, value: f64) -> Horizon {
        let mut h = *base;
        match self.axis {
            SweepAxis::Traffic => h.traffic = RequestRate(value),
            SweepAxis::RetrainingInterval => h.retraining_interval = Some(Seconds(value)),
            SweepAxis::ServiceLife => h.service_life = Seconds(value),
        }
        h
    }
}

/// Evaluate every strategy at every value of `spec`, the rest of `base` fixed.
pub(crate) fn sweep(
    strategies: &[StrategyCost],
    base: &Horizon,
    spec: &SweepSpec,
) -> Result<Sweep, PlanError> {
    if spec.values.is_empty() {
        return Err(PlanError::EmptySweep {
            axis: spec.axis.as_str(),
        });
    }
    let mut points = Vec::with_capacity(spec.values.len());
    for &value in &spec.values {
        let horizon = spec.horizon_at(base, value);
        horizon.validate()?;
        let outlooks: Vec<Outlook> = strategies.iter().map(|s| s.outlook(&horizon)).collect();
        let cheapest = cheapest(outlooks.iter());
        let value = match spec.axis {
            SweepAxis::Traffic => RequestRate(value).requests_per_day(),
            _ => value,
        };
        points.push(SweepPoint {
            value,
            outlooks,
            cheapest,
        });
    }
    Ok(Sweep {
        axis: spec.axis,
        unit: spec.axis.unit(),
        points,
    })
}

/// One strategy in a plan report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    /// Strategy name.
    pub name: String,
    /// Free-text description from the plan file.
    pub description: Option<String>,
    /// The model that serves the inference.
    pub serves: String,
    /// Serving cost of one request (ASCᵉ without model EPC and re-training): the floor the
    /// per-inference figure approaches at high traffic.
    pub per_request_serving_g: f64,
    /// Re-training cost, if the strategy re-trains.
    pub retraining: Option<Retraining>,
    /// Under the plan's traffic and service life.
    pub outlook: Outlook,
}

/// Everything `jobcarbon plan` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanReport {
    /// The plan's traffic in requests a day.
    pub traffic_per_day: f64,
    /// The plan's service life in seconds.
    pub service_life_s: f64,
    /// Every strategy, in listing order.
    pub strategies: Vec<StrategyReport>,
    /// Lowest life-cycle total at the plan's traffic and service life.
    pub cheapest: String,
    /// Every pair of strategies, in listing order.
    pub break_even: Vec<Comparison>,
    /// Every requested sweep, in order.
    pub sweeps: Vec<Sweep>,
}

/// Evaluate a plan: every strategy's outlook, every pair's break-even, every sweep.
pub fn report(
    strategies: &[StrategyCost],
    horizon: &Horizon,
    sweeps: &[SweepSpec],
) -> Result<PlanReport, PlanError> {
    horizon.validate()?;
    let reports: Vec<StrategyReport> = strategies
        .iter()
        .map(|s| StrategyReport {
            name: s.name.clone(),
            description: s.description.clone(),
            serves: s.serves.clone(),
            per_request_serving_g: s.per_request.asce().value(),
            retraining: s.effective_retraining(horizon),
            outlook: s.outlook(horizon),
        })
        .collect();
    let cheapest = cheapest(reports.iter().map(|r| &r.outlook));
    let sweeps = sweeps
        .iter()
        .map(|spec| sweep(strategies, horizon, spec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PlanReport {
        traffic_per_day: horizon.traffic.requests_per_day(),
        service_life_s: horizon.service_life.value(),
        strategies: reports,
        cheapest,
        break_even: compare_all(strategies, horizon),
        sweeps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::parse;
    use proptest::prelude::*;

    fn strategy(name: &str, upfront: f64, per_request: f64) -> StrategyCost {
        StrategyCost {
            name: name.to_owned(),
            serves: format!("{name}-model"),
            description: None,
            upfront: Grams(upfront),
            retraining: None,
            per_request: Terms::of(Term::Operational, Grams(per_request)),
        }
    }

    fn horizon(per_day: f64, life_days: f64) -> Horizon {
        Horizon {
            traffic: RequestRate::per_day(per_day),
            service_life: Seconds::from_days(life_days),
            retraining_interval: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-300)
    }

    #[test]
    fn parses_request_rates() {
        assert_eq!(parse::<RequestRate>("86400/d"), Ok(RequestRate(1.0)));
        assert_eq!(parse::<RequestRate>("3600 req/h"), Ok(RequestRate(1.0)));
        assert_eq!(parse::<RequestRate>("2/s"), Ok(RequestRate(2.0)));
        assert!(parse::<RequestRate>("5/week").is_err());
        assert!(parse::<RequestRate>("5").is_err());
    }

    #[test]
    fn outlook_splits_total_into_upfront_retraining_operational() {
        let mut s = strategy("a", 1000.0, 0.5);
        s.retraining = Some(Retraining {
            carbon_per_retraining: Grams(70.0),
            interval: Seconds::from_days(7.0),
        });
        // 100 requests/day over 70 days: 7000 requests, 10 retrainings.
        let o = s.outlook(&horizon(100.0, 70.0));
        assert!(close(o.requests, 7000.0));
        assert!(close(o.retrainings, 10.0));
        assert!(close(o.upfront_g, 1000.0));
        assert!(close(o.retraining_g, 700.0));
        assert!(close(o.operational_g, 3500.0));
        assert!(close(o.total_g, 5200.0));
        assert!(close(o.per_inference_g, 5200.0 / 7000.0));
        assert!(close(
            o.per_inference_terms.asce().value(),
            o.per_inference_g
        ));
        assert!(close(
            o.per_inference_terms[Term::ModelEpc].value(),
            1000.0 / 7000.0
        ));
    }

    #[test]
    fn hand_computed_break_even() {
        // A: 1 kg up front, 1 g/request. B: 10 kg up front, 0.1 g/request. Over 100 days:
        // 1000 + N = 10000 + 0.1 N  →  N = 10000 requests  →  100 requests/day.
        let a = strategy("a", 1000.0, 1.0);
        let b = strategy("b", 10_000.0, 0.1);
        let h = horizon(1.0, 100.0);
        match break_even(&a, &b, &h) {
            BreakEven::At {
                requests_per_day,
                requests,
                cheaper_below,
                cheaper_above,
            } => {
                assert!(close(requests, 10_000.0), "{requests}");
                assert!(close(requests_per_day, 100.0), "{requests_per_day}");
                assert_eq!(cheaper_below, "a");
                assert_eq!(cheaper_above, "b");
            }
            other => panic!("{other:?}"),
        }
        // Symmetric.
        let BreakEven::At { requests, .. } = break_even(&b, &a, &h) else {
            panic!("no break-even")
        };
        assert!(close(requests, 10_000.0));
        // At the break-even traffic the totals are equal.
        let at = horizon(100.0, 100.0);
        assert!(close(a.outlook(&at).total_g, b.outlook(&at).total_g));
    }

    #[test]
    fn retraining_cadence_moves_the_break_even() {
        // B re-trains 100 g daily: its fixed rate rises by 100 g/day, so the crossing moves to
        // (10000 − 1000)/100 d + 100 g/d = 190 g/day over 0.9 g/request → 211.1 requests/day.
        let a = strategy("a", 1000.0, 1.0);
        let mut b = strategy("b", 10_000.0, 0.1);
        b.retraining = Some(Retraining {
            carbon_per_retraining: Grams(100.0),
            interval: Seconds::from_days(1.0),
        });
        let h = horizon(1.0, 100.0);
        let rate = break_even(&a, &b, &h)
            .traffic()
            .map(RequestRate::requests_per_day);
        assert!(close(rate.unwrap_or_default(), 190.0 / 0.9));
        // Weekly instead of daily, by the sweep override: (90 + 100/7) / 0.9.
        let weekly = Horizon {
            retraining_interval: Some(Seconds::from_days(7.0)),
            ..h
        };
        let rate = break_even(&a, &b, &weekly)
            .traffic()
            .map(RequestRate::requests_per_day);
        assert!(close(rate.unwrap_or_default(), (90.0 + 100.0 / 7.0) / 0.9));
    }

    #[test]
    fn parallel_strategies_never_break_even() {
        let a = strategy("a", 1000.0, 0.5);
        let b = strategy("b", 3000.0, 0.5);
        let h = horizon(10.0, 10.0);
        assert_eq!(
            break_even(&a, &b, &h),
            BreakEven::Parallel {
                cheaper: "a".into(),
                margin_g: 2000.0
            }
        );
        assert_eq!(break_even(&a, &a, &h), BreakEven::Identical);
        assert_eq!(break_even_service_life(&a, &b, &h), None);
    }

    #[test]
    fn dominated_strategy_never_breaks_even() {
        // B costs more up front AND per request.
        let a = strategy("a", 1000.0, 0.1);
        let b = strategy("b", 3000.0, 0.5);
        let h = horizon(10.0, 10.0);
        assert_eq!(
            break_even(&a, &b, &h),
            BreakEven::Dominated {
                cheaper: "a".into()
            }
        );
        assert_eq!(
            break_even(&b, &a, &h),
            BreakEven::Dominated {
                cheaper: "a".into()
            }
        );
    }

    #[test]
    fn service_life_break_even() {
        // At 50 requests/day: A runs 50 g/day, B 5 g/day; B's extra 9 kg up front is paid
        // back after 9000 / 45 = 200 days.
        let a = strategy("a", 1000.0, 1.0);
        let b = strategy("b", 10_000.0, 0.1);
        let life = break_even_service_life(&a, &b, &horizon(50.0, 100.0));
        assert!(close(life.unwrap_or_default().value(), 200.0 * 86_400.0));
        // At that life the totals are equal.
        let h = horizon(50.0, 200.0);
        assert!(close(a.outlook(&h).total_g, b.outlook(&h).total_g));
    }

    #[test]
    fn ranges_fill_linear_and_log() {
        let lin = range(SweepAxis::ServiceLife, 1.0, 5.0, 5, Scale::Linear).unwrap();
        assert_eq!(lin, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let log = range(SweepAxis::Traffic, 1.0, 1000.0, 4, Scale::Log).unwrap();
        for (got, want) in log.iter().zip([1.0, 10.0, 100.0, 1000.0]) {
            assert!(close(*got, want));
        }
        assert!(range(SweepAxis::Traffic, 0.0, 1.0, 3, Scale::Log).is_err());
        assert!(range(SweepAxis::Traffic, 2.0, 1.0, 3, Scale::Log).is_err());
        assert!(range(SweepAxis::Traffic, 1.0, 2.0, 0, Scale::Log).is_err());
    }

    #[test]
    fn invalid_horizons_are_rejected() {
        assert!(horizon(0.0, 1.0).validate().is_err());
        assert!(horizon(1.0, 0.0).validate().is_err());
        let h = Horizon {
            retraining_interval: Some(Seconds(-1.0)),
            ..horizon(1.0, 1.0)
        };
        assert!(h.validate().is_err());
    }

    fn arb_strategy(name: &'static str) -> impl Strategy<Value = StrategyCost> {
        (
            0.0..1e9f64,
            1e-6..1e3f64,
            proptest::option::of((0.0..1e6f64, 3600.0..1e8f64)),
        )
            .prop_map(move |(u, p, rt)| StrategyCost {
                name: name.to_owned(),
                serves: "m".to_owned(),
                description: None,
                upfront: Grams(u),
                retraining: rt.map(|(c, i)| Retraining {
                    carbon_per_retraining: Grams(c),
                    interval: Seconds(i),
                }),
                per_request: Terms::of(Term::Operational, Grams(p)),
            })
    }

    fn monotone(values: &[f64], increasing: bool) -> bool {
        values.windows(2).all(|w| {
            let slack = 1e-9 * w[0].abs().max(w[1].abs());
            if increasing {
                w[1] >= w[0] - slack
            } else {
                w[1] <= w[0] + slack
            }
        })
    }

    fn sweep_of(s: &StrategyCost, axis: SweepAxis, values: Vec<f64>) -> Vec<Outlook> {
        let base = horizon(1e4, 365.0);
        let spec = SweepSpec { axis, values };
        sweep(std::slice::from_ref(s), &base, &spec)
            .unwrap()
            .points
            .into_iter()
            .map(|p| p.outlooks[0].clone())
            .collect()
    }

    proptest! {
        #[test]
        fn per_inference_falls_and_total_rises_with_traffic(s in arb_strategy("s")) {
            let values = range(SweepAxis::Traffic, 1e-3, 1e4, 15, Scale::Log).unwrap();
            let o = sweep_of(&s, SweepAxis::Traffic, values);
            let per: Vec<f64> = o.iter().map(|o| o.per_inference_g).collect();
            let total: Vec<f64> = o.iter().map(|o| o.total_g).collect();
            prop_assert!(monotone(&per, false), "{per:?}");
            prop_assert!(monotone(&total, true), "{total:?}");
            // Never below the per-request floor.
            let floor = s.per_request.asce().value();
            prop_assert!(per.iter().all(|p| *p >= floor * (1.0 - 1e-12)));
        }

        #[test]
        fn per_inference_falls_with_longer_retraining_interval(s in arb_strategy("s")) {
            let values = range(SweepAxis::RetrainingInterval, 3600.0, 1e8, 12, Scale::Log).unwrap();
            let o = sweep_of(&s, SweepAxis::RetrainingInterval, values);
            let per: Vec<f64> = o.iter().map(|o| o.per_inference_g).collect();
            prop_assert!(monotone(&per, false), "{per:?}");
        }

        #[test]
        fn per_inference_falls_and_total_rises_with_service_life(s in arb_strategy("s")) {
            let values = range(SweepAxis::ServiceLife, 86_400.0, 1e9, 12, Scale::Log).unwrap();
            let o = sweep_of(&s, SweepAxis::ServiceLife, values);
            let per: Vec<f64> = o.iter().map(|o| o.per_inference_g).collect();
            let total: Vec<f64> = o.iter().map(|o| o.total_g).collect();
            prop_assert!(monotone(&per, false), "{per:?}");
            prop_assert!(monotone(&total, true), "{total:?}");
        }

        #[test]
        fn totals_meet_at_the_break_even(a in arb_strategy("a"), b in arb_strategy("b")) {
            let h = horizon(1.0, 365.0);
            match break_even(&a, &b, &h) {
                BreakEven::At { requests_per_day, cheaper_below, cheaper_above, .. } => {
                    let at = horizon(requests_per_day, 365.0);
                    let (ta, tb) = (a.outlook(&at).total_g, b.outlook(&at).total_g);
                    prop_assert!((ta - tb).abs() <= 1e-6 * ta.max(tb), "{ta} vs {tb}");
                    let cost = |name: &str, h: &Horizon| {
                        if name == "a" { a.outlook(h).total_g } else { b.outlook(h).total_g }
                    };
                    let below = horizon(requests_per_day / 2.0, 365.0);
                    let above = horizon(requests_per_day * 2.0, 365.0);
                    let other = |n: &str| if n == "a" { "b" } else { "a" };
                    prop_assert!(cost(&cheaper_below, &below) <= cost(other(&cheaper_below), &below));
                    prop_assert!(cost(&cheaper_above, &above) <= cost(other(&cheaper_above), &above));
                }
                BreakEven::Dominated { cheaper } | BreakEven::Parallel { cheaper, .. } => {
                    for per_day in [1e-2, 1.0, 1e3, 1e6] {
                        let h = horizon(per_day, 365.0);
                        let (ta, tb) = (a.outlook(&h).total_g, b.outlook(&h).total_g);
                        let (win, lose) = if cheaper == "a" { (ta, tb) } else { (tb, ta) };
                        prop_assert!(win <= lose * (1.0 + 1e-9), "{win} > {lose} at {per_day}");
                    }
                }
                BreakEven::Identical => {}
            }
        }
    }
}

//! Plan files (`jobcarbon plan FILE`): two or more strategies, each a small life cycle written
//! in the scenario vocabulary of DESIGN §7, evaluated by the same [`ScenarioDoc::evaluate`]
//! that `jobcarbon calc` uses.
//!
//! ```yaml
//! sources/regions/systems/platforms: ...   # shared, as in a scenario
//! products: {...}                          # shared products (a public foundation model, datasets)
//! jobs: [...]                              # shared build jobs
//! traffic: 1e6/d                           # expected requests per day
//! serviceLife: 3y                          # default: each served model's lifetime
//! sweeps:
//!   traffic: {from: 1e3/d, to: 1e9/d, steps: 13}     # log-spaced by default
//!   retrainingInterval: {values: [1d, 7d, 30d]}
//! strategies:
//!   distil:
//!     description: distil the foundation model, then serve the student
//!     serves: student                      # the model that serves the task
//!     products: {student: {type: model, lifetime: 3y, derivedFrom: [...]}}
//!     jobs:                                # build, re-training and ONE inference job
//!       - {name: distil, builds: student, power: 250W, devices: 8, duration: 84h, region: r}
//!       - {name: refresh, retrains: student, power: 250W, devices: 8, duration: 2h, region: r}
//!       - {name: request, serves: student, energy: 0.015kWh, duration: 410s, region: r}
//!     retraining: {interval: 7d, carbon: 0g}   # carbon per re-training besides `retrains` jobs
//! ```
//!
//! Each strategy is evaluated as one scenario: the shared sections plus its own products and
//! jobs. Its served model's EPC is the up-front cost; its one `serves` job prices one request
//! (its terms except `model_epc` and `retraining`, which the plan derives from traffic); the
//! `retrains` jobs' ASCᵉ plus `retraining.carbon` is the carbon of one re-training.

use crate::domain::Term;
use crate::plan::{
    Horizon, RequestRate, Retraining, Scale, StrategyCost, SweepAxis, SweepSpec, range,
};
use crate::quantity::{Q, Unit, parse};
use crate::scenario::{
    JobSpec, Named, PlatformSpec, Problem, ProductSpec, RegionSpec, Report, RetrainingSpec,
    ScenarioDoc, ScenarioError, SystemSpec, parse_yaml,
};
use crate::units::{Grams, GramsPerKwh, Seconds};
use serde::Deserialize;
use std::path::Path;

/// A plan file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanDoc {
    /// Grid sources shared by every strategy, as in a scenario.
    #[serde(default)]
    pub sources: Named<Q<GramsPerKwh>>,
    /// Regions shared by every strategy.
    #[serde(default)]
    pub regions: Named<RegionSpec>,
    /// Systems shared by every strategy.
    #[serde(default)]
    pub systems: Named<SystemSpec>,
    /// Platforms shared by every strategy.
    #[serde(default)]
    pub platforms: Named<PlatformSpec>,
    /// Products every strategy may use (a public foundation model, its datasets).
    #[serde(default)]
    pub products: Named<ProductSpec>,
    /// Jobs that build the shared products.
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    /// Expected requests per day (`1e6/d`).
    pub traffic: Q<RequestRate>,
    /// The time the task is served; default: the served model's lifetime.
    #[serde(default)]
    pub service_life: Option<Q<Seconds>>,
    /// Ranges or lists of values to evaluate the strategies over.
    #[serde(default)]
    pub sweeps: SweepsDoc,
    /// The alternatives compared, by name.
    pub strategies: Named<StrategyDoc>,
}

/// `strategies.NAME`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StrategyDoc {
    /// Free-text description shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// The model whose inference the strategy's `serves` job prices.
    pub serves: String,
    /// Products of this strategy only (e.g. its fine-tuned model).
    #[serde(default)]
    pub products: Named<ProductSpec>,
    /// Jobs of this strategy: `builds`, `retrains` and one `serves` job.
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    /// How often the served model is re-trained, if it is.
    #[serde(default)]
    pub retraining: Option<StrategyRetraining>,
}

/// `strategies.NAME.retraining`: how often the served model is re-trained, and any carbon
/// per re-training not given as `retrains` jobs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyRetraining {
    /// Time between re-trainings.
    pub interval: Q<Seconds>,
    /// Carbon per re-training besides the `retrains` jobs.
    #[serde(default)]
    pub carbon: Option<Q<Grams>>,
}

/// `sweeps:` — each axis a range or a list of values.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SweepsDoc {
    /// Traffic sweep (request rates).
    #[serde(default)]
    pub traffic: Option<RangeDoc<RequestRate>>,
    /// Re-training interval sweep (durations).
    #[serde(default)]
    pub retraining_interval: Option<RangeDoc<Seconds>>,
    /// Service life sweep (durations).
    #[serde(default)]
    pub service_life: Option<RangeDoc<Seconds>>,
}

/// `{from, to, steps, scale}` or `{values: [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "U: Unit"))]
pub struct RangeDoc<U> {
    /// Lower end of the range.
    #[serde(default = "none")]
    pub from: Option<Q<U>>,
    /// Upper end of the range.
    #[serde(default = "none")]
    pub to: Option<Q<U>>,
    /// Number of values, ends included (default 9).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Spacing between the ends (default log for traffic, linear otherwise).
    #[serde(default)]
    pub scale: Option<ScaleDoc>,
    /// Explicit values instead of a range.
    #[serde(default = "none_vec")]
    pub values: Option<Vec<Q<U>>>,
}

fn none<T>() -> Option<T> {
    None
}
fn none_vec<T>() -> Option<Vec<T>> {
    None
}

/// `scale:` of a range, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleDoc {
    /// Evenly spaced values.
    Linear,
    /// Evenly spaced on a log scale.
    Log,
}

/// Default steps of a range sweep.
pub(crate) const DEFAULT_STEPS: usize = 9;

/// A plan ready for [`crate::plan::report`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// Every strategy reduced to its cost structure.
    pub strategies: Vec<StrategyCost>,
    /// The plan's traffic and service life.
    pub horizon: Horizon,
    /// The sweeps to run.
    pub sweeps: Vec<SweepSpec>,
}

/// One strategy's scenario and its evaluation (for data sheets and cross-checks).
#[derive(Debug, Clone)]
pub struct EvaluatedStrategy {
    /// Strategy name.
    pub name: String,
    /// The scenario it was evaluated as.
    pub scenario: ScenarioDoc,
    /// Its evaluation.
    pub report: Report,
    /// Index of the job that prices one request.
    pub request_job: usize,
}

/// Read, parse and evaluate a plan file.
pub fn load(path: &Path) -> Result<PlanInput, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::unreadable(&file, &e))?;
    let doc: PlanDoc = parse_yaml(&file, &text)?;
    doc.evaluate(&file).map(|(input, _)| input)
}

fn invalid(file: &str, path: impl Into<String>, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::new(file, path, Problem::Invalid(reason.into()))
}

impl PlanDoc {
    /// Parse a plan file's text; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, ScenarioError> {
        parse_yaml(file, text)
    }

    /// The scenario of one strategy: shared sections, then the strategy's products and jobs.
    /// Re-training is given to the served model as a per-interval policy with
    /// `jobsPerInterval` = traffic × interval, so `retrains` jobs have a pool to go into.
    pub fn scenario_of(&self, strategy: &StrategyDoc, traffic: RequestRate) -> ScenarioDoc {
        let mut products = self.products.clone();
        for (name, spec) in strategy.products.iter() {
            let mut spec = spec.clone();
            if name == strategy.serves
                && let Some(r) = &strategy.retraining
            {
                spec.retraining = Some(RetrainingSpec {
                    carbon: r.carbon,
                    interval: r.interval,
                    jobs_per_interval: traffic.requests_over(r.interval.0).max(f64::MIN_POSITIVE),
                });
            }
            products.0.push((name.to_owned(), spec));
        }
        let mut jobs = self.jobs.clone();
        jobs.extend(strategy.jobs.iter().cloned());
        ScenarioDoc {
            sources: self.sources.clone(),
            regions: self.regions.clone(),
            systems: self.systems.clone(),
            platforms: self.platforms.clone(),
            products,
            jobs,
        }
    }

    /// Where an error found in a strategy's scenario is in the plan file.
    fn locate(&self, strategy: &str, error: ScenarioError) -> ScenarioError {
        let shared_jobs = self.jobs.len();
        let prefix = format!("strategies.{strategy}");
        let path = error.path.clone();
        let relocated = if let Some(rest) = path.strip_prefix("jobs[") {
            let (index, tail) = rest.split_once(']').unwrap_or((rest, ""));
            match index.parse::<usize>() {
                Ok(i) if i >= shared_jobs => {
                    Some(format!("{prefix}.jobs[{}]{tail}", i - shared_jobs))
                }
                _ => None,
            }
        } else if let Some(rest) = path.strip_prefix("products.") {
            let name = rest.split('.').next().unwrap_or(rest);
            (self.products.get(name).is_none()).then(|| format!("{prefix}.{path}"))
        } else {
            None
        };
        match relocated {
            Some(p) => ScenarioError { path: p, ..error },
            None => error,
        }
    }

    /// Evaluate every strategy into its cost structure.
    pub fn evaluate(
        &self,
        file: &str,
    ) -> Result<(PlanInput, Vec<EvaluatedStrategy>), ScenarioError> {
        let traffic = self.traffic.0;
        if !(traffic.value().is_finite() && traffic.value() > 0.0) {
            return Err(ScenarioError::new(
                file,
                "traffic",
                Problem::NotPositive {
                    what: "traffic",
                    value: format!("{} requests/day", traffic.requests_per_day()),
                },
            ));
        }
        if self.strategies.0.len() < 2 {
            return Err(invalid(
                file,
                "strategies",
                format!(
                    "a plan compares two or more strategies ({} given)",
                    self.strategies.0.len()
                ),
            ));
        }
        let mut strategies = Vec::with_capacity(self.strategies.0.len());
        let mut evaluated = Vec::with_capacity(self.strategies.0.len());
        let mut served_lifetime: Option<(String, Seconds)> = None;
        for (name, strategy) in self.strategies.iter() {
            let served = self.served_product(file, name, strategy)?;
            let request_job = self.request_job(file, name, strategy)?;
            let (cost, one) = self.evaluate_strategy(file, name, strategy, traffic, request_job)?;
            let lifetime = served.lifetime.map(|q| q.0).unwrap_or(Seconds::ZERO);
            match &served_lifetime {
                None => served_lifetime = Some((name.to_owned(), lifetime)),
                Some((first, l)) if self.service_life.is_none() && *l != lifetime => {
                    return Err(invalid(
                        file,
                        "serviceLife",
                        format!(
                            "the served models' lifetimes differ ({first}: {} s, {name}: {} s); give the plan one serviceLife to compare them over",
                            l.value(),
                            lifetime.value()
                        ),
                    ));
                }
                Some(_) => {}
            }
            strategies.push(cost);
            evaluated.push(one);
        }
        let horizon = Horizon {
            traffic,
            service_life: self.service_life(file, served_lifetime)?,
            retraining_interval: None,
        };
        let sweeps = self.sweeps.specs(file)?;
        Ok((
            PlanInput {
                strategies,
                horizon,
                sweeps,
            },
            evaluated,
        ))
    }

    /// The model `strategy` serves, checked: its own (not shared) products, declared among
    /// them, with re-training declared on the strategy and a positive re-training interval.
    fn served_product<'a>(
        &self,
        file: &str,
        name: &str,
        strategy: &'a StrategyDoc,
    ) -> Result<&'a ProductSpec, ScenarioError> {
        let at = |field: &str| format!("strategies.{name}.{field}");
        for (product, _) in strategy.products.iter() {
            if self.products.get(product).is_some() {
                return Err(invalid(
                    file,
                    at(&format!("products.{product}")),
                    format!("{product:?} is already a shared product (products.{product})"),
                ));
            }
        }
        if self.products.get(&strategy.serves).is_some() {
            return Err(invalid(
                file,
                at("serves"),
                format!(
                    "{:?} is a shared product; a strategy serves a model of its own (declare it under {}, derived from the shared one)",
                    strategy.serves,
                    at("products")
                ),
            ));
        }
        let Some(served) = strategy.products.get(&strategy.serves) else {
            return Err(ScenarioError::new(
                file,
                at("serves"),
                Problem::UnknownReference {
                    kind: "product",
                    name: strategy.serves.clone(),
                    known: strategy.products.names(),
                },
            ));
        };
        if served.retraining.is_some() {
            return Err(invalid(
                file,
                at(&format!("products.{}.retraining", strategy.serves)),
                format!(
                    "in a plan, re-training is declared on the strategy ({}: {{interval, carbon}}); its share per request follows from traffic",
                    at("retraining")
                ),
            ));
        }
        if let Some(r) = &strategy.retraining
            && !(r.interval.0.value().is_finite() && r.interval.0.value() > 0.0)
        {
            return Err(ScenarioError::new(
                file,
                at("retraining.interval"),
                Problem::NotPositive {
                    what: "interval",
                    value: format!("{} s", r.interval.0.value()),
                },
            ));
        }
        Ok(served)
    }

    /// The index (within `strategy.jobs`) of the one job that prices a request, after checking
    /// that shared jobs build only shared products and the strategy's jobs only its own.
    fn request_job(
        &self,
        file: &str,
        name: &str,
        strategy: &StrategyDoc,
    ) -> Result<usize, ScenarioError> {
        let at = |field: &str| format!("strategies.{name}.{field}");
        let serving: Vec<usize> = strategy
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.serves.as_deref() == Some(strategy.serves.as_str()))
            .map(|(i, _)| i)
            .collect();
        let request_job = match serving.as_slice() {
            [one] => *one,
            [] => {
                return Err(invalid(
                    file,
                    at("jobs"),
                    format!(
                        "no job serves {:?}: add one inference job with `serves: {}` that prices one request",
                        strategy.serves, strategy.serves
                    ),
                ));
            }
            [_, second, ..] => {
                return Err(invalid(
                    file,
                    at(&format!("jobs[{second}].serves")),
                    format!(
                        "more than one job serves {:?}; a plan prices one request with exactly one",
                        strategy.serves
                    ),
                ));
            }
        };
        for (i, job) in self.jobs.iter().enumerate() {
            if job.serves.is_some() || job.retrains.is_some() {
                return Err(invalid(
                    file,
                    format!("jobs[{i}]"),
                    "shared jobs build shared products; inference and re-training belong to a strategy",
                ));
            }
        }
        if let Some((i, job)) = strategy.jobs.iter().enumerate().find(|(_, j)| {
            j.builds
                .as_deref()
                .is_some_and(|p| self.products.get(p).is_some())
        }) {
            return Err(invalid(
                file,
                at(&format!("jobs[{i}].builds")),
                format!(
                    "{:?} is a shared product, built by the shared jobs; a strategy builds its own products",
                    job.builds.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let Some((i, _)) = strategy
            .jobs
            .iter()
            .enumerate()
            .find(|(_, j)| j.retrains.is_some() && strategy.retraining.is_none())
        {
            return Err(invalid(
                file,
                at(&format!("jobs[{i}].retrains")),
                format!("a re-training job needs {}: {{interval}}", at("retraining")),
            ));
        }

        Ok(request_job)
    }

    /// Evaluates one strategy's scenario into its cost structure.
    fn evaluate_strategy(
        &self,
        file: &str,
        name: &str,
        strategy: &StrategyDoc,
        traffic: RequestRate,
        request_job: usize,
    ) -> Result<(StrategyCost, EvaluatedStrategy), ScenarioError> {
        let scenario = self.scenario_of(strategy, traffic);
        let report = scenario.evaluate(file).map_err(|e| self.locate(name, e))?;
        let request_index = self.jobs.len() + request_job;
        let cost = serving_cost(name, &scenario, &report, &strategy.serves, request_index);
        Ok((
            StrategyCost {
                description: strategy.description.clone(),
                ..cost
            },
            EvaluatedStrategy {
                name: name.to_owned(),
                scenario,
                report,
                request_job: request_index,
            },
        ))
    }

    /// The plan's service life: declared (and positive), or the served models' lifetime.
    fn service_life(
        &self,
        file: &str,
        served_lifetime: Option<(String, Seconds)>,
    ) -> Result<Seconds, ScenarioError> {
        Ok(match (&self.service_life, served_lifetime) {
            (Some(l), _) => {
                if !(l.0.value().is_finite() && l.0.value() > 0.0) {
                    return Err(ScenarioError::new(
                        file,
                        "serviceLife",
                        Problem::NotPositive {
                            what: "serviceLife",
                            value: format!("{} s", l.0.value()),
                        },
                    ));
                }
                l.0
            }
            (None, Some((_, l))) => l,
            (None, None) => Seconds::ZERO,
        })
    }
}

/// The cost structure of serving `model` in an evaluated scenario: its EPC up front, the
/// terms of `request_job` (one request) without `model_epc` and `retraining`, and its
/// re-training policy's carbon (declared plus the ASCᵉ of its `retrains` jobs) per interval.
pub(crate) fn serving_cost(
    name: &str,
    scenario: &ScenarioDoc,
    report: &Report,
    model: &str,
    request_job: usize,
) -> StrategyCost {
    let upfront = report
        .products
        .iter()
        .find(|p| p.name == model)
        .map(|p| p.epc.total())
        .unwrap_or(Grams::ZERO);
    let mut per_request = report
        .jobs
        .get(request_job)
        .map(|j| j.terms)
        .unwrap_or_default();
    per_request[Term::ModelEpc] = Grams::ZERO;
    per_request[Term::Retraining] = Grams::ZERO;
    let retraining = scenario
        .products
        .get(model)
        .and_then(|p| p.retraining.as_ref())
        .map(|r| {
            let from_jobs: Grams = scenario
                .jobs
                .iter()
                .zip(&report.jobs)
                .filter(|(spec, _)| spec.retrains.as_deref() == Some(model))
                .map(|(_, job)| job.terms.asce())
                .sum();
            Retraining {
                carbon_per_retraining: from_jobs + r.carbon.map(|q| q.0).unwrap_or(Grams::ZERO),
                interval: r.interval.0,
            }
        });
    StrategyCost {
        name: name.to_owned(),
        serves: model.to_owned(),
        description: None,
        upfront,
        retraining,
        per_request,
    }
}

impl SweepsDoc {
    fn specs(&self, file: &str) -> Result<Vec<SweepSpec>, ScenarioError> {
        let mut out = Vec::new();
        if let Some(r) = &self.traffic {
            out.push(r.spec(file, SweepAxis::Traffic, |q| q.value())?);
        }
        if let Some(r) = &self.retraining_interval {
            out.push(r.spec(file, SweepAxis::RetrainingInterval, Seconds::value)?);
        }
        if let Some(r) = &self.service_life {
            out.push(r.spec(file, SweepAxis::ServiceLife, Seconds::value)?);
        }
        Ok(out)
    }
}

/// Log for traffic (it spans decades), linear for times.
fn default_scale(axis: SweepAxis) -> Scale {
    match axis {
        SweepAxis::Traffic => Scale::Log,
        _ => Scale::Linear,
    }
}

impl<U: Copy> RangeDoc<U> {
    fn spec(
        &self,
        file: &str,
        axis: SweepAxis,
        base: impl Fn(U) -> f64,
    ) -> Result<SweepSpec, ScenarioError> {
        let at = format!("sweeps.{axis}");
        let values = match (&self.values, self.from, self.to) {
            (Some(values), None, None) if self.steps.is_none() && self.scale.is_none() => {
                let values: Vec<f64> = values.iter().map(|q| base(q.0)).collect();
                if values.is_empty() {
                    return Err(invalid(
                        file,
                        format!("{at}.values"),
                        "give at least one value",
                    ));
                }
                if let Some(bad) = values.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                    return Err(invalid(
                        file,
                        format!("{at}.values[{bad}]"),
                        "sweep values must be greater than zero",
                    ));
                }
                values
            }
            (None, Some(from), Some(to)) => {
                let scale = match self.scale {
                    Some(ScaleDoc::Linear) => Scale::Linear,
                    Some(ScaleDoc::Log) => Scale::Log,
                    None => default_scale(axis),
                };
                range(
                    axis,
                    base(from.0),
                    base(to.0),
                    self.steps.unwrap_or(DEFAULT_STEPS),
                    scale,
                )
                .map_err(|e| invalid(file, at.clone(), e.to_string()))?
            }
            _ => {
                return Err(invalid(
                    file,
                    at,
                    "give either {from, to, steps, scale} or {values: [...]}",
                ));
            }
        };
        Ok(SweepSpec { axis, values })
    }
}

/// Why a `--sweep` argument was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepArgError {
    /// The argument is not `AXIS=RANGE` or `AXIS=LIST`.
    #[error("expected AXIS=FROM..TO[:STEPS[:log|linear]] or AXIS=V1,V2,... (got {0:?})")]
    Shape(String),
    /// The axis is not one of the three.
    #[error("unknown sweep axis {0:?} (expected traffic, retrainingInterval or serviceLife)")]
    Axis(String),
    /// A value or range end does not parse.
    #[error("{0}")]
    Value(String),
}

/// Parse `traffic=1e3/d..1e9/d:13`, `retrainingInterval=1d,7d,30d`,
/// `service-life=1y..5y:5:linear`.
pub fn parse_sweep_arg(arg: &str) -> Result<SweepSpec, SweepArgError> {
    let (axis, spec) = arg
        .split_once('=')
        .ok_or_else(|| SweepArgError::Shape(arg.to_owned()))?;
    let axis = match axis.trim() {
        "traffic" => SweepAxis::Traffic,
        "retrainingInterval" | "retraining-interval" => SweepAxis::RetrainingInterval,
        "serviceLife" | "service-life" => SweepAxis::ServiceLife,
        other => return Err(SweepArgError::Axis(other.to_owned())),
    };
    let value = |s: &str| -> Result<f64, SweepArgError> {
        let v = match axis {
            SweepAxis::Traffic => parse::<RequestRate>(s).map(RequestRate::value),
            _ => parse::<Seconds>(s).map(Seconds::value),
        };
        v.map_err(|e| SweepArgError::Value(e.to_string()))
    };
    let values = if let Some((from, rest)) = spec.split_once("..") {
        let mut parts = rest.split(':');
        let to = parts.next().unwrap_or("");
        let steps = match parts.next() {
            Some(s) => s
                .trim()
                .parse::<usize>()
                .map_err(|_| SweepArgError::Value(format!("steps {s:?} is not a whole number")))?,
            None => DEFAULT_STEPS,
        };
        let scale = match parts.next().map(str::trim) {
            None => default_scale(axis),
            Some("log") => Scale::Log,
            Some("linear") => Scale::Linear,
            Some(other) => {
                return Err(SweepArgError::Value(format!(
                    "scale {other:?} (expected log or linear)"
                )));
            }
        };
        if parts.next().is_some() {
            return Err(SweepArgError::Shape(arg.to_owned()));
        }
        range(axis, value(from)?, value(to)?, steps, scale)
            .map_err(|e| SweepArgError::Value(e.to_string()))?
    } else {
        let values = spec
            .split(',')
            .map(|s| value(s.trim()))
            .collect::<Result<Vec<f64>, _>>()?;
        if values.iter().any(|v| *v <= 0.0) {
            return Err(SweepArgError::Value(
                "sweep values must be greater than zero".into(),
            ));
        }
        values
    };
    Ok(SweepSpec { axis, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sweep_arguments() {
        let s = parse_sweep_arg("traffic=1e3/d..1e5/d:3").unwrap();
        assert_eq!(s.axis, SweepAxis::Traffic);
        let per_day: Vec<f64> = s.values.iter().map(|v| (v * 86_400.0).round()).collect();
        assert_eq!(per_day, vec![1e3, 1e4, 1e5]);
        let s = parse_sweep_arg("retrainingInterval=1d,7d").unwrap();
        assert_eq!(s.values, vec![86_400.0, 7.0 * 86_400.0]);
        let s = parse_sweep_arg("service-life=1y..3y:3").unwrap();
        assert_eq!(s.values.len(), 3);
        assert!(matches!(
            parse_sweep_arg("speed=1..2"),
            Err(SweepArgError::Axis(_))
        ));
        assert!(matches!(
            parse_sweep_arg("traffic"),
            Err(SweepArgError::Shape(_))
        ));
        assert!(matches!(
            parse_sweep_arg("traffic=1e3/d..1e5/d:x"),
            Err(SweepArgError::Value(_))
        ));
        assert!(matches!(
            parse_sweep_arg("serviceLife=1 furlong"),
            Err(SweepArgError::Value(_))
        ));
    }

    const PLAN: &str = r#"
regions: {r: {pue: 1, intensity: 1000}}
products:
  base: {type: model, declared: 9kg}
jobs:
  - {name: pretrain, builds: base, energy: 1kWh, duration: 1h, region: r}
traffic: 50/d
strategies:
  small:
    serves: a
    products: {a: {type: model, lifetime: 100d, declared: 1kg}}
    jobs: [{name: q, serves: a, energy: 1Wh, duration: 1s, region: r}]
  big:
    serves: b
    products: {b: {type: model, lifetime: 100d, derivedFrom: [{product: base, weight: 0.5}]}}
    jobs:
      - {name: q, serves: b, energy: 0.1Wh, duration: 1s, region: r}
      - {name: rt, retrains: b, energy: 2kWh, duration: 1h, region: r}
    retraining: {interval: 10d, carbon: 500g}
"#;

    fn evaluate(text: &str) -> Result<PlanInput, ScenarioError> {
        PlanDoc::from_yaml("p.yaml", text)?
            .evaluate("p.yaml")
            .map(|(input, _)| input)
    }

    #[test]
    fn strategies_reduce_to_their_cost_structure() {
        let input = evaluate(PLAN).unwrap();
        assert_eq!(input.horizon.service_life, Seconds::from_days(100.0));
        assert_eq!(input.horizon.traffic, RequestRate::per_day(50.0));
        let big = &input.strategies[1];
        // 0.5 × (9 kg declared + 1 kWh × 1000 g/kWh).
        assert!((big.upfront.value() - 5000.0).abs() < 1e-9);
        assert!((big.per_request.asce().value() - 0.1).abs() < 1e-12);
        let rt = big.retraining.unwrap();
        assert!((rt.carbon_per_retraining.value() - 2500.0).abs() < 1e-9);
        assert_eq!(rt.interval, Seconds::from_days(10.0));
        assert!(input.strategies[0].retraining.is_none());
    }

    #[test]
    fn errors_are_located_in_plan_terms() {
        let at = |text: String| evaluate(&text).unwrap_err().path;
        // A shared job keeps its place; a strategy's job is found in its strategy.
        assert_eq!(
            at(PLAN.replace(
                "duration: 1h, region: r}\ntraffic",
                "duration: 1h, region: x}\ntraffic"
            )),
            "jobs[0].region"
        );
        assert_eq!(
            at(PLAN.replace(
                "energy: 2kWh, duration: 1h, region: r",
                "energy: 2kWh, duration: 1h, region: x"
            )),
            "strategies.big.jobs[1].region"
        );
        assert_eq!(
            at(PLAN.replace("weight: 0.5", "weight: 2")),
            "strategies.big.products.b.derivedFrom[0].weight"
        );
        assert_eq!(
            at(PLAN.replace("    retraining: {interval: 10d, carbon: 500g}\n", "")),
            "strategies.big.jobs[1].retrains"
        );
        assert_eq!(
            at(PLAN.replace("{name: q, serves: a,", "{name: q, serves: a, builds: base,")),
            "strategies.small.jobs[0].builds"
        );
        assert_eq!(
            at(PLAN.replace(
                "products: {a: {type: model",
                "products: {base: {type: model}, a: {type: model"
            )),
            "strategies.small.products.base"
        );
        assert_eq!(
            at(PLAN.replace("lifetime: 100d, derivedFrom", "lifetime: 200d, derivedFrom")),
            "serviceLife"
        );
    }
}

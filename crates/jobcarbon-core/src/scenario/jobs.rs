//! Resolving each job's references to indices, with every default applied.

use super::*;
use crate::domain::ProductType;
use crate::formulas::energy_from_power;
use crate::lineage::Dependency;
use crate::product::ProductDef;
use crate::units::{Joules, Seconds};
use std::collections::HashMap;

fn job_path(i: usize, field: &str) -> String {
    format!("jobs[{i}].{field}")
}

fn invalid(file: &str, path: String, message: impl Into<String>) -> ScenarioError {
    ScenarioError::new(file, path, Problem::Invalid(message.into()))
}

fn out_of_range(
    file: &str,
    path: String,
    what: &'static str,
    range: &'static str,
    value: f64,
) -> ScenarioError {
    ScenarioError::new(file, path, Problem::OutOfRange { what, range, value })
}

/// Product-to-product dependencies that jobs add, with the job field each came from.
#[derive(Default)]
pub(super) struct JobDependencies {
    pub(super) dependencies: Vec<Dependency>,
    /// `(job index, field)` for each dependency, to point errors at the job.
    pub(super) origins: Vec<(usize, &'static str)>,
}

impl JobDependencies {
    fn push(&mut self, job: usize, field: &'static str, dependency: Dependency) {
        self.dependencies.push(dependency);
        self.origins.push((job, field));
    }
}

/// What a job's references resolve against, built once per evaluation.
pub(super) struct JobResolver<'a> {
    doc: &'a ScenarioDoc,
    file: &'a str,
    regions: Vec<Region>,
    systems: Vec<System>,
    platforms: Vec<Platform>,
    defs: &'a [ProductDef],
    retraining: &'a [Option<Retraining>],
    region_index: HashMap<&'a str, usize>,
    system_index: HashMap<&'a str, usize>,
    platform_index: HashMap<&'a str, usize>,
    product_index: HashMap<&'a str, usize>,
}

impl<'a> JobResolver<'a> {
    pub(super) fn new(
        doc: &'a ScenarioDoc,
        file: &'a str,
        defs: &'a [ProductDef],
        retraining: &'a [Option<Retraining>],
    ) -> Result<Self, ScenarioError> {
        let regions = doc.resolve_regions(file)?;
        let systems = doc.resolve_systems(file)?;
        let product_index = index_of(&doc.products);
        let platforms = doc.resolve_platforms(file, defs, &product_index)?;
        Ok(Self {
            doc,
            file,
            regions,
            systems,
            platforms,
            defs,
            retraining,
            region_index: index_of(&doc.regions),
            system_index: index_of(&doc.systems),
            platform_index: index_of(&doc.platforms),
            product_index,
        })
    }

    /// Resolve every job, rejecting duplicate names; collects the dependencies jobs add.
    pub(super) fn resolve_jobs(&self) -> Result<(Vec<Job>, JobDependencies), ScenarioError> {
        let jobs = &self.doc.jobs;
        let mut resolved = Vec::with_capacity(jobs.len());
        let mut seen_names: HashMap<&str, usize> = HashMap::with_capacity(jobs.len());
        let mut dependencies = JobDependencies::default();
        for (i, spec) in jobs.iter().enumerate() {
            if let Some(first) = seen_names.insert(spec.name.as_str(), i) {
                return Err(invalid(
                    self.file,
                    job_path(i, "name"),
                    format!("job name {:?} is already used by jobs[{first}]", spec.name),
                ));
            }
            resolved.push(self.resolve_job(i, spec, &mut dependencies)?);
        }
        Ok((resolved, dependencies))
    }

    fn resolve_job(
        &self,
        i: usize,
        spec: &JobSpec,
        dependencies: &mut JobDependencies,
    ) -> Result<Job, ScenarioError> {
        let file = self.file;
        let duration = positive_time(spec.duration.0, "duration", file, || {
            job_path(i, "duration")
        })?;
        let energy = self.energy(i, spec, duration)?;
        let region = *self.region_index.get(spec.region.as_str()).ok_or_else(|| {
            unknown(
                file,
                job_path(i, "region"),
                "region",
                &spec.region,
                self.doc.regions.names(),
            )
        })?;
        let system = self.system(i, spec)?;
        let concurrent = spec.concurrent.unwrap_or(1.0);
        if !(concurrent.is_finite() && concurrent >= 1.0) {
            let path = job_path(i, "concurrent");
            return Err(out_of_range(file, path, "concurrent", "[1, ∞)", concurrent));
        }
        let platform = self.platform(i, spec, concurrent)?;
        let serves = self.serves(i, spec, concurrent)?;
        let destination = self.destination(i, spec, serves, dependencies)?;
        self.platform_dependency(i, spec, destination, platform, dependencies);
        Ok(Job {
            energy,
            duration,
            region: self.regions[region],
            system,
            platform,
            serves,
            destination,
        })
    }

    fn energy(&self, i: usize, spec: &JobSpec, duration: Seconds) -> Result<Joules, ScenarioError> {
        let file = self.file;
        match (spec.energy, spec.power) {
            (Some(energy), None) => {
                if spec.devices.is_some() {
                    return Err(invalid(
                        file,
                        job_path(i, "devices"),
                        "devices multiplies power; give power, not energy",
                    ));
                }
                Ok(energy.0)
            }
            (None, Some(power)) => {
                let devices = positive(spec.devices.unwrap_or(1.0), "devices", file, || {
                    job_path(i, "devices")
                })?;
                Ok(energy_from_power(power.0, devices, duration))
            }
            (Some(_), Some(_)) => Err(invalid(
                file,
                job_path(i, "power"),
                "give either energy or power, not both",
            )),
            (None, None) => Err(invalid(
                file,
                format!("jobs[{i}]"),
                "a job needs energy, or power (× devices) and its duration",
            )),
        }
    }

    fn system(&self, i: usize, spec: &JobSpec) -> Result<Option<(System, f64)>, ScenarioError> {
        let file = self.file;
        match &spec.system {
            Some(name) => {
                let s = *self.system_index.get(name.as_str()).ok_or_else(|| {
                    let known = self.doc.systems.names();
                    unknown(file, job_path(i, "system"), "system", name, known)
                })?;
                let share = spec.share.unwrap_or(1.0);
                if !(share.is_finite() && share > 0.0 && share <= 1.0) {
                    return Err(out_of_range(
                        file,
                        job_path(i, "share"),
                        "share",
                        "(0, 1]",
                        share,
                    ));
                }
                Ok(Some((self.systems[s], share)))
            }
            None if spec.share.is_some() => Err(invalid(
                file,
                job_path(i, "share"),
                "share is the reserved share of a system; name the system",
            )),
            None => Ok(None),
        }
    }

    fn platform(
        &self,
        i: usize,
        spec: &JobSpec,
        concurrent: f64,
    ) -> Result<Option<(Platform, f64)>, ScenarioError> {
        let Some(name) = &spec.platform else {
            return Ok(None);
        };
        let p = *self.platform_index.get(name.as_str()).ok_or_else(|| {
            unknown(
                self.file,
                job_path(i, "platform"),
                "platform",
                name,
                self.doc.platforms.names(),
            )
        })?;
        Ok(Some((self.platforms[p], concurrent)))
    }

    fn product(&self, i: usize, field: &str, name: &str) -> Result<usize, ScenarioError> {
        self.product_index.get(name).copied().ok_or_else(|| {
            unknown(
                self.file,
                job_path(i, field),
                "product",
                name,
                self.doc.products.names(),
            )
        })
    }

    /// The served model and the n of its model-EPC term.
    fn serves(
        &self,
        i: usize,
        spec: &JobSpec,
        concurrent: f64,
    ) -> Result<Option<(usize, f64)>, ScenarioError> {
        let file = self.file;
        let Some(name) = &spec.serves else {
            if spec.concurrent_serving.is_some() {
                return Err(invalid(
                    file,
                    job_path(i, "concurrentServing"),
                    "concurrentServing applies to inference jobs; add serves",
                ));
            }
            return Ok(None);
        };
        let m = self.product(i, "serves", name)?;
        let def = &self.defs[m];
        if def.kind != ProductType::Model {
            return Err(invalid(
                file,
                job_path(i, "serves"),
                format!("{name:?} is a {}; jobs serve models", def.kind),
            ));
        }
        if def.lifetime <= Seconds::ZERO {
            return Err(invalid(
                file,
                job_path(i, "serves"),
                format!(
                    "model {name:?} has no lifetime; a served model needs one (products.{name}.lifetime)"
                ),
            ));
        }
        let n = spec.concurrent_serving.unwrap_or(concurrent);
        if !(n.is_finite() && n >= 1.0) {
            let path = job_path(i, "concurrentServing");
            return Err(out_of_range(file, path, "concurrentServing", "[1, ∞)", n));
        }
        Ok(Some((m, n)))
    }

    fn destination(
        &self,
        i: usize,
        spec: &JobSpec,
        serves: Option<(usize, f64)>,
        dependencies: &mut JobDependencies,
    ) -> Result<Destination, ScenarioError> {
        let file = self.file;
        match (&spec.builds, &spec.retrains) {
            (Some(_), Some(_)) => Err(invalid(
                file,
                job_path(i, "retrains"),
                "a job either builds a product or retrains a model, not both",
            )),
            (Some(name), None) => {
                let p = self.product(i, "builds", name)?;
                if let Some((m, _)) = serves {
                    let model = &self.defs[m].name;
                    let dependency = Dependency {
                        dependent: name.clone(),
                        on: model.clone(),
                        reason: format!("job {} builds {name} serving {model}", spec.name),
                    };
                    dependencies.push(i, "serves", dependency);
                }
                Ok(Destination::Builds(p))
            }
            (None, Some(name)) => {
                let m = self.product(i, "retrains", name)?;
                if self.retraining[m].is_none() {
                    return Err(invalid(
                        file,
                        job_path(i, "retrains"),
                        format!(
                            "model {name:?} has no retraining: {{interval, jobsPerInterval}} to spread this job over"
                        ),
                    ));
                }
                if serves.is_some() {
                    return Err(invalid(
                        file,
                        job_path(i, "serves"),
                        "a re-training job cannot also serve a model",
                    ));
                }
                Ok(Destination::Retrains(m))
            }
            (None, None) => Ok(Destination::None),
        }
    }

    /// A job on a platform built by a product needs that product's EPC first.
    fn platform_dependency(
        &self,
        i: usize,
        spec: &JobSpec,
        destination: Destination,
        platform: Option<(Platform, f64)>,
        dependencies: &mut JobDependencies,
    ) {
        let target = match destination {
            Destination::Builds(p) | Destination::Retrains(p) => p,
            Destination::None => return,
        };
        let Some((
            Platform {
                product: Some(pp), ..
            },
            _,
        )) = platform
        else {
            return;
        };
        let on = &self.defs[pp].name;
        let dependency = Dependency {
            dependent: self.defs[target].name.clone(),
            on: on.clone(),
            reason: format!(
                "job {} runs on platform {} built by {on}",
                spec.name,
                spec.platform.as_deref().unwrap_or_default(),
            ),
        };
        dependencies.push(i, "platform", dependency);
    }
}

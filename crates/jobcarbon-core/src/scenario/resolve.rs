//! Resolving regions, systems, platforms and products before the jobs.

use super::*;
use crate::domain::ProductType;
use crate::formulas::mix_intensity;
use crate::lineage::{EdgeOrigin, LineageError};
use crate::product::{LineageEdge, ProductDef, RetrainingPolicy};
use crate::units::{Grams, GramsPerKwh, GramsPerSecond, Pue, Seconds};
use std::collections::HashMap;

impl ScenarioDoc {
    pub(super) fn resolve_regions(&self, file: &str) -> Result<Vec<Region>, ScenarioError> {
        let mut sources: HashMap<&str, GramsPerKwh> = DEFAULT_SOURCES
            .iter()
            .map(|&(n, v)| (n, GramsPerKwh(v)))
            .collect();
        for (name, value) in self.sources.iter() {
            sources.insert(name, value.0);
        }
        let source_names = || {
            let mut names: Vec<String> = sources.keys().map(|s| (*s).to_owned()).collect();
            names.sort();
            names
        };
        self.regions
            .iter()
            .map(|(name, spec)| {
                let at = |field: &str| format!("regions.{name}.{field}");
                let pue = spec.pue.unwrap_or(1.0);
                if !(pue.is_finite() && pue >= 1.0) {
                    return Err(ScenarioError::new(
                        file,
                        at("pue"),
                        Problem::OutOfRange {
                            what: "pue",
                            range: "[1, ∞)",
                            value: pue,
                        },
                    ));
                }
                let intensity = match &spec.intensity {
                    IntensitySpec::Value(v) => *v,
                    IntensitySpec::Mix(mix) => {
                        let mut parts = Vec::with_capacity(mix.0.len());
                        for (source, fraction) in mix.iter() {
                            let path = format!("regions.{name}.intensity.mix.{source}");
                            let ci = *sources.get(source).ok_or_else(|| {
                                unknown(file, path.clone(), "source", source, source_names())
                            })?;
                            if !(fraction.is_finite() && (0.0..=1.0).contains(fraction)) {
                                return Err(ScenarioError::new(
                                    file,
                                    path,
                                    Problem::OutOfRange {
                                        what: "a mix fraction",
                                        range: "[0, 1]",
                                        value: *fraction,
                                    },
                                ));
                            }
                            parts.push((*fraction, ci));
                        }
                        let sum: f64 = parts.iter().map(|(f, _)| f).sum();
                        if (sum - 1.0).abs() > 1e-6 {
                            return Err(ScenarioError::new(
                                file,
                                at("intensity.mix"),
                                Problem::Invalid(format!("mix fractions sum to {sum}, not 1")),
                            ));
                        }
                        mix_intensity(parts)
                    }
                };
                Ok(Region {
                    pue: Pue(pue),
                    intensity,
                })
            })
            .collect()
    }

    pub(super) fn resolve_systems(&self, file: &str) -> Result<Vec<System>, ScenarioError> {
        self.systems
            .iter()
            .map(|(name, spec)| {
                Ok(System {
                    embodied: spec.embodied.0,
                    lifetime: positive_time(spec.lifetime.0, "lifetime", file, || {
                        format!("systems.{name}.lifetime")
                    })?,
                })
            })
            .collect()
    }

    pub(super) fn resolve_platforms(
        &self,
        file: &str,
        defs: &[ProductDef],
        product_index: &HashMap<&str, usize>,
    ) -> Result<Vec<Platform>, ScenarioError> {
        self.platforms
            .iter()
            .map(|(name, spec)| {
                let epc = spec.epc.map(|q| q.0).unwrap_or(Grams::ZERO);
                let product = self.platform_product(file, name, spec, defs, product_index)?;
                let product_lifetime = product
                    .map(|p| defs[p].lifetime)
                    .filter(|l| *l > Seconds::ZERO);
                let lifetime = match (spec.lifetime, product_lifetime) {
                    (Some(l), _) => positive_time(l.0, "lifetime", file, || {
                        format!("platforms.{name}.lifetime")
                    })?,
                    (None, Some(l)) => l,
                    (None, None) if product.is_some() => {
                        return Err(ScenarioError::new(
                            file,
                            format!("platforms.{name}"),
                            Problem::Invalid(format!(
                                "a platform built by a product needs a lifetime to amortise its EPC over (platforms.{name}.lifetime or products.{}.lifetime)",
                                spec.product.as_deref().unwrap_or_default()
                            )),
                        ));
                    }
                    (None, None) if epc > Grams::ZERO => {
                        return Err(ScenarioError::new(
                            file,
                            format!("platforms.{name}"),
                            Problem::Invalid(
                                "a platform with an epc needs a lifetime to amortise it over"
                                    .into(),
                            ),
                        ));
                    }
                    (None, None) => Seconds::ZERO,
                };
                Ok(Platform {
                    overhead: spec.overhead.map(|q| q.0).unwrap_or(GramsPerSecond::ZERO),
                    epc,
                    lifetime,
                    product,
                })
            })
            .collect()
    }

    /// `platforms.NAME.product`: a known `type: platform` product, and no `epc` beside it.
    fn platform_product(
        &self,
        file: &str,
        name: &str,
        spec: &PlatformSpec,
        defs: &[ProductDef],
        product_index: &HashMap<&str, usize>,
    ) -> Result<Option<usize>, ScenarioError> {
        let Some(product) = &spec.product else {
            return Ok(None);
        };
        let at = || format!("platforms.{name}.product");
        let p = *product_index
            .get(product.as_str())
            .ok_or_else(|| unknown(file, at(), "product", product, self.products.names()))?;
        if defs[p].kind != ProductType::Platform {
            return Err(ScenarioError::new(
                file,
                at(),
                Problem::Invalid(format!(
                    "{product:?} is a {}; a platform names the `type: platform` product that built it",
                    defs[p].kind
                )),
            ));
        }
        if spec.epc.is_some() {
            return Err(ScenarioError::new(
                file,
                format!("platforms.{name}.epc"),
                Problem::Invalid(format!(
                    "give either epc or product: the EPC of product {product:?} is this platform's"
                )),
            ));
        }
        Ok(Some(p))
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn resolve_products(
        &self,
        file: &str,
    ) -> Result<(Vec<ProductDef>, Vec<Option<Retraining>>), ScenarioError> {
        let mut defs = Vec::with_capacity(self.products.0.len());
        let mut retraining = Vec::with_capacity(self.products.0.len());
        for (name, spec) in self.products.iter() {
            let at = |field: &str| format!("products.{name}.{field}");
            let lifetime = match spec.lifetime {
                Some(l) => positive_time(l.0, "lifetime", file, || at("lifetime"))?,
                None => Seconds::ZERO,
            };
            let edges = |list: &[EdgeSpec]| -> Vec<LineageEdge> {
                list.iter()
                    .map(|e| LineageEdge {
                        product: e.product.clone(),
                        weight: e.weight,
                    })
                    .collect()
            };
            let policy = match &spec.retraining {
                Some(r) => {
                    let interval = positive_time(r.interval.0, "interval", file, || {
                        at("retraining.interval")
                    })?;
                    let jobs_per_interval =
                        positive(r.jobs_per_interval, "jobsPerInterval", file, || {
                            at("retraining.jobsPerInterval")
                        })?;
                    if jobs_per_interval < 1.0 {
                        return Err(ScenarioError::new(
                            file,
                            at("retraining.jobsPerInterval"),
                            Problem::Invalid(format!(
                                "jobsPerInterval {jobs_per_interval} is below 1: one inference job would carry more than the interval's whole re-training carbon"
                            )),
                        ));
                    }
                    let carbon = r.carbon.map(|q| q.0).unwrap_or(Grams::ZERO);
                    retraining.push(Some(Retraining {
                        carbon,
                        jobs_per_interval,
                    }));
                    Some(RetrainingPolicy::PerInterval {
                        carbon,
                        interval,
                        jobs_per_interval,
                    })
                }
                None => {
                    retraining.push(None);
                    None
                }
            };
            defs.push(ProductDef {
                name: name.to_owned(),
                kind: spec.kind,
                lifetime,
                derived_from: edges(&spec.derived_from),
                datasets: edges(&spec.datasets),
                declared: spec
                    .declared
                    .as_ref()
                    .map(|d| d.carbon)
                    .unwrap_or(Grams::ZERO),
                declared_source: spec.declared.as_ref().and_then(|d| d.source.clone()),
                retraining: policy,
            });
        }
        Ok((defs, retraining))
    }

    pub(super) fn lineage_error(
        &self,
        file: &str,
        error: LineageError,
        dependency_job: &[(usize, &'static str)],
    ) -> ScenarioError {
        let path = match &error {
            LineageError::UnknownReference {
                product,
                kind,
                index,
                ..
            } => {
                format!("products.{product}.{kind}[{index}].product")
            }
            LineageError::WeightOutOfRange {
                product,
                kind,
                index,
                ..
            } => {
                format!("products.{product}.{kind}[{index}].weight")
            }
            LineageError::DuplicateEdge {
                product,
                kind,
                index,
                ..
            } => {
                format!("products.{product}.{kind}[{index}].product")
            }
            LineageError::NotADataset { product, index, .. } => {
                format!("products.{product}.datasets[{index}].product")
            }
            LineageError::DuplicateProduct { product } => format!("products.{product}"),
            LineageError::UnknownDependency { index, .. } => {
                let (job, field) = dependency_job.get(*index).copied().unwrap_or((0, "serves"));
                format!("jobs[{job}].{field}")
            }
            // A job that closes a cycle is the likelier mistake: point at it first.
            LineageError::Cycle { edges } => match edges
                .iter()
                .find(|e| matches!(e.origin, EdgeOrigin::Dependency { .. }))
                .or(edges.first())
                .map(|e| (&e.from, &e.origin))
            {
                Some((from, EdgeOrigin::Lineage { kind, index })) => {
                    format!("products.{from}.{kind}[{index}].product")
                }
                Some((_, EdgeOrigin::Dependency { index, .. })) => {
                    let (job, field) = dependency_job.get(*index).copied().unwrap_or((0, "serves"));
                    format!("jobs[{job}].{field}")
                }
                None => "products".to_owned(),
            },
        };
        ScenarioError::new(file, path, Problem::Lineage(error))
    }
}

/// A region as evaluation uses it: PUE and intensity with any mix resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedRegion {
    pub pue: Pue,
    pub intensity: GramsPerKwh,
}

impl ScenarioDoc {
    /// Every region's PUE and intensity, in document order (data sheets state them).
    pub fn resolved_regions(
        &self,
        file: &str,
    ) -> Result<Vec<(String, ResolvedRegion)>, ScenarioError> {
        let resolved = self.resolve_regions(file)?;
        Ok(self
            .regions
            .names()
            .into_iter()
            .zip(resolved)
            .map(|(name, r)| {
                (
                    name,
                    ResolvedRegion {
                        pue: r.pue,
                        intensity: r.intensity,
                    },
                )
            })
            .collect())
    }
}

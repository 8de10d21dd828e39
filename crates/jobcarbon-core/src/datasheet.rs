//! Carbon data sheets for models and datasets ("models and data sets should be published with
//! a data sheet that reports based on the metrics", Eilam et al. §3).
//!
//! A sheet is built from an evaluated scenario — the same [`Report`] `jobcarbon calc` prints —
//! so its numbers are calc's numbers. Rendering (Markdown, JSON) lives in the binary.

use crate::lineage::EdgeKind;
use crate::plan::{Horizon, RequestRate};
use crate::plan_file::serving_cost;
use crate::scenario::{JobSpec, ProductReport, ProductSpec, Report, ScenarioDoc, ScenarioError};
use crate::terms::Terms;
use crate::units::Seconds;
use crate::{ProductType, Term};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A product's carbon data sheet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataSheet {
    /// The product the sheet describes.
    pub product: String,
    /// Model, dataset or platform.
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Where the numbers come from (the file, and the strategy for plan files).
    pub source: String,
    /// Its embodied product carbon, broken down.
    pub epc: EpcSheet,
    /// Its ancestors, with their EPCs and edge weights.
    pub lineage: LineageNode,
    /// Amortisation period LT, when the product has one.
    pub lifetime_s: Option<f64>,
    /// How much of the EPC the source's inference has carried so far (products with a lifetime).
    pub amortisation: Option<Amortisation>,
    /// The jobs of the source that serve this model, as `calc` prices them.
    pub inference: Vec<ServingJob>,
    /// Per-inference ASCᵉ at a stated traffic (plan arithmetic over the same evaluation).
    pub at_traffic: Vec<AtTraffic>,
    /// The regions, systems and platforms behind the numbers.
    pub assumptions: Assumptions,
    /// Hugging Face model-card metadata (`co2_eq_emissions`).
    pub co2_eq_emissions: Co2EqEmissions,
}

/// EPC = measured + inherited + declared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpcSheet {
    /// Whole EPC in grams CO2e.
    pub total_g: f64,
    /// Grams from the product's own build jobs in the source.
    pub measured_g: f64,
    /// Grams inherited from parents and datasets.
    pub inherited_g: f64,
    /// Grams declared as spent outside the source.
    pub declared_g: f64,
    /// Where the declared figure comes from, if stated.
    pub declared_source: Option<String>,
    /// The build jobs behind `measured_g`.
    pub built_by: Vec<JobLine>,
    /// `inherited_g`, edge by edge.
    pub inherited_from: Vec<InheritedLine>,
}

/// One build job of the product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobLine {
    /// The job's name in the source.
    pub job: String,
    /// Its IT energy in joules.
    pub energy_j: f64,
    /// Its ASCᵉ in grams CO2e (all terms).
    pub asce_g: f64,
    /// The part of `asce_g` that is another model's EPC (a distillation serving its teacher):
    /// attributed from a parent, so not this model's own creation.
    pub model_epc_g: f64,
}

/// One lineage edge's contribution to the EPC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InheritedLine {
    /// The parent product.
    pub product: String,
    /// `derivedFrom` (a parent model) or `datasets`.
    pub via: &'static str,
    /// Fraction of the parent's EPC inherited, in [0, 1].
    pub weight: f64,
    /// The parent's whole EPC.
    pub product_epc_g: f64,
    /// weight × the parent's EPC.
    pub inherited_g: f64,
}

/// The lineage above a product: what it was derived from, recursively.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageNode {
    /// The product at this node.
    pub product: String,
    /// Model, dataset or platform.
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Its whole EPC in grams CO2e.
    pub epc_g: f64,
    /// How the child reaches this node (absent at the root).
    pub via: Option<&'static str>,
    /// The edge's weight (absent at the root).
    pub weight: Option<f64>,
    /// Its own parents, recursively.
    pub parents: Vec<LineageNode>,
}

/// How far the EPC has been carried by inference in the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amortisation {
    /// Amortisation period in seconds.
    pub lifetime_s: f64,
    /// EPC spread evenly over the lifetime.
    pub epc_per_day_g: f64,
    /// Σ `model_epc` of the serving jobs in the source.
    pub amortised_g: f64,
    /// EPC not yet carried by inference (`total − amortised`, never below 0).
    pub remaining_g: f64,
    /// `amortised_g / total`, in [0, 1].
    pub amortised_fraction: f64,
}

/// A job of the source that serves the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServingJob {
    /// The job's name in the source.
    pub job: String,
    /// Its ASCᵉ in grams CO2e.
    pub asce_g: f64,
    /// Its carbon by term.
    pub terms: Terms,
}

/// Per-inference carbon of one serving job at a stated traffic and service life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtTraffic {
    /// The serving job's name in the source.
    pub job: String,
    /// Inference requests per day assumed.
    pub traffic_per_day: f64,
    /// Service life the EPC is spread over, in seconds.
    pub service_life_s: f64,
    /// ASCᵉ per inference request, in grams CO2e.
    pub per_inference_g: f64,
    /// That figure by term.
    pub terms: Terms,
}

/// A region a job of the sheet ran in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionLine {
    /// Region name in the source.
    pub name: String,
    /// Its power usage effectiveness.
    pub pue: f64,
    /// Its grid intensity in gCO2e/kWh.
    pub intensity_g_per_kwh: f64,
    /// `{source: fraction}` when the intensity is a mix.
    pub mix: Option<BTreeMap<String, f64>>,
}

/// A system (machine type) a job of the sheet ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemLine {
    /// System name in the source.
    pub name: String,
    /// Its embodied carbon in grams CO2e.
    pub embodied_g: f64,
    /// The lifetime its embodied carbon is spread over, in seconds.
    pub lifetime_s: f64,
}

/// A platform a job of the sheet ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlatformLine {
    /// Platform name in the source.
    pub name: String,
    /// Its operational overhead in gCO2e/s, shared by its users.
    pub overhead_g_per_s: f64,
    /// The platform's EPC: its `epc`, or the EPC of the product that built it.
    pub epc_g: f64,
    /// The lifetime its EPC is spread over, in seconds, if it has one.
    pub lifetime_s: Option<f64>,
    /// The `type: platform` product that built the platform (`platforms.NAME.product`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
}

/// The regions, systems and platforms used by the jobs behind the sheet's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assumptions {
    /// Regions of the jobs behind the numbers.
    pub regions: Vec<RegionLine>,
    /// Systems they ran on.
    pub systems: Vec<SystemLine>,
    /// Platforms they ran on.
    pub platforms: Vec<PlatformLine>,
}

/// The fields of Hugging Face's `co2_eq_emissions` model-card metadata that fit: `emissions`
/// in grams is this product's own creation (measured + declared); the inherited share is in
/// its parents' cards and in [`EpcSheet`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Co2EqEmissions {
    /// Grams CO2e of the product's own creation.
    pub emissions: f64,
    /// Where the figure comes from (the tool and source file).
    pub source: String,
    /// `pre-training` or `fine-tuning`, from the product's lineage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training_type: Option<String>,
    /// Region(s) of its build jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geographical_location: Option<String>,
    /// Systems of its build jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_used: Option<String>,
}

/// The inputs of one sheet.
#[derive(Debug, Clone, Copy)]
pub struct SheetSource<'a> {
    /// File (and strategy) for the `source` line.
    pub source: &'a str,
    /// File name for error messages.
    pub file: &'a str,
    /// The evaluated document.
    pub scenario: &'a ScenarioDoc,
    /// Its evaluation, as `calc` prints it.
    pub report: &'a Report,
    /// Traffic to state per-inference carbon at.
    pub traffic: Option<RequestRate>,
    /// Service life for that figure (default: the product's lifetime).
    pub service_life: Option<Seconds>,
}

/// Why a sheet cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataSheetError {
    /// The product is not defined in the source.
    #[error("{file}: no product {product:?} (defined: {})", .known.join(", "))]
    UnknownProduct {
        /// The source file.
        file: String,
        /// The product asked for.
        product: String,
        /// The products the file defines.
        known: Vec<String>,
    },
    /// The source does not parse or evaluate.
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    /// A per-inference figure was asked for but no service life is known.
    #[error("{file}: {reason}")]
    NoServiceLife {
        /// The source file.
        file: String,
        /// What is missing.
        reason: String,
    },
}

fn via(kind: EdgeKind) -> &'static str {
    kind.field()
}

impl SheetSource<'_> {
    fn epc_g(&self, product: &str) -> f64 {
        self.report
            .products
            .iter()
            .find(|p| p.name == product)
            .map(|p| p.epc.total().value())
            .unwrap_or(0.0)
    }

    fn lineage(
        &self,
        product: &str,
        via: Option<&'static str>,
        weight: Option<f64>,
    ) -> LineageNode {
        let spec = self.scenario.products.get(product);
        let kind = spec.map(|s| s.kind).unwrap_or(ProductType::Model);
        let parents = spec
            .map(|s| {
                let parents = s.derived_from.iter().map(|e| (e, EdgeKind::DerivedFrom));
                let datasets = s.datasets.iter().map(|e| (e, EdgeKind::Dataset));
                parents
                    .chain(datasets)
                    .map(|(e, kind)| self.lineage(&e.product, Some(kind.field()), Some(e.weight)))
                    .collect()
            })
            .unwrap_or_default();
        LineageNode {
            product: product.to_owned(),
            kind,
            epc_g: self.epc_g(product),
            via,
            weight,
            parents,
        }
    }

    /// The product and everything above it in the lineage.
    fn ancestry(&self, product: &str, out: &mut BTreeSet<String>) {
        if !out.insert(product.to_owned()) {
            return;
        }
        if let Some(spec) = self.scenario.products.get(product) {
            for e in spec.derived_from.iter().chain(&spec.datasets) {
                self.ancestry(&e.product, out);
            }
        }
    }
}

/// Build `product`'s data sheet from an evaluated scenario.
pub fn build(product: &str, src: SheetSource<'_>) -> Result<DataSheet, DataSheetError> {
    let Some(report) = src.report.products.iter().find(|p| p.name == product) else {
        return Err(DataSheetError::UnknownProduct {
            file: src.file.to_owned(),
            product: product.to_owned(),
            known: src.report.products.iter().map(|p| p.name.clone()).collect(),
        });
    };
    let spec = src.scenario.products.get(product);
    let epc = epc_sheet(product, &src, report, spec);
    let serving: Vec<usize> = src
        .scenario
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.serves.as_deref() == Some(product))
        .map(|(i, _)| i)
        .collect();
    let inference: Vec<ServingJob> = serving
        .iter()
        .filter_map(|&i| {
            let r = src.report.jobs.get(i)?;
            Some(ServingJob {
                job: r.name.clone(),
                asce_g: r.terms.asce().value(),
                terms: r.terms,
            })
        })
        .collect();
    let lifetime = spec.and_then(|s| s.lifetime).map(|q| q.0);
    let amortisation = lifetime.map(|l| amortisation(l, epc.total_g, &inference));
    let at_traffic = at_traffic(product, &src, &serving, lifetime)?;
    let mut lineage_products = BTreeSet::new();
    src.ancestry(product, &mut lineage_products);
    let involved: Vec<&JobSpec> = src
        .scenario
        .jobs
        .iter()
        .filter(|j| {
            j.builds
                .as_ref()
                .is_some_and(|b| lineage_products.contains(b))
                || j.serves.as_deref() == Some(product)
                || j.retrains.as_deref() == Some(product)
        })
        .collect();
    let assumptions = assumptions(&src, &involved)?;
    let own_jobs: Vec<&JobSpec> = src
        .scenario
        .jobs
        .iter()
        .filter(|j| j.builds.as_deref() == Some(product))
        .collect();
    let co2_eq_emissions = co2_eq_emissions(&src, report.kind, &epc, spec, &own_jobs);
    Ok(DataSheet {
        product: product.to_owned(),
        kind: report.kind,
        source: src.source.to_owned(),
        lineage: src.lineage(product, None, None),
        epc,
        lifetime_s: lifetime.map(Seconds::value),
        amortisation,
        inference,
        at_traffic,
        assumptions,
        co2_eq_emissions,
    })
}

/// The product's EPC by part, the jobs that built it and what it inherits from whom.
fn epc_sheet(
    product: &str,
    src: &SheetSource<'_>,
    report: &ProductReport,
    spec: Option<&ProductSpec>,
) -> EpcSheet {
    let built_by: Vec<JobLine> = src
        .scenario
        .jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.builds.as_deref() == Some(product))
        .filter_map(|(i, j)| {
            let r = src.report.jobs.get(i)?;
            Some(JobLine {
                job: j.name.clone(),
                energy_j: r.energy.value(),
                asce_g: r.terms.asce().value(),
                model_epc_g: r.terms[crate::domain::Term::ModelEpc].value(),
            })
        })
        .collect();
    EpcSheet {
        total_g: report.epc.total().value(),
        measured_g: report.epc.measured.value(),
        inherited_g: report.epc.inherited.value(),
        declared_g: report.epc.declared.value(),
        declared_source: spec
            .and_then(|s| s.declared.as_ref())
            .and_then(|d| d.source.clone()),
        built_by,
        inherited_from: report
            .epc
            .inherited_from
            .iter()
            .map(|share| InheritedLine {
                product: share.product.clone(),
                via: via(share.kind),
                weight: share.weight,
                product_epc_g: src.epc_g(&share.product),
                inherited_g: share.grams.value(),
            })
            .collect(),
    }
}

/// How much of an EPC of `total` grams over `lifetime` the serving jobs have amortised.
fn amortisation(lifetime: Seconds, total: f64, inference: &[ServingJob]) -> Amortisation {
    let amortised: f64 = inference
        .iter()
        .map(|j| j.terms[Term::ModelEpc].value())
        .sum();
    Amortisation {
        lifetime_s: lifetime.value(),
        epc_per_day_g: total / (lifetime.value() / 86_400.0),
        amortised_g: amortised,
        remaining_g: (total - amortised).max(0.0),
        amortised_fraction: if total > 0.0 { amortised / total } else { 0.0 },
    }
}

/// Each serving job's per-inference figure at the stated traffic (none without traffic or
/// serving jobs: only serving jobs have a per-inference figure to state).
fn at_traffic(
    product: &str,
    src: &SheetSource<'_>,
    serving: &[usize],
    lifetime: Option<Seconds>,
) -> Result<Vec<AtTraffic>, DataSheetError> {
    let mut at_traffic = Vec::new();
    let Some(traffic) = src.traffic.filter(|_| !serving.is_empty()) else {
        return Ok(at_traffic);
    };
    let Some(service_life) = src.service_life.or(lifetime) else {
        return Err(DataSheetError::NoServiceLife {
            file: src.file.to_owned(),
            reason: format!(
                "{product:?} has no lifetime to amortise its EPC over at the stated traffic; give --service-life"
            ),
        });
    };
    let horizon = Horizon {
        traffic,
        service_life,
        retraining_interval: None,
    };
    horizon
        .validate()
        .map_err(|e| DataSheetError::NoServiceLife {
            file: src.file.to_owned(),
            reason: e.to_string(),
        })?;
    for &i in serving {
        let cost = serving_cost(product, src.scenario, src.report, product, i);
        let outlook = cost.outlook(&horizon);
        at_traffic.push(AtTraffic {
            job: src.scenario.jobs[i].name.clone(),
            traffic_per_day: traffic.requests_per_day(),
            service_life_s: service_life.value(),
            per_inference_g: outlook.per_inference_g,
            terms: outlook.per_inference_terms,
        });
    }
    Ok(at_traffic)
}

fn assumptions(src: &SheetSource<'_>, jobs: &[&JobSpec]) -> Result<Assumptions, DataSheetError> {
    let used = |pick: &dyn Fn(&JobSpec) -> Option<String>| -> BTreeSet<String> {
        jobs.iter().filter_map(|j| pick(j)).collect()
    };
    let regions_used = used(&|j| Some(j.region.clone()));
    let systems_used = used(&|j| j.system.clone());
    let platforms_used = used(&|j| j.platform.clone());
    let regions = src
        .scenario
        .resolved_regions(src.file)?
        .into_iter()
        .filter(|(name, _)| regions_used.contains(name))
        .map(|(name, r)| {
            let mix = src
                .scenario
                .regions
                .get(&name)
                .and_then(|spec| match &spec.intensity {
                    crate::scenario::IntensitySpec::Mix(mix) => {
                        Some(mix.iter().map(|(s, f)| (s.to_owned(), *f)).collect())
                    }
                    crate::scenario::IntensitySpec::Value(_) => None,
                });
            RegionLine {
                name,
                pue: r.pue.value(),
                intensity_g_per_kwh: r.intensity.value(),
                mix,
            }
        })
        .collect();
    let systems = src
        .scenario
        .systems
        .iter()
        .filter(|(name, _)| systems_used.contains(*name))
        .map(|(name, s)| SystemLine {
            name: name.to_owned(),
            embodied_g: s.embodied.0.value(),
            lifetime_s: s.lifetime.0.value(),
        })
        .collect();
    let platforms = src
        .scenario
        .platforms
        .iter()
        .filter(|(name, _)| platforms_used.contains(*name))
        .map(|(name, p)| {
            let linked = p.product.as_deref();
            let product_epc = linked.and_then(|l| src.report.products.iter().find(|r| r.name == l));
            let product_lifetime = linked
                .and_then(|l| src.scenario.products.get(l))
                .and_then(|spec| spec.lifetime);
            PlatformLine {
                name: name.to_owned(),
                overhead_g_per_s: p.overhead.map(|q| q.0.value()).unwrap_or(0.0),
                epc_g: match product_epc {
                    Some(r) => r.epc.total().value(),
                    None => p.epc.map(|q| q.0.value()).unwrap_or(0.0),
                },
                lifetime_s: p.lifetime.or(product_lifetime).map(|q| q.0.value()),
                product: p.product.clone(),
            }
        })
        .collect();
    Ok(Assumptions {
        regions,
        systems,
        platforms,
    })
}

fn co2_eq_emissions(
    src: &SheetSource<'_>,
    kind: ProductType,
    epc: &EpcSheet,
    spec: Option<&crate::scenario::ProductSpec>,
    own_jobs: &[&JobSpec],
) -> Co2EqEmissions {
    let mut sources = Vec::new();
    if !epc.built_by.is_empty() {
        let names: Vec<&str> = epc.built_by.iter().map(|j| j.job.as_str()).collect();
        sources.push(format!(
            "jobcarbon: ASCe of build jobs {} in {}",
            names.join(", "),
            src.source
        ));
    }
    if epc.declared_g > 0.0 || epc.declared_source.is_some() {
        sources.push(format!(
            "declared: {}",
            epc.declared_source.as_deref().unwrap_or("no source given")
        ));
    }
    if sources.is_empty() {
        sources.push(format!(
            "jobcarbon: {} (no build jobs, nothing declared)",
            src.source
        ));
    }
    // Hugging Face knows two training types; a model derived from another is fine-tuned
    // (distillation included), one without parents is pre-trained.
    let training_type = match kind {
        ProductType::Model => Some(
            if spec.is_some_and(|s| !s.derived_from.is_empty()) {
                "fine-tuning"
            } else {
                "pre-training"
            }
            .to_owned(),
        ),
        _ => None,
    };
    let regions: BTreeSet<&str> = own_jobs.iter().map(|j| j.region.as_str()).collect();
    let hardware: Vec<String> = own_jobs
        .iter()
        .map(|j| {
            let devices = j.devices.unwrap_or(1.0);
            let noun = if devices == 1.0 { "device" } else { "devices" };
            match &j.system {
                Some(system) => format!("{devices} {noun} on {system}"),
                None => format!("{devices} {noun}"),
            }
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Own creation: what its build jobs emitted plus what was declared; a build job's slice of
    // its teacher's EPC is the teacher's creation and belongs on the teacher's card.
    let attributed: f64 = epc.built_by.iter().map(|j| j.model_epc_g).sum();
    Co2EqEmissions {
        emissions: (epc.measured_g - attributed).max(0.0) + epc.declared_g,
        source: sources.join("; "),
        training_type,
        geographical_location: (!regions.is_empty())
            .then(|| regions.into_iter().collect::<Vec<_>>().join(", ")),
        hardware_used: (!hardware.is_empty()).then(|| hardware.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
regions:
  train: {pue: 1.5, intensity: {mix: {coal: 0.5, wind: 0.5}}}
  serve: {pue: 1, intensity: 100}
  unused: {pue: 1, intensity: 999}
systems:
  gpu: {embodied: 1t, lifetime: 1y}
  spare: {embodied: 5t, lifetime: 1y}
products:
  data: {type: dataset, declared: {carbon: 2kg, source: crawl log}}
  parent: {type: model, lifetime: 1y, datasets: [{product: data, weight: 1}]}
  child: {type: model, lifetime: 100d, derivedFrom: [{product: parent, weight: 0.5}]}
jobs:
  - {name: pre, builds: parent, energy: 10kWh, duration: 1h, region: train, system: gpu}
  - {name: tune, builds: child, power: 100W, devices: 4, duration: 10h, region: train}
  - {name: q, serves: child, energy: 1Wh, duration: 1s, region: serve}
"#;

    fn sheet(product: &str, traffic: Option<RequestRate>) -> DataSheet {
        let doc = ScenarioDoc::from_yaml("s.yaml", SCENARIO).unwrap();
        let report = doc.evaluate("s.yaml").unwrap();
        build(
            product,
            SheetSource {
                source: "s.yaml",
                file: "s.yaml",
                scenario: &doc,
                report: &report,
                traffic,
                service_life: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_platform_built_by_a_product_shows_that_product_s_epc() {
        let text = "
regions: {r: {pue: 1, intensity: 100}}
platforms: {iks: {product: iks-build}}
products:
  iks-build: {type: platform, declared: 1t, lifetime: 2y}
  m: {type: model, lifetime: 1y}
jobs:
  - {name: b, builds: iks-build, energy: 10kWh, duration: 1h, region: r}
  - {name: t, builds: m, energy: 1kWh, duration: 1h, region: r, platform: iks}
";
        let doc = ScenarioDoc::from_yaml("s.yaml", text).unwrap();
        let report = doc.evaluate("s.yaml").unwrap();
        let source = SheetSource {
            source: "s.yaml",
            file: "s.yaml",
            scenario: &doc,
            report: &report,
            traffic: None,
            service_life: None,
        };
        let s = build("m", source).unwrap();
        let line = &s.assumptions.platforms[0];
        // 1 t declared + 10 kWh × 100 g/kWh measured.
        assert_eq!(line.epc_g, 1_001_000.0);
        assert_eq!(line.lifetime_s, Some(2.0 * 365.0 * 86_400.0));
        assert_eq!(line.product.as_deref(), Some("iks-build"));
    }

    #[test]
    fn epc_lineage_and_hugging_face_fields() {
        let s = sheet("child", None);
        // tune: 4 kWh × 1.5 × (0.5·820 + 0.5·11) = 6 kWh × 415.5 g/kWh.
        let tune = 6.0 * 415.5;
        assert!((s.epc.measured_g - tune).abs() < 1e-9);
        let parent = s.lineage.parents[0].epc_g;
        assert!((s.epc.inherited_g - 0.5 * parent).abs() < 1e-9);
        assert_eq!(s.epc.inherited_from[0].via, "derivedFrom");
        assert_eq!(s.lineage.parents[0].parents[0].product, "data");
        assert_eq!(s.lineage.parents[0].parents[0].epc_g, 2000.0);
        assert_eq!(s.co2_eq_emissions.emissions, s.epc.measured_g);
        assert_eq!(
            s.co2_eq_emissions.training_type.as_deref(),
            Some("fine-tuning")
        );
        assert_eq!(
            s.co2_eq_emissions.geographical_location.as_deref(),
            Some("train")
        );
        assert_eq!(
            s.co2_eq_emissions.hardware_used.as_deref(),
            Some("4 devices")
        );
        // Assumptions name only what the lineage and serving jobs used.
        let regions: Vec<&str> = s
            .assumptions
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(regions, ["train", "serve"]);
        let mix = s.assumptions.regions[0].mix.clone().unwrap();
        assert_eq!(mix.get("coal"), Some(&0.5));
        let systems: Vec<&str> = s
            .assumptions
            .systems
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(systems, ["gpu"]);
    }

    #[test]
    fn amortisation_and_stated_traffic() {
        let s = sheet("child", Some(RequestRate::per_day(1000.0)));
        let a = s.amortisation.clone().unwrap();
        assert!((a.epc_per_day_g - s.epc.total_g / 100.0).abs() < 1e-9);
        assert!((a.amortised_g - s.inference[0].terms[Term::ModelEpc].value()).abs() < 1e-12);
        // 1000 requests a day over the 100-day lifetime: EPC / 100,000 each, plus 0.1 g.
        let at = &s.at_traffic[0];
        let want = s.epc.total_g / 100_000.0 + 0.1;
        assert!(
            (at.per_inference_g - want).abs() < 1e-9 * want,
            "{}",
            at.per_inference_g
        );
    }

    #[test]
    fn datasets_and_declared_products() {
        let s = sheet("data", None);
        assert_eq!(s.co2_eq_emissions.training_type, None);
        assert_eq!(s.co2_eq_emissions.emissions, 2000.0);
        assert!(s.co2_eq_emissions.source.contains("crawl log"));
        assert!(s.amortisation.is_none());
        assert!(s.assumptions.regions.is_empty());
    }

    #[test]
    fn unknown_product_names_the_known_ones() {
        let doc = ScenarioDoc::from_yaml("s.yaml", SCENARIO).unwrap();
        let report = doc.evaluate("s.yaml").unwrap();
        let src = SheetSource {
            source: "s.yaml",
            file: "s.yaml",
            scenario: &doc,
            report: &report,
            traffic: None,
            service_life: None,
        };
        let err = build("nope", src).unwrap_err().to_string();
        assert!(
            err.contains("s.yaml") && err.contains("nope") && err.contains("child"),
            "{err}"
        );
        // A dataset serves nothing: a stated traffic adds no figure.
        let data = build(
            "data",
            SheetSource {
                traffic: Some(RequestRate(1.0)),
                ..src
            },
        )
        .unwrap();
        assert!(data.at_traffic.is_empty());
    }

    /// A distillation that serves its teacher while it trains: its build job's model-EPC slice
    /// is the teacher's creation, not the student's own (Hugging Face's `co2_eq_emissions`).
    #[test]
    fn own_creation_excludes_the_teachers_slice() {
        let yaml = "regions: {r: {pue: 1, intensity: 400}}\nproducts:\n  teacher: {type: model, lifetime: 1y, declared: {carbon: 1t}}\n  student: {type: model, lifetime: 1y, derivedFrom: [{product: teacher, weight: 0.1}]}\njobs:\n  - {name: distil, builds: student, serves: teacher, energy: 9kWh, duration: 1d, region: r}\n";
        let doc = ScenarioDoc::from_yaml("d.yaml", yaml).unwrap();
        let report = doc.evaluate("d.yaml").unwrap();
        let s = build(
            "student",
            SheetSource {
                source: "d.yaml",
                file: "d.yaml",
                scenario: &doc,
                report: &report,
                traffic: None,
                service_life: None,
            },
        )
        .unwrap();
        // 9 kWh × 400 g = 3600 g own; the teacher's slice is 1 t × 1 d / 365 d.
        let slice = 1e6 / 365.0;
        assert!((s.epc.measured_g - (3600.0 + slice)).abs() < 1e-6);
        assert!((s.co2_eq_emissions.emissions - 3600.0).abs() < 1e-6);
        assert_eq!(
            s.co2_eq_emissions.hardware_used.as_deref(),
            Some("1 device")
        );
    }
}

//! Offline scenarios (DESIGN §7): a YAML document of sources, regions, systems, platforms,
//! products and jobs, evaluated into every job's terms and every product's EPC.
//!
//! Parsing and evaluation are separate so other tools (`jobcarbon plan`) can reuse the entry
//! types ([`JobSpec`], [`ProductSpec`], [`RegionSpec`], …), [`parse_yaml`] and
//! [`ScenarioDoc::evaluate`]. Every error is a [`ScenarioError`] that names the file, the path
//! in the document (`jobs[2].region`) and, when the YAML parser knows it, line and column.
//!
//! Evaluation order does not depend on declaration order: build jobs are evaluated when their
//! product's turn comes in the lineage order, so a build job that also serves a model (a
//! distillation reading its teacher) sees the teacher's final EPC.

mod document;
mod error;
mod evaluate;
mod jobs;
mod report;
mod resolve;

pub use document::*;
pub use error::*;
pub use report::*;

use crate::domain::Term;
use crate::formulas::{
    amortized_product_share, embodied_system_share, operational_carbon, platform_operational_share,
};
use crate::terms::Terms;
use crate::units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Pue, Seconds};
use std::collections::HashMap;

/// Built-in grid sources in gCO2e/kWh: life-cycle medians of IPCC AR5 WG III Annex III (2014),
/// the figures the paper uses (coal 820, solar 48). A scenario's `sources` override them.
pub const DEFAULT_SOURCES: [(&str, f64); 8] = [
    ("coal", 820.0),
    ("gas", 490.0),
    ("biomass", 230.0),
    ("solar", 48.0),
    ("geothermal", 38.0),
    ("hydro", 24.0),
    ("nuclear", 12.0),
    ("wind", 11.0),
];

// ---------------------------------------------------------------------------------------------
// Evaluation types and checks shared by the submodules (private here, so visible to them)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Region {
    pue: Pue,
    intensity: GramsPerKwh,
}

#[derive(Debug, Clone, Copy)]
struct System {
    embodied: Grams,
    lifetime: Seconds,
}

#[derive(Debug, Clone, Copy)]
struct Platform {
    overhead: GramsPerSecond,
    epc: Grams,
    lifetime: Seconds,
    /// The product whose EPC is the platform's (`platforms.NAME.product`), replacing `epc`.
    product: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Destination {
    None,
    Builds(usize),
    Retrains(usize),
}

/// A job with every reference resolved to an index and every default applied.
#[derive(Debug, Clone, Copy)]
struct Job {
    energy: Joules,
    duration: Seconds,
    region: Region,
    system: Option<(System, f64)>,
    platform: Option<(Platform, f64)>,
    /// Served model and n for the model-EPC term.
    serves: Option<(usize, f64)>,
    destination: Destination,
}

impl Job {
    /// The product whose EPC this job's platform term amortises, if its platform names one.
    fn platform_product(&self) -> Option<usize> {
        self.platform.and_then(|(p, _)| p.product)
    }

    /// Every term that does not depend on a model: JSC, ec and the platform terms;
    /// `linked_epc` is the EPC of the platform's product when it names one.
    fn own_terms(&self, linked_epc: Option<Grams>) -> Terms {
        let mut terms = Terms::ZERO;
        terms[Term::Operational] =
            operational_carbon(self.energy, self.region.pue, self.region.intensity);
        if let Some((system, share)) = self.system {
            terms[Term::EmbodiedSystem] =
                embodied_system_share(system.embodied, system.lifetime, self.duration, share);
        }
        if let Some((platform, n)) = self.platform {
            terms[Term::PlatformOperational] =
                platform_operational_share(platform.overhead, self.duration, n);
            let epc = linked_epc.unwrap_or(platform.epc);
            if epc > Grams::ZERO {
                terms[Term::PlatformEmbodied] =
                    amortized_product_share(epc, platform.lifetime, self.duration, n);
            }
        }
        terms
    }
}

/// Every number that leaves is finite: a huge quantity or a tiny lifetime overflows here.
fn check_finite(report: &Report, file: &str) -> Result<(), ScenarioError> {
    let bad = |path: String, what: &str, value: f64| {
        ScenarioError::new(
            file,
            path,
            Problem::Invalid(format!(
                "{what} computes to {value}, not a finite number: a quantity is too large or a lifetime too small"
            )),
        )
    };
    for (i, job) in report.jobs.iter().enumerate() {
        if !job.energy.value().is_finite() {
            return Err(bad(format!("jobs[{i}]"), "the energy", job.energy.value()));
        }
        for term in Term::ALL {
            let g = job.terms[term].value();
            if !g.is_finite() {
                return Err(bad(format!("jobs[{i}]"), term.as_str(), g));
            }
        }
    }
    for p in &report.products {
        for (what, g) in [
            ("measured EPC", p.epc.measured),
            ("inherited EPC", p.epc.inherited),
            ("declared EPC", p.epc.declared),
        ] {
            if !g.value().is_finite() {
                return Err(bad(format!("products.{}", p.name), what, g.value()));
            }
        }
    }
    Ok(())
}

/// `path` is built only on error: scenarios can have 100k jobs.
fn positive(
    value: f64,
    what: &'static str,
    file: &str,
    path: impl FnOnce() -> String,
) -> Result<f64, ScenarioError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(ScenarioError::new(
            file,
            path(),
            Problem::NotPositive {
                what,
                value: value.to_string(),
            },
        ))
    }
}

fn positive_time(
    value: Seconds,
    what: &'static str,
    file: &str,
    path: impl FnOnce() -> String,
) -> Result<Seconds, ScenarioError> {
    if value.value().is_finite() && value > Seconds::ZERO {
        Ok(value)
    } else {
        Err(ScenarioError::new(
            file,
            path(),
            Problem::NotPositive {
                what,
                value: value.to_string(),
            },
        ))
    }
}

fn unknown(
    file: &str,
    path: String,
    kind: &'static str,
    name: &str,
    known: Vec<String>,
) -> ScenarioError {
    ScenarioError::new(
        file,
        path,
        Problem::UnknownReference {
            kind,
            name: name.to_owned(),
            known,
        },
    )
}

/// Index of a name in a [`Named`], built once (scenarios can have 100k jobs).
fn index_of<T>(named: &Named<T>) -> HashMap<&str, usize> {
    named
        .0
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Retraining {
    carbon: Grams,
    jobs_per_interval: f64,
}

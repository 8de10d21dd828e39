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

use crate::domain::{ProductType, Term};
use crate::formulas::{
    amortized_product_share, embodied_system_share, energy_from_power, mix_intensity,
    operational_carbon, platform_operational_share, retraining_share,
};
use crate::lineage::{Dependency, EdgeOrigin, Epc, EpcTable, Lineage, LineageError, ProductId};
use crate::product::{LineageEdge, ProductDef, RetrainingPolicy};
use crate::quantity::{Q, parse};
use crate::terms::Terms;
use crate::units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Pue, Seconds, Watts};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

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
// Errors
// ---------------------------------------------------------------------------------------------

/// A bad scenario: `FILE: PATH: REASON` (path and line/column where known).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {}{problem}", location(.path, .line_column))]
pub struct ScenarioError {
    pub file: String,
    /// Path in the document, `jobs[2].region`; empty for file-level problems.
    pub path: String,
    /// 1-based line and column, for problems the YAML parser located.
    pub line_column: Option<(u64, u64)>,
    /// Boxed: errors travel through every `Result` of parsing and evaluation.
    pub problem: Box<Problem>,
}

fn location(path: &str, line_column: &Option<(u64, u64)>) -> String {
    match (path.is_empty(), line_column) {
        (true, None) => String::new(),
        (false, None) => format!("{path}: "),
        (true, Some((l, c))) => format!("line {l}, column {c}: "),
        (false, Some((l, c))) => format!("{path} (line {l}, column {c}): "),
    }
}

/// What is wrong, without the where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// Malformed YAML, an unknown key, a wrong type or a bad quantity, as the parser saw it.
    #[error("{0}")]
    Syntax(String),
    #[error("unknown {kind} {name:?} ({})", defined(.known))]
    UnknownReference {
        kind: &'static str,
        name: String,
        known: Vec<String>,
    },
    #[error("{what} must be greater than zero (got {value})")]
    NotPositive { what: &'static str, value: String },
    #[error("{what} must be in {range} (got {value})")]
    OutOfRange {
        what: &'static str,
        range: &'static str,
        value: f64,
    },
    #[error("{0}")]
    Lineage(LineageError),
    #[error("{0}")]
    Invalid(String),
}

fn defined(known: &[String]) -> String {
    if known.is_empty() {
        "none are defined".to_owned()
    } else {
        format!("defined: {}", known.join(", "))
    }
}

impl ScenarioError {
    pub fn new(file: &str, path: impl Into<String>, problem: Problem) -> Self {
        Self {
            file: file.to_owned(),
            path: path.into(),
            line_column: None,
            problem: Box::new(problem),
        }
    }

    /// The file could not be read (the caller did the I/O).
    pub fn unreadable(file: &str, error: &std::io::Error) -> Self {
        Self::new(file, "", Problem::Unreadable(error.to_string()))
    }

    /// Prefix the document path, for documents embedded in a larger one (`strategies[1]`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_owned(),
            (false, false) if self.path.starts_with('[') => format!("{prefix}{}", self.path),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        self
    }
}

/// Parse YAML into `T`, with the document path and line/column of any error.
pub fn parse_yaml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ScenarioError> {
    let mut path = None;
    // The default budget (250k nodes) stops near 20k jobs. The text is already in memory, so
    // allow as many nodes as it has bytes; alias expansion keeps its own default limits.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: text.len().max(250_000),
            max_events: text.len().saturating_mul(4).max(1_000_000),
        },
    };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let line_column = e.location().map(|l| (l.line(), l.column()));
        // Syntax errors leave `?` where the parser had not yet read a key.
        let path = path
            .map(|p| {
                p.split('.')
                    .take_while(|segment| *segment != "?")
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .filter(|p| p != ".")
            .unwrap_or_default();
        let message = plain_message(&e);
        ScenarioError {
            file: file.to_owned(),
            path,
            line_column: line_column.filter(|&(l, _)| l > 0),
            problem: Box::new(Problem::Syntax(message)),
        }
    })
}

/// The parser's message without its own location suffix and source snippet (we print those).
fn plain_message(error: &serde_saphyr::Error) -> String {
    let rendered = error.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // Advice about parser options is for programmers, not for the author of the file.
    let first = match first.find(", set DuplicateKeyPolicy") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches(':').trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Document
// ---------------------------------------------------------------------------------------------

/// A YAML mapping kept in document order (output follows the file); duplicate keys are errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Named<T> {
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.clone()).collect()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedVisitor<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<T>, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("{key:?} is defined twice")));
                    }
                    let value = map.next_value::<T>()?;
                    entries.push((key, value));
                }
                Ok(Named(entries))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Named<T>, E> {
                Ok(Named::default())
            }
        }
        deserializer.deserialize_any(NamedVisitor(PhantomData))
    }
}

/// `jobs:` with nothing after it is an empty list, as it reads.
fn list_or_nothing<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Option::<Vec<T>>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// A `jobcarbon calc` scenario file (DESIGN §7).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDoc {
    /// Grid sources in gCO2e/kWh; merged over [`DEFAULT_SOURCES`].
    #[serde(default)]
    pub sources: Named<Q<GramsPerKwh>>,
    #[serde(default)]
    pub regions: Named<RegionSpec>,
    #[serde(default)]
    pub systems: Named<SystemSpec>,
    #[serde(default)]
    pub platforms: Named<PlatformSpec>,
    #[serde(default)]
    pub products: Named<ProductSpec>,
    #[serde(default, deserialize_with = "list_or_nothing")]
    pub jobs: Vec<JobSpec>,
}

/// `regions.NAME`: where energy is drawn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Power usage effectiveness, ≥ 1 (default 1).
    #[serde(default)]
    pub pue: Option<f64>,
    pub intensity: IntensitySpec,
}

/// `intensity: 420` (gCO2e/kWh) or `intensity: {mix: {coal: 0.8, solar: 0.2}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum IntensitySpec {
    Value(GramsPerKwh),
    Mix(Named<f64>),
}

impl<'de> Deserialize<'de> for IntensitySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntensityVisitor;
        impl<'de> Visitor<'de> for IntensityVisitor {
            type Value = IntensitySpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an intensity in gCO2e/kWh (420) or {mix: {SOURCE: FRACTION, ...}}")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IntensitySpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntensitySpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntensitySpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntensitySpec, E> {
                parse::<GramsPerKwh>(v)
                    .map(IntensitySpec::Value)
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IntensitySpec, A::Error> {
                let mut mix = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "mix" {
                        return Err(de::Error::unknown_field(&key, &["mix"]));
                    }
                    mix = Some(map.next_value::<Named<f64>>()?);
                }
                mix.map(IntensitySpec::Mix)
                    .ok_or_else(|| de::Error::missing_field("mix"))
            }
        }
        deserializer.deserialize_any(IntensityVisitor)
    }
}

/// `systems.NAME`: hardware whose embodied carbon is amortised over its lifetime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub embodied: Q<Grams>,
    pub lifetime: Q<Seconds>,
}

/// `platforms.NAME`: a shared platform whose overhead and EPC are split over concurrent jobs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    /// Operational overhead as a carbon rate (`50g/min`).
    #[serde(default)]
    pub overhead: Option<Q<GramsPerSecond>>,
    /// The platform's embodied product cost.
    #[serde(default)]
    pub epc: Option<Q<Grams>>,
    /// Required when `epc` is given.
    #[serde(default)]
    pub lifetime: Option<Q<Seconds>>,
    /// The `type: platform` product that built this platform: its EPC (measured from its
    /// `builds:` jobs, inherited, declared) is the platform's, amortised over `lifetime`
    /// (default: the product's). Excludes `epc`.
    #[serde(default)]
    pub product: Option<String>,
}

/// `products.NAME`: a model, dataset or platform product (the CRD spec's vocabulary).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductSpec {
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Amortisation period LT; required for a model that jobs serve.
    #[serde(default)]
    pub lifetime: Option<Q<Seconds>>,
    #[serde(default, deserialize_with = "list_or_nothing")]
    pub derived_from: Vec<EdgeSpec>,
    #[serde(default, deserialize_with = "list_or_nothing")]
    pub datasets: Vec<EdgeSpec>,
    #[serde(default)]
    pub declared: Option<DeclaredSpec>,
    #[serde(default)]
    pub retraining: Option<RetrainingSpec>,
}

/// `{product: bert, weight: 0.25}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub product: String,
    pub weight: f64,
}

/// `declared: 552kg` or `declared: {carbon: 552kg, source: "model card"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredSpec {
    pub carbon: Grams,
    pub source: Option<String>,
}

impl<'de> Deserialize<'de> for DeclaredSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            carbon: Q<Grams>,
            #[serde(default)]
            source: Option<String>,
        }
        struct DeclaredVisitor;
        impl<'de> Visitor<'de> for DeclaredVisitor {
            type Value = DeclaredSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a carbon quantity (552kg) or {carbon: 552kg, source: TEXT}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeclaredSpec, E> {
                parse::<Grams>(v)
                    .map_err(E::custom)
                    .map(|carbon| DeclaredSpec {
                        carbon,
                        source: None,
                    })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeclaredSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DeclaredSpec, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DeclaredSpec, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(DeclaredSpec {
                    carbon: full.carbon.0,
                    source: full.source,
                })
            }
        }
        deserializer.deserialize_any(DeclaredVisitor)
    }
}

/// `retraining: {carbon: 5kg, interval: 1d, jobsPerInterval: 1000000}`: the carbon of
/// re-training per interval (declared, plus the ASCᵉ of `retrains:` jobs), split over the
/// inference jobs of that interval.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetrainingSpec {
    #[serde(default)]
    pub carbon: Option<Q<Grams>>,
    pub interval: Q<Seconds>,
    pub jobs_per_interval: f64,
}

/// One job (`jobs[i]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobSpec {
    pub name: String,
    /// Measured energy; or give `power` (× `devices`) instead.
    #[serde(default)]
    pub energy: Option<Q<Joules>>,
    #[serde(default)]
    pub power: Option<Q<Watts>>,
    /// Devices drawing `power` (default 1).
    #[serde(default)]
    pub devices: Option<f64>,
    pub duration: Q<Seconds>,
    pub region: String,
    #[serde(default)]
    pub system: Option<String>,
    /// Reserved share of `system` in (0, 1] (default 1: exclusive).
    #[serde(default)]
    pub share: Option<f64>,
    #[serde(default)]
    pub platform: Option<String>,
    /// Jobs running concurrently on the platform, this one included (default 1).
    #[serde(default)]
    pub concurrent: Option<f64>,
    /// The product whose measured EPC this job's ASCᵉ goes into.
    #[serde(default)]
    pub builds: Option<String>,
    /// The model this job runs inference on (adds the model-EPC and re-training terms).
    #[serde(default)]
    pub serves: Option<String>,
    /// The model whose re-training carbon per interval this job's ASCᵉ adds to.
    #[serde(default)]
    pub retrains: Option<String>,
    /// Jobs serving the model concurrently, for the model-EPC term (default `concurrent`).
    #[serde(default)]
    pub concurrent_serving: Option<f64>,
}

impl ScenarioDoc {
    /// Parse a scenario file's text; `file` is used in error messages.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, ScenarioError> {
        parse_yaml(file, text)
    }

    /// Parse a scenario written as JSON (same schema). Much faster than YAML for large
    /// generated scenarios (docs/performance.md).
    pub fn from_json(file: &str, text: &str) -> Result<Self, ScenarioError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            json_error(file, path, e.into_inner())
        })?;
        de.end().map_err(|e| json_error(file, String::new(), e))?;
        Ok(doc)
    }
}

fn json_error(file: &str, path: String, error: serde_json::Error) -> ScenarioError {
    let message = error.to_string();
    // serde_json appends " at line L column C"; we print the location ourselves.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    ScenarioError {
        file: file.to_owned(),
        path: if path == "." { String::new() } else { path },
        line_column: (error.line() > 0).then(|| (error.line() as u64, error.column() as u64)),
        problem: Box::new(Problem::Syntax(message)),
    }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// The result of a scenario: serialises to exactly the DESIGN §7 JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub jobs: Vec<JobReport>,
    pub products: Vec<ProductReport>,
    /// Carbon declared in the file that no job could take, with the reason (absent when none,
    /// so a clean scenario's JSON has exactly DESIGN §7's keys).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unallocated: Vec<UnallocatedLine>,
    /// Things that are valid but probably not what the author meant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// Declared carbon no job takes (e.g. re-training of a model nothing serves).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnallocatedLine {
    pub product: String,
    /// A `jobcarbon_unallocated_grams_total` reason (`no_inference`).
    pub reason: &'static str,
    #[serde(rename = "grams")]
    pub grams_g: f64,
}

/// A warning located in the document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

/// Lifetimes shorter than this are probably a unit slip (`6m` is six minutes, not months).
const SUSPICIOUSLY_SHORT_LIFETIME: Seconds = Seconds(86_400.0);

/// One job's energy and carbon by term; JSC, ec, ASC, JSCᵉ, ASCᵉ are sums of `terms`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    pub name: String,
    pub energy: Joules,
    pub terms: Terms,
}

impl JobReport {
    /// ec: the embodied-system term.
    pub fn ec(&self) -> Grams {
        self.terms[Term::EmbodiedSystem]
    }
}

impl Serialize for JobReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("JobReport", 8)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("energy_j", &self.energy.value())?;
        s.serialize_field("jsc_g", &self.terms.jsc().value())?;
        s.serialize_field("ec_g", &self.ec().value())?;
        s.serialize_field("asc_g", &self.terms.asc().value())?;
        s.serialize_field("jsce_g", &self.terms.jsce().value())?;
        s.serialize_field("asce_g", &self.terms.asce().value())?;
        s.serialize_field("terms", &self.terms)?;
        s.end()
    }
}

/// One product's EPC by part, with the inherited part edge by edge.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductReport {
    pub name: String,
    pub kind: ProductType,
    pub epc: Epc,
}

impl Serialize for ProductReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ProductReport", 6)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("type", self.kind.as_str())?;
        s.serialize_field("epc_g", &self.epc.total().value())?;
        s.serialize_field("measured_g", &self.epc.measured.value())?;
        s.serialize_field("inherited_g", &self.epc.inherited.value())?;
        s.serialize_field("declared_g", &self.epc.declared.value())?;
        s.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
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
struct JobDependencies {
    dependencies: Vec<Dependency>,
    /// `(job index, field)` for each dependency, to point errors at the job.
    origins: Vec<(usize, &'static str)>,
}

impl JobDependencies {
    fn push(&mut self, job: usize, field: &'static str, dependency: Dependency) {
        self.dependencies.push(dependency);
        self.origins.push((job, field));
    }
}

/// What a job's references resolve against, built once per evaluation.
struct JobResolver<'a> {
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
    fn new(
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
    fn resolve_jobs(&self) -> Result<(Vec<Job>, JobDependencies), ScenarioError> {
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

/// Prices the jobs whose terms need EPCs from the lineage table.
struct Pricing<'a> {
    jobs: &'a [Job],
    lineage: &'a Lineage,
    retraining: &'a [Option<Retraining>],
    /// Per model: declared re-training carbon plus that of retrainers complete on their own.
    pools: Vec<Grams>,
    /// Per model: retrainers whose terms need the table.
    late_retrainers: Vec<Vec<usize>>,
    /// Per product: the jobs that build it.
    builders: Vec<Vec<usize>>,
}

impl<'a> Pricing<'a> {
    /// Also returns the terms of the jobs complete on their own: those that serve no model on a
    /// platform without a product. The others need EPCs from the table (their dependencies
    /// order it).
    fn new(
        jobs: &'a [Job],
        lineage: &'a Lineage,
        retraining: &'a [Option<Retraining>],
    ) -> (Self, Vec<Option<Terms>>) {
        let terms: Vec<Option<Terms>> = jobs
            .iter()
            .map(|j| {
                (j.serves.is_none() && j.platform_product().is_none()).then(|| j.own_terms(None))
            })
            .collect();
        let mut pools: Vec<Grams> = retraining
            .iter()
            .map(|r| r.map(|r| r.carbon).unwrap_or(Grams::ZERO))
            .collect();
        let mut late_retrainers: Vec<Vec<usize>> = vec![Vec::new(); lineage.products().len()];
        let mut builders: Vec<Vec<usize>> = vec![Vec::new(); lineage.products().len()];
        for (i, job) in jobs.iter().enumerate() {
            match (job.destination, terms[i]) {
                (Destination::Retrains(m), Some(t)) => pools[m] += t.asce(),
                (Destination::Retrains(m), None) => late_retrainers[m].push(i),
                (Destination::Builds(p), _) => builders[p].push(i),
                (Destination::None, _) => {}
            }
        }
        let pricing = Self {
            jobs,
            lineage,
            retraining,
            pools,
            late_retrainers,
            builders,
        };
        (pricing, terms)
    }

    fn linked_epc(job: &Job, table: &EpcTable<'_>) -> Option<Grams> {
        job.platform_product()
            .map(|p| table.by_id(ProductId(p)).total())
    }

    fn full_terms(&self, job: &Job, table: &EpcTable<'_>) -> Terms {
        let mut t = job.own_terms(Self::linked_epc(job, table));
        let Some((m, n)) = job.serves else {
            return t;
        };
        let lifetime = self.lineage.product(ProductId(m)).lifetime;
        let epc_of_model = table.by_id(ProductId(m)).total();
        t[Term::ModelEpc] = amortized_product_share(epc_of_model, lifetime, job.duration, n);
        if let Some(r) = self.retraining[m] {
            let late: Grams = self.late_retrainers[m]
                .iter()
                .map(|&i| {
                    let job = &self.jobs[i];
                    job.own_terms(Self::linked_epc(job, table)).asce()
                })
                .sum();
            t[Term::Retraining] = retraining_share(self.pools[m] + late, r.jobs_per_interval);
        }
        t
    }

    /// The EPC table; fills in the terms of the building jobs it prices on the way.
    fn product_table(&self, terms: &mut [Option<Terms>]) -> EpcTable<'a> {
        let table = self.lineage.evaluate_with(|id, table| {
            let mut measured = Grams::ZERO;
            for &i in &self.builders[id.0] {
                let t = match terms[i] {
                    Some(t) => t,
                    None => {
                        let t = self.full_terms(&self.jobs[i], table);
                        terms[i] = Some(t);
                        t
                    }
                };
                measured += t.asce();
            }
            Ok::<_, std::convert::Infallible>(measured)
        });
        match table {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }
}

impl ScenarioDoc {
    /// Evaluate every job and product. `file` names the document in errors.
    pub fn evaluate(&self, file: &str) -> Result<Report, ScenarioError> {
        let (defs, retraining) = self.resolve_products(file)?;
        let (jobs, dependencies) =
            JobResolver::new(self, file, &defs, &retraining)?.resolve_jobs()?;
        let lineage = Lineage::with_dependencies(defs, dependencies.dependencies)
            .map_err(|e| self.lineage_error(file, e, &dependencies.origins))?;

        let (pricing, mut terms) = Pricing::new(&jobs, &lineage, &retraining);
        let table = pricing.product_table(&mut terms);
        let job_reports = self
            .jobs
            .iter()
            .zip(&jobs)
            .zip(terms)
            .map(|((spec, job), t)| JobReport {
                name: spec.name.clone(),
                energy: job.energy,
                terms: t.unwrap_or_else(|| pricing.full_terms(job, &table)),
            })
            .collect();
        let products = table
            .iter()
            .map(|(def, epc)| ProductReport {
                name: def.name.clone(),
                kind: def.kind,
                epc: epc.clone(),
            })
            .collect();
        let report = Report {
            unallocated: self.unallocated_lines(&jobs, &retraining),
            warnings: self.warnings(&jobs, &lineage),
            jobs: job_reports,
            products,
        };
        check_finite(&report, file)?;
        Ok(report)
    }

    /// Declared re-training carbon of models no job serves: nothing amortises it.
    fn unallocated_lines(
        &self,
        jobs: &[Job],
        retraining: &[Option<Retraining>],
    ) -> Vec<UnallocatedLine> {
        self.products
            .iter()
            .enumerate()
            .filter_map(|(m, (name, _))| {
                let r = retraining.get(m).copied().flatten()?;
                let served = jobs.iter().any(|j| j.serves.is_some_and(|(s, _)| s == m));
                (!served && r.carbon > Grams::ZERO).then(|| UnallocatedLine {
                    product: name.to_owned(),
                    reason: "no_inference",
                    grams_g: r.carbon.value(),
                })
            })
            .collect()
    }

    /// Lifetimes that look like unit slips, and jobs longer than what they are amortised over.
    fn warnings(&self, jobs: &[Job], lineage: &Lineage) -> Vec<Warning> {
        let mut out = Vec::new();
        let mut short = |path: String, lifetime: Seconds| {
            if lifetime > Seconds::ZERO && lifetime < SUSPICIOUSLY_SHORT_LIFETIME {
                out.push(Warning {
                    path,
                    message: format!(
                        "a lifetime of {lifetime} is shorter than a day: `m` means minutes (DESIGN §7); write `mo` for months or `y` for years"
                    ),
                });
            }
        };
        for (name, s) in self.systems.iter() {
            short(format!("systems.{name}.lifetime"), s.lifetime.0);
        }
        for (name, p) in self.platforms.iter() {
            if let Some(l) = p.lifetime {
                short(format!("platforms.{name}.lifetime"), l.0);
            }
        }
        for (name, p) in self.products.iter() {
            if let Some(l) = p.lifetime {
                short(format!("products.{name}.lifetime"), l.0);
            }
        }
        for (i, job) in jobs.iter().enumerate() {
            let lifetimes = [
                job.system.map(|(s, _)| ("system", s.lifetime)),
                job.platform.map(|(p, _)| ("platform", p.lifetime)),
                job.serves
                    .map(|(m, _)| ("served model", lineage.product(ProductId(m)).lifetime)),
            ];
            for (what, lifetime) in lifetimes.into_iter().flatten() {
                if lifetime > Seconds::ZERO && job.duration > lifetime {
                    out.push(Warning {
                        path: format!("jobs[{i}].duration"),
                        message: format!(
                            "the job runs {} but its {what}'s lifetime is {lifetime}: it is charged more than the whole amount amortised",
                            job.duration
                        ),
                    });
                }
            }
        }
        out
    }

    fn resolve_regions(&self, file: &str) -> Result<Vec<Region>, ScenarioError> {
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

    fn resolve_systems(&self, file: &str) -> Result<Vec<System>, ScenarioError> {
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

    fn resolve_platforms(
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
    fn resolve_products(
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

    fn lineage_error(
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

#[derive(Debug, Clone, Copy)]
struct Retraining {
    carbon: Grams,
    jobs_per_interval: f64,
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

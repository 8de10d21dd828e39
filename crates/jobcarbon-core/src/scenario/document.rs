//! The scenario document as written: its entries and how they parse.

use super::*;
use crate::domain::ProductType;
use crate::quantity::{Q, parse};
use crate::units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Seconds, Watts};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;

/// A YAML mapping kept in document order (output follows the file); duplicate keys are errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> Named<T> {
    /// The entry called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    /// Every name, in document order (for "defined: …" hints).
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.clone()).collect()
    }
    /// Every entry with its name, in document order.
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
    /// Regions jobs run in, by name.
    #[serde(default)]
    pub regions: Named<RegionSpec>,
    /// Systems (machine types) jobs run on, by name.
    #[serde(default)]
    pub systems: Named<SystemSpec>,
    /// Platforms whose overhead jobs share, by name.
    #[serde(default)]
    pub platforms: Named<PlatformSpec>,
    /// Models, datasets and platforms, by name.
    #[serde(default)]
    pub products: Named<ProductSpec>,
    /// The jobs to evaluate, in order.
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
    /// The region's grid intensity.
    pub intensity: IntensitySpec,
}

/// `intensity: 420` (gCO2e/kWh) or `intensity: {mix: {coal: 0.8, solar: 0.2}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum IntensitySpec {
    /// A fixed intensity in gCO2e/kWh.
    Value(GramsPerKwh),
    /// Fractions of named sources (summing to 1), weighted over their intensities.
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
    /// Embodied carbon of the whole system.
    pub embodied: Q<Grams>,
    /// Service life its embodied carbon is spread over.
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
    /// Model, dataset or platform.
    #[serde(rename = "type")]
    pub kind: ProductType,
    /// Amortisation period LT; required for a model that jobs serve.
    #[serde(default)]
    pub lifetime: Option<Q<Seconds>>,
    /// Parent models it inherits EPC from.
    #[serde(default, deserialize_with = "list_or_nothing")]
    pub derived_from: Vec<EdgeSpec>,
    /// Datasets it inherits EPC from.
    #[serde(default, deserialize_with = "list_or_nothing")]
    pub datasets: Vec<EdgeSpec>,
    /// Carbon spent outside the scenario (e.g. pre-training elsewhere).
    #[serde(default)]
    pub declared: Option<DeclaredSpec>,
    /// How re-training carbon reaches inference, if the model re-trains.
    #[serde(default)]
    pub retraining: Option<RetrainingSpec>,
}

/// `{product: bert, weight: 0.25}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The parent product.
    pub product: String,
    /// Fraction of its EPC inherited, in [0, 1].
    pub weight: f64,
}

/// `declared: 552kg` or `declared: {carbon: 552kg, source: "model card"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredSpec {
    /// The declared carbon.
    pub carbon: Grams,
    /// Where it comes from (a paper, a model card).
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
    /// Declared carbon per re-training, besides `retrains:` jobs.
    #[serde(default)]
    pub carbon: Option<Q<Grams>>,
    /// Time between re-trainings.
    pub interval: Q<Seconds>,
    /// Inference jobs per interval that share one re-training.
    pub jobs_per_interval: f64,
}

/// One job (`jobs[i]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobSpec {
    /// Job name, unique in the document.
    pub name: String,
    /// Measured energy; or give `power` (× `devices`) instead.
    #[serde(default)]
    pub energy: Option<Q<Joules>>,
    /// Power per device, when energy is not measured.
    #[serde(default)]
    pub power: Option<Q<Watts>>,
    /// Devices drawing `power` (default 1).
    #[serde(default)]
    pub devices: Option<f64>,
    /// How long the job runs.
    pub duration: Q<Seconds>,
    /// The region it runs in (a key of `regions`).
    pub region: String,
    /// The system it runs on (a key of `systems`), for the embodied-system term.
    #[serde(default)]
    pub system: Option<String>,
    /// Reserved share of `system` in (0, 1] (default 1: exclusive).
    #[serde(default)]
    pub share: Option<f64>,
    /// The platform it runs on (a key of `platforms`), for the platform terms.
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

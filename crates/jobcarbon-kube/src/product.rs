//! The `SoftwareProduct` CRD (DESIGN §4): spec, status, conversion to
//! [`jobcarbon_core::ProductDef`] and validation of a whole product set (references, weights,
//! lifetimes, lineage cycles). The ledger config's `products:` map uses the same spec type.

use jobcarbon_core::quantity::{self, QuantityError};
use jobcarbon_core::{Exclusion, Lineage, LineageError};
use jobcarbon_core::{Grams, LineageEdge, ProductDef, ProductType, RetrainingPolicy, Seconds};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Inference request-counter presets (DESIGN §4), the lowercase names of
/// `jobcarbon_telemetry::RequestPreset`.
pub const REQUEST_PRESETS: [&str; 4] = ["vllm", "triton", "tgi", "kserve"];

/// A model, dataset or platform whose creation carbon (EPC) is amortised over the jobs using it.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "jobcarbon.io",
    version = "v1alpha1",
    kind = "SoftwareProduct",
    plural = "softwareproducts",
    shortname = "sp",
    status = "SoftwareProductStatus",
    doc = "A software product (model, dataset, platform) whose life-cycle carbon jobcarbon amortises.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "EPC",
        type_ = "number",
        json_path = ".status.epc.totalGrams",
        description = "Embodied product carbon, gCO2e"
    ),
    // kube-derive's raw-JSON column form: a second `type_ = "string"` item on this item
    // reads to clippy as a duplicated attribute.
    printcolumn = r#"{"name":"Lifetime","type":"string","jsonPath":".spec.lifetime"}"#,
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoftwareProductSpec {
    /// model, dataset or platform.
    #[serde(rename = "type")]
    pub kind: ProductKind,
    /// Amortisation period LT, a time such as `3y`, `180d`.
    pub lifetime: String,
    /// Parent models: weight × EPC(parent) is inherited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<LineageRef>,
    /// Datasets used: weight × EPC(dataset) is inherited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<LineageRef>,
    /// Carbon spent outside this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<DeclaredCarbon>,
    /// How to count the model's inference requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceSpec>,
    /// How measured re-training carbon is spread over inference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retraining: Option<RetrainingSpec>,
}

/// The spec schema shared by the CRD and the ledger config's `products:` map.
pub type ProductSpec = SoftwareProductSpec;

/// `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProductKind {
    Model,
    Dataset,
    Platform,
}

impl From<ProductKind> for ProductType {
    fn from(kind: ProductKind) -> Self {
        match kind {
            ProductKind::Model => ProductType::Model,
            ProductKind::Dataset => ProductType::Dataset,
            ProductKind::Platform => ProductType::Platform,
        }
    }
}

/// A weighted lineage edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineageRef {
    pub product: String,
    /// In [0, 1].
    #[schemars(range(min = 0.0, max = 1.0))]
    pub weight: f64,
}

/// `spec.declared`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCarbon {
    /// Carbon such as `552kg`, `3.2t`.
    pub carbon: String,
    /// Where the figure comes from (a model card, a paper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `spec.inference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InferenceSpec {
    pub requests: RequestsSpec,
}

/// `spec.inference.requests`: exactly one of `preset` or `promql`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestsSpec {
    /// vllm, triton, tgi or kserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// A PromQL expression evaluating to one cumulative request count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promql: Option<String>,
}

/// `spec.retraining`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrainingSpec {
    /// Period of inference the re-training carbon is amortised over, e.g. `24h`.
    pub amortize_over: String,
}

/// A validated request counter for an inference product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InferenceRequests {
    /// One of `REQUEST_PRESETS`.
    Preset(String),
    /// A user PromQL expression giving request counters.
    Promql(String),
}

/// `status` of a SoftwareProduct, written by the ledger through server-side apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareProductStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epc: Option<EpcStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ProductCondition>,
}

/// The product's embodied carbon as jobcarbon measured it (gCO2e).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EpcStatus {
    /// Whole EPC in grams CO2e.
    pub total_grams: f64,
    /// Grams CO2e measured in the cluster (build jobs).
    pub measured_grams: f64,
    /// Grams CO2e inherited from parent models and datasets.
    pub inherited_grams: f64,
    /// Grams CO2e declared in the spec (spent elsewhere).
    pub declared_grams: f64,
    /// RFC 3339 time of the interval these figures include.
    pub updated_at: String,
}

/// A Kubernetes-style status condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// Why a product spec is invalid. The variant is the condition's `reason`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProductError {
    #[error("{field}: {source}")]
    BadQuantity {
        field: String,
        #[source]
        source: QuantityError,
    },
    #[error("{field}: must be greater than zero, got {value:?}")]
    NotPositive { field: String, value: String },
    #[error("{field}: weight {weight} is outside [0, 1]")]
    WeightOutOfRange { field: String, weight: f64 },
    #[error("{field}: {reason}")]
    BadInference { field: String, reason: String },
    #[error("{field}: refers to unknown product {product:?}")]
    UnknownReference { field: String, product: String },
    #[error("{field}: refers to invalid product {product:?}")]
    InvalidReference { field: String, product: String },
    #[error("lineage cycle: {}", cycle.join(" -> "))]
    LineageCycle { cycle: Vec<String> },
    #[error("{field}: {product:?} is a {actual}, not a dataset")]
    NotADataset {
        field: String,
        product: String,
        actual: ProductType,
    },
    #[error("{reason}")]
    BadLineage { reason: String },
    #[error(
        "{name:?} is not a valid product name (lowercase letters, digits, '-', '.', at most 63)"
    )]
    BadName { name: String },
}

impl ProductError {
    /// CamelCase reason for the status condition.
    pub const fn reason(&self) -> &'static str {
        match self {
            ProductError::BadQuantity { .. } => "BadQuantity",
            ProductError::NotPositive { .. } => "NotPositive",
            ProductError::WeightOutOfRange { .. } => "WeightOutOfRange",
            ProductError::BadInference { .. } => "BadInference",
            ProductError::UnknownReference { .. } => "UnknownReference",
            ProductError::InvalidReference { .. } => "InvalidReference",
            ProductError::LineageCycle { .. } => "LineageCycle",
            ProductError::NotADataset { .. } => "NotADataset",
            ProductError::BadLineage { .. } => "BadLineage",
            ProductError::BadName { .. } => "BadName",
        }
    }
}

fn parse_at<U: quantity::Unit>(field: &str, value: &str) -> Result<U, ProductError> {
    quantity::parse::<U>(value).map_err(|source| ProductError::BadQuantity {
        field: field.to_owned(),
        source,
    })
}

fn positive_seconds(field: &str, value: &str) -> Result<Seconds, ProductError> {
    let seconds: Seconds = parse_at(field, value)?;
    if seconds.value() > 0.0 {
        Ok(seconds)
    } else {
        Err(ProductError::NotPositive {
            field: field.to_owned(),
            value: value.to_owned(),
        })
    }
}

fn edges(field: &str, refs: &[LineageRef]) -> Result<Vec<LineageEdge>, ProductError> {
    refs.iter()
        .enumerate()
        .map(|(i, r)| {
            if !(0.0..=1.0).contains(&r.weight) {
                return Err(ProductError::WeightOutOfRange {
                    field: format!("{field}[{i}].weight"),
                    weight: r.weight,
                });
            }
            Ok(LineageEdge {
                product: r.product.clone(),
                weight: r.weight,
            })
        })
        .collect()
}

impl SoftwareProductSpec {
    /// Convert one spec to a core product definition. Checks everything that needs no other
    /// product; references and cycles are checked by [`validate_products`].
    pub fn to_def(&self, name: &str) -> Result<ProductDef, ProductError> {
        if !crate::labels::is_valid_product_name(name) {
            return Err(ProductError::BadName {
                name: name.to_owned(),
            });
        }
        let lifetime = positive_seconds("spec.lifetime", &self.lifetime)?;
        let mut def = ProductDef::new(name, self.kind.into(), lifetime);
        def.derived_from = edges("spec.derivedFrom", &self.derived_from)?;
        def.datasets = edges("spec.datasets", &self.datasets)?;
        if let Some(declared) = &self.declared {
            def.declared = parse_at::<Grams>("spec.declared.carbon", &declared.carbon)?;
            def.declared_source = declared.source.clone();
        }
        if let Some(retraining) = &self.retraining {
            let period =
                positive_seconds("spec.retraining.amortizeOver", &retraining.amortize_over)?;
            def.retraining = Some(RetrainingPolicy::AmortizeOver(period));
        }
        self.inference_requests()?;
        Ok(def)
    }

    /// The validated request counter, if the spec declares one.
    pub fn inference_requests(&self) -> Result<Option<InferenceRequests>, ProductError> {
        let Some(inference) = &self.inference else {
            return Ok(None);
        };
        let bad = |reason: String| ProductError::BadInference {
            field: "spec.inference.requests".to_owned(),
            reason,
        };
        match (&inference.requests.preset, &inference.requests.promql) {
            (Some(preset), None) if REQUEST_PRESETS.contains(&preset.as_str()) => {
                Ok(Some(InferenceRequests::Preset(preset.clone())))
            }
            (Some(preset), None) => Err(bad(format!(
                "unknown preset {:?} (expected one of {})",
                truncate(preset),
                REQUEST_PRESETS.join(", ")
            ))),
            (None, Some(promql)) if !promql.trim().is_empty() => {
                Ok(Some(InferenceRequests::Promql(promql.clone())))
            }
            (None, Some(_)) => Err(bad("promql is empty".to_owned())),
            (Some(_), Some(_)) => Err(bad("set preset or promql, not both".to_owned())),
            (None, None) => Err(bad("set preset or promql".to_owned())),
        }
    }
}

/// Cut untrusted text for messages so a huge field cannot flood logs or status.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A product that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidProduct {
    pub def: ProductDef,
    pub inference: Option<InferenceRequests>,
}

/// A product that failed validation; reported as a status condition and in
/// `ClusterSnapshot::invalid_products`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidProduct {
    pub name: String,
    pub error: ProductError,
}

/// The outcome of validating a product set, both halves sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductValidation {
    /// Products that passed, with their core definitions.
    pub valid: Vec<ValidProduct>,
    /// Products that failed, with the reason.
    pub invalid: Vec<InvalidProduct>,
}

impl ProductValidation {
    /// The core definitions of the valid products.
    pub fn defs(&self) -> Vec<ProductDef> {
        self.valid.iter().map(|p| p.def.clone()).collect()
    }

    /// `(name, reason)` pairs as `ClusterSnapshot::invalid_products` carries them.
    pub fn invalid_pairs(&self) -> Vec<(String, String)> {
        self.invalid
            .iter()
            .map(|p| (p.name.clone(), p.error.to_string()))
            .collect()
    }

    /// The `Valid` condition for one product (present in either half).
    pub fn condition(&self, name: &str, now: &str) -> Option<ProductCondition> {
        if self.valid.iter().any(|p| p.def.name == name) {
            return Some(ProductCondition {
                type_: "Valid".into(),
                status: "True".into(),
                reason: "Valid".into(),
                message: "spec is valid".into(),
                last_transition_time: now.to_owned(),
            });
        }
        let invalid = self.invalid.iter().find(|p| p.name == name)?;
        Some(ProductCondition {
            type_: "Valid".into(),
            status: "False".into(),
            reason: invalid.error.reason().into(),
            message: invalid.error.to_string(),
            last_transition_time: now.to_owned(),
        })
    }
}

/// Validate a set of named specs: each spec on its own, then references (a product that
/// refers to an unknown or invalid product is invalid too) and lineage cycles (every product
/// on a cycle is invalid), through [`Lineage::partition`]. Nothing is skipped silently: each name ends in exactly one half.
pub fn validate_products<'a>(
    specs: impl IntoIterator<Item = (&'a str, &'a SoftwareProductSpec)>,
) -> ProductValidation {
    let mut candidates: BTreeMap<String, ValidProduct> = BTreeMap::new();
    let mut invalid: BTreeMap<String, ProductError> = BTreeMap::new();
    for (name, spec) in specs {
        match spec.to_def(name).and_then(|def| {
            Ok(ValidProduct {
                inference: spec.inference_requests()?,
                def,
            })
        }) {
            Ok(product) => {
                candidates.insert(name.to_owned(), product);
            }
            Err(error) => {
                invalid.insert(name.to_owned(), error);
            }
        }
    }

    // References and cycles: the core lineage partition, the project's one cycle check. A
    // reference to a product whose own spec is invalid is an invalid, not unknown, reference.
    let split = Lineage::partition(candidates.values().map(|p| p.def.clone()).collect());
    for (def, exclusion) in split.excluded {
        let error = exclusion_error(exclusion, |reference| {
            candidates.contains_key(reference) || invalid.contains_key(reference)
        });
        candidates.remove(&def.name);
        invalid.insert(def.name, error);
    }

    ProductValidation {
        valid: candidates.into_values().collect(),
        invalid: invalid
            .into_iter()
            .map(|(name, error)| InvalidProduct { name, error })
            .collect(),
    }
}

/// The product error for a lineage exclusion; `is_known` tells an invalid reference (to a
/// product whose own spec is invalid) from an unknown one.
fn exclusion_error(exclusion: Exclusion, is_known: impl Fn(&str) -> bool) -> ProductError {
    match exclusion {
        Exclusion::InheritsExcluded {
            kind,
            index,
            reference,
            ..
        }
        | Exclusion::Invalid(LineageError::UnknownReference {
            kind,
            index,
            reference,
            ..
        }) => {
            let field = format!("spec.{kind}[{index}].product");
            let product = truncate(&reference);
            let known = is_known(&reference);
            if known {
                ProductError::InvalidReference { field, product }
            } else {
                ProductError::UnknownReference { field, product }
            }
        }
        Exclusion::Invalid(LineageError::Cycle { edges }) => ProductError::LineageCycle {
            cycle: edges
                .iter()
                .map(|e| e.from.clone())
                .chain(edges.last().map(|e| e.to.clone()))
                .collect(),
        },
        Exclusion::Invalid(LineageError::WeightOutOfRange {
            kind,
            index,
            weight,
            ..
        }) => ProductError::WeightOutOfRange {
            field: format!("spec.{kind}[{index}].weight"),
            weight,
        },
        Exclusion::Invalid(LineageError::DuplicateEdge {
            kind,
            index,
            reference,
            ..
        }) => ProductError::BadLineage {
            reason: format!(
                "spec.{kind}[{index}].product: {:?} is already a parent: one edge per parent across derivedFrom and datasets",
                truncate(&reference)
            ),
        },
        Exclusion::Invalid(LineageError::NotADataset {
            index,
            reference,
            actual,
            ..
        }) => ProductError::NotADataset {
            field: format!("spec.datasets[{index}].product"),
            product: truncate(&reference),
            actual,
        },
        // Names are map keys (unique) and no dependencies are passed: not expected, but
        // reported rather than dropped.
        Exclusion::Invalid(
            other
            @ (LineageError::DuplicateProduct { .. } | LineageError::UnknownDependency { .. }),
        ) => ProductError::BadLineage {
            reason: other.to_string(),
        },
    }
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp (`2026-11-28T10:30:00Z`),
/// whole seconds, through k8s-openapi's own time type (jiff), clamped to its range.
pub fn rfc3339(at: Seconds) -> String {
    use k8s_openapi::jiff::Timestamp;
    let secs = (at.value().max(0.0).floor() as i64).min(Timestamp::MAX.as_second());
    Timestamp::from_second(secs)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SoftwareProductSpec {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn design_example_converts() {
        let s = spec(
            "type: model\nlifetime: 3y\nderivedFrom: [{product: bert-base, weight: 0.1}]\n\
             datasets: [{product: wikipedia-en, weight: 0.5}]\n\
             declared: {carbon: 552kg, source: model card}\n\
             inference: {requests: {preset: vllm}}\nretraining: {amortizeOver: 24h}\n",
        );
        let def = s.to_def("distilbert").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(def.kind, ProductType::Model);
        assert_eq!(def.lifetime, Seconds::from_years(3.0));
        assert_eq!(def.declared, Grams(552_000.0));
        assert_eq!(def.declared_source.as_deref(), Some("model card"));
        assert_eq!(def.derived_from[0].product, "bert-base");
        assert_eq!(def.datasets[0].weight, 0.5);
        assert_eq!(
            def.retraining,
            Some(RetrainingPolicy::AmortizeOver(Seconds::from_hours(24.0)))
        );
        assert_eq!(
            s.inference_requests(),
            Ok(Some(InferenceRequests::Preset("vllm".into())))
        );
    }

    #[test]
    fn unknown_spec_keys_are_rejected() {
        let r: Result<SoftwareProductSpec, _> =
            serde_saphyr::from_str("type: model\nlifetime: 3y\nlifetme: 2y\n");
        assert!(r.is_err());
    }

    #[test]
    fn per_spec_errors() {
        let cases = [
            ("type: model\nlifetime: 0y\n", "NotPositive"),
            ("type: model\nlifetime: 3 parsecs\n", "BadQuantity"),
            (
                "type: model\nlifetime: 3y\nderivedFrom: [{product: a, weight: 1.5}]\n",
                "WeightOutOfRange",
            ),
            (
                "type: model\nlifetime: 3y\ndatasets: [{product: a, weight: -0.1}]\n",
                "WeightOutOfRange",
            ),
            (
                "type: model\nlifetime: 3y\ndeclared: {carbon: 5kWh}\n",
                "BadQuantity",
            ),
            (
                "type: model\nlifetime: 3y\ninference: {requests: {preset: ollama}}\n",
                "BadInference",
            ),
            (
                "type: model\nlifetime: 3y\ninference: {requests: {}}\n",
                "BadInference",
            ),
            (
                "type: model\nlifetime: 3y\nretraining: {amortizeOver: 0h}\n",
                "NotPositive",
            ),
        ];
        for (yaml, reason) in cases {
            let err = spec(yaml).to_def("m").err().map(|e| e.reason());
            assert_eq!(err, Some(reason), "{yaml}");
        }
        let ok = spec("type: model\nlifetime: 3y\n");
        assert_eq!(
            ok.to_def("Bad Name").err().map(|e| e.reason()),
            Some("BadName")
        );
    }

    fn named(list: &[(&str, &str)]) -> Vec<(String, SoftwareProductSpec)> {
        list.iter()
            .map(|(n, y)| ((*n).to_owned(), spec(y)))
            .collect()
    }

    fn validate(list: &[(String, SoftwareProductSpec)]) -> ProductValidation {
        validate_products(list.iter().map(|(n, s)| (n.as_str(), s)))
    }

    #[test]
    fn references_and_cycles() {
        let set = named(&[
            ("wiki", "type: dataset\nlifetime: 1y\n"),
            (
                "bert",
                "type: model\nlifetime: 3y\ndatasets: [{product: wiki, weight: 0.5}]\n",
            ),
            (
                "distil",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: bert, weight: 0.25}]\n",
            ),
            (
                "orphan",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: nowhere, weight: 0.25}]\n",
            ),
            (
                "child-of-orphan",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: orphan, weight: 1}]\n",
            ),
            (
                "a",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: b, weight: 1}]\n",
            ),
            (
                "b",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: a, weight: 1}]\n",
            ),
            (
                "self",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: self, weight: 1}]\n",
            ),
            (
                "below-cycle",
                "type: model\nlifetime: 3y\nderivedFrom: [{product: a, weight: 1}]\n",
            ),
            ("bad", "type: model\nlifetime: -1y\n"),
            (
                "model-as-dataset",
                "type: model\nlifetime: 3y\ndatasets: [{product: bert, weight: 0.1}]\n",
            ),
        ]);
        let v = validate(&set);
        let valid: Vec<&str> = v.valid.iter().map(|p| p.def.name.as_str()).collect();
        assert_eq!(valid, ["bert", "distil", "wiki"]);
        let reasons: BTreeMap<&str, &str> = v
            .invalid
            .iter()
            .map(|p| (p.name.as_str(), p.error.reason()))
            .collect();
        assert_eq!(reasons["orphan"], "UnknownReference");
        assert_eq!(reasons["child-of-orphan"], "InvalidReference");
        assert_eq!(reasons["a"], "LineageCycle");
        assert_eq!(reasons["b"], "LineageCycle");
        assert_eq!(reasons["self"], "LineageCycle");
        assert_eq!(reasons["below-cycle"], "InvalidReference");
        assert_eq!(reasons["bad"], "BadQuantity");
        assert_eq!(reasons["model-as-dataset"], "NotADataset");
        assert_eq!(v.valid.len() + v.invalid.len(), set.len());
        let cond = v
            .condition("a", "t")
            .unwrap_or_else(|| panic!("no condition"));
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "LineageCycle")
        );
        assert!(cond.message.contains("a -> b -> a") || cond.message.contains("b -> a -> b"));
        let ok = v
            .condition("bert", "t")
            .unwrap_or_else(|| panic!("no condition"));
        assert_eq!(ok.status, "True");
    }

    #[test]
    fn rfc3339_formats_epoch_seconds() {
        assert_eq!(rfc3339(Seconds(0.0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Seconds(1_718_096_557.9)), "2024-06-11T09:02:37Z");
        assert_eq!(rfc3339(Seconds(951_782_400.0)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(Seconds(-5.0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(Seconds(f64::INFINITY)), "9999-12-30T22:00:00Z");
    }
}

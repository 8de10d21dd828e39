//! The `jobcarbon.io/*` pod label schema (DESIGN §4) and the platform selector.
//!
//! Label values are untrusted: anything that is not a well-formed Kubernetes label value naming
//! a known phase or a plausible product is counted as an issue and never used as-is.

use jobcarbon_core::Phase;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Default key of the phase label.
pub const PHASE_LABEL: &str = "jobcarbon.io/phase";
/// Default key of the product label.
pub const PRODUCT_LABEL: &str = "jobcarbon.io/product";
/// Longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// Which label keys carry the phase and product (configurable, DESIGN §4 defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSchema {
    /// Pod label naming the life-cycle phase (default `jobcarbon.io/phase`).
    #[serde(default = "default_phase_key")]
    pub phase_key: String,
    /// Pod label naming the product (default `jobcarbon.io/product`).
    #[serde(default = "default_product_key")]
    pub product_key: String,
}

fn default_phase_key() -> String {
    PHASE_LABEL.to_owned()
}
fn default_product_key() -> String {
    PRODUCT_LABEL.to_owned()
}

impl Default for LabelSchema {
    fn default() -> Self {
        Self {
            phase_key: default_phase_key(),
            product_key: default_product_key(),
        }
    }
}

/// A problem with one pod's labels. Each variant is a counted, reported issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelIssue {
    /// The phase label is present but names no known phase (or is not a valid label value).
    InvalidPhase,
    /// The product label is present but is not a valid product name.
    InvalidProduct,
    /// A phase that builds or serves a product has no product label.
    MissingProduct,
}

impl LabelIssue {
    /// Every issue, in metric order.
    pub const ALL: [LabelIssue; 3] = [
        LabelIssue::InvalidPhase,
        LabelIssue::InvalidProduct,
        LabelIssue::MissingProduct,
    ];
    /// The `issue` metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            LabelIssue::InvalidPhase => "invalid_phase",
            LabelIssue::InvalidProduct => "invalid_product",
            LabelIssue::MissingProduct => "missing_product",
        }
    }
}

/// What the labels of one pod say, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelReading {
    pub phase: Phase,
    pub product: Option<String>,
    pub issues: Vec<LabelIssue>,
}

/// Whether `value` is a syntactically valid Kubernetes label value: at most 63 characters of
/// `[A-Za-z0-9._-]`, beginning and ending with an alphanumeric (empty is valid).
pub fn is_valid_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let bytes = value.as_bytes();
    bytes.len() <= MAX_LABEL_VALUE_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `value` can name a SoftwareProduct (a cluster-scoped object name that is also a
/// label value: lowercase RFC 1123 subdomain of at most 63 characters).
pub fn is_valid_product_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LABEL_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && value
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && value
            .as_bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl LabelSchema {
    /// Read phase and product from a pod's labels. Never fails: problems become issues.
    pub fn read(&self, labels: Option<&BTreeMap<String, String>>) -> LabelReading {
        let mut issues = Vec::new();
        let get = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        let phase = match get(&self.phase_key) {
            None => Phase::Unlabelled,
            Some(value) => match value.parse::<Phase>() {
                Ok(phase) => phase,
                Err(_) => {
                    issues.push(LabelIssue::InvalidPhase);
                    Phase::Invalid
                }
            },
        };
        let product = match get(&self.product_key) {
            None | Some("") => None,
            Some(value) if is_valid_product_name(value) => Some(value.to_owned()),
            Some(_) => {
                issues.push(LabelIssue::InvalidProduct);
                None
            }
        };
        let needs_product =
            phase.builds_product() || matches!(phase, Phase::Inference | Phase::Retraining);
        if needs_product && product.is_none() && !issues.contains(&LabelIssue::InvalidProduct) {
            issues.push(LabelIssue::MissingProduct);
        }
        LabelReading {
            phase,
            product,
            issues,
        }
    }
}

/// Which pods belong to the platform (their carbon is the platform's operational overhead):
/// pods in any listed namespace, or pods whose labels match every `matchLabels` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformSelector {
    /// Namespaces whose pods are all platform pods.
    #[serde(default)]
    pub namespaces: BTreeSet<String>,
    /// Labels that, all present with these values, make a pod a platform pod.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl PlatformSelector {
    /// Whether a pod in `namespace` with `labels` is a platform pod.
    pub fn matches(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.namespaces.contains(namespace) {
            return true;
        }
        !self.match_labels.is_empty()
            && self
                .match_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn known_phase_and_product_are_read() {
        let l = labels(&[(PHASE_LABEL, "training"), (PRODUCT_LABEL, "bert-base")]);
        let r = LabelSchema::default().read(Some(&l));
        assert_eq!(r.phase, Phase::Training);
        assert_eq!(r.product.as_deref(), Some("bert-base"));
        assert!(r.issues.is_empty());
    }

    #[test]
    fn no_labels_is_unlabelled_without_issue() {
        let r = LabelSchema::default().read(None);
        assert_eq!(r.phase, Phase::Unlabelled);
        assert_eq!(r.product, None);
        assert!(r.issues.is_empty());
    }

    #[test]
    fn configurable_keys_are_used() {
        let schema = LabelSchema {
            phase_key: "example.com/stage".into(),
            product_key: "example.com/model".into(),
        };
        let l = labels(&[
            ("example.com/stage", "inference"),
            ("example.com/model", "llama"),
            (PHASE_LABEL, "training"),
        ]);
        let r = schema.read(Some(&l));
        assert_eq!(r.phase, Phase::Inference);
        assert_eq!(r.product.as_deref(), Some("llama"));
    }

    #[test]
    fn hostile_values_are_counted_not_trusted() {
        let huge = "a".repeat(100_000);
        for value in [
            huge.as_str(),
            "training\n",
            "\"training\"",
            "Training",
            "train ing",
            "训练",
            "\u{0}",
        ] {
            let l = labels(&[(PHASE_LABEL, value), (PRODUCT_LABEL, value)]);
            let r = LabelSchema::default().read(Some(&l));
            assert_eq!(r.phase, Phase::Invalid, "{value:?}");
            assert_eq!(r.product, None, "{value:?}");
            assert!(r.issues.contains(&LabelIssue::InvalidPhase));
            assert!(r.issues.contains(&LabelIssue::InvalidProduct));
        }
    }

    #[test]
    fn building_phase_without_product_is_reported() {
        let l = labels(&[(PHASE_LABEL, "fine-tuning")]);
        let r = LabelSchema::default().read(Some(&l));
        assert_eq!(r.phase, Phase::FineTuning);
        assert_eq!(r.issues, vec![LabelIssue::MissingProduct]);
    }

    #[test]
    fn label_value_syntax() {
        assert!(is_valid_label_value("bert-base.v1_2"));
        assert!(is_valid_label_value(""));
        assert!(!is_valid_label_value("-x"));
        assert!(!is_valid_label_value(&"a".repeat(64)));
        assert!(!is_valid_label_value("a\"b"));
    }

    #[test]
    fn platform_by_namespace_or_selector() {
        let sel = PlatformSelector {
            namespaces: ["kube-system".to_owned()].into(),
            match_labels: labels(&[("jobcarbon.io/platform", "true")]),
        };
        assert!(sel.matches("kube-system", None));
        assert!(!sel.matches("ml", None));
        let l = labels(&[("jobcarbon.io/platform", "true")]);
        assert!(sel.matches("ml", Some(&l)));
        assert!(!PlatformSelector::default().matches("ml", Some(&l)));
    }
}

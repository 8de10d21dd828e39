//! What evaluation returns: every job's terms and every product's EPC.

use crate::domain::{ProductType, Term};
use crate::lineage::Epc;
use crate::terms::Terms;
use crate::units::{Grams, Joules, Seconds};
use serde::{Serialize, Serializer};

/// The result of a scenario: serialises to exactly the DESIGN §7 JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Every job, in document order.
    pub jobs: Vec<JobReport>,
    /// Every product, in document order.
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
    /// The product whose carbon is unallocated.
    pub product: String,
    /// A `jobcarbon_unallocated_grams_total` reason (`no_inference`).
    pub reason: &'static str,
    /// The unallocated grams CO2e.
    #[serde(rename = "grams")]
    pub grams_g: f64,
}

/// A warning located in the document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// Where in the document (`products.bert.lifetime`).
    pub path: String,
    /// What looks wrong.
    pub message: String,
}

/// Lifetimes shorter than this are probably a unit slip (`6m` is six minutes, not months).
pub(super) const SUSPICIOUSLY_SHORT_LIFETIME: Seconds = Seconds(86_400.0);

/// One job's energy and carbon by term; JSC, ec, ASC, JSCᵉ, ASCᵉ are sums of `terms`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReport {
    /// The job's name.
    pub name: String,
    /// Its IT energy (before PUE).
    pub energy: Joules,
    /// Its carbon by term.
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
    /// The product's name.
    pub name: String,
    /// Model, dataset or platform.
    pub kind: ProductType,
    /// Its EPC: measured, inherited and declared parts.
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

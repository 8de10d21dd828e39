//! Software products (models, datasets, platforms) as the core sees them, whatever declared
//! them: a scenario file, the ledger config, or a `SoftwareProduct` CRD.

use crate::domain::ProductType;
use crate::units::{Grams, Seconds};
use serde::{Deserialize, Serialize};

/// A weighted edge of the lineage DAG: `weight × EPC(product)` is inherited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEdge {
    /// Name of the parent product.
    pub product: String,
    /// In [0, 1]; validated by whoever builds the definition.
    pub weight: f64,
}

/// How a model's re-training carbon is spread over its inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RetrainingPolicy {
    /// Scenario form: a known carbon per interval split over a known number of inference jobs.
    PerInterval {
        /// Carbon of one re-training.
        carbon: Grams,
        /// How often it re-trains.
        interval: Seconds,
        /// Inference jobs per interval that share one re-training.
        jobs_per_interval: f64,
    },
    /// Ledger form: measured re-training carbon is amortised over this period of inference.
    AmortizeOver(Seconds),
}

/// One product definition. `declared` is carbon spent outside the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDef {
    /// Product name, unique across products (the `product` label value).
    pub name: String,
    /// Model, dataset or platform.
    pub kind: ProductType,
    /// Service life the EPC is amortised over.
    pub lifetime: Seconds,
    /// Parent models it inherits EPC from (fine-tuning, distillation).
    pub derived_from: Vec<LineageEdge>,
    /// Datasets it was trained on, inherited the same way.
    pub datasets: Vec<LineageEdge>,
    /// Carbon spent outside the cluster (e.g. pre-training elsewhere), added to the EPC.
    pub declared: Grams,
    /// Where the declared figure comes from (a paper, a model card), for the datasheet.
    pub declared_source: Option<String>,
    /// How re-training carbon reaches inference, if it re-trains.
    pub retraining: Option<RetrainingPolicy>,
}

impl ProductDef {
    /// A product with no lineage, nothing declared and no re-training.
    pub fn new(name: impl Into<String>, kind: ProductType, lifetime: Seconds) -> Self {
        Self {
            name: name.into(),
            kind,
            lifetime,
            derived_from: Vec::new(),
            datasets: Vec::new(),
            declared: Grams::ZERO,
            declared_source: None,
            retraining: None,
        }
    }

    /// Parents then datasets: every edge whose EPC this product inherits.
    pub fn inherits(&self) -> impl Iterator<Item = &LineageEdge> {
        self.derived_from.iter().chain(self.datasets.iter())
    }
}

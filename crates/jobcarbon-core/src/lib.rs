//! jobcarbon-core: units, the ASCᵉ formulas of Eilam et al. (HotCarbon '23), conserving
//! allocation, the product lineage DAG and offline scenario evaluation.
//!
//! Pure by design: no async runtime, no Kubernetes, no HTTP. Every other crate translates
//! the outside world into these types.

#![warn(missing_docs)]

mod advice;
pub mod allocation;
pub mod datasheet;
mod domain;
pub mod estimation;
pub mod formulas;
pub mod intensity;
mod lineage;
mod observation;
pub mod plan;
pub mod plan_file;
mod product;
pub mod quantity;
pub mod scenario;
mod terms;
pub mod units;
pub mod yaml;

pub use advice::{AdviceError, AdviceQuery, RegionForecast, Window, advise};
pub use domain::{Component, Phase, ProductType, Term, UnallocatedReason, WorkloadRef};
pub use lineage::{Exclusion, Lineage, LineageError};
pub use observation::{
    ClusterSnapshot, EnergyDelta, EnergyOwner, EnergyReading, NodeFacts, PodFacts, PodKey, Share,
};
pub use product::{LineageEdge, ProductDef, RetrainingPolicy};
pub use terms::Terms;
pub use units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Pue, Seconds, Watts};

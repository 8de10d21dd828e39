//! jobcarbon-core: units, the ASCᵉ formulas of Eilam et al. (HotCarbon '23), conserving
//! allocation, the product lineage DAG and offline scenario evaluation.
//!
//! Pure by design: no async runtime, no Kubernetes, no HTTP. Every other crate translates
//! the outside world into these types.

pub mod advice;
pub mod allocation;
pub mod datasheet;
pub mod domain;
pub mod estimation;
pub mod formulas;
pub mod intensity;
pub mod lineage;
pub mod observation;
pub mod plan;
pub mod plan_file;
pub mod product;
pub mod quantity;
pub mod scenario;
pub mod terms;
pub mod units;
pub mod yaml;

pub use domain::{Component, Phase, ProductType, Term, UnallocatedReason, WorkloadRef};
pub use observation::{
    ClusterSnapshot, EnergyDelta, EnergyOwner, EnergyReading, NodeFacts, PodFacts, PodKey, Share,
};
pub use product::{LineageEdge, ProductDef, RetrainingPolicy};
pub use terms::Terms;
pub use units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Pue, Seconds, Watts};

//! jobcarbon-kube: the Kubernetes edge. Pods, nodes and `SoftwareProduct` objects in,
//! [`jobcarbon_core::ClusterSnapshot`] out.
//!
//! - the `jobcarbon.io/*` label schema and platform selector ([`LabelSchema`],
//!   [`PlatformSelector`]; untrusted values are counted, never trusted);
//! - pod → the workload the user submitted ([`WorkloadRule`], [`ParentOwners`]);
//! - the pure layer, objects → [`jobcarbon_core::PodFacts`] / [`jobcarbon_core::NodeFacts`];
//! - the CRD ([`SoftwareProduct`]), its conversion to [`jobcarbon_core::ProductDef`] and set
//!   validation ([`validate_products`]);
//! - server-side-apply status writes ([`write_product_status`]);
//! - [`auth`]: who may read the HTTP surface (TokenReview + SubjectAccessReview, cached);
//! - [`ksm`]: kube-state-metrics history → pod facts, for backfill;
//! - the reflectors and [`ClusterState::snapshot`]; Lease-based leader election
//!   ([`LeaderElector`]).

#![warn(missing_docs)]

pub mod auth;
mod index;
pub mod ksm;
mod labels;
mod leader;
mod owner;
mod product;
mod resources;
mod slim;
mod status;
mod trim;
mod watch;

pub use index::{AttributionConfig, NodeTable};
pub use labels::{
    LabelIssue, LabelSchema, PHASE_LABEL, PRODUCT_LABEL, PlatformSelector, is_valid_product_name,
};
pub use leader::{Election, ElectionConfigError, LeaderElector, Leadership};
pub use owner::{ParentOwners, WorkloadRule, default_workload_rules};
pub use product::{
    EpcStatus, InferenceRequests, ProductSpec, ProductValidation, SoftwareProduct,
    SoftwareProductSpec, rfc3339, validate_products,
};
pub use slim::SlimPod;
pub use status::{
    StatusWriteError, epc_lowered, monotonic_epc, status_apply_body, write_product_status,
};
pub use trim::{trim_node, trim_pod};
pub use watch::{ClusterState, CrdPresence, WatchConfig, WatchErrorKind, WatchedResource};

/// The CRD as YAML, exactly as `jobcarbon crd` prints it and `deploy/crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&SoftwareProduct::crd())
}

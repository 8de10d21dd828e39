//! jobcarbon-kube: the Kubernetes edge. Pods, nodes and `SoftwareProduct` objects in,
//! [`jobcarbon_core::ClusterSnapshot`] out.
//!
//! - [`labels`]: the `jobcarbon.io/*` label schema and platform selector (untrusted values are
//!   counted, never trusted);
//! - [`owner`]: pod → the workload the user submitted (label rules, controller, parents);
//! - [`index`]: the pure layer, objects → [`jobcarbon_core::PodFacts`] / [`jobcarbon_core::NodeFacts`];
//! - [`product`]: the CRD, its conversion to [`jobcarbon_core::ProductDef`], set validation;
//! - [`status`]: server-side-apply status writes;
//! - [`auth`]: who may read the HTTP surface (TokenReview + SubjectAccessReview, cached);
//! - [`watch`]: the reflectors and [`watch::ClusterState::snapshot`].

pub mod auth;
pub mod index;
pub mod ksm;
pub mod labels;
pub mod leader;
pub mod owner;
pub mod product;
pub mod resources;
pub mod slim;
pub mod status;
pub mod trim;
pub mod watch;

pub use index::{AttributionConfig, IndexIssues, NodeTable, ResolvedPod};
pub use labels::{LabelIssue, LabelSchema, PlatformSelector};
pub use leader::{
    Decision, Election, ElectionConfigError, LeaderElector, LeaderError, Leadership, LeaseView,
    decide,
};
pub use owner::{
    LabelCondition, ParentOwners, Submitted, WorkloadRule, default_workload_rules,
    resolve_submitted,
};
pub use product::{
    EpcStatus, InferenceRequests, ProductCondition, ProductError, ProductSpec, ProductValidation,
    SoftwareProduct, SoftwareProductSpec, SoftwareProductStatus, validate_products,
};
pub use slim::SlimPod;
pub use status::{FIELD_MANAGER, status_apply_body, write_product_status};
pub use watch::{ClusterState, CrdPresence, WatchConfig, WatchHealth};

/// The CRD as YAML, exactly as `jobcarbon crd` prints it and `deploy/crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&SoftwareProduct::crd())
}

//! Domain vocabulary shared by every crate: phases, energy components, carbon terms,
//! workload identity and unallocated reasons. Names here are part of the exported interface
//! (DESIGN §4 and §8), so each enum has one canonical string form.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Life-cycle phase of a job (label `jobcarbon.io/phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Data preparation, which builds a dataset product.
    DataPrep,
    /// Exploratory runs (sweeps, notebooks) that lead to a product.
    Experimentation,
    /// Training a model from scratch.
    Training,
    /// Fine-tuning a parent model.
    FineTuning,
    /// Distilling a parent (teacher) model into a smaller one.
    Distillation,
    /// Periodic re-training of a deployed model, amortised over the serving jobs of its interval.
    Retraining,
    /// Serving a model; these jobs carry the amortised product term.
    Inference,
    /// No phase label on the pod.
    Unlabelled,
    /// A phase label whose value is not one of the known phases.
    Invalid,
}

impl Phase {
    /// Every phase a label can name, in life-cycle order (without `Unlabelled`/`Invalid`).
    pub const LABELLED: [Phase; 7] = [
        Phase::DataPrep,
        Phase::Experimentation,
        Phase::Training,
        Phase::FineTuning,
        Phase::Distillation,
        Phase::Retraining,
        Phase::Inference,
    ];

    /// Every phase, as exported: the labelled ones in life-cycle order, then `Unlabelled` and
    /// `Invalid`.
    pub const ALL: [Phase; 9] = [
        Phase::DataPrep,
        Phase::Experimentation,
        Phase::Training,
        Phase::FineTuning,
        Phase::Distillation,
        Phase::Retraining,
        Phase::Inference,
        Phase::Unlabelled,
        Phase::Invalid,
    ];

    /// The label value (kebab-case), also the `phase` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::DataPrep => "data-prep",
            Phase::Experimentation => "experimentation",
            Phase::Training => "training",
            Phase::FineTuning => "fine-tuning",
            Phase::Distillation => "distillation",
            Phase::Retraining => "retraining",
            Phase::Inference => "inference",
            Phase::Unlabelled => "unlabelled",
            Phase::Invalid => "invalid",
        }
    }

    /// Jobs whose carbon builds their product's EPC (creating a dataset or a model).
    pub const fn builds_product(self) -> bool {
        matches!(
            self,
            Phase::DataPrep
                | Phase::Experimentation
                | Phase::Training
                | Phase::FineTuning
                | Phase::Distillation
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that names no known phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown phase {0:?}: expected one of data-prep, experimentation, training, fine-tuning, distillation, retraining, inference"
)]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::LABELLED
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_owned()))
    }
}

/// Where measured energy came from (label `component` of the energy metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// CPU package energy.
    Cpu,
    /// Memory (DRAM) energy.
    Dram,
    /// GPU energy.
    Gpu,
    /// Other platform energy a source reports (e.g. Kepler's `other`).
    Other,
    /// The workload's share of node idle energy, assigned by the ledger's idle policy.
    IdleShare,
}

impl Component {
    /// Every component, in the order metrics list them.
    pub const ALL: [Component; 5] = [
        Component::Cpu,
        Component::Dram,
        Component::Gpu,
        Component::Other,
        Component::IdleShare,
    ];
    /// The `component` metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Component::Cpu => "cpu",
            Component::Dram => "dram",
            Component::Gpu => "gpu",
            Component::Other => "other",
            Component::IdleShare => "idle_share",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The additive terms of ASCᵉ (label `term` of the carbon metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// JSC: energy × PUE × intensity.
    Operational,
    /// ec: embodied hardware amortised over its lifetime, by reserved share.
    EmbodiedSystem,
    /// Platform operational overhead split over concurrent jobs.
    PlatformOperational,
    /// The platform's own EPC amortised over its lifetime and concurrent jobs.
    PlatformEmbodied,
    /// Inference only: the served model's EPC amortised over its lifetime and concurrent servers.
    ModelEpc,
    /// Inference only: the model's re-training pool split over inference.
    Retraining,
}

impl Term {
    /// Every term, in the order of the ASCᵉ sum.
    pub const ALL: [Term; 6] = [
        Term::Operational,
        Term::EmbodiedSystem,
        Term::PlatformOperational,
        Term::PlatformEmbodied,
        Term::ModelEpc,
        Term::Retraining,
    ];
    /// The `term` metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Term::Operational => "operational",
            Term::EmbodiedSystem => "embodied_system",
            Term::PlatformOperational => "platform_operational",
            Term::PlatformEmbodied => "platform_embodied",
            Term::ModelEpc => "model_epc",
            Term::Retraining => "retraining",
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why carbon could not be given to a job or product. Each is a value of the
/// `reason` label on `jobcarbon_unallocated_grams_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnallocatedReason {
    /// Node idle energy under the `unallocated` idle policy, or with no workload to share it.
    NodeIdle,
    /// Non-pod work on a node (Kepler `system_processes`).
    SystemProcesses,
    /// Energy of a container or GPU that no known pod owns.
    UnknownPod,
    /// GPU energy on a node where pods hold GPUs, on a line that names none of them (an
    /// exporter without pod mapping, a finished pod's device).
    GpuUnmapped,
    /// Platform overhead or platform EPC in an interval with no job to carry it.
    NoConcurrentJobs,
    /// Embodied hardware time not reserved by any job.
    UnreservedCapacity,
    /// A re-training pool or model EPC share with no inference job to take it.
    NoInference,
    /// A product that failed validation (unknown reference, cycle, bad weight).
    InvalidProduct,
    /// Rounding remainder of a split.
    Rounding,
}

impl UnallocatedReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [UnallocatedReason; 9] = [
        UnallocatedReason::NodeIdle,
        UnallocatedReason::SystemProcesses,
        UnallocatedReason::UnknownPod,
        UnallocatedReason::GpuUnmapped,
        UnallocatedReason::NoConcurrentJobs,
        UnallocatedReason::UnreservedCapacity,
        UnallocatedReason::NoInference,
        UnallocatedReason::InvalidProduct,
        UnallocatedReason::Rounding,
    ];
    /// The `reason` metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            UnallocatedReason::NodeIdle => "node_idle",
            UnallocatedReason::SystemProcesses => "system_processes",
            UnallocatedReason::UnknownPod => "unknown_pod",
            UnallocatedReason::GpuUnmapped => "gpu_unmapped",
            UnallocatedReason::NoConcurrentJobs => "no_concurrent_jobs",
            UnallocatedReason::UnreservedCapacity => "unreserved_capacity",
            UnallocatedReason::NoInference => "no_inference",
            UnallocatedReason::InvalidProduct => "invalid_product",
            UnallocatedReason::Rounding => "rounding",
        }
    }
}

impl fmt::Display for UnallocatedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind of software product (CRD `spec.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductType {
    /// A trained model (EPC inherited by fine-tunes and distillations, amortised by inference).
    Model,
    /// A dataset (EPC built by data preparation, inherited by the models trained on it).
    Dataset,
    /// A shared platform (e.g. a serving stack) whose operation is shared by its users.
    Platform,
}

impl ProductType {
    /// The CRD `spec.type` value and `product_type` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProductType::Model => "model",
            ProductType::Dataset => "dataset",
            ProductType::Platform => "platform",
        }
    }
}

impl fmt::Display for ProductType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The controlling workload of a pod: `Job/bert-train`, `Deployment/serve`, or `Pod/x` for a bare pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    /// Namespace of the pod and of its workload.
    pub namespace: String,
    /// `Kind/name`, the value of the `workload` label.
    pub workload: String,
}

impl WorkloadRef {
    /// A reference to `kind/name` in `namespace`.
    pub fn new(namespace: impl Into<String>, kind: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            workload: format!("{kind}/{name}"),
        }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.workload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_round_trips_through_its_label_value() {
        for p in Phase::LABELLED {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(p));
        }
        assert!("Training".parse::<Phase>().is_err());
    }

    #[test]
    fn experimentation_builds_products_inference_does_not() {
        assert!(Phase::Experimentation.builds_product());
        assert!(!Phase::Inference.builds_product());
        assert!(!Phase::Retraining.builds_product());
    }
}

//! Resolved settings of the accounting: what the pure interval function needs from the config.

use jobcarbon_core::estimation::{
    CCF_UNKNOWN, CpuCoefficients, instance_microarchitecture, microarchitecture,
};
use jobcarbon_core::intensity::Signal;
use jobcarbon_core::{Grams, GramsPerKwh, GramsPerSecond, NodeFacts, Pue, Seconds};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How node idle energy reaches workloads (Kepler keeps idle at node level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdlePolicy {
    /// In proportion to each pod's measured energy on the node.
    #[default]
    ByEnergy,
    /// Equally over the pods running on the node.
    Even,
    /// Not shared: booked as `unallocated{reason="node_idle"}`.
    Unallocated,
}

/// How platform taxes are split over concurrent jobs (DESIGN §2: equal, or weighted by energy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlatformSplit {
    #[default]
    /// Overhead split equally over the jobs running.
    Equal,
    /// Overhead split by each job's energy.
    ByEnergy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Where a region's grid intensity comes from.
pub enum IntensitySpec {
    /// A fixed value, gCO2e/kWh.
    Static(GramsPerKwh),
    /// A live PromQL value, evaluated at each interval's end (also when backfilling); the
    /// last good value is kept when the query fails.
    Live {
        /// The PromQL expression.
        promql: String,
        /// Used until the first good value, gCO2e/kWh.
        fallback: GramsPerKwh,
        #[serde(default)]
        /// Average or marginal intensity.
        signal: Signal,
    },
    /// A live provider (`electricity-maps`, `watttime`), attached to the ledger with
    /// `Ledger::with_intensity_providers`; its history books past intervals.
    Provider {
        /// Provider name.
        provider: String,
        /// Average or marginal intensity.
        signal: Signal,
        /// Used until the first good value, gCO2e/kWh.
        fallback: GramsPerKwh,
    },
}

impl IntensitySpec {
    /// The kind of figure booked: static figures and mixes are averages.
    pub fn signal(&self) -> Signal {
        match self {
            IntensitySpec::Static(_) => Signal::Average,
            IntensitySpec::Live { signal, .. } | IntensitySpec::Provider { signal, .. } => *signal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A region: PUE and grid intensity.
pub struct RegionDef {
    /// Power usage effectiveness.
    pub pue: Pue,
    /// Grid carbon intensity.
    pub intensity: IntensitySpec,
}

/// Embodied hardware of the nodes whose labels match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemDef {
    /// Node labels a node must have to be this system.
    pub matches: BTreeMap<String, String>,
    /// Embodied carbon of one node, gCO2e.
    pub embodied: Grams,
    /// Added per GPU of the node.
    pub per_gpu: Grams,
    /// Service lifetime, s.
    pub lifetime: Seconds,
}

impl SystemDef {
    /// The node's embodied carbon: the base plus its GPUs.
    pub fn embodied_of(&self, node: &NodeFacts) -> Grams {
        self.embodied + self.per_gpu * f64::from(node.gpu_count)
    }

    /// Whether `node` has every label of `matches`.
    pub fn matches(&self, node: &NodeFacts) -> bool {
        self.matches
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformDef {
    /// Namespaces whose pods are platform overhead (in addition to what the snapshot marks).
    pub namespaces: Vec<String>,
    /// Declared overhead outside the cluster (management servers), as a rate.
    pub overhead: GramsPerSecond,
    pub epc: Grams,
    pub lifetime: Seconds,
    pub split: PlatformSplit,
    /// The `type: platform` SoftwareProduct that built the platform: its EPC (as booked at the
    /// previous interval) replaces `epc`.
    #[serde(default)]
    pub product: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// How the ledger books (DESIGN §2): interval, regions, systems, platform and limits.
pub struct Settings {
    /// Booking interval, s.
    pub interval: Seconds,
    /// How node idle energy is treated.
    pub node_idle: IdlePolicy,
    /// Regions by name.
    pub regions: BTreeMap<String, RegionDef>,
    /// Region of nodes that match none.
    pub default_region: String,
    /// First match wins; a node matching none has no embodied carbon booked.
    pub systems: Vec<SystemDef>,
    /// Platform overhead and embodied cost.
    pub platform: PlatformDef,
    /// Window of the per-request gauge, s.
    pub inference_window: Seconds,
    /// How long a finished pod keeps its own series, s.
    pub grace_period: Seconds,
    /// Pods with their own series at most (more are rolled up).
    pub max_pod_series: usize,
    /// Export one workload series per pod (`exporter.podSeries`), not per workload.
    #[serde(default)]
    pub pod_series: bool,
    /// Counter series unseen for longer are forgotten (`energy.counterRetention`).
    #[serde(default = "default_counter_retention")]
    pub counter_retention: Seconds,
    /// Coefficients of the estimated CPU and memory energy source.
    #[serde(default)]
    pub estimation: EstimationSettings,
}

/// The estimated source's coefficients (`estimation:` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimationSettings {
    /// Node labels → coefficients; first match wins.
    pub cpu: Vec<(BTreeMap<String, String>, CpuCoefficients)>,
    pub memory_watts_per_gb: f64,
}

impl Default for EstimationSettings {
    fn default() -> Self {
        Self {
            cpu: Vec::new(),
            memory_watts_per_gb: jobcarbon_core::estimation::MEMORY_WATTS_PER_GB,
        }
    }
}

impl EstimationSettings {
    /// A node's CPU coefficients: the first matching entry, else its instance family's
    /// micro-architecture, else CCF's average for unknown hardware.
    pub fn cpu_for(&self, node: &NodeFacts) -> CpuCoefficients {
        let matched = self
            .cpu
            .iter()
            .find(|(m, _)| m.iter().all(|(k, v)| node.labels.get(k) == Some(v)))
            .map(|(_, c)| *c);
        matched
            .or_else(|| {
                let family = instance_microarchitecture(node.instance_type.as_deref()?)?;
                microarchitecture(family)
            })
            .unwrap_or(CCF_UNKNOWN)
    }
}

fn default_counter_retention() -> Seconds {
    Seconds::from_hours(24.0)
}

impl Settings {
    /// Settings with one static region (`default`) and no systems, platform or products:
    /// a base for tests and the demo to adjust.
    pub fn simple(pue: Pue, intensity: GramsPerKwh) -> Self {
        Self {
            interval: Seconds(30.0),
            node_idle: IdlePolicy::ByEnergy,
            regions: BTreeMap::from([(
                "default".to_owned(),
                RegionDef {
                    pue,
                    intensity: IntensitySpec::Static(intensity),
                },
            )]),
            default_region: "default".to_owned(),
            systems: Vec::new(),
            platform: PlatformDef {
                namespaces: Vec::new(),
                overhead: GramsPerSecond::ZERO,
                epc: Grams::ZERO,
                lifetime: Seconds::from_years(6.0),
                split: PlatformSplit::Equal,
                product: None,
            },
            inference_window: Seconds::from_hours(1.0),
            grace_period: Seconds::from_minutes(10.0),
            max_pod_series: 10_000,
            pod_series: false,
            counter_retention: default_counter_retention(),
            estimation: EstimationSettings::default(),
        }
    }

    /// The system `node` is (the first whose labels match).
    pub fn system_for(&self, node: &NodeFacts) -> Option<&SystemDef> {
        self.systems.iter().find(|s| s.matches(node))
    }
}

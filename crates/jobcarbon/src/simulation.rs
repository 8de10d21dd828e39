//! The demo's built-in cluster: a deterministic life cycle of one model family, as pure
//! functions of simulated time, behind the same traits as the real sources (energy counters,
//! request counters, a live grid intensity, and cluster snapshots).
//!
//! Timeline (hours from the start, then repeating daily where noted):
//! 0–1 dataset preparation (wikipedia-en) · 1–7 pre-training (bert-base, 2 × 8 GPUs) ·
//! 7–9 distillation (distilbert) · from 9 an inference Deployment serving distilbert ·
//! every day from 12 for 1 h: re-training of distilbert. Platform pods run throughout.

use async_trait::async_trait;
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyOwner, EnergyReading, Joules, NodeFacts, Phase, PodFacts,
    PodKey, Seconds,
};
use jobcarbon_ledger::{ClusterError, ClusterSource};
use jobcarbon_telemetry::{CountSample, EnergySource, MetricQuery, RequestQuery, SourceError};
use std::collections::BTreeMap;
use std::f64::consts::TAU;

/// Simulated time starts here (2026-01-01T00:00:00Z), so timestamps look real.
pub const EPOCH: f64 = 1_767_225_600.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
/// Completed pods stay visible (not running) this long, as Kubernetes keeps finished Job pods.
const COMPLETED_VISIBLE: f64 = 120.0;

#[derive(Debug, Clone)]
pub struct SimPod {
    namespace: &'static str,
    name: String,
    kind: &'static str,
    workload: String,
    phase: Phase,
    product: Option<&'static str>,
    node: &'static str,
    start: f64,
    end: f64,
    cpu_w: f64,
    dram_w: f64,
    gpu_w: f64,
    reserved_share: f64,
    platform: bool,
    /// Requests per second per pod (inference only), before the daily swing.
    requests_per_s: f64,
}

impl SimPod {
    fn running(&self, t: f64) -> bool {
        self.start <= t && t < self.end
    }
    fn visible(&self, t: f64) -> bool {
        self.start <= t && t < self.end + COMPLETED_VISIBLE
    }
    fn active_seconds(&self, t: f64) -> f64 {
        (t.min(self.end) - self.start).max(0.0)
    }
    fn key(&self) -> PodKey {
        PodKey::new(self.namespace, self.name.clone())
    }
}

struct SimNode {
    name: &'static str,
    instance_type: &'static str,
    region: &'static str,
    gpus: u32,
    idle_w: f64,
    system_w: f64,
    idle_gpu_w: f64,
}

const NODES: [SimNode; 3] = [
    SimNode {
        name: "gpu-a",
        instance_type: "p5.48xlarge",
        region: "us-south",
        gpus: 8,
        idle_w: 900.0,
        system_w: 40.0,
        idle_gpu_w: 70.0,
    },
    SimNode {
        name: "gpu-b",
        instance_type: "p5.48xlarge",
        region: "us-south",
        gpus: 8,
        idle_w: 900.0,
        system_w: 40.0,
        idle_gpu_w: 70.0,
    },
    SimNode {
        name: "cpu-1",
        instance_type: "m6i.4xlarge",
        region: "eu-west",
        gpus: 0,
        idle_w: 90.0,
        system_w: 10.0,
        idle_gpu_w: 0.0,
    },
];

/// The simulated cluster. Everything is a pure function of `at`.
#[derive(Debug, Clone, Default)]
pub struct Simulation;

#[allow(clippy::too_many_arguments)]
fn job(
    namespace: &'static str,
    name: String,
    kind: &'static str,
    workload: String,
    phase: Phase,
    product: Option<&'static str>,
    node: &'static str,
    span: (f64, f64),
    watts: (f64, f64, f64),
    reserved_share: f64,
) -> SimPod {
    SimPod {
        namespace,
        name,
        kind,
        workload,
        phase,
        product,
        node,
        start: span.0,
        end: span.1,
        cpu_w: watts.0,
        dram_w: watts.1,
        gpu_w: watts.2,
        reserved_share,
        platform: false,
        requests_per_s: 0.0,
    }
}

/// The cluster's own services, running from the start.
fn platform_pods() -> Vec<SimPod> {
    let forever = f64::INFINITY;
    vec![
        SimPod {
            platform: true,
            ..job(
                "kube-system",
                "coredns-6d4b75cb6d-x2k9p".into(),
                "Deployment",
                "coredns".into(),
                Phase::Unlabelled,
                None,
                "cpu-1",
                (0.0, forever),
                (12.0, 3.0, 0.0),
                0.05,
            )
        },
        SimPod {
            platform: true,
            ..job(
                "monitoring",
                "prometheus-0".into(),
                "StatefulSet",
                "prometheus".into(),
                Phase::Unlabelled,
                None,
                "cpu-1",
                (0.0, forever),
                (35.0, 8.0, 0.0),
                0.15,
            )
        },
    ]
}

/// Data preparation, pre-training and distillation: one run each, over the first nine hours.
fn batch_jobs() -> Vec<SimPod> {
    vec![
        job(
            "data",
            "wiki-prep-7xk2q".into(),
            "Job",
            "wiki-prep".into(),
            Phase::DataPrep,
            Some("wikipedia-en"),
            "cpu-1",
            (0.0, HOUR),
            (160.0, 25.0, 0.0),
            0.6,
        ),
        job(
            "ml",
            "bert-pretrain-0-h8d2k".into(),
            "Job",
            "bert-pretrain".into(),
            Phase::Training,
            Some("bert-base"),
            "gpu-a",
            (HOUR, 7.0 * HOUR),
            (320.0, 60.0, 8.0 * 620.0),
            1.0,
        ),
        job(
            "ml",
            "bert-pretrain-1-q7c4m".into(),
            "Job",
            "bert-pretrain".into(),
            Phase::Training,
            Some("bert-base"),
            "gpu-b",
            (HOUR, 7.0 * HOUR),
            (320.0, 60.0, 8.0 * 620.0),
            1.0,
        ),
        job(
            "ml",
            "distilbert-distill-m2x8s".into(),
            "Job",
            "distilbert-distill".into(),
            Phase::Distillation,
            Some("distilbert"),
            "gpu-a",
            (7.0 * HOUR, 9.0 * HOUR),
            (250.0, 50.0, 8.0 * 450.0),
            1.0,
        ),
    ]
}

/// Two inference replicas from hour nine on.
fn serving_pods() -> Vec<SimPod> {
    let forever = f64::INFINITY;
    let mut pods = Vec::new();
    for (i, suffix) in ["5f9c8-abcde", "5f9c8-fghij"].iter().enumerate() {
        pods.push(SimPod {
            requests_per_s: 40.0,
            ..job(
                "serving",
                format!("distilbert-serve-{suffix}"),
                "Deployment",
                "distilbert-serve".into(),
                Phase::Inference,
                Some("distilbert"),
                "gpu-b",
                (9.0 * HOUR + i as f64 * 60.0, forever),
                (55.0, 12.0, 230.0),
                0.125,
            )
        });
    }
    pods
}

/// A daily re-training Job at noon, for every day that has reached noon by `t`.
fn retrain_jobs(t: f64) -> Vec<SimPod> {
    let mut pods = Vec::new();
    let days = (t / DAY).floor().max(0.0) as u64;
    for day in 0..=days {
        let start = day as f64 * DAY + 12.0 * HOUR;
        if start > t {
            break;
        }
        pods.push(job(
            "ml",
            format!("distilbert-retrain-d{day}-0"),
            "Job",
            format!("distilbert-retrain-d{day}"),
            Phase::Retraining,
            Some("distilbert"),
            "gpu-a",
            (start, start + HOUR),
            (240.0, 45.0, 8.0 * 480.0),
            1.0,
        ));
    }
    pods
}

impl Simulation {
    /// Every pod that exists at some time up to `t` (seconds since [`EPOCH`]).
    fn pods(&self, t: f64) -> Vec<SimPod> {
        let mut pods = platform_pods();
        pods.extend(batch_jobs());
        pods.extend(serving_pods());
        pods.extend(retrain_jobs(t));
        pods
    }

    fn nodes(&self) -> Vec<NodeFacts> {
        NODES
            .iter()
            .map(|n| NodeFacts {
                name: n.name.to_owned(),
                region: Some(n.region.to_owned()),
                instance_type: Some(n.instance_type.to_owned()),
                gpu_count: n.gpus,
                gpu_model: (n.gpus > 0).then(|| "NVIDIA H100 80GB HBM3".to_owned()),
                labels: BTreeMap::from([
                    (
                        "node.kubernetes.io/instance-type".to_owned(),
                        n.instance_type.to_owned(),
                    ),
                    (
                        "topology.kubernetes.io/region".to_owned(),
                        n.region.to_owned(),
                    ),
                ]),
                cpus: 0.0,
            })
            .collect()
    }

    fn cumulative_requests_of(pod: &SimPod, t: f64) -> f64 {
        // rate(t) = r × (1 + ½ sin(2πt/day)); integrated in closed form.
        let s = pod.start;
        let e = t.min(pod.end);
        if e <= s || pod.requests_per_s <= 0.0 {
            return 0.0;
        }
        let r = pod.requests_per_s;
        r * (e - s) - r * 0.5 * DAY / TAU * ((TAU * e / DAY).cos() - (TAU * s / DAY).cos())
    }

    /// Grid intensity of the live region: a daily swing around 260 gCO2e/kWh.
    pub fn live_intensity(t: f64) -> f64 {
        260.0 + 90.0 * (TAU * (t / DAY - 0.25)).sin()
    }

    /// Simulated seconds since [`EPOCH`].
    fn sim(at: Seconds) -> f64 {
        (at.value() - EPOCH).max(0.0)
    }
}

#[async_trait]
impl ClusterSource for Simulation {
    async fn snapshot(&self, at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        let t = Self::sim(at);
        let pods = self
            .pods(t)
            .into_iter()
            .filter(|p| p.visible(t))
            .map(|p| {
                PodFacts::new(p.namespace, &p.name)
                    .uid(&format!("sim-{}", p.name))
                    .workload(p.kind, &p.workload)
                    .phase(p.phase)
                    .product(p.product)
                    .node(p.node)
                    .platform(p.platform)
                    .reserved_share(p.reserved_share)
                    .running(p.running(t))
                    .created(Seconds(EPOCH + p.start))
            })
            .collect();
        Ok(ClusterSnapshot {
            pods,
            nodes: self.nodes(),
            // Products come from the demo config, as on a cluster without the CRD.
            products: Vec::new(),
            invalid_products: Vec::new(),
        })
    }
}

/// Kepler-like CPU and DRAM counters per pod, node idle and system processes.
#[derive(Debug, Clone, Default)]
pub struct SimKepler;

/// The cloud VM without RAPL: Kepler reports nothing there, the estimated source does.
pub const ESTIMATED_NODE: &str = "cpu-1";
/// vCPUs of [`ESTIMATED_NODE`] (an m6i.4xlarge).
const ESTIMATED_NODE_VCPUS: f64 = 16.0;
/// The simulation's truth on the VM: a busy vCPU draws this many watts above idle, and a pod's
/// `dram_w` is its working set at this many W/GB. The estimate does not know them.
const SIM_WATTS_PER_BUSY_VCPU: f64 = 4.0;
const SIM_DRAM_WATTS_PER_GB: f64 = 0.3;

/// cAdvisor-like utilisation on [`ESTIMATED_NODE`] through the CCF model (the `estimated`
/// source of `energy.cpu: auto`), as the ledger's `EstimatedSource` books it.
#[derive(Debug, Clone, Default)]
pub struct SimEstimated;

/// A pod's estimated CPU and memory joules at `t`, and the node's estimated idle joules.
pub fn estimated_energy(p: &SimPod, t: f64) -> (f64, f64) {
    let c = jobcarbon_core::estimation::CCF_UNKNOWN;
    let busy_vcpu_seconds = p.cpu_w / SIM_WATTS_PER_BUSY_VCPU * p.active_seconds(t);
    let cpu = jobcarbon_core::estimation::cpu_dynamic_energy(busy_vcpu_seconds, c);
    let gb_seconds = p.dram_w / SIM_DRAM_WATTS_PER_GB * p.active_seconds(t);
    let dram = jobcarbon_core::estimation::memory_energy(
        gb_seconds,
        jobcarbon_core::estimation::MEMORY_WATTS_PER_GB,
    );
    (cpu.value(), dram.value())
}

#[async_trait]
impl EnergySource for SimEstimated {
    fn name(&self) -> &str {
        "estimated"
    }
    fn counters_start_with_pod(&self) -> bool {
        true
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let t = Simulation::sim(at);
        let mut out = Vec::new();
        for p in Simulation
            .pods(t)
            .iter()
            .filter(|p| p.visible(t) && p.node == ESTIMATED_NODE)
        {
            let (cpu, dram) = estimated_energy(p, t);
            for (component, joules) in [(Component::Cpu, cpu), (Component::Dram, dram)] {
                out.push(
                    reading("estimated", p.node, pod_owner(p), component, joules, at).estimated(),
                );
            }
        }
        let idle = jobcarbon_core::estimation::cpu_idle_energy(
            ESTIMATED_NODE_VCPUS,
            Seconds(t),
            jobcarbon_core::estimation::CCF_UNKNOWN,
        );
        out.push(
            reading(
                "estimated",
                ESTIMATED_NODE,
                EnergyOwner::NodeIdle,
                Component::Cpu,
                idle.value(),
                at,
            )
            .estimated(),
        );
        Ok(out)
    }
}

/// dcgm-exporter-like GPU counters per pod, and idle GPUs no pod holds.
#[derive(Debug, Clone, Default)]
pub struct SimDcgm;

fn reading(
    source: &str,
    node: &str,
    owner: EnergyOwner,
    component: Component,
    joules: f64,
    at: Seconds,
) -> EnergyReading {
    let who = match &owner {
        EnergyOwner::Pod { key, .. } => key.to_string(),
        EnergyOwner::NodeIdle => "idle".to_owned(),
        EnergyOwner::NodeSystem => "system".to_owned(),
        EnergyOwner::UnmappedGpu { uuid } => uuid.clone(),
        EnergyOwner::NodeActive => "active".to_owned(),
    };
    EnergyReading::new(
        format!("{source}/{node}/{who}/{component}"),
        node,
        owner,
        component,
        Joules(joules),
        at,
    )
}

fn pod_owner(p: &SimPod) -> EnergyOwner {
    EnergyOwner::Pod {
        key: p.key(),
        container: "main".to_owned(),
    }
}

#[async_trait]
impl EnergySource for SimKepler {
    fn name(&self) -> &str {
        "kepler"
    }
    fn counters_start_with_pod(&self) -> bool {
        true
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let t = Simulation::sim(at);
        let mut out = Vec::new();
        let metered = |node: &str| node != ESTIMATED_NODE;
        for p in Simulation
            .pods(t)
            .iter()
            .filter(|p| p.visible(t) && metered(p.node))
        {
            let secs = p.active_seconds(t);
            out.push(reading(
                "kepler",
                p.node,
                pod_owner(p),
                Component::Cpu,
                p.cpu_w * secs,
                at,
            ));
            out.push(reading(
                "kepler",
                p.node,
                pod_owner(p),
                Component::Dram,
                p.dram_w * secs,
                at,
            ));
        }
        for n in NODES.iter().filter(|n| metered(n.name)) {
            out.push(reading(
                "kepler",
                n.name,
                EnergyOwner::NodeIdle,
                Component::Cpu,
                n.idle_w * t,
                at,
            ));
            out.push(reading(
                "kepler",
                n.name,
                EnergyOwner::NodeSystem,
                Component::Other,
                n.system_w * t,
                at,
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl EnergySource for SimDcgm {
    fn name(&self) -> &str {
        "dcgm"
    }
    fn counters_start_with_pod(&self) -> bool {
        true
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let t = Simulation::sim(at);
        let pods = Simulation.pods(t);
        let mut out = Vec::new();
        for p in pods.iter().filter(|p| p.visible(t) && p.gpu_w > 0.0) {
            out.push(reading(
                "dcgm",
                p.node,
                pod_owner(p),
                Component::Gpu,
                p.gpu_w * p.active_seconds(t),
                at,
            ));
        }
        // Idle GPUs: each node's GPUs not held by a running pod draw idle power. The counter
        // integrates exactly over the piecewise-constant occupancy of the timeline.
        for n in NODES.iter().filter(|n| n.gpus > 0) {
            let mut busy_gpu_seconds = 0.0;
            for p in pods.iter().filter(|p| p.node == n.name && p.gpu_w > 0.0) {
                let gpus = if p.reserved_share >= 1.0 {
                    n.gpus as f64
                } else {
                    1.0
                };
                busy_gpu_seconds += gpus * p.active_seconds(t);
            }
            let idle_gpu_seconds = (n.gpus as f64 * t - busy_gpu_seconds).max(0.0);
            out.push(reading(
                "dcgm",
                n.name,
                EnergyOwner::UnmappedGpu {
                    uuid: format!("{}-idle-gpus", n.name),
                },
                Component::Gpu,
                n.idle_gpu_w * idle_gpu_seconds,
                at,
            ));
        }
        Ok(out)
    }
}

/// Request counters (vLLM preset) and the live grid intensity.
#[derive(Debug, Clone, Default)]
pub struct SimMetrics;

#[async_trait]
impl MetricQuery for SimMetrics {
    async fn request_series(
        &self,
        query: &RequestQuery,
        at: Seconds,
    ) -> Result<Vec<CountSample>, SourceError> {
        let t = Simulation::sim(at);
        let namespace = match query {
            RequestQuery::Preset { matchers, .. } => matchers.get("namespace").cloned(),
            RequestQuery::Promql(q) => {
                return Err(SourceError::Unsupported {
                    source_name: "simulation".into(),
                    reason: format!("the demo answers preset request counters only, not {q:?}"),
                });
            }
        };
        // One vLLM counter per serving pod, as each replica exports its own.
        Ok(Simulation
            .pods(t)
            .iter()
            .filter(|p| p.visible(t) && p.requests_per_s > 0.0)
            .filter(|p| namespace.as_deref().is_none_or(|ns| ns == p.namespace))
            .map(|p| CountSample {
                series: format!("vllm/{}", p.key()),
                pod: Some(p.key()),
                value: Simulation::cumulative_requests_of(p, t),
                at,
            })
            .collect())
    }

    async fn scalar(&self, _promql: &str, at: Seconds) -> Result<f64, SourceError> {
        Ok(Simulation::live_intensity(Simulation::sim(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers docs/telemetry.md quotes: the estimate against the simulation's truth.
    #[test]
    fn estimated_against_simulated_truth() {
        let t = 2.0 * HOUR;
        let prep = Simulation
            .pods(t)
            .into_iter()
            .find(|p| p.name == "wiki-prep-7xk2q")
            .expect("the data-prep pod");
        let (cpu, dram) = estimated_energy(&prep, t);
        let truth_cpu = prep.cpu_w * prep.active_seconds(t);
        let truth_dram = prep.dram_w * prep.active_seconds(t);
        assert!((truth_cpu - 576_000.0).abs() < 1e-6);
        assert!((cpu - 397_440.0).abs() < 1e-6, "{cpu}");
        assert!((truth_dram - 90_000.0).abs() < 1e-6);
        assert!((dram - 117_600.0).abs() < 1e-6, "{dram}");
    }

    #[test]
    fn timeline_runs_every_phase_within_a_day() {
        let sim = Simulation;
        let phases: std::collections::BTreeSet<Phase> =
            sim.pods(DAY).iter().map(|p| p.phase).collect();
        for p in [
            Phase::DataPrep,
            Phase::Training,
            Phase::Distillation,
            Phase::Inference,
            Phase::Retraining,
        ] {
            assert!(phases.contains(&p), "{p}");
        }
    }

    #[test]
    fn request_counter_is_monotonic() {
        let p = &Simulation
            .pods(DAY)
            .into_iter()
            .find(|p| p.requests_per_s > 0.0)
            .unwrap();
        let mut last = 0.0;
        for i in 0..200 {
            let c = Simulation::cumulative_requests_of(p, i as f64 * 600.0);
            assert!(c >= last);
            last = c;
        }
        assert!(last > 0.0);
    }
}

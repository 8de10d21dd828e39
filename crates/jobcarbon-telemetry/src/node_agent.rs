//! The node agent's accounting (`jobcarbon node`): GPU samples + pod-resources assignments →
//! monotonic per-(GPU, container) energy counters and power gauges, ready to export.
//!
//! - Each GPU's energy counter (or integrated power, where the counter is unsupported) goes
//!   through a [`CounterTracker`], so a driver reload (counter back to 0) is a reset, not
//!   negative energy, and the exported counters only grow.
//! - A GPU's delta is split equally over the containers holding it (time-slicing replicas and
//!   MIG instances map to the parent GPU); a GPU no container holds books to empty
//!   `namespace`/`pod`/`container` labels (idle), so Σ exported = Σ GPU energy.
//! - Series of containers that stopped holding a GPU are kept for `retention` so Prometheus
//!   scrapes their final value, then dropped.

use crate::counters::{CounterTracker, FirstSight};
use crate::gpu::{GpuBackend, GpuError, GpuFault, GpuSample};
use crate::podresources::GpuAssignment;
use jobcarbon_core::allocation::split_equal;
use jobcarbon_core::{
    Component, EnergyOwner, EnergyReading, Joules, Seconds, UnallocatedReason, Watts,
};
use std::collections::BTreeMap;

/// Labels of one exported series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuSeriesLabels {
    /// GPU (or MIG instance) UUID.
    pub gpu_uuid: String,
    /// GPU product name.
    pub gpu_model: String,
    /// Empty for a GPU no container holds.
    pub namespace: String,
    /// Pod holding the GPU (empty for none).
    pub pod: String,
    /// Container holding the GPU (empty for none).
    pub container: String,
    /// Energy from utilisation × power limit (a GPU with neither an energy counter nor a
    /// power reading): exported with `source="estimated"`.
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct SeriesState {
    energy: Joules,
    power: Watts,
    last_seen: Seconds,
}

/// What one tick saw.
#[derive(Debug, Clone, PartialEq)]
pub struct TickSummary {
    pub gpus: usize,
    pub energy: Joules,
    pub resets: usize,
    /// GPUs that failed this tick (skipped; the others were booked).
    pub faults: Vec<GpuFault>,
}

/// Per-node GPU accounting state.
pub struct NodeAgent {
    backend: Box<dyn GpuBackend>,
    tracker: CounterTracker,
    integrated: BTreeMap<String, (Joules, Seconds)>,
    series: BTreeMap<GpuSeriesLabels, SeriesState>,
    gpus: usize,
    retention: Seconds,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("backend", &self.backend.describe())
            .field("gpus", &self.gpus)
            .field("series", &self.series.len())
            .finish()
    }
}

impl NodeAgent {
    /// An agent sampling `backend`, counters baselined at first sight.
    pub fn new(backend: Box<dyn GpuBackend>) -> Self {
        Self {
            backend,
            tracker: CounterTracker::new(FirstSight::Baseline),
            integrated: BTreeMap::new(),
            series: BTreeMap::new(),
            gpus: 0,
            retention: Seconds(600.0),
        }
    }

    /// The backend's description (`NVML 570.124.06`, `fake`), for the start-up log.
    pub fn backend_description(&self) -> String {
        self.backend.describe()
    }

    /// GPUs seen on the last successful sample (0 without a driver).
    pub fn gpu_count(&self) -> usize {
        self.gpus
    }

    /// Samples the GPUs at `at` and books energy to the containers in `assignments`.
    pub fn tick(
        &mut self,
        assignments: &[GpuAssignment],
        at: Seconds,
    ) -> Result<TickSummary, GpuError> {
        let (samples, faults) = match self.backend.sample() {
            Ok(readout) => (readout.gpus, readout.faults),
            Err(e) => {
                if matches!(e, GpuError::NoDriver(_)) {
                    self.gpus = 0;
                }
                for s in self.series.values_mut() {
                    s.power = Watts::ZERO;
                }
                return Err(e);
            }
        };
        self.gpus = samples.len();
        let readings: Vec<EnergyReading> = samples
            .iter()
            .filter_map(|g| {
                let cumulative = self.cumulative(g, at)?;
                Some(EnergyReading::new(
                    format!("nvml/{}", g.uuid),
                    "",
                    EnergyOwner::UnmappedGpu {
                        uuid: g.uuid.clone(),
                    },
                    Component::Gpu,
                    cumulative,
                    at,
                ))
            })
            .collect();
        let observed = self.tracker.observe(&readings);
        let deltas: BTreeMap<String, Joules> = observed
            .deltas
            .iter()
            .filter_map(|d| match &d.owner {
                EnergyOwner::UnmappedGpu { uuid } => Some((uuid.clone(), d.energy)),
                _ => None,
            })
            .collect();
        for s in self.series.values_mut() {
            s.power = Watts::ZERO;
        }
        let mut booked = Joules::ZERO;
        for gpu in &samples {
            let holders = holders_of(gpu, assignments);
            let delta = deltas.get(&gpu.uuid).copied().unwrap_or(Joules::ZERO);
            booked += delta;
            let energy_split = split_equal(delta, holders.clone(), UnallocatedReason::Rounding);
            let power = gpu.power.unwrap_or(Watts::ZERO);
            // A gauge, not a quantity to conserve: each holder shows its equal part.
            let watts = (power / holders.len().max(1) as f64).non_negative();
            for (labels, energy) in energy_split.shares {
                let state = self.series.entry(labels).or_insert(SeriesState {
                    energy: Joules::ZERO,
                    power: Watts::ZERO,
                    last_seen: at,
                });
                state.energy += energy.non_negative();
                state.power = watts;
                state.last_seen = at;
            }
        }
        let cutoff = at - self.retention;
        self.series.retain(|_, s| s.last_seen >= cutoff);
        Ok(TickSummary {
            gpus: samples.len(),
            energy: booked,
            resets: observed.resets.len(),
            faults,
        })
    }

    /// The GPU's cumulative energy: NVML's counter, else integrated power.
    fn cumulative(&mut self, gpu: &GpuSample, at: Seconds) -> Option<Joules> {
        if let Some(e) = gpu.energy {
            return Some(e);
        }
        // Without a power reading: utilisation × the power limit (TDP), an estimate.
        let power = gpu.power.or_else(|| {
            let busy = gpu.utilization?.clamp(0.0, 1.0);
            Some(gpu.power_limit? * busy)
        })?;
        let entry = self
            .integrated
            .entry(gpu.uuid.clone())
            .or_insert((Joules::ZERO, at));
        if at > entry.1 {
            entry.0 += power * (at - entry.1);
            entry.1 = at;
        }
        Some(entry.0)
    }

    /// Cumulative energy per exported series.
    pub fn energy(&self) -> Vec<(GpuSeriesLabels, Joules)> {
        self.series
            .iter()
            .map(|(l, s)| (l.clone(), s.energy))
            .collect()
    }

    /// Current power per exported series.
    pub fn power(&self) -> Vec<(GpuSeriesLabels, Watts)> {
        self.series
            .iter()
            .map(|(l, s)| (l.clone(), s.power))
            .collect()
    }
}

/// Whether pod-resources' `device_id` names `gpu`: its UUID, one of its MIG UUIDs, or (GKE)
/// `nvidiaN`, `nvidiaN/giM`, `nvidiaN/vgpuM` where N is the device minor number.
pub fn device_names_gpu(device_id: &str, gpu: &GpuSample) -> bool {
    if device_id == gpu.uuid || gpu.mig_uuids.iter().any(|m| m == device_id) {
        return true;
    }
    let gke = device_id
        .split('/')
        .next()
        .and_then(|d| d.strip_prefix("nvidia"))
        .and_then(|n| n.parse::<u32>().ok());
    gke.is_some() && gke == gpu.minor
}

/// The containers holding `gpu` (directly, through a time-slicing replica or one of its MIG
/// instances); one idle entry when none does.
fn holders_of(gpu: &GpuSample, assignments: &[GpuAssignment]) -> Vec<GpuSeriesLabels> {
    let estimated = gpu.energy.is_none() && gpu.power.is_none();
    let mut holders: Vec<GpuSeriesLabels> = assignments
        .iter()
        .filter(|a| device_names_gpu(&a.device_id, gpu))
        .map(|a| GpuSeriesLabels {
            gpu_uuid: gpu.uuid.clone(),
            gpu_model: gpu.model.clone(),
            namespace: a.namespace.clone(),
            pod: a.pod.clone(),
            container: a.container.clone(),
            estimated,
        })
        .collect();
    holders.sort();
    holders.dedup();
    if holders.is_empty() {
        holders.push(GpuSeriesLabels {
            gpu_uuid: gpu.uuid.clone(),
            gpu_model: gpu.model.clone(),
            namespace: String::new(),
            pod: String::new(),
            container: String::new(),
            estimated,
        });
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{FakeGpu, FakeGpuBackend};
    use std::sync::Arc;

    fn assign(pod: &str, uuid: &str) -> GpuAssignment {
        GpuAssignment {
            namespace: "ml".into(),
            pod: pod.into(),
            container: "main".into(),
            resource_name: "nvidia.com/gpu".into(),
            device_id: uuid.into(),
        }
    }

    fn energy_of(agent: &NodeAgent, pod: &str, uuid: &str) -> f64 {
        agent
            .energy()
            .iter()
            .filter(|(l, _)| l.pod == pod && l.gpu_uuid == uuid)
            .map(|(_, e)| e.value())
            .sum()
    }

    #[test]
    fn shared_gpu_split_idle_gpu_kept_apart_reload_is_reset() {
        let fake = Arc::new(FakeGpuBackend::new(vec![
            FakeGpu::new("GPU-0", "A100", Watts(300.0)),
            FakeGpu::new("GPU-1", "A100", Watts(60.0)),
        ]));
        let mut agent = NodeAgent::new(Box::new(fake.clone()));
        let a = vec![assign("p1", "GPU-0"), assign("p2", "GPU-0")];
        agent.tick(&a, Seconds(0.0)).unwrap();
        fake.advance(10.0);
        let s = agent.tick(&a, Seconds(10.0)).unwrap();
        assert_eq!(s.gpus, 2);
        assert!((energy_of(&agent, "p1", "GPU-0") - 1500.0).abs() < 1e-6);
        assert!((energy_of(&agent, "p2", "GPU-0") - 1500.0).abs() < 1e-6);
        assert!((energy_of(&agent, "", "GPU-1") - 600.0).abs() < 1e-6);
        fake.reload_driver();
        fake.advance(5.0);
        let s = agent.tick(&a, Seconds(15.0)).unwrap();
        assert_eq!(s.resets, 2);
        // After the reload the new counter value is the delta: 5 s × 300 W, split in two.
        assert!((energy_of(&agent, "p1", "GPU-0") - 2250.0).abs() < 1e-6);
        let total_power: f64 = agent.power().iter().map(|(_, w)| w.value()).sum();
        assert!((total_power - 360.0).abs() < 1e-6);
    }

    #[test]
    fn no_driver_reports_zero_gpus() {
        let mut agent = NodeAgent::new(Box::new(FakeGpuBackend::without_driver()));
        assert!(matches!(
            agent.tick(&[], Seconds(0.0)),
            Err(GpuError::NoDriver(_))
        ));
        assert_eq!(agent.gpu_count(), 0);
        assert!(agent.energy().is_empty());
    }

    #[test]
    fn mig_instances_and_power_integration() {
        let mut gpu = FakeGpu::new("GPU-0", "A30", Watts(100.0));
        gpu.mig_uuids = vec!["MIG-a".into(), "MIG-b".into()];
        gpu.energy_supported = false;
        let fake = Arc::new(FakeGpuBackend::new(vec![gpu]));
        let mut agent = NodeAgent::new(Box::new(fake.clone()));
        let a = vec![assign("p1", "MIG-a"), assign("p2", "MIG-b")];
        agent.tick(&a, Seconds(0.0)).unwrap();
        agent.tick(&a, Seconds(30.0)).unwrap();
        assert!((energy_of(&agent, "p1", "GPU-0") - 1500.0).abs() < 1e-6);
        assert!((energy_of(&agent, "p2", "GPU-0") - 1500.0).abs() < 1e-6);
    }

    #[test]
    fn a_lost_gpu_is_skipped_and_the_others_keep_reporting() {
        let fake = Arc::new(FakeGpuBackend::new(vec![
            FakeGpu::new("GPU-0", "H100", Watts(500.0)),
            FakeGpu::new("GPU-1", "H100", Watts(400.0)),
        ]));
        let mut agent = NodeAgent::new(Box::new(fake.clone()));
        let a = vec![assign("p0", "GPU-0"), assign("p1", "GPU-1")];
        agent.tick(&a, Seconds(0.0)).unwrap();
        // Xid 79: GPU-1 falls off the bus.
        fake.set_fault("GPU-1", Some("gpu_lost"));
        fake.advance(10.0);
        let s = agent.tick(&a, Seconds(10.0)).unwrap();
        assert_eq!(s.gpus, 1);
        assert_eq!(s.faults.len(), 1);
        assert_eq!(
            (s.faults[0].gpu.as_str(), s.faults[0].reason),
            ("GPU-1", "gpu_lost")
        );
        assert!((energy_of(&agent, "p0", "GPU-0") - 5000.0).abs() < 1e-6);
        // Back after a reset: its counter books what it drew since its last good sample.
        fake.set_fault("GPU-1", None);
        fake.advance(10.0);
        let s = agent.tick(&a, Seconds(20.0)).unwrap();
        assert!(s.faults.is_empty());
        assert!((energy_of(&agent, "p1", "GPU-1") - 8000.0).abs() < 1e-6);
    }

    #[test]
    fn gke_device_ids_map_through_the_minor_number() {
        let mut g0 = FakeGpu::new("GPU-aaaa", "L4", Watts(70.0));
        g0.minor = Some(0);
        let mut g1 = FakeGpu::new("GPU-bbbb", "L4", Watts(50.0));
        g1.minor = Some(1);
        let fake = Arc::new(FakeGpuBackend::new(vec![g0, g1]));
        let mut agent = NodeAgent::new(Box::new(fake.clone()));
        // GKE's device plugin: whole GPU `nvidia1`; time-shared `nvidia0/vgpu0`, `nvidia0/vgpu1`.
        let a = vec![
            assign("whole", "nvidia1"),
            assign("share-a", "nvidia0/vgpu0"),
            assign("share-b", "nvidia0/vgpu1"),
        ];
        agent.tick(&a, Seconds(0.0)).unwrap();
        fake.advance(10.0);
        agent.tick(&a, Seconds(10.0)).unwrap();
        assert!((energy_of(&agent, "whole", "GPU-bbbb") - 500.0).abs() < 1e-6);
        assert!((energy_of(&agent, "share-a", "GPU-aaaa") - 350.0).abs() < 1e-6);
        assert!((energy_of(&agent, "share-b", "GPU-aaaa") - 350.0).abs() < 1e-6);
        assert_eq!(energy_of(&agent, "", "GPU-aaaa"), 0.0, "not idle");
        // `nvidia0/gi0` (a MIG GPU instance) is its parent GPU; `nvidia10` is not `nvidia1`.
        let parent = GpuSample {
            index: 0,
            uuid: "GPU-aaaa".into(),
            model: "A100".into(),
            energy: None,
            power: None,
            mig_uuids: Vec::new(),
            minor: Some(0),
            utilization: None,
            power_limit: None,
        };
        assert!(device_names_gpu("nvidia0/gi0", &parent));
        assert!(!device_names_gpu("nvidia10", &parent));
        assert!(!device_names_gpu("nvidia", &parent));
    }

    #[test]
    fn a_gpu_with_neither_energy_nor_power_is_estimated_from_utilisation() {
        let mut vgpu = FakeGpu::new("GPU-v", "GRID A100-4C", Watts(0.0));
        vgpu.energy_supported = false;
        vgpu.power_supported = false;
        vgpu.utilization = 0.5;
        vgpu.power_limit = Watts(400.0);
        let mut agent = NodeAgent::new(Box::new(FakeGpuBackend::new(vec![vgpu])));
        let a = vec![assign("p", "GPU-v")];
        agent.tick(&a, Seconds(0.0)).unwrap();
        agent.tick(&a, Seconds(10.0)).unwrap();
        // 50 % of a 400 W limit for 10 s, labelled estimated.
        assert!((energy_of(&agent, "p", "GPU-v") - 2000.0).abs() < 1e-6);
        assert!(agent.energy().iter().all(|(l, _)| l.estimated));
    }
}

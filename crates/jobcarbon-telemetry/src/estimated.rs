//! The `estimated` energy source: CPU and memory energy of containers on nodes without a meter
//! (cloud VMs without RAPL), from cAdvisor through Prometheus and the Cloud Carbon Footprint
//! coefficients of `jobcarbon_core::estimation`. Every reading is marked estimated.
//!
//! - CPU: `container_cpu_usage_seconds_total` per container × (max − min) W per vCPU; cAdvisor
//!   also exports each pod's own cgroup (`container=""`) and the pause container (`POD`), which
//!   would count every container twice: both are left out by the query.
//! - Memory: `container_memory_working_set_bytes` integrated over time × W/GB.
//! - Node idle: vCPUs × min W per vCPU, as node idle (shared by `energy.nodeIdle`).
//!
//! cAdvisor series carry no node: the pod → node mapping and each node's coefficients come from
//! the cluster snapshot through an [`EstimationCell`] the ledger refreshes every interval.

use crate::prom::{PromClient, PromSample};
use crate::{EnergySource, HealthCell, SourceError, SourceHealth};
use async_trait::async_trait;
use jobcarbon_core::estimation::{
    CpuCoefficients, cpu_dynamic_energy, cpu_idle_energy, memory_energy,
};
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, Joules, PodKey, Seconds};
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

const SOURCE: &str = "estimated";
const CPU: &str = r#"container_cpu_usage_seconds_total{container!="",container!="POD",pod!=""}"#;
const MEMORY: &str =
    r#"container_memory_working_set_bytes{container!="",container!="POD",pod!=""}"#;

/// One node to estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimatedNode {
    /// The node's allocatable vCPUs.
    pub vcpus: f64,
    /// Its per-vCPU power at idle and at full load.
    pub cpu: CpuCoefficients,
}

/// Which pods run where and each node's coefficients, as of the last cluster snapshot.
#[derive(Debug, Default)]
pub struct EstimationCell {
    inner: RwLock<(BTreeMap<PodKey, String>, BTreeMap<String, EstimatedNode>)>,
    memory_watts_per_gb: RwLock<f64>,
}

impl EstimationCell {
    /// An empty cell; memory energy is priced at `memory_watts_per_gb` W per GB.
    pub fn new(memory_watts_per_gb: f64) -> Self {
        Self {
            inner: RwLock::default(),
            memory_watts_per_gb: RwLock::new(memory_watts_per_gb),
        }
    }

    /// Replaces the mapping (called by the ledger after each snapshot).
    pub fn update(&self, pods: BTreeMap<PodKey, String>, nodes: BTreeMap<String, EstimatedNode>) {
        if let Ok(mut inner) = self.inner.write() {
            *inner = (pods, nodes);
        }
    }

    fn memory_watts_per_gb(&self) -> f64 {
        self.memory_watts_per_gb.read().map(|w| *w).unwrap_or(0.0)
    }

    fn node_of(&self, pod: &PodKey) -> Option<(String, EstimatedNode)> {
        let inner = self.inner.read().ok()?;
        let node = inner.0.get(pod)?;
        Some((node.clone(), inner.1.get(node)?.clone()))
    }

    fn nodes(&self) -> Vec<(String, EstimatedNode)> {
        self.inner
            .read()
            .map(|i| i.1.iter().map(|(n, e)| (n.clone(), e.clone())).collect())
            .unwrap_or_default()
    }
}

/// Integrated quantities (memory GB·s, idle vCPU·s) since the source started, per series.
#[derive(Debug, Default)]
struct Integrals {
    last_at: Option<Seconds>,
    totals: BTreeMap<String, Joules>,
}

/// cAdvisor through Prometheus, converted with the cell's coefficients.
#[derive(Debug)]
pub struct EstimatedSource {
    client: PromClient,
    cell: std::sync::Arc<EstimationCell>,
    health: HealthCell,
    integrals: Mutex<Integrals>,
}

impl EstimatedSource {
    /// Estimated CPU and memory energy from cAdvisor usage read through `client`, with nodes and pods from `cell`.
    pub fn new(client: PromClient, cell: std::sync::Arc<EstimationCell>) -> Self {
        Self {
            client,
            cell,
            health: HealthCell::default(),
            integrals: Mutex::new(Integrals::default()),
        }
    }

    async fn read_inner(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let cpu = self.client.instant(SOURCE, CPU, at).await?;
        let previous = self.integrals.lock().ok().and_then(|i| i.last_at);
        let window = previous.filter(|p| at > *p).map(|p| at - p);
        let memory = match window {
            Some(w) => {
                let promql = format!("avg_over_time({MEMORY}[{}s])", w.value().ceil().max(1.0));
                self.client.instant(SOURCE, &promql, at).await?
            }
            // The first read only learns the series: their integrals start at 0 here.
            None => self.client.instant(SOURCE, MEMORY, at).await?,
        };
        let mut out = cpu_readings(&cpu, &self.cell, at);
        let mut integrals = self
            .integrals
            .lock()
            .map_err(|_| SourceError::Unsupported {
                source_name: SOURCE.into(),
                reason: "integration state poisoned".into(),
            })?;
        let watts_per_gb = self.cell.memory_watts_per_gb();
        for s in memory.iter().filter(|s| s.value.is_finite()) {
            let Some((key, container)) = container_of(s) else {
                continue;
            };
            let Some((node, _)) = self.cell.node_of(&key) else {
                continue;
            };
            let series = format!("estimated/memory/{key}/{container}");
            // A series integrates from the read that first saw it (its past is unknown).
            let seen = integrals.totals.contains_key(&series);
            let total = integrals
                .totals
                .entry(series.clone())
                .or_insert(Joules::ZERO);
            if seen {
                let w = window.unwrap_or(Seconds::ZERO).value();
                *total += memory_energy(s.value.max(0.0) / 1e9 * w, watts_per_gb);
            }
            out.push(reading(
                series,
                node,
                owner(key, container),
                Component::Dram,
                *total,
                at,
            ));
        }
        for (node, e) in self.cell.nodes() {
            let series = format!("estimated/idle/{node}");
            let seen = integrals.totals.contains_key(&series);
            let total = integrals
                .totals
                .entry(series.clone())
                .or_insert(Joules::ZERO);
            if seen {
                *total += cpu_idle_energy(e.vcpus, window.unwrap_or(Seconds::ZERO), e.cpu);
            }
            out.push(reading(
                series,
                node,
                EnergyOwner::NodeIdle,
                Component::Cpu,
                *total,
                at,
            ));
        }
        integrals.last_at = Some(at);
        Ok(out)
    }
}

fn container_of(s: &PromSample) -> Option<(PodKey, String)> {
    let ns = s.label("namespace")?;
    let pod = s.label("pod")?;
    Some((
        PodKey::new(ns, pod),
        s.label("container").unwrap_or("").to_owned(),
    ))
}

fn owner(key: PodKey, container: String) -> EnergyOwner {
    EnergyOwner::Pod { key, container }
}

fn reading(
    series: String,
    node: String,
    owner: EnergyOwner,
    component: Component,
    cumulative: Joules,
    at: Seconds,
) -> EnergyReading {
    EnergyReading::new(series, node, owner, component, cumulative, at).estimated()
}

/// CPU seconds per container → cumulative dynamic joules. A restarted container is a new
/// cAdvisor series (`name`/`id` change), so it is a new counter here too.
fn cpu_readings(samples: &[PromSample], cell: &EstimationCell, at: Seconds) -> Vec<EnergyReading> {
    let mut out = Vec::new();
    for s in samples.iter().filter(|s| s.value.is_finite()) {
        // Per-CPU breakdowns (`cpu="cpu00"`) of old cAdvisors repeat the total.
        if s.label("cpu").is_some_and(|c| c != "total") {
            continue;
        }
        let Some((key, container)) = container_of(s) else {
            continue;
        };
        let Some((node, e)) = cell.node_of(&key) else {
            continue;
        };
        let instance = s.first_label(&["name", "id"]).unwrap_or("");
        let series = format!("estimated/cpu/{key}/{container}/{instance}");
        let joules = cpu_dynamic_energy(s.value, e.cpu);
        out.push(reading(
            series,
            node,
            owner(key, container),
            Component::Cpu,
            joules,
            at,
        ));
    }
    out
}

#[async_trait]
impl EnergySource for EstimatedSource {
    fn name(&self) -> &str {
        SOURCE
    }

    fn counters_start_with_pod(&self) -> bool {
        true
    }

    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        self.health.record(self.read_inner(at).await)
    }

    fn health(&self) -> SourceHealth {
        self.health.get()
    }
}

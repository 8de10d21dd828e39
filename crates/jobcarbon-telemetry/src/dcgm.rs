//! dcgm-exporter through Prometheus (DESIGN §5, `docs/telemetry.md`).
//!
//! - Energy is `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ since driver load, no `_total`).
//!   For GPUs without it, `DCGM_FI_DEV_POWER_USAGE` (W) is integrated: between two reads the
//!   energy is `avg_over_time(power[Δ]) × Δ`, which uses every scraped sample in the gap
//!   (so a backfill over an outage is as good as live reads). The integrated counter is its
//!   own series (`dcgm-power/…`), never confused with the energy counter.
//! - A series is one physical GPU, by `UUID` alone: never `Hostname` (the exporter's pod
//!   name, new at every exporter restart) nor the scrape target. MIG lines and time-sliced
//!   pods repeat the whole GPU's value, so every line of a GPU shares one counter and the
//!   [`CounterTracker`](crate::CounterTracker) splits its delta: MIG instances by their
//!   compute slices (unused slices are node idle), the pods of one slot equally.
//! - Lines are read with `last_over_time(…[lookback])`, so every pod the exporter named for
//!   a GPU during the interval is seen (time-slicing without `KUBERNETES_VIRTUAL_GPUS` names
//!   one sharing pod per scrape), not only the last one.
//! - The workload is `exported_pod`/`exported_namespace`/`exported_container` when present
//!   (`honorLabels: false`), else `pod_name`/`pod_namespace`/`container_name`
//!   (`--use-old-namespace`), else `pod`/`namespace`/`container` unless `container` is the
//!   exporter's own (`exporter` in the upstream chart, `nvidia-dcgm-exporter` in the GPU
//!   operator): such a line names the scrape target, and is [`EnergyOwner::UnmappedGpu`].

use crate::prom::{PromClient, PromSample};
use crate::{EnergySource, HealthCell, SourceError, SourceHealth};
use async_trait::async_trait;
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, Joules, Seconds};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

const SOURCE: &str = "dcgm";
const ENERGY: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
const POWER: &str = "DCGM_FI_DEV_POWER_USAGE";

/// How to read dcgm-exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct DcgmConfig {
    /// Labels naming the node, first present wins.
    pub node_labels: Vec<String>,
    /// Integrate power for GPUs that do not export the energy counter.
    pub power_fallback: bool,
    /// Container names of the exporter itself: unprefixed pod labels naming one of them are
    /// the scrape target, not a workload.
    pub exporter_containers: Vec<String>,
    /// How far back a read looks for the lines of each GPU (at least the ledger interval).
    pub lookback: Seconds,
    /// MIG compute slices per GPU model (substring of `modelName`), first match wins.
    pub mig_slices: Vec<(String, u32)>,
    /// Slices of a MIG GPU whose model is not listed.
    pub mig_default_slices: u32,
}

impl Default for DcgmConfig {
    fn default() -> Self {
        Self {
            node_labels: [
                "Hostname",
                "hostname",
                "node",
                "kubernetes_node",
                "instance",
            ]
            .map(String::from)
            .to_vec(),
            power_fallback: true,
            exporter_containers: ["exporter", "nvidia-dcgm-exporter", "dcgm-exporter"]
                .map(String::from)
                .to_vec(),
            lookback: Seconds(60.0),
            // A30 has 4 compute slices; A100, H100, H200, H20, B200 have 7.
            mig_slices: vec![("A30".into(), 4)],
            mig_default_slices: 7,
        }
    }
}

impl DcgmConfig {
    fn window(&self) -> i64 {
        self.lookback.value().ceil().max(1.0) as i64
    }

    fn slices_of(&self, model: &str) -> u32 {
        self.mig_slices
            .iter()
            .find(|(m, _)| model.contains(m.as_str()))
            .map_or(self.mig_default_slices, |(_, n)| *n)
    }
}

#[derive(Debug, Clone, Copy)]
struct Integrated {
    cumulative: Joules,
    at: Seconds,
}

/// dcgm-exporter over the Prometheus HTTP API.
#[derive(Debug)]
pub struct DcgmSource {
    client: PromClient,
    config: DcgmConfig,
    health: HealthCell,
    integrated: Mutex<BTreeMap<String, Integrated>>,
}

impl DcgmSource {
    /// DCGM readings through `client`.
    pub fn new(client: PromClient, config: DcgmConfig) -> Self {
        Self {
            client,
            config,
            health: HealthCell::default(),
            integrated: Mutex::new(BTreeMap::new()),
        }
    }

    async fn lines(&self, metric: &str, at: Seconds) -> Result<Vec<PromSample>, SourceError> {
        let promql = format!("last_over_time({metric}[{}s])", self.config.window());
        let mut samples = self.client.instant(SOURCE, &promql, at).await?;
        for s in &mut samples {
            s.at = at;
        }
        Ok(samples)
    }

    async fn read_inner(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let energy = self.lines(ENERGY, at).await?;
        let mut out = energy_readings(&energy, &self.config);
        if !self.config.power_fallback {
            if energy.is_empty() {
                return Err(missing(ENERGY));
            }
            return Ok(out);
        }
        let with_energy: BTreeSet<String> = energy.iter().map(gpu_id).collect();
        let power: Vec<PromSample> = self
            .lines(POWER, at)
            .await?
            .into_iter()
            .filter(|s| !with_energy.contains(&gpu_id(s)))
            .collect();
        if energy.is_empty() && power.is_empty() {
            return Err(missing(&format!("{ENERGY} and {POWER}")));
        }
        if !power.is_empty() {
            out.extend(self.integrate(&power, at).await?);
        }
        Ok(out)
    }

    /// Integrates power per GPU since its previous read into a counter of its own.
    async fn integrate(
        &self,
        power: &[PromSample],
        at: Seconds,
    ) -> Result<Vec<EnergyReading>, SourceError> {
        let previous: BTreeMap<String, Integrated> = self
            .integrated
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut groups: BTreeMap<String, Vec<&PromSample>> = BTreeMap::new();
        for s in power {
            groups.entry(gpu_id(s)).or_default().push(s);
        }
        let mut next = previous.clone();
        let mut out = Vec::new();
        let mut averages = BTreeMap::new();
        for (gpu, lines) in groups {
            let state = match previous.get(&gpu) {
                None => Integrated {
                    cumulative: Joules::ZERO,
                    at,
                },
                Some(prev) if at > prev.at => {
                    let avg = self
                        .mean_power_since(&gpu, &lines, prev.at, at, &mut averages)
                        .await?;
                    Integrated {
                        cumulative: prev.cumulative + Joules(avg.max(0.0) * (at - prev.at).value()),
                        at,
                    }
                }
                Some(prev) => *prev,
            };
            next.insert(gpu.clone(), state);
            out.extend(gpu_readings(
                &lines,
                &self.config,
                &format!("dcgm-power/{gpu}"),
                state.cumulative,
                at,
            ));
        }
        if let Ok(mut m) = self.integrated.lock() {
            *m = next;
        }
        Ok(out)
    }

    async fn mean_power_since(
        &self,
        gpu: &str,
        lines: &[&PromSample],
        since: Seconds,
        at: Seconds,
        averages: &mut BTreeMap<i64, Vec<PromSample>>,
    ) -> Result<f64, SourceError> {
        // One query per distinct window, shared by the GPUs read together.
        let w = (at - since).value().ceil().max(1.0) as i64;
        if let std::collections::btree_map::Entry::Vacant(slot) = averages.entry(w) {
            let promql = format!("avg_over_time({POWER}[{w}s])");
            slot.insert(self.client.instant(SOURCE, &promql, at).await?);
        }
        let samples = averages.get(&w).map(Vec::as_slice).unwrap_or_default();
        Ok(mean_power(samples.iter().filter(|s| gpu_id(s) == gpu))
            .or_else(|| mean_power(lines.iter().copied()))
            .unwrap_or(0.0))
    }
}

fn missing(what: &str) -> SourceError {
    SourceError::Query {
        source_name: SOURCE.into(),
        query: what.into(),
        reason: "no DCGM metrics in Prometheus at this time".into(),
    }
}

fn mean_power<'a>(lines: impl Iterator<Item = &'a PromSample>) -> Option<f64> {
    let values: Vec<f64> = lines.map(|s| s.value).filter(|v| v.is_finite()).collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn node_of(s: &PromSample, config: &DcgmConfig) -> String {
    config
        .node_labels
        .iter()
        .find_map(|l| s.label(l))
        .unwrap_or("")
        .to_owned()
}

fn raw<'a>(s: &'a PromSample, name: &str) -> Option<&'a str> {
    s.labels
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn uuid_of(s: &PromSample) -> String {
    s.first_label(&["UUID", "uuid", "gpu_uuid"])
        .unwrap_or("")
        .to_owned()
}

/// A physical GPU's identity: its UUID; without one, the node and GPU index.
fn gpu_id(s: &PromSample) -> String {
    match uuid_of(s) {
        uuid if !uuid.is_empty() => uuid,
        _ => format!(
            "{}/gpu{}",
            raw(s, "Hostname").or(raw(s, "hostname")).unwrap_or(""),
            raw(s, "gpu").unwrap_or("")
        ),
    }
}

/// The owner a DCGM line names (see the module docs for the label precedence).
pub(crate) fn owner_of(s: &PromSample, config: &DcgmConfig) -> EnergyOwner {
    let pod_of = |ns: Option<&str>, pod: Option<&str>, container: Option<&str>| {
        Some(EnergyOwner::pod(ns?, pod?, container.unwrap_or("")))
    };
    let exported = pod_of(
        raw(s, "exported_namespace").or(raw(s, "exported_pod_namespace")),
        raw(s, "exported_pod").or(raw(s, "exported_pod_name")),
        raw(s, "exported_container").or(raw(s, "exported_container_name")),
    );
    let old_names = || {
        pod_of(
            raw(s, "pod_namespace"),
            raw(s, "pod_name"),
            raw(s, "container_name"),
        )
    };
    let target = || {
        let container = raw(s, "container");
        let names_exporter =
            container.is_some_and(|c| config.exporter_containers.iter().any(|e| e == c));
        if names_exporter {
            return None;
        }
        pod_of(raw(s, "namespace"), raw(s, "pod"), container)
    };
    exported
        .or_else(old_names)
        .or_else(target)
        .unwrap_or_else(|| EnergyOwner::UnmappedGpu { uuid: gpu_id(s) })
}

/// Compute slices of a MIG profile: `3g.40gb` → 3; a compute-instance profile `1c.3g.40gb` → 1.
fn profile_slices(profile: &str) -> Option<u32> {
    let first = profile.split('.').next()?;
    first
        .strip_suffix('c')
        .or_else(|| first.strip_suffix('g'))?
        .parse()
        .ok()
}

/// One GPU's lines → readings sharing `series`: whole-GPU lines in one slot, MIG instances in
/// slots weighted by compute slices, and the unused slices as node idle.
fn gpu_readings(
    lines: &[&PromSample],
    config: &DcgmConfig,
    series: &str,
    cumulative: Joules,
    at: Seconds,
) -> Vec<EnergyReading> {
    let mut out = Vec::new();
    let mut instances: BTreeMap<String, u32> = BTreeMap::new();
    let mut model = "";
    let mut node = String::new();
    for line in lines {
        node = node_of(line, config);
        let reading = EnergyReading::new(
            series,
            node.clone(),
            owner_of(line, config),
            Component::Gpu,
            cumulative,
            at,
        );
        let mig = raw(line, "GPU_I_ID").zip(raw(line, "GPU_I_PROFILE"));
        out.push(match mig {
            Some((id, profile)) => {
                let slices = profile_slices(profile).unwrap_or(1);
                instances.insert(id.to_owned(), slices);
                model = raw(line, "modelName").unwrap_or(model);
                reading.with_share(format!("mig-{id}"), f64::from(slices))
            }
            None => reading,
        });
    }
    let used: u32 = instances.values().sum();
    let total = config.slices_of(model);
    if !instances.is_empty() && used < total {
        out.push(
            EnergyReading::new(
                series,
                node,
                EnergyOwner::NodeIdle,
                Component::Gpu,
                cumulative,
                at,
            )
            .with_share("mig-unused", f64::from(total - used)),
        );
    }
    out
}

/// `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` samples (mJ) → readings in J, all lines of one GPU
/// sharing its series.
pub fn energy_readings(samples: &[PromSample], config: &DcgmConfig) -> Vec<EnergyReading> {
    let mut groups: BTreeMap<String, Vec<&PromSample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.value.is_finite()) {
        groups.entry(gpu_id(s)).or_default().push(s);
    }
    groups
        .into_iter()
        .flat_map(|(gpu, lines)| {
            let value = lines.iter().map(|s| s.value).fold(0.0, f64::max);
            let at = lines.iter().map(|s| s.at).fold(Seconds::ZERO, Seconds::max);
            gpu_readings(
                &lines,
                config,
                &format!("dcgm/{gpu}"),
                Joules::from_millijoules(value),
                at,
            )
        })
        .collect()
}

#[async_trait]
impl EnergySource for DcgmSource {
    fn name(&self) -> &str {
        SOURCE
    }

    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        self.health.record(self.read_inner(at).await)
    }

    fn health(&self) -> SourceHealth {
        self.health.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{CounterTracker, FirstSight};

    fn line(labels: &[(&str, &str)], value: f64, at: f64) -> PromSample {
        PromSample::from_pairs(labels, value, Seconds(at))
    }

    #[test]
    fn exported_labels_and_hostname_variants() {
        let s = line(
            &[
                ("UUID", "GPU-1"),
                ("hostname", "n2"),
                ("pod", "dcgm-exporter-x"),
                ("namespace", "gpu-operator"),
                ("container", "nvidia-dcgm-exporter"),
                ("exported_pod", "train"),
                ("exported_namespace", "ml"),
                ("exported_container", "t"),
            ],
            2000.0,
            10.0,
        );
        let r = energy_readings(&[s], &DcgmConfig::default());
        assert_eq!(r[0].node, "n2");
        assert_eq!(r[0].cumulative, Joules(2.0));
        assert_eq!(r[0].owner, EnergyOwner::pod("ml", "train", "t"));
        // Scraped without mapping: the pod label names the exporter itself.
        let s = line(
            &[
                ("UUID", "GPU-1"),
                ("Hostname", "n2"),
                ("pod", "dcgm-exporter-x"),
                ("namespace", "gpu-operator"),
                ("container", "nvidia-dcgm-exporter"),
            ],
            1.0,
            0.0,
        );
        assert_eq!(
            owner_of(&s, &DcgmConfig::default()),
            EnergyOwner::UnmappedGpu {
                uuid: "GPU-1".into()
            }
        );
    }

    #[test]
    fn time_sliced_gpu_split_not_multiplied() {
        let c = DcgmConfig::default();
        let at = |v: f64, t: f64| {
            vec![
                line(
                    &[
                        ("UUID", "GPU-1"),
                        ("Hostname", "n"),
                        ("pod", "a"),
                        ("namespace", "x"),
                    ],
                    v,
                    t,
                ),
                line(
                    &[
                        ("UUID", "GPU-1"),
                        ("Hostname", "n"),
                        ("pod", "b"),
                        ("namespace", "x"),
                    ],
                    v,
                    t,
                ),
            ]
        };
        let mut t = CounterTracker::new(FirstSight::Baseline);
        t.observe(&energy_readings(&at(1_000_000.0, 0.0), &c));
        let obs = t.observe(&energy_readings(&at(1_600_000.0, 30.0), &c));
        assert_eq!(obs.total(), Joules(600.0));
        assert_eq!(obs.deltas.len(), 2);
        assert!(obs.deltas.iter().all(|d| d.energy == Joules(300.0)));
    }

    #[test]
    fn mig_profiles_give_compute_slices() {
        assert_eq!(profile_slices("3g.40gb"), Some(3));
        assert_eq!(profile_slices("1g.10gb+me"), Some(1));
        assert_eq!(profile_slices("1c.3g.40gb"), Some(1));
        assert_eq!(profile_slices("7g.80gb"), Some(7));
        assert_eq!(profile_slices("garbage"), None);
        let c = DcgmConfig::default();
        assert_eq!(c.slices_of("NVIDIA A30"), 4);
        assert_eq!(c.slices_of("NVIDIA H100 80GB HBM3"), 7);
    }

    #[test]
    fn label_precedence_exported_then_old_names_then_target() {
        let c = DcgmConfig::default();
        let pod = |ns: &str, p: &str| EnergyOwner::pod(ns, p, "t");
        // --use-old-namespace, scraped with honor_labels false: pod_name is the workload.
        let s = line(
            &[
                ("UUID", "GPU-1"),
                ("pod_name", "train"),
                ("pod_namespace", "ml"),
                ("container_name", "t"),
                ("pod", "dcgm-exporter-x"),
                ("namespace", "gpu-monitoring"),
                ("container", "exporter"),
            ],
            1.0,
            0.0,
        );
        assert_eq!(owner_of(&s, &c), pod("ml", "train"));
        // honor_labels true: the workload's own labels; the upstream chart's idle line is the
        // exporter pod (container `exporter`).
        let busy = line(
            &[
                ("UUID", "GPU-1"),
                ("pod", "train"),
                ("namespace", "ml"),
                ("container", "t"),
            ],
            1.0,
            0.0,
        );
        assert_eq!(owner_of(&busy, &c), pod("ml", "train"));
        let idle = line(
            &[
                ("UUID", "GPU-2"),
                ("pod", "dcgm-exporter-x"),
                ("namespace", "gpu-monitoring"),
                ("container", "exporter"),
            ],
            1.0,
            0.0,
        );
        assert_eq!(
            owner_of(&idle, &c),
            EnergyOwner::UnmappedGpu {
                uuid: "GPU-2".into()
            }
        );
    }
}

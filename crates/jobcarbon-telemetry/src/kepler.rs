//! Kepler through Prometheus, both generations (DESIGN §5).
//!
//! - Legacy (≤ 0.9): `kepler_container_{package,dram,gpu,other}_joules_total{mode}`. Only
//!   `mode="dynamic"` reaches workloads; node idle comes from `kepler_node_*{mode="idle"}`
//!   (the per-container `mode="idle"` series repeat the node's idle for every container and
//!   are never booked). `system_processes`/`kernel_processes` are node overhead
//!   ([`EnergyOwner::NodeSystem`]). `core`/`uncore` are parts of `package`, `platform`
//!   contains everything: neither is read, so nothing is counted twice.
//! - v2 (≥ 0.10): `kepler_pod_{cpu,gpu}_joules_total` per selected `zone` (never summed),
//!   `kepler_node_{cpu,gpu}_idle_joules_total` for node idle, and
//!   `kepler_node_cpu_active_joules_total` ([`EnergyOwner::NodeActive`]): the ledger books
//!   what the node's pods do not account for as non-pod work, as the legacy
//!   `system_processes` are.
//! - GPU series (`kepler_*_gpu_*`) are read only when Kepler is the GPU source
//!   (`energy.gpu: kepler`): one source per physical quantity. The legacy total
//!   `kepler_container_joules_total` contains GPU energy, so without Kepler GPU it is read
//!   minus `kepler_container_gpu_joules_total`. The `state` label is not part
//!   of a series' identity, so the final `state="terminated"` value continues the running
//!   counter instead of starting a new one.

use crate::prom::{PromClient, PromSample};
use crate::{EnergySource, HealthCell, SourceError, SourceHealth};
use async_trait::async_trait;
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, Joules, Seconds};
use std::collections::BTreeMap;

/// `energy.kepler` (DESIGN §11); `off` is the ledger's business (no source built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeplerMode {
    /// Detect the generation from the metric names present (both, during an upgrade).
    #[default]
    Auto,
    /// Only the legacy (≤ 0.9) metrics.
    Legacy,
    /// Only the v2 (≥ 0.10) metrics.
    V2,
}

/// The Kepler generation a set of metrics belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeplerGeneration {
    /// ≤ 0.9, port 9102, `kepler_container_*` with `mode`.
    Legacy,
    /// ≥ 0.10, port 28282, `kepler_pod_*` with `zone` and `state`.
    V2,
}

/// Which legacy counters to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegacyCounters {
    /// `package` → cpu, `dram`, `gpu`, `other` (default).
    #[default]
    Components,
    /// Only `kepler_container_joules_total` (the sum), booked as `other`. Releases ≤ 0.7.3
    /// exported it in millijoules: set `millijoules` for them.
    Total {
        /// The total is in millijoules (releases ≤ 0.7.3), not joules.
        millijoules: bool,
    },
}

/// How to read Kepler.
#[derive(Debug, Clone, PartialEq)]
pub struct KeplerConfig {
    /// Which generation(s) to read.
    pub mode: KeplerMode,
    /// v2 RAPL zones to read and the component each becomes. Zones overlap (`package`
    /// contains `core` and `uncore`; `psys` contains everything), so they are never summed
    /// into one component.
    pub zones: Vec<(String, Component)>,
    /// Which legacy counters to read.
    pub legacy: LegacyCounters,
    /// Labels naming the node, first present wins (legacy container series have no node
    /// label of their own; a ServiceMonitor relabels one in).
    pub node_labels: Vec<String>,
    /// Read Kepler's GPU series (only with `energy.gpu: kepler`).
    pub gpu: bool,
}

impl Default for KeplerConfig {
    fn default() -> Self {
        Self {
            mode: KeplerMode::Auto,
            zones: vec![
                ("package".into(), Component::Cpu),
                ("dram".into(), Component::Dram),
            ],
            legacy: LegacyCounters::Components,
            node_labels: [
                "node_name",
                "node",
                "instance",
                "kubernetes_node",
                "hostname",
            ]
            .map(String::from)
            .to_vec(),
            gpu: false,
        }
    }
}

impl KeplerConfig {
    /// Rejects zone selections that would count energy twice.
    pub fn validate(&self) -> Result<(), String> {
        let mut zones = BTreeMap::new();
        let mut components = BTreeMap::new();
        for (zone, component) in &self.zones {
            if zone.is_empty() {
                return Err("an empty zone name".into());
            }
            if zones.insert(zone.as_str(), ()).is_some() {
                return Err(format!("zone {zone:?} listed twice"));
            }
            if let Some(other) = components.insert(*component, zone.as_str()) {
                return Err(format!(
                    "zones {other:?} and {zone:?} both map to component {component}: zones overlap and are never summed"
                ));
            }
        }
        if self.zones.is_empty() {
            return Err("no zone selected".into());
        }
        Ok(())
    }

    /// The labels the readings are made of (each also read as `exported_<name>`): an answer
    /// decoded with only these gives the same readings, without allocating the rest.
    pub fn labels_read(&self) -> Vec<String> {
        let mut names: Vec<String> = READ_LABELS.map(String::from).to_vec();
        names.extend(self.node_labels.iter().cloned());
        names
    }
}

/// What `legacy_readings` and `v2_readings` read besides the node labels.
const READ_LABELS: [&str; 13] = [
    "__name__",
    "zone",
    "mode",
    "pod_namespace",
    "pod_name",
    "pod_id",
    "container_namespace",
    "container_name",
    "container_id",
    "package",
    "index",
    "gpu",
    "gpu_uuid",
];

const SOURCE: &str = "kepler";
const DETECT: &str = r#"group by (__name__) ({__name__=~"kepler_pod_cpu_joules_total|kepler_container_package_joules_total|kepler_container_joules_total"})"#;

/// The PromQL selector for one generation's counters.
fn selector(generation: KeplerGeneration, config: &KeplerConfig) -> String {
    let gpu = config.gpu;
    match (generation, config.legacy) {
        (KeplerGeneration::V2, _) if gpu => r#"{__name__=~"kepler_pod_(cpu|gpu)_joules_total|kepler_node_(cpu|gpu)_idle_joules_total|kepler_node_cpu_active_joules_total"}"#,
        (KeplerGeneration::V2, _) => r#"{__name__=~"kepler_pod_cpu_joules_total|kepler_node_cpu_(idle|active)_joules_total"}"#,
        (KeplerGeneration::Legacy, LegacyCounters::Components) if gpu => r#"{__name__=~"kepler_(container|node)_(package|dram|gpu|other)_joules_total"}"#,
        (KeplerGeneration::Legacy, LegacyCounters::Components) => r#"{__name__=~"kepler_(container|node)_(package|dram|other)_joules_total"}"#,
        (KeplerGeneration::Legacy, LegacyCounters::Total { .. }) if gpu => r#"{__name__=~"kepler_container_joules_total|kepler_node_(package|dram|gpu|other)_joules_total"}"#,
        (KeplerGeneration::Legacy, LegacyCounters::Total { .. }) => r#"{__name__=~"kepler_container_(|gpu_)joules_total|kepler_node_(package|dram|other)_joules_total"}"#,
    }
    .to_owned()
}

/// Kepler over the Prometheus HTTP API.
#[derive(Debug)]
pub struct KeplerSource {
    client: PromClient,
    config: KeplerConfig,
    labels: Vec<String>,
    health: HealthCell,
}

impl KeplerSource {
    /// A Kepler source through `client`; fails if `config`'s zone selection is invalid.
    pub fn new(client: PromClient, config: KeplerConfig) -> Result<Self, SourceError> {
        config
            .validate()
            .map_err(|reason| SourceError::Unsupported {
                source_name: SOURCE.into(),
                reason: format!("invalid zone selection: {reason}"),
            })?;
        Ok(Self {
            client,
            labels: config.labels_read(),
            config,
            health: HealthCell::default(),
        })
    }

    /// The generations whose metrics Prometheus holds at `at`.
    pub async fn detect(&self, at: Seconds) -> Result<Vec<KeplerGeneration>, SourceError> {
        let names = self.client.instant(SOURCE, DETECT, at).await?;
        Ok(generations_present(&names))
    }

    async fn read_generations(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let generations = match self.config.mode {
            KeplerMode::Legacy => vec![KeplerGeneration::Legacy],
            KeplerMode::V2 => vec![KeplerGeneration::V2],
            KeplerMode::Auto => self.detect(at).await?,
        };
        if generations.is_empty() {
            return Err(SourceError::Query {
                source_name: SOURCE.into(),
                query: DETECT.into(),
                reason: "no Kepler metrics in Prometheus at this time (neither kepler_pod_cpu_joules_total nor kepler_container_*_joules_total)".into(),
            });
        }
        let mut out = Vec::new();
        for generation in generations {
            let query = selector(generation, &self.config);
            // ~100k series at scale: only the labels read are decoded.
            let samples = self
                .client
                .instant_keeping(SOURCE, &query, at, &self.labels)
                .await?;
            if samples.is_empty() && self.config.mode != KeplerMode::Auto {
                return Err(SourceError::Query {
                    source_name: SOURCE.into(),
                    query,
                    reason: format!("no {generation:?} Kepler metrics in Prometheus at this time"),
                });
            }
            out.extend(match generation {
                KeplerGeneration::Legacy => legacy_readings(&samples, &self.config),
                KeplerGeneration::V2 => v2_readings(&samples, &self.config),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl EnergySource for KeplerSource {
    fn name(&self) -> &str {
        SOURCE
    }
    fn counters_start_with_pod(&self) -> bool {
        true
    }
    fn measures_cpu(&self) -> bool {
        true
    }

    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        self.health.record(self.read_generations(at).await)
    }

    fn health(&self) -> SourceHealth {
        self.health.get()
    }
}

/// Which generations' metric names appear in a `group by (__name__)` answer.
pub(crate) fn generations_present(names: &[PromSample]) -> Vec<KeplerGeneration> {
    let mut found: Vec<KeplerGeneration> = names
        .iter()
        .filter_map(|s| match s.labels.get("__name__").map(String::as_str) {
            Some("kepler_pod_cpu_joules_total") => Some(KeplerGeneration::V2),
            Some("kepler_container_package_joules_total" | "kepler_container_joules_total") => {
                Some(KeplerGeneration::Legacy)
            }
            _ => None,
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

fn metric_name(s: &PromSample) -> &str {
    s.labels.get("__name__").map(String::as_str).unwrap_or("")
}

fn node_of(s: &PromSample, config: &KeplerConfig) -> String {
    config
        .node_labels
        .iter()
        .find_map(|l| s.label(l))
        .unwrap_or("")
        .to_owned()
}

fn legacy_component(word: &str) -> Option<Component> {
    match word {
        "package" => Some(Component::Cpu),
        "dram" => Some(Component::Dram),
        "gpu" => Some(Component::Gpu),
        "other" => Some(Component::Other),
        _ => None,
    }
}

const NON_POD: [&str; 2] = ["system_processes", "kernel_processes"];

/// Legacy (≤ 0.9) samples → readings.
pub fn legacy_readings(samples: &[PromSample], config: &KeplerConfig) -> Vec<EnergyReading> {
    // The total contains GPU energy: without Kepler GPU, each container's GPU counter is
    // subtracted from its total (both monotonic, so the difference is too).
    let subtract_gpu = matches!(config.legacy, LegacyCounters::Total { .. }) && !config.gpu;
    let gpu_of: BTreeMap<String, f64> = samples
        .iter()
        .filter(|s| subtract_gpu && metric_name(s) == "kepler_container_gpu_joules_total")
        .map(|s| (legacy_container_key(s), s.value))
        .collect();
    let mut out = Vec::new();
    for s in samples.iter().filter(|s| s.value.is_finite()) {
        let name = metric_name(s);
        let node = node_of(s, config);
        if let Some(rest) = name
            .strip_prefix("kepler_node_")
            .and_then(|r| r.strip_suffix("_joules_total"))
        {
            out.extend(legacy_node_idle(s, rest, node));
            continue;
        }
        let (component, value) = if name == "kepler_container_joules_total" {
            match config.legacy {
                LegacyCounters::Total { millijoules } => {
                    let scale = if millijoules { 1e-3 } else { 1.0 };
                    let gpu = gpu_of.get(&legacy_container_key(s)).copied().unwrap_or(0.0);
                    (Component::Other, ((s.value - gpu) * scale).max(0.0))
                }
                LegacyCounters::Components => continue,
            }
        } else if matches!(config.legacy, LegacyCounters::Total { .. }) {
            continue;
        } else {
            let Some(component) = name
                .strip_prefix("kepler_container_")
                .and_then(|r| r.strip_suffix("_joules_total"))
                .and_then(legacy_component)
            else {
                continue;
            };
            (component, s.value)
        };
        if s.label("mode").unwrap_or("dynamic") == "dynamic" {
            out.push(legacy_container(s, component, value, node));
        }
    }
    out
}

/// A legacy container series' identity without its metric name.
fn legacy_container_key(s: &PromSample) -> String {
    [
        "container_namespace",
        "pod_name",
        "container_id",
        "container_name",
        "mode",
    ]
    .map(|l| s.label(l).unwrap_or(""))
    .join("/")
}

/// Node idle (`mode="idle"`); node dynamic is the sum of the containers' and is not read.
fn legacy_node_idle(s: &PromSample, rest: &str, node: String) -> Option<EnergyReading> {
    let component = legacy_component(rest)?;
    if s.label("mode").unwrap_or("dynamic") != "idle" {
        return None;
    }
    let device = s.first_label(&["package", "index", "gpu"]).unwrap_or("");
    Some(EnergyReading::new(
        format!("kepler/legacy/{node}/node/{rest}/{device}/idle"),
        node,
        EnergyOwner::NodeIdle,
        component,
        Joules(s.value),
        s.at,
    ))
}

fn legacy_container(
    s: &PromSample,
    component: Component,
    joules: f64,
    node: String,
) -> EnergyReading {
    let container = s.label("container_name").unwrap_or("");
    let namespace = s.label("container_namespace").unwrap_or("");
    let pod = s.label("pod_name").unwrap_or("");
    let container_id = s.label("container_id").unwrap_or(container);
    let owner = if NON_POD.contains(&container) || NON_POD.contains(&pod) {
        EnergyOwner::NodeSystem
    } else {
        EnergyOwner::pod(namespace, pod, container)
    };
    EnergyReading::new(
        format!("kepler/legacy/{node}/{namespace}/{pod}/{container_id}/{component}"),
        node,
        owner,
        component,
        Joules(joules),
        s.at,
    )
}

/// v2 (≥ 0.10) samples → readings, one per pod and selected zone (plus GPU when Kepler is
/// the GPU source), node idle, and node active.
pub fn v2_readings(samples: &[PromSample], config: &KeplerConfig) -> Vec<EnergyReading> {
    // One reading per series, so a pod seen both running and terminated is one counter
    // (largest wins, the first of equals), in series order. Sorted stably in place: no
    // series identity is copied.
    let mut readings: Vec<EnergyReading> = samples
        .iter()
        .filter(|s| s.value.is_finite())
        .filter_map(|s| v2_reading(s, config))
        .collect();
    readings.sort_by(|a, b| a.series.cmp(&b.series));
    let mut by_series: Vec<EnergyReading> = Vec::with_capacity(readings.len());
    for reading in readings {
        match by_series.last_mut() {
            Some(existing) if existing.series == reading.series => {
                if existing.cumulative < reading.cumulative {
                    *existing = reading;
                }
            }
            _ => by_series.push(reading),
        }
    }
    by_series
}

fn v2_reading(s: &PromSample, config: &KeplerConfig) -> Option<EnergyReading> {
    let zone_component = |zone: &str| {
        config
            .zones
            .iter()
            .find(|(z, _)| z == zone)
            .map(|(_, c)| *c)
    };
    let node = node_of(s, config);
    let name = metric_name(s);
    let is_gpu = name.contains("_gpu_");
    if is_gpu && !config.gpu {
        return None;
    }
    let (series, owner, component) = match name {
        "kepler_pod_cpu_joules_total" | "kepler_pod_gpu_joules_total" => {
            let component = if is_gpu {
                Component::Gpu
            } else {
                s.label("zone").and_then(zone_component)?
            };
            let namespace = s.label("pod_namespace").unwrap_or("");
            let pod = s.label("pod_name").unwrap_or("");
            let pod_id = s.label("pod_id").unwrap_or(pod);
            let zone = s.label("zone").unwrap_or("gpu");
            let owner = EnergyOwner::pod(namespace, pod, String::new());
            (
                format!("kepler/v2/{node}/pod/{pod_id}/{zone}"),
                owner,
                component,
            )
        }
        "kepler_node_cpu_idle_joules_total" | "kepler_node_cpu_active_joules_total" => {
            let zone = s.label("zone")?;
            let component = zone_component(zone)?;
            let (kind, owner) = if name.contains("_idle_") {
                ("node-idle", EnergyOwner::NodeIdle)
            } else {
                ("node-active", EnergyOwner::NodeActive)
            };
            (format!("kepler/v2/{node}/{kind}/{zone}"), owner, component)
        }
        "kepler_node_gpu_idle_joules_total" => {
            let gpu = s.first_label(&["gpu_uuid", "gpu"]).unwrap_or("");
            let series = format!("kepler/v2/{node}/node-idle/gpu/{gpu}");
            (series, EnergyOwner::NodeIdle, Component::Gpu)
        }
        _ => return None,
    };
    Some(EnergyReading::new(
        series,
        node,
        owner,
        component,
        Joules(s.value),
        s.at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> PromSample {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        l.insert("__name__".into(), name.into());
        PromSample {
            labels: l,
            value,
            at: Seconds(100.0),
        }
    }

    #[test]
    fn detects_generations() {
        let names = vec![
            sample("kepler_pod_cpu_joules_total", &[], 1.0),
            sample("kepler_container_joules_total", &[], 1.0),
        ];
        assert_eq!(
            generations_present(&names),
            vec![KeplerGeneration::Legacy, KeplerGeneration::V2]
        );
        assert!(generations_present(&[]).is_empty());
    }

    #[test]
    fn legacy_dynamic_to_pods_idle_to_node_system_apart() {
        let c = KeplerConfig::default();
        let pod = [
            ("container_id", "abc"),
            ("container_name", "trainer"),
            ("container_namespace", "ml"),
            ("pod_name", "t-1"),
            ("instance", "n1"),
        ];
        let samples = vec![
            sample(
                "kepler_container_package_joules_total",
                &[pod.as_slice(), &[("mode", "dynamic")]].concat(),
                10.0,
            ),
            sample(
                "kepler_container_package_joules_total",
                &[pod.as_slice(), &[("mode", "idle")]].concat(),
                99.0,
            ),
            sample(
                "kepler_container_core_joules_total",
                &[pod.as_slice(), &[("mode", "dynamic")]].concat(),
                7.0,
            ),
            sample(
                "kepler_container_dram_joules_total",
                &[
                    ("container_name", "system_processes"),
                    ("container_namespace", "system"),
                    ("pod_name", "system_processes"),
                    ("mode", "dynamic"),
                    ("instance", "n1"),
                ],
                3.0,
            ),
            sample(
                "kepler_node_package_joules_total",
                &[("instance", "n1"), ("package", "0"), ("mode", "idle")],
                50.0,
            ),
            sample(
                "kepler_node_package_joules_total",
                &[("instance", "n1"), ("package", "0"), ("mode", "dynamic")],
                13.0,
            ),
            sample(
                "kepler_container_joules_total",
                &[pod.as_slice(), &[("mode", "dynamic")]].concat(),
                13.0,
            ),
        ];
        let r = legacy_readings(&samples, &c);
        assert_eq!(r.len(), 3, "{r:#?}");
        assert!(r.iter().any(
            |x| matches!(&x.owner, EnergyOwner::Pod { key, .. } if key.pod == "t-1")
                && x.component == Component::Cpu
                && x.cumulative == Joules(10.0)
        ));
        assert!(
            r.iter()
                .any(|x| x.owner == EnergyOwner::NodeSystem && x.component == Component::Dram)
        );
        assert!(r.iter().any(|x| x.owner == EnergyOwner::NodeIdle
            && x.cumulative == Joules(50.0)
            && x.node == "n1"));
    }

    #[test]
    fn legacy_total_millijoules() {
        let c = KeplerConfig {
            legacy: LegacyCounters::Total { millijoules: true },
            ..KeplerConfig::default()
        };
        let samples = vec![sample(
            "kepler_container_joules_total",
            &[
                ("container_name", "a"),
                ("container_namespace", "n"),
                ("pod_name", "p"),
                ("mode", "dynamic"),
            ],
            5000.0,
        )];
        let r = legacy_readings(&samples, &c);
        assert_eq!(r[0].cumulative, Joules(5.0));
        assert_eq!(r[0].component, Component::Other);
    }

    #[test]
    fn v2_zones_not_summed_terminated_continues_series() {
        let c = KeplerConfig {
            gpu: true,
            ..KeplerConfig::default()
        };
        let base = [
            ("pod_id", "u1"),
            ("pod_name", "p"),
            ("pod_namespace", "ns"),
            ("node_name", "n1"),
        ];
        let samples = vec![
            sample(
                "kepler_pod_cpu_joules_total",
                &[
                    base.as_slice(),
                    &[("zone", "package"), ("state", "running")],
                ]
                .concat(),
                100.0,
            ),
            sample(
                "kepler_pod_cpu_joules_total",
                &[
                    base.as_slice(),
                    &[("zone", "package"), ("state", "terminated")],
                ]
                .concat(),
                120.0,
            ),
            sample(
                "kepler_pod_cpu_joules_total",
                &[base.as_slice(), &[("zone", "core"), ("state", "running")]].concat(),
                80.0,
            ),
            sample(
                "kepler_pod_cpu_joules_total",
                &[base.as_slice(), &[("zone", "dram"), ("state", "running")]].concat(),
                9.0,
            ),
            sample(
                "kepler_pod_gpu_joules_total",
                &[base.as_slice(), &[("state", "running")]].concat(),
                500.0,
            ),
            sample(
                "kepler_node_cpu_idle_joules_total",
                &[
                    ("node_name", "n1"),
                    ("zone", "package"),
                    ("path", "aggregated-package"),
                ],
                70.0,
            ),
            sample(
                "kepler_node_gpu_idle_joules_total",
                &[("node_name", "n1"), ("gpu_uuid", "GPU-1")],
                40.0,
            ),
        ];
        // Without `energy.gpu: kepler` the GPU series are not read: one source per joule.
        let without_gpu = v2_readings(&samples, &KeplerConfig::default());
        assert_eq!(without_gpu.len(), 3, "{without_gpu:#?}");
        assert!(without_gpu.iter().all(|x| x.component != Component::Gpu));
        let r = v2_readings(&samples, &c);
        assert_eq!(r.len(), 5, "{r:#?}");
        let cpu: Vec<_> = r
            .iter()
            .filter(|x| x.component == Component::Cpu && matches!(x.owner, EnergyOwner::Pod { .. }))
            .collect();
        assert_eq!(cpu.len(), 1);
        assert_eq!(cpu[0].cumulative, Joules(120.0));
        assert!(r.iter().all(|x| x.node == "n1"));
    }

    /// An instant answer of every `kepler_*` series of a real exposition as a ServiceMonitor
    /// scrape labels it (`honor_labels: false`: the exporter's clashing labels become
    /// `exported_*`), once from each of two Prometheus replicas.
    fn scraped_answer(exposition: &str) -> String {
        let target = [
            ("job", "kepler"),
            ("instance", "10.244.1.17:9102"),
            ("container", "kepler"),
            ("endpoint", "http"),
            ("namespace", "kepler"),
            ("pod", "kepler-x7k2p"),
            ("service", "kepler"),
        ];
        let samples = jobcarbon_testkit::prometheus::exposition_samples(exposition).unwrap();
        let mut result = Vec::new();
        for replica in ["prometheus-0", "prometheus-1"] {
            for (name, labels, value) in samples.iter().filter(|(n, _, _)| n.starts_with("kepler_"))
            {
                let mut metric = serde_json::Map::new();
                metric.insert("__name__".into(), name.clone().into());
                for (k, v) in labels {
                    let clashes = target.iter().any(|(t, _)| t == k);
                    let k = if clashes {
                        format!("exported_{k}")
                    } else {
                        k.clone()
                    };
                    metric.insert(k, v.clone().into());
                }
                for (k, v) in target {
                    metric.insert(k.into(), v.into());
                }
                metric.insert("prometheus_replica".into(), replica.into());
                result.push(
                    serde_json::json!({"metric": metric, "value": [1.7e9, value.to_string()]}),
                );
            }
        }
        serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
            .to_string()
    }

    /// Decoding only [`KeplerConfig::labels_read`] gives the same readings as decoding every
    /// label, for every real Kepler exposition in the fixtures and every counter layout.
    #[test]
    fn readings_from_the_labels_read_equal_readings_from_every_label() {
        use crate::prom::{LabelSelection, decode_instant_answer, default_replica_labels};
        let configs = [
            KeplerConfig::default(),
            KeplerConfig {
                gpu: true,
                ..KeplerConfig::default()
            },
            KeplerConfig {
                legacy: LegacyCounters::Total { millijoules: false },
                ..KeplerConfig::default()
            },
        ];
        for fixture in [
            "kepler-v0.11.4-gpu-node.prom",
            "kepler-v0.7.1-kind-gpu-node.prom",
            "kepler-v0.7.12-gpu-node-source-label.prom",
        ] {
            let body = scraped_answer(&jobcarbon_testkit::fixture(&format!("kepler/{fixture}")));
            for replicas in [vec![], default_replica_labels()] {
                for config in &configs {
                    let read = config.labels_read();
                    let decode =
                        |keep| decode_instant_answer(body.as_bytes(), &replicas, keep).unwrap();
                    let (all, kept) = (
                        decode(LabelSelection::All),
                        decode(LabelSelection::Only(&read)),
                    );
                    let fewer = kept.iter().map(|s| s.labels.len()).sum::<usize>();
                    assert!(
                        fewer < all.iter().map(|s| s.labels.len()).sum::<usize>(),
                        "{fixture}"
                    );
                    let legacy = legacy_readings(&kept, config);
                    let v2 = v2_readings(&kept, config);
                    assert!(
                        !legacy.is_empty() || !v2.is_empty(),
                        "{fixture}: no readings"
                    );
                    assert_eq!(legacy, legacy_readings(&all, config), "{fixture} legacy");
                    assert_eq!(v2, v2_readings(&all, config), "{fixture} v2");
                }
            }
        }
    }

    #[test]
    fn overlapping_zone_selection_is_rejected() {
        let c = KeplerConfig {
            zones: vec![
                ("package".into(), Component::Cpu),
                ("core".into(), Component::Cpu),
            ],
            ..KeplerConfig::default()
        };
        assert!(c.validate().is_err());
        assert!(KeplerConfig::default().validate().is_ok());
    }
}

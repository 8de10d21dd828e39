//! dcgm-exporter through Prometheus (DESIGN §5).
//!
//! - Energy is `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ since driver load, no `_total`).
//!   For GPUs without it, `DCGM_FI_DEV_POWER_USAGE` (W) is integrated: between two reads the
//!   energy is `avg_over_time(power[Δ]) × Δ`, which uses every scraped sample in the gap
//!   (so a backfill over an outage is as good as live reads).
//! - A series is one *GPU* (`Hostname` + `UUID`): MIG lines and time-sliced pods repeat the
//!   whole GPU's value, so every line of a GPU shares one counter and the
//!   [`CounterTracker`](crate::CounterTracker) splits its delta over the lines (each MIG
//!   instance or sharing pod gets an equal part; lines without a pod are
//!   [`EnergyOwner::UnmappedGpu`]). Nothing is counted once per pod.
//! - Pod labels are `pod`/`namespace`/`container`, or `exported_*` when Prometheus did not
//!   honour the exporter's labels; the node is `Hostname` (`hostname` on newer builds).

use crate::prom::{PromClient, PromSample};
use crate::{EnergySource, SourceError, SourceHealth};
use async_trait::async_trait;
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, Joules, PodKey, Seconds};
use std::collections::BTreeMap;
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
        }
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
    health: Mutex<SourceHealth>,
    integrated: Mutex<BTreeMap<String, Integrated>>,
}

impl DcgmSource {
    pub fn new(client: PromClient, config: DcgmConfig) -> Self {
        Self {
            client,
            config,
            health: Mutex::new(SourceHealth::default()),
            integrated: Mutex::new(BTreeMap::new()),
        }
    }

    async fn read_inner(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let energy = self.client.instant(SOURCE, ENERGY, at).await?;
        let mut out = energy_readings(&energy, &self.config);
        if !self.config.power_fallback {
            if energy.is_empty() {
                return Err(missing(ENERGY));
            }
            return Ok(out);
        }
        let with_energy: std::collections::BTreeSet<String> =
            out.iter().map(|r| r.series.clone()).collect();
        let power: Vec<PromSample> = self
            .client
            .instant(SOURCE, POWER, at)
            .await?
            .into_iter()
            .filter(|s| !with_energy.contains(&gpu_series(s, &self.config)))
            .collect();
        if energy.is_empty() && power.is_empty() {
            return Err(missing(&format!("{ENERGY} and {POWER}")));
        }
        if power.is_empty() {
            return Ok(out);
        }
        // Integrate per GPU since its previous read.
        let previous: BTreeMap<String, Integrated> = self
            .integrated
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let mut windows: BTreeMap<i64, Vec<PromSample>> = BTreeMap::new();
        for s in &power {
            if let Some(prev) = previous.get(&gpu_series(s, &self.config))
                && at > prev.at
            {
                let w = (at - prev.at).value().ceil().max(1.0) as i64;
                windows.entry(w).or_default();
            }
        }
        for (w, samples) in windows.iter_mut() {
            *samples = self
                .client
                .instant(SOURCE, &format!("avg_over_time({POWER}[{w}s])"), at)
                .await?;
        }
        let mut next = previous.clone();
        let mut groups: BTreeMap<String, Vec<&PromSample>> = BTreeMap::new();
        for s in &power {
            groups
                .entry(gpu_series(s, &self.config))
                .or_default()
                .push(s);
        }
        for (series, lines) in groups {
            let state = match previous.get(&series) {
                None => Integrated {
                    cumulative: Joules::ZERO,
                    at,
                },
                Some(prev) if at > prev.at => {
                    let w = (at - prev.at).value().ceil().max(1.0) as i64;
                    let avg = windows
                        .get(&w)
                        .map(|samples| {
                            mean_power(
                                samples
                                    .iter()
                                    .filter(|s| gpu_series(s, &self.config) == series),
                            )
                        })
                        .and_then(|p| p.or_else(|| mean_power(lines.iter().copied())))
                        .unwrap_or(0.0);
                    Integrated {
                        cumulative: prev.cumulative + Joules(avg.max(0.0) * (at - prev.at).value()),
                        at,
                    }
                }
                Some(prev) => *prev,
            };
            next.insert(series.clone(), state);
            for line in lines {
                out.push(reading(
                    line,
                    &self.config,
                    series.clone(),
                    state.cumulative,
                    state.at,
                ));
            }
        }
        if let Ok(mut m) = self.integrated.lock() {
            *m = next;
        }
        Ok(out)
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

fn uuid_of(s: &PromSample) -> String {
    s.first_label(&["UUID", "uuid", "gpu_uuid"])
        .or_else(|| s.label("gpu"))
        .unwrap_or("")
        .to_owned()
}

/// The identity of a GPU's counter: one per physical GPU, whatever its MIG instances or pods.
fn gpu_series(s: &PromSample, config: &DcgmConfig) -> String {
    format!("dcgm/{}/{}", node_of(s, config), uuid_of(s))
}

/// The owner a DCGM line names.
pub fn owner_of(s: &PromSample) -> EnergyOwner {
    let namespace = s.label("namespace");
    let pod = s.label("pod");
    let container = s.label("container").unwrap_or("");
    // Without `exported_*`, unprefixed pod labels may name dcgm-exporter's own pod (the
    // scrape target) rather than a workload.
    let names_exporter =
        !s.labels.contains_key("exported_pod") && container.contains("dcgm-exporter");
    match (namespace, pod) {
        (Some(ns), Some(p)) if !names_exporter => EnergyOwner::Pod {
            key: PodKey::new(ns, p),
            container: container.to_owned(),
        },
        _ => EnergyOwner::UnmappedGpu { uuid: uuid_of(s) },
    }
}

fn reading(
    s: &PromSample,
    config: &DcgmConfig,
    series: String,
    cumulative: Joules,
    at: Seconds,
) -> EnergyReading {
    EnergyReading {
        series,
        node: node_of(s, config),
        owner: owner_of(s),
        component: Component::Gpu,
        cumulative,
        at,
    }
}

/// `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` samples (mJ) → readings in J, one per line, all
/// lines of one GPU sharing its series.
pub fn energy_readings(samples: &[PromSample], config: &DcgmConfig) -> Vec<EnergyReading> {
    samples
        .iter()
        .filter(|s| s.value.is_finite())
        .map(|s| {
            reading(
                s,
                config,
                gpu_series(s, config),
                Joules::from_millijoules(s.value),
                s.at,
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
        let result = self.read_inner(at).await;
        if let Ok(mut h) = self.health.lock() {
            h.record(&result);
        }
        result
    }

    fn health(&self) -> SourceHealth {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{CounterTracker, FirstSight};

    fn line(labels: &[(&str, &str)], value: f64, at: f64) -> PromSample {
        PromSample {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
            at: Seconds(at),
        }
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
        assert_eq!(
            r[0].owner,
            EnergyOwner::Pod {
                key: PodKey::new("ml", "train"),
                container: "t".into()
            }
        );
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
            owner_of(&s),
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
}

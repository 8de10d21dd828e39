//! The node agent's GPU counters through Prometheus (`energy.gpu: node-agent`, DESIGN §11).
//!
//! - `jobcarbon_node_gpu_energy_joules_total{gpu_uuid,gpu_model,namespace,pod,container}` is
//!   already split per container by the agent (one monotonic counter per line), so each line
//!   is its own series: nothing is split again here.
//! - Pod labels are `namespace`/`pod`/`container` (the chart's ServiceMonitor honours them),
//!   or `exported_*` when Prometheus did not honour them. A line with no pod (a GPU no
//!   container holds) is [`EnergyOwner::UnmappedGpu`]; without `exported_*`, unprefixed labels
//!   naming the agent's own container are the scrape target, not a workload.
//! - The exposition has no node label: the chart's ServiceMonitor relabels the scraped pod's
//!   node (`__meta_kubernetes_pod_node_name`) into `node`.

use crate::prom::{PromClient, PromSample};
use crate::{EnergySource, HealthCell, SourceError, SourceHealth};
use async_trait::async_trait;
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, Joules, Seconds};

const SOURCE: &str = "node-agent";
const ENERGY: &str = "jobcarbon_node_gpu_energy_joules_total";
const GPUS: &str = "jobcarbon_node_gpus";

/// How to read the node agent's series.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAgentSourceConfig {
    /// Labels naming the node, first present wins.
    pub node_labels: Vec<String>,
    /// The agent's container name: unprefixed pod labels naming it are the scrape target.
    pub agent_container: String,
}

impl Default for NodeAgentSourceConfig {
    fn default() -> Self {
        Self {
            node_labels: ["node", "kubernetes_node", "node_name", "instance"]
                .map(String::from)
                .to_vec(),
            agent_container: "node-agent".into(),
        }
    }
}

/// `jobcarbon node` counters over the Prometheus HTTP API.
#[derive(Debug)]
pub struct NodeAgentSource {
    client: PromClient,
    config: NodeAgentSourceConfig,
    health: HealthCell,
}

impl NodeAgentSource {
    /// Node-agent readings through `client`.
    pub fn new(client: PromClient, config: NodeAgentSourceConfig) -> Self {
        Self {
            client,
            config,
            health: HealthCell::default(),
        }
    }

    async fn read_inner(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let energy = self.client.instant(SOURCE, ENERGY, at).await?;
        if energy.is_empty() {
            // Agents on GPU-less nodes export no energy lines, which is no error; no agent at
            // all is.
            let agents = self.client.instant(SOURCE, GPUS, at).await?;
            if agents.is_empty() {
                return Err(SourceError::Query {
                    source_name: SOURCE.into(),
                    query: format!("{ENERGY} and {GPUS}"),
                    reason: "no node agent metrics in Prometheus at this time (is `nodeAgent.enabled` set and the agent scraped?)".into(),
                });
            }
        }
        Ok(energy_readings(&energy, &self.config))
    }
}

fn node_of(s: &PromSample, config: &NodeAgentSourceConfig) -> String {
    config
        .node_labels
        .iter()
        .find_map(|l| s.label(l))
        .unwrap_or("")
        .to_owned()
}

/// The owner a node agent line names.
pub(crate) fn owner_of(s: &PromSample, config: &NodeAgentSourceConfig) -> EnergyOwner {
    let uuid = s.label("gpu_uuid").unwrap_or("").to_owned();
    let names_agent = !s.labels.contains_key("exported_pod")
        && s.labels.get("container") == Some(&config.agent_container);
    match (s.label("namespace"), s.label("pod")) {
        (Some(ns), Some(pod)) if !names_agent => {
            EnergyOwner::pod(ns, pod, s.label("container").unwrap_or(""))
        }
        _ => EnergyOwner::UnmappedGpu { uuid },
    }
}

const SERIES_PREFIX: &str = "node-agent/";

/// The GPU UUID of a node-agent reading's series (`node-agent/<UUID>/<holder>`).
pub fn gpu_of_series(series: &str) -> Option<&str> {
    series
        .strip_prefix(SERIES_PREFIX)?
        .split('/')
        .next()
        .filter(|u| !u.is_empty())
}

/// `jobcarbon_node_gpu_energy_joules_total` samples (J) → one reading per line.
pub(crate) fn energy_readings(
    samples: &[PromSample],
    config: &NodeAgentSourceConfig,
) -> Vec<EnergyReading> {
    samples
        .iter()
        .filter(|s| s.value.is_finite())
        .map(|s| {
            let node = node_of(s, config);
            let owner = owner_of(s, config);
            let holder = match &owner {
                EnergyOwner::Pod { key, container } => {
                    format!("{}/{}/{container}", key.namespace, key.pod)
                }
                _ => String::new(),
            };
            let uuid = s.label("gpu_uuid").unwrap_or("");
            let reading = EnergyReading::new(
                format!("{SERIES_PREFIX}{uuid}/{holder}"),
                node,
                owner,
                Component::Gpu,
                Joules(s.value),
                s.at,
            );
            // `source` is the agent's own label (a Prometheus target has none of that name).
            match s.label("source") {
                Some("estimated") => reading.estimated(),
                _ => reading,
            }
        })
        .collect()
}

#[async_trait]
impl EnergySource for NodeAgentSource {
    fn name(&self) -> &str {
        SOURCE
    }
    fn counters_start_with_pod(&self) -> bool {
        true
    }
    fn may_name_finished_pods(&self) -> bool {
        true
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

    fn line(labels: &[(&str, &str)], value: f64) -> PromSample {
        PromSample::from_pairs(labels, value, Seconds(0.0))
    }

    #[test]
    fn owners_with_and_without_honoured_labels() {
        let c = NodeAgentSourceConfig::default();
        let honoured = line(
            &[
                ("gpu_uuid", "GPU-0"),
                ("node", "n1"),
                ("namespace", "ml"),
                ("pod", "a"),
                ("container", "main"),
            ],
            5.0,
        );
        let r = energy_readings(&[honoured], &c);
        assert_eq!(r[0].node, "n1");
        assert_eq!(r[0].cumulative, Joules(5.0));
        assert_eq!(r[0].owner, EnergyOwner::pod("ml", "a", "main"));
        // honorLabels: false — the workload's labels are `exported_*`.
        let exported = line(
            &[
                ("gpu_uuid", "GPU-0"),
                ("pod", "jobcarbon-node-agent-x"),
                ("namespace", "jobcarbon"),
                ("container", "node-agent"),
                ("exported_pod", "a"),
                ("exported_namespace", "ml"),
                ("exported_container", "main"),
            ],
            5.0,
        );
        assert_eq!(owner_of(&exported, &c), EnergyOwner::pod("ml", "a", "main"));
        // An idle GPU: empty pod labels (dropped by Prometheus), so only the target's remain.
        let idle = line(
            &[
                ("gpu_uuid", "GPU-1"),
                ("pod", "jobcarbon-node-agent-x"),
                ("namespace", "jobcarbon"),
                ("container", "node-agent"),
            ],
            5.0,
        );
        assert_eq!(
            owner_of(&idle, &c),
            EnergyOwner::UnmappedGpu {
                uuid: "GPU-1".into()
            }
        );
        let idle_honoured = line(&[("gpu_uuid", "GPU-1"), ("node", "n1")], 5.0);
        assert_eq!(
            owner_of(&idle_honoured, &c),
            EnergyOwner::UnmappedGpu {
                uuid: "GPU-1".into()
            }
        );
    }
}

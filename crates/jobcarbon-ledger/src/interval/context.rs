//! What every stage reads and nothing writes: the settings, the previous state, the interval's
//! observations and its duration, with the indexes built once per interval.

use super::{Conditions, IntervalInput};
use crate::config::LIVE_INTENSITY_FALLBACK;
use crate::settings::{PlatformSplit, Settings};
use crate::state::{LedgerState, PodAccount};
use jobcarbon_core::{
    Component, Grams, Joules, NodeFacts, Phase, PodFacts, PodKey, ProductDef, Pue, Seconds,
    WorkloadRef,
};
use std::collections::BTreeMap;

/// The read-only inputs of one interval.
pub(super) struct Context<'a> {
    pub settings: &'a Settings,
    /// The state as of the previous interval.
    pub prev: &'a LedgerState,
    pub input: &'a IntervalInput,
    pub duration: Seconds,
    facts: BTreeMap<&'a PodKey, &'a PodFacts>,
    nodes: BTreeMap<&'a str, &'a NodeFacts>,
    pub products: BTreeMap<&'a str, &'a ProductDef>,
    /// Running pods by node, indexed once: a scan of every pod per node is quadratic at
    /// cluster scale.
    running_by_node: BTreeMap<&'a str, Vec<&'a PodFacts>>,
    /// Non-platform pods running now: the recipients of platform taxes and inference shares.
    pub jobs: Vec<&'a PodFacts>,
}

/// Facts about a pod known this interval, from the snapshot or (finished pods) the state.
pub(super) struct PodInfo<'a> {
    facts: Option<&'a PodFacts>,
    account: Option<&'a PodAccount>,
}

impl PodInfo<'_> {
    pub fn platform(&self, settings: &Settings) -> bool {
        match (self.facts, self.account) {
            (Some(f), _) => f.platform || settings.platform.namespaces.contains(&f.key.namespace),
            (None, Some(a)) => a.platform,
            (None, None) => false,
        }
    }
    pub fn phase(&self) -> Phase {
        self.facts
            .map(|f| f.phase)
            .or(self.account.map(|a| a.phase))
            .unwrap_or(Phase::Unlabelled)
    }
    pub fn product(&self) -> Option<&str> {
        match (self.facts, self.account) {
            (Some(f), _) => f.product.as_deref(),
            (None, Some(a)) => a.product.as_deref(),
            (None, None) => None,
        }
    }
}

impl<'a> Context<'a> {
    pub fn new(prev: &'a LedgerState, settings: &'a Settings, input: &'a IntervalInput) -> Self {
        let duration = match prev.last_booked {
            Some(last) => (input.at - last).non_negative(),
            None => Seconds::ZERO,
        };
        let snapshot = &input.snapshot;
        let mut running_by_node: BTreeMap<&str, Vec<&PodFacts>> = BTreeMap::new();
        for p in snapshot.pods.iter().filter(|p| p.running) {
            if let Some(node) = p.node.as_deref() {
                running_by_node.entry(node).or_default().push(p);
            }
        }
        let mut ctx = Self {
            settings,
            prev,
            input,
            duration,
            facts: snapshot.pods.iter().map(|p| (&p.key, p)).collect(),
            nodes: snapshot
                .nodes
                .iter()
                .map(|n| (n.name.as_str(), n))
                .collect(),
            products: snapshot
                .products
                .iter()
                .map(|p| (p.name.as_str(), p))
                .collect(),
            running_by_node,
            jobs: Vec::new(),
        };
        ctx.jobs = snapshot
            .pods
            .iter()
            .filter(|p| p.running && !ctx.is_platform(&p.key))
            .collect();
        ctx
    }

    /// What is known of `key`; `None` for a pod neither the snapshot nor the state knows.
    pub fn info(&self, key: &PodKey) -> Option<PodInfo<'a>> {
        let facts = self.facts.get(key).copied();
        let account = self.prev.pods.get(key);
        (facts.is_some() || account.is_some() || self.prev.overflow.contains_key(key))
            .then_some(PodInfo { facts, account })
    }

    /// The phase and product the accounts stage books `key` under: the snapshot's, else its
    /// account's, else its roll-up's (a pod over the series cap); `None` for an unknown pod.
    pub fn labels(&self, key: &PodKey) -> Option<(Phase, Option<&'a str>)> {
        if let Some(f) = self.facts.get(key) {
            return Some((f.phase, f.product.as_deref()));
        }
        if let Some(a) = self.prev.pods.get(key) {
            return Some((a.phase, a.product.as_deref()));
        }
        let rollup = &self.prev.overflow.get(key)?.rollup;
        Some((rollup.phase, rollup.product.as_deref()))
    }

    pub fn is_platform(&self, key: &PodKey) -> bool {
        self.info(key).is_some_and(|i| i.platform(self.settings))
    }

    pub fn node(&self, name: &str) -> Option<&'a NodeFacts> {
        self.nodes.get(name).copied()
    }

    /// PUE and intensity of the node's region (the default region when it has none).
    pub fn conditions(&self, node: &str) -> Conditions {
        let region = self
            .nodes
            .get(node)
            .and_then(|n| n.region.as_deref())
            .filter(|r| self.input.conditions.contains_key(*r))
            .unwrap_or(self.settings.default_region.as_str());
        self.input
            .conditions
            .get(region)
            .copied()
            .unwrap_or(Conditions {
                pue: Pue(1.0),
                intensity: LIVE_INTENSITY_FALLBACK,
            })
    }

    /// Operational carbon of `energy` on `node`.
    pub fn grams_on(&self, energy: Joules, node: &str) -> Grams {
        grams_of(energy, self.conditions(node))
    }

    pub fn running_on(&self, node: &str) -> &[&'a PodFacts] {
        self.running_by_node.get(node).map_or(&[], Vec::as_slice)
    }

    /// The product `key` belongs to, when it is one of the snapshot's products.
    pub fn product_of(&self, info: &PodInfo<'a>) -> Option<&'a str> {
        let product = info.product()?;
        self.products.get_key_value(product).map(|(name, _)| *name)
    }
}

pub(super) fn grams_of(energy: Joules, c: Conditions) -> Grams {
    jobcarbon_core::formulas::operational_carbon(energy, c.pue, c.intensity)
}

/// Weights of `pods` for a split over jobs: equal per job (workload), then equal over the
/// job's pods; or by each pod's energy in the interval.
pub(super) fn job_weights(
    pods: &[&PodFacts],
    split: PlatformSplit,
    energy: &BTreeMap<PodKey, BTreeMap<Component, Joules>>,
) -> Vec<(PodKey, f64)> {
    let mut pods_per_workload: BTreeMap<&WorkloadRef, f64> = BTreeMap::new();
    for p in pods {
        *pods_per_workload.entry(&p.workload).or_insert(0.0) += 1.0;
    }
    pods.iter()
        .map(|p| {
            let w = match split {
                PlatformSplit::Equal => 1.0 / pods_per_workload[&p.workload],
                PlatformSplit::ByEnergy => energy
                    .get(&p.key)
                    .map(|e| e.values().sum::<Joules>().value())
                    .unwrap_or(0.0),
            };
            (p.key.clone(), w)
        })
        .collect()
}

//! What every stage reads and nothing writes: the settings, the interval's observations and
//! its duration, what the stages need of the previous state, and the indexes built once per
//! interval. The context borrows nothing of the previous state, so the next state can be booked
//! in place ([`super::book_interval_in_place`]).

use super::flow::PodEnergy;
use super::{Conditions, IntervalInput};
use crate::config::LIVE_INTENSITY_FALLBACK;
use crate::settings::{PlatformSplit, Settings};
use crate::state::{LedgerState, PodAccount};
use jobcarbon_core::{
    Grams, Joules, NodeFacts, Phase, PodFacts, PodKey, ProductDef, Pue, Seconds, WorkloadRef,
};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A pod's dense id within one interval: its rank in `PodKey` order among every pod the
/// snapshot or the previous state knows. Per-pod books are `Vec`s indexed by id, and visiting
/// ids in order visits pods in the order of a `BTreeMap<PodKey, _>`, so every sum over pods
/// adds the same numbers in the same order as before pods had ids.
pub(super) type PodId = usize;

/// A running pod of the snapshot with its id (a pod listed twice appears twice).
pub(super) type Running<'a> = (PodId, &'a PodFacts);

/// The read-only inputs of one interval.
pub(super) struct Context<'a> {
    pub settings: &'a Settings,
    pub input: &'a IntervalInput,
    pub duration: Seconds,
    /// The platform's EPC as of the previous interval.
    pub platform_epc: Grams,
    /// Every pod known this interval, by id.
    pub pods: PodIndex<'a>,
    nodes: BTreeMap<&'a str, &'a NodeFacts>,
    /// Each snapshot node's conditions, and those of a node the snapshot does not know.
    node_conditions: FxHashMap<&'a str, Conditions>,
    default_conditions: Conditions,
    pub products: BTreeMap<&'a str, &'a ProductDef>,
    /// Running pods by node, indexed once: a scan of every pod per node is quadratic at
    /// cluster scale.
    running_by_node: FxHashMap<&'a str, Vec<Running<'a>>>,
    /// Non-platform pods running now: the recipients of platform taxes and inference shares.
    pub jobs: Vec<Running<'a>>,
}

/// What the interval knows of one pod, from the snapshot or (finished pods) the state.
#[derive(Debug, Clone, Copy)]
pub(super) struct PodInfo<'a> {
    /// Its facts in the snapshot (the last listing of a pod listed twice).
    pub facts: Option<&'a PodFacts>,
    pub platform: bool,
    pub phase: Phase,
    /// The product it belongs to, when it is one of the snapshot's products.
    pub product: Option<&'a str>,
    /// Whether the previous state has an account for it.
    pub account: bool,
    /// Whether its account (or its facts, for a new pod) names a run.
    pub run: bool,
    /// Whether the snapshot lists it more than once.
    pub duplicated: bool,
}

/// Pods by id: their keys (in order) and what is known of them, with a hash lookup from key.
pub(super) struct PodIndex<'a> {
    keys: Vec<Cow<'a, PodKey>>,
    info: Vec<PodInfo<'a>>,
    /// Snapshot pods: key → index in the snapshot (the last listing).
    in_snapshot: FxHashMap<&'a PodKey, usize>,
    /// Id of each snapshot listing.
    snapshot_ids: Vec<PodId>,
    /// Pods only the previous state knows.
    state_only: FxHashMap<PodKey, PodId>,
}

/// A pod the previous state knows (an account, or a pod over the series cap), with its place
/// in the snapshot.
type StatePod<'p> = (&'p PodKey, Option<&'p PodAccount>, Option<usize>);

impl<'a> PodIndex<'a> {
    fn new(
        prev: &LedgerState,
        settings: &Settings,
        pods: &'a [PodFacts],
        products: &'a [ProductDef],
    ) -> Self {
        let mut index = Self {
            keys: Vec::with_capacity(prev.pods.len().max(pods.len())),
            info: Vec::with_capacity(prev.pods.len().max(pods.len())),
            in_snapshot: FxHashMap::default(),
            snapshot_ids: vec![usize::MAX; pods.len()],
            state_only: FxHashMap::default(),
        };
        index.in_snapshot.reserve(pods.len());
        let mut duplicated = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            if let Some(earlier) = index.in_snapshot.insert(&p.key, i) {
                duplicated.push(earlier);
            }
        }
        let state = state_pods(prev, &index.in_snapshot);
        // New pods (not in the state) are the only ones to sort: the state's maps are ordered.
        let mut known = vec![false; pods.len()];
        for i in state.iter().filter_map(|(_, _, i)| *i) {
            known[i] = true;
        }
        let mut new: Vec<usize> = index
            .in_snapshot
            .values()
            .copied()
            .filter(|i| !known[*i])
            .collect();
        new.sort_unstable_by(|a, b| pods[*a].key.cmp(&pods[*b].key));
        // A pod's product label resolved to one of the snapshot's products.
        let products: FxHashMap<&'a str, &'a str> = products
            .iter()
            .map(|p| (p.name.as_str(), p.name.as_str()))
            .collect();
        let mut new = new.into_iter().peekable();
        for (key, account, snap) in state {
            while let Some(i) = new.next_if(|i| pods[*i].key < *key) {
                index.push(&pods[i].key, pods, Some(i), None, settings, &products);
            }
            index.push(key, pods, snap, account, settings, &products);
        }
        for i in new {
            index.push(&pods[i].key, pods, Some(i), None, settings, &products);
        }
        for earlier in duplicated {
            if let Some(last) = index.in_snapshot.get(&pods[earlier].key) {
                let id = index.snapshot_ids[*last];
                index.snapshot_ids[earlier] = id;
                index.info[id].duplicated = true;
            }
        }
        index
    }

    /// Gives `key` the next id.
    fn push(
        &mut self,
        key: &PodKey,
        pods: &'a [PodFacts],
        snap: Option<usize>,
        account: Option<&PodAccount>,
        settings: &Settings,
        products: &FxHashMap<&'a str, &'a str>,
    ) {
        let id = self.keys.len();
        let facts = snap.map(|i| {
            self.snapshot_ids[i] = id;
            &pods[i]
        });
        let (platform, phase, product, run) = match (facts, account) {
            (Some(f), a) => (
                f.platform || settings.platform.namespaces.contains(&f.key.namespace),
                f.phase,
                f.product.as_deref(),
                a.map_or(f.run.is_some(), |a| a.run.is_some()),
            ),
            (None, Some(a)) => (a.platform, a.phase, a.product.as_deref(), a.run.is_some()),
            (None, None) => (false, Phase::Unlabelled, None, false),
        };
        self.info.push(PodInfo {
            facts,
            platform,
            phase,
            product: product.and_then(|p| products.get(p).copied()),
            account: account.is_some(),
            run,
            duplicated: false,
        });
        match facts {
            Some(f) => self.keys.push(Cow::Borrowed(&f.key)),
            None => {
                self.state_only.insert(key.clone(), id);
                self.keys.push(Cow::Owned(key.clone()));
            }
        }
    }

    /// How many pods the interval knows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The id of `key`; `None` for a pod neither the snapshot nor the state knows.
    pub fn id(&self, key: &PodKey) -> Option<PodId> {
        match self.in_snapshot.get(key) {
            Some(i) => self.snapshot_ids.get(*i).copied(),
            None => self.state_only.get(key).copied(),
        }
    }

    pub fn key(&self, id: PodId) -> &PodKey {
        &self.keys[id]
    }

    pub fn info(&self, id: PodId) -> &PodInfo<'a> {
        &self.info[id]
    }

    /// The id of the `i`th pod of the snapshot.
    pub fn snapshot_id(&self, i: usize) -> PodId {
        self.snapshot_ids[i]
    }

    /// The id of `key`, searched forwards from `*cursor` (which moves to it): for walking an
    /// ordered map of pods alongside the ids.
    pub fn seek(&self, cursor: &mut PodId, key: &PodKey) -> Option<PodId> {
        while let Some(at) = self.keys.get(*cursor) {
            match at.as_ref().cmp(key) {
                Ordering::Less => *cursor += 1,
                Ordering::Equal => return Some(*cursor),
                Ordering::Greater => return None,
            }
        }
        None
    }
}

impl<'a> Context<'a> {
    pub fn new(prev: &LedgerState, settings: &'a Settings, input: &'a IntervalInput) -> Self {
        let duration = match prev.last_booked {
            Some(last) => (input.at - last).non_negative(),
            None => Seconds::ZERO,
        };
        let snapshot = &input.snapshot;
        let products: BTreeMap<&str, &ProductDef> = snapshot
            .products
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        let pods = PodIndex::new(prev, settings, &snapshot.pods, &snapshot.products);
        let mut running_by_node: FxHashMap<&str, Vec<Running<'a>>> = FxHashMap::default();
        let mut jobs = Vec::new();
        for (i, p) in snapshot.pods.iter().enumerate().filter(|(_, p)| p.running) {
            let id = pods.snapshot_id(i);
            if let Some(node) = p.node.as_deref() {
                running_by_node.entry(node).or_default().push((id, p));
            }
            if !pods.info(id).platform {
                jobs.push((id, p));
            }
        }
        let nodes: BTreeMap<&str, &NodeFacts> = snapshot
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        let default_conditions = region_conditions(settings, input, None);
        let node_conditions = nodes
            .iter()
            .map(|(name, n)| {
                (
                    *name,
                    region_conditions(settings, input, n.region.as_deref()),
                )
            })
            .collect();
        Self {
            settings,
            input,
            duration,
            platform_epc: super::taxes::platform_epc(settings, prev),
            pods,
            nodes,
            node_conditions,
            default_conditions,
            products,
            running_by_node,
            jobs,
        }
    }

    pub fn node(&self, name: &str) -> Option<&'a NodeFacts> {
        self.nodes.get(name).copied()
    }

    /// PUE and intensity of the node's region (the default region when it has none).
    pub fn conditions(&self, node: &str) -> Conditions {
        self.node_conditions
            .get(node)
            .copied()
            .unwrap_or(self.default_conditions)
    }

    /// Operational carbon of `energy` on `node`.
    pub fn grams_on(&self, energy: Joules, node: &str) -> Grams {
        grams_of(energy, self.conditions(node))
    }

    pub fn running_on(&self, node: &str) -> &[Running<'a>] {
        self.running_by_node.get(node).map_or(&[], Vec::as_slice)
    }
}

/// The state's accounts and pods over the series cap in key order, each with the index of its
/// (last) listing in the snapshot.
fn state_pods<'p>(
    prev: &'p LedgerState,
    in_snapshot: &FxHashMap<&PodKey, usize>,
) -> Vec<StatePod<'p>> {
    let mut state = Vec::with_capacity(prev.pods.len() + prev.overflow.len());
    let mut overflow = prev.overflow.keys().peekable();
    for (key, account) in &prev.pods {
        while let Some(o) = overflow.next_if(|o| *o < key) {
            state.push((o, None, in_snapshot.get(o).copied()));
        }
        // A pod both in the accounts and over the cap (only a hand-edited state) is one pod.
        let _ = overflow.next_if(|o| *o == key);
        state.push((key, Some(account), in_snapshot.get(key).copied()));
    }
    state.extend(overflow.map(|o| (o, None, in_snapshot.get(o).copied())));
    state
}

/// PUE and intensity of `region` (the default region when it has none or it is unknown).
fn region_conditions(
    settings: &Settings,
    input: &IntervalInput,
    region: Option<&str>,
) -> Conditions {
    let region = region
        .filter(|r| input.conditions.contains_key(*r))
        .unwrap_or(settings.default_region.as_str());
    input.conditions.get(region).copied().unwrap_or(Conditions {
        pue: Pue(1.0),
        intensity: LIVE_INTENSITY_FALLBACK,
    })
}

pub(super) fn grams_of(energy: Joules, c: Conditions) -> Grams {
    jobcarbon_core::formulas::operational_carbon(energy, c.pue, c.intensity)
}

/// Weights of `pods` for a split over jobs: equal per job (workload), then equal over the
/// job's pods; or by each pod's energy in the interval.
pub(super) fn job_weights(
    pods: &[Running<'_>],
    split: PlatformSplit,
    energy: &[PodEnergy],
) -> Vec<(PodId, f64)> {
    match split {
        PlatformSplit::Equal => {
            // Counts are whole numbers: their sum is exact in any order. One lookup a pod.
            let mut slots: FxHashMap<&WorkloadRef, usize> = FxHashMap::default();
            let mut counts: Vec<f64> = Vec::new();
            let slot_of: Vec<usize> = pods
                .iter()
                .map(|(_, p)| {
                    let fresh = counts.len();
                    let slot = *slots.entry(&p.workload).or_insert(fresh);
                    if slot == fresh {
                        counts.push(0.0);
                    }
                    counts[slot] += 1.0;
                    slot
                })
                .collect();
            pods.iter()
                .zip(slot_of)
                .map(|((id, _), slot)| (*id, 1.0 / counts[slot]))
                .collect()
        }
        PlatformSplit::ByEnergy => pods
            .iter()
            .map(|(id, _)| (*id, energy[*id].total().value()))
            .collect(),
    }
}

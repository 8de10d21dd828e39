//! One accounting interval, as a pure function:
//! (state, settings, snapshot, energy deltas, requests, conditions, at) → (new state, report).
//!
//! Order of booking (DESIGN §2, §6):
//! 1. measured energy to pods; node idle shared by the idle policy; non-pod energy unallocated;
//! 2. operational carbon with each node's region PUE and intensity;
//! 3. embodied-system tax: each node's embodied carbon for the interval, by reserved share;
//! 4. platform taxes: platform pods' carbon, the declared overhead and the platform EPC,
//!    split over the non-platform jobs running in the interval;
//! 5. build jobs into their product's measured EPC, re-training into the model's pool;
//! 6. inference: the model-EPC share and the drained re-training pool, then per-request figures.
//!
//! All splitting goes through `jobcarbon_core::allocation`, and two [`Books`] record every gram:
//! `emissions` (new carbon of the interval) and `transfers` (carbon moved from the platform,
//! product EPCs and re-training pools onto jobs).

use crate::config::LIVE_INTENSITY_FALLBACK;
use crate::epc::product_epcs;
use crate::settings::{IdlePolicy, PlatformSplit, Settings};
use crate::state::{
    LedgerState, OverflowPod, PodAccount, ProductAccount, RollupAccount, RollupKey, WindowEntry,
};
use jobcarbon_core::allocation::{Books, Split, split_by_fraction, split_weighted};
use jobcarbon_core::formulas::{amortized_product_share, embodied_system_share};
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, Grams, GramsPerKwh, Joules, NodeFacts,
    Phase, PodFacts, PodKey, ProductDef, ProductType, Pue, RetrainingPolicy, Seconds, Term, Terms,
    UnallocatedReason,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Re-training amortisation when a model declares none (DESIGN §4 example).
pub const DEFAULT_AMORTIZE_OVER: Seconds = Seconds(86_400.0);

/// PUE and intensity of one region for this interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    pub pue: Pue,
    pub intensity: GramsPerKwh,
}

/// Everything observed for one interval ending at `at`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalInput {
    pub at: Seconds,
    pub snapshot: ClusterSnapshot,
    pub energy: Vec<EnergyDelta>,
    /// Inference requests in the interval, by product.
    pub requests: BTreeMap<String, f64>,
    /// Products whose requests could not be read: their grams are booked, but their
    /// per-request window is left as it was (the last figure is held, not inflated).
    #[serde(default)]
    pub requests_unknown: BTreeSet<String>,
    /// Conditions by region name (static values, or the live value last read).
    pub conditions: BTreeMap<String, Conditions>,
}

/// Where a gram went within an interval.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    Pod(PodKey),
    /// Platform pods' own carbon, passed on to jobs in the same interval.
    Platform,
}

/// What one interval booked.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalReport {
    pub at: Seconds,
    pub duration: Seconds,
    /// New carbon: measured energy, embodied hardware, declared platform overhead, platform EPC.
    pub emissions: Books<Account>,
    /// Carbon moved onto jobs: platform pods' carbon, model EPC shares, drained re-training.
    pub transfers: Books<Account>,
    /// Each non-platform pod's carbon in this interval.
    pub pod_terms: BTreeMap<PodKey, Terms>,
    /// Each pod's energy in this interval (platform pods too), for the allocation history.
    pub pod_energy: BTreeMap<PodKey, Joules>,
    /// Added to each product's measured EPC.
    pub epc_deposits: BTreeMap<String, Grams>,
    /// Added to each model's re-training pool.
    pub pool_deposits: BTreeMap<String, Grams>,
    /// Drained from each model's re-training pool.
    pub pool_drains: BTreeMap<String, Grams>,
}

/// The part of a node's unmapped GPU lines that is idle: as many of them as the node has GPUs
/// no running pod requests (all of them when no running pod holds a GPU); the rest is some
/// pod's energy that the exporter did not map (`gpu_unmapped`).
fn idle_fraction(
    snapshot: &ClusterSnapshot,
    node: Option<&NodeFacts>,
    name: &str,
    unmapped: usize,
) -> f64 {
    let held: f64 = snapshot
        .pods
        .iter()
        .filter(|p| p.running && p.node.as_deref() == Some(name))
        .map(|p| p.gpus.max(0.0))
        .sum();
    if held <= 0.0 || unmapped == 0 {
        return 1.0;
    }
    let free = node.map_or(0.0, |n| (f64::from(n.gpu_count) - held).max(0.0));
    (free / unmapped as f64).min(1.0)
}

/// Facts about a pod known this interval, from the snapshot or (finished pods) the state.
struct PodInfo<'a> {
    facts: Option<&'a PodFacts>,
    account: Option<&'a PodAccount>,
}

impl PodInfo<'_> {
    fn platform(&self, settings: &Settings) -> bool {
        match (self.facts, self.account) {
            (Some(f), _) => f.platform || settings.platform.namespaces.contains(&f.key.namespace),
            (None, Some(a)) => a.platform,
            (None, None) => false,
        }
    }
    fn phase(&self) -> Phase {
        self.facts
            .map(|f| f.phase)
            .or(self.account.map(|a| a.phase))
            .unwrap_or(Phase::Unlabelled)
    }
    fn product(&self) -> Option<&str> {
        match (self.facts, self.account) {
            (Some(f), _) => f.product.as_deref(),
            (None, Some(a)) => a.product.as_deref(),
            (None, None) => None,
        }
    }
}

/// Book one interval. `state` is not modified; the new state is returned.
pub fn book_interval(
    state: &LedgerState,
    settings: &Settings,
    input: &IntervalInput,
) -> (LedgerState, IntervalReport) {
    let at = input.at;
    let duration = match state.last_booked {
        Some(last) => (at - last).non_negative(),
        None => Seconds::ZERO,
    };
    let snapshot = &input.snapshot;
    let facts: BTreeMap<&PodKey, &PodFacts> = snapshot.pods.iter().map(|p| (&p.key, p)).collect();
    let nodes: BTreeMap<&str, &NodeFacts> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let products: BTreeMap<&str, &ProductDef> = snapshot
        .products
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let info = |key: &PodKey| -> Option<PodInfo<'_>> {
        let facts = facts.get(key).copied();
        let account = state.pods.get(key);
        (facts.is_some() || account.is_some() || state.overflow.contains_key(key))
            .then_some(PodInfo { facts, account })
    };
    let conditions = |node: &str| -> Conditions {
        let region = nodes
            .get(node)
            .and_then(|n| n.region.as_deref())
            .filter(|r| input.conditions.contains_key(*r))
            .unwrap_or(settings.default_region.as_str());
        input.conditions.get(region).copied().unwrap_or(Conditions {
            pue: Pue(1.0),
            intensity: LIVE_INTENSITY_FALLBACK,
        })
    };
    let grams_of = |energy: Joules, c: Conditions| {
        jobcarbon_core::formulas::operational_carbon(energy, c.pue, c.intensity)
    };

    let mut emissions: Books<Account> = Books::default();
    let mut transfers: Books<Account> = Books::default();
    let mut energy: BTreeMap<PodKey, BTreeMap<Component, Joules>> = BTreeMap::new();
    let mut own: BTreeMap<PodKey, Terms> = BTreeMap::new();
    let mut energy_on_node: BTreeMap<&str, BTreeMap<PodKey, Joules>> = BTreeMap::new();
    let mut idle: BTreeMap<&str, Joules> = BTreeMap::new();
    let mut node_active: BTreeMap<(&str, Component), Joules> = BTreeMap::new();
    let mut pods_on_node: BTreeMap<(&str, Component), Joules> = BTreeMap::new();
    let mut unmapped_gpu: BTreeMap<&str, BTreeMap<&str, Joules>> = BTreeMap::new();
    let mut gpu_energy = crate::state::GpuEnergy::default();
    let mut estimated: BTreeMap<PodKey, BTreeSet<Component>> = BTreeMap::new();
    let mut estimated_idle_nodes: BTreeSet<&str> = BTreeSet::new();

    // 1–2. Measured energy and its operational carbon.
    for delta in &input.energy {
        let joules = delta.energy.non_negative();
        if joules == Joules::ZERO {
            continue;
        }
        let grams = grams_of(joules, conditions(&delta.node));
        if delta.component == Component::Gpu && delta.owner != EnergyOwner::NodeActive {
            gpu_energy.measured += joules;
        }
        match &delta.owner {
            EnergyOwner::Pod { key, .. } if info(key).is_some() => {
                if delta.estimated {
                    estimated
                        .entry(key.clone())
                        .or_default()
                        .insert(delta.component);
                }
                *energy
                    .entry(key.clone())
                    .or_default()
                    .entry(delta.component)
                    .or_insert(Joules::ZERO) += joules;
                *energy_on_node
                    .entry(delta.node.as_str())
                    .or_default()
                    .entry(key.clone())
                    .or_insert(Joules::ZERO) += joules;
                *pods_on_node
                    .entry((delta.node.as_str(), delta.component))
                    .or_insert(Joules::ZERO) += joules;
                own.entry(key.clone()).or_default()[Term::Operational] += grams;
                emissions.book(grams, to(Account::Pod(key.clone()), grams));
            }
            EnergyOwner::Pod { .. } => {
                emissions.book(grams, unallocated(UnallocatedReason::UnknownPod, grams));
            }
            EnergyOwner::NodeSystem => {
                emissions.book(
                    grams,
                    unallocated(UnallocatedReason::SystemProcesses, grams),
                );
            }
            EnergyOwner::NodeIdle => {
                if delta.estimated {
                    estimated_idle_nodes.insert(delta.node.as_str());
                }
                *idle.entry(delta.node.as_str()).or_insert(Joules::ZERO) += joules;
            }
            EnergyOwner::UnmappedGpu { uuid } => {
                *unmapped_gpu
                    .entry(delta.node.as_str())
                    .or_default()
                    .entry(uuid.as_str())
                    .or_insert(Joules::ZERO) += joules;
            }
            EnergyOwner::NodeActive => {
                *node_active
                    .entry((delta.node.as_str(), delta.component))
                    .or_insert(Joules::ZERO) += joules;
            }
        }
    }
    // Node active energy the node's pods do not account for is non-pod work.
    for ((node, component), active) in &node_active {
        let pods = pods_on_node
            .get(&(*node, *component))
            .copied()
            .unwrap_or(Joules::ZERO);
        let rest = (*active - pods).non_negative();
        if rest > Joules::ZERO {
            let grams = grams_of(rest, conditions(node));
            emissions.book(
                grams,
                unallocated(UnallocatedReason::SystemProcesses, grams),
            );
        }
    }
    for (node, gpus) in &unmapped_gpu {
        let fraction = idle_fraction(snapshot, nodes.get(node).copied(), node, gpus.len());
        let total: Joules = gpus.values().copied().sum();
        let as_idle = total * fraction;
        *idle.entry(node).or_insert(Joules::ZERO) += as_idle;
        let rest = (total - as_idle).non_negative();
        gpu_energy.unmapped += rest;
        if rest > Joules::ZERO {
            let grams = grams_of(rest, conditions(node));
            emissions.book(grams, unallocated(UnallocatedReason::GpuUnmapped, grams));
        }
    }

    // Indexed once: a scan of every pod per node is quadratic at cluster scale.
    let mut running_by_node: BTreeMap<&str, Vec<&PodFacts>> = BTreeMap::new();
    for p in snapshot.pods.iter().filter(|p| p.running) {
        if let Some(node) = p.node.as_deref() {
            running_by_node.entry(node).or_default().push(p);
        }
    }
    let running_on =
        |node: &str| -> Vec<&PodFacts> { running_by_node.get(node).cloned().unwrap_or_default() };

    // Node idle, by policy.
    for (node, idle_joules) in &idle {
        let c = conditions(node);
        let whole = grams_of(*idle_joules, c);
        let recipients: Vec<(PodKey, f64)> = match settings.node_idle {
            IdlePolicy::Unallocated => Vec::new(),
            IdlePolicy::Even => running_on(node)
                .into_iter()
                .map(|p| (p.key.clone(), 1.0))
                .collect(),
            IdlePolicy::ByEnergy => {
                let mut weights: BTreeMap<PodKey, f64> = running_on(node)
                    .into_iter()
                    .map(|p| (p.key.clone(), 0.0))
                    .collect();
                for (key, j) in energy_on_node.get(node).into_iter().flatten() {
                    *weights.entry(key.clone()).or_insert(0.0) += j.value();
                }
                weights.into_iter().collect()
            }
        };
        let split = split_weighted(*idle_joules, recipients, UnallocatedReason::NodeIdle);
        let mut grams_split = Split {
            shares: Vec::with_capacity(split.shares.len()),
            unallocated: split.unallocated.map(|(r, j)| (r, grams_of(j, c))),
        };
        for (key, joules) in split.shares {
            if estimated_idle_nodes.contains(node) {
                estimated
                    .entry(key.clone())
                    .or_default()
                    .insert(Component::IdleShare);
            }
            *energy
                .entry(key.clone())
                .or_default()
                .entry(Component::IdleShare)
                .or_insert(Joules::ZERO) += joules;
            let grams = grams_of(joules, c);
            own.entry(key.clone()).or_default()[Term::Operational] += grams;
            grams_split.shares.push((Account::Pod(key), grams));
        }
        emissions.book(whole, grams_split);
    }

    // 3. Embodied-system tax: the reserved share of each node's embodied carbon.
    if duration.value() > 0.0 {
        for node in &snapshot.nodes {
            let Some(system) = settings.system_for(node) else {
                continue;
            };
            if system.lifetime.value() <= 0.0 {
                continue;
            }
            let whole =
                embodied_system_share(system.embodied_of(node), system.lifetime, duration, 1.0);
            let split = split_by_fraction(
                whole,
                running_on(&node.name)
                    .into_iter()
                    .map(|p| (p.key.clone(), p.reserved_share)),
                UnallocatedReason::UnreservedCapacity,
            );
            for (key, grams) in &split.shares {
                own.entry(key.clone()).or_default()[Term::EmbodiedSystem] += *grams;
            }
            emissions.book(whole, accounts(split));
        }
    }

    // 4. Platform taxes over the non-platform jobs running now.
    let is_platform = |key: &PodKey| info(key).is_some_and(|i| i.platform(settings));
    let jobs: Vec<&PodFacts> = snapshot
        .pods
        .iter()
        .filter(|p| p.running && !is_platform(&p.key))
        .collect();
    let job_weights = |pods: &[&PodFacts], split: PlatformSplit| -> Vec<(PodKey, f64)> {
        let mut pods_per_workload: BTreeMap<&jobcarbon_core::WorkloadRef, f64> = BTreeMap::new();
        for p in pods {
            *pods_per_workload.entry(&p.workload).or_insert(0.0) += 1.0;
        }
        pods.iter()
            .map(|p| {
                let w = match split {
                    // Equal per job (workload), then equal over the job's pods.
                    PlatformSplit::Equal => 1.0 / pods_per_workload[&p.workload],
                    PlatformSplit::ByEnergy => energy
                        .get(&p.key)
                        .map(|e| e.values().sum::<Joules>().value())
                        .unwrap_or(0.0),
                };
                (p.key.clone(), w)
            })
            .collect()
    };
    let platform_weights = job_weights(&jobs, settings.platform.split);

    // Platform pods' own carbon moves onto jobs: operational → platform_operational,
    // embodied → platform_embodied.
    let mut platform_pods_carbon = Terms::ZERO;
    let platform_keys: Vec<PodKey> = own.keys().filter(|k| is_platform(k)).cloned().collect();
    for key in platform_keys {
        if let Some(t) = own.remove(&key) {
            platform_pods_carbon += t;
            // Re-label the emission: it was booked to the pod, it belongs to the platform.
            if let Some(g) = emissions.allocated.remove(&Account::Pod(key)) {
                *emissions
                    .allocated
                    .entry(Account::Platform)
                    .or_insert(Grams::ZERO) += g;
            }
        }
    }
    let mut spread = |whole: Grams, term: Term, books: &mut Books<Account>| {
        if whole == Grams::ZERO {
            return;
        }
        let split = split_weighted(
            whole,
            platform_weights.iter().cloned(),
            UnallocatedReason::NoConcurrentJobs,
        );
        for (key, grams) in &split.shares {
            own.entry(key.clone()).or_default()[term] += *grams;
        }
        books.book(whole, accounts(split));
    };
    spread(
        platform_pods_carbon[Term::Operational],
        Term::PlatformOperational,
        &mut transfers,
    );
    spread(
        platform_pods_carbon[Term::EmbodiedSystem],
        Term::PlatformEmbodied,
        &mut transfers,
    );
    spread(
        settings.platform.overhead * duration,
        Term::PlatformOperational,
        &mut emissions,
    );
    // A platform built by a product amortises that product's EPC as booked so far.
    let platform_epc = match &settings.platform.product {
        Some(name) => state
            .products
            .get(name)
            .filter(|p| p.kind == ProductType::Platform)
            .map(|p| p.epc.total())
            .unwrap_or(Grams::ZERO),
        None => settings.platform.epc,
    };
    if settings.platform.lifetime.value() > 0.0 {
        spread(
            amortized_product_share(platform_epc, settings.platform.lifetime, duration, 1.0),
            Term::PlatformEmbodied,
            &mut emissions,
        );
    }

    // 5. Build jobs into measured EPC; re-training into the model's pool.
    let mut next = state.clone();
    for def in &snapshot.products {
        next.products
            .entry(def.name.clone())
            .or_insert_with(|| ProductAccount::new(def.kind))
            .kind = def.kind;
    }
    let mut epc_deposits: BTreeMap<String, Grams> = BTreeMap::new();
    let mut pool_deposits: BTreeMap<String, Grams> = BTreeMap::new();
    for (key, terms) in &own {
        let Some(i) = info(key) else { continue };
        let Some(product) = i.product().filter(|p| products.contains_key(p)) else {
            continue;
        };
        if i.phase().builds_product() {
            *epc_deposits
                .entry(product.to_owned())
                .or_insert(Grams::ZERO) += terms.asce();
        } else if i.phase() == Phase::Retraining {
            *pool_deposits
                .entry(product.to_owned())
                .or_insert(Grams::ZERO) += terms.asce();
        }
    }
    for (product, grams) in &epc_deposits {
        if let Some(account) = next.products.get_mut(product) {
            account.measured += *grams;
        }
    }
    for (product, grams) in &pool_deposits {
        let amortize_over = match products
            .get(product.as_str())
            .and_then(|d| d.retraining.as_ref())
        {
            Some(RetrainingPolicy::AmortizeOver(s)) if s.value() > 0.0 => *s,
            _ => DEFAULT_AMORTIZE_OVER,
        };
        if let Some(account) = next.products.get_mut(product) {
            account.pool.deposit(at, *grams, amortize_over);
        }
    }
    let measured: BTreeMap<String, Grams> = next
        .products
        .iter()
        .map(|(name, a)| (name.clone(), a.measured))
        .collect();
    for (name, parts) in product_epcs(&snapshot.products, &measured) {
        if let Some(account) = next.products.get_mut(&name) {
            account.epc = parts;
        }
    }

    // 6. Inference: model EPC share and re-training, over the model's running inference jobs.
    let mut pool_drains: BTreeMap<String, Grams> = BTreeMap::new();
    let mut serving_by_model: BTreeMap<&str, Vec<&PodFacts>> = BTreeMap::new();
    for p in jobs.iter().copied().filter(|p| p.phase == Phase::Inference) {
        if let Some(product) = p.product.as_deref() {
            serving_by_model.entry(product).or_default().push(p);
        }
    }
    for def in snapshot
        .products
        .iter()
        .filter(|d| d.kind == ProductType::Model)
    {
        let serving: Vec<&PodFacts> = serving_by_model
            .get(def.name.as_str())
            .cloned()
            .unwrap_or_default();
        let weights = job_weights(&serving, PlatformSplit::Equal);
        let Some(account) = next.products.get_mut(&def.name) else {
            continue;
        };
        if def.lifetime.value() > 0.0 && duration.value() > 0.0 {
            let whole = amortized_product_share(account.epc.total(), def.lifetime, duration, 1.0);
            if whole != Grams::ZERO {
                let split = split_weighted(
                    whole,
                    weights.iter().cloned(),
                    UnallocatedReason::NoInference,
                );
                for (key, grams) in &split.shares {
                    own.entry(key.clone()).or_default()[Term::ModelEpc] += *grams;
                }
                transfers.book(whole, accounts(split));
            }
        }
        if !serving.is_empty() && duration.value() > 0.0 {
            let drained = account.pool.drain(duration);
            if drained != Grams::ZERO {
                let split = split_weighted(
                    drained,
                    weights.iter().cloned(),
                    UnallocatedReason::NoInference,
                );
                for (key, grams) in &split.shares {
                    own.entry(key.clone()).or_default()[Term::Retraining] += *grams;
                }
                transfers.book(drained, accounts(split));
                pool_drains.insert(def.name.clone(), drained);
            }
        }
    }

    // Per-request figures: inference pods' ASCᵉ over requests, in a sliding window.
    let mut inference_grams: BTreeMap<String, Grams> = BTreeMap::new();
    for (key, terms) in &own {
        if let Some(i) = info(key)
            && i.phase() == Phase::Inference
            && let Some(product) = i.product().filter(|p| products.contains_key(p))
        {
            *inference_grams
                .entry(product.to_owned())
                .or_insert(Grams::ZERO) += terms.asce();
        }
    }
    let window_start = at - settings.inference_window;
    for (name, account) in &mut next.products {
        let grams = inference_grams.get(name).copied().unwrap_or(Grams::ZERO);
        let requests = input
            .requests
            .get(name)
            .copied()
            .filter(|r| r.is_finite() && *r > 0.0)
            .unwrap_or(0.0);
        account.requests_total += requests;
        account.inference_grams_total += grams;
        let known = !input.requests_unknown.contains(name.as_str());
        if known && (grams != Grams::ZERO || requests > 0.0) {
            account.window.push_back(WindowEntry {
                at,
                grams,
                requests,
            });
        }
        while account.window.front().is_some_and(|w| w.at <= window_start) {
            account.window.pop_front();
        }
    }

    // Apply to pod accounts, then roll up finished pods past the grace period.
    apply_pods(&mut next, settings, input, &energy, &own);
    mark_estimated(&mut next, &estimated);
    for (reason, grams) in emissions.unallocated.iter().chain(&transfers.unallocated) {
        *next.unallocated.entry(*reason).or_insert(Grams::ZERO) += *grams;
    }
    next.gpu_energy.measured += gpu_energy.measured;
    next.gpu_energy.unmapped += gpu_energy.unmapped;
    next.last_booked = Some(at);
    next.intervals_booked += 1;

    let report = IntervalReport {
        at,
        duration,
        emissions,
        transfers,
        pod_terms: own,
        pod_energy: energy
            .iter()
            .map(|(k, e)| (k.clone(), e.values().copied().sum()))
            .collect(),
        epc_deposits,
        pool_deposits,
        pool_drains,
    };
    (next, report)
}

fn to(account: Account, grams: Grams) -> Split<Account, Grams> {
    Split {
        shares: vec![(account, grams)],
        unallocated: None,
    }
}

fn unallocated(reason: UnallocatedReason, grams: Grams) -> Split<Account, Grams> {
    Split {
        shares: Vec::new(),
        unallocated: Some((reason, grams)),
    }
}

fn accounts(split: Split<PodKey, Grams>) -> Split<Account, Grams> {
    Split {
        shares: split
            .shares
            .into_iter()
            .map(|(k, g)| (Account::Pod(k), g))
            .collect(),
        unallocated: split.unallocated,
    }
}

fn apply_pods(
    next: &mut LedgerState,
    settings: &Settings,
    input: &IntervalInput,
    energy: &BTreeMap<PodKey, BTreeMap<Component, Joules>>,
    terms: &BTreeMap<PodKey, Terms>,
) {
    let at = input.at;
    let present: BTreeSet<&PodKey> = input.snapshot.pods.iter().map(|p| &p.key).collect();
    for facts in &input.snapshot.pods {
        if next.pods.contains_key(&facts.key) || next.overflow.contains_key(&facts.key) {
            continue;
        }
        if next.pods.len() >= settings.max_pod_series {
            let rollup = RollupKey {
                workload: facts.workload.clone(),
                phase: facts.phase,
                product: facts.product.clone(),
            };
            next.rolled_up.entry(rollup.clone()).or_default().pods += 1;
            next.overflow.insert(
                facts.key.clone(),
                OverflowPod {
                    rollup,
                    gone_at: None,
                },
            );
            next.series_dropped += 1;
            continue;
        }
        next.pods.insert(
            facts.key.clone(),
            PodAccount {
                workload: facts.workload.clone(),
                phase: facts.phase,
                product: facts.product.clone(),
                node: facts.node.clone(),
                platform: facts.platform
                    || settings.platform.namespaces.contains(&facts.key.namespace),
                running: facts.running,
                ever_ran: false,
                energy: BTreeMap::new(),
                carbon: Terms::ZERO,
                first_seen: at,
                last_seen: at,
                finished_at: None,
                estimated: BTreeSet::new(),
                run: facts.run.clone(),
            },
        );
    }
    for facts in &input.snapshot.pods {
        if let Some(account) = next.pods.get_mut(&facts.key) {
            account.running = facts.running;
            account.ever_ran |= facts.running;
            account.node = facts.node.clone().or(account.node.take());
            account.phase = facts.phase;
            account.product = facts.product.clone();
            account.last_seen = at;
            if let Some(run) = &account.run {
                let workload = account.workload.clone();
                let run = run.clone();
                next.run_mut(&workload, &run, at).last_seen = at;
            }
            let Some(account) = next.pods.get_mut(&facts.key) else {
                continue;
            };
            let finished = account.ever_ran && !facts.running;
            account.finished_at = match (finished, account.finished_at) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(at),
                (false, _) => None,
            };
        }
    }
    for (key, account) in next.pods.iter_mut() {
        if !present.contains(key) {
            account.running = false;
            account.finished_at.get_or_insert(at);
        }
    }
    let keys: BTreeSet<&PodKey> = energy.keys().chain(terms.keys()).collect();
    for key in keys {
        let e = energy.get(key);
        let t = terms.get(key).copied().unwrap_or(Terms::ZERO);
        if let Some(account) = next.pods.get_mut(key) {
            add_energy(&mut account.energy, e);
            account.carbon += t;
            if let Some(run) = account.run.clone() {
                let workload = account.workload.clone();
                let run = next.run_mut(&workload, &run, at);
                add_energy(&mut run.energy, e);
                run.carbon += t;
            }
        } else if let Some(overflow) = next.overflow.get(key) {
            let rollup = next.rolled_up.entry(overflow.rollup.clone()).or_default();
            add_energy(&mut rollup.energy, e);
            rollup.carbon += t;
        }
    }
    // Overflow pods are forgotten a grace period after they are gone.
    for (key, pod) in next.overflow.iter_mut() {
        if present.contains(key) {
            pod.gone_at = None;
        } else {
            pod.gone_at.get_or_insert(at);
        }
    }
    next.overflow.retain(|_, pod| {
        pod.gone_at
            .is_none_or(|t| (at - t).value() < settings.grace_period.value())
    });
    let expired: Vec<PodKey> = next
        .pods
        .iter()
        .filter(|(_, a)| {
            a.finished_at
                .is_some_and(|t| (at - t).value() >= settings.grace_period.value())
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in expired {
        if let Some(account) = next.pods.remove(&key) {
            let rollup = next.rolled_up.entry(account.rollup_key()).or_default();
            add_energy(&mut rollup.energy, Some(&account.energy));
            rollup.carbon += account.carbon;
            rollup.pods += 1;
            rollup.estimated.extend(account.estimated.iter().copied());
        }
    }
}

/// Records which components of which pods were estimated this interval.
fn mark_estimated(next: &mut LedgerState, estimated: &BTreeMap<PodKey, BTreeSet<Component>>) {
    for (key, components) in estimated {
        if let Some(account) = next.pods.get_mut(key) {
            account.estimated.extend(components.iter().copied());
        } else if let Some(overflow) = next.overflow.get(key) {
            let rollup = next.rolled_up.entry(overflow.rollup.clone()).or_default();
            rollup.estimated.extend(components.iter().copied());
        }
    }
}

fn add_energy(into: &mut BTreeMap<Component, Joules>, from: Option<&BTreeMap<Component, Joules>>) {
    for (c, j) in from.into_iter().flatten() {
        *into.entry(*c).or_insert(Joules::ZERO) += *j;
    }
}

/// Sum of a roll-up account and helpers used by the exporter and tests.
impl RollupAccount {
    pub fn energy_total(&self) -> Joules {
        self.energy.values().sum()
    }
}

//! One accounting interval, as a pure function:
//! (state, settings, snapshot, energy deltas, requests, conditions, at) → (new state, report).
//!
//! Order of booking (DESIGN §2, §6), one stage each:
//! 1. measure: each energy line to its pod, node idle, unmapped GPUs or non-pod work;
//! 2. share idle: node idle (and idle GPUs) to pods by the idle policy;
//! 3. operational: energy × each node's region PUE and intensity; non-pod carbon unallocated;
//! 4. embodied: each node's embodied carbon for the interval, by reserved share;
//! 5. platform: platform pods' carbon, the declared overhead and the platform EPC, split over
//!    the non-platform jobs running in the interval;
//! 6. deposits: build jobs into their product's measured EPC, re-training into the model's pool;
//! 7. inference: the model-EPC share and the drained re-training pool onto serving jobs;
//! 8. request windows: inference carbon into per-request figures;
//! 9. accounts: the interval into pod accounts, roll-ups and unallocated totals; the same
//!    grams into the totals family by namespace, phase and product, and the roll-ups of
//!    workloads with no pod left retired (their series stop; the totals keep their grams).
//!
//! All splitting goes through `jobcarbon_core::allocation`, and two [`Books`] record every gram:
//! `emissions` (new carbon of the interval) and `transfers` (carbon moved from the platform,
//! product EPCs and re-training pools onto jobs).
//!
//! Each step is a named stage ([`Stage`]), a function over a read-only context (settings,
//! what is needed of the previous state, input, duration) and an accumulator (the next state and the books), one
//! file per concern: `energy` (measure, share idle, operational), `taxes` (embodied, platform),
//! `products` (deposits, inference, request windows) and `pods` (accounts). Each stage
//! balances what entered it against what left it ([`StageFlow`]); debug builds assert that
//! nothing was lost, and [`book_interval_traced`] returns the balances.
//!
//! Speed (docs/performance.md, "ledger scale"): the context gives every pod it knows a dense
//! id in `PodKey` order, once per interval; the accumulator's per-pod books are `Vec`s by id
//! (energy as a fixed array by component), so a stage never searches or clones a key, and
//! visiting ids in order adds in the same order as the ordered maps did (the same numbers, bit
//! for bit). The accounts stage walks the state's ordered maps alongside the ids. Keys are
//! cloned only into the report. [`book_interval_in_place`] books into the state itself;
//! [`book_interval`] is that on a copy.

mod context;
mod energy;
mod flow;
mod pods;
mod products;
mod taxes;
mod totals;

pub use flow::{Flow, STAGE_TOLERANCE, Stage, StageFlow};

use crate::settings::Settings;
use crate::state::{LedgerState, RollupAccount};
use context::Context;
use flow::Accumulator;
use jobcarbon_core::allocation::Books;
use jobcarbon_core::{
    ClusterSnapshot, EnergyDelta, Grams, GramsPerKwh, Joules, PodKey, Pue, Seconds, Terms,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Re-training amortisation when a model declares none (DESIGN §4 example).
pub const DEFAULT_AMORTIZE_OVER: Seconds = Seconds(86_400.0);

/// PUE and intensity of one region for this interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// Power usage effectiveness of the region.
    pub pue: Pue,
    /// Grid carbon intensity of the region, gCO2e/kWh.
    pub intensity: GramsPerKwh,
}

/// Everything observed for one interval ending at `at`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalInput {
    /// End of the interval, seconds since the Unix epoch.
    pub at: Seconds,
    /// Pods, nodes and products at the interval's end.
    pub snapshot: ClusterSnapshot,
    /// Energy measured in the interval, per owner.
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
    /// A pod's books.
    Pod(PodKey),
    /// Platform pods' own carbon, passed on to jobs in the same interval.
    Platform,
}

/// What one interval booked.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalReport {
    /// End of the interval, seconds since the Unix epoch.
    pub at: Seconds,
    /// Length of the interval, s.
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

/// Book one interval. `state` is not modified; the new state is returned.
pub fn book_interval(
    state: &LedgerState,
    settings: &Settings,
    input: &IntervalInput,
) -> (LedgerState, IntervalReport) {
    let mut next = state.clone();
    let (report, _) = book(&mut next, settings, input, cfg!(debug_assertions));
    (next, report)
}

/// [`book_interval`] on the state itself: `state` becomes the next state, with no copy of it.
/// The same numbers as [`book_interval`] (which is this on a copy).
pub fn book_interval_in_place(
    state: &mut LedgerState,
    settings: &Settings,
    input: &IntervalInput,
) -> IntervalReport {
    book(state, settings, input, cfg!(debug_assertions)).0
}

/// [`book_interval`], also returning each stage's balance of what entered and left it, in
/// booking order.
pub fn book_interval_traced(
    state: &LedgerState,
    settings: &Settings,
    input: &IntervalInput,
) -> (LedgerState, IntervalReport, Vec<StageFlow>) {
    let mut next = state.clone();
    let (report, flows) = book(&mut next, settings, input, true);
    (next, report, flows)
}

/// The stages, in order, over one context and one accumulator: `state` (the previous state)
/// becomes the next.
fn book(
    state: &mut LedgerState,
    settings: &Settings,
    input: &IntervalInput,
    trace: bool,
) -> (IntervalReport, Vec<StageFlow>) {
    let ctx = Context::new(state, settings, input);
    let mut acc = Accumulator::new(state, ctx.pods.len(), trace);
    let mut measured = energy::measure(&ctx, &mut acc);
    let idle = energy::share_idle(&ctx, &mut acc, &mut measured);
    energy::operational(&ctx, &mut acc, &measured, idle);
    taxes::embodied(&ctx, &mut acc);
    taxes::platform(&ctx, &mut acc);
    products::deposits(&ctx, &mut acc);
    products::inference(&ctx, &mut acc);
    products::request_windows(&ctx, &mut acc);
    totals::add(&ctx, &mut acc);
    pods::accounts(&ctx, &mut acc);
    totals::retire_finished_workloads(acc.next, input.at);
    let pods = &ctx.pods;
    let report = IntervalReport {
        at: input.at,
        duration: ctx.duration,
        pod_terms: by_key(
            acc.own.iter().flatten().count(),
            acc.own
                .iter()
                .enumerate()
                .filter_map(|(id, t)| Some((pods.key(id).clone(), (*t)?))),
        ),
        pod_energy: by_key(
            acc.energy.iter().filter(|e| !e.is_empty()).count(),
            acc.energy
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.is_empty())
                .map(|(id, e)| (pods.key(id).clone(), e.total())),
        ),
        emissions: acc.emissions.into_books(pods),
        transfers: acc.transfers.into_books(pods),
        epc_deposits: acc.epc_deposits,
        pool_deposits: acc.pool_deposits,
        pool_drains: acc.pool_drains,
    };
    (report, acc.flows)
}

/// A map from `len` entries already in key order (collected once, then built without search).
fn by_key<V>(len: usize, entries: impl Iterator<Item = (PodKey, V)>) -> BTreeMap<PodKey, V> {
    let mut all = Vec::with_capacity(len);
    all.extend(entries);
    all.into_iter().collect()
}

/// Sum of a roll-up account and helpers used by the exporter and tests.
impl RollupAccount {
    /// All energy booked in the interval, J.
    pub fn energy_total(&self) -> Joules {
        self.energy.values().sum()
    }
}

//! The accumulator the stages book into, and the per-stage ledger of what entered and left
//! each stage (checked in debug builds, returned by [`super::book_interval_traced`]).

use super::Account;
use super::context::{PodId, PodIndex};
use crate::state::{GpuEnergy, LedgerState};
use jobcarbon_core::allocation::{Books, Split};
use jobcarbon_core::units::Quantity;
use jobcarbon_core::{Component, Grams, Joules, Terms, UnallocatedReason};
use serde::Serialize;
use std::collections::BTreeMap;

/// Relative tolerance of a stage's balance: f64 sums of many shares differ from the whole in
/// the last bits, never more.
pub const STAGE_TOLERANCE: f64 = 1e-9;

/// The stages of one interval, in booking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Stage {
    /// Classifies each energy line: a known pod's, non-pod work, node idle, unmapped GPU.
    Measure,
    /// Turns node idle (and idle GPUs) into pods' `idle_share` by the idle policy.
    ShareIdle,
    /// Energy × PUE × intensity: pods' operational carbon and non-pod carbon (unallocated).
    Operational,
    /// Nodes' embodied carbon by the running pods' reserved share.
    Embodied,
    /// Platform pods' carbon, the declared overhead and the platform EPC onto jobs.
    Platform,
    /// Build jobs' carbon into their product's measured EPC, re-training into the pool.
    Deposits,
    /// Model EPC shares and the drained re-training pool onto inference jobs.
    Inference,
    /// Inference pods' carbon into each product's totals and per-request window.
    RequestWindows,
    /// The interval's pod terms into pod accounts and roll-ups, unallocated into the state.
    Accounts,
}

impl Stage {
    /// Every stage, in booking order.
    pub const ALL: [Stage; 9] = [
        Stage::Measure,
        Stage::ShareIdle,
        Stage::Operational,
        Stage::Embodied,
        Stage::Platform,
        Stage::Deposits,
        Stage::Inference,
        Stage::RequestWindows,
        Stage::Accounts,
    ];
}

/// What entered a stage and what left it, in one unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Flow<Q> {
    /// Quantity that entered the stage.
    pub entered: Q,
    /// Quantity that left it (booked or passed on).
    pub left: Q,
    /// The size of the running totals the balance was taken from (the tolerance scales with it).
    pub scale: f64,
}

impl<Q: Quantity> Flow<Q> {
    /// A flow; `scale` sets the tolerance of its conservation check.
    pub fn new(entered: Q, left: Q, scale: f64) -> Self {
        Self {
            entered,
            left,
            scale,
        }
    }

    /// Nothing in, nothing out.
    pub fn none() -> Self {
        Self::new(Q::ZERO, Q::ZERO, 0.0)
    }

    /// |entered − left| relative to the larger of the flow, the totals and 1.
    pub fn error(&self) -> f64 {
        let (entered, left) = (self.entered.raw(), self.left.raw());
        let scale = entered.abs().max(left.abs()).max(self.scale).max(1.0);
        (entered - left).abs() / scale
    }
}

/// One stage's balance: joules for the energy stages, grams for the carbon stages (the other
/// unit is zero in and out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageFlow {
    /// The stage.
    pub stage: Stage,
    /// Energy into and out of the stage, J.
    pub joules: Flow<Joules>,
    /// Carbon into and out of the stage, gCO2e.
    pub grams: Flow<Grams>,
}

impl StageFlow {
    /// An energy-only stage flow.
    pub fn energy(stage: Stage, joules: Flow<Joules>) -> Self {
        Self {
            stage,
            joules,
            grams: Flow::none(),
        }
    }
    /// A carbon-only stage flow.
    pub fn carbon(stage: Stage, grams: Flow<Grams>) -> Self {
        Self {
            stage,
            joules: Flow::none(),
            grams,
        }
    }
    /// The larger relative error of the two balances.
    pub fn error(&self) -> f64 {
        self.joules.error().max(self.grams.error())
    }
}

/// A pod's energy in the interval by component. `booked` marks the components an energy line
/// or idle share reached (even with 0 J), as the keys of a map would: only those reach the
/// pod's account.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PodEnergy {
    joules: [Joules; 5],
    booked: u8,
}

/// A component's place in [`PodEnergy`] and in a set of components (`Component::ALL` order,
/// which is the components' order).
pub(super) fn slot(component: Component) -> usize {
    match component {
        Component::Cpu => 0,
        Component::Dram => 1,
        Component::Gpu => 2,
        Component::Other => 3,
        Component::IdleShare => 4,
    }
}

/// Components as a bit set (bit [`slot`]), in order.
pub(super) fn components(set: u8) -> impl Iterator<Item = Component> {
    Component::ALL
        .into_iter()
        .filter(move |c| set & (1 << slot(*c)) != 0)
}

impl PodEnergy {
    pub fn add(&mut self, component: Component, joules: Joules) {
        let s = slot(component);
        self.joules[s] += joules;
        self.booked |= 1 << s;
    }
    pub fn is_empty(&self) -> bool {
        self.booked == 0
    }
    /// The booked components with their energy, in component order.
    pub fn iter(&self) -> impl Iterator<Item = (Component, Joules)> + '_ {
        components(self.booked).map(|c| (c, self.joules[slot(c)]))
    }
    pub fn total(&self) -> Joules {
        self.iter().map(|(_, j)| j).sum()
    }
}

/// [`Books`] of one interval with pods by id; [`PodBooks::into_books`] gives the report's.
#[derive(Debug, Default)]
pub(super) struct PodBooks {
    pub input: Grams,
    pods: Vec<Option<Grams>>,
    /// The platform account (platform pods' own carbon, passed on to jobs).
    pub platform: Option<Grams>,
    pub unallocated: BTreeMap<UnallocatedReason, Grams>,
}

impl PodBooks {
    fn new(pods: usize) -> Self {
        Self {
            pods: vec![None; pods],
            ..Self::default()
        }
    }

    /// Records `whole` as input and books its split over pods.
    pub fn book(&mut self, whole: Grams, split: Split<PodId, Grams>) {
        self.input += whole;
        for (id, grams) in split.shares {
            *self.pods[id].get_or_insert(Grams::ZERO) += grams;
        }
        if let Some((reason, grams)) = split.unallocated {
            self.book_unallocated_part(reason, grams);
        }
    }

    /// `grams` of new input, all to one pod.
    pub fn book_pod(&mut self, id: PodId, grams: Grams) {
        self.input += grams;
        *self.pods[id].get_or_insert(Grams::ZERO) += grams;
    }

    /// `grams` of new input, unallocated for `reason`.
    pub fn book_unallocated(&mut self, reason: UnallocatedReason, grams: Grams) {
        self.input += grams;
        self.book_unallocated_part(reason, grams);
    }

    fn book_unallocated_part(&mut self, reason: UnallocatedReason, grams: Grams) {
        *self.unallocated.entry(reason).or_insert(Grams::ZERO) += grams;
    }

    /// Moves what a pod was allocated to the platform account.
    pub fn move_to_platform(&mut self, id: PodId) {
        if let Some(grams) = self.pods[id].take() {
            *self.platform.get_or_insert(Grams::ZERO) += grams;
        }
    }

    pub fn unallocated_total(&self) -> Grams {
        self.unallocated.values().sum()
    }

    /// The books by [`Account`], pods by key.
    pub fn into_books(self, pods: &PodIndex<'_>) -> Books<Account> {
        let mut allocated = Vec::with_capacity(self.pods.iter().flatten().count() + 1);
        allocated.extend(
            self.pods
                .into_iter()
                .enumerate()
                .filter_map(|(id, g)| Some((Account::Pod(pods.key(id).clone()), g?))),
        );
        allocated.extend(self.platform.map(|g| (Account::Platform, g)));
        Books {
            input: self.input,
            // In key order already: the map is built without a search.
            allocated: allocated.into_iter().collect(),
            unallocated: self.unallocated,
        }
    }
}

/// Everything the stages book: the next state and the interval's books, pods by id.
pub(super) struct Accumulator<'s> {
    pub next: &'s mut LedgerState,
    /// New carbon of the interval.
    pub emissions: PodBooks,
    /// Carbon moved from the platform, product EPCs and re-training pools onto jobs.
    pub transfers: PodBooks,
    pub energy: Vec<PodEnergy>,
    /// Each pod's carbon in this interval.
    pub own: Vec<Option<Terms>>,
    pub gpu_energy: GpuEnergy,
    /// Components whose energy was estimated, per pod (a bit set by [`slot`]).
    pub estimated: Vec<u8>,
    pub epc_deposits: BTreeMap<String, Grams>,
    pub pool_deposits: BTreeMap<String, Grams>,
    pub pool_drains: BTreeMap<String, Grams>,
    /// Whether stages take their balances (debug builds, or when asked for).
    pub trace: bool,
    pub flows: Vec<StageFlow>,
}

impl<'s> Accumulator<'s> {
    /// Books into `next` (the previous state, updated in place) for `pods` pods.
    pub fn new(next: &'s mut LedgerState, pods: usize, trace: bool) -> Self {
        Self {
            next,
            emissions: PodBooks::new(pods),
            transfers: PodBooks::new(pods),
            energy: vec![PodEnergy::default(); pods],
            own: vec![None; pods],
            gpu_energy: GpuEnergy::default(),
            estimated: vec![0; pods],
            epc_deposits: BTreeMap::new(),
            pool_deposits: BTreeMap::new(),
            pool_drains: BTreeMap::new(),
            trace,
            flows: Vec::new(),
        }
    }

    /// The pod's terms of the interval, opened at zero.
    pub fn own_mut(&mut self, id: PodId) -> &mut Terms {
        self.own[id].get_or_insert(Terms::ZERO)
    }

    /// Records a stage's balance and, in debug builds, checks that nothing was lost.
    pub fn record(&mut self, flow: StageFlow) {
        debug_assert!(
            flow.error() <= STAGE_TOLERANCE,
            "stage {:?} lost carbon or energy: {flow:?}",
            flow.stage
        );
        self.flows.push(flow);
    }

    /// Records a carbon stage's balance from the totals taken before it (when tracing).
    pub fn close_carbon(&mut self, stage: Stage, before: Option<CarbonTotals>) {
        if let Some(before) = before {
            let flow = before.flow_to(&self.carbon_totals());
            self.record(StageFlow::carbon(stage, flow));
        }
    }

    /// The carbon totals a stage's balance is taken from.
    pub fn carbon_totals(&self) -> CarbonTotals {
        CarbonTotals {
            input: self.emissions.input + self.transfers.input,
            pods: self.own.iter().flatten().map(Terms::asce).sum(),
            platform: self.emissions.platform.unwrap_or(Grams::ZERO)
                + self.transfers.platform.unwrap_or(Grams::ZERO),
            unallocated: self.emissions.unallocated_total() + self.transfers.unallocated_total(),
        }
    }
}

/// Running carbon totals of the accumulator, before and after a stage.
#[derive(Debug, Clone, Copy)]
pub(super) struct CarbonTotals {
    /// Grams booked into the two books (new carbon and transfers).
    pub input: Grams,
    /// Σ ASCᵉ of the pods' interval terms.
    pub pods: Grams,
    /// Held by the platform account (passed on to jobs in the same stage).
    pub platform: Grams,
    pub unallocated: Grams,
}

impl CarbonTotals {
    /// Grams that entered the books between `self` and `after`, and where they went.
    pub fn flow_to(&self, after: &CarbonTotals) -> Flow<Grams> {
        let left = (after.pods - self.pods)
            + (after.platform - self.platform)
            + (after.unallocated - self.unallocated);
        let scale = [after.input, after.pods, after.platform, after.unallocated]
            .iter()
            .map(|g| g.value().abs())
            .fold(0.0, f64::max);
        Flow::new(after.input - self.input, left, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_gram_is_an_error_and_rounding_is_not() {
        let lost = Flow::new(Grams(10.0), Grams(9.0), 0.0);
        assert!(lost.error() > STAGE_TOLERANCE);
        let rounded = Flow::new(Grams(0.1 + 0.2), Grams(0.3), 0.0);
        assert!(rounded.error() <= STAGE_TOLERANCE);
        // The tolerance scales with the running totals the balance was taken from.
        let big = Flow::new(Grams(1.0), Grams(1.0 + 1e-6), 1e6);
        assert!(big.error() <= STAGE_TOLERANCE);
        let stage = StageFlow::energy(Stage::Measure, Flow::new(Joules(5.0), Joules(4.0), 0.0));
        assert!(stage.error() > STAGE_TOLERANCE);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lost carbon or energy")]
    fn debug_builds_refuse_an_unbalanced_stage() {
        let mut state = LedgerState::default();
        let mut acc = Accumulator::new(&mut state, 0, true);
        acc.record(StageFlow::carbon(
            Stage::Platform,
            Flow::new(Grams(2.0), Grams(1.0), 0.0),
        ));
    }
}

//! The accumulator the stages book into, and the per-stage ledger of what entered and left
//! each stage (checked in debug builds, returned by [`super::book_interval_traced`]).

use super::Account;
use crate::state::{GpuEnergy, LedgerState};
use jobcarbon_core::allocation::Books;
use jobcarbon_core::units::Quantity;
use jobcarbon_core::{Component, Grams, Joules, PodKey, Terms};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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

/// Everything the stages book: the next state and the interval's books.
pub(super) struct Accumulator {
    pub next: LedgerState,
    /// New carbon of the interval.
    pub emissions: Books<Account>,
    /// Carbon moved from the platform, product EPCs and re-training pools onto jobs.
    pub transfers: Books<Account>,
    pub energy: BTreeMap<PodKey, BTreeMap<Component, Joules>>,
    /// Each pod's carbon in this interval.
    pub own: BTreeMap<PodKey, Terms>,
    pub gpu_energy: GpuEnergy,
    pub estimated: BTreeMap<PodKey, BTreeSet<Component>>,
    pub epc_deposits: BTreeMap<String, Grams>,
    pub pool_deposits: BTreeMap<String, Grams>,
    pub pool_drains: BTreeMap<String, Grams>,
    /// Whether stages take their balances (debug builds, or when asked for).
    pub trace: bool,
    pub flows: Vec<StageFlow>,
}

impl Accumulator {
    pub fn new(next: LedgerState, trace: bool) -> Self {
        Self {
            next,
            emissions: Books::default(),
            transfers: Books::default(),
            energy: BTreeMap::new(),
            own: BTreeMap::new(),
            gpu_energy: GpuEnergy::default(),
            estimated: BTreeMap::new(),
            epc_deposits: BTreeMap::new(),
            pool_deposits: BTreeMap::new(),
            pool_drains: BTreeMap::new(),
            trace,
            flows: Vec::new(),
        }
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
            pods: self.own.values().map(Terms::asce).sum(),
            platform: self
                .emissions
                .allocated
                .get(&Account::Platform)
                .copied()
                .unwrap_or(Grams::ZERO)
                + self
                    .transfers
                    .allocated
                    .get(&Account::Platform)
                    .copied()
                    .unwrap_or(Grams::ZERO),
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
        let mut acc = Accumulator::new(LedgerState::default(), true);
        acc.record(StageFlow::carbon(
            Stage::Platform,
            Flow::new(Grams(2.0), Grams(1.0), 0.0),
        ));
    }
}

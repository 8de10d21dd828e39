//! The accounts stage: the interval's pod terms and energy into pod accounts (or the roll-up of
//! pods over the series cap), finished pods rolled up past the grace period, and the
//! interval's unallocated carbon into the state's totals.
//!
//! Pods are visited in key order alongside their ids (the state's maps are ordered), so a pod
//! costs no map lookup; runs and roll-ups, which several pods add to, are added to in key order.

use super::context::{Context, PodId, PodIndex};
use super::flow::{Accumulator, Flow, PodEnergy, Stage, StageFlow, components};
use crate::settings::Settings;
use crate::state::{LedgerState, OverflowPod, PodAccount, RollupKey, add_energy};
use jobcarbon_core::{Grams, PodFacts, Seconds, Terms};
use std::collections::{BTreeMap, BTreeSet};

/// Carbon held by the state's workloads (live and retired), and its unallocated totals.
fn state_carbon(state: &LedgerState) -> (Grams, Grams) {
    (
        state.booked_to_workloads(),
        state.unallocated.values().copied().sum(),
    )
}

/// Stage 9. Books the interval into the next state.
pub(super) fn accounts(ctx: &Context<'_>, acc: &mut Accumulator) {
    let before = acc.trace.then(|| state_carbon(&*acc.next));
    apply_pods(ctx, acc);
    for (reason, grams) in acc
        .emissions
        .unallocated
        .iter()
        .chain(&acc.transfers.unallocated)
    {
        *acc.next.unallocated.entry(*reason).or_insert(Grams::ZERO) += *grams;
    }
    acc.next.gpu_energy.measured += acc.gpu_energy.measured;
    acc.next.gpu_energy.unmapped += acc.gpu_energy.unmapped;
    acc.next.last_booked = Some(ctx.input.at);
    acc.next.intervals_booked += 1;
    if let Some((held, unallocated)) = before {
        let entered = acc.own.iter().flatten().map(Terms::asce).sum::<Grams>()
            + acc.emissions.unallocated_total()
            + acc.transfers.unallocated_total();
        let (held_after, unallocated_after) = state_carbon(&*acc.next);
        let left = (held_after - held) + (unallocated_after - unallocated);
        let scale = held_after.value().max(unallocated_after.value());
        acc.record(StageFlow::carbon(
            Stage::Accounts,
            Flow::new(entered, left, scale),
        ));
    }
}

/// The interval of one pod: its energy, terms and estimated components.
#[derive(Clone, Copy)]
struct PodInterval {
    energy: PodEnergy,
    terms: Option<Terms>,
    estimated: u8,
}

impl PodInterval {
    fn of(acc: &Accumulator<'_>, id: PodId) -> PodInterval {
        PodInterval {
            energy: acc.energy[id],
            terms: acc.own[id],
            estimated: acc.estimated[id],
        }
    }
    /// Whether the pod had energy or terms this interval.
    fn booked(&self) -> bool {
        !self.energy.is_empty() || self.terms.is_some()
    }
    fn terms(&self) -> Terms {
        self.terms.unwrap_or(Terms::ZERO)
    }
}

/// The interval's pods into their accounts: new pods get one (or, over the series cap, go
/// straight to their roll-up), the interval's energy and terms are added, and finished pods
/// past the grace period are rolled up.
fn apply_pods(ctx: &Context<'_>, acc: &mut Accumulator) {
    let (at, settings, pods) = (ctx.input.at, ctx.settings, &ctx.pods);
    let snapshot = &ctx.input.snapshot.pods;
    for (i, facts) in snapshot.iter().enumerate() {
        let info = pods.info(pods.snapshot_id(i));
        if !info.account {
            open_account(acc.next, settings, facts, at);
        }
        if info.duplicated {
            refresh_account(acc.next, facts, at);
        }
    }
    for (i, facts) in snapshot.iter().enumerate() {
        if pods.info(pods.snapshot_id(i)).run {
            see_run(acc.next, facts, at);
        }
    }
    let (with_runs, expired) = update_accounts(ctx, acc);
    for id in with_runs {
        let interval = PodInterval::of(acc, id);
        add_to_run(acc.next, pods, id, interval, at);
    }
    update_overflow(ctx, acc);
    for id in expired {
        if let Some(account) = acc.next.pods.remove(pods.key(id)) {
            let rollup = acc.next.rolled_up.entry(account.rollup_key()).or_default();
            add_energy(
                &mut rollup.energy,
                account.energy.iter().map(|(c, j)| (*c, *j)),
            );
            rollup.carbon += account.carbon;
            rollup.pods += 1;
            rollup.estimated.extend(account.estimated.iter().copied());
        }
    }
    mark_overflow_estimated(ctx, acc);
}

/// Each account (key order): refreshed from the snapshot or marked gone, the interval added,
/// its estimated components marked unless it expires now. Returns the pods whose run gets the
/// interval too and the pods past the grace period, both in key order.
fn update_accounts(ctx: &Context<'_>, acc: &mut Accumulator) -> (Vec<PodId>, Vec<PodId>) {
    let (at, grace) = (ctx.input.at, ctx.settings.grace_period);
    let (mut with_runs, mut expired) = (Vec::new(), Vec::new());
    let mut cursor = 0;
    for (key, account) in acc.next.pods.iter_mut() {
        let Some(id) = ctx.pods.seek(&mut cursor, key) else {
            continue;
        };
        let info = ctx.pods.info(id);
        match info.facts {
            Some(facts) if !info.duplicated => refresh(account, facts, at),
            Some(_) => {}
            None => {
                account.running = false;
                account.finished_at.get_or_insert(at);
            }
        }
        let interval = PodInterval {
            energy: acc.energy[id],
            terms: acc.own[id],
            estimated: acc.estimated[id],
        };
        if interval.booked() {
            add_energy(&mut account.energy, interval.energy.iter());
            account.carbon += interval.terms();
            if account.run.is_some() {
                with_runs.push(id);
            }
        }
        if account
            .finished_at
            .is_some_and(|t| (at - t).value() >= grace.value())
        {
            expired.push(id);
        } else {
            account.estimated.extend(components(interval.estimated));
        }
    }
    (with_runs, expired)
}

/// Opens the account of a pod seen for the first time, or sends it to its roll-up when the
/// series cap is reached.
fn open_account(next: &mut LedgerState, settings: &Settings, facts: &PodFacts, at: Seconds) {
    if next.pods.contains_key(&facts.key) || next.overflow.contains_key(&facts.key) {
        return;
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
        return;
    }
    next.pods.insert(
        facts.key.clone(),
        PodAccount {
            workload: facts.workload.clone(),
            phase: facts.phase,
            product: facts.product.clone(),
            node: facts.node.clone(),
            platform: facts.platform || settings.platform.namespaces.contains(&facts.key.namespace),
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

/// Updates a known pod's account from this interval's facts (a pod listed more than once: in
/// the order listed).
fn refresh_account(next: &mut LedgerState, facts: &PodFacts, at: Seconds) {
    if let Some(account) = next.pods.get_mut(&facts.key) {
        refresh(account, facts, at);
    }
}

/// A pod's account from this interval's facts (strings are copied only when they changed).
fn refresh(account: &mut PodAccount, facts: &PodFacts, at: Seconds) {
    account.running = facts.running;
    account.ever_ran |= facts.running;
    if facts.node.is_some() && account.node != facts.node {
        account.node.clone_from(&facts.node);
    }
    account.phase = facts.phase;
    if account.product != facts.product {
        account.product.clone_from(&facts.product);
    }
    account.last_seen = at;
    let finished = account.ever_ran && !facts.running;
    account.finished_at = match (finished, account.finished_at) {
        (true, Some(t)) => Some(t),
        (true, None) => Some(at),
        (false, _) => None,
    };
}

/// The last sight of the run a listed pod's account belongs to.
fn see_run(next: &mut LedgerState, facts: &PodFacts, at: Seconds) {
    let Some(account) = next.pods.get(&facts.key) else {
        return;
    };
    if let Some(run) = &account.run {
        let workload = account.workload.clone();
        let run = run.clone();
        next.run_mut(&workload, &run, at).last_seen = at;
    }
}

/// Adds a pod's interval to its run.
fn add_to_run(
    next: &mut LedgerState,
    pods: &PodIndex<'_>,
    id: PodId,
    interval: PodInterval,
    at: Seconds,
) {
    let Some(account) = next.pods.get(pods.key(id)) else {
        return;
    };
    if let Some(run) = account.run.clone() {
        let workload = account.workload.clone();
        let run = next.run_mut(&workload, &run, at);
        add_energy(&mut run.energy, interval.energy.iter());
        run.carbon += interval.terms();
    }
}

/// Pods over the series cap (key order): the interval into their roll-up, gone ones
/// forgotten a grace period after they left.
fn update_overflow(ctx: &Context<'_>, acc: &mut Accumulator) {
    let at = ctx.input.at;
    let next = &mut *acc.next;
    let mut cursor = 0;
    for (key, pod) in next.overflow.iter_mut() {
        let id = ctx.pods.seek(&mut cursor, key);
        if let Some(id) = id {
            let interval = PodInterval {
                energy: acc.energy[id],
                terms: acc.own[id],
                estimated: 0,
            };
            if interval.booked() {
                let rollup = next.rolled_up.entry(pod.rollup.clone()).or_default();
                add_energy(&mut rollup.energy, interval.energy.iter());
                rollup.carbon += interval.terms();
            }
        }
        if id.is_some_and(|id| ctx.pods.info(id).facts.is_some()) {
            pod.gone_at = None;
        } else {
            pod.gone_at.get_or_insert(at);
        }
    }
    let grace = ctx.settings.grace_period.value();
    next.overflow
        .retain(|_, pod| pod.gone_at.is_none_or(|t| (at - t).value() < grace));
}

/// Components estimated this interval of pods over the series cap, into their roll-up.
fn mark_overflow_estimated(ctx: &Context<'_>, acc: &mut Accumulator) {
    let next = &mut *acc.next;
    let mut cursor = 0;
    for (key, pod) in &next.overflow {
        if let Some(id) = ctx.pods.seek(&mut cursor, key)
            && acc.estimated[id] != 0
        {
            let rollup = next.rolled_up.entry(pod.rollup.clone()).or_default();
            rollup.estimated.extend(components(acc.estimated[id]));
        }
    }
}

//! The accounts stage: the interval's pod terms and energy into pod accounts (or the roll-up of
//! pods over the series cap), finished pods rolled up past the grace period, and the
//! interval's unallocated carbon into the state's totals.

use super::IntervalInput;
use super::context::Context;
use super::flow::{Accumulator, Flow, Stage, StageFlow};
use crate::settings::Settings;
use crate::state::{LedgerState, OverflowPod, PodAccount, RollupKey};
use jobcarbon_core::{Component, Grams, Joules, PodFacts, PodKey, Seconds, Terms};
use std::collections::{BTreeMap, BTreeSet};

type PodEnergy = BTreeMap<PodKey, BTreeMap<Component, Joules>>;

/// Carbon held by the state's pods and roll-ups, and its unallocated totals.
fn state_carbon(state: &LedgerState) -> (Grams, Grams) {
    let held = state
        .pods
        .values()
        .map(|p| p.carbon.asce())
        .chain(state.rolled_up.values().map(|r| r.carbon.asce()))
        .sum();
    (held, state.unallocated.values().copied().sum())
}

/// Stage 9. Books the interval into the next state.
pub(super) fn accounts(ctx: &Context<'_>, acc: &mut Accumulator) {
    let before = acc.trace.then(|| state_carbon(&acc.next));
    apply_pods(
        &mut acc.next,
        ctx.settings,
        ctx.input,
        &acc.energy,
        &acc.own,
    );
    mark_estimated(&mut acc.next, &acc.estimated);
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
        let entered = acc.own.values().map(Terms::asce).sum::<Grams>()
            + acc.emissions.unallocated_total()
            + acc.transfers.unallocated_total();
        let (held_after, unallocated_after) = state_carbon(&acc.next);
        let left = (held_after - held) + (unallocated_after - unallocated);
        let scale = held_after.value().max(unallocated_after.value());
        acc.record(StageFlow::carbon(
            Stage::Accounts,
            Flow::new(entered, left, scale),
        ));
    }
}

/// The interval's pods into their accounts: new pods get one (or, over the series cap, go
/// straight to their roll-up), the interval's energy and terms are added, and finished pods
/// past the grace period are rolled up.
pub(super) fn apply_pods(
    next: &mut LedgerState,
    settings: &Settings,
    input: &IntervalInput,
    energy: &PodEnergy,
    terms: &BTreeMap<PodKey, Terms>,
) {
    let at = input.at;
    let present: BTreeSet<&PodKey> = input.snapshot.pods.iter().map(|p| &p.key).collect();
    for facts in &input.snapshot.pods {
        open_account(next, settings, facts, at);
    }
    for facts in &input.snapshot.pods {
        refresh_account(next, facts, at);
    }
    for (key, account) in next.pods.iter_mut() {
        if !present.contains(key) {
            account.running = false;
            account.finished_at.get_or_insert(at);
        }
    }
    add_interval(next, energy, terms, at);
    forget_and_roll_up(next, settings, &present, at);
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

/// Updates a known pod's account from this interval's facts (and its run's last sight).
fn refresh_account(next: &mut LedgerState, facts: &PodFacts, at: Seconds) {
    let Some(account) = next.pods.get_mut(&facts.key) else {
        return;
    };
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
        return;
    };
    let finished = account.ever_ran && !facts.running;
    account.finished_at = match (finished, account.finished_at) {
        (true, Some(t)) => Some(t),
        (true, None) => Some(at),
        (false, _) => None,
    };
}

/// Adds the interval's energy and terms to each pod's account (and its run), or to the
/// roll-up of a pod over the series cap.
fn add_interval(
    next: &mut LedgerState,
    energy: &PodEnergy,
    terms: &BTreeMap<PodKey, Terms>,
    at: Seconds,
) {
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
}

/// Overflow pods are forgotten a grace period after they are gone; finished pods past the
/// grace period move into their workload's roll-up.
fn forget_and_roll_up(
    next: &mut LedgerState,
    settings: &Settings,
    present: &BTreeSet<&PodKey>,
    at: Seconds,
) {
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

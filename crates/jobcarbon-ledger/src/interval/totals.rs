//! The totals family and the end of a workload's series.
//!
//! Totals: every gram and joule the accounts stage gives a pod is also added, as it is booked,
//! to one low-cardinality family by namespace, phase and product. Dashboards sum it without
//! double counting while workload series come and go.
//!
//! Retirement: a workload whose pods are all gone (rolled up after the grace period, or
//! forgotten over the series cap) leaves its roll-up for [`LedgerState::retired`]: its series
//! stop, so `/metrics` is bounded by what runs, not by what ever ran.

use super::context::Context;
use super::flow::Accumulator;
use crate::state::{LedgerState, PodAccount, RollupKey, Tally, TotalsKey};
use jobcarbon_core::{Phase, PodKey, Seconds, Terms, WorkloadRef};
use std::collections::{BTreeMap, HashSet};

type Labels<'a> = (&'a str, Phase, Option<&'a str>);

/// Adds the interval's pod energy and terms to the totals, by the labels the accounts stage
/// books them under: the snapshot's, else the pod's account's, else its roll-up's (a pod over
/// the series cap). Runs before that stage (a pod rolled up in this interval is still known).
pub(super) fn add(ctx: &Context<'_>, acc: &mut Accumulator<'_>) {
    let mut listed: BTreeMap<Labels<'_>, Tally> = BTreeMap::new();
    let mut known: BTreeMap<TotalsKey, Tally> = BTreeMap::new();
    for id in 0..ctx.pods.len() {
        let (energy, terms) = (&acc.energy[id], acc.own[id]);
        if energy.is_empty() && terms.is_none() {
            continue;
        }
        let key = ctx.pods.key(id);
        let tally = match ctx.pods.info(id).facts {
            Some(f) => listed
                .entry((key.namespace.as_str(), f.phase, f.product.as_deref()))
                .or_default(),
            None => match state_labels(acc.next, key) {
                Some(labels) => known.entry(labels).or_default(),
                None => continue,
            },
        };
        for (c, j) in energy.iter() {
            tally.add_energy(c, j);
        }
        tally.carbon += terms.unwrap_or(Terms::ZERO);
    }
    let listed = listed
        .into_iter()
        .map(|((namespace, phase, product), tally)| {
            let key = TotalsKey {
                namespace: namespace.to_owned(),
                phase,
                product: product.map(str::to_owned),
            };
            (key, tally)
        });
    for (key, tally) in listed.chain(known) {
        acc.next
            .totals
            .entry(key)
            .or_default()
            .add(Some(&tally.energy), tally.carbon);
    }
}

/// The labels of a pod the snapshot does not list: its account's, or its roll-up's.
fn state_labels(state: &LedgerState, key: &PodKey) -> Option<TotalsKey> {
    let (phase, product) = match state.pods.get(key) {
        Some(a) => (a.phase, a.product.clone()),
        None => {
            let rollup = &state.overflow.get(key)?.rollup;
            (rollup.phase, rollup.product.clone())
        }
    };
    Some(TotalsKey {
        namespace: key.namespace.clone(),
        phase,
        product,
    })
}

/// Moves the roll-ups of workloads with no pod left into [`LedgerState::retired`]. A pod keeps
/// its workload live while it runs, within its grace period, with books of its own, or over
/// the series cap; a finished pod the API still lists (a completed Job's pod) gets a new,
/// empty account once its books are rolled up, and that does not keep the workload live.
pub(super) fn retire_finished_workloads(next: &mut LedgerState, at: Seconds) {
    if next.rolled_up.is_empty() {
        return;
    }
    let gone: Vec<RollupKey> = {
        let live: HashSet<(&WorkloadRef, Phase, Option<&str>)> = next
            .pods
            .values()
            .filter(|a| a.running || a.finished_at.is_some() || has_books(a))
            .map(|a| (&a.workload, a.phase, a.product.as_deref()))
            .chain(next.overflow.values().map(|o| {
                let r = &o.rollup;
                (&r.workload, r.phase, r.product.as_deref())
            }))
            .collect();
        next.rolled_up
            .keys()
            .filter(|k| !live.contains(&(&k.workload, k.phase, k.product.as_deref())))
            .cloned()
            .collect()
    };
    for key in gone {
        if let Some(rollup) = next.rolled_up.remove(&key) {
            next.retired.retire(key, rollup, at);
        }
    }
}

fn has_books(account: &PodAccount) -> bool {
    !account.energy.is_empty() || account.carbon != Terms::ZERO
}

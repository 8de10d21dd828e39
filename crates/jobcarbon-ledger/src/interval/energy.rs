//! The energy stages: measure (classify every energy line), share idle (node idle to pods by
//! the idle policy) and operational (energy × PUE × intensity, booked as new carbon).
//!
//! Measure and share idle move joules only; operational turns them into grams in the order
//! they were measured, so each gram is the product of exactly the energy line it came from.

use super::context::{Context, grams_of};
use super::flow::{Accumulator, Flow, Stage, StageFlow};
use super::{Account, to, unallocated};
use crate::settings::IdlePolicy;
use jobcarbon_core::allocation::{Split, split_weighted};
use jobcarbon_core::{
    Component, EnergyDelta, EnergyOwner, Joules, PodKey, Term, UnallocatedReason,
};
use std::collections::{BTreeMap, BTreeSet};

/// Where an energy line's carbon goes.
#[derive(Debug, Clone, Copy)]
enum Dest<'a> {
    Pod(&'a PodKey),
    Unallocated(UnallocatedReason),
}

/// Energy whose carbon the operational stage books, with the node whose region prices it.
#[derive(Debug)]
struct Line<'a> {
    node: &'a str,
    joules: Joules,
    dest: Dest<'a>,
}

/// The measure stage's classification of the interval's energy.
#[derive(Debug, Default)]
pub(super) struct Measured<'a> {
    /// Pods' and non-pod energy to book, in the order it was measured.
    lines: Vec<Line<'a>>,
    idle: BTreeMap<&'a str, Joules>,
    energy_on_node: BTreeMap<&'a str, BTreeMap<PodKey, Joules>>,
    /// GPU lines naming no pod, by node and GPU.
    unmapped_gpu: BTreeMap<&'a str, BTreeMap<&'a str, Joules>>,
    estimated_idle_nodes: BTreeSet<&'a str>,
    /// Kepler ≥ 0.10 node active energy, by node and component.
    node_active: BTreeMap<(&'a str, Component), Joules>,
    /// Σ of the pods' energy lines, by node and component.
    pods_on_node: BTreeMap<(&'a str, Component), Joules>,
}

/// One node's idle energy and how the idle policy split it.
pub(super) struct IdleShare<'a> {
    node: &'a str,
    joules: Joules,
    split: Split<PodKey, Joules>,
}

fn total<'k, K: 'k>(map: impl IntoIterator<Item = (K, &'k Joules)>) -> Joules {
    map.into_iter().map(|(_, j)| *j).sum()
}

fn pod_energy_total(acc: &Accumulator) -> Joules {
    acc.energy.values().flat_map(|e| e.values()).sum()
}

/// Stage 1. Each energy line to its pod, non-pod work, node idle, unmapped GPUs or node active;
/// node active energy the node's pods do not account for is non-pod work.
pub(super) fn measure<'a>(ctx: &Context<'a>, acc: &mut Accumulator) -> Measured<'a> {
    let mut m = Measured::default();
    let mut entered = Joules::ZERO;
    for delta in &ctx.input.energy {
        let joules = delta.energy.non_negative();
        if joules == Joules::ZERO {
            continue;
        }
        entered += joules;
        classify(ctx, acc, &mut m, delta, joules);
    }
    if acc.trace {
        let non_pod: Joules = m
            .lines
            .iter()
            .filter(|l| matches!(l.dest, Dest::Unallocated(_)))
            .map(|l| l.joules)
            .sum();
        let left = pod_energy_total(acc)
            + non_pod
            + total(&m.idle)
            + m.unmapped_gpu.values().map(total).sum()
            + total(&m.node_active);
        acc.record(StageFlow::energy(
            Stage::Measure,
            Flow::new(entered, left, 0.0),
        ));
    }
    for ((node, component), active) in &m.node_active {
        let pods = m
            .pods_on_node
            .get(&(*node, *component))
            .copied()
            .unwrap_or(Joules::ZERO);
        let rest = (*active - pods).non_negative();
        if rest > Joules::ZERO {
            m.lines.push(Line {
                node,
                joules: rest,
                dest: Dest::Unallocated(UnallocatedReason::SystemProcesses),
            });
        }
    }
    m
}

/// Books one energy line's joules where its owner says.
fn classify<'a>(
    ctx: &Context<'a>,
    acc: &mut Accumulator,
    m: &mut Measured<'a>,
    delta: &'a EnergyDelta,
    joules: Joules,
) {
    let node = delta.node.as_str();
    if delta.component == Component::Gpu && delta.owner != EnergyOwner::NodeActive {
        acc.gpu_energy.measured += joules;
    }
    let dest = match &delta.owner {
        EnergyOwner::Pod { key, .. } if ctx.info(key).is_some() => {
            if delta.estimated {
                acc.estimated
                    .entry(key.clone())
                    .or_default()
                    .insert(delta.component);
            }
            *acc.energy
                .entry(key.clone())
                .or_default()
                .entry(delta.component)
                .or_insert(Joules::ZERO) += joules;
            *m.energy_on_node
                .entry(node)
                .or_default()
                .entry(key.clone())
                .or_insert(Joules::ZERO) += joules;
            *m.pods_on_node
                .entry((node, delta.component))
                .or_insert(Joules::ZERO) += joules;
            Dest::Pod(key)
        }
        EnergyOwner::Pod { .. } => Dest::Unallocated(UnallocatedReason::UnknownPod),
        EnergyOwner::NodeSystem => Dest::Unallocated(UnallocatedReason::SystemProcesses),
        EnergyOwner::NodeIdle => {
            if delta.estimated {
                m.estimated_idle_nodes.insert(node);
            }
            *m.idle.entry(node).or_insert(Joules::ZERO) += joules;
            return;
        }
        EnergyOwner::UnmappedGpu { uuid } => {
            *m.unmapped_gpu
                .entry(node)
                .or_default()
                .entry(uuid.as_str())
                .or_insert(Joules::ZERO) += joules;
            return;
        }
        EnergyOwner::NodeActive => {
            *m.node_active
                .entry((node, delta.component))
                .or_insert(Joules::ZERO) += joules;
            return;
        }
    };
    m.lines.push(Line { node, joules, dest });
}

/// The part of a node's unmapped GPU lines that is idle: as many of them as the node has GPUs
/// no running pod requests (all of them when no running pod holds a GPU); the rest is some
/// pod's energy that the exporter did not map (`gpu_unmapped`).
fn idle_fraction(ctx: &Context<'_>, name: &str, unmapped: usize) -> f64 {
    let held: f64 = ctx.running_on(name).iter().map(|p| p.gpus.max(0.0)).sum();
    if held <= 0.0 || unmapped == 0 {
        return 1.0;
    }
    let free = ctx
        .node(name)
        .map_or(0.0, |n| (f64::from(n.gpu_count) - held).max(0.0));
    (free / unmapped as f64).min(1.0)
}

/// Stage 2. Idle GPUs join their node's idle energy, the rest is `gpu_unmapped`; each node's
/// idle energy is split over its pods by the idle policy (component `idle_share`).
pub(super) fn share_idle<'a>(
    ctx: &Context<'a>,
    acc: &mut Accumulator,
    m: &mut Measured<'a>,
) -> Vec<IdleShare<'a>> {
    let before = acc.trace.then(|| pod_energy_total(acc));
    let entered = total(&m.idle) + m.unmapped_gpu.values().map(total).sum();
    let mut gpu_rest = Joules::ZERO;
    for (node, gpus) in &m.unmapped_gpu {
        let fraction = idle_fraction(ctx, node, gpus.len());
        let all: Joules = gpus.values().copied().sum();
        let as_idle = all * fraction;
        *m.idle.entry(node).or_insert(Joules::ZERO) += as_idle;
        let rest = (all - as_idle).non_negative();
        acc.gpu_energy.unmapped += rest;
        if rest > Joules::ZERO {
            gpu_rest += rest;
            m.lines.push(Line {
                node,
                joules: rest,
                dest: Dest::Unallocated(UnallocatedReason::GpuUnmapped),
            });
        }
    }
    let mut shares = Vec::with_capacity(m.idle.len());
    for (node, idle_joules) in &m.idle {
        let recipients = idle_recipients(ctx, m, node);
        let split = split_weighted(*idle_joules, recipients, UnallocatedReason::NodeIdle);
        for (key, joules) in &split.shares {
            if m.estimated_idle_nodes.contains(node) {
                acc.estimated
                    .entry(key.clone())
                    .or_default()
                    .insert(Component::IdleShare);
            }
            *acc.energy
                .entry(key.clone())
                .or_default()
                .entry(Component::IdleShare)
                .or_insert(Joules::ZERO) += *joules;
        }
        shares.push(IdleShare {
            node,
            joules: *idle_joules,
            split,
        });
    }
    if let Some(before) = before {
        let kept: Joules = shares
            .iter()
            .filter_map(|s| s.split.unallocated)
            .map(|(_, j)| j)
            .sum();
        let left = (pod_energy_total(acc) - before) + kept + gpu_rest;
        let flow = Flow::new(entered, left, before.value());
        acc.record(StageFlow::energy(Stage::ShareIdle, flow));
    }
    shares
}

/// Who shares `node`'s idle energy, with what weight.
fn idle_recipients(ctx: &Context<'_>, m: &Measured<'_>, node: &str) -> Vec<(PodKey, f64)> {
    match ctx.settings.node_idle {
        IdlePolicy::Unallocated => Vec::new(),
        IdlePolicy::Even => ctx
            .running_on(node)
            .iter()
            .map(|p| (p.key.clone(), 1.0))
            .collect(),
        IdlePolicy::ByEnergy => {
            let mut weights: BTreeMap<PodKey, f64> = ctx
                .running_on(node)
                .iter()
                .map(|p| (p.key.clone(), 0.0))
                .collect();
            for (key, j) in m.energy_on_node.get(node).into_iter().flatten() {
                *weights.entry(key.clone()).or_insert(0.0) += j.value();
            }
            weights.into_iter().collect()
        }
    }
}

/// Stage 3. Operational carbon of every energy line and idle share, with each node's region
/// PUE and intensity: a pod's to the pod (`operational`), the rest unallocated with its reason.
pub(super) fn operational(
    ctx: &Context<'_>,
    acc: &mut Accumulator,
    m: &Measured<'_>,
    idle: Vec<IdleShare<'_>>,
) {
    let before = acc.trace.then(|| acc.carbon_totals());
    for line in &m.lines {
        let grams = ctx.grams_on(line.joules, line.node);
        match line.dest {
            Dest::Pod(key) => {
                acc.own.entry(key.clone()).or_default()[Term::Operational] += grams;
                acc.emissions
                    .book(grams, to(Account::Pod(key.clone()), grams));
            }
            Dest::Unallocated(reason) => acc.emissions.book(grams, unallocated(reason, grams)),
        }
    }
    for share in idle {
        let c = ctx.conditions(share.node);
        let whole = grams_of(share.joules, c);
        let mut grams_split = Split {
            shares: Vec::with_capacity(share.split.shares.len()),
            unallocated: share.split.unallocated.map(|(r, j)| (r, grams_of(j, c))),
        };
        for (key, joules) in share.split.shares {
            let grams = grams_of(joules, c);
            acc.own.entry(key.clone()).or_default()[Term::Operational] += grams;
            grams_split.shares.push((Account::Pod(key), grams));
        }
        acc.emissions.book(whole, grams_split);
    }
    acc.close_carbon(Stage::Operational, before);
}

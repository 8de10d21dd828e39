//! The energy stages: measure (classify every energy line), share idle (node idle to pods by
//! the idle policy) and operational (energy × PUE × intensity, booked as new carbon).
//!
//! Measure and share idle move joules only; operational turns them into grams in the order
//! they were measured, so each gram is the product of exactly the energy line it came from.

use super::context::{Context, PodId, grams_of};
use super::flow::{Accumulator, Flow, Stage, StageFlow, slot};
use crate::settings::IdlePolicy;
use jobcarbon_core::allocation::{Split, split_weighted};
use jobcarbon_core::{Component, EnergyDelta, EnergyOwner, Joules, Term, UnallocatedReason};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};

/// Where an energy line's carbon goes.
#[derive(Debug, Clone, Copy)]
enum Dest {
    Pod(PodId),
    Unallocated(UnallocatedReason),
}

/// Energy whose carbon the operational stage books, with the node whose region prices it.
#[derive(Debug)]
struct Line<'a> {
    node: &'a str,
    joules: Joules,
    dest: Dest,
}

/// The measure stage's classification of the interval's energy.
#[derive(Debug, Default)]
pub(super) struct Measured<'a> {
    /// Pods' and non-pod energy to book, in the order it was measured.
    lines: Vec<Line<'a>>,
    idle: BTreeMap<&'a str, Joules>,
    /// Pods' energy lines by node, in measured order (kept for the by-energy idle policy).
    energy_on_node: FxHashMap<&'a str, Vec<(PodId, Joules)>>,
    /// GPU lines naming no pod, by node and GPU.
    unmapped_gpu: BTreeMap<&'a str, BTreeMap<&'a str, Joules>>,
    estimated_idle_nodes: BTreeSet<&'a str>,
    /// Kepler ≥ 0.10 node active energy, by node and component.
    node_active: BTreeMap<(&'a str, Component), Joules>,
    /// Σ of the pods' energy lines, by node and component (when some node reports active
    /// energy).
    pods_on_node: FxHashMap<(&'a str, Component), Joules>,
    /// Whether any line is a node's active energy.
    any_node_active: bool,
}

/// One node's idle energy and how the idle policy split it.
pub(super) struct IdleShare<'a> {
    node: &'a str,
    joules: Joules,
    split: Split<PodId, Joules>,
}

fn total<'k, K: 'k>(map: impl IntoIterator<Item = (K, &'k Joules)>) -> Joules {
    map.into_iter().map(|(_, j)| *j).sum()
}

fn pod_energy_total(acc: &Accumulator) -> Joules {
    acc.energy
        .iter()
        .flat_map(|e| e.iter())
        .map(|(_, j)| j)
        .sum()
}

/// Stage 1. Each energy line to its pod, non-pod work, node idle, unmapped GPUs or node active;
/// node active energy the node's pods do not account for is non-pod work.
pub(super) fn measure<'a>(ctx: &Context<'a>, acc: &mut Accumulator) -> Measured<'a> {
    let mut m = Measured {
        lines: Vec::with_capacity(ctx.input.energy.len()),
        any_node_active: ctx
            .input
            .energy
            .iter()
            .any(|d| matches!(d.owner, EnergyOwner::NodeActive)),
        ..Measured::default()
    };
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
        EnergyOwner::Pod { key, .. } => match ctx.pods.id(key) {
            Some(id) => {
                book_pod_line(ctx, acc, m, delta, id, joules);
                Dest::Pod(id)
            }
            None => Dest::Unallocated(UnallocatedReason::UnknownPod),
        },
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

/// A known pod's energy line: into its energy, and the node's sums the later stages need.
fn book_pod_line<'a>(
    ctx: &Context<'a>,
    acc: &mut Accumulator,
    m: &mut Measured<'a>,
    delta: &'a EnergyDelta,
    id: PodId,
    joules: Joules,
) {
    let node = delta.node.as_str();
    if delta.estimated {
        acc.estimated[id] |= 1 << slot(delta.component);
    }
    acc.energy[id].add(delta.component, joules);
    if matches!(ctx.settings.node_idle, IdlePolicy::ByEnergy) {
        m.energy_on_node.entry(node).or_default().push((id, joules));
    }
    if m.any_node_active {
        *m.pods_on_node
            .entry((node, delta.component))
            .or_insert(Joules::ZERO) += joules;
    }
}

/// The part of a node's unmapped GPU lines that is idle: as many of them as the node has GPUs
/// no running pod requests (all of them when no running pod holds a GPU); the rest is some
/// pod's energy that the exporter did not map (`gpu_unmapped`).
fn idle_fraction(ctx: &Context<'_>, name: &str, unmapped: usize) -> f64 {
    let held: f64 = ctx
        .running_on(name)
        .iter()
        .map(|(_, p)| p.gpus.max(0.0))
        .sum();
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
        let estimated = m.estimated_idle_nodes.contains(node);
        for (id, joules) in &split.shares {
            if estimated {
                acc.estimated[*id] |= 1 << slot(Component::IdleShare);
            }
            acc.energy[*id].add(Component::IdleShare, *joules);
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
fn idle_recipients(ctx: &Context<'_>, m: &Measured<'_>, node: &str) -> Vec<(PodId, f64)> {
    match ctx.settings.node_idle {
        IdlePolicy::Unallocated => Vec::new(),
        IdlePolicy::Even => ctx
            .running_on(node)
            .iter()
            .map(|(id, _)| (*id, 1.0))
            .collect(),
        IdlePolicy::ByEnergy => by_energy(ctx, m, node),
    }
}

/// The node's running pods and the pods with energy on it, in pod order, each weighted by its
/// energy on the node (each pod's lines summed in measured order, then added to 0).
fn by_energy(ctx: &Context<'_>, m: &Measured<'_>, node: &str) -> Vec<(PodId, f64)> {
    let mut lines: Vec<(PodId, Joules)> = ctx
        .running_on(node)
        .iter()
        .map(|(id, _)| (*id, Joules::ZERO))
        .collect();
    let running = lines.len();
    lines.extend(m.energy_on_node.get(node).into_iter().flatten().copied());
    // Stable: a pod's lines keep their measured order (running pods' zeros come first).
    lines.sort_by_key(|(id, _)| *id);
    let mut weights: Vec<(PodId, f64)> = Vec::with_capacity(running);
    let mut pod: Option<(PodId, Joules)> = None;
    for (id, joules) in lines {
        match &mut pod {
            Some((current, sum)) if *current == id => *sum += joules,
            _ => {
                if let Some((done, sum)) = pod.take() {
                    weights.push((done, 0.0 + sum.value()));
                }
                pod = Some((id, Joules::ZERO + joules));
            }
        }
    }
    weights.extend(pod.map(|(id, sum)| (id, 0.0 + sum.value())));
    weights
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
            Dest::Pod(id) => {
                acc.own_mut(id)[Term::Operational] += grams;
                acc.emissions.book_pod(id, grams);
            }
            Dest::Unallocated(reason) => acc.emissions.book_unallocated(reason, grams),
        }
    }
    for share in idle {
        let c = ctx.conditions(share.node);
        let whole = grams_of(share.joules, c);
        let mut grams_split = Split {
            shares: Vec::with_capacity(share.split.shares.len()),
            unallocated: share.split.unallocated.map(|(r, j)| (r, grams_of(j, c))),
        };
        for (id, joules) in share.split.shares {
            let grams = grams_of(joules, c);
            acc.own_mut(id)[Term::Operational] += grams;
            grams_split.shares.push((id, grams));
        }
        acc.emissions.book(whole, grams_split);
    }
    acc.close_carbon(Stage::Operational, before);
}

//! The tax stages: embodied (nodes' hardware by reserved share) and platform (platform pods'
//! carbon, the declared overhead and the platform EPC over the jobs running now).

use super::context::{Context, job_weights};
use super::flow::{Accumulator, Stage};
use super::{Account, accounts};
use jobcarbon_core::allocation::{Books, split_by_fraction, split_weighted};
use jobcarbon_core::formulas::{amortized_product_share, embodied_system_share};
use jobcarbon_core::{Grams, PodKey, ProductType, Term, Terms, UnallocatedReason};
use std::collections::BTreeMap;

/// Stage 4. The reserved share of each node's embodied carbon for the interval
/// (`embodied_system`); the unreserved rest is `unreserved_capacity`.
pub(super) fn embodied(ctx: &Context<'_>, acc: &mut Accumulator) {
    let before = acc.trace.then(|| acc.carbon_totals());
    if ctx.duration.value() > 0.0 {
        for node in &ctx.input.snapshot.nodes {
            let Some(system) = ctx.settings.system_for(node) else {
                continue;
            };
            if system.lifetime.value() <= 0.0 {
                continue;
            }
            let whole =
                embodied_system_share(system.embodied_of(node), system.lifetime, ctx.duration, 1.0);
            let split = split_by_fraction(
                whole,
                ctx.running_on(&node.name)
                    .iter()
                    .map(|p| (p.key.clone(), p.reserved_share)),
                UnallocatedReason::UnreservedCapacity,
            );
            for (key, grams) in &split.shares {
                acc.own.entry(key.clone()).or_default()[Term::EmbodiedSystem] += *grams;
            }
            acc.emissions.book(whole, accounts(split));
        }
    }
    acc.close_carbon(Stage::Embodied, before);
}

/// Stage 5. Platform pods' own carbon moves onto the jobs running now (operational →
/// `platform_operational`, embodied → `platform_embodied`), and so do the declared overhead
/// and the amortised platform EPC. No job running: `no_concurrent_jobs`.
pub(super) fn platform(ctx: &Context<'_>, acc: &mut Accumulator) {
    let before = acc.trace.then(|| acc.carbon_totals());
    let platform = &ctx.settings.platform;
    let weights = job_weights(&ctx.jobs, platform.split, &acc.energy);
    let carbon = take_platform_pods(ctx, acc);
    let own = &mut acc.own;
    spread(
        own,
        &mut acc.transfers,
        &weights,
        carbon[Term::Operational],
        Term::PlatformOperational,
    );
    spread(
        own,
        &mut acc.transfers,
        &weights,
        carbon[Term::EmbodiedSystem],
        Term::PlatformEmbodied,
    );
    spread(
        own,
        &mut acc.emissions,
        &weights,
        platform.overhead * ctx.duration,
        Term::PlatformOperational,
    );
    if platform.lifetime.value() > 0.0 {
        let share =
            amortized_product_share(platform_epc(ctx), platform.lifetime, ctx.duration, 1.0);
        spread(
            own,
            &mut acc.emissions,
            &weights,
            share,
            Term::PlatformEmbodied,
        );
    }
    acc.close_carbon(Stage::Platform, before);
}

/// The platform's EPC: declared, or (`platform.product`) the EPC booked so far for the
/// `type: platform` product that built it.
fn platform_epc(ctx: &Context<'_>) -> Grams {
    let platform = &ctx.settings.platform;
    match &platform.product {
        Some(name) => ctx
            .prev
            .products
            .get(name)
            .filter(|p| p.kind == ProductType::Platform)
            .map_or(Grams::ZERO, |p| p.epc.total()),
        None => platform.epc,
    }
}

/// Removes the platform pods' interval terms and re-labels their emissions: booked to the
/// pod, they belong to the platform. Returns the platform pods' carbon.
fn take_platform_pods(ctx: &Context<'_>, acc: &mut Accumulator) -> Terms {
    let mut carbon = Terms::ZERO;
    let keys: Vec<PodKey> = acc
        .own
        .keys()
        .filter(|k| ctx.is_platform(k))
        .cloned()
        .collect();
    for key in keys {
        if let Some(t) = acc.own.remove(&key) {
            carbon += t;
            if let Some(g) = acc.emissions.allocated.remove(&Account::Pod(key)) {
                *acc.emissions
                    .allocated
                    .entry(Account::Platform)
                    .or_insert(Grams::ZERO) += g;
            }
        }
    }
    carbon
}

/// Splits `whole` over the jobs by `weights` as `term`, booked in `books`.
fn spread(
    own: &mut BTreeMap<PodKey, Terms>,
    books: &mut Books<Account>,
    weights: &[(PodKey, f64)],
    whole: Grams,
    term: Term,
) {
    if whole == Grams::ZERO {
        return;
    }
    let split = split_weighted(
        whole,
        weights.iter().cloned(),
        UnallocatedReason::NoConcurrentJobs,
    );
    for (key, grams) in &split.shares {
        own.entry(key.clone()).or_default()[term] += *grams;
    }
    books.book(whole, accounts(split));
}

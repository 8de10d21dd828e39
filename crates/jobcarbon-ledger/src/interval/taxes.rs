//! The tax stages: embodied (nodes' hardware by reserved share) and platform (platform pods'
//! carbon, the declared overhead and the platform EPC over the jobs running now).

use super::context::{Context, PodId, job_weights};
use super::flow::{Accumulator, PodBooks, Stage};
use crate::settings::Settings;
use crate::state::LedgerState;
use jobcarbon_core::allocation::{split_by_fraction, split_weighted};
use jobcarbon_core::formulas::{amortized_product_share, embodied_system_share};
use jobcarbon_core::{Grams, ProductType, Term, Terms, UnallocatedReason};

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
                    .map(|(id, p)| (*id, p.reserved_share)),
                UnallocatedReason::UnreservedCapacity,
            );
            for (id, grams) in &split.shares {
                acc.own_mut(*id)[Term::EmbodiedSystem] += *grams;
            }
            acc.emissions.book(whole, split);
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
        let share = amortized_product_share(ctx.platform_epc, platform.lifetime, ctx.duration, 1.0);
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
pub(super) fn platform_epc(settings: &Settings, prev: &LedgerState) -> Grams {
    let platform = &settings.platform;
    match &platform.product {
        Some(name) => prev
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
    for (id, own) in acc.own.iter_mut().enumerate() {
        if ctx.pods.info(id).platform
            && let Some(t) = own.take()
        {
            carbon += t;
            acc.emissions.move_to_platform(id);
        }
    }
    carbon
}

/// Splits `whole` over the jobs by `weights` as `term`, booked in `books`.
fn spread(
    own: &mut [Option<Terms>],
    books: &mut PodBooks,
    weights: &[(PodId, f64)],
    whole: Grams,
    term: Term,
) {
    if whole == Grams::ZERO {
        return;
    }
    let split = split_weighted(
        whole,
        weights.iter().copied(),
        UnallocatedReason::NoConcurrentJobs,
    );
    for (id, grams) in &split.shares {
        own[*id].get_or_insert(Terms::ZERO)[term] += *grams;
    }
    books.book(whole, split);
}

//! The product stages: deposits (build jobs into measured EPC, re-training into the model's
//! pool), inference (model EPC shares and the drained pool onto serving jobs) and request
//! windows (inference carbon per request).

use super::DEFAULT_AMORTIZE_OVER;
use super::context::{Context, Running, job_weights};
use super::flow::{Accumulator, Flow, Stage, StageFlow};
use crate::epc::product_epcs;
use crate::settings::PlatformSplit;
use crate::state::{ProductAccount, WindowEntry};
use jobcarbon_core::allocation::split_weighted;
use jobcarbon_core::formulas::amortized_product_share;
use jobcarbon_core::{
    Grams, Phase, ProductDef, ProductType, RetrainingPolicy, Term, Terms, UnallocatedReason,
};
use std::collections::BTreeMap;

/// The pods with terms this interval, by id (pod order).
fn own_terms(own: &[Option<Terms>]) -> impl Iterator<Item = (usize, &Terms)> {
    own.iter()
        .enumerate()
        .filter_map(|(id, t)| Some((id, t.as_ref()?)))
}

/// A map by product name with its names owned.
fn owned(by_product: BTreeMap<&str, Grams>) -> BTreeMap<String, Grams> {
    by_product
        .into_iter()
        .map(|(name, grams)| (name.to_owned(), grams))
        .collect()
}

fn sum_products(acc: &Accumulator, part: impl Fn(&ProductAccount) -> Grams) -> Grams {
    acc.next.products.values().map(part).sum()
}

/// Stage 6. Build phases add their pods' ASCᵉ of the interval to the product's measured EPC;
/// re-training pods deposit theirs into the model's pool. Then every product's EPC is
/// re-evaluated over the lineage. The jobs keep their carbon: this capitalises a copy.
pub(super) fn deposits(ctx: &Context<'_>, acc: &mut Accumulator) {
    for def in &ctx.input.snapshot.products {
        acc.next
            .products
            .entry(def.name.clone())
            .or_insert_with(|| ProductAccount::new(def.kind))
            .kind = def.kind;
    }
    let stocks = |acc: &Accumulator| sum_products(acc, |a| a.measured + a.pool.deposited);
    let before = acc.trace.then(|| stocks(acc));
    let mut capitalised = Grams::ZERO;
    let (mut epc, mut pool) = (BTreeMap::new(), BTreeMap::new());
    for (id, terms) in own_terms(&acc.own) {
        let i = ctx.pods.info(id);
        let Some(product) = i.product else {
            continue;
        };
        let into = if i.phase.builds_product() {
            &mut epc
        } else if i.phase == Phase::Retraining {
            &mut pool
        } else {
            continue;
        };
        *into.entry(product).or_insert(Grams::ZERO) += terms.asce();
        capitalised += terms.asce();
    }
    acc.epc_deposits = owned(epc);
    acc.pool_deposits = owned(pool);
    for (product, grams) in &acc.epc_deposits {
        if let Some(account) = acc.next.products.get_mut(product) {
            account.measured += *grams;
        }
    }
    for (product, grams) in &acc.pool_deposits {
        let amortize_over = match ctx
            .products
            .get(product.as_str())
            .and_then(|d| d.retraining.as_ref())
        {
            Some(RetrainingPolicy::AmortizeOver(s)) if s.value() > 0.0 => *s,
            _ => DEFAULT_AMORTIZE_OVER,
        };
        if let Some(account) = acc.next.products.get_mut(product) {
            account.pool.deposit(ctx.input.at, *grams, amortize_over);
        }
    }
    if let Some(before) = before {
        let after = stocks(acc);
        let flow = Flow::new(capitalised, after - before, after.value());
        acc.record(StageFlow::carbon(Stage::Deposits, flow));
    }
    refresh_epcs(ctx, acc);
}

/// Each product's EPC (measured + inherited + declared) as of this interval.
fn refresh_epcs(ctx: &Context<'_>, acc: &mut Accumulator) {
    let measured: BTreeMap<String, Grams> = acc
        .next
        .products
        .iter()
        .map(|(name, a)| (name.clone(), a.measured))
        .collect();
    for (name, parts) in product_epcs(&ctx.input.snapshot.products, &measured) {
        if let Some(account) = acc.next.products.get_mut(&name) {
            account.epc = parts;
        }
    }
}

/// Stage 7. Each model's EPC × Δ / LT over its running inference jobs (`model_epc`; none:
/// `no_inference`), and its re-training pool drained into the same jobs (`retraining`).
pub(super) fn inference(ctx: &Context<'_>, acc: &mut Accumulator) {
    let before = acc.trace.then(|| acc.carbon_totals());
    let mut serving_by_model: BTreeMap<&str, Vec<Running<'_>>> = BTreeMap::new();
    for (id, p) in ctx
        .jobs
        .iter()
        .copied()
        .filter(|(_, p)| p.phase == Phase::Inference)
    {
        if let Some(product) = p.product.as_deref() {
            serving_by_model.entry(product).or_default().push((id, p));
        }
    }
    for def in ctx
        .input
        .snapshot
        .products
        .iter()
        .filter(|d| d.kind == ProductType::Model)
    {
        let serving = serving_by_model
            .get(def.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        serve_model(ctx, acc, def, serving);
    }
    acc.close_carbon(Stage::Inference, before);
}

/// Books one model's EPC share and drained re-training onto the pods serving it.
fn serve_model(
    ctx: &Context<'_>,
    acc: &mut Accumulator,
    def: &ProductDef,
    serving: &[Running<'_>],
) {
    let duration = ctx.duration;
    let weights = job_weights(serving, PlatformSplit::Equal, &acc.energy);
    let Some(account) = acc.next.products.get_mut(&def.name) else {
        return;
    };
    if def.lifetime.value() > 0.0 && duration.value() > 0.0 {
        let whole = amortized_product_share(account.epc.total(), def.lifetime, duration, 1.0);
        if whole != Grams::ZERO {
            let split = split_weighted(
                whole,
                weights.iter().copied(),
                UnallocatedReason::NoInference,
            );
            for (id, grams) in &split.shares {
                acc.own[*id].get_or_insert(Terms::ZERO)[Term::ModelEpc] += *grams;
            }
            acc.transfers.book(whole, split);
        }
    }
    if !serving.is_empty() && duration.value() > 0.0 {
        let drained = account.pool.drain(duration);
        if drained != Grams::ZERO {
            let split = split_weighted(
                drained,
                weights.iter().copied(),
                UnallocatedReason::NoInference,
            );
            for (id, grams) in &split.shares {
                acc.own[*id].get_or_insert(Terms::ZERO)[Term::Retraining] += *grams;
            }
            acc.transfers.book(drained, split);
            acc.pool_drains.insert(def.name.clone(), drained);
        }
    }
}

/// Stage 8. Inference pods' ASCᵉ into each product's totals, and (when its requests were
/// read) into the sliding window behind the per-request figure.
pub(super) fn request_windows(ctx: &Context<'_>, acc: &mut Accumulator) {
    let mut inference_grams: BTreeMap<&str, Grams> = BTreeMap::new();
    for (id, terms) in own_terms(&acc.own) {
        let i = ctx.pods.info(id);
        if i.phase == Phase::Inference
            && let Some(product) = i.product
        {
            *inference_grams.entry(product).or_insert(Grams::ZERO) += terms.asce();
        }
    }
    let totals = |acc: &Accumulator| sum_products(acc, |a| a.inference_grams_total);
    let before = acc.trace.then(|| totals(acc));
    let (at, input) = (ctx.input.at, ctx.input);
    let window_start = at - ctx.settings.inference_window;
    for (name, account) in &mut acc.next.products {
        let grams = inference_grams
            .get(name.as_str())
            .copied()
            .unwrap_or(Grams::ZERO);
        let requests = input
            .requests
            .get(name)
            .copied()
            .filter(|r| r.is_finite() && *r > 0.0)
            .unwrap_or(0.0);
        account.requests_total += requests;
        account.inference_grams_total += grams;
        let known = !input.requests_unknown.contains(name.as_str());
        if known && (grams != Grams::ZERO || requests > 0.0) {
            account.window.push_back(WindowEntry {
                at,
                grams,
                requests,
            });
        }
        while account.window.front().is_some_and(|w| w.at <= window_start) {
            account.window.pop_front();
        }
    }
    if let Some(before) = before {
        let after = totals(acc);
        let entered = inference_grams.values().copied().sum();
        let flow = Flow::new(entered, after - before, after.value());
        acc.record(StageFlow::carbon(Stage::RequestWindows, flow));
    }
}

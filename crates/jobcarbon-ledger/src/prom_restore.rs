//! Prometheus as the durable store of last resort: a ledger started without a trusted
//! checkpoint rebuilds its [`LedgerState`] from its own last exported series (every series
//! carries `ledger="<namespace>/<release>"`), then backfills from that time like after any
//! restart (`crate::durable`).
//!
//! [`read_exported`] finds the last scrape of the ledger (`timestamp()` of its
//! `jobcarbon_last_interval_timestamp_seconds`, over a lookback much longer than Prometheus'
//! 5-minute staleness window) and reads every family at that scrape, so all figures come from
//! one consistent exposition. [`state_from_exported`] is the pure mapping metrics → state.
//!
//! What the exposition does not carry is not restored, and [`Restored::missing`] says so:
//! counter baselines (re-read at the restored time: [`crate::Ledger::prime`]), the
//! per-request window (refills within `inference.window`), the runs of repeated workloads, the
//! re-training pool's tranches (one tranche with the balance, amortised over the product's
//! period), pods' nodes and platform flags (taken from the cluster at the next interval).

use crate::epc::EpcParts;
use crate::state::{LedgerState, PodAccount, ProductAccount, RollupKey, Tally, TotalsKey};
use jobcarbon_core::{
    Component, Grams, Joules, Phase, PodKey, ProductType, Seconds, Term, Terms, UnallocatedReason,
    WorkloadRef,
};
use jobcarbon_telemetry::SourceError;
use jobcarbon_telemetry::prom::{PromClient, PromSample};
use std::collections::{BTreeMap, BTreeSet};

pub const LAST_INTERVAL: &str = "jobcarbon_last_interval_timestamp_seconds";
pub const ENERGY: &str = "jobcarbon_workload_energy_joules_total";
pub const CARBON: &str = "jobcarbon_workload_carbon_grams_total";
pub const UNALLOCATED: &str = "jobcarbon_unallocated_grams_total";
pub const EPC: &str = "jobcarbon_product_epc_grams";
pub const POOL: &str = "jobcarbon_retraining_pool_grams";
pub const REQUESTS: &str = "jobcarbon_inference_requests_total";
pub const GPU: &str = "jobcarbon_gpu_energy_joules_total";
pub const DROPPED: &str = "jobcarbon_series_dropped_total";
pub const TOTAL_ENERGY: &str = "jobcarbon_energy_joules_total";
pub const TOTAL_CARBON: &str = "jobcarbon_carbon_grams_total";
pub const RETIRED: &str = "jobcarbon_workloads_retired_total";

/// Every family the restore reads.
pub const FAMILIES: [&str; 12] = [
    LAST_INTERVAL,
    ENERGY,
    CARBON,
    UNALLOCATED,
    EPC,
    POOL,
    REQUESTS,
    GPU,
    DROPPED,
    TOTAL_ENERGY,
    TOTAL_CARBON,
    RETIRED,
];

/// What the exposition cannot give back (for the log and `jobcarbon_state_restored_info`).
pub const MISSING: &str =
    "counter_baselines,request_window,runs,pool_tranches,pod_nodes,overflow_pods";

/// Re-training amortisation assumed for a restored pool balance without a configured one.
pub const DEFAULT_AMORTIZE: Seconds = Seconds(86_400.0);

/// The ledger's series as of one scrape, by family (the names above).
pub type Exported = BTreeMap<String, Vec<PromSample>>;

/// A state rebuilt from exported series.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub state: LedgerState,
    pub last_booked: Seconds,
    /// Series whose labels name nothing this build knows (skipped), as `family{labels}`.
    pub skipped: Vec<String>,
}

/// How a restore reads the cluster it ran in.
#[derive(Debug, Clone, Default)]
pub struct RestoreContext {
    /// The ledger's own pod name: a scrape config without `honor_labels` puts it in `pod`
    /// where a roll-up exported `pod=""`.
    pub own_pod: Option<String>,
    /// `retraining.amortizeOver` by product, for the restored pool balance.
    pub amortize_over: BTreeMap<String, Seconds>,
}

fn parse<T: Copy>(all: &[T], name: fn(T) -> &'static str, value: &str) -> Option<T> {
    all.iter().copied().find(|t| name(*t) == value)
}

fn phase(value: &str) -> Option<Phase> {
    parse(&Phase::ALL, Phase::as_str, value)
}

fn product_type(value: &str) -> Option<ProductType> {
    let all = [
        ProductType::Model,
        ProductType::Dataset,
        ProductType::Platform,
    ];
    parse(&all, ProductType::as_str, value)
}

/// One workload series' identity: a pod, or a roll-up (`pod=""`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Pod(PodKey, RollupKey),
    Rollup(RollupKey),
}

fn owner(s: &PromSample, ctx: &RestoreContext) -> Option<Owner> {
    let namespace = s.label("namespace")?;
    let rollup = RollupKey {
        workload: WorkloadRef {
            namespace: namespace.to_owned(),
            workload: s.label("workload")?.to_owned(),
        },
        phase: phase(s.label("phase")?)?,
        product: s.label("product").map(str::to_owned),
    };
    match s.label("pod") {
        Some(pod) if ctx.own_pod.as_deref() != Some(pod) => {
            Some(Owner::Pod(PodKey::new(namespace, pod), rollup))
        }
        _ => Some(Owner::Rollup(rollup)),
    }
}

/// Books of one workload series while they are collected.
#[derive(Debug, Default)]
struct Books {
    energy: BTreeMap<Component, Joules>,
    estimated: BTreeSet<Component>,
    carbon: Terms,
}

/// The largest value per key: HA Prometheus replicas (or two scrape jobs) give the same
/// series more than once, and the later scrape of a counter is the larger.
fn keep_max<K: Ord>(map: &mut BTreeMap<K, f64>, key: K, value: f64) {
    if !value.is_finite() || value < 0.0 {
        return;
    }
    let slot = map.entry(key).or_insert(value);
    *slot = slot.max(value);
}

fn family<'a>(exported: &'a Exported, name: &str) -> &'a [PromSample] {
    exported.get(name).map(Vec::as_slice).unwrap_or(&[])
}

fn describe(name: &str, s: &PromSample) -> String {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Workload energy and carbon by series.
fn workload_books(
    exported: &Exported,
    ctx: &RestoreContext,
    skipped: &mut Vec<String>,
) -> BTreeMap<Owner, Books> {
    let mut energy: BTreeMap<(Owner, Component), f64> = BTreeMap::new();
    let mut estimated: BTreeSet<(Owner, Component)> = BTreeSet::new();
    for s in family(exported, ENERGY) {
        let component = s
            .label("component")
            .and_then(|c| parse(&Component::ALL, Component::as_str, c));
        match (owner(s, ctx), component) {
            (Some(o), Some(c)) => {
                if s.label("source") == Some("estimated") {
                    estimated.insert((o.clone(), c));
                }
                keep_max(&mut energy, (o, c), s.value);
            }
            _ => skipped.push(describe(ENERGY, s)),
        }
    }
    let mut carbon: BTreeMap<(Owner, Term), f64> = BTreeMap::new();
    for s in family(exported, CARBON) {
        let term = s
            .label("term")
            .and_then(|t| parse(&Term::ALL, Term::as_str, t));
        match (owner(s, ctx), term) {
            (Some(o), Some(t)) => keep_max(&mut carbon, (o, t), s.value),
            _ => skipped.push(describe(CARBON, s)),
        }
    }
    let mut books: BTreeMap<Owner, Books> = BTreeMap::new();
    for ((o, c), j) in energy {
        // Series exported as 0 (every component is) are not energy the pod had.
        if j > 0.0 {
            books.entry(o).or_default().energy.insert(c, Joules(j));
        }
    }
    for (o, c) in estimated {
        books.entry(o).or_default().estimated.insert(c);
    }
    for ((o, t), g) in carbon {
        books.entry(o).or_default().carbon[t] = Grams(g);
    }
    books
}

fn place_books(state: &mut LedgerState, books: BTreeMap<Owner, Books>, at: Seconds) {
    for (owner, b) in books {
        match owner {
            Owner::Pod(key, rollup) => {
                state.pods.insert(
                    key,
                    PodAccount {
                        workload: rollup.workload,
                        phase: rollup.phase,
                        product: rollup.product,
                        node: None,
                        platform: false,
                        // The next interval's snapshot says whether it still runs.
                        running: true,
                        ever_ran: true,
                        energy: b.energy,
                        carbon: b.carbon,
                        first_seen: at,
                        last_seen: at,
                        finished_at: None,
                        estimated: b.estimated,
                        run: None,
                    },
                );
            }
            Owner::Rollup(key) => {
                let r = state.rolled_up.entry(key).or_default();
                r.energy = b.energy;
                r.carbon = b.carbon;
                r.estimated = b.estimated;
                r.pods = 1;
            }
        }
    }
}

/// Products: EPC parts, pool balance, requests; inference grams from the restored pods.
fn products(
    exported: &Exported,
    state: &LedgerState,
    ctx: &RestoreContext,
    skipped: &mut Vec<String>,
) -> BTreeMap<String, ProductAccount> {
    let mut parts: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut kinds: BTreeMap<String, ProductType> = BTreeMap::new();
    for s in family(exported, EPC) {
        match (
            s.label("product"),
            s.label("type").and_then(product_type),
            s.label("part"),
        ) {
            (Some(p), Some(kind), Some(part)) => {
                kinds.insert(p.to_owned(), kind);
                keep_max(&mut parts, (p.to_owned(), part.to_owned()), s.value);
            }
            _ => skipped.push(describe(EPC, s)),
        }
    }
    let mut pools: BTreeMap<String, f64> = BTreeMap::new();
    for s in family(exported, POOL) {
        match s.label("product") {
            Some(p) => keep_max(&mut pools, p.to_owned(), s.value),
            None => skipped.push(describe(POOL, s)),
        }
    }
    let mut requests: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in family(exported, REQUESTS) {
        match s.label("product") {
            Some(p) => {
                let ns = s.label("namespace").unwrap_or("").to_owned();
                keep_max(&mut requests, (p.to_owned(), ns), s.value);
            }
            None => skipped.push(describe(REQUESTS, s)),
        }
    }
    let names: BTreeSet<&String> = kinds
        .keys()
        .chain(pools.keys())
        .chain(requests.keys().map(|(p, _)| p))
        .collect();
    let mut out = BTreeMap::new();
    for name in names {
        let kind = kinds.get(name).copied().unwrap_or(ProductType::Model);
        let mut account = ProductAccount::new(kind);
        let part = |p: &str| {
            Grams(
                parts
                    .get(&(name.clone(), p.to_owned()))
                    .copied()
                    .unwrap_or(0.0),
            )
        };
        account.epc = EpcParts {
            measured: part("measured"),
            inherited: part("inherited"),
            declared: part("declared"),
        };
        account.measured = account.epc.measured;
        if let Some(balance) = pools.get(name).filter(|b| **b > 0.0) {
            let over = ctx
                .amortize_over
                .get(name)
                .copied()
                .unwrap_or(DEFAULT_AMORTIZE);
            account
                .pool
                .deposit(state_time(state), Grams(*balance), over);
        }
        account.requests_total = requests
            .iter()
            .filter(|((p, _), _)| p == name)
            .map(|(_, n)| n)
            .sum();
        account.inference_grams_total = inference_grams(state, name);
        out.insert(name.clone(), account);
    }
    out
}

fn state_time(state: &LedgerState) -> Seconds {
    state.last_booked.unwrap_or(Seconds::ZERO)
}

fn inference_grams(state: &LedgerState, product: &str) -> Grams {
    let of = |phase: Phase, p: &Option<String>, carbon: &Terms| {
        (phase == Phase::Inference && p.as_deref() == Some(product)).then(|| carbon.asce())
    };
    let pods = state
        .pods
        .values()
        .filter_map(|a| of(a.phase, &a.product, &a.carbon));
    let rollups = state
        .rolled_up
        .iter()
        .filter_map(|(k, r)| of(k.phase, &k.product, &r.carbon));
    pods.chain(rollups).sum()
}

/// Rebuild the ledger state from one scrape of its own series. `None` when the scrape holds
/// no last booked time (nothing was ever booked).
pub fn state_from_exported(exported: &Exported, ctx: &RestoreContext) -> Option<Restored> {
    let last_booked = family(exported, LAST_INTERVAL)
        .iter()
        .map(|s| s.value)
        .filter(|v| v.is_finite() && *v > 0.0)
        .reduce(f64::max)
        .map(Seconds)?;
    let mut skipped = Vec::new();
    let mut state = LedgerState {
        last_booked: Some(last_booked),
        // Not a first start: the next interval books, it is not a baseline.
        intervals_booked: 1,
        ..LedgerState::default()
    };
    let books = workload_books(exported, ctx, &mut skipped);
    place_books(&mut state, books, last_booked);
    state.products = products(exported, &state, ctx, &mut skipped);
    let mut unallocated: BTreeMap<UnallocatedReason, f64> = BTreeMap::new();
    for s in family(exported, UNALLOCATED) {
        let reason = s
            .label("reason")
            .and_then(|r| parse(&UnallocatedReason::ALL, UnallocatedReason::as_str, r));
        match reason {
            Some(r) => keep_max(&mut unallocated, r, s.value),
            None => skipped.push(describe(UNALLOCATED, s)),
        }
    }
    state.unallocated = unallocated
        .into_iter()
        .filter(|(_, g)| *g > 0.0)
        .map(|(r, g)| (r, Grams(g)))
        .collect();
    let mut gpu: BTreeMap<String, f64> = BTreeMap::new();
    for s in family(exported, GPU) {
        if let Some(part) = s.label("part") {
            keep_max(&mut gpu, part.to_owned(), s.value);
        }
    }
    state.gpu_energy.measured = Joules(gpu.get("measured").copied().unwrap_or(0.0));
    state.gpu_energy.unmapped = Joules(gpu.get("unmapped").copied().unwrap_or(0.0));
    state.series_dropped = largest(family(exported, DROPPED)) as u64;
    restore_totals(exported, &mut state, &mut skipped);
    Some(Restored {
        state,
        last_booked,
        skipped,
    })
}

/// The largest finite, non-negative value of a one-series family (0 without one).
fn largest(samples: &[PromSample]) -> f64 {
    samples
        .iter()
        .map(|s| s.value)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .fold(0.0, f64::max)
}

/// The totals family, and what of it no restored workload series holds: the retired
/// workloads. An exposition without the family (an older ledger) gives the workloads' sums.
fn restore_totals(exported: &Exported, state: &mut LedgerState, skipped: &mut Vec<String>) {
    let key = |s: &PromSample| {
        Some(TotalsKey {
            namespace: s.label("namespace")?.to_owned(),
            phase: phase(s.label("phase")?)?,
            product: s
                .label("product")
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        })
    };
    let mut energy: BTreeMap<(TotalsKey, Component), f64> = BTreeMap::new();
    for s in family(exported, TOTAL_ENERGY) {
        let c = s
            .label("component")
            .and_then(|c| parse(&Component::ALL, Component::as_str, c));
        match (key(s), c) {
            (Some(k), Some(c)) => keep_max(&mut energy, (k, c), s.value),
            _ => skipped.push(describe(TOTAL_ENERGY, s)),
        }
    }
    let mut carbon: BTreeMap<(TotalsKey, Term), f64> = BTreeMap::new();
    for s in family(exported, TOTAL_CARBON) {
        let t = s
            .label("term")
            .and_then(|t| parse(&Term::ALL, Term::as_str, t));
        match (key(s), t) {
            (Some(k), Some(t)) => keep_max(&mut carbon, (k, t), s.value),
            _ => skipped.push(describe(TOTAL_CARBON, s)),
        }
    }
    let workloads = state.totals_from_workloads();
    if energy.is_empty() && carbon.is_empty() {
        state.totals = workloads;
        return;
    }
    for ((k, c), j) in energy {
        state
            .totals
            .entry(k)
            .or_default()
            .energy
            .insert(c, Joules(j));
    }
    for ((k, t), g) in carbon {
        state.totals.entry(k).or_default().carbon[t] = Grams(g);
    }
    state.retired.workloads = largest(family(exported, RETIRED)) as u64;
    state.retired.books = retired_books(&state.totals, &workloads);
}

/// Totals minus what the workloads hold, by component and term (never below zero).
fn retired_books(
    totals: &BTreeMap<TotalsKey, Tally>,
    workloads: &BTreeMap<TotalsKey, Tally>,
) -> Tally {
    let sum = |books: &BTreeMap<TotalsKey, Tally>| {
        let mut all = Tally::default();
        for b in books.values() {
            all.add(Some(&b.energy), b.carbon);
        }
        all
    };
    let (total, held) = (sum(totals), sum(workloads));
    let mut retired = Tally::default();
    for (c, j) in &total.energy {
        let held = held.energy.get(c).copied().unwrap_or(Joules::ZERO);
        let left = (*j - held).value().max(0.0);
        if left > 0.0 {
            retired.energy.insert(*c, Joules(left));
        }
    }
    for t in Term::ALL {
        retired.carbon[t] = (total.carbon[t] - held.carbon[t]).non_negative();
    }
    retired
}

/// A PromQL string literal.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Resolution of the search for the last scrape: finer than any scrape interval in use.
const SEARCH_STEP_SECONDS: u64 = 15;

/// Find the ledger's last scrape within `lookback` of `now` and read every family at it.
/// `Ok(None)`: Prometheus holds no series of this ledger in that window.
pub async fn read_exported(
    client: &PromClient,
    identity: &str,
    lookback: Seconds,
    now: Seconds,
) -> Result<Option<(Seconds, Exported)>, SourceError> {
    let selector = format!("{{ledger={}}}", quoted(identity));
    let window = lookback.value().max(60.0).round() as u64;
    // The series goes stale as soon as a scrape fails: an instant query would see nothing
    // five minutes after the ledger died; the subquery looks back over the whole window.
    let last_scrape = format!(
        "max_over_time(timestamp({LAST_INTERVAL}{selector})[{window}s:{SEARCH_STEP_SECONDS}s])"
    );
    let found = client.instant("restore", &last_scrape, now).await?;
    let Some(scraped_at) = found
        .iter()
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .reduce(f64::max)
    else {
        return Ok(None);
    };
    // Queries are evaluated at whole seconds (floored): at or just before that scrape, so
    // every family comes from one and the same exposition.
    let at = Seconds(scraped_at);
    let mut exported = Exported::new();
    for name in FAMILIES {
        let samples = client
            .instant("restore", &format!("{name}{selector}"), at)
            .await?;
        exported.insert(name.to_owned(), samples);
    }
    Ok(Some((at, exported)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> PromSample {
        PromSample::from_pairs(labels, value, Seconds(0.0))
    }

    fn workload(pod: &str, extra: (&'static str, &'static str)) -> Vec<(&'static str, String)> {
        vec![
            ("namespace", "ml".to_owned()),
            ("workload", "Job/train".to_owned()),
            ("pod", pod.to_owned()),
            ("phase", "training".to_owned()),
            ("product", "bert".to_owned()),
            (extra.0, extra.1.to_owned()),
            ("ledger", "jc/jobcarbon".to_owned()),
        ]
    }

    fn s(labels: Vec<(&'static str, String)>, value: f64) -> PromSample {
        let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(&refs, value)
    }

    fn exported() -> Exported {
        let mut e = Exported::new();
        e.insert(
            LAST_INTERVAL.into(),
            vec![sample(&[("ledger", "jc/jobcarbon")], 1_700_000_010.0)],
        );
        e.insert(
            ENERGY.into(),
            vec![
                s(workload("train-0", ("component", "cpu")), 100.0),
                // The same series from a second Prometheus replica, one scrape older.
                s(workload("train-0", ("component", "cpu")), 90.0),
                s(workload("train-0", ("component", "gpu")), 0.0),
                s(workload("", ("component", "cpu")), 40.0),
                s(workload("train-0", ("component", "warp-drive")), 1.0),
            ],
        );
        e.insert(
            CARBON.into(),
            vec![
                s(workload("train-0", ("term", "operational")), 2.0),
                s(workload("train-0", ("term", "embodied_system")), 0.5),
                s(workload("", ("term", "operational")), 1.0),
            ],
        );
        e.insert(
            UNALLOCATED.into(),
            vec![
                sample(&[("reason", "node_idle")], 3.0),
                sample(&[("reason", "unknown_pod")], 0.0),
            ],
        );
        e.insert(
            EPC.into(),
            vec![
                sample(
                    &[("product", "bert"), ("type", "model"), ("part", "measured")],
                    3.5,
                ),
                sample(
                    &[("product", "bert"), ("type", "model"), ("part", "declared")],
                    7.0,
                ),
                sample(
                    &[("product", "bert"), ("type", "model"), ("part", "total")],
                    10.5,
                ),
            ],
        );
        e.insert(POOL.into(), vec![sample(&[("product", "bert")], 8.64)]);
        e.insert(
            REQUESTS.into(),
            vec![sample(
                &[("product", "bert"), ("namespace", "serve")],
                300.0,
            )],
        );
        e
    }

    #[test]
    fn the_exported_books_become_the_state() {
        let r = state_from_exported(&exported(), &RestoreContext::default()).unwrap();
        assert_eq!(r.last_booked, Seconds(1_700_000_010.0));
        let s = &r.state;
        assert_eq!(s.last_booked, Some(r.last_booked));
        let pod = &s.pods[&PodKey::new("ml", "train-0")];
        assert_eq!(
            pod.energy,
            BTreeMap::from([(Component::Cpu, Joules(100.0))])
        );
        assert_eq!(pod.carbon.asce(), Grams(2.5));
        assert_eq!(pod.workload, WorkloadRef::new("ml", "Job", "train"));
        let rollup = s.rolled_up.values().next().unwrap();
        assert_eq!(rollup.carbon.asce(), Grams(1.0));
        assert_eq!(
            s.unallocated,
            BTreeMap::from([(UnallocatedReason::NodeIdle, Grams(3.0))])
        );
        let bert = &s.products["bert"];
        assert_eq!(bert.measured, Grams(3.5));
        assert_eq!(bert.epc.total(), Grams(10.5));
        assert_eq!(bert.pool.balance(), Grams(8.64));
        assert_eq!(bert.requests_total, 300.0);
        assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
        assert!(r.skipped[0].contains("warp-drive"));
    }

    #[test]
    fn totals_survive_the_round_trip() {
        // Σ carbon of the state equals Σ of the exported counters (max per series).
        let r = state_from_exported(&exported(), &RestoreContext::default()).unwrap();
        let pods: f64 = r.state.pods.values().map(|p| p.carbon.asce().value()).sum();
        let rollups: f64 = r
            .state
            .rolled_up
            .values()
            .map(|p| p.carbon.asce().value())
            .sum();
        let unallocated: f64 = r.state.unallocated.values().map(|g| g.value()).sum();
        assert_eq!(pods + rollups + unallocated, 2.5 + 1.0 + 3.0);
    }

    #[test]
    fn the_totals_family_restores_retired_workloads() {
        // Without the family (an older ledger): the totals are the workloads' sums.
        let r = state_from_exported(&exported(), &RestoreContext::default()).unwrap();
        assert_eq!(r.state.totals_carbon(), Grams(3.5));
        assert_eq!(r.state.retired, crate::state::Retired::default());
        // With it: what no workload series holds is the retired workloads'.
        let mut e = exported();
        let total = |term: &'static str, value| {
            sample(
                &[
                    ("namespace", "ml"),
                    ("phase", "training"),
                    ("product", "bert"),
                    ("term", term),
                ],
                value,
            )
        };
        e.insert(
            TOTAL_CARBON.into(),
            vec![total("operational", 5.0), total("embodied_system", 0.5)],
        );
        e.insert(RETIRED.into(), vec![sample(&[], 4.0)]);
        let r = state_from_exported(&e, &RestoreContext::default()).unwrap();
        assert_eq!(r.state.totals_carbon(), Grams(5.5));
        assert_eq!(r.state.retired.workloads, 4);
        assert_eq!(r.state.retired.books.carbon[Term::Operational], Grams(2.0));
        assert_eq!(
            r.state.retired.books.carbon[Term::EmbodiedSystem],
            Grams::ZERO
        );
        assert_eq!(r.state.booked_to_workloads(), r.state.totals_carbon());
    }

    #[test]
    fn the_ledgers_own_pod_label_marks_a_rollup() {
        // Without honor_labels a roll-up's empty `pod` is replaced by the scraped pod's name.
        let mut e = exported();
        e.insert(
            CARBON.into(),
            vec![s(
                workload("jobcarbon-ledger-0", ("term", "operational")),
                1.0,
            )],
        );
        let ctx = RestoreContext {
            own_pod: Some("jobcarbon-ledger-0".into()),
            ..RestoreContext::default()
        };
        let r = state_from_exported(&e, &ctx).unwrap();
        assert!(
            !r.state
                .pods
                .contains_key(&PodKey::new("ml", "jobcarbon-ledger-0"))
        );
        assert_eq!(r.state.rolled_up.len(), 1);
    }

    #[test]
    fn nothing_booked_nothing_restored() {
        let mut e = exported();
        e.remove(LAST_INTERVAL);
        assert!(state_from_exported(&e, &RestoreContext::default()).is_none());
        assert!(state_from_exported(&Exported::new(), &RestoreContext::default()).is_none());
    }

    #[test]
    fn identity_is_quoted_for_promql() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}

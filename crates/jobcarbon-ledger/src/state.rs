//! Ledger state: everything booked so far. Plain data with serde, so it can be checkpointed
//! (a file or SoftwareProduct status) and restored; the interval function maps one state to
//! the next.

use crate::epc::EpcParts;
use jobcarbon_core::{
    Component, Grams, GramsPerSecond, Joules, Phase, PodKey, ProductType, Seconds, Terms,
    UnallocatedReason, WorkloadRef,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Energy per component.
pub type ComponentEnergy = BTreeMap<Component, Joules>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
/// The ledger's books: every pod, roll-up, product and total booked so far.
pub struct LedgerState {
    /// End of the last booked interval (seconds since the Unix epoch).
    pub last_booked: Option<Seconds>,
    /// Intervals booked since the state began.
    pub intervals_booked: u64,
    /// Pods with their own series: running, or finished and within the grace period.
    #[serde(with = "entries")]
    pub pods: BTreeMap<PodKey, PodAccount>,
    /// Finished pods past the grace period (and pods over the series cap), per workload.
    #[serde(with = "entries")]
    pub rolled_up: BTreeMap<RollupKey, RollupAccount>,
    /// Pods over the series cap: booked straight into their roll-up.
    #[serde(with = "entries")]
    pub overflow: BTreeMap<PodKey, OverflowPod>,
    /// Product books by product name.
    pub products: BTreeMap<String, ProductAccount>,
    /// Cumulative unallocated carbon by reason.
    pub unallocated: BTreeMap<UnallocatedReason, Grams>,
    /// Pods that got no series of their own because of the series cap.
    pub series_dropped: u64,
    /// Cumulative GPU energy measured, and the part no pod could be given (`gpu_unmapped`).
    #[serde(default)]
    pub gpu_energy: GpuEnergy,
    /// The last `MAX_RUNS_PER_WORKLOAD` runs of each repeatedly running workload (a
    /// CronJob's Jobs), each with its own books. A view: the workload's own books already
    /// contain them.
    #[serde(default, with = "entries")]
    pub runs: BTreeMap<WorkloadRef, Vec<RunAccount>>,
    /// Everything ever booked to pods, by namespace, phase and product: the bounded totals
    /// family, added to as bookings happen (workload series come and go beside it).
    #[serde(default, with = "entries")]
    pub totals: BTreeMap<TotalsKey, Tally>,
    /// Workloads whose series stopped: no pod of theirs is left (their grams stay in
    /// [`LedgerState::totals`], their history in Prometheus).
    #[serde(default)]
    pub retired: Retired,
}

/// The labels of the totals family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TotalsKey {
    /// Namespace.
    pub namespace: String,
    /// Phase.
    pub phase: Phase,
    /// Software product, if any.
    pub product: Option<String>,
}

/// Energy by component and carbon by term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Energy by component, J.
    pub energy: ComponentEnergy,
    /// Carbon by term, gCO2e.
    pub carbon: Terms,
}

impl Tally {
    /// Adds `joules` of `component`.
    pub fn add_energy(&mut self, component: Component, joules: Joules) {
        *self.energy.entry(component).or_insert(Joules::ZERO) += joules;
    }

    /// Adds `energy` and `carbon` to these books.
    pub fn add(&mut self, energy: Option<&ComponentEnergy>, carbon: Terms) {
        add_energy(
            &mut self.energy,
            energy.into_iter().flatten().map(|(c, j)| (*c, *j)),
        );
        self.carbon += carbon;
    }
}

/// Adds each `(component, joules)` of `from` to `into`.
pub(crate) fn add_energy(
    into: &mut ComponentEnergy,
    from: impl Iterator<Item = (Component, Joules)>,
) {
    for (c, j) in from {
        *into.entry(c).or_insert(Joules::ZERO) += j;
    }
}

/// What the retired workloads had booked, and how many there were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retired {
    /// Workloads retired so far.
    pub workloads: u64,
    /// What they had booked.
    pub books: Tally,
    /// The last `MAX_RECENT_RETIRED` retired workloads, oldest first, for the JSON API (a
    /// view: their grams are in `books`).
    #[serde(default)]
    pub recent: VecDeque<RetiredWorkload>,
}

/// Retired workloads the JSON API still lists.
pub(crate) const MAX_RECENT_RETIRED: usize = 1_000;

/// A workload whose series stopped, with its books as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredWorkload {
    /// The workload and labels.
    pub key: RollupKey,
    /// Its books when it retired.
    pub books: RollupAccount,
    /// When its series stopped, seconds since the Unix epoch.
    pub retired_at: Seconds,
}

impl Retired {
    /// Takes `books` of the workload `key` in at `at`.
    pub fn retire(&mut self, key: RollupKey, books: RollupAccount, at: Seconds) {
        self.workloads += 1;
        self.books.add(Some(&books.energy), books.carbon);
        if self.recent.len() >= MAX_RECENT_RETIRED {
            self.recent.pop_front();
        }
        self.recent.push_back(RetiredWorkload {
            key,
            books,
            retired_at: at,
        });
    }
}

/// Runs kept per workload: a daily CronJob shows its last three weeks.
pub(crate) const MAX_RUNS_PER_WORKLOAD: usize = 20;

/// One run of a workload (`Job/nightly-retrain-29412960` of `CronJob/nightly-retrain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAccount {
    /// The run's name (`Job/<name>`).
    pub run: String,
    /// First interval end with a pod of it, seconds since the Unix epoch.
    pub first_seen: Seconds,
    /// Last interval end with a pod of it, seconds since the Unix epoch.
    pub last_seen: Seconds,
    /// Energy by component, J.
    pub energy: ComponentEnergy,
    /// Carbon by term, gCO2e.
    pub carbon: Terms,
}

impl LedgerState {
    /// The account of `run` of `workload`, opened when first seen. The oldest run (by last
    /// sight) makes room when the workload has `MAX_RUNS_PER_WORKLOAD`.
    pub fn run_mut(&mut self, workload: &WorkloadRef, run: &str, at: Seconds) -> &mut RunAccount {
        let runs = self.runs.entry(workload.clone()).or_default();
        let index = match runs.iter().position(|r| r.run == run) {
            Some(index) => index,
            None => {
                if runs.len() >= MAX_RUNS_PER_WORKLOAD
                    && let Some(oldest) = (0..runs.len()).min_by(|a, b| {
                        runs[*a]
                            .last_seen
                            .value()
                            .total_cmp(&runs[*b].last_seen.value())
                    })
                {
                    runs.remove(oldest);
                }
                runs.push(RunAccount {
                    run: run.to_owned(),
                    first_seen: at,
                    last_seen: at,
                    energy: BTreeMap::new(),
                    carbon: Terms::ZERO,
                });
                runs.len() - 1
            }
        };
        &mut runs[index]
    }
}

/// GPU energy totals, for the share of GPU energy that is unmapped (an alert).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuEnergy {
    /// GPU energy measured, J.
    pub measured: Joules,
    /// GPU energy no pod could be given, J.
    pub unmapped: Joules,
}

impl LedgerState {
    /// Whether an interval has been booked (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.intervals_booked > 0
    }

    /// Carbon held by pod accounts, roll-ups and retired workloads: always the totals'.
    pub fn booked_to_workloads(&self) -> Grams {
        self.pods
            .values()
            .map(|p| p.carbon.asce())
            .chain(self.rolled_up.values().map(|r| r.carbon.asce()))
            .chain(std::iter::once(self.retired.books.carbon.asce()))
            .sum()
    }

    /// The pod accounts' and roll-ups' books by the totals family's labels.
    pub fn totals_from_workloads(&self) -> BTreeMap<TotalsKey, Tally> {
        let mut totals: BTreeMap<TotalsKey, Tally> = BTreeMap::new();
        let pods = self
            .pods
            .iter()
            .map(|(k, a)| (&k.namespace, a.phase, &a.product, &a.energy, a.carbon));
        let rollups = self.rolled_up.iter().map(|(k, r)| {
            let namespace = &k.workload.namespace;
            (namespace, k.phase, &k.product, &r.energy, r.carbon)
        });
        for (namespace, phase, product, energy, carbon) in pods.chain(rollups) {
            let key = TotalsKey {
                namespace: namespace.clone(),
                phase,
                product: product.clone(),
            };
            totals.entry(key).or_default().add(Some(energy), carbon);
        }
        totals
    }

    /// A state from before the totals family (an older checkpoint) gets its totals from its
    /// workloads, so the family starts where the workload series were.
    pub fn backfill_totals(&mut self) {
        if self.totals.is_empty() && self.retired.workloads == 0 {
            self.totals = self.totals_from_workloads();
        }
    }

    /// Carbon of the totals family.
    pub fn totals_carbon(&self) -> Grams {
        self.totals.values().map(|b| b.carbon.asce()).sum()
    }
}

/// One pod's running totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodAccount {
    /// The workload that owns the pod.
    pub workload: WorkloadRef,
    /// Phase.
    pub phase: Phase,
    /// Software product, if any.
    pub product: Option<String>,
    /// Node it ran on.
    pub node: Option<String>,
    /// Whether it is a platform pod (its carbon is overhead).
    pub platform: bool,
    /// Whether it was running at the last interval.
    pub running: bool,
    /// Whether it ever ran (pending-only pods are not booked).
    pub ever_ran: bool,
    /// Energy by component, J.
    pub energy: ComponentEnergy,
    /// Carbon by term, gCO2e.
    pub carbon: Terms,
    /// First seen, seconds since the Unix epoch.
    pub first_seen: Seconds,
    /// Last seen, seconds since the Unix epoch.
    pub last_seen: Seconds,
    /// When it finished, if it has.
    pub finished_at: Option<Seconds>,
    /// Components whose energy is estimated (CCF model), not measured.
    #[serde(default)]
    pub estimated: BTreeSet<Component>,
    /// The run of its workload this pod belongs to (a CronJob's Job), as first seen.
    #[serde(default)]
    pub run: Option<String>,
}

impl PodAccount {
    /// The roll-up its books go to once it is rolled up.
    pub fn rollup_key(&self) -> RollupKey {
        RollupKey {
            workload: self.workload.clone(),
            phase: self.phase,
            product: self.product.clone(),
        }
    }
    /// Its energy over all components, J.
    pub fn energy_total(&self) -> Joules {
        self.energy.values().sum()
    }
}

/// A pod over the series cap, remembered so late energy still reaches its roll-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverflowPod {
    /// The roll-up it books into.
    pub rollup: RollupKey,
    /// When it left the cluster, if it has.
    pub gone_at: Option<Seconds>,
}

/// A workload's finished pods, by the labels they had.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RollupKey {
    /// The workload.
    pub workload: WorkloadRef,
    /// Phase.
    pub phase: Phase,
    /// Software product, if any.
    pub product: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
/// A workload's rolled-up pods' books.
pub struct RollupAccount {
    /// Energy by component, J.
    pub energy: ComponentEnergy,
    /// Carbon by term, gCO2e.
    pub carbon: Terms,
    /// Pods rolled up.
    pub pods: u64,
    /// Components whose energy is estimated for some of its pods.
    #[serde(default)]
    pub estimated: BTreeSet<Component>,
}

/// One product's books.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductAccount {
    /// Product type (model, dataset, ...).
    pub kind: ProductType,
    /// Σ ASCᵉ of the jobs that built it.
    pub measured: Grams,
    /// EPC as of the last interval.
    pub epc: EpcParts,
    /// Re-training carbon waiting for inference.
    pub pool: RetrainingPool,
    /// Inference requests counted so far.
    pub requests_total: f64,
    /// Σ ASCᵉ of its inference pods.
    pub inference_grams_total: Grams,
    /// Recent (interval end, inference grams, requests) for the per-request gauge.
    pub window: VecDeque<WindowEntry>,
}

impl ProductAccount {
    /// Empty books for a product of `kind`.
    pub fn new(kind: ProductType) -> Self {
        Self {
            kind,
            measured: Grams::ZERO,
            epc: EpcParts::default(),
            pool: RetrainingPool::default(),
            requests_total: 0.0,
            inference_grams_total: Grams::ZERO,
            window: VecDeque::new(),
        }
    }

    /// Inference grams per request over the window; `None` without requests in it.
    pub fn grams_per_request(&self) -> Option<f64> {
        let requests: f64 = self.window.iter().map(|w| w.requests).sum();
        let grams: Grams = self.window.iter().map(|w| w.grams).sum();
        (requests > 0.0).then(|| grams.value() / requests)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
/// One interval of the per-request window.
pub struct WindowEntry {
    /// Interval end, seconds since the Unix epoch.
    pub at: Seconds,
    /// Inference carbon booked, gCO2e.
    pub grams: Grams,
    /// Requests counted.
    pub requests: f64,
}

/// A model's re-training carbon waiting to reach its inference. Each deposit drains linearly
/// over `amortizeOver` of inference time; while nothing serves the model the clock pauses, so
/// every gram of re-training eventually lands on inference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainingPool {
    /// Deposits not yet drained.
    pub tranches: Vec<Tranche>,
    /// Carbon ever deposited, gCO2e.
    pub deposited: Grams,
    /// Carbon drained to inference so far, gCO2e.
    pub drained: Grams,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
/// One re-training deposit, draining at a fixed rate.
pub struct Tranche {
    /// When it was deposited, seconds since the Unix epoch.
    pub opened_at: Seconds,
    /// Carbon left, gCO2e.
    pub remaining: Grams,
    /// Drain rate over inference time, gCO2e/s.
    pub rate: GramsPerSecond,
}

impl RetrainingPool {
    /// Carbon still waiting, gCO2e.
    pub fn balance(&self) -> Grams {
        self.tranches.iter().map(|t| t.remaining).sum()
    }

    /// Add re-training carbon. Deposits close together share a tranche so the state stays
    /// small (one tranche per 1/96 of the amortisation period).
    pub fn deposit(&mut self, at: Seconds, grams: Grams, amortize_over: Seconds) {
        if grams.value() <= 0.0 || amortize_over.value() <= 0.0 {
            return;
        }
        self.deposited += grams;
        let rate = grams / amortize_over;
        match self.tranches.last_mut() {
            Some(t) if (at - t.opened_at).value() < amortize_over.value() / 96.0 => {
                t.remaining += grams;
                t.rate += rate;
            }
            _ => self.tranches.push(Tranche {
                opened_at: at,
                remaining: grams,
                rate,
            }),
        }
    }

    /// Drain what `duration` of inference amortises, and return it.
    pub fn drain(&mut self, duration: Seconds) -> Grams {
        let mut drained = Grams::ZERO;
        for t in &mut self.tranches {
            let due = (t.rate * duration).min(t.remaining).non_negative();
            t.remaining -= due;
            drained += due;
        }
        self.tranches.retain(|t| t.remaining.value() > 1e-12);
        self.drained += drained;
        drained
    }
}

/// Serialise a map with structured keys as a list of `[key, value]` pairs (JSON keys must be
/// strings).
pub(crate) mod entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_drains_linearly_and_pauses() {
        let mut pool = RetrainingPool::default();
        pool.deposit(Seconds(0.0), Grams(240.0), Seconds(2400.0));
        assert_eq!(pool.drain(Seconds(600.0)), Grams(60.0));
        assert_eq!(pool.balance(), Grams(180.0));
        assert_eq!(pool.drain(Seconds(1e6)), Grams(180.0));
        assert!(pool.tranches.is_empty());
        assert_eq!(pool.deposited, pool.drained);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut state = LedgerState::default();
        let key = PodKey::new("ml", "train-0");
        state.pods.insert(
            key.clone(),
            PodAccount {
                workload: WorkloadRef::new("ml", "Job", "train"),
                phase: Phase::Training,
                product: Some("bert".into()),
                node: Some("n1".into()),
                platform: false,
                running: true,
                ever_ran: true,
                energy: BTreeMap::from([(Component::Gpu, Joules(5.0))]),
                carbon: Terms::of(jobcarbon_core::Term::Operational, Grams(1.0)),
                first_seen: Seconds(0.0),
                last_seen: Seconds(30.0),
                finished_at: None,
                estimated: [Component::Cpu].into(),
                run: Some("Job/train-29412960".into()),
            },
        );
        state
            .unallocated
            .insert(UnallocatedReason::NodeIdle, Grams(2.0));
        state
            .run_mut(
                &WorkloadRef::new("ml", "CronJob", "train"),
                "Job/train-29412960",
                Seconds(0.0),
            )
            .carbon += Terms::of(jobcarbon_core::Term::Operational, Grams(1.0));
        let json = serde_json::to_string(&state).unwrap();
        let back: LedgerState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn runs_are_bounded_and_the_least_recent_goes() {
        let mut state = LedgerState::default();
        let cron = WorkloadRef::new("ml", "CronJob", "nightly");
        for day in 0..(MAX_RUNS_PER_WORKLOAD + 3) {
            let at = Seconds(day as f64 * 86_400.0);
            state.run_mut(&cron, &format!("Job/nightly-{day}"), at);
        }
        let runs = &state.runs[&cron];
        assert_eq!(runs.len(), MAX_RUNS_PER_WORKLOAD);
        assert_eq!(runs[0].run, "Job/nightly-3");
        assert_eq!(runs[MAX_RUNS_PER_WORKLOAD - 1].run, "Job/nightly-22");
        // An old state without runs still loads.
        let old = r#"{"last_booked":null,"intervals_booked":0,"pods":[],"rolled_up":[],"overflow":[],
            "products":{},"unallocated":{},"series_dropped":0}"#;
        let back: LedgerState = serde_json::from_str(old).unwrap();
        assert!(back.runs.is_empty());
        assert!(back.totals.is_empty());
        assert_eq!(back.retired, Retired::default());
    }
}

//! The I/O around the pure interval: read sources, track counters, resolve live intensities,
//! book, publish. The caller drives time (`run_interval(at)`): the `ledger` subcommand with the
//! wall clock, the demo with its accelerated simulated clock — one code path for both.

use crate::interval::{Conditions, IntervalInput, IntervalReport, book_interval};
use crate::requests::{RequestBooks, RequestRead};
use crate::settings::{IntensitySpec, RegionDef, Settings};
use crate::state::LedgerState;
use crate::view::{LineageCache, RegionStatus, SharedView, SourceStatus};
use async_trait::async_trait;
use jobcarbon_core::{
    ClusterSnapshot, EnergyOwner, EnergyReading, GramsPerKwh, PodFacts, PodKey, ProductDef, Seconds,
};
use jobcarbon_telemetry::{CounterTracker, FirstSight, Rejection};
use jobcarbon_telemetry::{
    EnergySource, EstimatedNode, EstimationCell, MetricQuery, PolledProvider, RequestQuery,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Why the cluster state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster state unavailable: {0}")]
    /// The source could not answer; the reason.
    Unavailable(String),
}

/// Pods, nodes and products at one moment: the kube watchers, or the demo's simulation.
#[async_trait]
pub trait ClusterSource: Send + Sync {
    /// `at` lets a simulation answer for its own clock; a live cluster answers for now.
    async fn snapshot(&self, at: Seconds) -> Result<ClusterSnapshot, ClusterError>;
    /// Request counters declared by products the cluster defines (CRD `spec.inference`);
    /// they take precedence over the config's.
    async fn request_queries(&self) -> BTreeMap<String, RequestQuery> {
        BTreeMap::new()
    }
}

/// What the ledger reads.
pub struct Sources {
    /// Energy sources, read in order.
    pub energy: Vec<Box<dyn EnergySource>>,
    /// Request counters and live intensities; `None` when there is no Prometheus.
    pub metrics: Option<Box<dyn MetricQuery>>,
    /// Pods, nodes and products.
    pub cluster: Box<dyn ClusterSource>,
}

/// An interval not booked because energy sources did not answer.
#[derive(Debug)]
pub struct EnergyOutage {
    /// Names of the sources that failed.
    pub failed: Vec<String>,
    /// An empty report for the interval.
    pub report: IntervalReport,
}

/// Name of the cluster source in self-metrics.
pub const CLUSTER_SOURCE: &str = "kubernetes";
/// Name of the metric-query source (requests, live intensity) in self-metrics.
pub const QUERY_SOURCE: &str = "prometheus";

/// The ledger: books each interval from its sources and publishes the result to its view.
pub struct Ledger {
    settings: Settings,
    sources: Sources,
    /// Products from the config, for clusters without the CRD (CRD products win on a clash).
    config_products: Vec<ProductDef>,
    request_queries: BTreeMap<String, RequestQuery>,
    pub(crate) energy_counters: BTreeMap<String, CounterTracker>,
    pub(crate) request_books: RequestBooks,
    last_snapshot: Option<ClusterSnapshot>,
    /// Last good live intensity per region, and the interval it was read for.
    live: BTreeMap<String, (GramsPerKwh, Seconds)>,
    /// Live intensity providers by region (`IntensitySpec::Provider`).
    providers: BTreeMap<String, PolledProvider>,
    /// The booked state; the view publishes this same `Arc` (never a copy).
    pub(crate) state: Arc<LedgerState>,
    view: SharedView,
    /// The view's lineage, rebuilt only when the product definitions change.
    lineage: LineageCache,
    /// The estimated source's pod → node mapping and coefficients, refreshed each interval.
    estimation: Option<Arc<EstimationCell>>,
    /// Nodes a CPU meter (Kepler) reported, and when: never estimated under `energy.cpu: auto`.
    metered_nodes: BTreeMap<String, Seconds>,
}

/// How long a node stays "metered" after Kepler last reported it (a Kepler restart must not
/// make its node estimated, then counted twice when the counters resume).
const METERED_MEMORY: Seconds = Seconds(600.0);

impl Ledger {
    /// A ledger over `sources` with `settings`, starting from `state`.
    pub fn new(
        settings: Settings,
        sources: Sources,
        config_products: Vec<ProductDef>,
        request_queries: BTreeMap<String, RequestQuery>,
        view: SharedView,
    ) -> Self {
        if let Ok(mut v) = view.write() {
            v.pod_series = settings.pod_series;
        }
        Self {
            settings,
            sources,
            config_products,
            request_queries,
            energy_counters: BTreeMap::new(),
            request_books: RequestBooks::default(),
            last_snapshot: None,
            live: BTreeMap::new(),
            providers: BTreeMap::new(),
            state: Arc::default(),
            view,
            lineage: LineageCache::default(),
            estimation: None,
            metered_nodes: BTreeMap::new(),
        }
    }

    /// Feeds the estimated energy source (`energy.cpu: estimated | auto`).
    pub fn with_estimation(mut self, cell: Option<Arc<EstimationCell>>) -> Self {
        self.estimation = cell;
        self
    }

    /// Tells the estimated source where pods run and each node's coefficients.
    fn refresh_estimation(&self, snapshot: &ClusterSnapshot) {
        let Some(cell) = &self.estimation else {
            return;
        };
        let pods = snapshot
            .pods
            .iter()
            .filter_map(|p| Some((p.key.clone(), p.node.clone()?)))
            .collect();
        let nodes = snapshot
            .nodes
            .iter()
            .map(|n| {
                let node = EstimatedNode {
                    vcpus: n.cpus,
                    cpu: self.settings.estimation.cpu_for(n),
                };
                (n.name.clone(), node)
            })
            .collect();
        cell.update(pods, nodes);
    }

    /// Attach the live intensity providers of `IntensitySpec::Provider` regions, by region.
    pub fn with_intensity_providers(mut self, providers: BTreeMap<String, PolledProvider>) -> Self {
        self.providers = providers;
        self
    }

    /// Start from a restored state (checkpoint).
    pub fn with_state(mut self, state: LedgerState) -> Self {
        self.state = Arc::new(state);
        self
    }

    /// The books as of the last interval.
    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    /// The settings it books with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The view the exporter serves (shared, updated after each interval).
    pub fn view(&self) -> SharedView {
        self.view.clone()
    }

    /// Read the counters as of `at` without booking anything: the baselines a state restored
    /// without them (`crate::prom_restore`) needs, so the next interval books only its own
    /// energy and requests.
    pub async fn prime(&mut self, at: Seconds) {
        let mut statuses: BTreeMap<String, SourceStatus> = self
            .view
            .read()
            .map(|v| v.sources.clone())
            .unwrap_or_default();
        let snapshot = self.read_cluster(at, &mut statuses).await;
        self.refresh_estimation(&snapshot);
        let _baseline = self.read_energy(at, &snapshot, &mut statuses).await;
        let _baseline = self.read_requests(&snapshot, at, &mut statuses).await;
        if let Ok(mut view) = self.view.write() {
            view.sources = statuses;
        }
    }

    /// Read everything as of `at`, book the interval ending at `at`, publish the result.
    pub async fn run_interval(&mut self, at: Seconds) -> IntervalReport {
        match self.step(at, false).await {
            Ok(report) | Err(EnergyOutage { report, .. }) => report,
        }
    }

    /// Like [`Ledger::run_interval`], but books nothing (state and counters unchanged) unless
    /// every energy source answered, so the interval can be booked later from history
    /// (`crate::durable`).
    pub async fn try_run_interval(&mut self, at: Seconds) -> Result<IntervalReport, EnergyOutage> {
        self.step(at, true).await
    }

    async fn step(
        &mut self,
        at: Seconds,
        hold_on_outage: bool,
    ) -> Result<IntervalReport, EnergyOutage> {
        let started = Instant::now();
        let mut statuses: BTreeMap<String, SourceStatus> = self
            .view
            .read()
            .map(|v| v.sources.clone())
            .unwrap_or_default();

        let snapshot = self.read_cluster(at, &mut statuses).await;
        self.refresh_estimation(&snapshot);
        let cluster_s = started.elapsed().as_secs_f64();
        let counters_before = hold_on_outage.then(|| self.energy_counters.clone());
        let energy = self.read_energy(at, &snapshot, &mut statuses).await;
        let energy_s = started.elapsed().as_secs_f64() - cluster_s;
        let failed: Vec<String> = self
            .sources
            .energy
            .iter()
            .map(|s| s.name().to_owned())
            .filter(|name| statuses.get(name).and_then(|s| s.last_success) != Some(at))
            .collect();
        if let Some(before) = counters_before.filter(|_| !failed.is_empty()) {
            self.energy_counters = before;
            if let Ok(mut view) = self.view.write() {
                view.sources = statuses;
            }
            return Err(EnergyOutage {
                failed,
                report: nothing_booked(at),
            });
        }
        let read = self.read_requests(&snapshot, at, &mut statuses).await;
        let (conditions, regions) = self.resolve_regions(at, &mut statuses).await;

        let lineage = self.lineage.lineage(&snapshot.products);
        let booking = Instant::now();
        let input = IntervalInput {
            at,
            snapshot,
            energy,
            requests: read.requests,
            requests_unknown: read.unknown,
            conditions,
        };
        let (state, report) = book_interval(&self.state, &self.settings, &input);
        let delta = crate::history::interval_delta(&self.state, &state, &report);
        // Published, not copied: the view gets the same `Arc` (a pointer swap under the lock).
        self.state = Arc::new(state);
        let book_s = booking.elapsed().as_secs_f64();
        let elapsed = started.elapsed().as_secs_f64();
        match self.view.write() {
            Ok(mut view) => {
                view.state = Arc::clone(&self.state);
                view.regions = regions;
                view.default_region = Some(self.settings.default_region.clone());
                view.sources = statuses;
                view.interval_seconds.observe(elapsed);
                Arc::make_mut(&mut view.history).record(&delta);
                view.lineage = lineage;
            }
            Err(_) => tracing::error!("ledger view lock poisoned; metrics not updated"),
        }
        tracing::debug!(
            at = at.value(),
            emitted = report.emissions.input.value(),
            cluster_s,
            energy_s,
            book_s,
            total_s = elapsed,
            "interval booked"
        );
        Ok(report)
    }

    async fn read_cluster(
        &mut self,
        at: Seconds,
        statuses: &mut BTreeMap<String, SourceStatus>,
    ) -> ClusterSnapshot {
        let status = statuses.entry(CLUSTER_SOURCE.to_owned()).or_default();
        let mut snapshot = match self.sources.cluster.snapshot(at).await {
            Ok(s) => {
                status.last_success = Some(at);
                self.last_snapshot = Some(s.clone());
                s
            }
            Err(e) => {
                // An API-server outage: book against the last known pods (stale but served).
                tracing::warn!(error = %e, "cluster snapshot failed; using the last one");
                *status.errors.entry("unavailable".to_owned()).or_insert(0) += 1;
                self.last_snapshot.clone().unwrap_or_default()
            }
        };
        for def in &self.config_products {
            if !snapshot.products.iter().any(|p| p.name == def.name) {
                snapshot.products.push(def.clone());
            }
        }
        snapshot
    }

    async fn read_energy(
        &mut self,
        at: Seconds,
        snapshot: &ClusterSnapshot,
        statuses: &mut BTreeMap<String, SourceStatus>,
    ) -> Vec<jobcarbon_core::EnergyDelta> {
        let mut deltas = Vec::new();
        let pods: BTreeMap<&PodKey, &PodFacts> =
            snapshot.pods.iter().map(|p| (&p.key, p)).collect();
        for source in &self.sources.energy {
            let name = source.name().to_owned();
            let status = statuses.entry(name.clone()).or_default();
            match source.read(at).await {
                Ok(readings) => {
                    status.last_success = Some(at);
                    let mut readings = without_finished_sharers(readings, &pods);
                    if source.may_name_finished_pods() {
                        unmap_finished_pods(&mut readings, &pods);
                    }
                    let per_pod = source.counters_start_with_pod();
                    // A per-pod counter first seen for a pod created since the last read
                    // counted from 0 inside the interval; anything else is its past.
                    let started = |r: &EnergyReading, since: Seconds| match &r.owner {
                        EnergyOwner::Pod { key, .. } if per_pod => pods
                            .get(key)
                            .and_then(|p| p.created)
                            .is_some_and(|created| created >= since),
                        _ => false,
                    };
                    if source.measures_cpu() {
                        note_metered(&mut self.metered_nodes, &readings, &pods, at);
                    }
                    let counters = self
                        .energy_counters
                        .entry(name)
                        .or_insert_with(|| CounterTracker::new(FirstSight::Baseline));
                    let observed = counters.observe_since(&readings, &started);
                    let non_finite = observed
                        .rejected
                        .iter()
                        .filter(|(_, why)| *why == Rejection::InvalidValue)
                        .count();
                    if non_finite > 0 {
                        // Dropped, counted and logged: never a NaN on /metrics.
                        tracing::warn!(source = %source.name(), readings = non_finite, "non-finite or negative counter values dropped");
                        *status.errors.entry("non_finite".to_owned()).or_insert(0) +=
                            non_finite as u64;
                    }
                    deltas.extend(observed.deltas);
                    counters.forget_older_than(at - self.settings.counter_retention);
                }
                Err(e) => {
                    // Counters are cumulative: what this read misses, the next one books.
                    tracing::warn!(source = %name, error = %e, "energy source read failed");
                    *status.errors.entry(e.kind().to_owned()).or_insert(0) += 1;
                }
            }
        }
        // One path per node: estimates of nodes a meter reported are dropped.
        let metered = &self.metered_nodes;
        deltas.retain(|d| !(d.estimated && metered.contains_key(&d.node)));
        deltas
    }

    async fn read_requests(
        &mut self,
        snapshot: &ClusterSnapshot,
        at: Seconds,
        statuses: &mut BTreeMap<String, SourceStatus>,
    ) -> RequestRead {
        let Some(metrics) = &self.sources.metrics else {
            return RequestRead::default();
        };
        let mut queries = self.request_queries.clone();
        queries.extend(self.sources.cluster.request_queries().await);
        let mut request_statuses = self
            .view
            .read()
            .map(|v| v.requests.clone())
            .unwrap_or_default();
        let read = self
            .request_books
            .read(
                metrics.as_ref(),
                &queries,
                (snapshot, &*self.state),
                at,
                self.settings.counter_retention,
                &mut request_statuses,
            )
            .await;
        let status = statuses.entry(QUERY_SOURCE.to_owned()).or_default();
        if read.unknown.is_empty() {
            status.last_success = Some(at);
        } else {
            *status.errors.entry("requests".to_owned()).or_insert(0) += 1;
        }
        if let Ok(mut view) = self.view.write() {
            view.requests = request_statuses;
        }
        read
    }

    async fn resolve_regions(
        &mut self,
        at: Seconds,
        statuses: &mut BTreeMap<String, SourceStatus>,
    ) -> (BTreeMap<String, Conditions>, BTreeMap<String, RegionStatus>) {
        let mut conditions = BTreeMap::new();
        let mut regions = BTreeMap::new();
        let defs: Vec<(String, RegionDef)> = self
            .settings
            .regions
            .iter()
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        for (name, def) in defs {
            let (intensity, staleness) = match &def.intensity {
                IntensitySpec::Static(ci) => (*ci, None),
                IntensitySpec::Live {
                    promql, fallback, ..
                } => {
                    self.read_promql(&name, promql, at, statuses).await;
                    self.last_good(&name, *fallback, at)
                }
                IntensitySpec::Provider { fallback, .. } => {
                    self.read_provider(&name, at, statuses).await;
                    self.last_good(&name, *fallback, at)
                }
            };
            let forecast = self.providers.get(&name).and_then(|p| p.last_forecast());
            conditions.insert(
                name.clone(),
                Conditions {
                    pue: def.pue,
                    intensity,
                },
            );
            regions.insert(
                name,
                RegionStatus {
                    pue: def.pue,
                    intensity,
                    staleness,
                    signal: def.intensity.signal(),
                    forecast,
                },
            );
        }
        (conditions, regions)
    }

    /// The last good live value and its age at `at`; the fallback (stale forever) before any.
    fn last_good(
        &self,
        region: &str,
        fallback: GramsPerKwh,
        at: Seconds,
    ) -> (GramsPerKwh, Option<Seconds>) {
        match self.live.get(region) {
            Some((ci, read_at)) => (*ci, Some((at - *read_at).non_negative())),
            None => (fallback, Some(Seconds(f64::INFINITY))),
        }
    }

    /// A PromQL intensity evaluated at `at` (the past, when backfilling).
    async fn read_promql(
        &mut self,
        name: &str,
        promql: &str,
        at: Seconds,
        statuses: &mut BTreeMap<String, SourceStatus>,
    ) {
        let read = match &self.sources.metrics {
            Some(m) => m.scalar(promql, at).await,
            None => return,
        };
        match read {
            Ok(v) if v.is_finite() && v >= 0.0 => {
                self.live.insert(name.to_owned(), (GramsPerKwh(v), at));
            }
            Ok(v) => {
                tracing::warn!(region = %name, value = v, "live intensity is not a non-negative number; keeping the last good value");
            }
            Err(e) => {
                tracing::warn!(region = %name, error = %e, "live intensity query failed; keeping the last good value");
                *statuses
                    .entry(QUERY_SOURCE.to_owned())
                    .or_default()
                    .errors
                    .entry(e.kind().to_owned())
                    .or_insert(0) += 1;
            }
        }
    }

    /// A provider's intensity for the interval ending at `at`: its latest value for a
    /// current interval, its history for a past one (backfill). The forecast is refreshed
    /// alongside (cached for the poll interval).
    async fn read_provider(
        &mut self,
        name: &str,
        at: Seconds,
        statuses: &mut BTreeMap<String, SourceStatus>,
    ) {
        let Some(provider) = self.providers.get(name) else {
            return;
        };
        let now = jobcarbon_telemetry::now();
        let start = at - self.settings.interval;
        let read = provider.intensity_over(start, at, now).await;
        let forecast = provider.forecast(now).await.err();
        let status = statuses.entry(provider.name().to_owned()).or_default();
        let read = match read {
            Ok(ci) => {
                status.last_success = Some(at);
                self.live.insert(name.to_owned(), (ci, at));
                None
            }
            Err(e) => Some(e),
        };
        for e in read.iter().chain(forecast.iter()) {
            // Waiting out a backoff is not another failure.
            if !matches!(e, jobcarbon_telemetry::ProviderError::BackingOff { .. }) {
                tracing::warn!(region = %name, error = %e, "intensity provider failed; keeping the last good value");
                *status.errors.entry(e.kind().to_owned()).or_insert(0) += 1;
            }
        }
    }
}

/// Drops the readings of pods that no longer run from counters they share with a running pod's
/// reading in the same slot (time-sliced GPUs: the exporter names pods that held the GPU
/// during the lookback), so the still-running sharers take the energy. A reading that is alone
/// in its slot keeps it (its energy is booked to it, or as an unknown pod).
fn without_finished_sharers(
    readings: Vec<EnergyReading>,
    pods: &BTreeMap<&PodKey, &PodFacts>,
) -> Vec<EnergyReading> {
    let running = |r: &EnergyReading| match &r.owner {
        EnergyOwner::Pod { key, .. } => pods.get(key).is_some_and(|p| p.running),
        _ => false,
    };
    let slots_with_running: std::collections::BTreeSet<(String, String)> = readings
        .iter()
        .filter(|r| running(r))
        .map(|r| (r.series.clone(), r.share.slot.clone()))
        .collect();
    readings
        .into_iter()
        .filter(|r| {
            running(r)
                || !matches!(r.owner, EnergyOwner::Pod { .. })
                || !slots_with_running.contains(&(r.series.clone(), r.share.slot.clone()))
        })
        .collect()
}

/// Records the nodes a CPU meter reported: the readings' own node, and the node of each pod
/// it measured (legacy Kepler names the scrape instance, not the node); forgets stale ones.
fn note_metered(
    metered: &mut BTreeMap<String, Seconds>,
    readings: &[EnergyReading],
    pods: &BTreeMap<&PodKey, &PodFacts>,
    at: Seconds,
) {
    for r in readings {
        if !r.node.is_empty() {
            metered.insert(r.node.clone(), at);
        }
        if let EnergyOwner::Pod { key, .. } = &r.owner
            && let Some(node) = pods.get(key).and_then(|p| p.node.as_ref())
        {
            metered.insert(node.clone(), at);
        }
    }
    metered.retain(|_, seen| at - *seen <= METERED_MEMORY);
}

/// GPU lines naming a pod that does not run (finished, or gone) are unmapped GPU energy: the
/// kubelet's pod-resources `List` keeps reporting finished pods' devices.
fn unmap_finished_pods(readings: &mut [EnergyReading], pods: &BTreeMap<&PodKey, &PodFacts>) {
    for r in readings.iter_mut() {
        let finished = match &r.owner {
            EnergyOwner::Pod { key, .. } => !pods.get(key).is_some_and(|p| p.running),
            _ => false,
        };
        if finished {
            let uuid = jobcarbon_telemetry::node_agent_source::gpu_of_series(&r.series)
                .unwrap_or_default()
                .to_owned();
            r.owner = EnergyOwner::UnmappedGpu { uuid };
        }
    }
}

fn nothing_booked(at: Seconds) -> IntervalReport {
    IntervalReport {
        at,
        duration: Seconds::ZERO,
        emissions: Default::default(),
        transfers: Default::default(),
        pod_terms: BTreeMap::new(),
        pod_energy: BTreeMap::new(),
        epc_deposits: BTreeMap::new(),
        pool_deposits: BTreeMap::new(),
        pool_drains: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobcarbon_core::{Component, Joules};

    fn line(pod: &str, slot: &str) -> EnergyReading {
        EnergyReading::new(
            "dcgm/GPU-1",
            "n1",
            EnergyOwner::pod("ns", pod, String::new()),
            Component::Gpu,
            Joules(1.0),
            Seconds(0.0),
        )
        .with_share(slot, 1.0)
    }

    #[test]
    fn finished_sharers_leave_the_running_ones_the_gpu() {
        let running = PodFacts::new("ns", "a");
        let finished = PodFacts::new("ns", "b").running(false);
        let pods: BTreeMap<&PodKey, &PodFacts> =
            [(&running.key, &running), (&finished.key, &finished)].into();
        // Same slot: b is dropped. Alone in its slot: b keeps its line.
        let kept = without_finished_sharers(vec![line("a", ""), line("b", "")], &pods);
        assert_eq!(kept.len(), 1);
        let kept = without_finished_sharers(vec![line("a", "mig-1"), line("b", "mig-2")], &pods);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn node_agent_lines_of_finished_pods_are_unmapped_gpu_energy() {
        let running = PodFacts::new("ns", "a");
        let finished = PodFacts::new("ns", "b").running(false);
        let pods: BTreeMap<&PodKey, &PodFacts> =
            [(&running.key, &running), (&finished.key, &finished)].into();
        let agent_line = |pod: &str| {
            EnergyReading::new(
                format!("node-agent/GPU-9/ns/{pod}/main"),
                "n1",
                EnergyOwner::pod("ns", pod, "main"),
                Component::Gpu,
                Joules(1.0),
                Seconds(0.0),
            )
        };
        // b finished, c is gone from the API: pod-resources still lists both.
        let mut readings = vec![agent_line("a"), agent_line("b"), agent_line("c")];
        unmap_finished_pods(&mut readings, &pods);
        let unmapped = EnergyOwner::UnmappedGpu {
            uuid: "GPU-9".into(),
        };
        assert!(matches!(readings[0].owner, EnergyOwner::Pod { .. }));
        assert_eq!(readings[1].owner, unmapped);
        assert_eq!(readings[2].owner, unmapped);
    }
}

//! `/metrics`: every family of DESIGN §8 and the self-metrics, built from the ledger view at
//! scrape time by a prometheus-client [`Collector`] over a snapshot of it. Counters get `_total` from the encoder.

use jobcarbon_core::{Component, Phase, Term, Terms, UnallocatedReason, WorkloadRef};
use jobcarbon_ledger::DurabilityStatus;
use jobcarbon_ledger::durable::wall_clock_now;
use jobcarbon_ledger::state::{ComponentEnergy, TotalsKey};
use jobcarbon_ledger::view::{LedgerView, snapshot};
use jobcarbon_ledger::{LedgerState, SharedView};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Horizons of `jobcarbon_grid_intensity_forecast_grams_per_kwh`.
pub const FORECAST_HORIZONS: [(&str, f64); 4] =
    [("1h", 1.0), ("6h", 6.0), ("12h", 12.0), ("24h", 24.0)];

/// A collector over one snapshot of the view (no lock at all while encoding).
#[derive(Debug)]
struct SnapshotCollector(LedgerView);

impl Collector for SnapshotCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encode_view(&self.0, encoder)
    }
}

/// The label naming the ledger that exported a series (`<namespace>/<release>`).
pub const IDENTITY_LABEL: &str = "ledger";

/// Exposition formats of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (what Prometheus asks for when it scrapes).
    OpenMetrics,
    /// Prometheus text 0.0.4 (plain `curl`, `promtool check metrics`).
    PrometheusText,
}

impl Format {
    /// Negotiate from an `Accept` header, as the Prometheus Go client does: OpenMetrics when
    /// the client asks for it, the classic text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => crate::OPENMETRICS,
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The exposition of the view in `format` (OpenMetrics ends with `# EOF`), as one string.
/// `/metrics` streams the same bytes, in chunks of about [`crate::CHUNK_BYTES`].
pub fn encode_metrics(view: &SharedView, format: Format) -> Result<String, fmt::Error> {
    let mut out = String::new();
    write_metrics(view, format, &mut out)?;
    Ok(out)
}

/// The exposition of the view in `format`, written to `out` from a snapshot taken under the
/// read lock: the lock is released before the first byte is encoded.
pub fn write_metrics(view: &SharedView, format: Format, out: &mut impl fmt::Write) -> fmt::Result {
    let view = snapshot(view).ok_or(fmt::Error)?;
    encode_snapshot(view, format, out)
}

/// The exposition of a view snapshot in `format`, written to `out`.
pub fn encode_snapshot(view: LedgerView, format: Format, out: &mut impl fmt::Write) -> fmt::Result {
    // Every series carries the ledger's own identity, so a restart restores exactly its own
    // series from Prometheus whatever the scrape config adds or renames.
    let mut registry = match view.identity.clone() {
        Some(id) => Registry::with_labels(std::iter::once((
            std::borrow::Cow::Borrowed(IDENTITY_LABEL),
            std::borrow::Cow::Owned(id),
        ))),
        None => Registry::default(),
    };
    registry.register_collector(Box::new(SnapshotCollector(view)));
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(out, &registry),
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(out, &registry)
        }
    }
}

/// A workload series: a workload (default), or with pod series one pod or the roll-up of a
/// workload's finished pods (no `pod` label).
struct Series<'a> {
    namespace: &'a str,
    workload: &'a str,
    pod: Option<&'a str>,
    phase: &'static str,
    product: &'a str,
    energy: [f64; Component::ALL.len()],
    estimated: [bool; Component::ALL.len()],
    carbon: Terms,
}

impl<'a> Series<'a> {
    fn new(
        workload: &'a WorkloadRef,
        pod: Option<&'a str>,
        phase: Phase,
        product: &'a str,
    ) -> Self {
        Self {
            namespace: &workload.namespace,
            workload: &workload.workload,
            pod,
            phase: phase.as_str(),
            product,
            energy: [0.0; Component::ALL.len()],
            estimated: [false; Component::ALL.len()],
            carbon: Terms::ZERO,
        }
    }

    fn add(&mut self, energy: &ComponentEnergy, estimated: &BTreeSet<Component>, carbon: Terms) {
        for (i, c) in Component::ALL.iter().enumerate() {
            self.energy[i] += energy.get(c).map_or(0.0, |j| j.value());
            self.estimated[i] |= estimated.contains(c);
        }
        self.carbon += carbon;
    }

    /// Samples of the three workload families; a series that has only ever been zero is not
    /// exported (counters never go down, so zero now is zero always).
    fn samples(&self) -> usize {
        let energy = self.energy.iter().filter(|j| **j > 0.0).count();
        let terms = Term::ALL
            .iter()
            .filter(|t| self.carbon[**t].value() > 0.0)
            .count();
        energy + terms + usize::from(self.carbon.asce().value() > 0.0)
    }
}

/// The workload series of `state`: one per workload, phase and product; with `pods`, one per
/// pod with an account and one per roll-up.
fn workload_series(state: &LedgerState, pods: bool) -> Vec<Series<'_>> {
    if pods {
        let pods = state.pods.iter().map(|(key, a)| {
            let mut s = Series::new(&a.workload, Some(&key.pod), a.phase, product(&a.product));
            s.add(&a.energy, &a.estimated, a.carbon);
            s
        });
        let rollups = state.rolled_up.iter().map(|(key, r)| {
            let mut s = Series::new(&key.workload, None, key.phase, product(&key.product));
            s.add(&r.energy, &r.estimated, r.carbon);
            s
        });
        return pods.chain(rollups).collect();
    }
    let mut workloads: BTreeMap<(&WorkloadRef, Phase, &str), Series<'_>> = BTreeMap::new();
    let accounts = state.pods.values().map(|a| {
        (
            &a.workload,
            a.phase,
            &a.product,
            &a.energy,
            &a.estimated,
            a.carbon,
        )
    });
    let rollups = state.rolled_up.iter().map(|(k, r)| {
        (
            &k.workload,
            k.phase,
            &k.product,
            &r.energy,
            &r.estimated,
            r.carbon,
        )
    });
    for (w, phase, p, energy, estimated, carbon) in accounts.chain(rollups) {
        workloads
            .entry((w, phase, product(p)))
            .or_insert_with(|| Series::new(w, None, phase, product(p)))
            .add(energy, estimated, carbon);
    }
    workloads.into_values().collect()
}

fn product(product: &Option<String>) -> &str {
    product.as_deref().unwrap_or("")
}

/// Label values are borrowed where the books hold them (`&str`), owned otherwise.
fn counter<V: EncodeLabelValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, V)>, f64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, f64, f64>(&value.max(0.0), None)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn workload_labels<'a>(s: &Series<'a>) -> Vec<(&'static str, &'a str)> {
    let mut labels = Vec::with_capacity(8);
    labels.push(("namespace", s.namespace));
    labels.push(("workload", s.workload));
    if let Some(pod) = s.pod {
        labels.push(("pod", pod));
    }
    labels.push(("phase", s.phase));
    labels.push(("product", s.product));
    labels
}

fn with<'a>(
    mut labels: Vec<(&'static str, &'a str)>,
    key: &'static str,
    value: &'a str,
) -> Vec<(&'static str, &'a str)> {
    labels.push((key, value));
    labels
}

fn encode_view(view: &LedgerView, mut encoder: DescriptorEncoder) -> fmt::Result {
    // A standby books nothing: its figures are stale copies that dashboards would add to the
    // leader's and a restore from Prometheus would mistake for the ledger's own.
    let empty = LedgerState::default();
    let state = if view.leader == Some(false) {
        &empty
    } else {
        &view.state
    };
    let series = workload_series(state, view.pod_series);
    encode_workloads(&series, &mut encoder)?;
    encode_totals(state, &mut encoder)?;
    encode_products(state, &mut encoder)?;
    encode_regions(view, &mut encoder)?;
    encode_gaps(view, state, &mut encoder)?;
    encode_self_reads(view, &mut encoder)?;
    let exported = series.iter().map(Series::samples).sum();
    encode_self_books(state, exported, &mut encoder)?;
    encode_durability(&view.durability, &mut encoder)
}

/// The workload families: energy by component, carbon by term, and ASCᵉ.
fn encode_workloads(series: &[Series<'_>], encoder: &mut DescriptorEncoder) -> fmt::Result {
    counter(
        encoder,
        "jobcarbon_workload_energy_joules",
        "Energy of a workload (idle_share: its share of node idle energy), J; source=\"estimated\" where no meter measured it (CCF model, GPU utilisation x TDP).",
        series.iter().flat_map(|s| {
            Component::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| s.energy[*i] > 0.0)
                .map(move |(i, c)| {
                    let labels = with(workload_labels(s), "component", c.as_str());
                    let source = if s.estimated[i] {
                        "estimated"
                    } else {
                        "measured"
                    };
                    (with(labels, "source", source), s.energy[i])
                })
        }),
    )?;
    counter(
        encoder,
        "jobcarbon_workload_carbon_grams",
        "Carbon of a workload by ASCe term, gCO2e; JSC, ASC, JSCe and ASCe are sums of terms.",
        series.iter().flat_map(|s| {
            Term::ALL
                .into_iter()
                .filter(|t| s.carbon[*t].value() > 0.0)
                .map(move |t| {
                    (
                        with(workload_labels(s), "term", t.as_str()),
                        s.carbon[t].value(),
                    )
                })
        }),
    )?;
    counter(
        encoder,
        "jobcarbon_workload_asce_grams",
        "Expanded amortized sustainability cost (ASCe) of a workload: the sum of its terms, gCO2e.",
        series
            .iter()
            .filter(|s| s.carbon.asce().value() > 0.0)
            .map(|s| (workload_labels(s), s.carbon.asce().value())),
    )
}

/// The totals family: everything ever booked to workloads by namespace, phase and product,
/// including workloads whose series have stopped. Sum this, not the workload series, for
/// cluster, namespace, phase, product or term totals.
fn encode_totals(state: &LedgerState, encoder: &mut DescriptorEncoder) -> fmt::Result {
    fn labels(k: &TotalsKey) -> Vec<(&'static str, &str)> {
        vec![
            ("namespace", k.namespace.as_str()),
            ("phase", k.phase.as_str()),
            ("product", product(&k.product)),
        ]
    }
    counter(
        encoder,
        "jobcarbon_energy_joules",
        "Energy booked to all workloads by namespace, phase, product and component (workloads whose series stopped included), J.",
        state.totals.iter().flat_map(|(k, b)| {
            b.energy
                .iter()
                .filter(|(_, j)| j.value() > 0.0)
                .map(move |(c, j)| (with(labels(k), "component", c.as_str()), j.value()))
        }),
    )?;
    counter(
        encoder,
        "jobcarbon_carbon_grams",
        "Carbon booked to all workloads by namespace, phase, product and ASCe term (workloads whose series stopped included), gCO2e.",
        state.totals.iter().flat_map(|(k, b)| {
            Term::ALL
                .into_iter()
                .filter(|t| b.carbon[*t].value() > 0.0)
                .map(move |t| (with(labels(k), "term", t.as_str()), b.carbon[t].value()))
        }),
    )
}

/// The inference and product families: per-request figures, request counts, EPC parts and
/// re-training pools.
fn encode_products(state: &LedgerState, encoder: &mut DescriptorEncoder) -> fmt::Result {
    // Per-request figures, labelled with the namespace that serves the product.
    let serving: BTreeMap<&str, &str> = state
        .pods
        .iter()
        .filter(|(_, a)| a.phase == jobcarbon_core::Phase::Inference)
        .filter_map(|(k, a)| Some((a.product.as_deref()?, k.namespace.as_str())))
        .collect();
    let inference_products: Vec<(&String, &jobcarbon_ledger::state::ProductAccount)> = state
        .products
        .iter()
        .filter(|(_, p)| p.requests_total > 0.0 || !p.window.is_empty())
        .collect();
    let ns_of = |name: &str| serving.get(name).copied().unwrap_or("").to_owned();
    gauge(
        encoder,
        "jobcarbon_inference_carbon_grams_per_request",
        "ASCe of a model's inference per request over the sliding window, gCO2e.",
        inference_products.iter().filter_map(|(name, p)| {
            Some((
                vec![("product", (*name).clone()), ("namespace", ns_of(name))],
                p.grams_per_request()?,
            ))
        }),
    )?;
    counter(
        encoder,
        "jobcarbon_inference_requests",
        "Inference requests counted for a model.",
        inference_products.iter().map(|(name, p)| {
            (
                vec![("product", (*name).clone()), ("namespace", ns_of(name))],
                p.requests_total,
            )
        }),
    )?;
    gauge(
        encoder,
        "jobcarbon_product_epc_grams",
        "Embodied product cost of a model, dataset or platform by part, gCO2e.",
        state.products.iter().flat_map(|(name, p)| {
            [
                ("measured", p.epc.measured),
                ("inherited", p.epc.inherited),
                ("declared", p.epc.declared),
                ("total", p.epc.total()),
            ]
            .into_iter()
            .map(move |(part, g)| {
                (
                    vec![
                        ("product", name.clone()),
                        ("type", p.kind.as_str().to_owned()),
                        ("part", part.to_owned()),
                    ],
                    g.value(),
                )
            })
        }),
    )?;
    gauge(
        encoder,
        "jobcarbon_retraining_pool_grams",
        "Re-training carbon of a model not yet amortised onto its inference, gCO2e.",
        state
            .products
            .iter()
            .filter(|(_, p)| p.pool.deposited.value() > 0.0)
            .map(|(name, p)| (vec![("product", name.clone())], p.pool.balance().value())),
    )
}

/// What the books could not read or place: request staleness, unallocated carbon by reason,
/// and GPU energy no pod could be given.
fn encode_gaps(
    view: &LedgerView,
    state: &LedgerState,
    encoder: &mut DescriptorEncoder,
) -> fmt::Result {
    let booked_at = state.last_booked;
    gauge(
        encoder,
        "jobcarbon_inference_requests_staleness_seconds",
        "Seconds between the last booked interval and the last successful read of a product's request counters (+Inf: never read); while stale, its per-request figure is held.",
        view.requests.iter().filter_map(|(product, s)| {
            let age = match s.last_success {
                Some(read) => (booked_at? - read).non_negative().value(),
                None => f64::INFINITY,
            };
            Some((vec![("product", product.clone())], age))
        }),
    )?;
    counter(
        encoder,
        "jobcarbon_unallocated_grams",
        "Carbon that no job or product could take, by reason, gCO2e.",
        UnallocatedReason::ALL.into_iter().map(|reason| {
            (
                vec![("reason", reason.as_str().to_owned())],
                state
                    .unallocated
                    .get(&reason)
                    .map(|g| g.value())
                    .unwrap_or(0.0),
            )
        }),
    )?;

    counter(
        encoder,
        "jobcarbon_gpu_energy_joules",
        "GPU energy measured, and the part booked as unallocated gpu_unmapped (a GPU line naming no pod on a node whose GPUs pods hold), J.",
        [
            ("measured", state.gpu_energy.measured),
            ("unmapped", state.gpu_energy.unmapped),
        ]
        .into_iter()
        .filter(|(_, j)| j.value() > 0.0)
        .map(|(part, j)| (vec![("part", part.to_owned())], j.value())),
    )
}

/// Self-metrics of the reads: interval duration, source errors and last successes, leadership.
fn encode_self_reads(view: &LedgerView, encoder: &mut DescriptorEncoder) -> fmt::Result {
    // Self-metrics.
    let histogram = &view.interval_seconds;
    let mut metric = encoder.encode_descriptor(
        "jobcarbon_interval_duration_seconds",
        "Wall time to read sources and book one interval.",
        None,
        MetricType::Histogram,
    )?;
    metric.encode_histogram::<NoLabelSet>(
        histogram.sum,
        histogram.count,
        &histogram.buckets(),
        None,
    )?;
    counter(
        encoder,
        "jobcarbon_source_errors",
        "Failed reads by source and error kind.",
        view.sources.iter().flat_map(|(source, s)| {
            s.errors.iter().map(move |(kind, n)| {
                (
                    vec![("source", source.clone()), ("kind", kind.clone())],
                    *n as f64,
                )
            })
        }),
    )?;
    gauge(
        encoder,
        "jobcarbon_source_last_success_timestamp_seconds",
        "Time of the last successful read of a source, seconds since the Unix epoch.",
        view.sources.iter().filter_map(|(source, s)| {
            Some((vec![("source", source.clone())], s.last_success?.value()))
        }),
    )?;
    if let Some(leader) = view.leader {
        gauge(
            encoder,
            "jobcarbon_leader",
            "1 on the replica holding the leader Lease (it books), 0 on a standby.",
            [(Vec::new(), f64::from(u8::from(leader)))],
        )?;
    }
    Ok(())
}

/// Self-metrics of the books: last interval, tracked pods and series.
fn encode_self_books(
    state: &LedgerState,
    series: usize,
    encoder: &mut DescriptorEncoder,
) -> fmt::Result {
    gauge(
        encoder,
        "jobcarbon_last_interval_timestamp_seconds",
        "End of the last booked interval, seconds since the Unix epoch.",
        state.last_booked.map(|t| (Vec::new(), t.value())),
    )?;
    let running = state.pods.values().filter(|a| a.running).count();
    gauge(
        encoder,
        "jobcarbon_tracked_pods",
        "Pods the ledger tracks, by state.",
        [
            (vec![("state", "running".to_owned())], running as f64),
            (
                vec![("state", "finished".to_owned())],
                (state.pods.len() - running) as f64,
            ),
            (
                vec![("state", "over_cap".to_owned())],
                state.overflow.len() as f64,
            ),
        ],
    )?;
    gauge(
        encoder,
        "jobcarbon_series",
        "Workload series exported, over the three workload families (series that have only ever been zero are not exported).",
        [(Vec::new(), series as f64)],
    )?;
    counter(
        encoder,
        "jobcarbon_workloads_retired",
        "Workloads whose series stopped because none of their pods is left (their grams stay in jobcarbon_carbon_grams_total).",
        [(no_labels(), state.retired.workloads as f64)],
    )?;
    counter(
        encoder,
        "jobcarbon_series_dropped",
        "Pods that got no account of their own because of the series cap (booked into their workload's roll-up).",
        [(no_labels(), state.series_dropped as f64)],
    )
}

/// Per region: the booked intensity (with its signal kind), a live provider's forecast at
/// fixed horizons, the staleness of live values, and the PUE.
fn encode_regions(view: &LedgerView, encoder: &mut DescriptorEncoder) -> fmt::Result {
    gauge(
        encoder,
        "jobcarbon_grid_intensity_grams_per_kwh",
        "Grid carbon intensity booked for a region, gCO2e/kWh; signal is average or marginal, which must not be compared or summed across regions.",
        view.regions.iter().map(|(r, s)| {
            (
                vec![
                    ("region", r.clone()),
                    ("signal", s.signal.as_str().to_owned()),
                ],
                s.intensity.value(),
            )
        }),
    )?;
    let base = view.state.last_booked;
    gauge(
        encoder,
        "jobcarbon_grid_intensity_forecast_grams_per_kwh",
        "A live provider's forecast grid intensity for a region, horizon after the last booked interval, gCO2e/kWh.",
        view.regions.iter().flat_map(|(r, s)| {
            FORECAST_HORIZONS.iter().filter_map(move |(label, hours)| {
                let forecast = s.forecast.as_ref()?;
                let at = base? + jobcarbon_core::Seconds::from_hours(*hours);
                Some((
                    vec![("region", r.clone()), ("horizon", (*label).to_owned())],
                    forecast.value_at(at)?.value(),
                ))
            })
        }),
    )?;
    gauge(
        encoder,
        "jobcarbon_grid_intensity_staleness_seconds",
        "Seconds since a live intensity was last read successfully (+Inf: never).",
        view.regions
            .iter()
            .filter_map(|(r, s)| Some((vec![("region", r.clone())], s.staleness?.value()))),
    )?;
    gauge(
        encoder,
        "jobcarbon_pue",
        "Power usage effectiveness used for a region.",
        view.regions
            .iter()
            .map(|(r, s)| (vec![("region", r.clone())], s.pue.value())),
    )?;
    Ok(())
}

/// Staleness, outage hold, backfill and checkpoint health (jobcarbon_ledger::durable).
fn encode_durability(d: &DurabilityStatus, encoder: &mut DescriptorEncoder) -> fmt::Result {
    if d.restored_from.is_empty() {
        return Ok(()); // not a durable ledger (the demo)
    }
    gauge(
        encoder,
        "jobcarbon_ledger_staleness_seconds",
        "How far the served figures lag behind now: now minus the end of the last booked interval (grows during an outage).",
        [(Vec::new(), d.staleness(wall_clock_now()).value())],
    )?;
    gauge(
        encoder,
        "jobcarbon_ledger_booking_held",
        "1 while booking waits for an energy source to recover (the gap is booked from history on recovery).",
        d.held_by
            .iter()
            .map(|source| (vec![("source", source.clone())], 1.0)),
    )?;
    counter(
        encoder,
        "jobcarbon_ledger_backfilled_intervals",
        "Intervals booked from Prometheus history after a restart or an outage.",
        [(no_labels(), d.backfilled_intervals_total as f64)],
    )?;
    gauge(
        encoder,
        "jobcarbon_checkpoint_restored_info",
        "Checkpoint generation the ledger started from: none, current, or previous (the current one was corrupt).",
        [(vec![("generation", d.restored_from.clone())], 1.0)],
    )?;
    gauge(
        encoder,
        "jobcarbon_state_restored_info",
        "Where the ledger state came from at start (or on taking the lead): checkpoint, prometheus (its own exported series) or none; `missing` lists what that source cannot restore.",
        d.restored_state.as_ref().map(|r| {
            (
                vec![("from", r.from.clone()), ("missing", r.missing.clone())],
                1.0,
            )
        }),
    )?;
    counter(
        encoder,
        "jobcarbon_checkpoint_writes",
        "Checkpoints written.",
        [(no_labels(), d.checkpoint_writes_total as f64)],
    )?;
    counter(
        encoder,
        "jobcarbon_checkpoint_errors",
        "Failed checkpoint writes, by kind.",
        d.checkpoint_errors
            .iter()
            .map(|(kind, n)| (vec![("kind", kind.clone())], *n as f64)),
    )?;
    gauge(
        encoder,
        "jobcarbon_checkpoint_last_write_timestamp_seconds",
        "Wall-clock time of the last successful checkpoint write.",
        d.last_checkpoint.map(|t| (Vec::new(), t.value())),
    )
}

/// The label set of a family with one unlabelled sample.
fn no_labels() -> Vec<(&'static str, &'static str)> {
    Vec::new()
}

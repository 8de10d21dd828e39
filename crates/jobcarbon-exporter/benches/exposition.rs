//! Scrape cost at ~100k series: the prometheus-client Collector built from ledger state,
//! against the same series through the `prometheus` crate's registry (DESIGN §10's ratio).
//! Also one ledger interval over the same 8,000 pods.
//!
//! cargo bench -p jobcarbon-exporter --bench exposition -- --warm-up-time 1 --measurement-time 3

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, GramsPerKwh, Joules, NodeFacts, Phase,
    PodFacts, Pue, Seconds, Term,
};
use jobcarbon_exporter::{Format, encode_metrics};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Conditions, IntervalInput, LedgerState, Settings, book_interval};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// 8,000 pods × 12 workload series (5 energy + 6 carbon + ASCe) ≈ 96k series.
const PODS: usize = 8_000;

fn input(at: f64) -> (Settings, IntervalInput) {
    let settings = Settings::simple(Pue(1.1), GramsPerKwh(400.0));
    let pods: Vec<PodFacts> = (0..PODS)
        .map(|i| {
            PodFacts::new(&format!("ns{}", i % 50), &format!("pod-{i}"))
                .uid(&format!("uid-{i}"))
                .workload("Job", &format!("job-{}", i / 4))
                .phase(Phase::Training)
                .product(Some(&format!("model-{}", i % 20)))
                .node(&format!("node-{}", i % 100))
                .reserved_share(0.1)
        })
        .collect();
    let energy = pods
        .iter()
        .flat_map(|p| {
            [Component::Cpu, Component::Dram, Component::Gpu].map(|c| EnergyDelta {
                node: p.node.clone().unwrap_or_default(),
                owner: EnergyOwner::Pod {
                    key: p.key.clone(),
                    container: "main".into(),
                },
                component: c,
                energy: Joules(1000.0),
                estimated: false,
            })
        })
        .chain((0..100).map(|n| EnergyDelta {
            node: format!("node-{n}"),
            owner: EnergyOwner::NodeIdle,
            component: Component::Cpu,
            energy: Joules(5000.0),
            estimated: false,
        }))
        .collect();
    let nodes = (0..100)
        .map(|n| NodeFacts {
            name: format!("node-{n}"),
            region: None,
            instance_type: None,
            gpu_count: 8,
            gpu_model: None,
            labels: BTreeMap::new(),
            cpus: 0.0,
        })
        .collect();
    (
        settings,
        IntervalInput {
            at: Seconds(at),
            snapshot: ClusterSnapshot {
                pods,
                nodes,
                products: vec![],
                invalid_products: vec![],
            },
            energy,
            requests: BTreeMap::new(),
            conditions: BTreeMap::from([(
                "default".to_owned(),
                Conditions {
                    pue: Pue(1.1),
                    intensity: GramsPerKwh(400.0),
                },
            )]),
            requests_unknown: Default::default(),
        },
    )
}

fn booked() -> LedgerState {
    let (settings, first) = input(0.0);
    let (state, _) = book_interval(&LedgerState::default(), &settings, &first);
    let (_, second) = input(30.0);
    book_interval(&state, &settings, &second).0
}

/// The same series in the `prometheus` crate.
fn prometheus_registry(state: &LedgerState) -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    let labels = ["namespace", "workload", "pod", "phase", "product"];
    let energy = prometheus::CounterVec::new(
        prometheus::Opts::new("jobcarbon_workload_energy_joules_total", "energy"),
        &[&labels[..], &["component"]].concat(),
    )
    .unwrap();
    let carbon = prometheus::CounterVec::new(
        prometheus::Opts::new("jobcarbon_workload_carbon_grams_total", "carbon"),
        &[&labels[..], &["term"]].concat(),
    )
    .unwrap();
    let asce = prometheus::CounterVec::new(
        prometheus::Opts::new("jobcarbon_workload_asce_grams_total", "asce"),
        &labels,
    )
    .unwrap();
    for (key, a) in &state.pods {
        let product = a.product.clone().unwrap_or_default();
        let base = [
            key.namespace.as_str(),
            a.workload.workload.as_str(),
            key.pod.as_str(),
            a.phase.as_str(),
            product.as_str(),
        ];
        // As the collector: no series that has only ever been zero.
        for c in Component::ALL {
            let v = a.energy.get(&c).map(|j| j.value()).unwrap_or(0.0);
            if v > 0.0 {
                energy
                    .with_label_values(&[&base[..], &[c.as_str()]].concat())
                    .inc_by(v);
            }
        }
        for t in Term::ALL.into_iter().filter(|t| a.carbon[*t].value() > 0.0) {
            carbon
                .with_label_values(&[&base[..], &[t.as_str()]].concat())
                .inc_by(a.carbon[t].value());
        }
        if a.carbon.asce().value() > 0.0 {
            asce.with_label_values(&base)
                .inc_by(a.carbon.asce().value());
        }
    }
    registry.register(Box::new(energy)).unwrap();
    registry.register(Box::new(carbon)).unwrap();
    registry.register(Box::new(asce)).unwrap();
    registry
}

/// Workload series in the collector's exposition.
fn workload_series(view: &jobcarbon_ledger::SharedView) -> usize {
    let text = encode_metrics(view, Format::PrometheusText).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("jobcarbon_workload_"))
        .count()
}

fn benches(c: &mut Criterion) {
    let state = booked();
    // Per-pod series (`exporter.podSeries`), so both encoders write the same series.
    let view = Arc::new(RwLock::new(LedgerView {
        state: state.clone().into(),
        pod_series: true,
        ..Default::default()
    }));
    let series = workload_series(&view);
    let mut group = c.benchmark_group(format!("scrape_{series}_series"));
    group.sample_size(10);
    group.bench_function("prometheus_client_openmetrics", |b| {
        b.iter(|| encode_metrics(&view, Format::OpenMetrics).unwrap().len())
    });
    group.bench_function("prometheus_client_text", |b| {
        b.iter(|| encode_metrics(&view, Format::PrometheusText).unwrap().len())
    });
    let registry = prometheus_registry(&state);
    group.bench_function("prometheus_crate_text", |b| {
        b.iter(|| {
            use prometheus::Encoder;
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            out.len()
        })
    });
    group.finish();

    let (settings, first) = input(0.0);
    let (base, _) = book_interval(&LedgerState::default(), &settings, &first);
    let (_, second) = input(30.0);
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10);
    group.bench_function(format!("book_interval_{PODS}_pods"), |b| {
        b.iter(|| book_interval(&base, &settings, &second).1.emissions.input)
    });
    group.finish();
}

criterion_group!(exposition, benches);
criterion_main!(exposition);

//! `/metrics` encoding at 100k series: our prometheus-client collector (built from the ledger
//! state at scrape time) against the `prometheus` crate's registry holding the same series,
//! in the same run. Targets: ≤ 50 ms and ≥ 5× faster.
//! `cargo bench -p jobcarbon-exporter --bench metrics -- --warm-up-time 1 --measurement-time 3`

// Test and bench code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use jobcarbon_core::{Component, Term};
use jobcarbon_exporter::{Format, encode_metrics};
use jobcarbon_ledger::LedgerView;
use prometheus::{CounterVec, Encoder, Opts, Registry, TextEncoder};
use std::hint::black_box;
use std::sync::{Arc, RwLock};

#[path = "../../jobcarbon-ledger/benches/world.rs"]
mod world;

/// Workload series per pod: 5 energy components, 6 carbon terms, ASCᵉ.
const SERIES_PER_POD: usize = 12;
const SERIES: usize = 100_000;

fn baseline(view: &LedgerView) -> Registry {
    let registry = Registry::new();
    let labels = ["namespace", "workload", "pod", "phase", "product"];
    let vec = |name: &str, extra: Option<&str>| {
        let mut l = labels.to_vec();
        l.extend(extra);
        let v = CounterVec::new(Opts::new(name, "help"), &l).unwrap();
        registry.register(Box::new(v.clone())).unwrap();
        v
    };
    let energy = vec("jobcarbon_workload_energy_joules_total", Some("component"));
    let carbon = vec("jobcarbon_workload_carbon_grams_total", Some("term"));
    let asce = vec("jobcarbon_workload_asce_grams_total", None);
    for (key, a) in &view.state.pods {
        let product = a.product.as_deref().unwrap_or("");
        let base = [
            key.namespace.as_str(),
            a.workload.workload.as_str(),
            key.pod.as_str(),
            a.phase.as_str(),
            product,
        ];
        for c in Component::ALL {
            let mut l = base.to_vec();
            l.push(c.as_str());
            let j = a.energy.get(&c).map_or(0.0, |j| j.value());
            energy.with_label_values(&l).inc_by(j);
        }
        for t in Term::ALL {
            let mut l = base.to_vec();
            l.push(t.as_str());
            carbon
                .with_label_values(&l)
                .inc_by(a.carbon[t].value().max(0.0));
        }
        asce.with_label_values(&base)
            .inc_by(a.carbon.asce().value().max(0.0));
    }
    registry
}

fn encode(c: &mut Criterion) {
    let pods = SERIES.div_ceil(SERIES_PER_POD);
    let w = world::world(pods);
    let view = LedgerView {
        state: w.booked(2),
        ..LedgerView::default()
    };
    let registry = baseline(&view);
    let shared = Arc::new(RwLock::new(view));
    let ours = encode_metrics(&shared, Format::OpenMetrics).unwrap();
    let mut theirs = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut theirs)
        .unwrap();
    let count = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("jobcarbon_workload_"))
            .count()
    };
    eprintln!(
        "workload series: prometheus-client {}, prometheus {}",
        count(&ours),
        count(&String::from_utf8_lossy(&theirs))
    );

    let mut group = c.benchmark_group("metrics_100k_series");
    group.sample_size(10);
    group.bench_function("prometheus-client collector (ours)", |b| {
        b.iter(|| black_box(encode_metrics(&shared, Format::OpenMetrics).unwrap()))
    });
    group.bench_function("prometheus crate (baseline)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(theirs.len());
            TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            black_box(out)
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);

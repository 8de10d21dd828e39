//! `jobcarbon calc` cost on generated scenarios (docs/performance.md, "## calc").
//!
//!     cargo bench -p jobcarbon-core --bench calc -- --warm-up-time 1 --measurement-time 3
//!
//! Scenarios: N products in a random lineage DAG (each inherits from up to three earlier
//! products; a quarter are datasets) and J jobs: a third build products (some while serving
//! an earlier model), a third serve models, the rest plain, with systems and platforms.

#![allow(clippy::unwrap_used)] // a bench that cannot build its input should stop

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jobcarbon_core::Lineage;
use jobcarbon_core::scenario::ScenarioDoc;
use jobcarbon_core::units::Grams;
use std::collections::HashMap;
use std::hint::black_box;

#[path = "support/scenario_gen.rs"]
mod scenario_gen;
use scenario_gen::scenario_yaml;

/// The YAML scenario as JSON text, through a generic YAML value.
fn scenario_json(yaml: &str) -> String {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_nodes: usize::MAX, max_events: usize::MAX },
    };
    let value: serde_json::Value = serde_saphyr::from_str_with_options(yaml, options).unwrap();
    serde_json::to_string(&value).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("calc");
    group.sample_size(10);
    for (jobs, products) in [(10_000, 1_000), (10_000, 10_000), (100_000, 10_000)] {
        let yaml = scenario_yaml(products, jobs);
        let doc = ScenarioDoc::from_yaml("bench", &yaml).unwrap();
        // Sanity: the generated scenario is valid and evaluates.
        assert_eq!(doc.evaluate("bench").unwrap().jobs.len(), jobs);
        let id = format!("{jobs}_jobs_{products}_products");
        group.throughput(Throughput::Elements(jobs as u64));
        group.bench_with_input(BenchmarkId::new("evaluate", &id), &doc, |b, doc| {
            b.iter(|| black_box(doc.evaluate("bench").unwrap()))
        });
        // The same scenario as JSON (`calc FILE.json`), the fast path for generated input.
        let json = scenario_json(&yaml);
        group.bench_with_input(
            BenchmarkId::new("parse_json_and_evaluate", &id),
            &json,
            |b, json| {
                b.iter(|| {
                    let doc = ScenarioDoc::from_json("bench", json).unwrap();
                    black_box(doc.evaluate("bench").unwrap())
                })
            },
        );
        // The same through serde-saphyr alone (what `parse_yaml` was before the fast path).
        group.bench_with_input(
            BenchmarkId::new("parse_serde_saphyr_and_evaluate", &id),
            &yaml,
            |b, yaml| {
                b.iter(|| {
                    let doc: ScenarioDoc =
                        jobcarbon_core::yaml::from_str_serde_saphyr(yaml).unwrap();
                    black_box(doc.evaluate("bench").unwrap())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("parse_and_evaluate", &id),
            &yaml,
            |b, yaml| {
                b.iter(|| {
                    let doc = ScenarioDoc::from_yaml("bench", yaml).unwrap();
                    black_box(doc.evaluate("bench").unwrap())
                })
            },
        );
    }
    group.finish();

    // The ledger's per-interval call: EPC of a 10k-product DAG from measured values.
    let doc = ScenarioDoc::from_yaml("bench", &scenario_yaml(10_000, 0)).unwrap();
    let report = doc.evaluate("bench").unwrap();
    let names: Vec<String> = report.products.iter().map(|p| p.name.clone()).collect();
    let defs = lineage_defs(&doc);
    let lineage = Lineage::new(defs.clone()).unwrap();
    let measured: HashMap<String, Grams> =
        names.iter().map(|n| (n.clone(), Grams(1000.0))).collect();
    let mut group = c.benchmark_group("lineage");
    group.bench_function("build_10k_products", |b| {
        b.iter(|| black_box(Lineage::new(defs.clone()).unwrap()))
    });
    group.bench_function("evaluate_10k_products", |b| {
        b.iter(|| black_box(lineage.evaluate(&measured).iter().count()))
    });
    group.finish();
}

fn lineage_defs(doc: &ScenarioDoc) -> Vec<jobcarbon_core::ProductDef> {
    use jobcarbon_core::{LineageEdge, ProductDef, units::Seconds};
    doc.products
        .iter()
        .map(|(name, spec)| {
            let mut p = ProductDef::new(name, spec.kind, Seconds::from_years(2.0));
            let edges = |l: &[jobcarbon_core::scenario::EdgeSpec]| {
                l.iter()
                    .map(|e| LineageEdge {
                        product: e.product.clone(),
                        weight: e.weight,
                    })
                    .collect()
            };
            p.derived_from = edges(&spec.derived_from);
            p.datasets = edges(&spec.datasets);
            p
        })
        .collect()
}

/// Advice over three regions with WattTime's longest forecast: 72 h of 5-minute points.
fn advice(c: &mut Criterion) {
    use jobcarbon_core::intensity::{IntensityPoint, IntensitySeries, Signal};
    use jobcarbon_core::{AdviceQuery, RegionForecast, advise};
    use jobcarbon_core::{GramsPerKwh, Joules, Pue, Seconds};
    let regions: Vec<RegionForecast> = (0..3)
        .map(|r| RegionForecast {
            region: format!("r{r}"),
            pue: Pue(1.1),
            signal: Signal::Marginal,
            series: IntensitySeries::new(
                (0..864)
                    .map(|i| IntensityPoint {
                        at: Seconds(300.0 * i as f64),
                        value: GramsPerKwh(400.0 + ((i * 7 + r * 13) % 97) as f64),
                    })
                    .collect(),
                Seconds(300.0),
            ),
        })
        .collect();
    let query = AdviceQuery {
        now: Seconds(0.0),
        duration: Seconds::from_hours(2.0),
        within: Seconds::from_hours(24.0),
        energy: Joules::from_kwh(500.0),
    };
    c.bench_function("advise/3 regions x 864 points", |b| {
        b.iter(|| advise(black_box(&query), black_box(&regions)))
    });
}

criterion_group!(benches, bench, advice);
criterion_main!(benches);

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
use std::fmt::Write;
use std::hint::black_box;

/// Deterministic xorshift, so every run measures the same scenario.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn is_dataset(i: usize) -> bool {
    i.is_multiple_of(4)
}

fn scenario_yaml(products: usize, jobs: usize) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut y = String::with_capacity(jobs * 160 + products * 120);
    y.push_str("regions:\n  a: {pue: 1.2, intensity: 380}\n  b: {pue: 1.1, intensity: {mix: {hydro: 0.6, nuclear: 0.3, wind: 0.1}}}\n");
    y.push_str(
        "systems:\n  gpu: {embodied: 10.3t, lifetime: 6y}\n  cpu: {embodied: 1.5t, lifetime: 5y}\n",
    );
    y.push_str("platforms:\n  k8s: {overhead: 120g/h, epc: 4t, lifetime: 6y}\n");
    y.push_str("products:\n");
    for i in 0..products {
        if is_dataset(i) {
            writeln!(y, "  p{i}: {{type: dataset, declared: 1kg}}").unwrap();
            continue;
        }
        write!(y, "  p{i}: {{type: model, lifetime: 2y").unwrap();
        let mut parents = Vec::new();
        let mut datasets = Vec::new();
        if i > 1 {
            for _ in 0..rng.below(4) {
                let j = rng.below(i);
                if is_dataset(j) {
                    datasets.push(j)
                } else {
                    parents.push(j)
                }
            }
        }
        parents.dedup();
        datasets.dedup();
        if !parents.is_empty() {
            let list: Vec<String> = parents
                .iter()
                .map(|j| format!("{{product: p{j}, weight: 0.2}}"))
                .collect();
            write!(y, ", derivedFrom: [{}]", list.join(", ")).unwrap();
        }
        if !datasets.is_empty() {
            let list: Vec<String> = datasets
                .iter()
                .map(|j| format!("{{product: p{j}, weight: 0.5}}"))
                .collect();
            write!(y, ", datasets: [{}]", list.join(", ")).unwrap();
        }
        if i % 10 == 1 {
            y.push_str(", retraining: {carbon: 5kg, interval: 1d, jobsPerInterval: 1000000}");
        }
        y.push_str("}\n");
    }
    y.push_str("jobs:\n");
    let model = |rng: &mut Rng, below: usize| loop {
        let m = rng.below(below.max(2));
        if !is_dataset(m) {
            break m;
        }
    };
    for k in 0..jobs {
        write!(y, "  - {{name: j{k}, power: 700W, devices: {}, duration: {}s, region: {}, system: gpu, share: 0.5, platform: k8s, concurrent: 20",
            1 + rng.below(8), 1 + rng.below(86_400), if k.is_multiple_of(2) { "a" } else { "b" }).unwrap();
        match k % 3 {
            0 => {
                let p = rng.below(products);
                write!(y, ", builds: p{p}").unwrap();
                if k.is_multiple_of(9) && p > 2 {
                    write!(y, ", serves: p{}", model(&mut rng, p)).unwrap();
                }
            }
            1 => write!(
                y,
                ", serves: p{}, concurrentServing: 10",
                model(&mut rng, products)
            )
            .unwrap(),
            _ => {}
        }
        y.push_str("}\n");
    }
    y
}

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

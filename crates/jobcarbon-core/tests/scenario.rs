//! Scenario evaluation through the public API: the paper's numbers, order independence,
//! one test per error class, and properties over generated scenarios.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use jobcarbon_core::LineageError;
use jobcarbon_core::ProductType;
use jobcarbon_core::quantity::Q;
use jobcarbon_core::scenario::{
    EdgeSpec, IntensitySpec, JobSpec, Named, Problem, ProductSpec, RegionSpec, Report, ScenarioDoc,
    ScenarioError,
};
use jobcarbon_core::units::{GramsPerKwh, Joules, Seconds};
use proptest::prelude::*;
use std::collections::HashMap;

const PAPER: &str = include_str!("../../../examples/paper.yaml");
const LIFECYCLE: &str = include_str!("../../../examples/lifecycle.yaml");

fn close(actual: f64, expected: f64, rel: f64) -> bool {
    (actual - expected).abs() <= rel * expected.abs().max(1e-12)
}

fn eval(text: &str) -> Result<Report, ScenarioError> {
    ScenarioDoc::from_yaml("t.yaml", text)?.evaluate("t.yaml")
}

fn job<'a>(report: &'a Report, name: &str) -> &'a jobcarbon_core::scenario::JobReport {
    report.jobs.iter().find(|j| j.name == name).unwrap()
}

#[test]
fn paper_examples_are_exact() {
    let report = eval(PAPER).unwrap();
    let j = job(&report, "paper-job");
    assert!(close(j.terms.jsc().value(), 0.19968, 1e-12));
    let ec = 10_000.0 * 5.0 / (3.0 * 365.0 * 24.0 * 60.0);
    assert!(close(j.ec().value(), ec, 1e-12));
    assert!((j.ec().value() - 0.0317).abs() < 5e-5);
    assert!((j.terms.asc().value() - 0.2314).abs() < 5e-5);
    assert!(close(
        j.terms.jsce().value() - j.terms.jsc().value(),
        25.0,
        1e-12
    ));
    let roberta = job(&report, "roberta-pretrain");
    assert!(close(roberta.energy.kwh(), 7372.8, 1e-12));
    assert!(close(
        job(&report, "distilbert-distill").energy.kwh(),
        168.0,
        1e-12
    ));
}

/// The same scenario with products and jobs in the opposite order gives the same numbers.
#[test]
fn evaluation_does_not_depend_on_declaration_order() {
    let doc = ScenarioDoc::from_yaml("l.yaml", LIFECYCLE).unwrap();
    let mut reversed = doc.clone();
    reversed.products.0.reverse();
    reversed.jobs.reverse();
    let a = doc.evaluate("l.yaml").unwrap();
    let b = reversed.evaluate("l.yaml").unwrap();
    assert_same(&a, &b, 0.0);
}

fn assert_same(a: &Report, b: &Report, rel: f64) {
    let jobs: HashMap<_, _> = b.jobs.iter().map(|j| (j.name.clone(), j)).collect();
    for ja in &a.jobs {
        let jb = jobs[&ja.name];
        for ((_, x), (_, y)) in ja.terms.iter().zip(jb.terms.iter()) {
            assert!(close(x.value(), y.value(), rel), "{}: {x} vs {y}", ja.name);
        }
    }
    let products: HashMap<_, _> = b.products.iter().map(|p| (p.name.clone(), p)).collect();
    for pa in &a.products {
        let pb = products[&pa.name];
        assert!(close(pa.epc.total().value(), pb.epc.total().value(), rel));
        assert!(close(pa.epc.measured.value(), pb.epc.measured.value(), rel));
    }
}

#[test]
fn inherited_epc_is_reported_per_edge() {
    let report = eval(LIFECYCLE).unwrap();
    let chat = report
        .products
        .iter()
        .find(|p| p.name == "chat-1b")
        .unwrap();
    let parts: Vec<_> = chat
        .epc
        .inherited_from
        .iter()
        .map(|s| (s.product.as_str(), s.weight))
        .collect();
    assert_eq!(parts, vec![("base-7b", 0.2), ("chat-sft", 1.0)]);
    let sum: f64 = chat
        .epc
        .inherited_from
        .iter()
        .map(|s| s.grams.value())
        .sum();
    assert!(close(sum, chat.epc.inherited.value(), 1e-12));
}

#[test]
fn json_has_exactly_the_design_keys() {
    let value = serde_json::to_value(eval(PAPER).unwrap()).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let mut job_keys = keys(&value["jobs"][0]);
    job_keys.sort();
    assert_eq!(
        job_keys,
        [
            "asc_g", "asce_g", "ec_g", "energy_j", "jsc_g", "jsce_g", "name", "terms"
        ]
    );
    let mut term_keys = keys(&value["jobs"][0]["terms"]);
    term_keys.sort();
    assert_eq!(
        term_keys,
        [
            "embodied_system",
            "model_epc",
            "operational",
            "platform_embodied",
            "platform_operational",
            "retraining"
        ]
    );
    let mut product_keys = keys(&value["products"][0]);
    product_keys.sort();
    assert_eq!(
        product_keys,
        [
            "declared_g",
            "epc_g",
            "inherited_g",
            "measured_g",
            "name",
            "type"
        ]
    );
    assert_eq!(keys(&value), ["jobs", "products"]);
    assert!(
        !value.to_string().contains("-0.0"),
        "no negative zeros in the output"
    );
}

// --- one test per error class ------------------------------------------------------------

fn error(text: &str) -> ScenarioError {
    eval(text).unwrap_err()
}

const REGION: &str = "regions: {r: {intensity: 400}}\n";

#[test]
fn unknown_unit_names_the_path_and_line() {
    let e = error(&format!(
        "{REGION}jobs:\n  - {{name: a, energy: 3 furlongs, duration: 5m, region: r}}\n"
    ));
    assert_eq!(e.path, "jobs[0].energy");
    assert_eq!(e.line_column.map(|(l, _)| l), Some(3));
    assert!(
        e.to_string().contains("unknown energy unit \"furlongs\""),
        "{e}"
    );
}

#[test]
fn unknown_reference_lists_what_is_defined() {
    let e = error(&format!(
        "{REGION}jobs:\n  - {{name: a, energy: 1kJ, duration: 5m, region: mars}}\n"
    ));
    assert_eq!(e.path, "jobs[0].region");
    assert!(matches!(
        *e.problem,
        Problem::UnknownReference { kind: "region", .. }
    ));
    assert!(
        e.to_string()
            .ends_with("unknown region \"mars\" (defined: r)"),
        "{e}"
    );
    let e = error("products:\n  a: {type: model, derivedFrom: [{product: b, weight: 1}]}\n");
    assert_eq!(e.path, "products.a.derivedFrom[0].product");
}

#[test]
fn zero_and_negative_lifetimes_and_durations_are_rejected() {
    let e = error("systems: {s: {embodied: 1g, lifetime: 0y}}\n");
    assert_eq!(e.path, "systems.s.lifetime");
    assert!(matches!(*e.problem, Problem::NotPositive { .. }));
    let e = error("products: {m: {type: model, lifetime: -1y}}\n");
    assert_eq!(e.path, "products.m.lifetime");
    assert!(e.to_string().contains("negative"), "{e}");
    let e = error(&format!(
        "{REGION}jobs:\n  - {{name: a, energy: 1kJ, duration: 0s, region: r}}\n"
    ));
    assert_eq!(e.path, "jobs[0].duration");
}

#[test]
fn weight_outside_unit_interval_is_rejected() {
    let e = error(
        "products:\n  a: {type: model}\n  b: {type: model, derivedFrom: [{product: a, weight: 1.5}]}\n",
    );
    assert_eq!(e.path, "products.b.derivedFrom[0].weight");
    assert!(matches!(
        *e.problem,
        Problem::Lineage(LineageError::WeightOutOfRange { .. })
    ));
}

#[test]
fn lineage_cycle_names_the_cycle() {
    let e = error(
        "products:\n  a: {type: model, derivedFrom: [{product: b, weight: 0.5}]}\n  b: {type: model, derivedFrom: [{product: a, weight: 0.5}]}\n",
    );
    assert!(
        e.to_string()
            .contains("a -derivedFrom-> b -derivedFrom-> a"),
        "{e}"
    );
}

#[test]
fn cycle_through_a_job_points_at_the_job() {
    let e = error(&format!(
        "{REGION}products:\n  t: {{type: model, lifetime: 1y, derivedFrom: [{{product: s, weight: 0.5}}]}}\n  s: {{type: model, lifetime: 1y}}\njobs:\n  - {{name: d, builds: s, serves: t, energy: 1kJ, duration: 1h, region: r}}\n"
    ));
    assert_eq!(e.path, "jobs[0].serves", "{e}");
    assert!(e.to_string().contains("lineage cycle"), "{e}");
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let e = error(&format!(
        "{REGION}jobs:\n  - {{name: a, energy: 1kJ, duration: 5m, regoin: r}}\n"
    ));
    assert_eq!(e.path, "jobs[0].regoin");
    assert!(e.to_string().contains("unknown field `regoin`"), "{e}");
    let e = error("colour: blue\n");
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
}

#[test]
fn malformed_yaml_has_line_and_column() {
    let e = error("regions: {r: {intensity: 400}\njobs: []\n");
    assert!(matches!(*e.problem, Problem::Syntax(_)));
    assert_eq!(e.line_column.map(|(l, _)| l), Some(2), "{e}");
    assert!(e.to_string().starts_with("t.yaml: "), "{e}");
}

#[test]
fn embedded_documents_prefix_their_paths() {
    let e = error("systems: {s: {embodied: 1g, lifetime: 0y}}\n").under("strategies[1]");
    assert_eq!(e.path, "strategies[1].systems.s.lifetime");
}

// --- properties over generated scenarios ---------------------------------------------------

/// Products p0..pn (models, lifetime 1y) where pi inherits only from pj with j < i; jobs that
/// build some pi may serve only some pj with j < i, so the scenario is always a DAG.
fn scenario() -> impl Strategy<Value = ScenarioDoc> {
    let product = prop::collection::vec((0usize..1000, 0.0..=1.0f64), 0..3);
    let job = (
        1.0..1e9f64,                     // energy J
        1.0..1e6f64,                     // duration s
        prop::option::of(0.01..=1.0f64), // system share
        prop::option::of(1.0..100.0f64), // concurrent on the platform
        prop::option::of(0usize..1000),  // builds
        prop::option::of(0usize..1000),  // serves
    );
    (
        prop::collection::vec(product, 1..10),
        prop::collection::vec(job, 0..25),
    )
        .prop_map(|(products, jobs)| {
            let n = products.len();
            let products = products
                .into_iter()
                .enumerate()
                .map(|(i, parents)| {
                    let derived_from = if i == 0 {
                        Vec::new()
                    } else {
                        // One edge per parent: a repeated parent is an error (tested apart).
                        let mut seen = std::collections::HashSet::new();
                        parents
                            .into_iter()
                            .filter(|(j, _)| seen.insert(j % i))
                            .map(|(j, w)| EdgeSpec { product: format!("p{}", j % i), weight: w })
                            .collect()
                    };
                    (
                        format!("p{i}"),
                        ProductSpec {
                            kind: ProductType::Model,
                            lifetime: Some(Q(Seconds::from_years(1.0))),
                            derived_from,
                            datasets: Vec::new(),
                            declared: None,
                            retraining: None,
                        },
                    )
                })
                .collect();
            let jobs = jobs
                .into_iter()
                .enumerate()
                .map(|(k, (energy, duration, share, concurrent, builds, serves))| {
                    let builds = builds.map(|b| b % n);
                    let serves = match (builds, serves) {
                        (Some(0), _) => None,
                        (Some(b), Some(s)) => Some(s % b),
                        (None, s) => s.map(|s| s % n),
                        (Some(_), None) => None,
                    };
                    JobSpec {
                        name: format!("j{k}"),
                        energy: Some(Q(Joules(energy))),
                        power: None,
                        devices: None,
                        duration: Q(Seconds(duration)),
                        region: "r".into(),
                        system: share.map(|_| "s".into()),
                        share,
                        platform: concurrent.map(|_| "p".into()),
                        concurrent,
                        builds: builds.map(|b| format!("p{b}")),
                        serves: serves.map(|s| format!("p{s}")),
                        retrains: None,
                        concurrent_serving: None,
                    }
                })
                .collect();
            let text = "regions: {r: {pue: 1.2, intensity: 300}}\nsystems: {s: {embodied: 5t, lifetime: 4y}}\nplatforms: {p: {overhead: 30g/min, epc: 1t, lifetime: 5y}}\n";
            let mut doc = ScenarioDoc::from_yaml("gen", text).unwrap();
            doc.products = Named(products);
            doc.jobs = jobs;
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every gram a build job emits lands in exactly one product's measured EPC.
    #[test]
    fn build_jobs_are_booked_once(doc in scenario()) {
        let report = doc.evaluate("gen").unwrap();
        let built: f64 = doc.jobs.iter().zip(&report.jobs)
            .filter(|(spec, _)| spec.builds.is_some())
            .map(|(_, j)| j.terms.asce().value())
            .sum();
        let measured: f64 = report.products.iter().map(|p| p.epc.measured.value()).sum();
        prop_assert!(close(measured, built, 1e-9) || (built == 0.0 && measured == 0.0));
    }

    /// JSC ≤ ASC ≤ ASCᵉ and JSC ≤ JSCᵉ ≤ ASCᵉ: every term is non-negative.
    #[test]
    fn terms_are_ordered(doc in scenario()) {
        let report = doc.evaluate("gen").unwrap();
        for j in &report.jobs {
            for (_, g) in j.terms.iter() {
                prop_assert!(g.value() >= 0.0);
            }
            prop_assert!(j.terms.jsc() <= j.terms.asc());
            prop_assert!(j.terms.asc() <= j.terms.asce());
            prop_assert!(j.terms.jsc() <= j.terms.jsce());
            prop_assert!(j.terms.jsce() <= j.terms.asce());
        }
    }

    /// JSC is linear in energy.
    #[test]
    fn jsc_is_linear_in_energy(doc in scenario(), k in 0.001..1000.0f64) {
        let mut scaled = doc.clone();
        for j in &mut scaled.jobs {
            j.energy = j.energy.map(|e| Q(Joules(e.0.value() * k)));
        }
        let a = doc.evaluate("gen").unwrap();
        let b = scaled.evaluate("gen").unwrap();
        for (x, y) in a.jobs.iter().zip(&b.jobs) {
            prop_assert!(close(y.terms.jsc().value(), k * x.terms.jsc().value(), 1e-12));
        }
    }

    /// EPC and every job's terms do not depend on the order of products and jobs.
    #[test]
    fn epc_is_independent_of_evaluation_order(doc in scenario(), seed in any::<u64>()) {
        let mut shuffled = doc.clone();
        let mut state = seed | 1;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for i in (1..shuffled.products.0.len()).rev() {
            let j = next(i + 1);
            shuffled.products.0.swap(i, j);
        }
        for i in (1..shuffled.jobs.len()).rev() {
            let j = next(i + 1);
            shuffled.jobs.swap(i, j);
        }
        assert_same(&doc.evaluate("gen").unwrap(), &shuffled.evaluate("gen").unwrap(), 1e-9);
    }
}

#[test]
fn a_region_can_be_built_in_code() {
    // The entry types are public so other tools (jobcarbon plan) can assemble scenarios.
    let doc = ScenarioDoc {
        regions: Named(vec![(
            "r".into(),
            RegionSpec {
                pue: Some(1.5),
                intensity: IntensitySpec::Value(GramsPerKwh(200.0)),
            },
        )]),
        jobs: vec![JobSpec {
            name: "a".into(),
            energy: Some(Q(Joules::from_kwh(2.0))),
            power: None,
            devices: None,
            duration: Q(Seconds(60.0)),
            region: "r".into(),
            system: None,
            share: None,
            platform: None,
            concurrent: None,
            builds: None,
            serves: None,
            retrains: None,
            concurrent_serving: None,
        }],
        ..ScenarioDoc::default()
    };
    let report = doc.evaluate("code").unwrap();
    assert!(close(report.jobs[0].terms.jsc().value(), 600.0, 1e-12));
}

#[test]
fn empty_sections_read_as_empty() {
    let report = eval("regions:\nproducts:\n  d: {type: dataset, datasets:}\njobs:\n").unwrap();
    assert!(report.jobs.is_empty());
    assert_eq!(report.products.len(), 1);
}

#[test]
fn json_scenarios_evaluate_like_yaml() {
    let json = r#"{"regions": {"r": {"pue": 1.08, "intensity": {"mix": {"coal": 0.8, "solar": 0.2}}}},
        "jobs": [{"name": "a", "energy": "1kJ", "duration": "5m", "region": "r"}]}"#;
    let report = ScenarioDoc::from_json("s.json", json)
        .unwrap()
        .evaluate("s.json")
        .unwrap();
    assert!(close(report.jobs[0].terms.jsc().value(), 0.19968, 1e-12));
    let e =
        ScenarioDoc::from_json("s.json", r#"{"jobs": [{"name": "a", "colour": 1}]}"#).unwrap_err();
    assert_eq!(e.path, "jobs[0].colour");
    assert_eq!(e.line_column.map(|(l, _)| l), Some(1));
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    let e = ScenarioDoc::from_json("s.json", "{\"jobs\": [}").unwrap_err();
    assert!(e.to_string().starts_with("s.json: "), "{e}");
}

/// Issue "hostile input": each case was silently accepted before.
#[test]
fn overflow_duplicate_edges_and_tiny_pools_are_errors() {
    let region = "regions:\n  r: {pue: 1, intensity: 400}\n";
    for (yaml, path, needle) in [
        (
            format!("{region}jobs:\n  - {{name: j, energy: 1e305MWh, duration: 1h, region: r}}\n"),
            "jobs[0].energy",
            "finite",
        ),
        (
            format!("{region}systems:\n  s: {{embodied: 10000g, lifetime: 1e-320s}}\njobs:\n  - {{name: j, energy: 1kJ, duration: 1h, region: r, system: s}}\n"),
            "jobs[0]",
            "not a finite number",
        ),
        (
            "products:\n  a: {type: model}\n  b: {type: model, derivedFrom: [{product: a, weight: 1}, {product: a, weight: 1}]}\n".to_owned(),
            "products.b.derivedFrom[1].product",
            "again",
        ),
        (
            "products:\n  d: {type: dataset}\n  b: {type: model, derivedFrom: [{product: d, weight: 0.5}], datasets: [{product: d, weight: 0.5}]}\n".to_owned(),
            "products.b.datasets[0].product",
            "again",
        ),
        (
            "products:\n  m: {type: model, retraining: {carbon: 5kg, interval: 1d, jobsPerInterval: 0.25}}\n".to_owned(),
            "products.m.retraining.jobsPerInterval",
            "below 1",
        ),
    ] {
        let e = error(&yaml);
        assert_eq!(e.path, path, "{yaml}");
        assert!(e.to_string().contains(needle), "{yaml}: {e}");
    }
}

#[test]
fn suspicious_lifetimes_long_jobs_and_orphan_retraining_are_reported() {
    let report = eval(
        "regions:\n  r: {pue: 1, intensity: 400}\nsystems:\n  s: {embodied: 1t, lifetime: 6m}\nproducts:\n  m: {type: model, lifetime: 6mo, retraining: {carbon: 5kg, interval: 1d, jobsPerInterval: 1000}}\njobs:\n  - {name: j, energy: 1kJ, duration: 1h, region: r, system: s}\n",
    )
    .unwrap();
    let paths: Vec<&str> = report.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, vec!["systems.s.lifetime", "jobs[0].duration"]);
    assert!(report.warnings[0].message.contains("`mo`"));
    assert_eq!(report.unallocated.len(), 1);
    assert_eq!(report.unallocated[0].reason, "no_inference");
    assert_eq!(report.unallocated[0].grams_g, 5000.0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["warnings"][1]["path"], "jobs[0].duration");
    assert_eq!(json["unallocated"][0]["grams"], 5000.0);
}

/// A platform built by a `type: platform` product amortises that product's EPC (measured by
/// its `builds:` jobs plus declared), by hand:
/// build job: 10 kWh × 100 g/kWh = 1000 g measured; EPC = 1000 g + 1000 kg declared = 1 001 000 g;
/// `train` on the platform, 10 h of a 1000 h lifetime, 4 concurrent: 1 001 000 × 10 / (4 × 1000)
/// = 2502.5 g; its operational term 1 kWh × 100 = 100 g.
const PLATFORM_PRODUCT: &str = "
regions: {r: {pue: 1.0, intensity: 100}}
platforms:
  iks: {product: iks-build, lifetime: 1000h}
products:
  iks-build: {type: platform, declared: 1000kg}
jobs:
  - {name: build-platform, builds: iks-build, energy: 10kWh, duration: 1h, region: r}
  - {name: train, energy: 1kWh, duration: 10h, region: r, platform: iks, concurrent: 4}
";

#[test]
fn a_platform_amortises_the_epc_of_the_product_that_built_it() {
    use jobcarbon_core::Term;
    let report = eval(PLATFORM_PRODUCT).unwrap();
    let product = report
        .products
        .iter()
        .find(|p| p.name == "iks-build")
        .unwrap();
    assert!(close(product.epc.total().value(), 1_001_000.0, 1e-12));
    let train = job(&report, "train");
    assert!(close(
        train.terms[Term::PlatformEmbodied].value(),
        2502.5,
        1e-12
    ));
    assert!(close(train.terms[Term::Operational].value(), 100.0, 1e-12));

    // Without its own lifetime the platform takes the product's: 2y = 17 520 h.
    let product_lifetime = PLATFORM_PRODUCT
        .replace(
            "{product: iks-build, lifetime: 1000h}",
            "{product: iks-build}",
        )
        .replace(
            "{type: platform, declared: 1000kg}",
            "{type: platform, declared: 1000kg, lifetime: 2y}",
        );
    let report = eval(&product_lifetime).unwrap();
    let hours = 2.0 * 365.0 * 24.0;
    let expected = 1_001_000.0 * 10.0 / (4.0 * hours);
    let got = job(&report, "train").terms[Term::PlatformEmbodied].value();
    assert!(close(got, expected, 1e-9), "{got} vs {expected}");
}

#[test]
fn a_platform_product_link_is_validated_where_it_is_written() {
    let cases = [
        // An unknown product.
        (
            "{product: iks-build, lifetime: 1000h}",
            "{product: nope, lifetime: 1000h}",
            "platforms.iks.product",
            "nope",
        ),
        // A product that is not a platform.
        (
            "{type: platform, declared: 1000kg}",
            "{type: model, declared: 1000kg}",
            "platforms.iks.product",
            "model",
        ),
        // Both an epc and a product.
        (
            "{product: iks-build, lifetime: 1000h}",
            "{product: iks-build, epc: 5t, lifetime: 1000h}",
            "platforms.iks.epc",
            "either",
        ),
        // No lifetime anywhere.
        (
            "{product: iks-build, lifetime: 1000h}",
            "{product: iks-build}",
            "platforms.iks",
            "lifetime",
        ),
    ];
    for (from, to, path, says) in cases {
        let text = PLATFORM_PRODUCT.replace(from, to);
        let e = eval(&text).expect_err(to);
        assert_eq!(e.path, path, "{to}: {e}");
        assert!(e.to_string().contains(says), "{to}: {e}");
    }
    // Building the platform on itself is a cycle, pointed at the job.
    let text = PLATFORM_PRODUCT.replace(
        "builds: iks-build, energy: 10kWh, duration: 1h, region: r}",
        "builds: iks-build, energy: 10kWh, duration: 1h, region: r, platform: iks}",
    );
    let e = eval(&text).expect_err("a cycle");
    assert_eq!(e.path, "jobs[0].platform", "{e}");
}

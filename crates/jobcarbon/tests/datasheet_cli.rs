//! `jobcarbon datasheet` through the binary: its numbers are `calc`'s (scenario files) and
//! `plan`'s (plan files); Markdown front matter in Hugging Face's `co2_eq_emissions` fields.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn jobcarbon() -> Command {
    Command::cargo_bin("jobcarbon").unwrap()
}

fn run_json(args: &[&str]) -> Value {
    let out = jobcarbon().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[track_caller]
fn assert_same(got: &Value, want: &Value) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    assert!(
        (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
        "datasheet {g} vs {w}"
    );
}

/// A scenario with lineage, declared carbon, re-training and inference.
const SCENARIO: &str = r#"
regions:
  dallas: {pue: 1.08, intensity: {mix: {coal: 0.8, solar: 0.2}}}
  quebec: {pue: 1.2, intensity: 30}
systems:
  s1: {embodied: 10000g, lifetime: 3y}
  node: {embodied: 3.7t, lifetime: 6y}
platforms:
  iks: {overhead: 50g/min, epc: 2000t, lifetime: 6y}
products:
  corpus: {type: dataset}
  bert: {type: model, lifetime: 3y, datasets: [{product: corpus, weight: 0.5}],
         declared: {carbon: 652kg, source: "Strubell et al. 2019"}}
  student:
    type: model
    lifetime: 2y
    derivedFrom: [{product: bert, weight: 0.25}]
    datasets: [{product: corpus, weight: 0.1}]
    retraining: {carbon: 5kg, interval: 1d, jobsPerInterval: 1000}
jobs:
  - {name: prep, builds: corpus, energy: 40kWh, duration: 10h, region: quebec}
  - {name: distil, builds: student, power: 250W, devices: 8, duration: 84h, region: quebec,
     system: node}
  - {name: nightly, retrains: student, power: 250W, devices: 8, duration: 1h, region: quebec}
  - {name: q, serves: student, energy: 0.015kWh, duration: 410s, region: dallas, system: s1,
     platform: iks, concurrent: 100}
"#;

fn scenario_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("scenario.yaml");
    std::fs::write(&path, SCENARIO).unwrap();
    path
}

fn datasheets_equal_calc(file: &Path) {
    let file = file.to_str().unwrap();
    let calc = run_json(&["calc", file, "--format", "json"]);
    let products = calc["products"].as_array().unwrap();
    assert!(!products.is_empty());
    for product in products {
        let name = product["name"].as_str().unwrap();
        let sheet = run_json(&["datasheet", name, "--from", file, "--format", "json"]);
        assert_eq!(sheet["product"], name);
        assert_eq!(sheet["type"], product["type"]);
        assert_same(&sheet["epc"]["total_g"], &product["epc_g"]);
        assert_same(&sheet["epc"]["measured_g"], &product["measured_g"]);
        assert_same(&sheet["epc"]["inherited_g"], &product["inherited_g"]);
        assert_same(&sheet["epc"]["declared_g"], &product["declared_g"]);
        // Edge by edge, the inherited lines add up to calc's inherited part.
        let edges: f64 = sheet["epc"]["inherited_from"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["inherited_g"].as_f64().unwrap())
            .sum();
        let inherited = product["inherited_g"].as_f64().unwrap();
        assert!((edges - inherited).abs() <= 1e-9 * inherited.max(1.0));
        // Build jobs and serving jobs carry calc's job numbers.
        let job = |n: &str| {
            calc["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["name"] == n)
                .unwrap()
                .clone()
        };
        for line in sheet["epc"]["built_by"].as_array().unwrap() {
            let j = job(line["job"].as_str().unwrap());
            assert_same(&line["asce_g"], &j["asce_g"]);
            assert_same(&line["energy_j"], &j["energy_j"]);
        }
        for line in sheet["inference"].as_array().unwrap() {
            let j = job(line["job"].as_str().unwrap());
            assert_same(&line["asce_g"], &j["asce_g"]);
            assert_eq!(line["terms"], j["terms"]);
        }
    }
}

#[test]
fn datasheet_numbers_equal_calc_for_a_scenario() {
    let dir = tempfile::tempdir().unwrap();
    datasheets_equal_calc(&scenario_file(&dir));
}

#[test]
fn datasheet_numbers_equal_calc_for_the_paper_example() {
    datasheets_equal_calc(&root().join("examples/paper.yaml"));
}

#[test]
fn datasheet_reports_lineage_amortisation_and_assumptions() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(&dir);
    let file = file.to_str().unwrap();
    let sheet = run_json(&[
        "datasheet",
        "student",
        "--from",
        file,
        "--format",
        "json",
        "--traffic",
        "1000/d",
    ]);
    check_lineage(&sheet);
    check_amortisation(&sheet);
    check_assumptions(&sheet);
    // Hugging Face metadata: this product's own creation, where and on what.
    let co2 = &sheet["co2_eq_emissions"];
    assert_same(&co2["emissions"], &sheet["epc"]["measured_g"]);
    assert_eq!(co2["training_type"], "fine-tuning");
    assert_eq!(co2["geographical_location"], "quebec");
    assert_eq!(co2["hardware_used"], "8 devices on node");
    // A declared model keeps its source; a model with no parent is pre-trained.
    let bert = run_json(&["datasheet", "bert", "--from", file, "--format", "json"]);
    assert_eq!(bert["co2_eq_emissions"]["training_type"], "pre-training");
    assert_eq!(bert["co2_eq_emissions"]["emissions"], 652_000.0);
    assert!(
        bert["co2_eq_emissions"]["source"]
            .as_str()
            .unwrap()
            .contains("Strubell et al. 2019")
    );
    // Datasets have no training type.
    let corpus = run_json(&["datasheet", "corpus", "--from", file, "--format", "json"]);
    assert!(corpus["co2_eq_emissions"].get("training_type").is_none());
}

/// Lineage: student ← bert ← corpus, and student ← corpus.
fn check_lineage(sheet: &serde_json::Value) {
    let lineage = &sheet["lineage"];
    assert_eq!(lineage["product"], "student");
    let parents: Vec<(&str, &str, f64)> = lineage["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["product"].as_str().unwrap(),
                p["via"].as_str().unwrap(),
                p["weight"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        parents,
        [("bert", "derivedFrom", 0.25), ("corpus", "datasets", 0.1)]
    );
    assert_eq!(lineage["parents"][0]["parents"][0]["product"], "corpus");
}

/// Amortisation: the EPC over a 2-year lifetime.
fn check_amortisation(sheet: &serde_json::Value) {
    let epc = sheet["epc"]["total_g"].as_f64().unwrap();
    let a = &sheet["amortisation"];
    assert!((a["epc_per_day_g"].as_f64().unwrap() - epc / 730.0).abs() < 1e-9 * epc);
    let amortised = sheet["inference"][0]["terms"]["model_epc"]
        .as_f64()
        .unwrap();
    assert!((a["amortised_g"].as_f64().unwrap() - amortised).abs() < 1e-15);
    // At 1000 requests/day over the 2-year lifetime: EPC / 730,000 per inference, and
    // re-training (5 kg + the nightly job) / 1000 — the same as calc's with 1000 jobs a day.
    let at = &sheet["at_traffic"][0];
    let terms = &at["terms"];
    assert!((terms["model_epc"].as_f64().unwrap() - epc / 730_000.0).abs() < 1e-9 * epc);
    assert_same(
        &terms["retraining"],
        &sheet["inference"][0]["terms"]["retraining"],
    );
    assert_same(
        &terms["operational"],
        &sheet["inference"][0]["terms"]["operational"],
    );
}

/// Assumptions: the regions, systems and platform behind these numbers.
fn check_assumptions(sheet: &serde_json::Value) {
    let regions: Vec<&str> = sheet["assumptions"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["dallas", "quebec"]);
    let dallas = &sheet["assumptions"]["regions"][0];
    assert!((dallas["intensity_g_per_kwh"].as_f64().unwrap() - 665.6).abs() < 1e-9);
    assert_eq!(dallas["pue"], 1.08);
    let systems: Vec<&str> = sheet["assumptions"]["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["s1", "node"]);
    assert_eq!(sheet["assumptions"]["platforms"][0]["epc_g"], 2e9);
}

#[test]
fn markdown_has_hugging_face_front_matter() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(&dir);
    let out = jobcarbon()
        .args(["datasheet", "student", "--from"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8(out.stdout).unwrap();
    let front = md
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map(|(front, _)| front)
        .expect("front matter");
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Card {
        co2_eq_emissions: Co2,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Co2 {
        emissions: f64,
        source: String,
        training_type: String,
        geographical_location: String,
        hardware_used: String,
    }
    let card: Card = serde_saphyr::from_str(front).unwrap();
    assert!(card.co2_eq_emissions.emissions > 0.0);
    assert_eq!(card.co2_eq_emissions.training_type, "fine-tuning");
    for heading in [
        "# Carbon data sheet: student (model)",
        "## Embodied product cost (EPC)",
        "### Inherited, edge by edge",
        "## Lineage",
        "## Lifetime and amortisation",
        "## Assumptions",
    ] {
        assert!(md.contains(heading), "{heading} missing");
    }
    assert!(md.contains("  - **corpus** (dataset"), "{md}");
}

#[test]
fn plan_datasheet_numbers_equal_plan() {
    let file = root().join("examples/plans/foundation-model.yaml");
    let file = file.to_str().unwrap();
    let plan = run_json(&["plan", file, "--format", "json"]);
    for strategy in plan["strategies"].as_array().unwrap() {
        let served = strategy["serves"].as_str().unwrap();
        let sheet = run_json(&["datasheet", served, "--from", file, "--format", "json"]);
        assert_same(&sheet["epc"]["total_g"], &strategy["outlook"]["upfront_g"]);
        assert_same(
            &sheet["at_traffic"][0]["per_inference_g"],
            &strategy["outlook"]["per_inference_g"],
        );
        assert_eq!(sheet["at_traffic"][0]["traffic_per_day"], 10_000.0);
    }
    // A shared product, addressed by strategy too.
    let sheet = run_json(&[
        "datasheet",
        "distil/bert-base",
        "--from",
        file,
        "--format",
        "json",
    ]);
    assert_eq!(sheet["epc"]["declared_g"], 652_000.0);
}

#[test]
fn out_writes_markdown_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(&dir);
    let out_dir = dir.path().join("sheets");
    let out = jobcarbon()
        .args(["datasheet", "student", "--from"])
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(out_dir.join("student.md")).unwrap();
    assert!(md.starts_with("---\nco2_eq_emissions:"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("student.json")).unwrap())
            .unwrap();
    assert_eq!(json["product"], "student");
}

#[test]
fn bad_requests_exit_2_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(&dir);
    let out = jobcarbon()
        .args(["datasheet", "gpt-9", "--from"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario.yaml") && err.contains("gpt-9") && err.contains("student"),
        "{err}"
    );

    let out = jobcarbon()
        .args(["datasheet", "student", "--from", "http://ledger:9464"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported by this build yet"));

    let out = jobcarbon()
        .args(["datasheet", "student", "--from", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.yaml"));

    // A scenario error is reported with its path, as calc reports it.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        SCENARIO.replace("region: quebec}", "region: mars}"),
    )
    .unwrap();
    let out = jobcarbon()
        .args(["datasheet", "student", "--from"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.yaml") && err.contains("jobs[0].region"),
        "{err}"
    );
}

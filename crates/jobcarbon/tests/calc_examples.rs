//! `jobcarbon calc` on the shipped examples: the paper's numbers and a hand-computed life cycle,
//! to 1e-9 relative, through the real binary.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn calc_json(name: &str) -> Value {
    let output = Command::cargo_bin("jobcarbon")
        .unwrap()
        .args(["calc", "--format", "json"])
        .arg(example(name))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn entry<'a>(report: &'a Value, list: &str, name: &str) -> &'a Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {list} entry {name}"))
}

#[track_caller]
fn assert_close(actual: &Value, expected: f64) {
    let actual = actual.as_f64().unwrap();
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-12),
        "{actual} != {expected}"
    );
}

const YEAR: f64 = 365.0 * 24.0 * 3600.0;

#[test]
fn paper_numbers() {
    let r = calc_json("paper.yaml");
    let job = entry(&r, "jobs", "paper-job");
    // 1.08 × (0.8 × 820 + 0.2 × 48) / 3600 g per kJ.
    assert_close(&job["jsc_g"], 0.19968);
    let ec = 10_000.0 * 5.0 / (3.0 * 365.0 * 24.0 * 60.0);
    assert_close(&job["ec_g"], ec);
    assert_close(&job["asc_g"], 0.19968 + ec);
    assert!((job["ec_g"].as_f64().unwrap() - 0.0317).abs() < 5e-5);
    assert!((job["asc_g"].as_f64().unwrap() - 0.2314).abs() < 5e-5);
    // 50 g/min × 5 min / 10 jobs.
    assert_close(&job["terms"]["platform_operational"], 25.0);
    assert_close(&job["jsce_g"], 25.19968);

    let roberta = entry(&r, "jobs", "roberta-pretrain");
    assert_close(&roberta["energy_j"], 7372.8 * 3.6e6);
    let distil = entry(&r, "jobs", "distilbert-distill");
    assert_close(&distil["energy_j"], 168.0 * 3.6e6);

    // DistilBERT = its distillation + 0.25 × BERT's declared 652.27 kg.
    let intensity = 1.08 * (0.8 * 820.0 + 0.2 * 48.0);
    let distil_asce = 168.0 * intensity;
    let distilbert_epc = distil_asce + 0.25 * 652_270.0;
    let product = entry(&r, "products", "distilbert");
    assert_close(&product["measured_g"], distil_asce);
    assert_close(&product["inherited_g"], 0.25 * 652_270.0);
    assert_close(&product["epc_g"], distilbert_epc);
    assert_eq!(product["type"], "model");

    // One query: 0.015 kWh, 410 s, 100 concurrent on iks (50 g/min, 2000 t over 6 y).
    let q = entry(&r, "jobs", "distilbert-query");
    let jsc = 0.015 * intensity;
    let platform_operational = 50.0 / 60.0 * 410.0 / 100.0;
    let platform_embodied = 2e9 * 410.0 / (100.0 * 6.0 * YEAR);
    let model_epc = distilbert_epc * 410.0 / (3.0 * YEAR * 100.0);
    let retraining = 5000.0 / 1e6;
    assert_close(&q["jsc_g"], jsc);
    assert_close(&q["terms"]["platform_operational"], platform_operational);
    assert_close(&q["terms"]["platform_embodied"], platform_embodied);
    assert_close(&q["terms"]["model_epc"], model_epc);
    assert_close(&q["terms"]["retraining"], retraining);
    assert_close(
        &q["asce_g"],
        jsc + platform_operational + platform_embodied + model_epc + retraining,
    );
}

/// Every number of examples/lifecycle.yaml worked out from the formulas (docs/metrics.md).
#[test]
fn lifecycle_numbers_by_hand() {
    let r = calc_json("lifecycle.yaml");
    let us_east = 1.2 * 380.0; // PUE × g/kWh
    let eu_north = 1.1 * (0.6 * 24.0 + 0.3 * 12.0 + 0.1 * 11.0);
    let node = |t: f64| 10.3e6 * t / (6.0 * YEAR);
    let platform = |t: f64, n: f64| (120.0 / 3600.0 * t / n, 4e6 * t / (n * 6.0 * YEAR));

    // corpus-prep: 1.8 MWh over 36 h on a CPU node (1.5 t, 5 y).
    let t = 36.0 * 3600.0;
    let (po, pe) = platform(t, 20.0);
    let corpus = 1800.0 * us_east + 1.5e6 * t / (5.0 * YEAR) + po + pe;
    assert_close(&entry(&r, "jobs", "corpus-prep")["asce_g"], corpus);
    let web_corpus = corpus + 40_000.0;
    assert_close(&entry(&r, "products", "web-corpus")["epc_g"], web_corpus);

    // pretrain-7b: 64 × 700 W for 14 days on the 8-node pod (82.4 t, 6 y).
    let t = 14.0 * 86_400.0;
    let (po, pe) = platform(t, 20.0);
    let kwh = 64.0 * 700.0 * t / 3.6e6;
    let pretrain = kwh * us_east + 82.4e6 * t / (6.0 * YEAR) + po + pe;
    assert_close(&entry(&r, "jobs", "pretrain-7b")["asce_g"], pretrain);
    let base = pretrain + 0.5 * web_corpus;
    assert_close(&entry(&r, "products", "base-7b")["epc_g"], base);

    // synth-labels: base-7b inference for 12 h, 4 concurrent on the model, builds chat-sft.
    let t = 12.0 * 3600.0;
    let (po, pe) = platform(t, 20.0);
    let synth =
        8.0 * 700.0 * t / 3.6e6 * us_east + node(t) + po + pe + base * t / (2.0 * YEAR * 4.0);
    let synth_job = entry(&r, "jobs", "synth-labels");
    assert_close(&synth_job["asce_g"], synth);
    assert_close(
        &synth_job["terms"]["model_epc"],
        base * t / (2.0 * YEAR * 4.0),
    );
    assert_close(&entry(&r, "products", "chat-sft")["epc_g"], synth);

    // distill-chat-1b: 8 × 700 W for 3 days in eu-north.
    let t = 3.0 * 86_400.0;
    let (po, pe) = platform(t, 20.0);
    let distill = 8.0 * 700.0 * t / 3.6e6 * eu_north + node(t) + po + pe;
    assert_close(&entry(&r, "jobs", "distill-chat-1b")["asce_g"], distill);
    let chat = distill + 0.2 * base + synth;
    let chat_product = entry(&r, "products", "chat-1b");
    assert_close(&chat_product["epc_g"], chat);
    assert_close(&chat_product["inherited_g"], 0.2 * base + synth);

    // retrain-daily: 8 × 700 W for 2 h in eu-north; the day's pool.
    let t = 2.0 * 3600.0;
    let (po, pe) = platform(t, 20.0);
    let pool = 8.0 * 700.0 * t / 3.6e6 * eu_north + node(t) + po + pe;
    assert_close(&entry(&r, "jobs", "retrain-daily")["asce_g"], pool);

    // chat-request: 1.2 kJ, 2 s, one GPU of eight, 200 on the platform, 50 on the model.
    let t = 2.0;
    let (po, pe) = platform(t, 200.0);
    let request = entry(&r, "jobs", "chat-request");
    assert_close(&request["jsc_g"], 1200.0 / 3.6e6 * us_east);
    assert_close(&request["ec_g"], node(t) * 0.125);
    assert_close(&request["terms"]["model_epc"], chat * t / (YEAR * 50.0));
    assert_close(&request["terms"]["retraining"], pool / 2e6);
    assert_close(
        &request["asce_g"],
        1200.0 / 3.6e6 * us_east
            + node(t) * 0.125
            + po
            + pe
            + chat * t / (YEAR * 50.0)
            + pool / 2e6,
    );
}

#[test]
fn table_lists_jobs_then_products_with_units() {
    let output = Command::cargo_bin("jobcarbon")
        .unwrap()
        .arg("calc")
        .arg(example("paper.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("JOB"), "{text}");
    let product_header = lines.iter().position(|l| l.starts_with("PRODUCT")).unwrap();
    assert!(lines[1].starts_with("paper-job"));
    assert!(lines[1].contains("0.19968 g"), "{text}");
    assert!(text.contains("7.3728 MWh"), "{text}");
    assert!(
        lines[product_header + 1..]
            .iter()
            .any(|l| l.starts_with("distilbert"))
    );
    // Right-aligned numeric columns: every job row ends at the header's width.
    let width = lines[0].chars().count();
    for line in &lines[1..product_header - 1] {
        assert_eq!(line.chars().count(), width, "{line:?}");
    }
}

#[test]
fn reads_standard_input() {
    let yaml = "regions: {r: {intensity: 400}}\njobs: [{name: a, energy: 1kWh, duration: 1h, region: r}]\n";
    let output = Command::cargo_bin("jobcarbon")
        .unwrap()
        .args(["calc", "-", "--format", "json"])
        .write_stdin(yaml)
        .output()
        .unwrap();
    assert!(output.status.success());
    let r: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_close(&r["jobs"][0]["jsc_g"], 400.0);
}

//! `jobcarbon plan` through the binary: hand-computed break-evens, the paper's example,
//! agreement with `calc`, sweeps, the chart and located errors.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

const DAY: f64 = 86_400.0;
const YEAR: f64 = 365.0 * DAY;
const KWH: f64 = 3.6e6;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> PathBuf {
    root().join("examples/plans/foundation-model.yaml")
}

fn jobcarbon() -> Command {
    Command::cargo_bin("jobcarbon").unwrap()
}

fn plan_json(file: &Path, extra: &[&str]) -> Value {
    let out = jobcarbon()
        .arg("plan")
        .arg(file)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1e-300)
}

#[track_caller]
fn assert_close(got: &Value, want: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {got}"));
    assert!(close(got, want), "got {got}, want {want}");
}

fn strategy<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no strategy {name}"))
}

fn pair<'a>(report: &'a Value, a: &str, b: &str) -> &'a Value {
    report["break_even"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["strategy"] == a && c["against"] == b)
        .unwrap_or_else(|| panic!("no pair {a} vs {b}"))
}

/// Two strategies priced in round numbers: 1000 g/kWh, PUE 1, so 1 Wh = 1 g.
/// A: 1 kg up front, 1 g per request. B: 10 kg up front, 0.1 g per request.
/// Over 100 days, 1000 + N = 10000 + 0.1 N → N = 10,000 requests = 100 requests/day.
const SIMPLE: &str = r#"
regions: {r: {pue: 1, intensity: 1000}}
products:
  base: {type: model, declared: 9kg}
traffic: 50/d
serviceLife: 100d
strategies:
  small:
    serves: a
    products: {a: {type: model, lifetime: 100d, declared: 1kg}}
    jobs: [{name: q, serves: a, energy: 1Wh, duration: 1s, region: r}]
  big:
    serves: b
    products: {b: {type: model, lifetime: 100d, declared: 1kg, derivedFrom: [{product: base, weight: 1}]}}
    jobs: [{name: q, serves: b, energy: 0.1Wh, duration: 1s, region: r}]
"#;

#[test]
fn hand_computed_break_even_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "simple.yaml", SIMPLE);
    let report = plan_json(&file, &[]);
    let be = &pair(&report, "small", "big")["break_even"];
    assert_eq!(be["kind"], "at");
    assert_close(&be["requests"], 10_000.0);
    assert_close(&be["requests_per_day"], 100.0);
    assert_eq!(be["cheaper_below"], "small");
    assert_eq!(be["cheaper_above"], "big");
    // At 50 requests/day the service-life break-even: 9 kg extra paid back at 45 g/day.
    assert_close(
        &pair(&report, "small", "big")["break_even_service_life_s"],
        200.0 * DAY,
    );
    // Totals at 50/day over 100 days: 5000 requests.
    let small = &strategy(&report, "small")["outlook"];
    assert_close(&small["total_g"], 1000.0 + 5000.0);
    assert_close(&small["per_inference_g"], 6000.0 / 5000.0);
    let big = &strategy(&report, "big")["outlook"];
    assert_close(&big["upfront_g"], 10_000.0);
    assert_close(&big["total_g"], 10_000.0 + 500.0);
    assert_eq!(report["cheapest"], "small");
}

#[test]
fn parallel_and_dominated_strategies_have_no_break_even() {
    let dir = tempfile::tempdir().unwrap();
    // Same per-request cost, different up-front: parallel lines.
    let parallel = SIMPLE.replace("energy: 0.1Wh", "energy: 1Wh");
    let report = plan_json(&write(&dir, "parallel.yaml", &parallel), &[]);
    let be = &pair(&report, "small", "big")["break_even"];
    assert_eq!(be["kind"], "parallel");
    assert_eq!(be["cheaper"], "small");
    assert_close(&be["margin_g"], 9000.0);
    assert!(pair(&report, "small", "big")["break_even_service_life_s"].is_null());
    // Dearer up front and per request: dominated.
    let dominated = SIMPLE.replace("energy: 0.1Wh", "energy: 2Wh");
    let report = plan_json(&write(&dir, "dominated.yaml", &dominated), &[]);
    let be = &pair(&report, "small", "big")["break_even"];
    assert_eq!(be["kind"], "dominated");
    assert_eq!(be["cheaper"], "small");
    // The table says so in words.
    let out = jobcarbon()
        .arg("plan")
        .arg(dir.path().join("dominated.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("small vs big: none: small is cheaper at every volume"),
        "{text}"
    );
}

#[test]
fn retraining_cadence_enters_the_break_even() {
    // B re-trains every 10 days with a 1 kg job: +100 g/day of fixed cost.
    // Per day: 10 + 1·r = 100 + 100 + 0.1·r → r = 190 / 0.9 requests/day.
    let dir = tempfile::tempdir().unwrap();
    let text = SIMPLE.replace(
        "    jobs: [{name: q, serves: b, energy: 0.1Wh, duration: 1s, region: r}]",
        "    jobs:\n      - {name: q, serves: b, energy: 0.1Wh, duration: 1s, region: r}\n      - {name: rt, retrains: b, energy: 1kWh, duration: 1h, region: r}\n    retraining: {interval: 10d}",
    );
    let report = plan_json(&write(&dir, "rt.yaml", &text), &[]);
    assert_close(
        &pair(&report, "small", "big")["break_even"]["requests_per_day"],
        190.0 / 0.9,
    );
    let big = strategy(&report, "big");
    assert_close(&big["retraining"]["carbon_per_retraining_g"], 1000.0);
    assert_close(&big["outlook"]["retrainings"], 10.0);
    assert_close(&big["outlook"]["retraining_g"], 10_000.0);
    // The command-line interval overrides the file's: every 20 days halves the rate.
    let report = plan_json(
        &dir.path().join("rt.yaml"),
        &["--retraining-interval", "20d"],
    );
    assert_close(
        &pair(&report, "small", "big")["break_even"]["requests_per_day"],
        140.0 / 0.9,
    );
}

/// The published inputs of examples/plans/foundation-model.yaml, priced by hand.
struct Hand {
    upfront: f64,
    per_request: f64,
    per_retraining: f64,
}

fn paper_example_by_hand() -> [(&'static str, Hand); 3] {
    let training = |kwh: f64| kwh * KWH * 1.58 * 433.0 / KWH;
    let node = |hours: f64| 3.7e6 * hours * 3600.0 / (6.0 * YEAR);
    let dallas = 1.08 * (0.8 * 820.0 + 0.2 * 48.0);
    let serving = |kwh: f64, seconds: f64| {
        kwh * dallas + 10_000.0 * seconds / (3.0 * YEAR) + 50.0 / 60.0 * seconds / 100.0
    };
    // RoBERTa-large: 1024 × 300 W × 24 h = 7,372.8 kWh on 128 nodes (473.6 t) for a day.
    let roberta = training(1024.0 * 0.3 * 24.0) + 473.6e6 * DAY / (6.0 * YEAR);
    assert!((1024.0 * 0.3 * 24.0 - 7372.8_f64).abs() < 1e-9);
    let watts_131 = |seconds: f64| 131.7 * seconds / KWH;
    [
        (
            "fine-tune-roberta",
            Hand {
                upfront: 0.01 * roberta + training(8.0 * 0.3 * 4.0) + node(4.0),
                per_request: serving(watts_131(2156.0), 2156.0),
                per_retraining: training(8.0 * 0.3) + node(1.0),
            },
        ),
        (
            "from-scratch",
            Hand {
                upfront: training(8.0 * 0.3 * 72.0) + node(72.0),
                per_request: serving(watts_131(668.0), 668.0),
                per_retraining: training(8.0 * 0.3 * 6.0) + node(6.0),
            },
        ),
        (
            "distil",
            Hand {
                // 8 × 250 W × 84 h = 168 kWh; 1 % of BERT-base's 652 kg.
                upfront: 0.01 * 652_000.0 + training(168.0) + node(84.0),
                per_request: serving(0.015, 410.0),
                per_retraining: training(8.0 * 0.25) + node(1.0),
            },
        ),
    ]
}

#[test]
fn paper_question_matches_hand_computation() {
    let report = plan_json(&example(), &[]);
    let hand = paper_example_by_hand();
    let traffic = 10_000.0 / DAY;
    let life = 3.0 * YEAR;
    let interval = 7.0 * DAY;
    for (name, h) in &hand {
        let s = strategy(&report, name);
        let o = &s["outlook"];
        assert_close(&o["upfront_g"], h.upfront);
        assert_close(&s["per_request_serving_g"], h.per_request);
        assert_close(&s["retraining"]["carbon_per_retraining_g"], h.per_retraining);
        let requests = traffic * life;
        let total = h.upfront + h.per_retraining * life / interval + h.per_request * requests;
        assert_close(&o["total_g"], total);
        assert_close(&o["per_inference_g"], total / requests);
    }
    // Break-even traffic for every pair: (ΔU/L + ΔC/I) / Δp.
    let fixed = |h: &Hand| h.upfront / life + h.per_retraining / interval;
    let find = |n: &str| &hand.iter().find(|(name, _)| *name == n).unwrap().1;
    let (ft, scratch, distil) = (
        find("fine-tune-roberta"),
        find("from-scratch"),
        find("distil"),
    );
    for (a, b, ha, hb) in [
        ("fine-tune-roberta", "from-scratch", ft, scratch),
        ("fine-tune-roberta", "distil", ft, distil),
    ] {
        let rate = (fixed(hb) - fixed(ha)) / (ha.per_request - hb.per_request);
        let be = &pair(&report, a, b)["break_even"];
        assert_eq!(be["kind"], "at", "{a} vs {b}: {be}");
        assert_close(&be["requests_per_day"], rate * DAY);
        assert_close(&be["requests"], rate * life);
        assert_eq!(be["cheaper_below"], a);
        assert_eq!(be["cheaper_above"], b);
    }
    // DistilBERT costs less per request and less fixed per second: no break-even.
    assert!(fixed(distil) < fixed(scratch) && distil.per_request < scratch.per_request);
    let be = &pair(&report, "from-scratch", "distil")["break_even"];
    assert_eq!(be["kind"], "dominated");
    assert_eq!(be["cheaper"], "distil");
    assert_eq!(report["cheapest"], "distil");

    // The human table prints the same verdicts.
    let out = jobcarbon().arg("plan").arg(example()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("cheapest over the life cycle: distil"),
        "{text}"
    );
    assert!(text.contains("from-scratch vs distil: none: distil is cheaper at every volume"));
    assert!(
        text.contains("fine-tune-roberta vs from-scratch: 24.79 requests/day"),
        "{text}"
    );
}

#[test]
fn plan_per_inference_equals_calc_on_the_equivalent_scenario() {
    // The distil strategy as a plain scenario, with the plan's amortisation written out:
    // concurrentServing = traffic × duration makes calc's EPC × t / (LT × n) equal EPC /
    // (traffic × LT); jobsPerInterval = traffic × interval makes its re-training share equal
    // the plan's carbon / (traffic × interval).
    let traffic_per_day = 10_000.0;
    let n = traffic_per_day / DAY * 410.0;
    let jobs_per_interval = traffic_per_day * 7.0;
    let scenario = format!(
        r#"
regions:
  us-training: {{pue: 1.58, intensity: 433}}
  dallas: {{pue: 1.08, intensity: {{mix: {{coal: 0.8, solar: 0.2}}}}}}
systems:
  v100-node: {{embodied: 3.7t, lifetime: 6y}}
  xeon-server: {{embodied: 10000g, lifetime: 3y}}
platforms:
  iks: {{overhead: 50g/min}}
products:
  bert-base: {{type: model, lifetime: 3y, declared: 652kg}}
  distilbert-sts:
    type: model
    lifetime: 3y
    derivedFrom: [{{product: bert-base, weight: 0.01}}]
    retraining: {{interval: 7d, jobsPerInterval: {jobs_per_interval}}}
jobs:
  - {{name: distil, builds: distilbert-sts, power: 250W, devices: 8, duration: 84h, region: us-training, system: v100-node}}
  - {{name: refresh, retrains: distilbert-sts, power: 250W, devices: 8, duration: 1h, region: us-training, system: v100-node}}
  - {{name: request, serves: distilbert-sts, energy: 0.015kWh, duration: 410s, region: dallas, system: xeon-server, platform: iks, concurrent: 100, concurrentServing: {n}}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "distil.yaml", &scenario);
    let out = jobcarbon()
        .arg("calc")
        .arg(&file)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let request = calc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "request")
        .unwrap();
    let plan = plan_json(&example(), &[]);
    let distil = strategy(&plan, "distil");
    let per_inference = distil["outlook"]["per_inference_terms"].clone();
    for term in [
        "operational",
        "embodied_system",
        "platform_operational",
        "platform_embodied",
        "model_epc",
        "retraining",
    ] {
        let want = request["terms"][term].as_f64().unwrap();
        let got = per_inference[term].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1e-12),
            "{term}: plan {got}, calc {want}"
        );
    }
    assert_close(
        &distil["outlook"]["per_inference_g"],
        request["asce_g"].as_f64().unwrap(),
    );
}

fn per_inference_column(sweep: &Value, strategy_index: usize) -> Vec<f64> {
    sweep["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["outlooks"][strategy_index]["per_inference_g"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn sweeps_from_the_file_and_the_command_line_are_monotone() {
    let report = plan_json(&example(), &[]);
    let sweeps = report["sweeps"].as_array().unwrap();
    let axes: Vec<&str> = sweeps.iter().map(|s| s["axis"].as_str().unwrap()).collect();
    assert_eq!(axes, ["traffic", "retraining_interval", "service_life"]);
    for sweep in sweeps {
        for i in 0..3 {
            let column = per_inference_column(sweep, i);
            assert!(
                column.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-12)),
                "{}: {column:?}",
                sweep["axis"]
            );
        }
    }
    // A command-line sweep replaces the file's over the same axis.
    let report = plan_json(&example(), &["--sweep", "traffic=1e2/d..1e6/d:5"]);
    let traffic = &report["sweeps"][0];
    assert_eq!(traffic["axis"], "traffic");
    let values: Vec<f64> = traffic["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    let want = [1e2, 1e3, 1e4, 1e5, 1e6];
    assert_eq!(values.len(), want.len());
    for (got, want) in values.iter().zip(want) {
        assert!(close(*got, want), "{got} vs {want}");
    }
    // And totals rise with traffic.
    for i in 0..3 {
        let totals: Vec<f64> = traffic["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["outlooks"][i]["total_g"].as_f64().unwrap())
            .collect();
        assert!(totals.windows(2).all(|w| w[1] >= w[0]), "{totals:?}");
    }
}

#[test]
fn chart_is_well_formed_svg_with_one_series_per_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("plan.svg");
    let out = jobcarbon()
        .arg("plan")
        .arg(example())
        .arg("--chart")
        .arg(&svg_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // Strategy lines are the 3-px polylines, one colour each.
    let series: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("3"))
        .map(|n| n.attribute("stroke").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(series.len(), 3, "{series:?}");
    let distinct: std::collections::BTreeSet<_> = series.iter().collect();
    assert_eq!(distinct.len(), 3);
    // Every strategy is named in the legend.
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect();
    for name in ["fine-tune-roberta", "from-scratch", "distil"] {
        assert!(
            texts.iter().any(|t| t == name),
            "{name} missing from {texts:?}"
        );
    }
    // Two break-even points (the third pair has none) plus the legend's marker.
    let circles = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(circles, 3);
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("fine-tune-roberta = from-scratch at 24.79"))
    );
}

#[test]
fn markdown_report_has_the_strategy_table_and_verdicts() {
    let out = jobcarbon()
        .arg("plan")
        .arg(example())
        .args(["--format", "markdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# Life-cycle plan"));
    assert!(md.contains("| strategy | serves | up-front EPC |"));
    assert!(md.contains("- **from-scratch** vs **distil**: none"));
    assert!(md.contains("## Sweep over traffic"));
}

/// Runs `plan` on `text` and returns stderr, asserting exit code 2.
fn plan_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "bad.yaml", text);
    let out = jobcarbon().arg("plan").arg(&file).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.yaml"), "{err}");
    err
}

#[test]
fn bad_plan_files_exit_2_with_located_errors() {
    let cases: [(String, &[&str]); 10] = [
        (
            SIMPLE.replace("    serves: a\n", "    serves: a\n    colour: red\n"),
            &["strategies.small", "colour"],
        ),
        (
            SIMPLE.replace("energy: 1Wh, duration: 1s, region: r}", "energy: 1Wh, duration: 1s, region: mars}"),
            &["strategies.small.jobs[0].region", "mars"],
        ),
        (SIMPLE.replace("traffic: 50/d", "traffic: 50/week"), &["traffic", "week"]),
        (
            SIMPLE.replace("jobs: [{name: q, serves: a, energy: 1Wh, duration: 1s, region: r}]", "jobs: []"),
            &["strategies.small.jobs", "no job serves \"a\""],
        ),
        (
            SIMPLE.replace("    serves: a\n", "    serves: nothing\n"),
            &["strategies.small.serves", "nothing"],
        ),
        (
            SIMPLE.replace("weight: 1}", "weight: 1.5}"),
            &["strategies.big.products.b.derivedFrom[0].weight", "1.5"],
        ),
        (
            SIMPLE.replace("serviceLife: 100d\n", "serviceLife: 100d\nsweeps: {traffic: {from: 1/d}}\n"),
            &["sweeps.traffic"],
        ),
        (
            SIMPLE[..SIMPLE.find("  big:").unwrap()].to_owned(),
            &["strategies", "two or more"],
        ),
        (
            SIMPLE.replace("declared: 9kg}", "declared: 9kg\n"),
            &["line"],
        ),
        (
            SIMPLE.replace("products: {a: {type: model, lifetime: 100d, declared: 1kg}}",
                "products: {a: {type: model, lifetime: 100d, declared: 1kg, retraining: {interval: 1d, jobsPerInterval: 5}}}"),
            &["strategies.small.products.a.retraining", "declared on the strategy"],
        ),
    ];
    for (text, needles) in cases {
        let err = plan_error(&text);
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }
}

#[test]
fn missing_file_and_bad_arguments_exit_2() {
    let out = jobcarbon()
        .args(["plan", "/nonexistent/plan.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/plan.yaml"));
    let out = jobcarbon()
        .arg("plan")
        .arg(example())
        .args(["--sweep", "speed=1..2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sweep axis"));
}

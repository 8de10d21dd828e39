//! Every class of bad input makes `jobcarbon calc` exit 2 with `FILE: PATH: REASON`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use assert_cmd::Command;
use std::path::Path;

/// Write `yaml` to a temporary file, run calc on it, return (exit code, stderr, file path).
fn run(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, yaml).unwrap();
    run_on(&file)
}

fn run_on(file: &Path) -> (i32, String, String) {
    let output = Command::cargo_bin("jobcarbon")
        .unwrap()
        .arg("calc")
        .arg(file)
        .output()
        .unwrap();
    assert!(output.stdout.is_empty(), "no report on bad input");
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        file.display().to_string(),
    )
}

#[track_caller]
fn assert_error(yaml: &str, path: &str, reason: &str) {
    let (code, stderr, file) = run(yaml);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {file}: {path}")),
        "{stderr}"
    );
    assert!(stderr.contains(reason), "{stderr}");
}

const REGION: &str = "regions: {r: {intensity: 400}}\n";

#[test]
fn unknown_unit() {
    assert_error(
        &format!("{REGION}jobs:\n  - {{name: a, energy: 2 furlongs, duration: 5m, region: r}}\n"),
        "jobs[0].energy (line 3, column",
        "unknown energy unit \"furlongs\"",
    );
}

#[test]
fn unknown_reference() {
    assert_error(
        &format!(
            "{REGION}jobs:\n  - {{name: a, energy: 1kJ, duration: 5m, region: r}}\n  - {{name: b, serves: gpt, energy: 1kJ, duration: 5m, region: r}}\n"
        ),
        "jobs[1].serves: ",
        "unknown product \"gpt\"",
    );
}

#[test]
fn zero_lifetime() {
    assert_error(
        "systems: {s1: {embodied: 10kg, lifetime: 0y}}\n",
        "systems.s1.lifetime: ",
        "lifetime must be greater than zero",
    );
}

#[test]
fn negative_lifetime() {
    assert_error(
        "products: {m: {type: model, lifetime: -3y}}\n",
        "products.m.lifetime (line 1",
        "\"-3y\" is negative",
    );
}

#[test]
fn zero_duration() {
    assert_error(
        &format!("{REGION}jobs:\n  - {{name: a, energy: 1kJ, duration: 0s, region: r}}\n"),
        "jobs[0].duration: ",
        "duration must be greater than zero",
    );
}

#[test]
fn weight_outside_unit_interval() {
    assert_error(
        "products:\n  a: {type: model}\n  b: {type: model, derivedFrom: [{product: a, weight: 1.2}]}\n",
        "products.b.derivedFrom[0].weight: ",
        "outside [0, 1]",
    );
}

#[test]
fn lineage_cycle() {
    assert_error(
        "products:\n  a: {type: model, derivedFrom: [{product: c, weight: 0.1}]}\n  b: {type: model, derivedFrom: [{product: a, weight: 0.1}]}\n  c: {type: model, derivedFrom: [{product: b, weight: 0.1}]}\n",
        "products.a.derivedFrom[0].product: ",
        "lineage cycle: a -derivedFrom-> c -derivedFrom-> b -derivedFrom-> a",
    );
}

#[test]
fn unknown_key() {
    assert_error(
        &format!(
            "{REGION}jobs:\n  - {{name: a, energy: 1kJ, duration: 5m, region: r, sytem: s1}}\n"
        ),
        "jobs[0].sytem (line 3, column",
        "unknown field `sytem`",
    );
}

#[test]
fn malformed_yaml() {
    assert_error(
        "regions: {r: {intensity: 400}\njobs: []\n",
        "regions (line 2, column 1): ",
        "did not find expected",
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.yaml");
    let (code, stderr, file) = run_on(&file);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!("error: {file}: cannot read the file")),
        "{stderr}"
    );
}

//! `jobcarbon check-config`: the documented example passes; typos and bad values fail with
//! the file, the line and column, the path in the document and a reason.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::Write;

fn check(text: &str) -> assert_cmd::assert::Assert {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    let path = file.path().to_owned();
    let assert = Command::cargo_bin("jobcarbon")
        .expect("binary")
        .args(["check-config"])
        .arg(&path)
        .assert();
    drop(file);
    assert
}

#[test]
fn the_documented_example_is_valid() {
    Command::cargo_bin("jobcarbon")
        .expect("binary")
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/ledger.yaml"),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok"));
}

#[test]
fn a_typo_is_located() {
    check("interval: 30s\nenergy:\n  nodeIdel: even\n")
        .code(2)
        .stderr(predicate::str::contains(":3:"))
        .stderr(predicate::str::contains("energy.nodeIdel"))
        .stderr(predicate::str::contains("unknown field"));
}

#[test]
fn bad_values_are_located() {
    check("regions:\n  default: {pue: 1.1, intensity: 400}\nsystems:\n  - {match: {}, embodied: 3 bananas, lifetime: 4y}\n")
        .code(2)
        .stderr(predicate::str::contains("systems[0].embodied"))
        .stderr(predicate::str::contains("bananas"));
    check("energy: {nodeIdle: sometimes}\n")
        .code(2)
        .stderr(predicate::str::contains("energy.nodeIdle"))
        .stderr(predicate::str::contains("sometimes"));
    check("defaultRegion: mars\n")
        .code(2)
        .stderr(predicate::str::contains("defaultRegion"))
        .stderr(predicate::str::contains("mars"));
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    Command::cargo_bin("jobcarbon")
        .expect("binary")
        .args(["check-config", "/nonexistent/jobcarbon.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/jobcarbon.yaml"));
}

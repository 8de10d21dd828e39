//! `jobcarbon ledger` with `state.file`: a checkpoint that cannot be trusted (and has no good
//! previous generation) stops the binary with the file named and `--reset-state` suggested;
//! with `--reset-state` it moves the file aside and starts serving.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A kubeconfig pointing at a closed port: the client is built (no connection is made before
/// the checkpoint is checked), the watchers then retry in the background.
fn kubeconfig(dir: &Path) -> std::path::PathBuf {
    jobcarbon_testkit::kube_api::write_kubeconfig(dir, "http://127.0.0.1:1")
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("ledger-state.json");
    // A truncated checkpoint (a write cut short by hand; the ledger itself writes atomically).
    std::fs::write(&state, b"{\"version\":1,\"last_bo").expect("write state");
    let config = dir.path().join("ledger.yaml");
    std::fs::write(
        &config,
        format!("interval: 30s\nstate:\n  file: {}\n", state.display()),
    )
    .expect("write config");
    (dir, config, state)
}

fn ledger(dir: &Path, config: &Path, reset: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobcarbon"));
    cmd.arg("ledger")
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig(dir))
        .env_remove("JOBCARBON_LEADER_ELECTION_LEASE")
        .env("RUST_LOG", "info");
    if reset {
        cmd.arg("--reset-state");
    }
    cmd
}

#[test]
fn a_truncated_state_file_stops_the_ledger_with_the_file_named() {
    let (dir, config, state) = setup();
    let output = ledger(dir.path(), &config, false)
        .output()
        .expect("run jobcarbon ledger");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains(&state.display().to_string()),
        "the file must be named: {stderr}"
    );
    assert!(stderr.contains("--reset-state"), "{stderr}");
    // Nothing was touched: the operator decides.
    assert_eq!(
        std::fs::read(&state).expect("state still there"),
        b"{\"version\":1,\"last_bo"
    );
}

#[test]
fn reset_state_moves_the_file_aside_and_starts() {
    let (dir, config, state) = setup();
    let mut child = ledger(dir.path(), &config, true)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jobcarbon ledger");
    // Still running after a few seconds: it started (a refusal exits at once).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut exited = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if exited.is_none() {
        child.kill().expect("kill");
    }
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(exited.is_none(), "exited early ({exited:?}): {stderr}");
    assert!(!state.exists(), "the untrusted file is moved aside");
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ledger-state.json") && n != "ledger-state.json")
        .collect();
    assert!(!moved.is_empty(), "a quarantined copy is kept: {stderr}");
}

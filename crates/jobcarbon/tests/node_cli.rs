//! `jobcarbon node --listen 127.0.0.1:PORT` on a machine without an NVIDIA driver: it starts,
//! reports zero GPUs, `/healthz` answers 200 and `promtool check metrics` accepts `/metrics`.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let code = r.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, r.split_once("\r\n\r\n")?.1.to_owned()))
}

#[test]
fn node_agent_without_driver_serves_zero_gpus_and_stays_healthy() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin("jobcarbon"))
        .args(["node", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--pod-resources-socket")
        .arg(dir.path().join("kubelet.sock"))
        .args(["--interval", "0.2s"])
        // No NVIDIA driver here; make sure a stray library is not found either.
        .env("LD_LIBRARY_PATH", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        assert!(
            Instant::now() < deadline,
            "agent did not serve /metrics in time"
        );
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("agent exited early: {status}");
        }
        match get(port, "/metrics") {
            Some((200, body)) if body.contains("jobcarbon_node_errors_total") => break body,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(metrics.contains("jobcarbon_node_gpus 0\n"), "{metrics}");
    assert!(metrics.contains("jobcarbon_node_nvml_up 0\n"), "{metrics}");
    assert!(metrics.contains(r#"kind="no_driver""#), "{metrics}");

    let (code, body) = get(port, "/healthz").unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));

    let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(&metrics).unwrap();
    assert!(lint.passed, "promtool check metrics: {}", lint.output);

    // Still healthy after several failed samples.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(get(port, "/healthz").map(|(c, _)| c), Some(200));
    let _ = child.0.kill();
    let mut log = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(log.contains("no NVIDIA driver"), "{log}");
}

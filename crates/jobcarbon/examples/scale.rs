//! Whole-process scale harness (issue "Ledger v2", docs/performance.md): the testkit's fake API
//! server serving N pods on N/100 nodes (in the watcher's pages of 500), a Kepler v0.11-like target with one pod series per pod,
//! a real Prometheus scraping it and the ledger, and `jobcarbon ledger` with the chart's default
//! config (GPU energy off: the nodes have no GPUs). Prints interval time, /metrics scrape time, body size, series count and peak RSS.
//!
//!     scripts/scale.sh 20000        # builds the release binary, then runs this example
//!
//! The pods are a mix: 60 % single-pod Jobs (training, fine-tuning, data preparation) and 40 %
//! Deployment replicas (inference, four replicas per Deployment, in its namespace with its
//! labels). `SCALE_DUMP=FILE` keeps the last `/metrics` body (and the ledger's log as
//! `FILE.ledger.log`); `SCALE_LEDGER_LOG=FILTER` sets the
//! ledger's log filter (e.g. `jobcarbon_ledger::runner=debug` for each interval's phase times).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a harness that cannot start should stop

use jobcarbon_testkit::kube_api::{FakeKubeApi, WatchScript, list, write_kubeconfig};
use jobcarbon_testkit::prometheus::PromServer;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INTERVAL: u64 = 15;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The workload number of pod `i`: the pod for a Job, its Deployment for a replica. A
/// Deployment's replicas share its namespace and template labels.
fn workload_of(i: usize) -> usize {
    if i % 10 <= 5 { i } else { i / 10 }
}

fn pod(i: usize, nodes: usize) -> Value {
    let w = workload_of(i);
    let (phase, owner) = match i % 10 {
        0..=5 => (
            ["training", "fine-tuning", "data-prep"][i % 3],
            json!({"apiVersion": "batch/v1", "kind": "Job", "name": format!("job-{i}"),
                   "uid": format!("job-uid-{i}"), "controller": true}),
        ),
        _ => (
            "inference",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "name": format!("serve-{}-5f9c8", i / 10), "uid": format!("rs-uid-{}", i / 10),
                   "controller": true}),
        ),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("pod-{i}"), "namespace": format!("team-{}", w % 50),
            "uid": format!("pod-uid-{i}"), "resourceVersion": "1",
            "creationTimestamp": "2026-12-01T00:00:00Z",
            "labels": {"jobcarbon.io/phase": phase,
                       "jobcarbon.io/product": format!("model-{}", w % 20),
                       "pod-template-hash": "5f9c8"},
            "ownerReferences": [owner]
        },
        "spec": {"nodeName": format!("node-{}", i % nodes),
                 "containers": [{"name": "main", "resources": {"requests": {"cpu": "500m"}}}]},
        "status": {"phase": "Running"}
    })
}

fn node(n: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{n}"), "resourceVersion": "1",
                     "labels": {"topology.kubernetes.io/region": "us-south"}},
        "status": {"allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110"}}
    })
}

/// Kepler v0.11's exposition at `t`: 10 W per pod, 100 W idle per node.
fn kepler_body(pods: usize, nodes: usize, origin: f64, t: f64) -> String {
    let dt = t - origin;
    let mut out = String::with_capacity(pods * 180);
    out.push_str("kepler_build_info{version=\"v0.11.4\"} 1\n");
    for n in 0..nodes {
        let on_node = pods / nodes;
        let active = 10.0 * dt * on_node as f64;
        let idle = 100.0 * dt;
        for (name, v) in [
            ("kepler_node_cpu_active_joules_total", active),
            ("kepler_node_cpu_idle_joules_total", idle),
            ("kepler_node_cpu_joules_total", active + idle),
        ] {
            out.push_str(&format!(
                "{name}{{node_name=\"node-{n}\",path=\"aggregated-package\",zone=\"package\"}} {v}\n"
            ));
        }
    }
    for i in 0..pods {
        out.push_str(&format!(
            "kepler_pod_cpu_joules_total{{node_name=\"node-{}\",pod_id=\"pod-uid-{i}\",pod_name=\"pod-{i}\",pod_namespace=\"team-{}\",state=\"running\",zone=\"package\"}} {}\n",
            i % nodes,
            workload_of(i) % 50,
            10.0 * dt
        ));
    }
    out
}

fn serve_kepler(pods: usize, nodes: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let origin = now();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = kepler_body(pods, nodes, origin, now());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

async fn fake_api(pods: usize, nodes: usize) -> FakeKubeApi {
    let api = FakeKubeApi::start().await.unwrap();
    let items = (0..pods).map(|i| pod(i, nodes)).collect();
    api.push_list("/api/v1/pods", list("v1", "PodList", "2", items));
    api.push_watch("/api/v1/pods", WatchScript::hang(vec![]));
    let items = (0..nodes).map(node).collect();
    api.push_list("/api/v1/nodes", list("v1", "NodeList", "2", items));
    api.push_watch("/api/v1/nodes", WatchScript::hang(vec![]));
    api.push_list(
        "/apis/batch/v1/jobs",
        list("batch/v1", "JobList", "2", vec![]),
    );
    api.push_watch("/apis/batch/v1/jobs", WatchScript::hang(vec![]));
    api
}

/// The chart's default ledger config with this Prometheus and interval, no checkpoint file.
fn chart_config(dir: &Path, prom_url: &str) -> std::path::PathBuf {
    let config = jobcarbon_testkit::chart_ledger_config()
        .replace("interval: 30s", &format!("interval: {INTERVAL}s"))
        // CPU-only nodes: no dcgm-exporter to wait for.
        .replace("gpu: dcgm", "gpu: off")
        .replace(
            "file: /var/lib/jobcarbon/ledger.ckpt",
            &format!("file: {}", dir.join("ledger.ckpt").display()),
        )
        .replace(
            "url: http://prometheus-operated.monitoring.svc:9090",
            &format!("url: {prom_url}"),
        );
    let path = dir.join("ledger.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

fn start_ledger(dir: &Path, api_url: &str, port: u16) -> Child {
    let bin = std::env::var("JOBCARBON_BIN").unwrap_or_else(|_| "target/release/jobcarbon".into());
    Command::new(bin)
        .args(["ledger", "--config"])
        .arg(dir.join("ledger.yaml"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--ledger-id",
            "scale/test",
        ])
        .env("KUBECONFIG", write_kubeconfig(dir, api_url))
        .env_remove("JOBCARBON_LEADER_ELECTION_LEASE")
        .env(
            "RUST_LOG",
            std::env::var("SCALE_LEDGER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("ledger.log")).unwrap())
        .spawn()
        .expect("JOBCARBON_BIN (default target/release/jobcarbon) must be the release binary")
}

/// One scrape of the ledger's /metrics: (seconds, bytes, series, histogram sum, count).
fn scrape(port: u16) -> Option<(f64, usize, usize, f64, f64)> {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    let seconds = started.elapsed().as_secs_f64();
    // SCALE_DUMP=FILE keeps the last body, to see which series there are.
    if let Ok(path) = std::env::var("SCALE_DUMP") {
        let _ = std::fs::write(path, &body);
    }
    // Every series carries the ledger's identity label: `name{ledger="…"} value`.
    let value = |name: &str| {
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(['{', ' ']))
            })
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let series = body.lines().filter(|l| l.starts_with("jobcarbon_")).count();
    let (sum, count) = (
        value("jobcarbon_interval_duration_seconds_sum"),
        value("jobcarbon_interval_duration_seconds_count"),
    );
    Some((seconds, body.len(), series, sum, count))
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .map_or(0.0, |kb: f64| kb / 1024.0)
}

/// Waits for `intervals` booked intervals after the first, then measures three scrapes.
fn measure(port: u16, pid: u32, intervals: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(INTERVAL * (intervals as u64 + 8) + 120);
    let mut first = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "the ledger booked too few intervals"
        );
        std::thread::sleep(Duration::from_secs(2));
        let Some((_, _, _, sum, count)) = scrape(port) else {
            continue;
        };
        match first {
            None if count >= 1.0 => first = Some((sum, count)),
            Some((s0, c0)) if count - c0 >= intervals => {
                let scrapes: Vec<_> = (0..3).filter_map(|_| scrape(port)).collect();
                let best = scrapes.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
                let (_, bytes, series, _, _) = scrapes[0];
                return format!(
                    "interval {:.3} s (mean of {}), scrape {best:.3} s, body {:.1} MB, {series} series, peak RSS {:.0} MiB",
                    (sum - s0) / (count - c0),
                    count - c0,
                    bytes as f64 / 1e6,
                    peak_rss_mib(pid)
                );
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let pods: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let nodes = (pods / 100).max(1);
    let kepler = serve_kepler(pods, nodes);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom = tokio::task::spawn_blocking(move || {
        PromServer::builder()
            .scrape(kepler, Duration::from_secs(INTERVAL))
            .scrape(format!("127.0.0.1:{port}"), Duration::from_secs(INTERVAL))
            .start()
    })
    .await
    .unwrap()
    .unwrap();
    let api = fake_api(pods, nodes).await;
    let dir = tempfile::tempdir().unwrap();
    chart_config(dir.path(), &prom.url());
    let mut ledger = start_ledger(dir.path(), api.url(), port);
    let pid = ledger.id();
    let report = tokio::task::spawn_blocking(move || measure(port, pid, 3.0)).await;
    let _ = ledger.kill();
    let _ = ledger.wait();
    if let Ok(path) = std::env::var("SCALE_DUMP") {
        let _ = std::fs::copy(dir.path().join("ledger.log"), format!("{path}.ledger.log"));
    }
    match report {
        Ok(line) => {
            let pages = api.list_count("/api/v1/pods");
            println!("{pods} pods on {nodes} nodes: {line}, pod list pages {pages}");
        }
        Err(e) => {
            let log = std::fs::read_to_string(dir.path().join("ledger.log")).unwrap_or_default();
            eprintln!("scale harness failed: {e}\n--- ledger log ---\n{log}");
            std::process::exit(1);
        }
    }
}

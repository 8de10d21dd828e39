//! Durable by default, through the real binary: `jobcarbon ledger` with the chart's default
//! config (deploy/jobcarbon.yaml's ConfigMap; only the Prometheus URL, the interval and the
//! checkpoint path changed), a real Prometheus scraping a Kepler-like target and both ledgers,
//! and the testkit's fake API server.
//!
//! Two ledgers book the same cluster side by side: `test/ref` runs uninterrupted, `test/victim`
//! is killed with SIGKILL and restarted without its checkpoint (a new pod: a new emptyDir).
//! The victim restores its own exported series from Prometheus, backfills the gap, and must
//! end with the reference's totals (within 1 %; measured ratios are printed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_testkit::fixture;
use jobcarbon_testkit::kube_api::{FakeKubeApi, WatchScript, list, write_kubeconfig};
use jobcarbon_testkit::prometheus::{History, PromServer};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INTERVAL: u64 = 5;

/// The two scenarios run one after the other: five ledgers and two Prometheus servers at once
/// would make the timing the test.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "gpu-node-a1",
            "resourceVersion": "1480200",
            "labels": {
                "kubernetes.io/hostname": "gpu-node-a1",
                "node.kubernetes.io/instance-type": "p4d.24xlarge",
                "topology.kubernetes.io/region": "us-south"
            }
        },
        "status": {
            "capacity": {"cpu": "96", "memory": "1152Gi", "nvidia.com/gpu": "2", "pods": "110"},
            "allocatable": {"cpu": "96", "memory": "1152Gi", "nvidia.com/gpu": "2", "pods": "110"}
        }
    })
}

/// The Kepler- and dcgm-exporter-like series (the chart's default config reads both): the
/// v0.11.4 Kepler fixture's running series and the dcgm-exporter fixture's GPU energy.
fn target_lines() -> Vec<String> {
    let dcgm = fixture("dcgm/dcgm-exporter-4.5.2-4.8.1-k8s-2xA100.prom");
    fixture("kepler/kepler-v0.11.4-gpu-node.prom")
        .lines()
        .chain(dcgm.lines().filter(|l| {
            l.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{")
                || l.starts_with("DCGM_FI_DEV_POWER_USAGE{")
        }))
        .filter(|l| !l.contains("state=\"terminated\"") && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The target's exposition at `t` (unix seconds): every counter at its fixture value times
/// 1 + (t − origin) / 600, i.e. growing by 1/600 of its fixture value per second.
fn target_body(lines: &[String], origin: f64, t: f64) -> String {
    let factor = 1.0 + (t - origin) / 600.0;
    lines
        .iter()
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let v: f64 = value.parse().ok()?;
            let counter = series.contains("_total") || series.contains("TOTAL_ENERGY");
            let v = if counter { v * factor } else { v };
            Some(format!("{series} {v}\n"))
        })
        .collect()
}

/// The target served over HTTP, its counters counted from `origin`.
fn kepler_target_from(origin: f64) -> String {
    let text = target_lines();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = respond(
                stream,
                &target_body(&text, origin, unix_ms() as f64 / 1000.0),
            );
        }
    });
    addr
}

/// The target as it was scraped every 15 s over `[from, to)`: history to load into
/// Prometheus, continuous with [`kepler_target_from`] of the same `origin`.
fn target_history(origin: f64, from: i64, to: i64) -> History {
    let lines = target_lines();
    let mut history = History::new();
    let mut t = from;
    while t < to {
        let body = target_body(&lines, origin, t as f64);
        history.exposition_at(&body, &[(t, 1.0)]).unwrap();
        t += 15;
    }
    history
}

fn respond(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf)?;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The chart's default ledger config (the rendered ConfigMap) with this test's Prometheus,
/// a short interval and a checkpoint in `dir`.
fn chart_config(dir: &Path, prom_url: &str, interval: u64) -> PathBuf {
    let mut config = jobcarbon_testkit::chart_ledger_config();
    for (from, to) in [
        ("interval: 30s", format!("interval: {interval}s")),
        (
            "url: http://prometheus-operated.monitoring.svc:9090",
            format!("url: {prom_url}"),
        ),
        (
            "file: /var/lib/jobcarbon/ledger.ckpt",
            format!("file: {}", dir.join("ledger.ckpt").display()),
        ),
    ] {
        assert!(
            config.contains(from),
            "chart config lacks {from:?}:\n{config}"
        );
        config = config.replace(from, &to);
    }
    let path = dir.join("ledger.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ledger {
    id: &'static str,
    /// `--test-clock-offset` (seconds; 0: the wall clock) and extra arguments for the next start.
    clock_offset: i64,
    extra_args: Vec<String>,
    /// With leader election: this replica's pod name.
    pod: Option<&'static str>,
    port: u16,
    dir: PathBuf,
    kubeconfig: PathBuf,
    child: Option<Child>,
}

impl Ledger {
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("log-{}", unix_ms()))).unwrap();
        // JOBCARBON_TEST_BIN: a copy of the binary under test, for a target dir shared with
        // builds of other branches.
        let bin = std::env::var("JOBCARBON_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_jobcarbon").to_owned());
        let child = Command::new(bin)
            .args(["ledger", "--config"])
            .arg(self.dir.join("ledger.yaml"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--ledger-id", self.id])
            .arg(format!("--test-clock-offset={}", self.clock_offset))
            .args(&self.extra_args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("JOBCARBON_LEADER_ELECTION_LEASE")
            .env_remove("JOBCARBON_POD_NAME")
            .envs(self.pod.iter().flat_map(|pod| {
                [
                    ("JOBCARBON_LEADER_ELECTION_LEASE", "jobcarbon-leader"),
                    ("JOBCARBON_POD_NAME", *pod),
                    ("JOBCARBON_POD_NAMESPACE", "test"),
                ]
            }))
            .env("RUST_LOG", "info")
            .env("JOBCARBON_LOG_JSON", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    /// SIGTERM, and wait for the exit (a graceful stop: final checkpoint, Lease released).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            c.wait().unwrap();
        }
    }

    /// The checkpoint file's modification time, if it exists.
    fn checkpoint_mtime(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.dir.join("ledger.ckpt"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Wait until the checkpoint is written after `after`; returns the new mtime.
    fn next_checkpoint(&self, after: Option<std::time::SystemTime>) -> std::time::SystemTime {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(m) = self.checkpoint_mtime()
                && after.is_none_or(|a| m > a)
            {
                return m;
            }
            assert!(Instant::now() < deadline, "no checkpoint: {}", self.logs());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn metrics(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out.split_once("\r\n\r\n")?.1.to_owned())
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("log-") {
                all += &std::fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        all
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Σ of a family's samples (`name{…} value` lines).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn last_booked(text: &str) -> f64 {
    sum(text, "jobcarbon_last_interval_timestamp_seconds")
}

/// Both ledgers' expositions at one and the same booked interval, at or after `after`.
fn same_interval(a: &Ledger, b: &Ledger, after: f64, timeout: Duration) -> (String, String) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let (Some(x), Some(y), Some(x2)) = (a.metrics(), b.metrics(), a.metrics()) {
            let t = last_booked(&x);
            if t >= after && t == last_booked(&y) && t == last_booked(&x2) {
                return (x, y);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "ledgers never at one interval after {after}:\n{}\n{}",
        a.logs(),
        b.logs()
    );
}

fn ratio(victim: f64, reference: f64) -> f64 {
    assert!(reference > 0.0, "the reference booked nothing");
    victim / reference
}

/// A real Prometheus scraping the Kepler-like target and `ports`, and the fake API server with
/// the fixture's pods.
struct Setup {
    prom: PromServer,
    api: FakeKubeApi,
    root: tempfile::TempDir,
    interval: u64,
}

async fn setup(ports: Vec<u16>) -> Setup {
    setup_with_history(ports, None, INTERVAL).await
}

/// [`setup`] with the target's past: `Some(seconds)` loads that much scraped history, so a
/// ledger whose clock runs behind books the past like a live one.
async fn setup_with_history(ports: Vec<u16>, past: Option<i64>, interval: u64) -> Setup {
    let now = (unix_ms() / 1000) as i64;
    let origin = (now - past.unwrap_or(0)) as f64;
    let kepler = kepler_target_from(origin);
    let history = past.map(|p| target_history(origin, now - p, now));
    let prom = tokio::task::spawn_blocking(move || {
        let mut builder = PromServer::builder().scrape(kepler, Duration::from_secs(1));
        if let Some(h) = &history {
            builder = builder.history(h);
        }
        for port in ports {
            builder = builder.scrape(format!("127.0.0.1:{port}"), Duration::from_secs(1));
        }
        builder.start()
    })
    .await
    .unwrap()
    .unwrap();
    let pods: serde_json::Value =
        serde_json::from_str(&fixture("kube/podlist-gpu-node.json")).unwrap();
    let api = FakeKubeApi::start().await.unwrap();
    let items = pods["items"].as_array().unwrap().clone();
    api.push_list("/api/v1/pods", list("v1", "PodList", "1480301", items));
    api.push_watch("/api/v1/pods", WatchScript::hang(vec![]));
    api.push_list(
        "/api/v1/nodes",
        list("v1", "NodeList", "1480301", vec![node()]),
    );
    api.push_watch("/api/v1/nodes", WatchScript::hang(vec![]));
    api.push_list(
        "/apis/batch/v1/jobs",
        list("batch/v1", "JobList", "1", vec![]),
    );
    api.push_watch("/apis/batch/v1/jobs", WatchScript::hang(vec![]));
    Setup {
        prom,
        api,
        root: tempfile::tempdir().unwrap(),
        interval,
    }
}

impl Setup {
    fn ledger(&self, id: &'static str, port: u16, pod: Option<&'static str>) -> Ledger {
        let name = format!(
            "{}-{}-{port}",
            id.replace('/', "-"),
            pod.unwrap_or("single")
        );
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        chart_config(&dir, &self.prom.url(), self.interval);
        Ledger {
            id,
            clock_offset: 0,
            extra_args: Vec::new(),
            pod,
            port,
            kubeconfig: write_kubeconfig(&dir, self.api.url()),
            dir,
            child: None,
        }
    }
}

fn assert_within_one_percent(victim: &str, reference: &str, logs: &str, what: &str) {
    for family in [
        "jobcarbon_workload_asce_grams_total",
        "jobcarbon_workload_energy_joules_total",
        "jobcarbon_unallocated_grams_total",
    ] {
        let q = ratio(sum(victim, family), sum(reference, family));
        println!("{what}: {family} restored/uninterrupted = {q:.9}");
        assert!((q - 1.0).abs() < 0.01, "{what}: {family} ratio {q}\n{logs}");
    }
}

/// The exposition once the ledger serves (it may still be starting).
fn serving(l: &Ledger) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(text) = l.metrics() {
            return text;
        }
        assert!(Instant::now() < deadline, "not serving: {}", l.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `from` label of `jobcarbon_state_restored_info`.
fn restored_from(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("jobcarbon_state_restored_info{"))
        .find_map(|l| Some(l.split("from=\"").nth(1)?.split('"').next()?.to_owned()))
        .unwrap_or_default()
}

fn is_leader(l: &Ledger) -> bool {
    l.metrics().is_some_and(|m| {
        m.lines()
            .filter(|x| x.starts_with("jobcarbon_leader{") || x.starts_with("jobcarbon_leader "))
            .any(|x| x.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) == Some(1.0))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_standby_continues_from_prometheus_within_one_percent() {
    let _serial = SERIAL.lock().await;
    let (ref_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let s = setup(vec![ref_port, a_port, b_port]).await;
    let mut reference = s.ledger("test/ref", ref_port, None);
    let mut a = s.ledger("test/ha", a_port, Some("ledger-a"));
    let mut b = s.ledger("test/ha", b_port, Some("ledger-b"));
    let run = tokio::task::spawn_blocking(move || {
        reference.start();
        a.start();
        let (r, _) = same_interval(&reference, &a, 1.0, Duration::from_secs(60));
        assert!(is_leader(&a), "the first replica leads: {}", a.logs());
        b.start();
        let (_, v) = same_interval(
            &reference,
            &a,
            last_booked(&r) + 4.0 * INTERVAL as f64,
            Duration::from_secs(60),
        );
        let standby = serving(&b);
        assert!(!is_leader(&b), "the second replica stands by");
        assert_eq!(sum(&standby, "jobcarbon_workload_asce_grams_total"), 0.0);
        assert!(
            !b.dir.join("ledger.ckpt").exists(),
            "a standby writes no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(1500));
        a.kill9();
        // The Lease expires after 15 s; the standby takes over and restores the leader's books.
        let (r, v2) = same_interval(
            &reference,
            &b,
            last_booked(&v) + 6.0 * INTERVAL as f64,
            Duration::from_secs(120),
        );
        (r, v2, b.logs())
    });
    let (r, v, logs) = run.await.unwrap();
    assert!(
        restored_from(&v) == "prometheus",
        "the new leader restored from Prometheus: {logs}"
    );
    assert_within_one_percent(&v, &r, &logs, "failover");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_a_new_pod_restore_from_prometheus_within_one_percent() {
    let _serial = SERIAL.lock().await;
    let (ref_port, victim_port) = (free_port(), free_port());
    let s = setup(vec![ref_port, victim_port]).await;
    let mut reference = s.ledger("test/ref", ref_port, None);
    let mut victim = s.ledger("test/victim", victim_port, None);
    let api_task = tokio::task::spawn_blocking(move || {
        reference.start();
        victim.start();
        // Both book the same baseline interval, then run side by side.
        let (r, v) = same_interval(&reference, &victim, 1.0, Duration::from_secs(60));
        let baseline = last_booked(&r);
        assert_eq!(baseline, last_booked(&v));
        let (_, v) = same_interval(
            &reference,
            &victim,
            baseline + 4.0 * INTERVAL as f64,
            Duration::from_secs(60),
        );
        assert!(sum(&v, "jobcarbon_workload_asce_grams_total") > 0.0);
        // Prometheus has scraped the victim's latest state; then it dies with SIGKILL.
        std::thread::sleep(Duration::from_millis(1500));
        victim.kill9();
        let killed_at = last_booked(&v);
        // Down for three intervals; a new pod has a new (empty) state volume.
        std::thread::sleep(Duration::from_secs(3 * INTERVAL));
        std::fs::remove_file(victim.dir.join("ledger.ckpt")).unwrap();
        let _ = std::fs::remove_file(victim.dir.join("ledger.ckpt.prev"));
        victim.start();
        let (r, v) = same_interval(
            &reference,
            &victim,
            killed_at + 6.0 * INTERVAL as f64,
            Duration::from_secs(90),
        );
        (r, v, victim.logs())
    });
    let (r, v, logs) = api_task.await.unwrap();
    assert!(
        restored_from(&v) == "prometheus",
        "restored from Prometheus: {logs}"
    );
    assert!(v.contains("ledger=\"test/victim\""), "the identity label");
    assert_within_one_percent(&v, &r, &logs, "kill -9, new pod");
    drop(s);
}

/// `kill -9` right after a checkpoint is written and right before the next one, each time
/// restarted as a container restart (the emptyDir and its checkpoint survive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_and_right_before_a_checkpoint_within_one_percent() {
    let _serial = SERIAL.lock().await;
    let (ref_port, victim_port) = (free_port(), free_port());
    let s = setup(vec![ref_port, victim_port]).await;
    let mut reference = s.ledger("test/ref", ref_port, None);
    let mut victim = s.ledger("test/victim", victim_port, None);
    let run = tokio::task::spawn_blocking(move || {
        reference.start();
        victim.start();
        let (r, _) = same_interval(&reference, &victim, 1.0, Duration::from_secs(60));
        let mut after = last_booked(&r) + 2.0 * INTERVAL as f64;
        let mut measured = Vec::new();
        for point in ["after", "before"] {
            same_interval(&reference, &victim, after, Duration::from_secs(60));
            let written = victim.next_checkpoint(victim.checkpoint_mtime());
            if point == "before" {
                // The next write follows the next grid boundary's booking.
                let next = written + Duration::from_secs(INTERVAL);
                let wait = next
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
                    .saturating_sub(Duration::from_millis(150));
                std::thread::sleep(wait);
            }
            let killed_at = last_booked(&victim.metrics().unwrap_or_default());
            victim.kill9();
            if point == "before" {
                assert_eq!(
                    victim.checkpoint_mtime(),
                    Some(written),
                    "killed before the write"
                );
            }
            std::thread::sleep(Duration::from_secs(2 * INTERVAL));
            victim.start();
            let (r, v) = same_interval(
                &reference,
                &victim,
                killed_at + 4.0 * INTERVAL as f64,
                Duration::from_secs(90),
            );
            after = last_booked(&r) + INTERVAL as f64;
            measured.push((point, r, v));
        }
        (measured, victim.logs())
    });
    let (measured, logs) = run.await.unwrap();
    for (point, r, v) in measured {
        assert_eq!(restored_from(&v), "checkpoint", "{point}: {logs}");
        assert_within_one_percent(&v, &r, &logs, &format!("kill -9 {point} a checkpoint"));
    }
    drop(s);
}

/// A rolling upgrade: the new replica starts as a standby, the old leader is stopped with
/// SIGTERM (it releases the Lease), the new one takes over and continues from the old one's
/// exported books: nothing booked twice, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_hands_over_without_double_booking() {
    let _serial = SERIAL.lock().await;
    let (ref_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let s = setup(vec![ref_port, a_port, b_port]).await;
    let mut reference = s.ledger("test/ref", ref_port, None);
    let mut old = s.ledger("test/ha", a_port, Some("ledger-old"));
    let mut new = s.ledger("test/ha", b_port, Some("ledger-new"));
    let run = tokio::task::spawn_blocking(move || {
        reference.start();
        old.start();
        let (r, _) = same_interval(&reference, &old, 1.0, Duration::from_secs(60));
        let (_, v) = same_interval(
            &reference,
            &old,
            last_booked(&r) + 3.0 * INTERVAL as f64,
            Duration::from_secs(60),
        );
        new.start();
        let standby = serving(&new);
        assert!(
            !is_leader(&new),
            "the new replica stands by until the old one goes"
        );
        assert_eq!(sum(&standby, "jobcarbon_workload_asce_grams_total"), 0.0);
        std::thread::sleep(Duration::from_millis(1500));
        old.stop();
        assert!(
            old.logs().contains("released the leader Lease"),
            "graceful stop: {}",
            old.logs()
        );
        let (r, v2) = same_interval(
            &reference,
            &new,
            last_booked(&v) + 4.0 * INTERVAL as f64,
            Duration::from_secs(90),
        );
        (r, v2, new.logs())
    });
    let (r, v, logs) = run.await.unwrap();
    assert_eq!(restored_from(&v), "prometheus", "{logs}");
    assert_within_one_percent(&v, &r, &logs, "rolling upgrade");
    drop(s);
}

/// A ledger started `ahead` seconds later than now with `lookback`: its own series are older
/// than the lookback, so it reports that nothing could be restored (`from="none"`, a warning).
fn assert_nothing_restorable(late: &mut Ledger, ahead: i64, lookback: &str) {
    late.clock_offset = ahead;
    late.extra_args = vec![format!("--restore-lookback={lookback}")];
    late.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while restored_from(&serving(late)) != "none" {
        assert!(Instant::now() < deadline, "{}", late.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    late.kill9();
    let logs = late.logs();
    assert!(
        logs.contains("no exported state of this ledger in Prometheus within the lookback"),
        "{logs}"
    );
}

/// Two hours of downtime without waiting two hours: both ledgers run with their clock two
/// hours behind (`--test-clock-offset`, test only) over Prometheus history of those hours,
/// then restart on the wall clock. The reference restarts from its checkpoint (the exact
/// option, booking every missed interval as a live run would have); the victim restarts as a
/// new pod, restores from Prometheus, is killed with SIGKILL in the middle of its backfill and
/// restarted once more. A ledger whose clock says its series are older than its lookback
/// reports that nothing could be restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hours_down_with_kill_9_during_the_backfill_within_one_percent() {
    let _serial = SERIAL.lock().await;
    const GAP: i64 = 7200;
    const STEP: u64 = 10;
    let (ref_port, victim_port, late_port) = (free_port(), free_port(), free_port());
    let s = setup_with_history(vec![ref_port, victim_port], Some(GAP + 300), STEP).await;
    let mut reference = s.ledger("test/ref", ref_port, None);
    let mut victim = s.ledger("test/victim", victim_port, None);
    let mut late = s.ledger("test/victim", late_port, None);
    let run = tokio::task::spawn_blocking(move || {
        reference.clock_offset = -GAP;
        victim.clock_offset = -GAP;
        reference.start();
        victim.start();
        let (r, _) = same_interval(&reference, &victim, 1.0, Duration::from_secs(60));
        // Three intervals: the restore searches scrapes on a 15 s grid, so the victim's
        // series must outlive one step of it.
        let (_, v) = same_interval(
            &reference,
            &victim,
            last_booked(&r) + 3.0 * STEP as f64,
            Duration::from_secs(60),
        );
        std::thread::sleep(Duration::from_millis(1500));
        reference.kill9();
        victim.kill9();
        let down_at = last_booked(&v);

        // Seen from two hours later, with a one-hour lookback, the series are gone.
        assert_nothing_restorable(&mut late, GAP, "1h");

        // Back on the wall clock: two hours to backfill.
        reference.clock_offset = 0;
        victim.clock_offset = 0;
        std::fs::remove_file(victim.dir.join("ledger.ckpt")).unwrap();
        let _ = std::fs::remove_file(victim.dir.join("ledger.ckpt.prev"));
        reference.start();
        victim.start();
        // SIGKILL as soon as the backfill is seen under way.
        let deadline = Instant::now() + Duration::from_secs(60);
        let killed_at = loop {
            let t = victim.metrics().map(|m| last_booked(&m)).unwrap_or(0.0);
            if t > down_at {
                break t;
            }
            assert!(Instant::now() < deadline, "no backfill: {}", victim.logs());
            std::thread::sleep(Duration::from_millis(20));
        };
        victim.kill9();
        let now = unix_ms() as f64 / 1000.0;
        assert!(
            now - killed_at > 600.0,
            "killed during the backfill ({killed_at} vs {now}, down at {down_at}): {}",
            victim.logs()
        );
        victim.start();
        let (r, v) = same_interval(&reference, &victim, now, Duration::from_secs(300));
        (r, v, victim.logs(), down_at, killed_at)
    });
    let (r, v, logs, down_at, killed_at) = run.await.unwrap();
    println!(
        "down at {down_at}, victim killed mid-backfill at booked {killed_at}, compared at {}",
        last_booked(&v)
    );
    assert!(logs.contains("backfilling the gap from history"), "{logs}");
    assert!(last_booked(&v) - down_at >= GAP as f64, "the gap is booked");
    assert_within_one_percent(&v, &r, &logs, "two hours down, kill -9 during the backfill");
    drop(s);
}

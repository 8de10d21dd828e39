//! `jobcarbon demo` starts, becomes ready within seconds and serves every metric family of
//! DESIGN §8, promtool-clean, with ASCe = Σ terms per workload.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Demo {
    child: Child,
    addr: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(speed: &str) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobcarbon"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            speed,
            "--table-every",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start jobcarbon demo");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    for line in lines.by_ref().take(10) {
        let line = line.expect("demo stdout");
        if let Some(url) = line.trim().strip_prefix("metrics") {
            let url = url.trim();
            addr = url
                .strip_prefix("http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
                .map(str::to_owned);
            break;
        }
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Demo {
        child,
        addr: addr.expect("the demo prints its metrics URL"),
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
fn get(addr: &str, path: &str, accept: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn promtool_check(text: &str) -> String {
    let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(text).expect("promtool");
    assert!(lint.passed, "promtool failed: {}", lint.output);
    lint.output
}

const FAMILIES: [&str; 19] = [
    "jobcarbon_workload_energy_joules_total",
    "jobcarbon_workload_carbon_grams_total",
    "jobcarbon_workload_asce_grams_total",
    "jobcarbon_inference_carbon_grams_per_request",
    "jobcarbon_inference_requests_total",
    "jobcarbon_product_epc_grams",
    "jobcarbon_grid_intensity_grams_per_kwh",
    "jobcarbon_grid_intensity_staleness_seconds",
    "jobcarbon_pue",
    "jobcarbon_unallocated_grams_total",
    "jobcarbon_interval_duration_seconds_bucket",
    "jobcarbon_source_last_success_timestamp_seconds",
    "jobcarbon_last_interval_timestamp_seconds",
    "jobcarbon_tracked_pods",
    "jobcarbon_series",
    "jobcarbon_series_dropped_total",
    "jobcarbon_retraining_pool_grams",
    "jobcarbon_source_errors",
    "jobcarbon_interval_duration_seconds_count",
];

#[test]
fn demo_becomes_ready_and_serves_every_family() {
    // 10 simulated days per minute: inference (from 9 h) and re-training (12 h) within seconds.
    let demo = start_demo("14400");
    let started = Instant::now();
    wait_for("/readyz", Duration::from_secs(10), || {
        matches!(get(&demo.addr, "/readyz", "*/*"), Ok((200, _)))
    });
    assert!(started.elapsed() < Duration::from_secs(10));

    // Wait until the simulated day has reached inference with re-training drained into it.
    let mut text = String::new();
    wait_for(
        "inference with re-training",
        Duration::from_secs(60),
        || {
            text = get(&demo.addr, "/metrics", "*/*")
                .map(|(_, b)| b)
                .unwrap_or_default();
            text.lines().any(|l| {
                l.starts_with("jobcarbon_workload_carbon_grams_total")
                    && l.contains("term=\"retraining\"")
                    && l.contains("phase=\"inference\"")
                    && !l.ends_with(" 0.0")
            })
        },
    );
    for family in FAMILIES {
        // The source-errors family is declared even when no source has failed.
        let present = text.lines().any(|l| l.starts_with(family))
            || text.contains(&format!("# TYPE {family}"));
        assert!(present, "{family} missing");
    }
    let report = promtool_check(&text);
    assert!(report.trim().is_empty(), "promtool: {report}");

    asce_equals_sum_of_terms(&text);

    // Per-inference carbon is positive and finite.
    let per_request: f64 = text
        .lines()
        .find(|l| l.starts_with("jobcarbon_inference_carbon_grams_per_request{"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .expect("a per-request gauge");
    assert!(per_request.is_finite() && per_request > 0.0);

    // The cloud VM without a meter (cpu-1) is estimated and says so; the GPU nodes are not.
    let energy_lines = |node_pod: &str, source: &str| {
        text.lines()
            .filter(|l| l.starts_with("jobcarbon_workload_energy_joules_total{"))
            .filter(|l| l.contains(node_pod) && l.contains(&format!("source=\"{source}\"")))
            .filter(|l| l.contains("component=\"cpu\""))
            .count()
    };
    assert!(
        energy_lines("workload=\"StatefulSet/prometheus\"", "estimated") > 0,
        "{text}"
    );
    assert_eq!(
        energy_lines("workload=\"StatefulSet/prometheus\"", "measured"),
        0
    );

    // Prometheus asking for OpenMetrics gets it.
    let (status, om) = get(
        &demo.addr,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .expect("OpenMetrics scrape");
    assert_eq!(status, 200);
    assert!(om.trim_end().ends_with("# EOF"));

    // The JSON API agrees.
    let (status, body) = get(&demo.addr, "/api/v1/products/distilbert", "*/*").expect("product");
    assert_eq!(status, 200);
    let product: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(product["epc_g"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(product["inherited_g"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(product["retraining_deposited_g"].as_f64().unwrap_or(0.0) > 0.0);
    let (status, body) = get(&demo.addr, "/api/v1/workloads", "*/*").expect("workloads");
    assert_eq!(status, 200);
    let workloads: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        workloads["workloads"]
            .as_array()
            .is_some_and(|w| w.len() >= 6),
        "live and recently retired workloads"
    );
    let prometheus = workloads["workloads"]
        .as_array()
        .and_then(|w| w.iter().find(|x| x["pod"] == "prometheus-0"))
        .expect("the monitoring pod");
    assert_eq!(prometheus["energy_source"]["cpu"], "estimated");
}

/// ASCe equals the sum of terms for every workload series.
fn asce_equals_sum_of_terms(text: &str) {
    let mut terms: BTreeMap<String, f64> = BTreeMap::new();
    let mut asce: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(labels) = series.strip_prefix("jobcarbon_workload_carbon_grams_total") {
            let key = labels.split(",term=").next().unwrap_or_default().to_owned();
            *terms.entry(key).or_default() += value;
        } else if let Some(labels) = series.strip_prefix("jobcarbon_workload_asce_grams_total") {
            asce.insert(labels.trim_end_matches('}').to_owned(), value);
        }
    }
    // Finished workloads have retired; the running ones (re-training, serving) remain.
    assert!(asce.len() >= 2, "{asce:?}");
    for (key, total) in &asce {
        let sum = terms.get(key).copied().unwrap_or(f64::NAN);
        assert!(
            (total - sum).abs() <= 1e-9 * total.max(1.0),
            "{key}: {total} vs {sum}"
        );
    }
}

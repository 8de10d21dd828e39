//! `/api/v1/allocation` over the demo's whole life agrees with `/metrics`, and `jobcarbon
//! report` renders it in every format, with charts.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

fn start_demo() -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobcarbon"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "14400",
            "--table-every",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start jobcarbon demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = lines
        .by_ref()
        .take(10)
        .map_while(Result::ok)
        .find_map(|l| {
            let url = l.trim().strip_prefix("metrics")?.trim().to_owned();
            Some(
                url.strip_prefix("http://")?
                    .strip_suffix("/metrics")?
                    .to_owned(),
            )
        })
        .expect("the demo prints its metrics URL");
    std::thread::spawn(move || for _ in lines {});
    Demo { child, addr }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut out = String::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
    } else {
        out = body.to_owned();
    }
    (status, out)
}

/// Σ of the samples of `family` in an exposition.
fn sum_of(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or(0.0)
}

fn report(addr: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jobcarbon"))
        .arg("report")
        .args(["--url", &format!("http://{addr}")])
        .args(args)
        .output()
        .expect("run jobcarbon report");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn allocation_matches_metrics_and_report_renders_every_format() {
    let demo = start_demo();
    // Two simulated days: pre-training, distillation, inference and a re-training.
    let start = Instant::now();
    let epoch = 1_767_225_600.0;
    loop {
        let (_, text) = get(&demo.addr, "/metrics");
        if gauge(&text, "jobcarbon_last_interval_timestamp_seconds") >= epoch + 2.0 * 86_400.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the demo is too slow"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The whole life: Σ workload ASCe + Σ unallocated, within 0.1 % (the demo books on
    // between the two requests: about 0.02 % of two days per interval).
    let mut last = String::new();
    let agreed = (0..5).any(|_| {
        let (status, body) = get(
            &demo.addr,
            "/api/v1/allocation?window=0,4102444800&aggregate=phase",
        );
        assert_eq!(status, 200, "{body}");
        let (_, text) = get(&demo.addr, "/metrics");
        let a: serde_json::Value = serde_json::from_str(&body).unwrap();
        let total = a["total"]["asce_g"].as_f64().unwrap();
        let metrics = sum_of(&text, "jobcarbon_workload_asce_grams_total")
            + sum_of(&text, "jobcarbon_unallocated_grams_total");
        let items: f64 = a["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["asce_g"].as_f64().unwrap())
            .sum();
        let unallocated: f64 = a["unallocated"]
            .as_object()
            .unwrap()
            .values()
            .map(|g| g.as_f64().unwrap())
            .sum();
        assert!(
            (items + unallocated - total).abs() <= 1e-9 * total,
            "Σ items + unallocated = total"
        );
        last = format!("allocation {total} g, metrics {metrics} g");
        total > 0.0 && (total - metrics).abs() <= 1e-3 * metrics
    });
    assert!(agreed, "{last}");

    // Every format.
    let (code, table, err) = report(
        &demo.addr,
        &["--window", "2d", "--by", "namespace,workload"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("NAMESPACE"),
        "{table}"
    );
    assert!(
        table.contains("TOTAL") && table.contains("unallocated: node_idle"),
        "{table}"
    );
    let (code, csv, _) = report(
        &demo.addr,
        &["--window", "2d", "--by", "phase", "--format", "csv"],
    );
    assert_eq!(code, 0);
    assert!(
        csv.starts_with("start,end,phase,unallocated_reason,energy_j,"),
        "{csv}"
    );
    assert!(csv.lines().any(|l| l.contains(",inference,,")), "{csv}");
    let (code, json, _) = report(
        &demo.addr,
        &["--window", "1d", "--by", "product", "--format", "json"],
    );
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(json["total"]["asce_g"].as_f64().unwrap() > 0.0);
    let dir = tempfile::tempdir().unwrap();
    let bars = dir.path().join("bars.svg");
    let (code, md, _) = report(
        &demo.addr,
        &[
            "--window",
            "2d",
            "--by",
            "phase",
            "--format",
            "md",
            "--chart",
            bars.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    assert!(md.contains("| PHASE |") && md.contains("| --- |"), "{md}");
    let svg = std::fs::read_to_string(&bars).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let segments = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class").is_some())
        .count();
    assert!(segments >= 5, "{svg}");
    let lines = dir.path().join("lines.svg");
    let (code, _, err) = report(
        &demo.addr,
        &[
            "--window",
            "2d",
            "--by",
            "namespace",
            "--step",
            "6h",
            "--chart",
            lines.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let svg = std::fs::read_to_string(&lines).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let polylines: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .collect();
    assert!(polylines.len() >= 3, "{svg}");
    assert!(
        polylines[0].attribute("points").unwrap().split(' ').count() >= 8,
        "a point per step"
    );

    // Bad parameters: exit 2, naming the flag.
    let (code, _, err) = report(&demo.addr, &["--window", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("--window"), "{err}");
    let (code, _, err) = report(&demo.addr, &["--by", "node"]);
    assert_eq!(code, 2);
    assert!(err.contains("--by"), "{err}");
    let (code, _, _) = report("127.0.0.1:1", &[]);
    assert_eq!(code, 1, "unreachable ledger");

    // The lineage the web view draws: distilbert derives from bert-base.
    let (_, body) = get(&demo.addr, "/api/v1/products/distilbert");
    let product: serde_json::Value = serde_json::from_str(&body).unwrap();
    let parents = product["parents"].as_array().expect("parents");
    assert!(parents.iter().any(|e| e["via"] == "model"), "{body}");

    // The web view.
    let (status, html) = get(&demo.addr, "/");
    assert_eq!(status, 200);
    assert!(html.contains("/ui.js"));
}

/// The web view in headless Chromium (Debian `chromium`, `scripts/install-tools.sh`): the
/// page's script runs, calls the JSON API and fills every section.
#[test]
fn web_view_renders_in_headless_chromium() {
    let demo = start_demo();
    let epoch = 1_767_225_600.0;
    let start = Instant::now();
    // Past 12 h: inference with per-request figures, and the lineage defined.
    while gauge(
        &get(&demo.addr, "/metrics").1,
        "jobcarbon_last_interval_timestamp_seconds",
    ) < epoch + 86_400.0
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the demo is too slow"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
        ])
        .arg("--dump-dom")
        .arg(format!("http://{}/", demo.addr))
        .output()
        .unwrap_or_else(|e| panic!("{chromium}: {e} (run scripts/install-tools.sh)"));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !dom.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Cards with numbers, the workload table, the lineage graph, per-inference grams, the chart.
    for card in ["energy", "JSC", "ASC", "JSCe", "ASCe (jobs)", "unallocated"] {
        assert!(
            dom.contains(&format!("<div class=\"card\">{card}<b>")),
            "{card}: {dom}"
        );
    }
    assert!(
        dom.contains("Job/bert-pretrain") && dom.contains("page 1 / 1"),
        "{dom}"
    );
    assert!(
        dom.contains("id=\"lineage-graph\"") && dom.contains("dataset × 0.5"),
        "{dom}"
    );
    let inference = dom.split("id=\"inference\"").nth(1).unwrap_or("");
    assert!(inference.contains("distilbert"), "{dom}");
    assert!(
        dom.contains("class=\"legend\"") && dom.contains("<rect"),
        "{dom}"
    );
    let error = dom
        .split("id=\"aerr\">")
        .nth(1)
        .and_then(|s| s.split('<').next());
    assert_eq!(error, Some(""), "the allocation query failed");
}

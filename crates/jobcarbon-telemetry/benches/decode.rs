//! The read path before counter tracking: a Prometheus `/api/v1/query` vector answer with N
//! Kepler v2 pod series, decoded into samples (all labels, or only those the Kepler source
//! reads, as it reads them) and turned into `EnergyReading`s.
//! `cargo bench -p jobcarbon-telemetry --bench decode -- --warm-up-time 1 --measurement-time 3`
//!
//! The label set of every pod series is Kepler v0.11.4's own (read from
//! `fixtures/kepler/kepler-v0.11.4-gpu-node.prom`) plus what a ServiceMonitor scrape adds
//! (`job`, `instance`, `container`, `endpoint`, `namespace`, `pod`, `service`): the answer a
//! real Prometheus gives for the ledger's v2 selector. Half the pod series are `package`, half
//! `dram` (both selected by default), and every node has its idle and active series.

#![allow(clippy::expect_used)] // a bench that cannot build its input should stop

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jobcarbon_telemetry::KeplerConfig;
use jobcarbon_telemetry::kepler::v2_readings;
use jobcarbon_telemetry::prom::{LabelSelection, decode_instant_answer, default_replica_labels};
use jobcarbon_testkit::prometheus::exposition_samples;
use serde_json::{Map, Value, json};
use std::hint::black_box;

const NODES: usize = 100;

/// The label names of Kepler's own pod series, from the real exposition.
fn kepler_pod_label_names() -> Vec<String> {
    let text = jobcarbon_testkit::fixture("kepler/kepler-v0.11.4-gpu-node.prom");
    let samples = exposition_samples(&text).expect("the Kepler fixture parses");
    let (_, labels, _) = samples
        .into_iter()
        .find(|(name, _, _)| name == "kepler_pod_cpu_joules_total")
        .expect("the fixture has a pod series");
    labels.into_iter().map(|(k, _)| k).collect()
}

/// What a ServiceMonitor scrape of the Kepler DaemonSet pod on `node` adds.
fn scrape_labels(metric: &mut Map<String, Value>, node: usize) {
    let target = [
        ("job", "kepler".to_owned()),
        ("instance", format!("10.244.{node}.17:28282")),
        ("container", "kepler".to_owned()),
        ("endpoint", "http".to_owned()),
        ("namespace", "kepler".to_owned()),
        ("pod", format!("kepler-{node:05x}")),
        ("service", "kepler".to_owned()),
    ];
    for (k, v) in target {
        metric.insert(k.to_owned(), Value::String(v));
    }
}

fn pod_series(names: &[String], i: usize) -> Value {
    let pod = i / 2;
    let node = pod % NODES;
    let mut metric = Map::new();
    metric.insert("__name__".into(), "kepler_pod_cpu_joules_total".into());
    for name in names {
        let value = match name.as_str() {
            "node_name" => format!("node-{node}"),
            "pod_id" => format!("{pod:08x}-5a43-4846-ab31-e7ea468c6414"),
            "pod_name" => format!("train-{pod}-7x9kq"),
            "pod_namespace" => format!("ml-{}", pod % 50),
            "state" => "running".to_owned(),
            "zone" => if i.is_multiple_of(2) {
                "package"
            } else {
                "dram"
            }
            .to_owned(),
            other => format!("{other}-value"),
        };
        metric.insert(name.clone(), Value::String(value));
    }
    scrape_labels(&mut metric, node);
    let joules = format!("{:.6}", 1000.0 + i as f64 * 1.25);
    json!({ "metric": metric, "value": [1_718_097_012.402, joules] })
}

fn node_series(node: usize, kind: &str, zone: &str) -> Value {
    let mut metric = Map::new();
    metric.insert(
        "__name__".into(),
        format!("kepler_node_cpu_{kind}_joules_total").into(),
    );
    metric.insert("node_name".into(), format!("node-{node}").into());
    metric.insert("zone".into(), zone.into());
    metric.insert(
        "path".into(),
        format!("/sys/class/powercap/intel-rapl:0/{zone}").into(),
    );
    scrape_labels(&mut metric, node);
    json!({ "metric": metric, "value": [1_718_097_012.402, "123456.789"] })
}

/// The whole answer body for `pod_series` pod series.
fn answer(pod_series_count: usize) -> Vec<u8> {
    let names = kepler_pod_label_names();
    let mut result: Vec<Value> = (0..pod_series_count)
        .map(|i| pod_series(&names, i))
        .collect();
    for node in 0..NODES {
        for kind in ["idle", "active"] {
            for zone in ["package", "dram"] {
                result.push(node_series(node, kind, zone));
            }
        }
    }
    // In Prometheus' order: `resultType` before `result` (a `json!` map would sort them the
    // other way, which makes the decoder buffer the whole result first).
    let result = serde_json::to_string(&result).expect("JSON encodes");
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#)
        .into_bytes()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("kepler_v2_answer");
    group.sample_size(10);
    let replicas = default_replica_labels();
    let config = KeplerConfig::default();
    let read = config.labels_read();
    let kept = LabelSelection::Only(&read);
    for n in [10_000usize, 100_000] {
        let body = answer(n);
        let all = decode_instant_answer(&body, &replicas, LabelSelection::All)
            .expect("the answer decodes");
        let samples = decode_instant_answer(&body, &replicas, kept).expect("the answer decodes");
        assert_eq!(samples.len(), n + NODES * 4);
        let readings = v2_readings(&samples, &config);
        assert_eq!(readings.len(), n + NODES * 4);
        assert_eq!(readings, v2_readings(&all, &config));
        group.bench_with_input(BenchmarkId::new("to_samples_all_labels", n), &n, |b, _| {
            b.iter(|| black_box(decode_instant_answer(&body, &replicas, LabelSelection::All)));
        });
        group.bench_with_input(BenchmarkId::new("to_samples", n), &n, |b, _| {
            b.iter(|| black_box(decode_instant_answer(&body, &replicas, kept)));
        });
        group.bench_with_input(BenchmarkId::new("samples_to_readings", n), &n, |b, _| {
            b.iter(|| black_box(v2_readings(&samples, &config)));
        });
        group.bench_with_input(BenchmarkId::new("to_readings", n), &n, |b, _| {
            b.iter(|| {
                let samples = decode_instant_answer(&body, &replicas, kept).unwrap_or_default();
                black_box(v2_readings(&samples, &config))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);

//! Per-event cost: re-resolving one pod (what every watch event costs the index), trimming one
//! full pod, and a whole snapshot of 100,000 pods on 5,000 nodes.
//!
//! `cargo bench -p jobcarbon-kube --bench resolve -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use jobcarbon_kube::{AttributionConfig, NodeTable};
use std::hint::black_box;

fn nodes(n: usize) -> Vec<k8s_openapi::api::core::v1::Node> {
    (0..n)
        .map(|i| {
            support::node(
                &format!("node-{i:05}"),
                "96",
                "1000Gi",
                8,
                &[("topology.kubernetes.io/region", "us-east-1")],
            )
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let config = AttributionConfig::default();
    let nodes = nodes(5_000);
    let table = NodeTable::new(&nodes);
    let parents = jobcarbon_kube::ParentOwners::default();
    let full = support::training_pod(4242, "node-01234");
    let trimmed = support::decode_as_store_does(&full);
    let json = serde_json::to_vec(&full).unwrap_or_default();

    c.bench_function("resolve_pod (one event, 5k nodes)", |b| {
        b.iter(|| config.resolve_pod(black_box(&trimmed), black_box(&table), &parents))
    });
    c.bench_function("decode + trim one pod event (SlimPod)", |b| {
        b.iter(|| {
            let mut p: jobcarbon_kube::SlimPod =
                serde_json::from_slice(black_box(&json)).unwrap_or_default();
            jobcarbon_kube::trim_pod(&mut p);
            p
        })
    });
    let pods: Vec<_> = (0..100_000)
        .map(|i| {
            support::decode_as_store_does(&support::training_pod(
                i,
                &format!("node-{:05}", i % 5_000),
            ))
        })
        .collect();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.bench_function("index 100k pods / 5k nodes", |b| {
        b.iter(|| config.index(black_box(&pods), black_box(&nodes)))
    });
    group.finish();
}

criterion_group!(kube, benches);
criterion_main!(kube);

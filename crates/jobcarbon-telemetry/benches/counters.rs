//! CounterTracker throughput: one ledger interval over N series (Kepler pods × zones, GPUs).
//! `cargo bench -p jobcarbon-telemetry --bench counters -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jobcarbon_core::{Component, EnergyOwner, EnergyReading, Joules, PodKey, Seconds};
use jobcarbon_telemetry::{CounterTracker, FirstSight};
use std::hint::black_box;

fn readings(n: usize, step: f64) -> Vec<EnergyReading> {
    (0..n)
        .map(|i| {
            EnergyReading::new(
                format!("kepler/v2/node-{}/pod/{i:08}/package", i % 100),
                format!("node-{}", i % 100),
                EnergyOwner::Pod {
                    key: PodKey::new(format!("ns-{}", i % 50), format!("pod-{i}")),
                    container: String::new(),
                },
                Component::Cpu,
                Joules(1000.0 + step * (i % 7) as f64),
                Seconds(step),
            )
        })
        .collect()
}

fn observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter_tracker_observe");
    for n in [10_000usize, 100_000] {
        let first = readings(n, 0.0);
        let second = readings(n, 30.0);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_batched(
                || {
                    let mut t = CounterTracker::new(FirstSight::Baseline);
                    t.observe(&first);
                    t
                },
                |mut t| black_box(t.observe(&second)),
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);

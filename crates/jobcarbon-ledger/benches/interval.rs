//! One accounting interval at 1k, 10k and 100k pods (target: ≤ 100 ms at 100k, release).
//! `cargo bench -p jobcarbon-ledger --bench interval -- --warm-up-time 1 --measurement-time 3`

// Test and bench code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jobcarbon_ledger::book_interval;
use std::hint::black_box;

#[path = "world.rs"]
mod world;

fn interval(c: &mut Criterion) {
    let mut group = c.benchmark_group("interval");
    group.sample_size(10);
    for pods in [1_000, 10_000, 100_000] {
        let w = world::world(pods);
        let state = w.booked(2);
        let input = w.input(world::STEP * 2.0);
        group.bench_with_input(BenchmarkId::new("book_interval", pods), &pods, |b, _| {
            b.iter(|| black_box(book_interval(&state, &w.settings, &input)))
        });
    }
    group.finish();
}

criterion_group!(benches, interval);
criterion_main!(benches);

//! One accounting interval at 1k, 10k and 100k pods (target: ≤ 100 ms at 100k, release).
//! `cargo bench -p jobcarbon-ledger --bench interval -- --warm-up-time 1 --measurement-time 3`
//!
//! `book_interval` is the pure function (it copies the state); `book_interval_in_place` books
//! into the state itself (the copy it is given is made outside the timing); `state_clone` is
//! the copy alone, for the difference.

// Test and bench code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use jobcarbon_ledger::{book_interval, book_interval_in_place};
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
        group.bench_with_input(
            BenchmarkId::new("book_interval_in_place", pods),
            &pods,
            |b, _| {
                b.iter_batched(
                    || state.clone(),
                    |mut next| {
                        let report = book_interval_in_place(&mut next, &w.settings, &input);
                        (next, black_box(report))
                    },
                    BatchSize::PerIteration,
                )
            },
        );
        group.bench_with_input(BenchmarkId::new("state_clone", pods), &pods, |b, _| {
            b.iter(|| black_box(state.clone()))
        });
    }
    group.finish();
}

criterion_group!(benches, interval);
criterion_main!(benches);

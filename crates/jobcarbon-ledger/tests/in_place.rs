//! Booking in place gives the same state and report as the pure function, interval after
//! interval, over the synthetic cluster of the benchmarks (new pods, finished pods rolled up,
//! pods over the series cap, a pod listed twice).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/world.rs"]
#[allow(dead_code)]
mod world;

use jobcarbon_core::Seconds;
use jobcarbon_ledger::{LedgerState, book_interval, book_interval_in_place};

#[test]
fn in_place_books_what_the_pure_function_books() {
    let mut w = world::world(1_000);
    w.settings.max_pod_series = 900;
    w.settings.grace_period = Seconds(60.0);
    let mut pure = LedgerState::default();
    let mut in_place = LedgerState::default();
    for i in 0..7 {
        let mut input = w.input(world::STEP * f64::from(i));
        if i >= 3 {
            input.snapshot.pods.retain(|p| !p.key.pod.ends_with('7'));
        }
        if i == 4 {
            let mut twice = input.snapshot.pods[5].clone();
            twice.running = false;
            input.snapshot.pods.push(twice);
        }
        let (next, expected) = book_interval(&pure, &w.settings, &input);
        let report = book_interval_in_place(&mut in_place, &w.settings, &input);
        assert_eq!(report, expected, "interval {i}");
        assert_eq!(in_place, next, "interval {i}");
        pure = next;
    }
    assert!(
        pure.series_dropped > 0,
        "some pods went over the series cap"
    );
    assert!(!pure.rolled_up.is_empty(), "finished pods were rolled up");
}

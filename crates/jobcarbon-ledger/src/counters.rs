//! Request counters → non-negative deltas, with the reset rule of DESIGN §5 (a decrease is a
//! reset; the new value is the delta). Energy counters go through the telemetry crate's
//! `CounterTracker`, which knows energy readings; requests are plain numbers per product.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Last values of a set of counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterSet {
    last: BTreeMap<String, f64>,
    /// Whether a first read has set the baseline.
    primed: bool,
    /// After the baseline, does a counter seen for the first time count from zero? True for
    /// per-pod energy series (a new pod's counter starts at 0), false for aggregate request
    /// counters (a new series is just newly visible).
    new_series_from_zero: bool,
}

impl CounterSet {
    pub fn new(new_series_from_zero: bool) -> Self {
        Self {
            last: BTreeMap::new(),
            primed: false,
            new_series_from_zero,
        }
    }

    /// The increase of counter `key` since the last call.
    pub fn delta(&mut self, key: &str, value: f64) -> f64 {
        if !value.is_finite() || value < 0.0 {
            return 0.0;
        }
        let delta = match self.last.get(key) {
            Some(last) if value >= *last => value - last,
            Some(_) => value,
            None if self.primed && self.new_series_from_zero => value,
            None => 0.0,
        };
        self.last.insert(key.to_owned(), value);
        delta
    }

    /// Mark the end of one complete read.
    pub fn finish_read(&mut self) {
        self.primed = true;
    }

    /// Forget counters not in `keep` (series that have gone away).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|k, _| keep(k));
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_is_a_baseline_then_deltas_and_resets() {
        let mut c = CounterSet::new(true);
        assert_eq!(c.delta("a", 100.0), 0.0);
        c.finish_read();
        assert_eq!(c.delta("a", 130.0), 30.0);
        assert_eq!(c.delta("a", 5.0), 5.0, "a decrease is a reset");
        assert_eq!(
            c.delta("b", 7.0),
            7.0,
            "a new pod's counter counts from zero"
        );
        assert_eq!(c.delta("a", f64::NAN), 0.0);
    }

    #[test]
    fn aggregate_counters_baseline_new_series() {
        let mut c = CounterSet::new(false);
        c.finish_read();
        assert_eq!(c.delta("vllm", 1e6), 0.0);
        assert_eq!(c.delta("vllm", 1e6 + 10.0), 10.0);
    }
}

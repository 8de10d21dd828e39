//! Any string: a quantity parses to a finite, non-negative value or is a clear error.
#![no_main]
use jobcarbon_core::quantity::parse;
use jobcarbon_core::{Grams, GramsPerKwh, GramsPerSecond, Joules, Seconds, Watts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(j) = parse::<Joules>(text) {
        assert!(
            j.value().is_finite() && j.value() >= 0.0,
            "{text:?} → {j:?}"
        );
    }
    if let Ok(s) = parse::<Seconds>(text) {
        assert!(
            s.value().is_finite() && s.value() >= 0.0,
            "{text:?} → {s:?}"
        );
    }
    let _ = parse::<Grams>(text);
    let _ = parse::<Watts>(text);
    let _ = parse::<GramsPerSecond>(text);
    let _ = parse::<GramsPerKwh>(text);
});

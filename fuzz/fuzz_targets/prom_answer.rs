//! Any two Prometheus `/api/v1/query` answers, read as Kepler (both generations) and DCGM
//! would read them (every label, and only the labels the Kepler source reads) and booked through
//! the counter rule: an error, or finite, non-negative joules.
#![no_main]
use jobcarbon_telemetry::kepler::{legacy_readings, v2_readings};
use jobcarbon_telemetry::prom::{LabelSelection, decode_instant_answer};
use jobcarbon_telemetry::{CounterTracker, DcgmConfig, FirstSight, KeplerConfig, dcgm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let replicas = ["prometheus_replica".to_owned()];
    let kepler = KeplerConfig::default();
    let read = kepler.labels_read();
    for keep in [LabelSelection::All, LabelSelection::Only(&read)] {
        book_both(first, second, &replicas, keep, &kepler);
    }
});

fn book_both(
    first: &[u8],
    second: &[u8],
    replicas: &[String],
    keep: LabelSelection<'_>,
    kepler: &KeplerConfig,
) {
    let (Ok(a), Ok(b)) = (
        decode_instant_answer(first, replicas, keep),
        decode_instant_answer(second, replicas, keep),
    ) else {
        return;
    };
    let dcgm_config = DcgmConfig::default();
    let readings = |samples: &[_]| {
        let mut all = legacy_readings(samples, kepler);
        all.extend(v2_readings(samples, kepler));
        all.extend(dcgm::energy_readings(samples, &dcgm_config));
        all
    };
    for first_sight in [FirstSight::Baseline, FirstSight::BookAll] {
        let mut tracker = CounterTracker::new(first_sight);
        for batch in [readings(&a), readings(&b)] {
            for delta in tracker.observe(&batch).deltas {
                let j = delta.energy.value();
                assert!(j.is_finite() && j >= 0.0, "{delta:?}");
            }
        }
    }
}

//! No input makes energy negative or panics: arbitrary label sets and values through every
//! parser (Kepler legacy and v2, DCGM) and the counter tracker.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::Seconds;
use jobcarbon_telemetry::dcgm::{DcgmConfig, energy_readings};
use jobcarbon_telemetry::kepler::{KeplerConfig, legacy_readings, v2_readings};
use jobcarbon_telemetry::prom::PromSample;
use jobcarbon_telemetry::{CounterTracker, FirstSight};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "kepler_container_package_joules_total",
    "kepler_container_dram_joules_total",
    "kepler_container_gpu_joules_total",
    "kepler_container_joules_total",
    "kepler_node_package_joules_total",
    "kepler_pod_cpu_joules_total",
    "kepler_pod_gpu_joules_total",
    "kepler_node_cpu_idle_joules_total",
    "kepler_node_gpu_idle_joules_total",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "something_else",
];
const KEYS: &[&str] = &[
    "mode",
    "zone",
    "state",
    "pod_name",
    "pod_namespace",
    "container_name",
    "container_namespace",
    "container_id",
    "pod_id",
    "node_name",
    "instance",
    "UUID",
    "Hostname",
    "pod",
    "namespace",
    "container",
    "exported_pod",
    "exported_namespace",
    "gpu",
];

fn sample() -> impl Strategy<Value = PromSample> {
    (
        prop::sample::select(NAMES),
        prop::collection::btree_map(
            prop::sample::select(KEYS).prop_map(String::from),
            prop_oneof![
                Just(String::new()),
                Just("dynamic".to_owned()),
                Just("idle".to_owned()),
                Just("package".to_owned()),
                Just("terminated".to_owned()),
                Just("system_processes".to_owned()),
                "[a-z0-9/\"{}\\\\-]{0,12}",
            ],
            0..8,
        ),
        prop_oneof![
            proptest::num::f64::ANY,
            0.0f64..1e12,
            Just(f64::NAN),
            Just(-1.0),
        ],
        0.0f64..1e10,
    )
        .prop_map(|(name, mut labels, value, at)| {
            labels.insert("__name__".into(), name.into());
            PromSample {
                labels,
                value,
                at: Seconds(at),
            }
        })
}

proptest! {
    #[test]
    fn parsers_and_tracker_never_panic_or_go_negative(
        batches in prop::collection::vec(prop::collection::vec(sample(), 0..20), 1..6),
    ) {
        let kepler = KeplerConfig::default();
        let dcgm = DcgmConfig::default();
        let mut tracker = CounterTracker::new(FirstSight::BookAll);
        for batch in &batches {
            let mut readings = legacy_readings(batch, &kepler);
            readings.extend(v2_readings(batch, &kepler));
            readings.extend(energy_readings(batch, &dcgm));
            let observed = tracker.observe(&readings);
            for d in &observed.deltas {
                prop_assert!(d.energy.value().is_finite() && d.energy.value() >= 0.0, "{d:?}");
            }
        }
    }
}

//! Hostile readings: a source that reports NaN, infinite or negative counters. They are
//! dropped, counted as `non_finite` source errors and never reach the books.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_trait::async_trait;
use common::OnePod;
use jobcarbon_core::{
    Component, EnergyOwner, EnergyReading, GramsPerKwh, Joules, PodKey, Pue, Seconds,
};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Ledger, Settings, Sources};
use jobcarbon_telemetry::{EnergySource, SourceError};
use std::collections::BTreeMap;

/// A good counter growing 100 J per read, and three broken ones.
struct Broken;

#[async_trait]
impl EnergySource for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let owner = EnergyOwner::pod("ml", "p", "c");
        let reading = |series: &str, joules: f64| {
            EnergyReading::new(
                series,
                "n1",
                owner.clone(),
                Component::Cpu,
                Joules(joules),
                at,
            )
        };
        Ok(vec![
            reading("good", at.value() / 30.0 * 100.0),
            reading("nan", f64::NAN),
            reading("inf", f64::INFINITY),
            reading("negative", -5.0),
        ])
    }
}

#[tokio::test]
async fn non_finite_readings_are_dropped_and_counted() {
    let view = LedgerView::shared();
    let mut ledger = Ledger::new(
        Settings::simple(Pue(1.0), GramsPerKwh(3600.0)),
        Sources {
            energy: vec![Box::new(Broken)],
            metrics: None,
            cluster: Box::new(OnePod),
        },
        Vec::new(),
        BTreeMap::new(),
        view.clone(),
    );
    for t in [30.0, 60.0, 90.0] {
        ledger.run_interval(Seconds(t)).await;
    }
    let pod = &ledger.state().pods[&PodKey::new("ml", "p")];
    assert_eq!(pod.energy[&Component::Cpu], Joules(200.0));
    assert!(pod.carbon.asce().value().is_finite());
    let errors = view.read().unwrap().sources["broken"].errors["non_finite"];
    assert_eq!(errors, 9, "three broken readings in each of three reads");
}

//! Prints the books of 8 intervals over a varied 2,000-pod world (every energy owner, runs,
//! estimated energy, finished and duplicate pods, the series cap, the three idle policies):
//! each report's `Debug` and the final state's JSON. Run it before and after a change to the
//! interval code and compare the files: a refactor that keeps every booked number prints the
//! same bytes.
//!
//! `cargo run -p jobcarbon-ledger --example interval_fingerprint > before.txt`

// A tool over synthetic data: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/world.rs"]
#[allow(dead_code)]
mod world;

use jobcarbon_core::{Component, EnergyDelta, EnergyOwner, Joules, Seconds};
use jobcarbon_ledger::{IdlePolicy, PlatformSplit};
use jobcarbon_ledger::{LedgerState, book_interval};
use std::fmt::Write;

/// The 2,000-pod world of `variant`: its settings, runs, stopped pods, estimated energy and
/// one line of every other energy owner.
fn varied_world(variant: usize) -> world::World {
    let mut w = world::world(2000);
    match variant {
        1 => {
            w.settings.node_idle = IdlePolicy::Even;
            w.settings.platform.split = PlatformSplit::ByEnergy;
            w.settings.max_pod_series = 1500;
            w.settings.grace_period = Seconds(60.0);
        }
        2 => {
            w.settings.node_idle = IdlePolicy::Unallocated;
            w.settings.grace_period = Seconds(30.0);
        }
        _ => {}
    }
    for (i, p) in w.snapshot.pods.iter_mut().enumerate() {
        if i % 7 == 0 {
            *p = p.clone().run(&format!("Job/r-{}", i % 3)).gpus(1.0);
        }
        if i % 13 == 0 {
            p.running = false;
        }
    }
    for (i, d) in w.energy.iter_mut().enumerate() {
        d.estimated = i % 5 == 0;
    }
    w.energy.push(EnergyDelta {
        node: "node-00001".into(),
        owner: EnergyOwner::pod("x", "nobody", "c"),
        component: Component::Cpu,
        energy: Joules(5.0),
        estimated: false,
    });
    w.energy.push(EnergyDelta {
        node: "node-00002".into(),
        owner: EnergyOwner::NodeSystem,
        component: Component::Cpu,
        energy: Joules(7.0),
        estimated: false,
    });
    w.energy.push(EnergyDelta {
        node: "node-00003".into(),
        owner: EnergyOwner::UnmappedGpu { uuid: "g1".into() },
        component: Component::Gpu,
        energy: Joules(70.0),
        estimated: false,
    });
    w.energy.push(EnergyDelta {
        node: "node-00003".into(),
        owner: EnergyOwner::UnmappedGpu { uuid: "g2".into() },
        component: Component::Gpu,
        energy: Joules(30.0),
        estimated: true,
    });
    w.energy.push(EnergyDelta {
        node: "node-00004".into(),
        owner: EnergyOwner::NodeActive,
        component: Component::Cpu,
        energy: Joules(1e6),
        estimated: false,
    });
    w.energy.push(EnergyDelta {
        node: "node-00005".into(),
        owner: EnergyOwner::NodeIdle,
        component: Component::Cpu,
        energy: Joules(100.0),
        estimated: true,
    });
    w
}

fn run(variant: usize) -> String {
    let w = varied_world(variant);
    let mut out = String::new();
    let mut state = LedgerState::default();
    for i in 0..8 {
        let mut input = w.input(world::STEP * i as f64);
        if i >= 4 {
            // Some pods finish (gone from the snapshot); their late energy still arrives.
            input.snapshot.pods.retain(|p| !p.key.pod.ends_with('3'));
        }
        if i == 6 {
            input.requests_unknown.insert("model-1".into());
        }
        if i == 3 || i == 5 {
            // A pod listed twice (running, then finished), pods moving node and product.
            let mut dup = input.snapshot.pods[17].clone();
            dup.running = false;
            input.snapshot.pods.push(dup);
            let dup2 = input.snapshot.pods[40].clone();
            input.snapshot.pods.insert(3, dup2);
            input.snapshot.pods[50].node = Some("node-00009".into());
            input.snapshot.pods[51].product = Some("model-7".into());
            input.snapshot.pods[52].node = None;
        }
        let (next, report) = book_interval(&state, &w.settings, &input);
        writeln!(out, "{i} {report:?}").unwrap();
        state = next;
    }
    writeln!(out, "{}", serde_json::to_string(&state).unwrap()).unwrap();
    out
}

fn main() {
    for variant in 0..3 {
        print!("{}", run(variant));
    }
}

//! The booked state is shared, not copied: the view publishes the ledger's own `Arc`, the
//! lineage is rebuilt only when products change, and checkpoints are streamed from a borrow
//! with exactly the bytes the in-memory encoder wrote (old checkpoints load and verify).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyOwner, EnergyReading, GramsPerKwh, Joules, LineageEdge,
    Phase, PodFacts, PodKey, ProductDef, ProductType, Pue, Seconds,
};
use jobcarbon_ledger::checkpoint::{Checkpoint, CheckpointFile, decode};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{
    ClusterError, ClusterSource, Ledger, ResumeState, ResumeStateRef, Settings, Sources,
};
use jobcarbon_telemetry::{EnergySource, SourceError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Two training pods of one product derived from another; `products` can be changed.
struct Cluster {
    products: Arc<Mutex<Vec<ProductDef>>>,
}

#[async_trait]
impl ClusterSource for Cluster {
    async fn snapshot(&self, _at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        let pod = |name: &str| {
            PodFacts::new("ml", name)
                .uid(name)
                .workload("Job", "train")
                .phase(Phase::Training)
                .product(Some("chat"))
                .node("n1")
        };
        Ok(ClusterSnapshot {
            pods: vec![pod("a"), pod("b")],
            products: self.products.lock().unwrap().clone(),
            ..Default::default()
        })
    }
}

/// A CPU counter per pod, 90 J and 30 J per 30 s interval.
struct Counters;

#[async_trait]
impl EnergySource for Counters {
    fn name(&self) -> &str {
        "counters"
    }
    async fn read(&self, at: Seconds) -> Result<Vec<EnergyReading>, SourceError> {
        let reading = |pod: &str, watts: f64| {
            let owner = EnergyOwner::pod("ml", pod, "c");
            let joules = Joules(watts * at.value());
            EnergyReading::new(pod, "n1", owner, Component::Cpu, joules, at)
        };
        Ok(vec![reading("a", 3.0), reading("b", 1.0)])
    }
}

fn products(parent: Option<&str>) -> Vec<ProductDef> {
    let mut chat = ProductDef::new("chat", ProductType::Model, Seconds(86_400.0));
    chat.derived_from = parent
        .map(|p| LineageEdge {
            product: p.to_owned(),
            weight: 0.5,
        })
        .into_iter()
        .collect();
    vec![
        ProductDef::new("base", ProductType::Model, Seconds(86_400.0)),
        chat,
    ]
}

fn ledger(products: Arc<Mutex<Vec<ProductDef>>>) -> Ledger {
    Ledger::new(
        Settings::simple(Pue(1.2), GramsPerKwh(400.0)),
        Sources {
            energy: vec![Box::new(Counters)],
            metrics: None,
            cluster: Box::new(Cluster { products }),
        },
        Vec::new(),
        BTreeMap::new(),
        LedgerView::shared(),
    )
}

/// The encoder before checkpoints were streamed, verbatim: body in memory, then the header.
fn in_memory_encoding<S: serde::Serialize>(checkpoint: &Checkpoint<S>) -> Vec<u8> {
    let body = serde_json::to_vec(checkpoint).unwrap();
    let digest: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = format!(
        "jobcarbon-checkpoint {} {} {digest}\n",
        checkpoint.version,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn the_view_publishes_the_ledgers_state_and_a_cached_lineage() {
    let defs = Arc::new(Mutex::new(products(Some("base"))));
    let mut ledger = ledger(defs.clone());
    let view = ledger.view();
    ledger.run_interval(Seconds(30.0)).await;
    ledger.run_interval(Seconds(60.0)).await;
    let (state, lineage) = {
        let v = view.read().unwrap();
        (Arc::clone(&v.state), Arc::clone(&v.lineage))
    };
    // One state in memory: the view's `Arc` points at the ledger's own state.
    assert!(std::ptr::eq(ledger.state(), &*state));
    assert_eq!(lineage["chat"][0].product, "base");

    // A reader holding the old snapshot keeps it whole while the next interval is booked.
    ledger.run_interval(Seconds(90.0)).await;
    let next = Arc::clone(&view.read().unwrap().state);
    assert!(!Arc::ptr_eq(&state, &next));
    assert!(std::ptr::eq(ledger.state(), &*next));
    assert_eq!(state.last_booked, Some(Seconds(60.0)));
    assert_eq!(next.last_booked, Some(Seconds(90.0)));
    // Products unchanged: the same lineage, not a rebuilt one.
    assert!(Arc::ptr_eq(&lineage, &view.read().unwrap().lineage));

    *defs.lock().unwrap() = products(None);
    ledger.run_interval(Seconds(120.0)).await;
    let rebuilt = Arc::clone(&view.read().unwrap().lineage);
    assert!(!Arc::ptr_eq(&lineage, &rebuilt));
    assert!(rebuilt["chat"].is_empty());
}

#[tokio::test]
async fn restore_serves_the_restored_state_without_a_copy() {
    let mut first = ledger(Arc::new(Mutex::new(products(Some("base")))));
    for t in [30.0, 60.0, 90.0] {
        first.run_interval(Seconds(t)).await;
    }
    let resume = first.resume_state();
    let mut second = ledger(Arc::new(Mutex::new(products(Some("base")))));
    second.restore(resume.clone());
    let served = Arc::clone(&second.view().read().unwrap().state);
    assert!(std::ptr::eq(second.state(), &*served));
    assert_eq!(*served, resume.ledger);
}

#[tokio::test]
async fn streamed_checkpoints_are_byte_identical_to_the_in_memory_encoding() {
    let mut ledger = ledger(Arc::new(Mutex::new(products(Some("base")))));
    for t in [30.0, 60.0, 90.0] {
        ledger.run_interval(Seconds(t)).await;
    }
    assert!(!ledger.state().pods.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
    let at = Seconds(90.0);
    file.save(&Checkpoint::new(at, Seconds(91.5), ledger.resume_ref()))
        .unwrap();
    let written = std::fs::read(file.path()).unwrap();
    let owned = ledger.resume_state();
    assert_eq!(
        written,
        in_memory_encoding(&Checkpoint::new(at, Seconds(91.5), &owned))
    );
    // And it loads back as the owned state.
    let restored = file.load::<ResumeState>().unwrap().unwrap();
    assert_eq!(restored.checkpoint.state, owned);
}

/// `tests/fixtures/checkpoint-v1.ckpt` was written by the code before checkpoints were
/// streamed (commit 4559144: `checkpoint::encode` of `Ledger::resume_state()`), from this
/// file's ledger after three intervals (see `tests/fixtures/README.md`).
#[test]
fn a_checkpoint_written_before_streaming_loads_and_re_encodes_to_the_same_state() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint-v1.ckpt");
    let bytes = std::fs::read(&fixture).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
    std::fs::write(file.path(), &bytes).unwrap();
    let restored = file.load::<ResumeState>().unwrap().unwrap();
    let cp = restored.checkpoint;
    assert_eq!(cp.last_booked, Seconds(90.0));
    assert!(cp.state.ledger.pods.contains_key(&PodKey::new("ml", "a")));
    assert!(!cp.state.energy_counters.is_empty());
    // It predates the totals family: restored, the totals start at what its workloads hold.
    assert!(cp.state.ledger.totals.is_empty());
    let mut upgraded = cp.state.ledger.clone();
    upgraded.backfill_totals();
    assert_eq!(upgraded.totals_carbon(), upgraded.booked_to_workloads());
    assert!(upgraded.totals_carbon().value() > 0.0);
    // Written again, now streamed from a borrow (with the fields added since): the same state.
    let again = Checkpoint::new(
        cp.last_booked,
        cp.written_at,
        ResumeStateRef::from(&cp.state),
    );
    file.save(&again).unwrap();
    let written = std::fs::read(file.path()).unwrap();
    let reread: Checkpoint<ResumeState> = decode(&written, file.path()).unwrap();
    assert_eq!(reread.state, cp.state);
    // The fixture became the previous generation: it verified.
    assert_eq!(std::fs::read(file.previous_path()).unwrap(), bytes);
    let decoded: Checkpoint<ResumeState> = decode(&bytes, &fixture).unwrap();
    assert_eq!(decoded.state, cp.state);
}

//! Ledger memory at 100k pods (target: ≤ 300 MiB): builds the state, books intervals the way
//! the loop does (the booked state published to the view as a shared `Arc`, the checkpoint
//! streamed from a borrow into a file, `/metrics` encoded from a snapshot in 64 KiB chunks),
//! then reports the process's peak RSS (VmHWM) from /proc. Not a criterion benchmark: it
//! measures memory.
//! `cargo bench -p jobcarbon-exporter --bench rss`

// Test and bench code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_exporter::CHUNK_BYTES;
use jobcarbon_exporter::{Format, write_metrics};
use jobcarbon_ledger::RequestBooks;
use jobcarbon_ledger::checkpoint::{Checkpoint, CheckpointFile};
use jobcarbon_ledger::{LedgerView, ResumeStateRef, book_interval};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[path = "../../jobcarbon-ledger/benches/world.rs"]
mod world;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// VmHWM so far, MiB.
fn peak_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: measure only under cargo bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("rss: measured only under `cargo bench -p jobcarbon-exporter --bench rss`");
        return;
    }
    let pods = 100_000;
    // Default series cap first (smaller), then every pod with its own series: peak RSS only grows.
    for cap in [Some(10_000), None] {
        let mut w = world::world(pods);
        println!(
            "  world built (100k PodFacts, energy deltas): peak {:.0} MiB",
            peak_mib()
        );
        if let Some(cap) = cap {
            w.settings.max_pod_series = cap;
        }
        let (checkpoint_bytes, metrics_bytes, series) = run(&w);
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "rss at {pods} pods, series cap {}: peak {:.0} MiB (VmHWM), now {:.0} MiB (VmRSS); checkpoint {:.1} MiB, /metrics {:.1} MiB, {series} pods with own series",
            cap.map_or("none".to_owned(), |c| c.to_string()),
            mib(status_kib("VmHWM:")),
            mib(status_kib("VmRSS:")),
            checkpoint_bytes as f64 / 1048576.0,
            metrics_bytes as f64 / 1048576.0,
        );
    }
}

/// What the server does with the encoder's output: 64 KiB chunks handed to the connection
/// (here: counted and dropped).
#[derive(Default)]
struct Chunks {
    buf: String,
    total: usize,
}

impl std::fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK_BYTES {
            self.total += self.buf.len();
            self.buf = String::with_capacity(CHUNK_BYTES + 4096);
        }
        Ok(())
    }
}

/// Book intervals the way the loop does: the state (the pure interval's new one beside the
/// old), published to the view by `Arc`, checkpointed from a borrow straight into a file,
/// and a scrape from a snapshot.
fn run(w: &world::World) -> (usize, usize, usize) {
    let mut state = Arc::new(w.booked(1));
    println!("  first state booked: peak {:.0} MiB", peak_mib());
    let view = Arc::new(RwLock::new(LedgerView::default()));
    let dir = tempfile::tempdir().unwrap();
    let file = CheckpointFile::new(dir.path().join("ledger.ckpt"));
    let (counters, requests) = (BTreeMap::new(), RequestBooks::default());
    let mut checkpoint_bytes = 0;
    let mut metrics_bytes = 0;
    for i in 1..6 {
        let input = w.input(world::STEP * i as f64);
        state = Arc::new(book_interval(&state, &w.settings, &input).0);
        if let Ok(mut v) = view.write() {
            v.state = Arc::clone(&state);
        }
        let resume = ResumeStateRef {
            ledger: &state,
            energy_counters: &counters,
            requests: &requests,
        };
        file.save(&Checkpoint::new(input.at, input.at, resume))
            .unwrap();
        checkpoint_bytes = std::fs::metadata(file.path()).unwrap().len() as usize;
        let mut scrape = Chunks::default();
        write_metrics(&view, Format::OpenMetrics, &mut scrape).unwrap();
        metrics_bytes = scrape.total + scrape.buf.len();
    }
    (checkpoint_bytes, metrics_bytes, state.pods.len())
}

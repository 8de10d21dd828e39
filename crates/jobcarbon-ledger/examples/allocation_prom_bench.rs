//! Times `/api/v1/allocation` answered from Prometheus (`PromHistory::allocate`, the queries and
//! the counter rule, without HTTP) against a running Prometheus holding a ledger's series.
//! Run by `scripts/bench-allocation-prom.sh`, which loads such a history first.
//!
//!     cargo run --release -p jobcarbon-ledger --example allocation_prom_bench -- URL IDENTITY END

use jobcarbon_core::Seconds;
use jobcarbon_ledger::allocation_prom::PromHistory;
use jobcarbon_ledger::allocation_query::AllocationQuery;
use jobcarbon_telemetry::prom::{PromClient, PromConfig};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, identity, end] = args.as_slice() else {
        return Err("usage: allocation_prom_bench URL IDENTITY END_UNIX_SECONDS".into());
    };
    let end: f64 = end.parse().map_err(|e| format!("END: {e}"))?;
    let client = PromClient::new(PromConfig::new(url)).map_err(|e| e.to_string())?;
    let history = PromHistory::new(client, identity.clone(), Seconds::from_days(7.0));
    for (window, aggregate, step) in [
        ("1h", "namespace", None),
        ("24h", "namespace,workload", None),
        ("24h", "workload", Some("1h")),
    ] {
        let mut params = vec![
            ("window".to_owned(), window.to_owned()),
            ("aggregate".to_owned(), aggregate.to_owned()),
        ];
        if let Some(step) = step {
            params.push(("step".to_owned(), step.to_owned()));
        }
        let query = AllocationQuery::parse(&params, Seconds(end)).map_err(|e| e.to_string())?;
        let mut times = Vec::new();
        let mut items = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let answer = history.allocate(&query).await.map_err(|e| e.to_string())?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            items = answer.window.items.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "window={window} aggregate={aggregate} step={}: median {:.1} ms (min {:.1}, max {:.1}) over 5 runs, {items} items",
            step.unwrap_or("-"),
            times[2],
            times[0],
            times[4]
        );
    }
    Ok(())
}

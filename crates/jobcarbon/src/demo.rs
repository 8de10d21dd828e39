//! `jobcarbon demo`: the real ledger and exporter over the built-in simulated cluster
//! (`simulation.rs`), time-accelerated, on localhost. No cluster, no Prometheus.

use crate::simulation::{EPOCH, SimDcgm, SimEstimated, SimKepler, SimMetrics, Simulation};
use anyhow::Context;
use jobcarbon_core::Seconds;
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Config, Ledger, LedgerState, SharedView, Sources};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// The demo's ledger config, parsed by the same code as `--config`.
const DEMO_CONFIG: &str = include_str!("demo.yaml");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve /metrics and the JSON API on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Simulated seconds per real second (1440: one simulated day per real minute).
    #[arg(long, default_value_t = 1440.0)]
    pub speed: f64,
    /// Real seconds between the printed tables (0: no tables).
    #[arg(long, default_value_t = 5.0)]
    pub table_every: f64,
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobcarbon demo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcarbon demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn demo(args: Args) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("--speed must be a positive number, got {}", args.speed);
    }
    let view = LedgerView::shared();
    let (mut ledger, interval) = demo_ledger(view.clone())?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let server = jobcarbon_exporter::spawn(listener, view.clone());

    println!(
        "jobcarbon demo: a simulated cluster, {:.0} simulated seconds per second (1 day ≈ {:.0} s)",
        args.speed,
        86_400.0 / args.speed
    );
    println!("  web view   http://{addr}/");
    println!("  metrics    http://{addr}/metrics");
    println!("  workloads  http://{addr}/api/v1/workloads");
    println!("  products   http://{addr}/api/v1/products");
    println!("  allocation http://{addr}/api/v1/allocation?window=7d&aggregate=namespace,workload");
    println!("  ready      http://{addr}/readyz");
    println!("Press Ctrl-C to stop.");
    std::io::stdout().flush().ok();

    // One simulated interval per tick; the first is booked at once, so /readyz is up quickly.
    let tick = Duration::from_secs_f64((interval.value() / args.speed).max(0.001));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let table_every = (args.table_every > 0.0).then(|| Duration::from_secs_f64(args.table_every));
    let mut last_table = tokio::time::Instant::now();
    let mut sim = 0.0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = ticker.tick() => {
                ledger.run_interval(Seconds(EPOCH + sim)).await;
                sim += interval.value();
                if let Some(every) = table_every
                    && last_table.elapsed() >= every
                {
                    last_table = tokio::time::Instant::now();
                    print!("{}", table(ledger.state(), sim - interval.value()));
                    std::io::stdout().flush().ok();
                }
            }
        }
    }
    server.shutdown().await.context("the HTTP server failed")?;
    Ok(())
}

/// The real ledger over the simulated cluster, publishing into `view`, and its interval.
fn demo_ledger(view: SharedView) -> anyhow::Result<(Ledger, Seconds)> {
    let config = Config::parse(DEMO_CONFIG, "built-in demo config")
        .context("the built-in demo config is invalid")?;
    let settings = config.settings();
    let interval = settings.interval;
    let ledger = Ledger::new(
        settings,
        Sources {
            energy: vec![
                Box::new(SimKepler),
                Box::new(SimDcgm),
                Box::new(SimEstimated),
            ],
            metrics: Some(Box::new(SimMetrics)),
            cluster: Box::new(Simulation),
        },
        config.product_defs(),
        config.request_queries(),
        view,
    );
    Ok((ledger, interval))
}

/// A short aligned table of per-workload ASCᵉ and per-inference grams.
pub fn table(state: &LedgerState, sim_seconds: f64) -> String {
    #[derive(Default)]
    struct Row {
        phase: String,
        product: String,
        kwh: f64,
        asce: f64,
        running: bool,
        platform: bool,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (key, a) in &state.pods {
        let row = rows
            .entry(format!("{}/{}", key.namespace, a.workload.workload))
            .or_default();
        row.phase = a.phase.to_string();
        row.product = a.product.clone().unwrap_or_default();
        row.kwh += a.energy_total().kwh();
        row.asce += a.carbon.asce().value();
        row.running |= a.running;
        row.platform |= a.platform;
    }
    for (key, r) in &state.rolled_up {
        let row = rows.entry(key.workload.to_string()).or_default();
        row.phase = key.phase.to_string();
        row.product = key.product.clone().unwrap_or_default();
        row.kwh += r.energy_total().kwh();
        row.asce += r.carbon.asce().value();
    }
    let day = (sim_seconds / 86_400.0).floor();
    let rem = sim_seconds - day * 86_400.0;
    let mut out = format!(
        "\nsimulated day {day:.0} {:02}:{:02}\n",
        (rem / 3600.0).floor(),
        ((rem % 3600.0) / 60.0).floor()
    );
    let width = rows.keys().map(|k| k.len()).max().unwrap_or(8).max(8);
    out += &format!(
        "{:<width$}  {:<13}  {:<12}  {:>10}  {:>11}  {}\n",
        "WORKLOAD", "PHASE", "PRODUCT", "ENERGY kWh", "ASCe", "STATE"
    );
    for (name, r) in &rows {
        let (asce, state) = match (r.platform, r.running) {
            // Platform pods' carbon is taxed onto the jobs running with them.
            (true, _) => ("-".to_owned(), "platform"),
            (false, true) => (crate::report_fmt::grams(r.asce), "running"),
            (false, false) => (crate::report_fmt::grams(r.asce), "done"),
        };
        out += &format!(
            "{:<width$}  {:<13}  {:<12}  {:>10.2}  {:>11}  {}\n",
            name, r.phase, r.product, r.kwh, asce, state
        );
    }
    for (name, p) in &state.products {
        let per_request = p
            .grams_per_request()
            .map(|g| {
                format!(
                    ", {} per inference (1 h window)",
                    crate::report_fmt::grams(g)
                )
            })
            .unwrap_or_default();
        out += &format!(
            "product {name} ({}): EPC {}{per_request}\n",
            p.kind,
            crate::report_fmt::grams(p.epc.total().value())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobcarbon_exporter::{Format, encode_metrics};

    /// `(workload series, totals-family grams, retired workloads)` of the exposition.
    fn exposition_figures(view: &SharedView) -> (usize, f64, f64) {
        let text = encode_metrics(view, Format::PrometheusText).unwrap_or_default();
        let value = |line: &str| {
            line.rsplit_once(' ')
                .and_then(|(_, v)| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let series = text
            .lines()
            .filter(|l| l.starts_with("jobcarbon_workload_"))
            .count();
        let totals = text
            .lines()
            .filter(|l| l.starts_with("jobcarbon_carbon_grams_total{"))
            .map(value)
            .sum();
        let retired = text
            .lines()
            .find(|l| l.starts_with("jobcarbon_workloads_retired_total"))
            .map_or(0.0, value);
        (series, totals, retired)
    }

    /// Soak: the demo's daily re-training Job must not add series day after day. Its series
    /// stop after the grace period while its grams stay in the totals family.
    #[tokio::test]
    async fn series_are_bounded_by_what_runs_not_by_what_ever_ran() {
        let view = LedgerView::shared();
        let (mut ledger, interval) = demo_ledger(view.clone()).expect("demo config");
        let per_day = (86_400.0 / interval.value()).round() as usize;
        let days = 10;
        let mut at_day_end = Vec::new();
        for i in 0..days * per_day {
            ledger
                .run_interval(Seconds(EPOCH + i as f64 * interval.value()))
                .await;
            if (i + 1) % per_day == 0 {
                at_day_end.push(exposition_figures(&view));
            }
        }
        let (series, _, _) = at_day_end[1];
        for (day, (s, _, _)) in at_day_end.iter().enumerate().skip(1) {
            assert_eq!(*s, series, "day {day}: {at_day_end:?}");
        }
        for pair in at_day_end.windows(2) {
            let ((_, grams_before, retired_before), (_, grams_after, retired_after)) =
                (pair[0], pair[1]);
            assert!(grams_after > grams_before, "{at_day_end:?}");
            // One re-training Job a day finishes and retires.
            assert_eq!(retired_after - retired_before, 1.0, "{at_day_end:?}");
        }
        // The totals family holds what the live and retired workloads hold.
        let state = ledger.state();
        let held = state.booked_to_workloads().value();
        let totals = state.totals_carbon().value();
        assert!((held - totals).abs() <= 1e-9 * totals, "{held} vs {totals}");
    }
}

//! `jobcarbon advise`: the answer of `GET /api/v1/advice` without a running ledger. Regions
//! and providers come from the ledger config; the energy of the product's re-training runs
//! from the checkpoint (`state.file`), or from `--energy`.

use crate::report_fmt::{grams, sig, text_table};
use anyhow::Context;
use jobcarbon_core::intensity::IntensitySeries;
use jobcarbon_core::{GramsPerKwh, Seconds};
use jobcarbon_exporter::advice::{AdviceJson, advice_json};
use jobcarbon_ledger::IntensitySpec;
use jobcarbon_ledger::checkpoint::CheckpointFile;
use jobcarbon_ledger::sources;
use jobcarbon_ledger::view::{LedgerView, RegionStatus};
use jobcarbon_ledger::{Config, ResumeState};
use jobcarbon_telemetry::MetricQuery;
use jobcarbon_telemetry::prom::{PromClient, PromMetrics};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ledger config file (regions, providers, `state.file`).
    #[arg(long, env = "JOBCARBON_CONFIG")]
    config: PathBuf,
    /// The product whose next re-training run is planned.
    #[arg(long)]
    product: String,
    /// How long the run takes, e.g. `2h`.
    #[arg(long)]
    duration: String,
    /// Start within this long from now.
    #[arg(long, default_value = "24h")]
    within: String,
    /// The run's energy, e.g. `500kWh` (default: the mean of its booked re-training runs).
    #[arg(long)]
    energy: Option<String>,
    /// Regions to choose from, the first being where it would run now (default: the
    /// default region, then every region of the same signal kind).
    #[arg(long)]
    regions: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The JSON of `GET /api/v1/advice`.
    Json,
    /// Aligned columns, for people.
    Table,
}

pub fn run(args: Args) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobcarbon advise: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let now = jobcarbon_telemetry::now();
    let view = match runtime.block_on(view_of(&config, now)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("jobcarbon advise: {e:#}");
            return ExitCode::from(1);
        }
    };
    let mut params = BTreeMap::from([
        ("product".to_owned(), args.product.clone()),
        ("duration".to_owned(), args.duration.clone()),
        ("within".to_owned(), args.within.clone()),
    ]);
    params.extend(args.energy.clone().map(|e| ("energy".to_owned(), e)));
    params.extend(args.regions.clone().map(|r| ("regions".to_owned(), r)));
    match advice_json(&view, &params, now) {
        Ok(advice) => {
            let text = match args.format {
                Format::Json => serde_json::to_string_pretty(&advice).unwrap_or_default(),
                Format::Table => table(&advice),
            };
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(bad) => {
            eprintln!("error: --{}: {}", bad.parameter, bad.error);
            ExitCode::from(2)
        }
    }
}

/// What the exporter would hold: the checkpoint's state and each region's current value and
/// forecast, read now.
async fn view_of(config: &Config, now: Seconds) -> anyhow::Result<LedgerView> {
    let settings = config.settings();
    let mut view = LedgerView {
        default_region: Some(settings.default_region.clone()),
        ..LedgerView::default()
    };
    if let Some(path) = &config.state.file
        && let Some(restored) = CheckpointFile::new(path.clone())
            .load::<ResumeState>()
            .map_err(|e| anyhow::anyhow!("state.file: {e}"))?
    {
        view.state = restored.checkpoint.state.ledger.into();
    }
    let providers = sources::intensity_providers(config)
        .map_err(|(region, e)| anyhow::anyhow!("regions.{region}.intensity: {e}"))?;
    let metrics = match &config.prometheus {
        Some(p) => Some(PromMetrics::new(
            PromClient::new(sources::prom_config(p)).context("prometheus")?,
        )),
        None => None,
    };
    for (name, def) in &settings.regions {
        let mut status = RegionStatus::fixed(def.pue, GramsPerKwh(0.0));
        status.signal = def.intensity.signal();
        status.intensity = match &def.intensity {
            IntensitySpec::Static(ci) => *ci,
            IntensitySpec::Live {
                promql, fallback, ..
            } => match &metrics {
                Some(m) => m.scalar(promql, now).await.map(GramsPerKwh).unwrap_or_else(|e| {
                    tracing::warn!(region = %name, error = %e, "live intensity unavailable; using the fallback");
                    *fallback
                }),
                None => *fallback,
            },
            IntensitySpec::Provider { fallback, .. } => {
                let Some(p) = providers.get(name) else { continue };
                status.forecast = forecast(name, p, now).await;
                p.latest(now).await.map(|l| l.value).unwrap_or_else(|e| {
                    tracing::warn!(region = %name, error = %e, "provider unavailable; using the fallback");
                    *fallback
                })
            }
        };
        view.regions.insert(name.clone(), status);
    }
    Ok(view)
}

async fn forecast(
    region: &str,
    provider: &jobcarbon_telemetry::PolledProvider,
    now: Seconds,
) -> Option<IntensitySeries> {
    provider
        .forecast(now)
        .await
        .map_err(|e| tracing::warn!(region = %region, error = %e, "no forecast; holding the current value"))
        .ok()
}

fn table(a: &AdviceJson) -> String {
    let basis = match a.energy.source {
        "parameter" => "as given".to_owned(),
        _ => format!("mean of {} re-training runs", a.energy.runs),
    };
    let mut out = format!(
        "product {}: a {} run of {} kWh ({basis}), starting within {}; {} intensity\n\n",
        a.product,
        crate::report_fmt::duration(a.duration_s),
        sig(a.energy.energy_kwh),
        crate::report_fmt::duration(a.within_s),
        a.signal,
    );
    let row = |label: &str, w: &jobcarbon_exporter::advice::WindowJson| {
        vec![
            label.to_owned(),
            w.region.clone(),
            w.start.clone(),
            sig(w.mean_intensity_g_per_kwh),
            grams(w.grams),
        ]
    };
    let mut rows = vec![row("now", &a.now), row("best", &a.best)];
    rows.extend(a.by_region.iter().map(|w| row("  region best", w)));
    out.push_str(&text_table(
        &["", "REGION", "START", "MEAN g/kWh", "EXPECTED"],
        &rows,
    ));
    out.push_str(&format!(
        "\nsaving against starting now: {} ({} %)",
        grams(a.saving_g),
        sig(a.saving_percent)
    ));
    out
}

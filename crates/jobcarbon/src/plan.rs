//! `jobcarbon plan FILE`: compare life-cycle strategies (DESIGN §3, issue 8).
//!
//! The plan file is read and evaluated by `jobcarbon_core::plan_file` (through the scenario
//! evaluator `calc` uses); this module applies command-line overrides and renders.

use crate::chart;
use crate::report_fmt::{count, duration, grams, markdown_table, sig, text_table};
use jobcarbon_core::plan::{
    self, BreakEven, Comparison, PlanReport, RequestRate, Sweep, SweepAxis, SweepSpec,
};
use jobcarbon_core::plan_file::{self, PlanInput};
use jobcarbon_core::quantity::parse;
use jobcarbon_core::units::Seconds;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file (YAML): strategies over the scenario vocabulary of `calc`.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write an SVG chart of grams per inference against traffic to this file.
    #[arg(long, value_name = "OUT.svg")]
    pub chart: Option<PathBuf>,
    /// Expected traffic, overriding the file's (e.g. `1e6/d`, `500/s`).
    #[arg(long, value_parser = parse_rate)]
    pub traffic: Option<RequestRate>,
    /// Service life, overriding the file's (e.g. `3y`).
    #[arg(long, value_parser = parse_time)]
    pub service_life: Option<Seconds>,
    /// Re-training interval for every strategy that re-trains (e.g. `7d`).
    #[arg(long, value_parser = parse_time)]
    pub retraining_interval: Option<Seconds>,
    /// A sweep, replacing the file's sweep over the same axis: `AXIS=FROM..TO[:STEPS[:log|linear]]`
    /// or `AXIS=V1,V2,...`; AXIS is traffic, retrainingInterval or serviceLife.
    /// E.g. `--sweep traffic=1e3/d..1e9/d:13 --sweep retrainingInterval=1d,7d,30d`.
    #[arg(long = "sweep", value_name = "AXIS=SPEC", value_parser = parse_sweep)]
    pub sweeps: Vec<SweepSpec>,
}

fn parse_rate(s: &str) -> Result<RequestRate, String> {
    parse::<RequestRate>(s).map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<Seconds, String> {
    parse::<Seconds>(s).map_err(|e| e.to_string())
}

fn parse_sweep(s: &str) -> Result<SweepSpec, String> {
    plan_file::parse_sweep_arg(s).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> ExitCode {
    let input = match plan_file::load(&args.file) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("jobcarbon plan: {e}");
            return ExitCode::from(2);
        }
    };
    let input = apply_overrides(input, &args);
    let report = match plan::report(&input.strategies, &input.horizon, &input.sweeps) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jobcarbon plan: {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.chart
        && let Err(e) = write_chart(&input, path)
    {
        eprintln!("jobcarbon plan: {e:#}");
        return ExitCode::from(1);
    }
    let out = match args.format {
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("jobcarbon plan: encoding JSON: {e}");
                return ExitCode::from(1);
            }
        },
        Format::Table => render(&report, &args.file.display().to_string(), false),
        Format::Markdown => render(&report, &args.file.display().to_string(), true),
    };
    print!("{out}");
    ExitCode::SUCCESS
}

fn apply_overrides(mut input: PlanInput, args: &Args) -> PlanInput {
    if let Some(t) = args.traffic {
        input.horizon.traffic = t;
    }
    if let Some(l) = args.service_life {
        input.horizon.service_life = l;
    }
    if let Some(i) = args.retraining_interval {
        input.horizon.retraining_interval = Some(i);
    }
    for spec in &args.sweeps {
        input.sweeps.retain(|s| s.axis != spec.axis);
        input.sweeps.push(spec.clone());
    }
    input
        .sweeps
        .sort_by_key(|s| SweepAxis::ALL.iter().position(|a| *a == s.axis));
    input
}

fn write_chart(input: &PlanInput, path: &std::path::Path) -> anyhow::Result<()> {
    let pairs: Vec<(usize, usize, BreakEven)> = (0..input.strategies.len())
        .flat_map(|i| ((i + 1)..input.strategies.len()).map(move |j| (i, j)))
        .map(|(i, j)| {
            let be = plan::break_even(&input.strategies[i], &input.strategies[j], &input.horizon);
            (i, j, be)
        })
        .collect();
    let sweep_span = input
        .sweeps
        .iter()
        .find(|s| s.axis == SweepAxis::Traffic && s.values.len() > 1)
        .map(|s| {
            let lo = s.values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = s.values.iter().copied().fold(0.0, f64::max);
            (
                RequestRate(lo).requests_per_day(),
                RequestRate(hi).requests_per_day(),
            )
        });
    let span = chart::span(&input.horizon, &pairs, sweep_span);
    let svg = chart::render(&input.strategies, &input.horizon, &pairs, span)?;
    std::fs::write(path, svg)
        .map_err(|e| anyhow::anyhow!("writing the chart to {}: {e}", path.display()))
}

fn break_even_text(c: &Comparison) -> String {
    match &c.break_even {
        BreakEven::At {
            requests_per_day,
            requests,
            cheaper_below,
            cheaper_above,
        } => format!(
            "{} requests/day ({} requests over the service life): {cheaper_below} is cheaper below, {cheaper_above} above",
            amount(*requests_per_day),
            amount(*requests),
        ),
        BreakEven::Parallel { cheaper, margin_g } => format!(
            "none: same serving cost per request, {cheaper} is cheaper at every volume by {}",
            grams(*margin_g)
        ),
        BreakEven::Dominated { cheaper } => format!(
            "none: {cheaper} is cheaper at every volume (its fixed cost, up-front EPC plus re-training over the service life, and its per-request cost are both lower or equal)"
        ),
        BreakEven::Identical => "none: identical cost at every volume".to_owned(),
    }
}

/// A count that may be tiny: plain below 1000, with separators above.
fn amount(v: f64) -> String {
    if v.abs() < 1000.0 { sig(v) } else { count(v) }
}

fn life_text(c: &Comparison, report: &PlanReport) -> String {
    let upfront = |name: &str| {
        report
            .strategies
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.outlook.upfront_g)
            .unwrap_or(0.0)
    };
    let (dearer, cheaper) = if upfront(&c.strategy) >= upfront(&c.against) {
        (&c.strategy, &c.against)
    } else {
        (&c.against, &c.strategy)
    };
    match c.break_even_service_life_s {
        Some(s) => format!(
            "at the plan's traffic, {dearer}'s extra up-front carbon over {cheaper} is paid back after {} of service",
            duration(s)
        ),
        None => format!(
            "at the plan's traffic, no service life pays back {dearer}'s extra up-front carbon over {cheaper}"
        ),
    }
}

fn strategy_rows(report: &PlanReport) -> Vec<Vec<String>> {
    report
        .strategies
        .iter()
        .map(|s| {
            let o = &s.outlook;
            vec![
                s.name.clone(),
                s.serves.clone(),
                grams(o.upfront_g),
                grams(o.retraining_g),
                grams(o.operational_g),
                grams(o.total_g),
                format!("{} g", sig(o.per_inference_g)),
                format!("{} g", sig(s.per_request_serving_g)),
            ]
        })
        .collect()
}

const STRATEGY_HEADER: [&str; 8] = [
    "strategy",
    "serves",
    "up-front EPC",
    "re-training",
    "operational",
    "total",
    "per inference",
    "serving floor",
];

fn sweep_rows(sweep: &Sweep) -> (Vec<String>, Vec<Vec<String>>) {
    // Times print with their own units (`7 d`), traffic as a bare count.
    let mut header = vec![match sweep.axis {
        SweepAxis::Traffic => format!("{} ({})", sweep.axis, sweep.unit),
        _ => sweep.axis.to_string(),
    }];
    if let Some(first) = sweep.points.first() {
        header.extend(
            first
                .outlooks
                .iter()
                .map(|o| format!("{} g/inference", o.strategy)),
        );
    }
    header.push("cheapest".to_owned());
    let rows = sweep
        .points
        .iter()
        .map(|p| {
            let mut row = vec![match sweep.axis {
                SweepAxis::Traffic => count(p.value),
                _ => duration(p.value),
            }];
            row.extend(p.outlooks.iter().map(|o| sig(o.per_inference_g)));
            row.push(p.cheapest.clone());
            row
        })
        .collect();
    (header, rows)
}

fn headline(report: &PlanReport) -> String {
    format!(
        "traffic {} requests/day, service life {}; cheapest over the life cycle: {}",
        count(report.traffic_per_day),
        duration(report.service_life_s),
        report.cheapest
    )
}

/// The human report: an aligned text table, or Markdown for a design document.
pub fn render(report: &PlanReport, file: &str, markdown: bool) -> String {
    let table = |header: &[&str], rows: &[Vec<String>]| {
        if markdown {
            markdown_table(header, rows)
        } else {
            text_table(header, rows)
        }
    };
    let mut out = if markdown {
        format!(
            "# Life-cycle plan: `{file}`\n\n{}.\n\n## Strategies\n\n",
            headline(report)
        )
    } else {
        format!("plan {file}: {}\n\n", headline(report))
    };
    out.push_str(&table(&STRATEGY_HEADER, &strategy_rows(report)));
    if markdown {
        for s in &report.strategies {
            if let Some(d) = &s.description {
                out.push_str(&format!("\n- **{}**: {d}", s.name));
            }
        }
        out.push('\n');
    }
    out.push_str(if markdown {
        "\n## Break-even\n\n"
    } else {
        "\nbreak-even\n"
    });
    for c in &report.break_even {
        let (a, b) = if markdown {
            (
                format!("- **{}**", c.strategy),
                format!("**{}**", c.against),
            )
        } else {
            (format!("  {}", c.strategy), c.against.clone())
        };
        out.push_str(&format!(
            "{a} vs {b}: {}; {}{}\n",
            break_even_text(c),
            life_text(c, report),
            if markdown { "." } else { "" }
        ));
    }
    for sweep in &report.sweeps {
        let (header, rows) = sweep_rows(sweep);
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        out.push_str(&if markdown {
            format!("\n## Sweep over {}\n\n", sweep.axis)
        } else {
            format!("\nsweep over {}\n", sweep.axis)
        });
        out.push_str(&table(&header, &rows));
    }
    out
}

//! `jobcarbon`: life-cycle carbon (ASCᵉ) for every AI job on Kubernetes.
//!
//! This file is wiring only: parse the command line, set up tracing, dispatch.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod advise;
mod calc;
mod chart;
mod check_config;
mod crd;
mod datasheet;
mod demo;
mod ledger;
mod listen;
mod node;
mod plan;
mod report;
mod report_chart;
mod report_fmt;
mod signal;
mod simulation;
mod tls_client;

#[derive(Debug, Parser)]
#[command(
    name = "jobcarbon",
    version,
    about = "Life-cycle carbon (ASCe) for every AI job on Kubernetes"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "JOBCARBON_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The cluster accountant: watch pods, read energy, allocate, serve metrics.
    Ledger(ledger::Args),
    /// The per-node agent: NVML GPU energy per pod through kubelet pod-resources.
    Node(node::Args),
    /// The embedded default: the ledger over a simulated cluster, on localhost.
    Demo(demo::Args),
    /// When and where to start a product's next re-training run for the least carbon.
    Advise(advise::Args),
    /// Evaluate a scenario file offline.
    Calc(calc::Args),
    /// Compare life-cycle strategies.
    Plan(plan::Args),
    /// Energy and carbon over a window from a ledger's /api/v1/allocation.
    Report(report::Args),
    /// Write a product's carbon data sheet.
    Datasheet(datasheet::Args),
    /// Validate a ledger config file and exit.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Print the SoftwareProduct CRD as YAML.
    Crd,
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match cli.command {
        Command::Advise(args) => advise::run(args),
        Command::Calc(args) => calc::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Datasheet(args) => datasheet::run(args),
        Command::CheckConfig { file } => check_config::run(&file),
        Command::Crd => crd::run(),
        Command::Ledger(args) => ledger::run(args),
        Command::Node(args) => node::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Report(args) => report::run(args),
    }
}

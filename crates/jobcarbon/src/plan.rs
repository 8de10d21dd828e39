//! `jobcarbon plan` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("jobcarbon plan: not built yet");
    ExitCode::from(1)
}

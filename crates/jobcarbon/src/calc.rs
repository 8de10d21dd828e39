//! `jobcarbon calc` (being built).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("jobcarbon calc: not built yet");
    ExitCode::from(1)
}

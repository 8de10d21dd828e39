//! `jobcarbon crd` (being built).

use std::process::ExitCode;

pub fn run() -> ExitCode {
    eprintln!("jobcarbon crd: not built yet");
    ExitCode::from(1)
}

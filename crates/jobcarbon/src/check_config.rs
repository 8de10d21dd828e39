//! `jobcarbon check-config` (being built).

use std::path::Path;
use std::process::ExitCode;

pub fn run(_file: &Path) -> ExitCode {
    eprintln!("jobcarbon check-config: not built yet");
    ExitCode::from(1)
}

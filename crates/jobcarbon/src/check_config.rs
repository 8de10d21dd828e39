//! `jobcarbon check-config FILE`: validate a ledger config without starting anything.
//! Exit 0 when valid; 2 with the located error (file:line:column, path, reason) otherwise.

use jobcarbon_ledger::Config;
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            let settings = config.settings();
            println!(
                "{}: ok ({} regions, {} systems, {} products, interval {})",
                file.display(),
                settings.regions.len(),
                settings.systems.len(),
                config.products.len(),
                settings.interval
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

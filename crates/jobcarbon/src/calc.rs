//! `jobcarbon calc FILE`: evaluate a scenario offline (DESIGN §7). Input errors exit 2 with
//! `FILE: PATH: REASON`; a failure to write the output exits 1.

use jobcarbon_core::scenario::{Report, ScenarioDoc, ScenarioError};
use jobcarbon_core::units::{Grams, Joules};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario file: YAML, or JSON when it ends in `.json`; `-` reads YAML from standard input.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// DESIGN §7 JSON: every number in J or g.
    Json,
    /// Aligned columns with units, for people.
    Table,
}

pub fn run(args: Args) -> ExitCode {
    let report = match evaluate(&args.file) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    // Warnings go to stderr in every format (and into the JSON as `warnings`).
    for warning in &report.warnings {
        eprintln!(
            "warning: {}: {}: {}",
            args.file.display(),
            warning.path,
            warning.message
        );
    }
    let text = match args.format {
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(error) => {
                eprintln!("error: cannot encode the report: {error}");
                return ExitCode::from(1);
            }
        },
        Format::Table => table(&report),
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the report: {error}");
            ExitCode::from(1)
        }
    }
}

fn evaluate(file: &PathBuf) -> Result<Report, ScenarioError> {
    let name = file.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ScenarioError::unreadable("<stdin>", &e))?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| ScenarioError::unreadable(&name, &e))?
    };
    let label = if name == "-" { "<stdin>" } else { &name };
    let doc = if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        ScenarioDoc::from_json(label, &text)?
    } else {
        ScenarioDoc::from_yaml(label, &text)?
    };
    doc.evaluate(label)
}

/// Jobs, then products, each an aligned table with a unit in every cell.
fn table(report: &Report) -> String {
    let mut jobs = vec![
        [
            "JOB",
            "ENERGY",
            "JSC",
            "EC",
            "ASC",
            "JSCe",
            "MODEL EPC",
            "RETRAINING",
            "ASCe",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for job in &report.jobs {
        use jobcarbon_core::Term;
        jobs.push(vec![
            job.name.clone(),
            energy(job.energy),
            carbon(job.terms.jsc()),
            carbon(job.ec()),
            carbon(job.terms.asc()),
            carbon(job.terms.jsce()),
            carbon(job.terms[Term::ModelEpc]),
            carbon(job.terms[Term::Retraining]),
            carbon(job.terms.asce()),
        ]);
    }
    let mut products = vec![
        [
            "PRODUCT",
            "TYPE",
            "EPC",
            "MEASURED",
            "INHERITED",
            "DECLARED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for product in &report.products {
        products.push(vec![
            product.name.clone(),
            product.kind.to_string(),
            carbon(product.epc.total()),
            carbon(product.epc.measured),
            carbon(product.epc.inherited),
            carbon(product.epc.declared),
        ]);
    }
    let mut out = String::new();
    if report.jobs.is_empty() {
        out.push_str("(no jobs)\n");
    } else {
        out.push_str(&align(&jobs, 1));
    }
    out.push('\n');
    if report.products.is_empty() {
        out.push_str("(no products)\n");
    } else {
        out.push_str(&align(&products, 2));
    }
    for line in &report.unallocated {
        out.push_str(&format!(
            "\nunallocated: {} of {} ({}: no inference job serves it)\n",
            carbon(jobcarbon_core::Grams(line.grams_g)),
            line.product,
            line.reason
        ));
    }
    out
}

/// Columns before `left_columns` are left-aligned (names), the rest right-aligned (numbers).
fn align(rows: &[Vec<String>], left_columns: usize) -> String {
    let columns = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map(|s| s.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                if c < left_columns {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Five significant digits, no exponent for ordinary magnitudes.
fn significant(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor() as i32;
    if magnitude < -4 {
        return format!("{value:.4e}");
    }
    let decimals = (4 - magnitude).max(0) as usize;
    format!("{value:.decimals$}")
}

fn carbon(grams: Grams) -> String {
    let g = grams.value();
    let (value, unit) = if g.abs() >= 1e6 {
        (g / 1e6, "t")
    } else if g.abs() >= 1e3 {
        (g / 1e3, "kg")
    } else {
        (g, "g")
    };
    format!("{} {unit}", significant(value))
}

fn energy(joules: Joules) -> String {
    let j = joules.value();
    let (value, unit) = if j.abs() >= 3.6e9 {
        (j / 3.6e9, "MWh")
    } else if j.abs() >= 3.6e6 {
        (j / 3.6e6, "kWh")
    } else if j.abs() >= 1e3 {
        (j / 1e3, "kJ")
    } else {
        (j, "J")
    };
    format!("{} {unit}", significant(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_five_significant_digits_and_scale_units() {
        assert_eq!(carbon(Grams(0.19968)), "0.19968 g");
        assert_eq!(carbon(Grams(25.0)), "25.000 g");
        assert_eq!(carbon(Grams(2_900_000.0)), "2.9000 t");
        assert_eq!(carbon(Grams(1.5e-6)), "1.5000e-6 g");
        assert_eq!(energy(Joules::from_kwh(7372.8)), "7.3728 MWh");
        assert_eq!(energy(Joules(1000.0)), "1.0000 kJ");
        assert_eq!(carbon(Grams::ZERO), "0 g");
    }

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["A".to_owned(), "B".to_owned()],
            vec!["long name".to_owned(), "1 g".to_owned()],
        ];
        assert_eq!(align(&rows, 1), "A            B\nlong name  1 g\n");
    }
}

//! `jobcarbon datasheet PRODUCT --from FILE`: a product's carbon data sheet in Markdown (with
//! Hugging Face `co2_eq_emissions` front matter) and JSON. The numbers come from the same
//! scenario evaluation `jobcarbon calc` runs; for a plan file, from the strategy's scenario.

use crate::report_fmt::{duration, grams, markdown_table, sig};
use jobcarbon_core::Term;
use jobcarbon_core::datasheet::{self, DataSheet, LineageNode, SheetSource};
use jobcarbon_core::plan::RequestRate;
use jobcarbon_core::plan_file::PlanDoc;
use jobcarbon_core::quantity::parse;
use jobcarbon_core::scenario::{ScenarioDoc, ScenarioError, parse_yaml};
use jobcarbon_core::units::Seconds;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The product (model or dataset). In a plan file, `STRATEGY/PRODUCT` when the name is
    /// not unique.
    pub product: String,
    /// A scenario file (as for `calc`) or a plan file (as for `plan`).
    #[arg(long, value_name = "FILE")]
    pub from: String,
    /// Output format on standard output.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
    /// Write both PRODUCT.md and PRODUCT.json into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// State grams per inference at this traffic (default: the plan's traffic).
    #[arg(long, value_parser = parse_rate)]
    pub traffic: Option<RequestRate>,
    /// Service life for that figure (default: the plan's, else the product's lifetime).
    #[arg(long, value_parser = parse_time)]
    pub service_life: Option<Seconds>,
}

fn parse_rate(s: &str) -> Result<RequestRate, String> {
    parse::<RequestRate>(s).map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<Seconds, String> {
    parse::<Seconds>(s).map_err(|e| e.to_string())
}

/// Only the key that tells a plan from a scenario.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    strategies: Option<serde::de::IgnoredAny>,
}

pub fn run(args: Args) -> ExitCode {
    if args.from.starts_with("http://") || args.from.starts_with("https://") {
        eprintln!(
            "jobcarbon datasheet: --from {}: reading a ledger's /api/v1/products/{{name}} is not supported by this build yet; export a scenario or plan file and use --from FILE",
            args.from
        );
        return ExitCode::from(2);
    }
    let sheet = match build(&args) {
        Ok(sheet) => sheet,
        Err(e) => {
            eprintln!("jobcarbon datasheet: {e}");
            return ExitCode::from(2);
        }
    };
    let json = match serde_json::to_string_pretty(&sheet) {
        Ok(s) => s + "\n",
        Err(e) => {
            eprintln!("jobcarbon datasheet: encoding JSON: {e}");
            return ExitCode::from(1);
        }
    };
    let markdown = match render_markdown(&sheet) {
        Ok(md) => md,
        Err(e) => {
            eprintln!("jobcarbon datasheet: {e}");
            return ExitCode::from(1);
        }
    };
    match &args.out {
        Some(dir) => match write_both(dir, &sheet.product, &markdown, &json) {
            Ok(paths) => {
                for p in paths {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jobcarbon datasheet: {e}");
                ExitCode::from(1)
            }
        },
        None => {
            print!(
                "{}",
                match args.format {
                    Format::Markdown => markdown,
                    Format::Json => json,
                }
            );
            ExitCode::SUCCESS
        }
    }
}

fn write_both(
    dir: &Path,
    product: &str,
    markdown: &str,
    json: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let stem: String = product
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut written = Vec::new();
    for (ext, text) in [("md", markdown), ("json", json)] {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Every error here is an input error (exit 2) and names the file.
fn build(args: &Args) -> anyhow::Result<DataSheet> {
    let file = args.from.clone();
    let text = std::fs::read_to_string(&file).map_err(|e| ScenarioError::unreadable(&file, &e))?;
    let probe: Probe = parse_yaml(&file, &text)?;
    if probe.strategies.is_none() {
        let scenario = ScenarioDoc::from_yaml(&file, &text)?;
        let report = scenario.evaluate(&file)?;
        let src = SheetSource {
            source: &file,
            file: &file,
            scenario: &scenario,
            report: &report,
            traffic: args.traffic,
            service_life: args.service_life,
        };
        return Ok(datasheet::build(&args.product, src)?);
    }
    let plan = PlanDoc::from_yaml(&file, &text)?;
    let (input, evaluated) = plan.evaluate(&file)?;
    let (strategy, product) = match args.product.split_once('/') {
        Some((s, p)) => (Some(s), p),
        None => (None, args.product.as_str()),
    };
    let index = match strategy {
        Some(s) => plan
            .strategies
            .0
            .iter()
            .position(|(name, _)| name == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{file}: no strategy {s:?} (defined: {})",
                    plan.strategies.names().join(", ")
                )
            })?,
        None => {
            let owners: Vec<usize> = plan
                .strategies
                .0
                .iter()
                .enumerate()
                .filter(|(_, (_, st))| st.products.get(product).is_some())
                .map(|(i, _)| i)
                .collect();
            match owners.as_slice() {
                [one] => *one,
                [] => 0, // a shared product (or unknown: the sheet builder names it)
                _ => {
                    anyhow::bail!(
                        "{file}: {product:?} is defined by several strategies; write STRATEGY/{product}"
                    );
                }
            }
        }
    };
    let chosen = &evaluated[index];
    let own = plan.strategies.0[index].1.products.get(product).is_some();
    let source = if own {
        format!("{file}, strategy {}", chosen.name)
    } else {
        format!("{file} (shared product)")
    };
    let src = SheetSource {
        source: &source,
        file: &file,
        scenario: &chosen.scenario,
        report: &chosen.report,
        traffic: args.traffic.or(Some(input.horizon.traffic)),
        service_life: args.service_life.or(Some(input.horizon.service_life)),
    };
    Ok(datasheet::build(product, src)?)
}

fn lineage_lines(node: &LineageNode, depth: usize, out: &mut String) {
    let edge = match (node.via, node.weight) {
        (Some(via), Some(w)) => format!(" — {via}, weight {}", sig(w)),
        _ => String::new(),
    };
    out.push_str(&format!(
        "{}- **{}** ({}, EPC {}){edge}\n",
        "  ".repeat(depth),
        node.product,
        node.kind,
        grams(node.epc_g)
    ));
    for parent in &node.parents {
        lineage_lines(parent, depth + 1, out);
    }
}

const TERMS: [Term; 6] = Term::ALL;

pub fn render_markdown(sheet: &DataSheet) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct FrontMatter<'a> {
        co2_eq_emissions: &'a datasheet::Co2EqEmissions,
    }
    let front = serde_saphyr::to_string(&FrontMatter {
        co2_eq_emissions: &sheet.co2_eq_emissions,
    })
    .map_err(|e| anyhow::anyhow!("encoding the model-card metadata: {e}"))?;
    let mut out = format!("---\n{}---\n\n", front);
    out.push_str(&format!(
        "# Carbon data sheet: {} ({})\n\nSource: {}. Metrics: EPC and ASCe of Eilam et al., \"Towards a Methodology and Framework for AI Sustainability Metrics\" (HotCarbon '23), in gCO2e.\n\n",
        sheet.product, sheet.kind, sheet.source
    ));

    epc_section(&sheet.epc, &mut out);
    out.push_str("\n## Lineage\n\n");
    lineage_lines(&sheet.lineage, 0, &mut out);
    amortisation_section(sheet.amortisation.as_ref(), &mut out);
    inference_sections(sheet, &mut out);
    assumptions_section(&sheet.assumptions, &mut out);
    Ok(out)
}

/// EPC by part, and what it inherits edge by edge.
fn epc_section(e: &datasheet::EpcSheet, out: &mut String) {
    out.push_str("## Embodied product cost (EPC)\n\n");
    let built_by = e
        .built_by
        .iter()
        .map(|j| format!("{} ({})", j.job, grams(j.asce_g)))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&markdown_table(
        &["part", "carbon", "grams", "from"],
        &[
            vec![
                "measured".into(),
                grams(e.measured_g),
                sig(e.measured_g),
                built_by,
            ],
            vec![
                "inherited".into(),
                grams(e.inherited_g),
                sig(e.inherited_g),
                format!("{} edge(s), below", e.inherited_from.len()),
            ],
            vec![
                "declared".into(),
                grams(e.declared_g),
                sig(e.declared_g),
                e.declared_source.clone().unwrap_or_default(),
            ],
            vec![
                "**total**".into(),
                grams(e.total_g),
                sig(e.total_g),
                String::new(),
            ],
        ],
    ));
    if !e.inherited_from.is_empty() {
        out.push_str("\n### Inherited, edge by edge\n\n");
        let rows: Vec<Vec<String>> = e
            .inherited_from
            .iter()
            .map(|i| {
                vec![
                    i.product.clone(),
                    i.via.to_owned(),
                    sig(i.weight),
                    grams(i.product_epc_g),
                    grams(i.inherited_g),
                ]
            })
            .collect();
        out.push_str(&markdown_table(
            &["from", "via", "weight", "its EPC", "inherited"],
            &rows,
        ));
    }
}

fn amortisation_section(amortisation: Option<&datasheet::Amortisation>, out: &mut String) {
    out.push_str("\n## Lifetime and amortisation\n\n");
    match amortisation {
        Some(a) => out.push_str(&format!(
            "- lifetime (LT): {}\n- EPC per day of lifetime: {}\n- amortised by the serving jobs in the source: {} ({}% of EPC); remaining: {}\n",
            duration(a.lifetime_s),
            grams(a.epc_per_day_g),
            grams(a.amortised_g),
            sig(a.amortised_fraction * 100.0),
            grams(a.remaining_g)
        )),
        None => out.push_str("- no lifetime declared: the EPC is carried by the products derived from it\n"),
    }
}

/// The serving jobs as evaluated, and their grams per inference at the stated traffic.
fn inference_sections(sheet: &DataSheet, out: &mut String) {
    let mut header = vec!["job", "ASCe per inference"];
    header.extend(TERMS.iter().map(|t| t.as_str()));
    if !sheet.inference.is_empty() {
        out.push_str("\n## Inference (as evaluated in the source)\n\n");
        let rows: Vec<Vec<String>> = sheet
            .inference
            .iter()
            .map(|j| {
                let mut row = vec![j.job.clone(), format!("{} g", sig(j.asce_g))];
                row.extend(TERMS.iter().map(|t| sig(j.terms[*t].value())));
                row
            })
            .collect();
        out.push_str(&markdown_table(&header, &rows));
    }
    if !sheet.at_traffic.is_empty() {
        let first = &sheet.at_traffic[0];
        out.push_str(&format!(
            "\n## Grams per inference at {} requests/day over {}\n\n",
            sig(first.traffic_per_day),
            duration(first.service_life_s)
        ));
        let rows: Vec<Vec<String>> = sheet
            .at_traffic
            .iter()
            .map(|a| {
                let mut row = vec![a.job.clone(), format!("{} g", sig(a.per_inference_g))];
                row.extend(TERMS.iter().map(|t| sig(a.terms[*t].value())));
                row
            })
            .collect();
        out.push_str(&markdown_table(&header, &rows));
    }
}

/// Regions, systems and platforms the numbers assume.
fn assumptions_section(a: &datasheet::Assumptions, out: &mut String) {
    out.push_str("\n## Assumptions\n\n");
    if !a.regions.is_empty() {
        let rows: Vec<Vec<String>> = a
            .regions
            .iter()
            .map(|r| {
                let mix = r
                    .mix
                    .as_ref()
                    .map(|m| {
                        m.iter()
                            .map(|(s, f)| format!("{s} {}%", sig(f * 100.0)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                vec![r.name.clone(), sig(r.pue), sig(r.intensity_g_per_kwh), mix]
            })
            .collect();
        out.push_str(&markdown_table(
            &["region", "PUE", "gCO2e/kWh", "mix"],
            &rows,
        ));
    }
    if !a.systems.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = a
            .systems
            .iter()
            .map(|s| vec![s.name.clone(), grams(s.embodied_g), duration(s.lifetime_s)])
            .collect();
        out.push_str(&markdown_table(&["system", "embodied", "lifetime"], &rows));
    }
    if !a.platforms.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = a
            .platforms
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    format!("{} g/min", sig(p.overhead_g_per_s * 60.0)),
                    grams(p.epc_g),
                    p.lifetime_s.map(duration).unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&markdown_table(
            &["platform", "overhead", "EPC", "lifetime"],
            &rows,
        ));
    }
}

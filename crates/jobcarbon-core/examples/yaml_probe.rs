//! Where `calc`'s YAML time goes: times each layer on the bench's 100k-job scenario.
//!
//!     cargo run --release -p jobcarbon-core --example yaml_probe -- [JOBS] [PRODUCTS]

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../benches/support/scenario_gen.rs"]
mod scenario_gen;

use jobcarbon_core::scenario::{ScenarioDoc, parse_yaml};
use std::time::Instant;

fn time<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    println!("{what:<50} {:>8.3} s", start.elapsed().as_secs_f64());
    out
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let jobs = args.first().copied().unwrap_or(100_000);
    let products = args.get(1).copied().unwrap_or(10_000);
    let yaml = scenario_gen::scenario_yaml(products, jobs);
    println!("{jobs} jobs, {products} products, {} bytes", yaml.len());
    if let Ok(path) = std::env::var("DUMP") {
        std::fs::write(path, &yaml).unwrap();
    }
    let which = std::env::var("PROBE").unwrap_or_else(|_| "all".into());
    let on = |name: &str| which == "all" || which.split(',').any(|w| w == name);
    let big = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_nodes: usize::MAX, max_events: usize::MAX },
    };
    if on("events") {
        time("granit-parser events only", || {
            let mut n = 0usize;
            for e in serde_saphyr::granit_parser::Parser::new_from_str(&yaml) {
                e.unwrap();
                n += 1;
            }
            n
        });
    }
    if on("ignored") {
        time("serde-saphyr -> IgnoredAny", || {
            serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(&yaml, big.clone())
                .unwrap()
        });
    }
    if on("typed") {
        time("serde-saphyr -> ScenarioDoc (no path tracking)", || {
            serde_saphyr::from_str_with_options::<ScenarioDoc>(&yaml, big.clone()).unwrap()
        });
    }
    let variants: Vec<(&str, serde_saphyr::Options)> = vec![
        ("no budget", serde_saphyr::options! { budget: None }),
        (
            "no budget, no comments",
            serde_saphyr::options! { budget: None, emit_comments: false },
        ),
        (
            "no budget, no comments, dup keys pass-through",
            serde_saphyr::options! {
                budget: None,
                emit_comments: false,
                duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
            },
        ),
        (
            "... and merge keys as ordinary, no snippet",
            serde_saphyr::options! {
                budget: None,
                emit_comments: false,
                duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
                merge_keys: serde_saphyr::MergeKeyPolicy::AsOrdinary,
                with_snippet: false,
            },
        ),
    ];
    if on("options") {
        for (name, options) in variants {
            time(&format!("ScenarioDoc, {name}"), || {
                serde_saphyr::from_str_with_options::<ScenarioDoc>(&yaml, options).unwrap()
            });
        }
    }
    if on("before") {
        time("serde-saphyr + path tracking (parse_yaml before)", || {
            jobcarbon_core::yaml::from_str_serde_saphyr::<ScenarioDoc>(&yaml).unwrap()
        });
    }
    if on("parse_yaml") {
        let doc = time("parse_yaml -> ScenarioDoc (fast path)", || {
            parse_yaml::<ScenarioDoc>("bench", &yaml).unwrap()
        });
        time("  evaluate", || doc.evaluate("bench").unwrap());
    }
}

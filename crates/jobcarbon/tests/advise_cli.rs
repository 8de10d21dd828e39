//! `jobcarbon advise`: the config's Electricity Maps region (against the testkit's fake API)
//! and a static region, the best start and the saving as `/api/v1/advice` computes them, as
//! JSON and as a table; bad parameters exit 2 naming the flag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use jobcarbon_testkit::intensity_api::{FakeIntensityApi, unix_now};
use serde_json::Value;

fn run(args: Vec<String>) -> std::process::Output {
    Command::cargo_bin("jobcarbon")
        .unwrap()
        .args(args)
        .output()
        .unwrap()
}

/// de from Electricity Maps (PUE 1.25), fr static at 300 g/kWh (PUE 1.1).
fn write_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), "em-secret").unwrap();
    let config = dir.join("ledger.yaml");
    std::fs::write(
        &config,
        format!(
            "regions:\n  de: {{pue: 1.25, intensity: {{electricityMaps: {{zone: DE, tokenFile: {}, url: '{url}'}}}}}}\n  fr: {{pue: 1.1, intensity: 300}}\ndefaultRegion: de\n",
            dir.join("token").display(),
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn advise_reads_the_provider_forecast_and_finds_the_clean_hours() {
    let now = unix_now();
    let hour = now - now.rem_euclid(3600);
    let api = FakeIntensityApi::start().await.unwrap();
    // 400 g/kWh except 100 from 4 to 6 hours after the current hour.
    api.electricity_maps(
        "em-secret",
        (0..30)
            .map(|h| {
                (
                    hour + h * 3600,
                    if (4..6).contains(&h) { 100.0 } else { 400.0 },
                )
            })
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), api.url());
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = ["advise", "--config", config.to_str().unwrap()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let json = args(&[
        "--product",
        "distilbert",
        "--duration",
        "2h",
        "--within",
        "12h",
        "--energy",
        "500kWh",
        "--format",
        "json",
    ]);
    let out = tokio::task::spawn_blocking(move || run(json))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 500 kWh × 1.25 × 100 = 62.5 kg at hour + 4 h in de; now: 500 × 1.25 × 400 = 250 kg;
    // fr: 500 × 1.1 × 300 = 165 kg.
    assert_eq!(a["best"]["region"], "de", "{a}");
    assert_eq!(
        a["best"]["start_unix"].as_f64().unwrap(),
        (hour + 4 * 3600) as f64
    );
    assert!((a["best"]["grams"].as_f64().unwrap() - 62_500.0).abs() < 1e-6);
    assert!((a["now"]["grams"].as_f64().unwrap() - 250_000.0).abs() < 1e-6);
    assert!((a["saving_percent"].as_f64().unwrap() - 75.0).abs() < 1e-9);

    let table = args(&[
        "--product",
        "distilbert",
        "--duration",
        "2h",
        "--energy",
        "500kWh",
    ]);
    let out = tokio::task::spawn_blocking(move || run(table))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("62.5 kg") && text.contains("saving"),
        "{text}"
    );

    let bad = args(&["--product", "distilbert", "--duration", "soon"]);
    let out = tokio::task::spawn_blocking(move || run(bad)).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}

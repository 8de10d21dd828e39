//! Any YAML scenario: a located error, or a report whose every number is finite.
#![no_main]
use jobcarbon_core::scenario::ScenarioDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(doc) = ScenarioDoc::from_yaml("fuzz.yaml", text)
        && let Ok(report) = doc.evaluate("fuzz.yaml")
    {
        for job in &report.jobs {
            assert!(job.terms.asce().value().is_finite(), "{text:?}");
        }
        for p in &report.products {
            assert!(p.epc.total().value().is_finite(), "{text:?}");
        }
    }
});

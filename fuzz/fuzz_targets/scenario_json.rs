//! Any JSON scenario: a located error, or a report whose every number is finite.
#![no_main]
use jobcarbon_core::scenario::ScenarioDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(doc) = ScenarioDoc::from_json("fuzz.json", text)
        && let Ok(report) = doc.evaluate("fuzz.json")
    {
        for job in &report.jobs {
            assert!(job.terms.asce().value().is_finite(), "{text:?}");
        }
    }
});

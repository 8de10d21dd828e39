//! Any plan file: a located error or an evaluation, never a panic.
#![no_main]
use jobcarbon_core::plan_file::PlanDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(doc) = PlanDoc::from_yaml("fuzz.yaml", text) {
        let _ = doc.evaluate("fuzz.yaml");
    }
});

//! Any ledger config YAML: an error that names the file, or settings whose every number is
//! finite and sources that can be built from them.
#![no_main]
use jobcarbon_ledger::Config;
use jobcarbon_ledger::sources::{dcgm_config, kepler_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Config::parse(text, "fuzz.yaml") {
        Ok(config) => {
            let settings = config.settings();
            assert!(settings.interval.value().is_finite() && settings.interval.value() > 0.0);
            for (name, region) in &settings.regions {
                assert!(
                    region.pue.0.is_finite() && region.pue.0 >= 1.0,
                    "{name}: {region:?}"
                );
            }
            for system in &settings.systems {
                assert!(system.embodied.value().is_finite(), "{system:?}");
            }
            let _ = kepler_config(&config);
            let _ = dcgm_config(&config);
        }
        Err(e) => assert!(e.to_string().contains("fuzz.yaml"), "{e}"),
    }
});

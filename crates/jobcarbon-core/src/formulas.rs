//! The metrics of Eilam et al. (HotCarbon '23) §2, as pure functions over unit types.
//! Each function is one row of DESIGN §2; composition into ASCᵉ lives in [`crate::Terms`].

use crate::units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Pue, Seconds, Watts};

/// JSC(j) = E × PUE × CI / 3.6e6.
pub fn operational_carbon(energy: Joules, pue: Pue, intensity: GramsPerKwh) -> Grams {
    (energy * pue) * intensity
}

/// Intensity of a mix: Σ fraction × intensity(source).
pub fn mix_intensity(mix: impl IntoIterator<Item = (f64, GramsPerKwh)>) -> GramsPerKwh {
    GramsPerKwh(mix.into_iter().map(|(f, ci)| f * ci.value()).sum())
}

/// ec(j) for one system: embodied × t / lifetime × share (SCI's TE × TiR × RS).
pub fn embodied_system_share(
    embodied: Grams,
    lifetime: Seconds,
    duration: Seconds,
    share: f64,
) -> Grams {
    embodied * (duration / lifetime) * share
}

/// Platform operational tax: overhead rate × t / n.
pub(crate) fn platform_operational_share(
    overhead: GramsPerSecond,
    duration: Seconds,
    concurrent_jobs: f64,
) -> Grams {
    (overhead * duration) / concurrent_jobs
}

/// Amortised product cost: EPC × t / (n × lifetime). Used for the platform's EPC and for
/// the model-EPC term of inference.
pub fn amortized_product_share(
    epc: Grams,
    lifetime: Seconds,
    duration: Seconds,
    concurrent_jobs: f64,
) -> Grams {
    epc * (duration / lifetime) / concurrent_jobs
}

/// Re-training share of one inference job: pool carbon / jobs (or requests) in the interval.
pub(crate) fn retraining_share(pool: Grams, jobs_per_interval: f64) -> Grams {
    pool / jobs_per_interval
}

/// Energy from power drawn by several devices for a time.
pub(crate) fn energy_from_power(power: Watts, devices: f64, duration: Seconds) -> Joules {
    (power * duration) * devices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn paper_jsc_example() {
        let ci = mix_intensity([(0.8, GramsPerKwh(820.0)), (0.2, GramsPerKwh(48.0))]);
        let jsc = operational_carbon(Joules(1000.0), Pue(1.08), ci);
        assert!(close(jsc.value(), 0.19968, 1e-12), "{jsc}");
    }

    #[test]
    fn paper_embodied_example() {
        let ec = embodied_system_share(
            Grams(10_000.0),
            Seconds::from_years(3.0),
            Seconds::from_minutes(5.0),
            1.0,
        );
        assert!(close(
            ec.value(),
            10_000.0 * 5.0 / (3.0 * 365.0 * 24.0 * 60.0),
            1e-12
        ));
        assert!((ec.value() - 0.0317).abs() < 5e-5);
    }

    #[test]
    fn paper_platform_tax_example() {
        let tax = platform_operational_share(
            GramsPerSecond::per_minute(50.0),
            Seconds::from_minutes(5.0),
            10.0,
        );
        assert!(close(tax.value(), 25.0, 1e-12));
    }

    #[test]
    fn roberta_energy_is_7372_8_kwh() {
        let e = energy_from_power(Watts(300.0), 1024.0, Seconds::from_hours(24.0));
        assert!(close(e.kwh(), 7372.8, 1e-12));
        let distil = energy_from_power(Watts(250.0), 8.0, Seconds::from_hours(84.0));
        assert!(close(distil.kwh(), 168.0, 1e-12));
    }
}

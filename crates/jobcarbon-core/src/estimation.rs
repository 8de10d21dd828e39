//! Energy where there is no meter: the Cloud Carbon Footprint (CCF) model for cloud VMs.
//!
//! CCF estimates a vCPU's power as linear in utilisation between a minimum and a maximum
//! wattage per vCPU, by processor micro-architecture, derived from SPECpower results
//! (cloudcarbonfootprint.org/docs/methodology, "Compute"; the coefficients of the
//! `ccf-coefficients` repository), and memory at 0.392 W per GB (0.000392 kWh per GB-hour).
//! We split it the way the ledger books measured energy: the minimum of every vCPU is node idle
//! (shared by `energy.nodeIdle`), and each container's CPU seconds add `max − min` each, so
//! a node's total is `vCPUs × (min + utilisation × (max − min))`, CCF's formula.

use crate::units::{Joules, Seconds, Watts};
use serde::{Deserialize, Serialize};

/// Watts per vCPU at idle and at full load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuCoefficients {
    /// Power per vCPU at 0 % utilisation.
    pub min: Watts,
    /// Power per vCPU at 100 % utilisation.
    pub max: Watts,
}

/// CCF's memory coefficient: 0.000392 kWh per GB-hour.
pub const MEMORY_WATTS_PER_GB: f64 = 0.392;

/// CCF's per-vCPU coefficients by micro-architecture (min W, max W).
pub const CCF_MICROARCHITECTURES: [(&str, f64, f64); 10] = [
    ("haswell", 1.90, 5.99),
    ("broadwell", 0.71, 3.54),
    ("skylake", 0.64, 4.05),
    ("cascade-lake", 0.64, 3.80),
    ("coffee-lake", 1.14, 5.42),
    ("epyc-1st-gen", 0.82, 2.55),
    ("epyc-2nd-gen", 0.47, 1.64),
    ("epyc-3rd-gen", 0.45, 1.87),
    ("graviton", 0.47, 1.69),
    ("graviton2", 0.47, 1.69),
];

/// CCF's average over AWS' micro-architectures, for hardware that is not known.
pub const CCF_UNKNOWN: CpuCoefficients = CpuCoefficients {
    min: Watts(0.74),
    max: Watts(3.5),
};

/// The coefficients of a micro-architecture named as in [`CCF_MICROARCHITECTURES`].
pub fn microarchitecture(name: &str) -> Option<CpuCoefficients> {
    CCF_MICROARCHITECTURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, min, max)| CpuCoefficients {
            min: Watts(*min),
            max: Watts(*max),
        })
}

/// The micro-architecture of common cloud instance families (AWS names; the family is the
/// part before the dot, e.g. `m5` of `m5.2xlarge`), per the providers' instance pages.
pub fn instance_microarchitecture(instance_type: &str) -> Option<&'static str> {
    let family = instance_type.split('.').next()?;
    Some(match family {
        "m4" | "c4" | "r4" => "broadwell",
        "m5" | "c5" | "r5" | "m5d" | "c5d" | "r5d" => "skylake",
        "m5n" | "c5n" | "r5n" | "g4dn" | "p3dn" => "cascade-lake",
        "m5a" | "c5a" | "r5a" => "epyc-1st-gen",
        "m6a" | "c6a" | "r6a" | "g5" => "epyc-2nd-gen",
        "m6g" | "c6g" | "r6g" | "t4g" => "graviton2",
        "a1" => "graviton",
        _ => return None,
    })
}

/// Energy of `cpu_seconds` of CPU time above idle.
pub fn cpu_dynamic_energy(cpu_seconds: f64, c: CpuCoefficients) -> Joules {
    Joules(cpu_seconds.max(0.0) * (c.max - c.min).non_negative().value())
}

/// Idle energy of `vcpus` over `duration`.
pub fn cpu_idle_energy(vcpus: f64, duration: Seconds, c: CpuCoefficients) -> Joules {
    Joules(vcpus.max(0.0) * c.min.value() * duration.non_negative().value())
}

/// Energy of `gb_seconds` of memory (working set × time).
pub fn memory_energy(gb_seconds: f64, watts_per_gb: f64) -> Joules {
    Joules(gb_seconds.max(0.0) * watts_per_gb.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_node_adds_up_to_ccf_formula() {
        // 4 vCPUs at 50 % for an hour on Skylake: CCF gives 4 × (0.64 + 0.5 × 3.41) W × 1 h.
        let c = microarchitecture("skylake").unwrap_or(CCF_UNKNOWN);
        let idle = cpu_idle_energy(4.0, Seconds(3600.0), c);
        let busy = cpu_dynamic_energy(4.0 * 0.5 * 3600.0, c);
        let ccf = 4.0 * (0.64 + 0.5 * (4.05 - 0.64)) * 3600.0;
        assert!(((idle + busy).value() - ccf).abs() < 1e-9);
        assert_eq!(instance_microarchitecture("m5.2xlarge"), Some("skylake"));
        assert_eq!(instance_microarchitecture("x9.metal"), None);
        assert!(
            (memory_energy(16.0 * 3600.0, MEMORY_WATTS_PER_GB).value() - 16.0 * 0.392 * 3600.0)
                .abs()
                < 1e-9
        );
    }
}

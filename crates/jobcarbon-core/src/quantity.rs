//! Quantities written as strings with units (DESIGN §7): `1kJ`, `0.015 kWh`, `552kg`, `3y`,
//! `300W`, `50g/min`. One parser for scenario files, the ledger config and CRD fields.

use crate::units::{Grams, GramsPerKwh, GramsPerSecond, Joules, Seconds, Watts};
use serde::{Deserialize, Deserializer};

/// Why a quantity string was rejected. The caller adds where it was (file, path).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantityError {
    /// The text has no leading number.
    #[error("{input:?} has no number (expected a number followed by a unit, e.g. {example})")]
    NoNumber {
        /// The text as given.
        input: String,
        /// A well-formed example of the expected kind.
        example: &'static str,
    },
    /// The number is followed by a unit this kind does not know.
    #[error("unknown {kind} unit {unit:?} in {input:?} (expected one of {expected})")]
    UnknownUnit {
        /// The kind of quantity expected (`energy`, `duration`, …).
        kind: &'static str,
        /// The unit as written.
        unit: String,
        /// The text as given.
        input: String,
        /// The units this kind accepts.
        expected: &'static str,
    },
    /// The number is NaN or infinite, or overflows in the base unit.
    #[error("{input:?} is not a finite number (or overflows once its unit is applied)")]
    NotFinite {
        /// The text as given.
        input: String,
    },
    /// The number is negative; no accepted quantity can be.
    #[error("{input:?} is negative; a {kind} cannot be negative")]
    Negative {
        /// The kind of quantity expected.
        kind: &'static str,
        /// The text as given.
        input: String,
    },
}

/// A kind of quantity: its units and how each maps to the base unit.
pub trait Unit: Sized + Copy {
    /// Name of the kind in error messages (`energy`, `duration`, …).
    const KIND: &'static str;
    /// The accepted units, listed in error messages.
    const EXPECTED: &'static str;
    /// A well-formed example, shown when no number is found.
    const EXAMPLE: &'static str;
    /// Multiplier to the base unit, or None if the unit is unknown. `""` is the bare number.
    fn factor(unit: &str) -> Option<f64>;
    /// The quantity from a value in the base unit (J, s, g, …).
    fn from_base(value: f64) -> Self;
}

impl Unit for Joules {
    const KIND: &'static str = "energy";
    const EXPECTED: &'static str = "J, kJ, MJ, Wh, kWh, MWh";
    const EXAMPLE: &'static str = "1kJ";
    fn factor(unit: &str) -> Option<f64> {
        Some(match unit {
            "J" => 1.0,
            "kJ" => 1e3,
            "MJ" => 1e6,
            "Wh" => 3600.0,
            "kWh" => 3.6e6,
            "MWh" => 3.6e9,
            _ => return None,
        })
    }
    fn from_base(value: f64) -> Self {
        Joules(value)
    }
}

impl Unit for Grams {
    const KIND: &'static str = "carbon";
    const EXPECTED: &'static str = "g, kg, t";
    const EXAMPLE: &'static str = "552kg";
    fn factor(unit: &str) -> Option<f64> {
        Some(match unit {
            "g" => 1.0,
            "kg" => 1e3,
            "t" => 1e6,
            _ => return None,
        })
    }
    fn from_base(value: f64) -> Self {
        Grams(value)
    }
}

impl Unit for Seconds {
    const KIND: &'static str = "time";
    const EXPECTED: &'static str = "s, m, min, h, d, mo, y";
    const EXAMPLE: &'static str = "5m";
    fn factor(unit: &str) -> Option<f64> {
        Some(match unit {
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "mo" => crate::units::SECONDS_PER_YEAR / 12.0,
            "y" => crate::units::SECONDS_PER_YEAR,
            _ => return None,
        })
    }
    fn from_base(value: f64) -> Self {
        Seconds(value)
    }
}

impl Unit for Watts {
    const KIND: &'static str = "power";
    const EXPECTED: &'static str = "W, kW";
    const EXAMPLE: &'static str = "300W";
    fn factor(unit: &str) -> Option<f64> {
        Some(match unit {
            "W" => 1.0,
            "kW" => 1e3,
            _ => return None,
        })
    }
    fn from_base(value: f64) -> Self {
        Watts(value)
    }
}

impl Unit for GramsPerSecond {
    const KIND: &'static str = "carbon rate";
    const EXPECTED: &'static str = "g/s, g/min, g/h, kg/h";
    const EXAMPLE: &'static str = "50g/min";
    fn factor(unit: &str) -> Option<f64> {
        Some(match unit {
            "g/s" => 1.0,
            "g/min" => 1.0 / 60.0,
            "g/h" => 1.0 / 3600.0,
            "kg/h" => 1e3 / 3600.0,
            _ => return None,
        })
    }
    fn from_base(value: f64) -> Self {
        GramsPerSecond(value)
    }
}

impl Unit for GramsPerKwh {
    const KIND: &'static str = "carbon intensity";
    const EXPECTED: &'static str = "a bare number (gCO2e/kWh) or g/kWh";
    const EXAMPLE: &'static str = "420";
    fn factor(unit: &str) -> Option<f64> {
        match unit {
            "" | "g/kWh" | "gCO2e/kWh" => Some(1.0),
            _ => None,
        }
    }
    fn from_base(value: f64) -> Self {
        GramsPerKwh(value)
    }
}

/// Parse a non-negative quantity such as `"1.5 kWh"`.
pub fn parse<U: Unit>(input: &str) -> Result<U, QuantityError> {
    let trimmed = input.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(trimmed.len());
    // `e` belongs to the number only when followed by a digit or sign (1e3), not in a unit.
    let (mut number, mut unit) = trimmed.split_at(split);
    if let Some(pos) = number.find(['e', 'E']) {
        let exponent = &number[pos + 1..];
        if exponent.is_empty() || exponent == "-" || exponent == "+" {
            unit = &trimmed[pos..];
            number = &trimmed[..pos];
        }
    }
    let unit = unit.trim();
    let value: f64 = number.parse().map_err(|_| QuantityError::NoNumber {
        input: input.to_owned(),
        example: U::EXAMPLE,
    })?;
    if !value.is_finite() {
        return Err(QuantityError::NotFinite {
            input: input.to_owned(),
        });
    }
    if value < 0.0 {
        return Err(QuantityError::Negative {
            kind: U::KIND,
            input: input.to_owned(),
        });
    }
    let factor = U::factor(unit).ok_or_else(|| QuantityError::UnknownUnit {
        kind: U::KIND,
        unit: unit.to_owned(),
        input: input.to_owned(),
        expected: U::EXPECTED,
    })?;
    let scaled = value * factor;
    if !scaled.is_finite() {
        return Err(QuantityError::NotFinite {
            input: input.to_owned(),
        });
    }
    Ok(U::from_base(scaled))
}

/// A quantity read from YAML/JSON: a string with a unit, or (for intensity only) a bare number.
/// Use as a field type: `lifetime: Q<Seconds>`, then `.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Q<U>(pub U);

impl<'de, U: Unit> Deserialize<'de> for Q<U> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(s) => s,
            Raw::Number(n) => format!("{n}"),
        };
        parse::<U>(&text).map(Q).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_unit() {
        assert_eq!(parse::<Joules>("1kJ"), Ok(Joules(1000.0)));
        assert_eq!(parse::<Joules>("0.5 Wh"), Ok(Joules(1800.0)));
        assert_eq!(parse::<Joules>("2MWh"), Ok(Joules(7.2e9)));
        assert_eq!(parse::<Grams>("552kg"), Ok(Grams(552_000.0)));
        assert_eq!(parse::<Grams>("2000t"), Ok(Grams(2e9)));
        assert_eq!(parse::<Seconds>("5m"), Ok(Seconds(300.0)));
        assert_eq!(parse::<Seconds>("5min"), Ok(Seconds(300.0)));
        assert_eq!(parse::<Seconds>("1d"), Ok(Seconds(86_400.0)));
        assert_eq!(parse::<Seconds>("3y"), Ok(Seconds(3.0 * 365.0 * 86_400.0)));
        assert_eq!(parse::<Watts>("1.5kW"), Ok(Watts(1500.0)));
        assert_eq!(parse::<GramsPerSecond>("60g/min"), Ok(GramsPerSecond(1.0)));
        assert_eq!(parse::<GramsPerKwh>("420"), Ok(GramsPerKwh(420.0)));
        assert_eq!(parse::<Joules>("1e3J"), Ok(Joules(1000.0)));
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(matches!(
            parse::<Joules>("1 furlong"),
            Err(QuantityError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse::<Joules>("kWh"),
            Err(QuantityError::NoNumber { .. })
        ));
        assert!(matches!(
            parse::<Seconds>("-3s"),
            Err(QuantityError::Negative { .. })
        ));
        assert!(matches!(
            parse::<Grams>("5"),
            Err(QuantityError::UnknownUnit { .. })
        ));
        let msg = parse::<Grams>("5 lb").unwrap_err().to_string();
        assert!(msg.contains("g, kg, t"), "{msg}");
    }

    #[test]
    fn deserialises_from_yaml_strings() {
        #[derive(Deserialize)]
        struct S {
            lifetime: Q<Seconds>,
            intensity: Q<GramsPerKwh>,
        }
        let s: S = serde_json::from_str(r#"{"lifetime": "6y", "intensity": 420}"#).unwrap();
        assert_eq!(s.lifetime.0, Seconds::from_years(6.0));
        assert_eq!(s.intensity.0, GramsPerKwh(420.0));
    }
}

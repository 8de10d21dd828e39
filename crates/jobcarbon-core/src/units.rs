//! Unit-carrying newtypes. Every public boundary takes and returns these, never a bare `f64`.
//!
//! Arithmetic is defined only where the units make sense (J + J, J × PUE, W × s = J, …).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, Sub, SubAssign};

/// Joules in one kilowatt-hour.
pub const JOULES_PER_KWH: f64 = 3.6e6;
/// Seconds in a year; the model uses 365-day years (DESIGN §2).
pub const SECONDS_PER_YEAR: f64 = 365.0 * 24.0 * 3600.0;

macro_rules! unit {
    ($(#[$doc:meta])* $name:ident, $suffix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl $name {
            /// Zero in this unit.
            pub const ZERO: Self = Self(0.0);
            /// Wraps a raw value in this unit.
            pub const fn new(value: f64) -> Self {
                Self(value)
            }
            /// The raw value in this unit.
            pub const fn value(self) -> f64 {
                self.0
            }
            /// Whether the value is neither NaN nor infinite.
            pub fn is_finite(self) -> bool {
                self.0.is_finite()
            }
            /// Clamp negatives (and NaN) to zero: measured quantities never go below zero.
            pub fn non_negative(self) -> Self {
                if self.0 > 0.0 { self } else { Self::ZERO }
            }
            /// The larger of the two (`other` when `self` is NaN).
            pub fn max(self, other: Self) -> Self {
                if other.0 > self.0 { other } else { self }
            }
            /// The smaller of the two (`other` when `self` is NaN).
            pub fn min(self, other: Self) -> Self {
                if other.0 < self.0 { other } else { self }
            }
        }
        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }
        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }
        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: Self) {
                self.0 -= rhs.0;
            }
        }
        /// Scaling by a dimensionless factor (a share, a weight, a count).
        impl Mul<f64> for $name {
            type Output = Self;
            fn mul(self, rhs: f64) -> Self {
                Self(self.0 * rhs)
            }
        }
        impl Div<f64> for $name {
            type Output = Self;
            fn div(self, rhs: f64) -> Self {
                Self(self.0 / rhs)
            }
        }
        /// Ratio of two like quantities is dimensionless.
        impl Div for $name {
            type Output = f64;
            fn div(self, rhs: Self) -> f64 {
                self.0 / rhs.0
            }
        }
        impl Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                Self(iter.fold(0.0, |sum, v| sum + v.0))
            }
        }
        impl<'a> Sum<&'a $name> for $name {
            fn sum<I: Iterator<Item = &'a Self>>(iter: I) -> Self {
                Self(iter.fold(0.0, |sum, v| sum + v.0))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match f.precision() {
                    Some(p) => write!(f, "{:.*} {}", p, self.0, $suffix),
                    None => write!(f, "{} {}", self.0, $suffix),
                }
            }
        }
    };
}

unit!(
    /// Energy in joules.
    Joules, "J"
);
unit!(
    /// Carbon in grams of CO2-equivalent.
    Grams, "gCO2e"
);
unit!(
    /// Grid carbon intensity in gCO2e per kWh.
    GramsPerKwh, "gCO2e/kWh"
);
unit!(
    /// Time in seconds.
    Seconds, "s"
);
unit!(
    /// Power in watts.
    Watts, "W"
);
unit!(
    /// A carbon rate in gCO2e per second (platform overhead is declared as g/min or g/h).
    GramsPerSecond, "gCO2e/s"
);

impl Joules {
    /// Energy from kilowatt-hours.
    pub fn from_kwh(kwh: f64) -> Self {
        Self(kwh * JOULES_PER_KWH)
    }
    /// The energy in kilowatt-hours.
    pub fn kwh(self) -> f64 {
        self.0 / JOULES_PER_KWH
    }
    /// Energy from millijoules (DCGM's counter unit).
    pub fn from_millijoules(mj: f64) -> Self {
        Self(mj / 1000.0)
    }
}

impl Seconds {
    /// A duration from minutes.
    pub fn from_minutes(m: f64) -> Self {
        Self(m * 60.0)
    }
    /// A duration from hours.
    pub fn from_hours(h: f64) -> Self {
        Self(h * 3600.0)
    }
    /// A duration from days of 86,400 s.
    pub fn from_days(d: f64) -> Self {
        Self(d * 86_400.0)
    }
    /// A duration from years of 365 days.
    pub fn from_years(y: f64) -> Self {
        Self(y * SECONDS_PER_YEAR)
    }
    /// The duration in minutes.
    pub fn minutes(self) -> f64 {
        self.0 / 60.0
    }
}

impl GramsPerSecond {
    /// A rate from grams per minute (how platform overhead is often declared).
    pub fn per_minute(grams_per_minute: f64) -> Self {
        Self(grams_per_minute / 60.0)
    }
}

/// W × s = J.
impl Mul<Seconds> for Watts {
    type Output = Joules;
    fn mul(self, rhs: Seconds) -> Joules {
        Joules(self.0 * rhs.0)
    }
}
/// J / s = W.
impl Div<Seconds> for Joules {
    type Output = Watts;
    fn div(self, rhs: Seconds) -> Watts {
        Watts(self.0 / rhs.0)
    }
}
/// g/s × s = g.
impl Mul<Seconds> for GramsPerSecond {
    type Output = Grams;
    fn mul(self, rhs: Seconds) -> Grams {
        Grams(self.0 * rhs.0)
    }
}
/// g / s = g/s (EPC spread over a lifetime).
impl Div<Seconds> for Grams {
    type Output = GramsPerSecond;
    fn div(self, rhs: Seconds) -> GramsPerSecond {
        GramsPerSecond(self.0 / rhs.0)
    }
}

/// Power usage effectiveness: total facility energy / IT energy, ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pue(pub f64);

impl Default for Pue {
    fn default() -> Self {
        Self(1.0)
    }
}

impl Pue {
    /// The ratio of facility energy to IT energy (≥ 1).
    pub const fn value(self) -> f64 {
        self.0
    }
}

/// Energy at the facility meter: IT energy × PUE.
impl Mul<Pue> for Joules {
    type Output = Joules;
    fn mul(self, rhs: Pue) -> Joules {
        Joules(self.0 * rhs.0)
    }
}

/// Carbon of energy at an intensity: J × g/kWh / 3.6e6.
impl Mul<GramsPerKwh> for Joules {
    type Output = Grams;
    fn mul(self, rhs: GramsPerKwh) -> Grams {
        Grams(self.0 * rhs.0 / JOULES_PER_KWH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_times_intensity_is_grams() {
        let g = Joules::from_kwh(1.0) * GramsPerKwh(400.0);
        assert!((g.value() - 400.0).abs() < 1e-12);
    }

    #[test]
    fn watts_times_seconds_is_joules() {
        assert_eq!(Watts(300.0) * Seconds(10.0), Joules(3000.0));
    }

    #[test]
    fn non_negative_clamps_nan_and_negatives() {
        assert_eq!(Joules(-1.0).non_negative(), Joules::ZERO);
        assert_eq!(Joules(f64::NAN).non_negative(), Joules::ZERO);
        assert_eq!(Joules(2.0).non_negative(), Joules(2.0));
    }

    #[test]
    fn empty_sum_is_positive_zero() {
        // f64's own Sum starts at -0.0, which JSON would print as "-0.0".
        let total: Grams = std::iter::empty::<Grams>().sum();
        assert!(total.value().is_sign_positive());
    }

    #[test]
    fn display_honours_precision() {
        assert_eq!(format!("{:.2}", Grams(1.234)), "1.23 gCO2e");
    }
}

/// The additive quantities that allocation can split (energy, carbon, time).
pub trait Quantity:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<f64, Output = Self> + Sum + PartialOrd
{
    /// Zero of this quantity.
    const ZERO: Self;
    /// The raw value in the quantity's unit.
    fn raw(self) -> f64;
}

macro_rules! quantity {
    ($($t:ident),*) => {$(
        impl Quantity for $t {
            const ZERO: Self = $t(0.0);
            fn raw(self) -> f64 {
                self.0
            }
        }
    )*};
}
quantity!(Joules, Grams, Seconds);

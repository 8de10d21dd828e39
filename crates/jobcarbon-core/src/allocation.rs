//! Conserving splits. Every split returns recipients' shares plus an explicit unallocated
//! remainder with a reason, so that Σ shares + unallocated = whole, always.
//!
//! The last recipient takes `whole − Σ others`, so floating-point rounding never leaks.

use crate::domain::UnallocatedReason;
use crate::units::{Grams, Quantity};
use std::collections::BTreeMap;

/// The result of splitting one quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<K, Q> {
    /// What each recipient received.
    pub shares: Vec<(K, Q)>,
    /// What no recipient took, and why. `None` when everything was given out.
    pub unallocated: Option<(UnallocatedReason, Q)>,
}

impl<K, Q: Quantity> Split<K, Q> {
    fn nothing_to(whole: Q, reason: UnallocatedReason) -> Self {
        Self {
            shares: Vec::new(),
            unallocated: (whole != Q::ZERO).then_some((reason, whole)),
        }
    }

    /// Σ shares + unallocated.
    pub fn total(&self) -> Q {
        self.shares.iter().map(|(_, q)| *q).sum::<Q>()
            + self.unallocated.map(|(_, q)| q).unwrap_or(Q::ZERO)
    }
}

/// Split `whole` equally over `recipients`. With none, it all goes to `unallocated` with `reason`.
pub fn split_equal<K, Q: Quantity>(
    whole: Q,
    recipients: impl IntoIterator<Item = K>,
    reason_if_none: UnallocatedReason,
) -> Split<K, Q> {
    split_weighted(
        whole,
        recipients.into_iter().map(|k| (k, 1.0)),
        reason_if_none,
    )
}

/// Split `whole` in proportion to non-negative weights. Non-finite or negative weights count
/// as zero. If every weight is zero, the whole is split equally (no energy signal should not
/// mean no share); with no recipients it goes to `unallocated` with `reason_if_none`.
pub fn split_weighted<K, Q: Quantity>(
    whole: Q,
    recipients: impl IntoIterator<Item = (K, f64)>,
    reason_if_none: UnallocatedReason,
) -> Split<K, Q> {
    let mut items: Vec<(K, f64)> = recipients
        .into_iter()
        .map(|(k, w)| (k, if w.is_finite() && w > 0.0 { w } else { 0.0 }))
        .collect();
    if items.is_empty() {
        return Split::nothing_to(whole, reason_if_none);
    }
    let mut total_weight: f64 = items.iter().map(|(_, w)| w).sum();
    if total_weight <= 0.0 || !total_weight.is_finite() {
        for item in &mut items {
            item.1 = 1.0;
        }
        total_weight = items.len() as f64;
    }
    let last = items.len() - 1;
    let mut given = Q::ZERO;
    let mut shares = Vec::with_capacity(items.len());
    for (i, (k, w)) in items.into_iter().enumerate() {
        let share = if i == last {
            whole - given
        } else {
            whole * (w / total_weight)
        };
        given = given + share;
        shares.push((k, share));
    }
    Split {
        shares,
        unallocated: None,
    }
}

/// Give each recipient a fixed fraction of `whole` (e.g. reserved / allocatable for embodied
/// carbon). Fractions are clamped to [0, 1]; if they sum past 1 they are scaled down to 1.
/// Whatever is left goes to `unallocated` with `reason_for_rest`.
pub fn split_by_fraction<K, Q: Quantity>(
    whole: Q,
    recipients: impl IntoIterator<Item = (K, f64)>,
    reason_for_rest: UnallocatedReason,
) -> Split<K, Q> {
    let items: Vec<(K, f64)> = recipients
        .into_iter()
        .map(|(k, f)| {
            (
                k,
                if f.is_finite() {
                    f.clamp(0.0, 1.0)
                } else {
                    0.0
                },
            )
        })
        .collect();
    let sum: f64 = items.iter().map(|(_, f)| f).sum();
    let scale = if sum > 1.0 { 1.0 / sum } else { 1.0 };
    let shares: Vec<(K, Q)> = items
        .into_iter()
        .map(|(k, f)| (k, whole * (f * scale)))
        .collect();
    let given: Q = shares.iter().map(|(_, q)| *q).sum();
    let rest = whole - given;
    Split {
        shares,
        unallocated: (rest != Q::ZERO).then_some((reason_for_rest, rest)),
    }
}

/// Running books of one accounting period: what came in, what went where.
/// `K` is whatever the caller allocates to (a workload, a product, a pool).
#[derive(Debug, Clone, PartialEq)]
pub struct Books<K: Ord> {
    /// Everything booked this period (Σ allocated + Σ unallocated, up to rounding).
    pub input: Grams,
    /// Grams each recipient received.
    pub allocated: BTreeMap<K, Grams>,
    /// Grams no recipient took, by reason.
    pub unallocated: BTreeMap<UnallocatedReason, Grams>,
}

impl<K: Ord> Default for Books<K> {
    fn default() -> Self {
        Self {
            input: Grams::ZERO,
            allocated: BTreeMap::new(),
            unallocated: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Books<K> {
    /// Record `whole` as input and book its split.
    pub fn book(&mut self, whole: Grams, split: Split<K, Grams>) {
        self.input += whole;
        for (k, g) in split.shares {
            *self.allocated.entry(k).or_insert(Grams::ZERO) += g;
        }
        if let Some((reason, g)) = split.unallocated {
            *self.unallocated.entry(reason).or_insert(Grams::ZERO) += g;
        }
    }

    /// Σ of what the recipients received.
    pub fn allocated_total(&self) -> Grams {
        self.allocated.values().sum()
    }

    /// Σ of what nobody took, all reasons together.
    pub fn unallocated_total(&self) -> Grams {
        self.unallocated.values().sum()
    }

    /// |input − (allocated + unallocated)|, relative to the input (absolute when input is 0).
    pub fn conservation_error(&self) -> f64 {
        let out = self.allocated_total() + self.unallocated_total();
        let diff = (self.input - out).value().abs();
        let scale = self.input.value().abs().max(1.0);
        diff / scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Joules;
    use proptest::prelude::*;

    #[test]
    fn equal_split_of_platform_tax_matches_paper() {
        // 50 g/min × 5 min over 10 jobs = 25 g each.
        let split = split_equal(Grams(250.0), 0..10, UnallocatedReason::NoConcurrentJobs);
        assert!(
            split
                .shares
                .iter()
                .all(|(_, g)| (g.value() - 25.0).abs() < 1e-12)
        );
        assert_eq!(split.unallocated, None);
    }

    #[test]
    fn nobody_to_split_to_is_unallocated_with_reason() {
        let split = split_equal(Grams(7.0), Vec::<u8>::new(), UnallocatedReason::NoInference);
        assert_eq!(split.shares, vec![]);
        assert_eq!(
            split.unallocated,
            Some((UnallocatedReason::NoInference, Grams(7.0)))
        );
    }

    #[test]
    fn zero_weights_fall_back_to_equal() {
        let split = split_weighted(
            Joules(9.0),
            [("a", 0.0), ("b", 0.0), ("c", f64::NAN)],
            UnallocatedReason::NodeIdle,
        );
        for (_, j) in &split.shares {
            assert!((j.value() - 3.0).abs() < 1e-12);
        }
    }

    #[test]
    fn fractions_leave_unreserved_rest() {
        let split = split_by_fraction(
            Grams(10.0),
            [("a", 0.25), ("b", 0.5)],
            UnallocatedReason::UnreservedCapacity,
        );
        assert_eq!(split.shares, vec![("a", Grams(2.5)), ("b", Grams(5.0))]);
        assert_eq!(
            split.unallocated,
            Some((UnallocatedReason::UnreservedCapacity, Grams(2.5)))
        );
    }

    fn grams() -> impl Strategy<Value = f64> {
        0.0..1e9f64
    }

    proptest! {
        #[test]
        fn weighted_split_conserves(whole in grams(), weights in prop::collection::vec(-1.0..1e6f64, 0..50)) {
            let split = split_weighted(Grams(whole), weights.iter().copied().enumerate(), UnallocatedReason::Rounding);
            prop_assert!((split.total().value() - whole).abs() <= 1e-9 * whole.max(1.0));
            prop_assert!(split.shares.iter().all(|(_, g)| g.value() >= -1e-9 * whole.max(1.0)));
        }

        #[test]
        fn fraction_split_conserves(whole in grams(), fr in prop::collection::vec(-0.5..1.5f64, 0..50)) {
            let split = split_by_fraction(Grams(whole), fr.iter().copied().enumerate(), UnallocatedReason::UnreservedCapacity);
            prop_assert!((split.total().value() - whole).abs() <= 1e-9 * whole.max(1.0));
        }

        #[test]
        fn books_conserve_across_many_splits(wholes in prop::collection::vec((grams(), 0usize..8), 1..40)) {
            let mut books: Books<usize> = Books::default();
            for (whole, n) in wholes {
                books.book(Grams(whole), split_equal(Grams(whole), 0..n, UnallocatedReason::NoConcurrentJobs));
            }
            prop_assert!(books.conservation_error() < 1e-9);
        }
    }
}

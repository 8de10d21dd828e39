//! ASCᵉ as a sum of named terms (DESIGN §2 and §8). JSC, ASC, JSCᵉ and ASCᵉ are never stored:
//! they are sums over [`Terms`], so the exported total always equals the sum of its parts.

use crate::domain::Term;
use crate::units::Grams;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Add, AddAssign, Index, IndexMut};

/// Carbon of one job (or one interval of one job) by term.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terms([Grams; 6]);

impl Terms {
    /// No carbon in any term.
    pub const ZERO: Self = Self([Grams::ZERO; 6]);

    fn slot(term: Term) -> usize {
        match term {
            Term::Operational => 0,
            Term::EmbodiedSystem => 1,
            Term::PlatformOperational => 2,
            Term::PlatformEmbodied => 3,
            Term::ModelEpc => 4,
            Term::Retraining => 5,
        }
    }

    /// Terms with `grams` in `term` and zero elsewhere.
    pub fn of(term: Term, grams: Grams) -> Self {
        let mut t = Self::ZERO;
        t[term] = grams;
        t
    }

    /// Each term with its grams, in [`Term::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Term, Grams)> + '_ {
        Term::ALL.into_iter().map(|t| (t, self[t]))
    }

    /// JSC: operational carbon.
    pub fn jsc(&self) -> Grams {
        self[Term::Operational]
    }
    /// ASC = JSC + ec.
    pub fn asc(&self) -> Grams {
        self.jsc() + self[Term::EmbodiedSystem]
    }
    /// JSCᵉ = JSC + platform operational tax.
    pub fn jsce(&self) -> Grams {
        self.jsc() + self[Term::PlatformOperational]
    }
    /// ASCᵉ: every term.
    pub fn asce(&self) -> Grams {
        self.0.iter().sum()
    }
    /// Every term multiplied by `factor` (e.g. one job's share of a product's terms).
    pub fn scaled(&self, factor: f64) -> Self {
        Self(self.0.map(|g| g * factor))
    }
}

impl Index<Term> for Terms {
    type Output = Grams;
    fn index(&self, term: Term) -> &Grams {
        &self.0[Self::slot(term)]
    }
}

impl IndexMut<Term> for Terms {
    fn index_mut(&mut self, term: Term) -> &mut Grams {
        &mut self.0[Self::slot(term)]
    }
}

impl Add for Terms {
    type Output = Self;
    fn add(mut self, rhs: Self) -> Self {
        self += rhs;
        self
    }
}

impl AddAssign for Terms {
    fn add_assign(&mut self, rhs: Self) {
        for term in Term::ALL {
            self[term] += rhs[term];
        }
    }
}

/// Serialises as `{"operational": g, "embodied_system": g, ...}` (DESIGN §7 `terms`).
impl Serialize for Terms {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(6))?;
        for (term, grams) in self.iter() {
            map.serialize_entry(term.as_str(), &grams.value())?;
        }
        map.end()
    }
}

/// Reads the map form written by `Serialize` (missing terms are zero), so ledger state with
/// terms can be checkpointed and restored.
impl<'de> Deserialize<'de> for Terms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<Term, f64>::deserialize(deserializer)?;
        let mut terms = Terms::ZERO;
        for (term, grams) in map {
            terms[term] = Grams(grams);
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_follow_the_paper_definitions() {
        let mut t = Terms::ZERO;
        t[Term::Operational] = Grams(1.0);
        t[Term::EmbodiedSystem] = Grams(2.0);
        t[Term::PlatformOperational] = Grams(4.0);
        t[Term::PlatformEmbodied] = Grams(8.0);
        t[Term::ModelEpc] = Grams(16.0);
        t[Term::Retraining] = Grams(32.0);
        assert_eq!(t.jsc(), Grams(1.0));
        assert_eq!(t.asc(), Grams(3.0));
        assert_eq!(t.jsce(), Grams(5.0));
        assert_eq!(t.asce(), Grams(63.0));
    }

    #[test]
    fn serialises_with_exported_term_names() {
        let json = serde_json::to_value(Terms::of(Term::ModelEpc, Grams(2.5))).unwrap();
        assert_eq!(json["model_epc"], 2.5);
        assert_eq!(json["operational"], 0.0);
    }

    #[test]
    fn deserialises_what_it_serialises() {
        let t = Terms::of(Term::Retraining, Grams(1.5)) + Terms::of(Term::Operational, Grams(2.0));
        let back: Terms = serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap();
        assert_eq!(back, t);
    }
}

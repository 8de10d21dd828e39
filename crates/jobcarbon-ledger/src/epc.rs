//! Product EPC per interval: measured build carbon plus the lineage of DESIGN §2, evaluated by
//! `jobcarbon_core::lineage` (EPC(p) = measured + Σ weight × EPC(parent or dataset) + declared).

use jobcarbon_core::Lineage;
use jobcarbon_core::{Grams, ProductDef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The parts of one product's EPC (label `part` of `jobcarbon_product_epc_grams`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EpcParts {
    pub measured: Grams,
    pub inherited: Grams,
    pub declared: Grams,
}

impl EpcParts {
    pub fn total(&self) -> Grams {
        self.measured + self.inherited + self.declared
    }
}

/// EPC of every product. The snapshot's products are validated upstream (config check, CRD
/// validation); should a set still fail as a lineage, each product keeps its own measured and
/// declared parts and inherits nothing rather than inventing numbers.
pub fn product_epcs(
    products: &[ProductDef],
    measured: &BTreeMap<String, Grams>,
) -> BTreeMap<String, EpcParts> {
    let measured_of = |name: &str| measured.get(name).copied().unwrap_or(Grams::ZERO);
    match Lineage::new(products.to_vec()) {
        Ok(lineage) => {
            let measured: HashMap<String, Grams> =
                measured.iter().map(|(k, v)| (k.clone(), *v)).collect();
            lineage
                .evaluate(&measured)
                .iter()
                .map(|(def, epc)| {
                    (
                        def.name.clone(),
                        EpcParts {
                            measured: epc.measured,
                            inherited: epc.inherited,
                            declared: epc.declared,
                        },
                    )
                })
                .collect()
        }
        Err(_) => products
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    EpcParts {
                        measured: measured_of(&p.name),
                        inherited: Grams::ZERO,
                        declared: p.declared,
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobcarbon_core::{LineageEdge, ProductType, Seconds};

    fn model(name: &str, parents: &[(&str, f64)]) -> ProductDef {
        let mut p = ProductDef::new(name, ProductType::Model, Seconds::from_years(1.0));
        p.derived_from = parents
            .iter()
            .map(|(n, w)| LineageEdge {
                product: (*n).to_owned(),
                weight: *w,
            })
            .collect();
        p
    }

    #[test]
    fn inherits_weighted_parent_epc_recursively() {
        let mut bert = model("bert", &[]);
        bert.declared = Grams(100.0);
        let distil = model("distil", &[("bert", 0.25)]);
        let tiny = model("tiny", &[("distil", 0.5)]);
        let measured = BTreeMap::from([("bert".to_owned(), Grams(300.0))]);
        let epc = product_epcs(&[tiny, distil, bert], &measured);
        assert_eq!(epc["bert"].total(), Grams(400.0));
        assert_eq!(epc["distil"].inherited, Grams(100.0));
        assert_eq!(epc["tiny"].inherited, Grams(50.0));
    }

    #[test]
    fn an_invalid_lineage_inherits_nothing() {
        let a = model("a", &[("b", 1.0)]);
        let b = model("b", &[("a", 1.0)]);
        let measured = BTreeMap::from([("a".to_owned(), Grams(3.0))]);
        let epc = product_epcs(&[a, b], &measured);
        assert_eq!(epc["a"].total(), Grams(3.0));
        assert_eq!(epc["b"].total(), Grams::ZERO);
    }
}

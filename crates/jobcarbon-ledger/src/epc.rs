//! Product EPC from measured build carbon, lineage and declared carbon (DESIGN §2):
//! EPC(p) = measured + Σ weight × EPC(parent or dataset) + declared.
//!
//! Kept small and local until the core lineage module is merged; the ledger calls only
//! [`product_epcs`], so swapping the implementation touches one function.

use jobcarbon_core::{Grams, ProductDef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// EPC of every product. Edges to unknown products inherit nothing; products on a cycle get
/// no inherited part (config and CRD validation reject cycles before they get here).
pub fn product_epcs(
    products: &[ProductDef],
    measured: &BTreeMap<String, Grams>,
) -> BTreeMap<String, EpcParts> {
    let by_name: BTreeMap<&str, &ProductDef> =
        products.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut done: BTreeMap<String, EpcParts> = BTreeMap::new();
    for p in products {
        let mut visiting = Vec::new();
        total_of(&p.name, &by_name, measured, &mut done, &mut visiting);
    }
    done
}

fn total_of(
    name: &str,
    by_name: &BTreeMap<&str, &ProductDef>,
    measured: &BTreeMap<String, Grams>,
    done: &mut BTreeMap<String, EpcParts>,
    visiting: &mut Vec<String>,
) -> Grams {
    if let Some(parts) = done.get(name) {
        return parts.total();
    }
    let Some(def) = by_name.get(name) else {
        return Grams::ZERO;
    };
    if visiting.iter().any(|v| v == name) {
        return Grams::ZERO;
    }
    visiting.push(name.to_owned());
    let mut inherited = Grams::ZERO;
    for edge in def.inherits() {
        inherited += total_of(&edge.product, by_name, measured, done, visiting) * edge.weight;
    }
    visiting.pop();
    let parts = EpcParts {
        measured: measured.get(name).copied().unwrap_or(Grams::ZERO),
        inherited,
        declared: def.declared,
    };
    done.insert(name.to_owned(), parts);
    parts.total()
}

/// A lineage cycle as a path `a → b → a`, if any.
pub fn find_cycle(products: &[ProductDef]) -> Option<Vec<String>> {
    let by_name: BTreeMap<&str, &ProductDef> =
        products.iter().map(|p| (p.name.as_str(), p)).collect();
    fn visit(
        name: &str,
        by_name: &BTreeMap<&str, &ProductDef>,
        path: &mut Vec<String>,
        finished: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = path.iter().position(|p| p == name) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if finished.iter().any(|f| f == name) {
            return None;
        }
        let def = by_name.get(name)?;
        path.push(name.to_owned());
        for edge in def.inherits() {
            if let Some(c) = visit(&edge.product, by_name, path, finished) {
                return Some(c);
            }
        }
        path.pop();
        finished.push(name.to_owned());
        None
    }
    let mut finished = Vec::new();
    products
        .iter()
        .find_map(|p| visit(&p.name, &by_name, &mut Vec::new(), &mut finished))
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
    fn cycles_are_found_and_do_not_recurse_forever() {
        let a = model("a", &[("b", 1.0)]);
        let b = model("b", &[("a", 1.0)]);
        let cycle = find_cycle(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        let epc = product_epcs(&[a, b], &BTreeMap::new());
        assert_eq!(epc["a"].total(), Grams::ZERO);
    }
}

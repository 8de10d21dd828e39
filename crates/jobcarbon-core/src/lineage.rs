//! The product lineage DAG (DESIGN §2, §4): EPC(p) = measured + Σ w × EPC(parent or dataset)
//! + declared, recursive, a cycle is an error.
//!
//! [`Lineage`] validates a set of [`ProductDef`]s once (unknown references, weights outside
//! [0, 1], cycles, datasets that are not datasets) and fixes a topological order. Evaluation is
//! then one pass in that order, so every product's EPC is computed exactly once (memoised)
//! whatever order the products were declared in. The ledger calls [`Lineage::evaluate`] every
//! interval with the measured EPC per product; scenario evaluation uses
//! [`Lineage::evaluate_with`], which asks for each product's measured EPC only after everything
//! it depends on is known.
//!
//! Inheritance is attribution, not transfer: the parent keeps its EPC and the child adds
//! `w × EPC(parent)` to its own (the paper's w₁, w₂). No new grams enter the books.

use crate::domain::ProductType;
use crate::product::{LineageEdge, ProductDef};
use crate::units::Grams;
use std::collections::HashMap;
use std::fmt;

/// Which list of a product an edge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeKind {
    /// `derivedFrom`: a parent model (w₁ of the paper).
    DerivedFrom,
    /// `datasets`: a dataset the product was built from (w₂).
    Dataset,
}

impl EdgeKind {
    /// The field name in scenario files and the CRD spec.
    pub const fn field(self) -> &'static str {
        match self {
            EdgeKind::DerivedFrom => "derivedFrom",
            EdgeKind::Dataset => "datasets",
        }
    }
}

impl fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// Index of a product in a [`Lineage`] (definition order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(pub usize);

/// An ordering constraint that is not a lineage edge: `dependent`'s measured EPC needs
/// `on`'s EPC first (e.g. a distillation job that builds the student and serves the teacher).
/// It adds no inherited carbon; it only takes part in ordering and cycle detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub dependent: String,
    pub on: String,
    /// Why, for error messages: `"job distill serves bert"`.
    pub reason: String,
}

/// Where an edge of a cycle comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum EdgeOrigin {
    /// `product.<kind>[index]`.
    Lineage { kind: EdgeKind, index: usize },
    /// The `index`th [`Dependency`] given to [`Lineage::with_dependencies`].
    Dependency { index: usize, reason: String },
}

/// One edge of a lineage cycle: `from` needs `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleEdge {
    pub from: String,
    pub to: String,
    pub origin: EdgeOrigin,
}

/// Why a set of product definitions is not a valid lineage.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineageError {
    /// Two definitions share a name.
    #[error("product {product:?} is defined twice")]
    DuplicateProduct {
        /// The name given twice.
        product: String,
    },
    /// An edge names a product that is not defined.
    #[error("unknown product {reference:?} in {product}.{kind}[{index}]{}", known_hint(.known))]
    UnknownReference {
        /// The product whose edge is wrong.
        product: String,
        /// Which list the edge is in (`derivedFrom` or `datasets`).
        kind: EdgeKind,
        /// The edge's position in that list.
        index: usize,
        /// The name it refers to.
        reference: String,
        /// The defined names, for a did-you-mean hint.
        known: Vec<String>,
    },
    /// An edge weight outside [0, 1] (or not finite).
    #[error("weight {weight} in {product}.{kind}[{index}] is outside [0, 1]")]
    WeightOutOfRange {
        /// The product whose edge is wrong.
        product: String,
        /// Which list the edge is in.
        kind: EdgeKind,
        /// The edge's position in that list.
        index: usize,
        /// The weight given.
        weight: f64,
    },
    #[error(
        "{product}.{kind}[{index}] names {reference:?} again: one edge per parent (derivedFrom and datasets together), or it would inherit more than the parent's whole EPC"
    )]
    /// A product names the same parent twice.
    DuplicateEdge {
        /// The product whose edge is repeated.
        product: String,
        /// Which list the repeat is in.
        kind: EdgeKind,
        /// The repeat's position in that list.
        index: usize,
        /// The parent named twice.
        reference: String,
    },
    /// A `datasets` edge names a model or platform.
    #[error("{product}.datasets[{index}] names {reference:?}, which is a {actual}, not a dataset")]
    NotADataset {
        /// The product whose edge is wrong.
        product: String,
        /// The edge's position in `datasets`.
        index: usize,
        /// The name it refers to.
        reference: String,
        /// What that product actually is.
        actual: ProductType,
    },
    /// An extra ordering dependency (a build job reading another product) names an unknown product.
    #[error("unknown product {on:?} in a dependency ({reason})")]
    UnknownDependency {
        /// The dependency's position in the list given.
        index: usize,
        /// The unknown product.
        on: String,
        /// Why the dependency exists, as its caller described it.
        reason: String,
    },
    /// The edges form a cycle, so no product could be evaluated first.
    #[error("lineage cycle: {}", cycle_path(.edges))]
    Cycle {
        /// The cycle's edges, in order.
        edges: Vec<CycleEdge>,
    },
}

fn known_hint(known: &[String]) -> String {
    if known.is_empty() {
        " (no products are defined)".to_owned()
    } else {
        format!(" (defined: {})", known.join(", "))
    }
}

fn cycle_path(edges: &[CycleEdge]) -> String {
    let mut out = String::new();
    for edge in edges {
        out.push_str(&edge.from);
        match &edge.origin {
            EdgeOrigin::Lineage { kind, .. } => out.push_str(&format!(" -{kind}-> ")),
            EdgeOrigin::Dependency { reason, .. } => out.push_str(&format!(" -({reason})-> ")),
        }
    }
    if let Some(last) = edges.last() {
        out.push_str(&last.to);
    }
    out
}

/// One resolved edge: `weight × EPC(target)` is inherited (weight 0 for ordering-only edges).
#[derive(Debug, Clone, Copy)]
struct Edge {
    target: usize,
    weight: f64,
    kind: Option<EdgeKind>,
}

/// A validated lineage DAG with a fixed evaluation order.
#[derive(Debug, Clone)]
pub struct Lineage {
    products: Vec<ProductDef>,
    index: HashMap<String, usize>,
    /// Per product: lineage edges (in `inherits()` order) then ordering-only dependencies.
    edges: Vec<Vec<Edge>>,
    /// Dependencies before dependents.
    order: Vec<usize>,
}

/// The EPC of one product, by part (DESIGN §4 `status.epc`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Epc {
    /// ASCᵉ of the jobs that built the product on this cluster.
    pub measured: Grams,
    /// Σ weight × EPC of parents and datasets.
    pub inherited: Grams,
    /// Carbon spent outside the cluster.
    pub declared: Grams,
    /// `inherited`, edge by edge (parents, then datasets, in declaration order).
    pub inherited_from: Vec<InheritedShare>,
}

impl Epc {
    pub fn total(&self) -> Grams {
        self.measured + self.inherited + self.declared
    }
}

/// What one lineage edge contributed to a product's inherited EPC.
#[derive(Debug, Clone, PartialEq)]
pub struct InheritedShare {
    pub product: String,
    pub kind: EdgeKind,
    pub weight: f64,
    pub grams: Grams,
}

/// The EPC of every product of a [`Lineage`].
#[derive(Debug, Clone)]
pub struct EpcTable<'a> {
    lineage: &'a Lineage,
    epc: Vec<Epc>,
}

impl<'a> EpcTable<'a> {
    pub fn get(&self, name: &str) -> Option<&Epc> {
        self.lineage.index.get(name).map(|&i| &self.epc[i])
    }
    pub fn by_id(&self, id: ProductId) -> &Epc {
        &self.epc[id.0]
    }
    /// Every product with its EPC, in definition order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a ProductDef, &Epc)> + '_ {
        self.lineage.products.iter().zip(self.epc.iter())
    }
}

impl Lineage {
    /// Validate `products` as a lineage DAG.
    pub fn new(products: Vec<ProductDef>) -> Result<Self, LineageError> {
        Self::with_dependencies(products, Vec::new())
    }

    /// Validate `products` plus extra ordering constraints (see `Dependency`).
    pub fn with_dependencies(
        products: Vec<ProductDef>,
        dependencies: Vec<Dependency>,
    ) -> Result<Self, LineageError> {
        let index = index_by_name(&products)?;
        let mut edges: Vec<Vec<Edge>> = products
            .iter()
            .map(|product| own_edges(product, &products, &index))
            .collect::<Result<_, _>>()?;
        add_dependency_edges(&mut edges, &dependencies, &index)?;
        let order = topological_order(&edges).map_err(|cycle| LineageError::Cycle {
            edges: describe_cycle(&cycle, &products, &edges, &dependencies),
        })?;
        Ok(Self {
            products,
            index,
            edges,
            order,
        })
    }

    /// Every product, in definition order (index = `ProductId`).
    pub fn products(&self) -> &[ProductDef] {
        &self.products
    }

    /// The id of the product called `name`, if defined.
    pub fn id(&self, name: &str) -> Option<ProductId> {
        self.index.get(name).map(|&i| ProductId(i))
    }

    /// The definition behind an id of this lineage.
    pub fn product(&self, id: ProductId) -> &ProductDef {
        &self.products[id.0]
    }

    /// Products with everything they depend on before them.
    pub fn order(&self) -> impl Iterator<Item = ProductId> + '_ {
        self.order.iter().map(|&i| ProductId(i))
    }

    /// EPC of every product given the measured EPC per product (missing means zero).
    pub fn evaluate(&self, measured: &HashMap<String, Grams>) -> EpcTable<'_> {
        let result: Result<_, std::convert::Infallible> = self.evaluate_with(|id, _| {
            Ok(measured
                .get(&self.products[id.0].name)
                .copied()
                .unwrap_or(Grams::ZERO))
        });
        match result {
            Ok(table) => table,
            Err(never) => match never {},
        }
    }

    /// EPC of every product, asking `measured` for each product's measured EPC in dependency
    /// order: when it is called for a product, the table holds the final EPC of every product
    /// that product inherits from or depends on.
    pub fn evaluate_with<E>(
        &self,
        mut measured: impl FnMut(ProductId, &EpcTable<'_>) -> Result<Grams, E>,
    ) -> Result<EpcTable<'_>, E> {
        let mut table = EpcTable {
            lineage: self,
            epc: vec![Epc::default(); self.products.len()],
        };
        for &i in &self.order {
            let own_measured = measured(ProductId(i), &table)?;
            let mut inherited_from = Vec::new();
            for edge in &self.edges[i] {
                let Some(kind) = edge.kind else { continue };
                inherited_from.push(InheritedShare {
                    product: self.products[edge.target].name.clone(),
                    kind,
                    weight: edge.weight,
                    grams: table.epc[edge.target].total() * edge.weight,
                });
            }
            table.epc[i] = Epc {
                measured: own_measured,
                inherited: inherited_from.iter().map(|s| s.grams).sum(),
                declared: self.products[i].declared,
                inherited_from,
            };
        }
        Ok(table)
    }
}

/// Why [`Lineage::partition`] left a product out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Exclusion {
    /// The product's own definition is wrong, or it lies on a cycle (every member of a cycle
    /// gets the same [`LineageError::Cycle`]).
    #[error(transparent)]
    Invalid(LineageError),
    /// It inherits from a product that was left out.
    #[error("{product}.{kind}[{index}] refers to invalid product {reference:?}")]
    InheritsExcluded {
        /// The product left out.
        product: String,
        /// Which list its edge is in.
        kind: EdgeKind,
        /// The edge's position in that list.
        index: usize,
        /// The invalid parent it inherits from.
        reference: String,
    },
}

/// The products that form a valid lineage, and every other product with its reason: each
/// input product ends in exactly one half.
#[derive(Debug, Clone)]
pub struct LineagePartition {
    pub lineage: Lineage,
    /// In input order.
    pub excluded: Vec<(ProductDef, Exclusion)>,
}

impl Lineage {
    /// Keep what is valid instead of rejecting the whole set (the cluster's SoftwareProducts:
    /// one bad object must not stop the others). A product is excluded when its own
    /// definition is wrong (duplicate name, unknown reference, weight outside [0, 1], a
    /// non-dataset in `datasets`), when it lies on a cycle, or when it inherits from an
    /// excluded product. Cycles are found by [`Lineage::new`] itself, one at a time.
    pub fn partition(products: Vec<ProductDef>) -> LineagePartition {
        let (seen, mut excluded) = first_occurrences(&products);
        // First occurrence of each name; its own checks need only the names and kinds.
        let mut alive: Vec<bool> = (0..products.len())
            .map(|i| seen.get(products[i].name.as_str()) == Some(&i))
            .collect();
        exclude_invalid_alone(&products, &seen, &mut alive, &mut excluded);
        loop {
            propagate_exclusions(&products, &seen, &mut alive, &mut excluded);
            let candidates: Vec<ProductDef> = (0..products.len())
                .filter(|&i| alive[i])
                .map(|i| products[i].clone())
                .collect();
            match Lineage::new(candidates) {
                Ok(lineage) => {
                    excluded.sort_by_key(|(i, _)| *i);
                    return LineagePartition {
                        lineage,
                        excluded: excluded
                            .into_iter()
                            .map(|(i, why)| (products[i].clone(), why))
                            .collect(),
                    };
                }
                Err(LineageError::Cycle { edges }) => {
                    for edge in &edges {
                        if let Some(&i) = seen.get(edge.from.as_str())
                            && alive[i]
                        {
                            alive[i] = false;
                            excluded.push((
                                i,
                                Exclusion::Invalid(LineageError::Cycle {
                                    edges: edges.clone(),
                                }),
                            ));
                        }
                    }
                }
                // Every other error was checked per product above; should one still occur,
                // exclude its product rather than loop or lose it.
                Err(e) => exclude_culprit(e, &seen, &mut alive, &mut excluded),
            }
        }
    }
}

/// The index of each name's first occurrence, and the later occurrences as duplicates.
fn first_occurrences(products: &[ProductDef]) -> (HashMap<&str, usize>, Vec<(usize, Exclusion)>) {
    let mut excluded: Vec<(usize, Exclusion)> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in products.iter().enumerate() {
        if seen.contains_key(p.name.as_str()) {
            excluded.push((
                i,
                Exclusion::Invalid(LineageError::DuplicateProduct {
                    product: p.name.clone(),
                }),
            ));
        } else {
            seen.insert(p.name.as_str(), i);
        }
    }
    (seen, excluded)
}

/// Exclude each live product whose own definition is wrong, checked alone with stand-ins for
/// its parents (cycles are left to the whole-set pass).
fn exclude_invalid_alone(
    products: &[ProductDef],
    seen: &HashMap<&str, usize>,
    alive: &mut [bool],
    excluded: &mut Vec<(usize, Exclusion)>,
) {
    let mut all_names: Vec<String> = seen.keys().map(|n| (*n).to_owned()).collect();
    all_names.sort();
    for i in 0..products.len() {
        if !alive[i] {
            continue;
        }
        let alone: Vec<ProductDef> = products[i]
            .inherits()
            .filter_map(|e| seen.get(e.product.as_str()).map(|&t| &products[t]))
            .filter(|t| t.name != products[i].name)
            .map(|t| ProductDef::new(&t.name, t.kind, t.lifetime))
            .chain(std::iter::once(products[i].clone()))
            .collect();
        match Lineage::new(dedup_by_name(alone)) {
            Ok(_) | Err(LineageError::Cycle { .. }) => {}
            Err(mut e) => {
                if let LineageError::UnknownReference { known, .. } = &mut e {
                    *known = all_names.clone();
                }
                alive[i] = false;
                excluded.push((i, Exclusion::Invalid(e)));
            }
        }
    }
}

/// Exclude the product an unexpected error names, or else the first live one.
fn exclude_culprit(
    e: LineageError,
    seen: &HashMap<&str, usize>,
    alive: &mut [bool],
    excluded: &mut Vec<(usize, Exclusion)>,
) {
    let culprit = match &e {
        LineageError::DuplicateProduct { product }
        | LineageError::UnknownReference { product, .. }
        | LineageError::WeightOutOfRange { product, .. }
        | LineageError::DuplicateEdge { product, .. }
        | LineageError::NotADataset { product, .. } => Some(product.clone()),
        LineageError::UnknownDependency { .. } | LineageError::Cycle { .. } => None,
    };
    let i = culprit
        .and_then(|n| seen.get(n.as_str()).copied())
        .filter(|&i| alive[i])
        .or_else(|| alive.iter().position(|&a| a));
    if let Some(i) = i {
        alive[i] = false;
        excluded.push((i, Exclusion::Invalid(e)));
    }
}

/// Each product's index by name; a name given twice is an error.
fn index_by_name(products: &[ProductDef]) -> Result<HashMap<String, usize>, LineageError> {
    let mut index = HashMap::with_capacity(products.len());
    for (i, product) in products.iter().enumerate() {
        if index.insert(product.name.clone(), i).is_some() {
            return Err(LineageError::DuplicateProduct {
                product: product.name.clone(),
            });
        }
    }
    Ok(index)
}

fn sorted_names(products: &[ProductDef]) -> Vec<String> {
    let mut names: Vec<String> = products.iter().map(|p| p.name.clone()).collect();
    names.sort();
    names
}

/// The validated `derivedFrom` and `datasets` edges of one product.
fn own_edges(
    product: &ProductDef,
    products: &[ProductDef],
    index: &HashMap<String, usize>,
) -> Result<Vec<Edge>, LineageError> {
    let lists = [
        (EdgeKind::DerivedFrom, &product.derived_from),
        (EdgeKind::Dataset, &product.datasets),
    ];
    let mut own = Vec::with_capacity(product.derived_from.len() + product.datasets.len());
    let mut parents = std::collections::HashSet::new();
    for (kind, list) in lists {
        for (i, edge) in list.iter().enumerate() {
            let at = EdgeAt {
                product,
                kind,
                index: i,
            };
            own.push(Edge {
                target: at.check(edge, products, index, &mut parents)?,
                weight: edge.weight,
                kind: Some(kind),
            });
        }
    }
    Ok(own)
}

/// Where an edge is: entry `index` of `product`'s `kind` list.
struct EdgeAt<'a> {
    product: &'a ProductDef,
    kind: EdgeKind,
    index: usize,
}

impl EdgeAt<'_> {
    /// The edge's target, once its reference, uniqueness, weight and kind are checked.
    fn check(
        &self,
        edge: &LineageEdge,
        products: &[ProductDef],
        index: &HashMap<String, usize>,
        parents: &mut std::collections::HashSet<usize>,
    ) -> Result<usize, LineageError> {
        let (product, kind, i) = (self.product.name.clone(), self.kind, self.index);
        let target = &edge.product;
        let Some(&t) = index.get(target) else {
            return Err(LineageError::UnknownReference {
                product,
                kind,
                index: i,
                reference: target.clone(),
                known: sorted_names(products),
            });
        };
        if !parents.insert(t) {
            return Err(LineageError::DuplicateEdge {
                product,
                kind,
                index: i,
                reference: target.clone(),
            });
        }
        let weight = edge.weight;
        if !(weight.is_finite() && (0.0..=1.0).contains(&weight)) {
            return Err(LineageError::WeightOutOfRange {
                product,
                kind,
                index: i,
                weight,
            });
        }
        if kind == EdgeKind::Dataset && products[t].kind != ProductType::Dataset {
            return Err(LineageError::NotADataset {
                product,
                index: i,
                reference: target.clone(),
                actual: products[t].kind,
            });
        }
        Ok(t)
    }
}

/// Ordering-only edges (weight 0, no kind) for `dependencies`.
fn add_dependency_edges(
    edges: &mut [Vec<Edge>],
    dependencies: &[Dependency],
    index: &HashMap<String, usize>,
) -> Result<(), LineageError> {
    for (i, dep) in dependencies.iter().enumerate() {
        let (Some(&from), Some(&to)) = (index.get(&dep.dependent), index.get(&dep.on)) else {
            let missing = if index.contains_key(&dep.dependent) {
                &dep.on
            } else {
                &dep.dependent
            };
            return Err(LineageError::UnknownDependency {
                index: i,
                on: missing.clone(),
                reason: dep.reason.clone(),
            });
        };
        edges[from].push(Edge {
            target: to,
            weight: 0.0,
            kind: None,
        });
    }
    Ok(())
}

fn dedup_by_name(mut products: Vec<ProductDef>) -> Vec<ProductDef> {
    let mut names = std::collections::HashSet::new();
    products.reverse();
    products.retain(|p| names.insert(p.name.clone()));
    products.reverse();
    products
}

/// Excludes, until nothing changes, every alive product that inherits from an excluded one.
fn propagate_exclusions(
    products: &[ProductDef],
    first: &HashMap<&str, usize>,
    alive: &mut [bool],
    excluded: &mut Vec<(usize, Exclusion)>,
) {
    loop {
        let mut changed = false;
        for i in 0..products.len() {
            if !alive[i] {
                continue;
            }
            let p = &products[i];
            let lists = [
                (EdgeKind::DerivedFrom, &p.derived_from),
                (EdgeKind::Dataset, &p.datasets),
            ];
            let dead = lists.into_iter().find_map(|(kind, list)| {
                list.iter().enumerate().find_map(|(index, e)| {
                    let t = *first.get(e.product.as_str())?;
                    (!alive[t]).then(|| (kind, index, e.product.clone()))
                })
            });
            if let Some((kind, index, reference)) = dead {
                alive[i] = false;
                changed = true;
                excluded.push((
                    i,
                    Exclusion::InheritsExcluded {
                        product: p.name.clone(),
                        kind,
                        index,
                        reference,
                    },
                ));
            }
        }
        if !changed {
            return;
        }
    }
}

/// Post-order DFS (iterative: lineage chains can be long). `Err` holds a cycle as node indices
/// `[a, b, …, a]` with each consecutive pair joined by the edge position used.
fn topological_order(edges: &[Vec<Edge>]) -> Result<Vec<usize>, Vec<(usize, usize)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let n = edges.len();
    let mut state = vec![State::New; n];
    let mut order = Vec::with_capacity(n);
    // (node, next edge position to look at)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if state[root] != State::New {
            continue;
        }
        state[root] = State::OnStack;
        stack.push((root, 0));
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(edge) = edges[node].get(*next) {
                let position = *next;
                *next += 1;
                match state[edge.target] {
                    State::New => {
                        state[edge.target] = State::OnStack;
                        stack.push((edge.target, 0));
                    }
                    State::OnStack => {
                        // The stack from `edge.target` to `node`, closed by this edge.
                        let start = stack
                            .iter()
                            .position(|&(v, _)| v == edge.target)
                            .unwrap_or(0);
                        let mut cycle: Vec<(usize, usize)> = stack[start..]
                            .iter()
                            .map(|&(v, next)| (v, next.saturating_sub(1)))
                            .collect();
                        if let Some(last) = cycle.last_mut() {
                            last.1 = position;
                        }
                        return Err(cycle);
                    }
                    State::Done => {}
                }
            } else {
                state[node] = State::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

fn describe_cycle(
    cycle: &[(usize, usize)],
    products: &[ProductDef],
    edges: &[Vec<Edge>],
    dependencies: &[Dependency],
) -> Vec<CycleEdge> {
    cycle
        .iter()
        .map(|&(node, position)| {
            let edge = edges[node][position];
            let lineage_edges = products[node].derived_from.len() + products[node].datasets.len();
            let origin = match edge.kind {
                Some(EdgeKind::DerivedFrom) => EdgeOrigin::Lineage {
                    kind: EdgeKind::DerivedFrom,
                    index: position,
                },
                Some(EdgeKind::Dataset) => EdgeOrigin::Lineage {
                    kind: EdgeKind::Dataset,
                    index: position - products[node].derived_from.len(),
                },
                None => {
                    // The k-th ordering edge of this node is the k-th dependency naming it.
                    let k = position - lineage_edges;
                    let (index, dep) = dependencies
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.dependent == products[node].name)
                        .nth(k)
                        .map(|(i, d)| (i, d.reason.clone()))
                        .unwrap_or((0, String::new()));
                    EdgeOrigin::Dependency { index, reason: dep }
                }
            };
            CycleEdge {
                from: products[node].name.clone(),
                to: products[edge.target].name.clone(),
                origin,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Seconds;
    use proptest::prelude::*;

    fn model(name: &str, parents: &[(&str, f64)], declared: f64) -> ProductDef {
        let mut p = ProductDef::new(name, ProductType::Model, Seconds::from_years(3.0));
        p.derived_from = parents
            .iter()
            .map(|(n, w)| LineageEdge {
                product: (*n).to_owned(),
                weight: *w,
            })
            .collect();
        p.declared = Grams(declared);
        p
    }

    fn dataset(name: &str, declared: f64) -> ProductDef {
        let mut p = ProductDef::new(name, ProductType::Dataset, Seconds::from_years(3.0));
        p.declared = Grams(declared);
        p
    }

    #[test]
    fn epc_is_measured_plus_weighted_inheritance_plus_declared() {
        let wiki = dataset("wiki", 100.0);
        let mut bert = model("bert", &[], 10.0);
        bert.datasets = vec![LineageEdge {
            product: "wiki".into(),
            weight: 0.5,
        }];
        let distil = model("distil", &[("bert", 0.25)], 0.0);
        // Declared out of order: the child first.
        let lineage = Lineage::new(vec![distil, bert, wiki]).unwrap();
        let measured = HashMap::from([
            ("bert".to_owned(), Grams(1000.0)),
            ("distil".into(), Grams(4.0)),
        ]);
        let table = lineage.evaluate(&measured);
        let bert = table.get("bert").unwrap();
        assert_eq!(bert.total(), Grams(1000.0 + 50.0 + 10.0));
        let distil = table.get("distil").unwrap();
        assert_eq!(distil.inherited, Grams(1060.0 * 0.25));
        assert_eq!(distil.total(), Grams(4.0 + 265.0));
        assert_eq!(
            distil.inherited_from,
            vec![InheritedShare {
                product: "bert".into(),
                kind: EdgeKind::DerivedFrom,
                weight: 0.25,
                grams: Grams(265.0)
            }]
        );
        assert_eq!(bert.inherited_from[0].kind, EdgeKind::Dataset);
    }

    #[test]
    fn cycle_names_its_path() {
        let a = model("a", &[("c", 0.1)], 0.0);
        let b = model("b", &[("a", 0.1)], 0.0);
        let c = model("c", &[("b", 0.1)], 0.0);
        let err = Lineage::new(vec![a, b, c]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("lineage cycle: a -derivedFrom-> c -derivedFrom-> b -derivedFrom-> a"),
            "{msg}"
        );
        let LineageError::Cycle { edges } = err else {
            panic!()
        };
        assert_eq!(
            edges[0].origin,
            EdgeOrigin::Lineage {
                kind: EdgeKind::DerivedFrom,
                index: 0
            }
        );
    }

    #[test]
    fn self_reference_is_a_cycle() {
        let err = Lineage::new(vec![model("a", &[("a", 1.0)], 0.0)]).unwrap_err();
        assert_eq!(err.to_string(), "lineage cycle: a -derivedFrom-> a");
    }

    #[test]
    fn cycle_through_a_dependency_is_reported_with_its_reason() {
        let teacher = model("teacher", &[("student", 0.5)], 0.0);
        let student = model("student", &[], 0.0);
        let err = Lineage::with_dependencies(
            vec![teacher, student],
            vec![Dependency {
                dependent: "student".into(),
                on: "teacher".into(),
                reason: "job distill serves teacher".into(),
            }],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("(job distill serves teacher)"),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_references_weights_and_non_datasets() {
        let err = Lineage::new(vec![model("a", &[("ghost", 0.1)], 0.0)]).unwrap_err();
        assert!(
            matches!(err, LineageError::UnknownReference { ref reference, .. } if reference == "ghost")
        );
        assert!(err.to_string().contains("(defined: a)"));
        let err =
            Lineage::new(vec![model("a", &[], 0.0), model("b", &[("a", 1.5)], 0.0)]).unwrap_err();
        assert!(matches!(err, LineageError::WeightOutOfRange { weight, .. } if weight == 1.5));
        let err = Lineage::new(vec![
            model("a", &[], 0.0),
            model("b", &[("a", f64::NAN)], 0.0),
        ])
        .unwrap_err();
        assert!(matches!(err, LineageError::WeightOutOfRange { .. }));
        let mut b = model("b", &[], 0.0);
        b.datasets = vec![LineageEdge {
            product: "a".into(),
            weight: 0.5,
        }];
        let err = Lineage::new(vec![model("a", &[], 0.0), b]).unwrap_err();
        assert!(matches!(err, LineageError::NotADataset { .. }), "{err}");
        let err = Lineage::new(vec![model("a", &[], 0.0), model("a", &[], 0.0)]).unwrap_err();
        assert!(matches!(err, LineageError::DuplicateProduct { .. }));
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let n = 200_000;
        let mut products = vec![model("p0", &[], 1.0)];
        for i in 1..n {
            products.push(model(
                &format!("p{i}"),
                &[(&format!("p{}", i - 1), 1.0)],
                1.0,
            ));
        }
        let lineage = Lineage::new(products).unwrap();
        let table = lineage.evaluate(&HashMap::new());
        assert_eq!(
            table.get(&format!("p{}", n - 1)).unwrap().total(),
            Grams(n as f64)
        );
    }

    /// A random DAG: product i may inherit from any j < i (so no cycles), weights in [0, 1].
    fn random_dag() -> impl Strategy<Value = (Vec<ProductDef>, Vec<f64>)> {
        (1usize..40).prop_flat_map(|n| {
            let edges =
                prop::collection::vec(prop::collection::vec((0usize..1000, 0.0..=1.0f64), 0..4), n);
            let measured = prop::collection::vec(0.0..1e6f64, n);
            let declared = prop::collection::vec(0.0..1e6f64, n);
            (edges, measured, declared).prop_map(move |(edges, measured, declared)| {
                let products = edges
                    .iter()
                    .enumerate()
                    .map(|(i, parents)| {
                        let mut p =
                            ProductDef::new(format!("p{i}"), ProductType::Model, Seconds(1.0));
                        p.declared = Grams(declared[i]);
                        if i > 0 {
                            // One edge per parent (a diamond through other products is fine).
                            let mut seen = std::collections::HashSet::new();
                            p.derived_from = parents
                                .iter()
                                .filter(|&&(j, _)| seen.insert(j % i))
                                .map(|&(j, w)| LineageEdge {
                                    product: format!("p{}", j % i),
                                    weight: w,
                                })
                                .collect();
                        }
                        p
                    })
                    .collect();
                (products, measured)
            })
        })
    }

    /// Reference: the recursive definition, memoised by hand, no ordering.
    fn naive_epc(
        products: &[ProductDef],
        measured: &[f64],
        i: usize,
        memo: &mut HashMap<usize, f64>,
    ) -> f64 {
        if let Some(v) = memo.get(&i) {
            return *v;
        }
        let p = &products[i];
        let inherited: f64 = p
            .derived_from
            .iter()
            .map(|e| {
                let j: usize = e.product[1..].parse().unwrap();
                e.weight * naive_epc(products, measured, j, memo)
            })
            .sum();
        let v = measured[i] + inherited + p.declared.value();
        memo.insert(i, v);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn epc_is_independent_of_declaration_order((products, measured) in random_dag(), seed in any::<u64>()) {
            let by_name: HashMap<String, Grams> = products.iter().zip(&measured).map(|(p, m)| (p.name.clone(), Grams(*m))).collect();
            let mut shuffled = products.clone();
            // Deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let a = Lineage::new(products.clone()).unwrap();
            let b = Lineage::new(shuffled).unwrap();
            let ta = a.evaluate(&by_name);
            let tb = b.evaluate(&by_name);
            let mut memo = HashMap::new();
            for (i, p) in products.iter().enumerate() {
                let x = ta.get(&p.name).unwrap().total().value();
                let y = tb.get(&p.name).unwrap().total().value();
                let reference = naive_epc(&products, &measured, i, &mut memo);
                prop_assert!((x - y).abs() <= 1e-9 * reference.max(1.0));
                prop_assert!((x - reference).abs() <= 1e-9 * reference.max(1.0));
            }
        }
    }

    #[test]
    fn partition_keeps_the_valid_part() {
        let wiki = dataset("wiki", 1.0);
        let mut bert = model("bert", &[], 0.0);
        bert.datasets = vec![LineageEdge {
            product: "wiki".into(),
            weight: 0.5,
        }];
        let distil = model("distil", &[("bert", 0.25)], 0.0);
        let a = model("a", &[("b", 1.0)], 0.0);
        let b = model("b", &[("a", 1.0)], 0.0);
        let own = model("self", &[("self", 1.0)], 0.0);
        let below = model("below", &[("a", 0.5)], 0.0);
        let orphan = model("orphan", &[("nowhere", 0.5)], 0.0);
        let heavy = model("heavy", &[("bert", 1.5)], 0.0);
        let mut not_dataset = model("nd", &[], 0.0);
        not_dataset.datasets = vec![LineageEdge {
            product: "bert".into(),
            weight: 0.1,
        }];
        let twice = dataset("wiki", 2.0);
        let split = Lineage::partition(vec![
            distil,
            a,
            b,
            own,
            below,
            orphan,
            heavy,
            not_dataset,
            wiki,
            bert,
            twice,
        ]);
        let valid: Vec<&str> = split
            .lineage
            .products()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(valid, ["distil", "wiki", "bert"]);
        let why: Vec<(&str, &Exclusion)> = split
            .excluded
            .iter()
            .map(|(p, e)| (p.name.as_str(), e))
            .collect();
        let names: Vec<&str> = why.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["a", "b", "self", "below", "orphan", "heavy", "nd", "wiki"]
        );
        let cycle_of = |e: &Exclusion| match e {
            Exclusion::Invalid(LineageError::Cycle { edges }) => {
                edges.iter().map(|e| e.from.clone()).collect::<Vec<_>>()
            }
            other => panic!("not a cycle: {other}"),
        };
        assert_eq!(cycle_of(why[0].1).len(), 2);
        assert_eq!(cycle_of(why[0].1), cycle_of(why[1].1));
        assert_eq!(cycle_of(why[2].1), ["self"]);
        assert!(
            matches!(why[3].1, Exclusion::InheritsExcluded { reference, .. } if reference == "a")
        );
        assert!(
            matches!(why[4].1, Exclusion::Invalid(LineageError::UnknownReference { known, .. }) if known.contains(&"wiki".to_owned()))
        );
        assert!(matches!(
            why[5].1,
            Exclusion::Invalid(LineageError::WeightOutOfRange { .. })
        ));
        assert!(matches!(
            why[6].1,
            Exclusion::Invalid(LineageError::NotADataset { .. })
        ));
        assert!(matches!(
            why[7].1,
            Exclusion::Invalid(LineageError::DuplicateProduct { .. })
        ));
        // The valid half evaluates like a lineage built from it alone.
        let table = split.lineage.evaluate(&HashMap::new());
        assert_eq!(table.get("distil").map(Epc::total), Some(Grams(0.125)));
    }

    /// Products with arbitrary edges among `p0..pn` plus unknown names: cycles, self-loops,
    /// duplicates, bad weights.
    fn random_graph() -> impl Strategy<Value = Vec<ProductDef>> {
        (1usize..30).prop_flat_map(|n| {
            prop::collection::vec(
                (
                    0usize..(n + 3),
                    any::<bool>(),
                    prop::collection::vec((0usize..(n + 2), -0.2..=1.2f64), 0..4),
                ),
                n,
            )
            .prop_map(move |specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name_pick, is_dataset, parents))| {
                        // Mostly unique names; some collide.
                        let name = if name_pick >= n {
                            format!("p{}", name_pick - n)
                        } else {
                            format!("p{i}")
                        };
                        let kind = if is_dataset {
                            ProductType::Dataset
                        } else {
                            ProductType::Model
                        };
                        let mut p = ProductDef::new(name, kind, Seconds(1.0));
                        for (j, w) in parents {
                            let edge = LineageEdge {
                                product: format!("p{j}"),
                                weight: (w * 10.0).round() / 10.0,
                            };
                            if j % 3 == 0 {
                                p.datasets.push(edge)
                            } else {
                                p.derived_from.push(edge)
                            }
                        }
                        p
                    })
                    .collect()
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn partition_puts_every_product_in_exactly_one_half(products in random_graph()) {
            let split = Lineage::partition(products.clone());
            let mut halves: Vec<ProductDef> = split.lineage.products().to_vec();
            halves.extend(split.excluded.iter().map(|(p, _)| p.clone()));
            prop_assert_eq!(halves.len(), products.len());
            for p in &products {
                let times = halves.iter().filter(|h| *h == p).count();
                let expected = products.iter().filter(|q| *q == p).count();
                prop_assert_eq!(times, expected, "{}", p.name);
            }
            // The valid half is closed: every reference resolves inside it.
            let valid: std::collections::HashSet<&str> = split.lineage.products().iter().map(|p| p.name.as_str()).collect();
            for p in split.lineage.products() {
                prop_assert!(p.inherits().all(|e| valid.contains(e.product.as_str())));
            }
            // Nothing valid is thrown away: re-partitioning the valid half excludes nothing,
            // and a cycle exclusion names only excluded products.
            prop_assert!(Lineage::partition(split.lineage.products().to_vec()).excluded.is_empty());
            for (_, why) in &split.excluded {
                if let Exclusion::Invalid(LineageError::Cycle { edges }) = why {
                    prop_assert!(edges.iter().all(|e| !valid.contains(e.from.as_str())));
                }
            }
        }
    }
}

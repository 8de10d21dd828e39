//! Evaluation: jobs priced in lineage order, products' EPCs, the report.

use super::jobs::JobResolver;
use super::*;
use crate::domain::Term;
use crate::formulas::{amortized_product_share, retraining_share};
use crate::lineage::{EpcTable, Lineage, ProductId};
use crate::terms::Terms;
use crate::units::{Grams, Seconds};

/// Prices the jobs whose terms need EPCs from the lineage table.
struct Pricing<'a> {
    jobs: &'a [Job],
    lineage: &'a Lineage,
    retraining: &'a [Option<Retraining>],
    /// Per model: declared re-training carbon plus that of retrainers complete on their own.
    pools: Vec<Grams>,
    /// Per model: retrainers whose terms need the table.
    late_retrainers: Vec<Vec<usize>>,
    /// Per product: the jobs that build it.
    builders: Vec<Vec<usize>>,
}

impl<'a> Pricing<'a> {
    /// Also returns the terms of the jobs complete on their own: those that serve no model on a
    /// platform without a product. The others need EPCs from the table (their dependencies
    /// order it).
    fn new(
        jobs: &'a [Job],
        lineage: &'a Lineage,
        retraining: &'a [Option<Retraining>],
    ) -> (Self, Vec<Option<Terms>>) {
        let terms: Vec<Option<Terms>> = jobs
            .iter()
            .map(|j| {
                (j.serves.is_none() && j.platform_product().is_none()).then(|| j.own_terms(None))
            })
            .collect();
        let mut pools: Vec<Grams> = retraining
            .iter()
            .map(|r| r.map(|r| r.carbon).unwrap_or(Grams::ZERO))
            .collect();
        let mut late_retrainers: Vec<Vec<usize>> = vec![Vec::new(); lineage.products().len()];
        let mut builders: Vec<Vec<usize>> = vec![Vec::new(); lineage.products().len()];
        for (i, job) in jobs.iter().enumerate() {
            match (job.destination, terms[i]) {
                (Destination::Retrains(m), Some(t)) => pools[m] += t.asce(),
                (Destination::Retrains(m), None) => late_retrainers[m].push(i),
                (Destination::Builds(p), _) => builders[p].push(i),
                (Destination::None, _) => {}
            }
        }
        let pricing = Self {
            jobs,
            lineage,
            retraining,
            pools,
            late_retrainers,
            builders,
        };
        (pricing, terms)
    }

    fn linked_epc(job: &Job, table: &EpcTable<'_>) -> Option<Grams> {
        job.platform_product()
            .map(|p| table.by_id(ProductId(p)).total())
    }

    fn full_terms(&self, job: &Job, table: &EpcTable<'_>) -> Terms {
        let mut t = job.own_terms(Self::linked_epc(job, table));
        let Some((m, n)) = job.serves else {
            return t;
        };
        let lifetime = self.lineage.product(ProductId(m)).lifetime;
        let epc_of_model = table.by_id(ProductId(m)).total();
        t[Term::ModelEpc] = amortized_product_share(epc_of_model, lifetime, job.duration, n);
        if let Some(r) = self.retraining[m] {
            let late: Grams = self.late_retrainers[m]
                .iter()
                .map(|&i| {
                    let job = &self.jobs[i];
                    job.own_terms(Self::linked_epc(job, table)).asce()
                })
                .sum();
            t[Term::Retraining] = retraining_share(self.pools[m] + late, r.jobs_per_interval);
        }
        t
    }

    /// The EPC table; fills in the terms of the building jobs it prices on the way.
    fn product_table(&self, terms: &mut [Option<Terms>]) -> EpcTable<'a> {
        let table = self.lineage.evaluate_with(|id, table| {
            let mut measured = Grams::ZERO;
            for &i in &self.builders[id.0] {
                let t = match terms[i] {
                    Some(t) => t,
                    None => {
                        let t = self.full_terms(&self.jobs[i], table);
                        terms[i] = Some(t);
                        t
                    }
                };
                measured += t.asce();
            }
            Ok::<_, std::convert::Infallible>(measured)
        });
        match table {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }
}

impl ScenarioDoc {
    /// Evaluate every job and product. `file` names the document in errors.
    pub fn evaluate(&self, file: &str) -> Result<Report, ScenarioError> {
        let (defs, retraining) = self.resolve_products(file)?;
        let (jobs, dependencies) =
            JobResolver::new(self, file, &defs, &retraining)?.resolve_jobs()?;
        let lineage = Lineage::with_dependencies(defs, dependencies.dependencies)
            .map_err(|e| self.lineage_error(file, e, &dependencies.origins))?;

        let (pricing, mut terms) = Pricing::new(&jobs, &lineage, &retraining);
        let table = pricing.product_table(&mut terms);
        let job_reports = self
            .jobs
            .iter()
            .zip(&jobs)
            .zip(terms)
            .map(|((spec, job), t)| JobReport {
                name: spec.name.clone(),
                energy: job.energy,
                terms: t.unwrap_or_else(|| pricing.full_terms(job, &table)),
            })
            .collect();
        let products = table
            .iter()
            .map(|(def, epc)| ProductReport {
                name: def.name.clone(),
                kind: def.kind,
                epc: epc.clone(),
            })
            .collect();
        let report = Report {
            unallocated: self.unallocated_lines(&jobs, &retraining),
            warnings: self.warnings(&jobs, &lineage),
            jobs: job_reports,
            products,
        };
        check_finite(&report, file)?;
        Ok(report)
    }

    /// Declared re-training carbon of models no job serves: nothing amortises it.
    fn unallocated_lines(
        &self,
        jobs: &[Job],
        retraining: &[Option<Retraining>],
    ) -> Vec<UnallocatedLine> {
        self.products
            .iter()
            .enumerate()
            .filter_map(|(m, (name, _))| {
                let r = retraining.get(m).copied().flatten()?;
                let served = jobs.iter().any(|j| j.serves.is_some_and(|(s, _)| s == m));
                (!served && r.carbon > Grams::ZERO).then(|| UnallocatedLine {
                    product: name.to_owned(),
                    reason: "no_inference",
                    grams_g: r.carbon.value(),
                })
            })
            .collect()
    }

    /// Lifetimes that look like unit slips, and jobs longer than what they are amortised over.
    fn warnings(&self, jobs: &[Job], lineage: &Lineage) -> Vec<Warning> {
        let mut out = Vec::new();
        let mut short = |path: String, lifetime: Seconds| {
            if lifetime > Seconds::ZERO && lifetime < SUSPICIOUSLY_SHORT_LIFETIME {
                out.push(Warning {
                    path,
                    message: format!(
                        "a lifetime of {lifetime} is shorter than a day: `m` means minutes (DESIGN §7); write `mo` for months or `y` for years"
                    ),
                });
            }
        };
        for (name, s) in self.systems.iter() {
            short(format!("systems.{name}.lifetime"), s.lifetime.0);
        }
        for (name, p) in self.platforms.iter() {
            if let Some(l) = p.lifetime {
                short(format!("platforms.{name}.lifetime"), l.0);
            }
        }
        for (name, p) in self.products.iter() {
            if let Some(l) = p.lifetime {
                short(format!("products.{name}.lifetime"), l.0);
            }
        }
        for (i, job) in jobs.iter().enumerate() {
            let lifetimes = [
                job.system.map(|(s, _)| ("system", s.lifetime)),
                job.platform.map(|(p, _)| ("platform", p.lifetime)),
                job.serves
                    .map(|(m, _)| ("served model", lineage.product(ProductId(m)).lifetime)),
            ];
            for (what, lifetime) in lifetimes.into_iter().flatten() {
                if lifetime > Seconds::ZERO && job.duration > lifetime {
                    out.push(Warning {
                        path: format!("jobs[{i}].duration"),
                        message: format!(
                            "the job runs {} but its {what}'s lifetime is {lifetime}: it is charged more than the whole amount amortised",
                            job.duration
                        ),
                    });
                }
            }
        }
        out
    }
}

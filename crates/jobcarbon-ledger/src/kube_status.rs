//! SoftwareProduct status writes, beside the cluster adapter ([`crate::kube_cluster`]): after
//! each booking the leader writes every product's EPC to its object's status
//! ([`jobcarbon_kube::write_product_status`]), never lowering a published figure unless the
//! ledger started with `--reset-state`.

use crate::durable::DurableLedger;
use crate::schedule::{AfterBooking, Booked};
use async_trait::async_trait;
use jobcarbon_kube::rfc3339;
use jobcarbon_kube::{ClusterState, EpcStatus, write_product_status};
use jobcarbon_kube::{StatusWriteError, epc_lowered, monotonic_epc};
use std::collections::BTreeMap;

/// The EPC this process last published per product: SoftwareProduct status never goes down
/// (`jobcarbon_kube::status::monotonic_epc`) unless the ledger started with `--reset-state`.
#[derive(Debug, Clone, Default)]
pub struct StatusFloors {
    reset: bool,
    written: BTreeMap<String, EpcStatus>,
}

impl StatusFloors {
    /// `reset`: `--reset-state`, published figures may go down (logged).
    pub fn new(reset: bool) -> Self {
        Self {
            reset,
            written: BTreeMap::new(),
        }
    }

    /// The figure to write for `name` over what is published (`published`: the status the
    /// watcher saw), logging a lowering.
    pub fn next(&mut self, name: &str, published: Option<&EpcStatus>, new: EpcStatus) -> EpcStatus {
        let floor = self.written.get(name).or(published);
        let epc = if self.reset {
            if epc_lowered(floor, &new) {
                tracing::warn!(product = %name, from = floor.map(|f| f.total_grams), to = new.total_grams, "--reset-state: lowering the published EPC");
            }
            new
        } else {
            monotonic_epc(floor, new)
        };
        self.written.insert(name.to_owned(), epc.clone());
        epc
    }
}

/// Writes each SoftwareProduct object's EPC to its status after a booking.
pub struct ProductStatusWriter {
    client: kube::Client,
    cluster: ClusterState,
    floors: StatusFloors,
}

impl ProductStatusWriter {
    /// Writes through `client`; `cluster` gives the published statuses and the validation
    /// conditions.
    pub fn new(client: kube::Client, cluster: ClusterState, floors: StatusFloors) -> Self {
        Self {
            client,
            cluster,
            floors,
        }
    }
}

#[async_trait]
impl AfterBooking for ProductStatusWriter {
    /// Config-only products have no object (NotFound), which is expected and quiet.
    async fn booked(&mut self, ledger: &DurableLedger, booked: Booked) {
        let at = rfc3339(booked.last_booked);
        let epcs: Vec<(String, EpcStatus)> = ledger
            .ledger()
            .state()
            .products
            .iter()
            .map(|(name, p)| {
                let epc = EpcStatus {
                    total_grams: p.epc.total().value(),
                    measured_grams: p.epc.measured.value(),
                    inherited_grams: p.epc.inherited.value(),
                    declared_grams: p.epc.declared.value(),
                    updated_at: at.clone(),
                };
                (name.clone(), epc)
            })
            .collect();
        let validation = self.cluster.products();
        let published = self.cluster.published_epc();
        for (name, epc) in epcs {
            let epc = self.floors.next(&name, published.get(&name), epc);
            let conditions: Vec<_> = validation.condition(&name, &at).into_iter().collect();
            match write_product_status(&self.client, &name, Some(&epc), &conditions).await {
                Ok(_) | Err(StatusWriteError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(product = %name, error = %e, "status write failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epc(total: f64, at: &str) -> EpcStatus {
        EpcStatus {
            total_grams: total,
            measured_grams: total,
            inherited_grams: 0.0,
            declared_grams: 0.0,
            updated_at: at.to_owned(),
        }
    }

    #[test]
    fn published_epc_never_goes_down_unless_reset() {
        let mut floors = StatusFloors::new(false);
        // Nothing published yet: the new figure.
        assert_eq!(floors.next("p", None, epc(10.0, "t1")).total_grams, 10.0);
        // Lower than what this process wrote: kept at its floor.
        assert_eq!(floors.next("p", None, epc(4.0, "t2")).total_grams, 10.0);
        assert_eq!(floors.next("p", None, epc(12.0, "t3")).total_grams, 12.0);
        // A published status (a previous leader's) is the floor of a product not yet written.
        let published = epc(50.0, "t0");
        assert_eq!(
            floors
                .next("q", Some(&published), epc(20.0, "t3"))
                .total_grams,
            50.0
        );
        // What this process wrote wins over what the watcher saw.
        assert_eq!(
            floors
                .next("p", Some(&published), epc(13.0, "t4"))
                .total_grams,
            13.0
        );

        let mut reset = StatusFloors::new(true);
        assert_eq!(
            reset
                .next("p", Some(&published), epc(1.0, "t1"))
                .total_grams,
            1.0,
            "--reset-state lowers the published EPC"
        );
        assert_eq!(reset.next("p", None, epc(0.5, "t2")).total_grams, 0.5);
    }
}

//! SoftwareProduct status writes: server-side apply on the status subresource, field manager
//! `jobcarbon`, so jobcarbon owns exactly `status.epc` and `status.conditions`.

use crate::product::{EpcStatus, ProductCondition, SoftwareProduct, SoftwareProductStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

/// The field manager of every write jobcarbon makes.
pub const FIELD_MANAGER: &str = "jobcarbon";

/// The apply body for one product's status: a partial object with apiVersion, kind, name and
/// the status fields jobcarbon owns.
pub fn status_apply_body(
    name: &str,
    epc: Option<&EpcStatus>,
    conditions: &[ProductCondition],
) -> Value {
    let status = SoftwareProductStatus {
        epc: epc.cloned(),
        conditions: conditions.to_vec(),
    };
    json!({
        "apiVersion": SoftwareProduct::api_version(&()),
        "kind": SoftwareProduct::kind(&()),
        "metadata": { "name": name },
        "status": status,
    })
}

/// The EPC to publish: never lower than what the status already says (each part and the
/// total), so a restart that restored less (a lost checkpoint, Prometheus retention shorter
/// than the downtime) cannot overwrite a product's published EPC with a smaller number. Only
/// `--reset-state` writes a lower figure, and the caller logs it ([`epc_lowered`]).
pub fn monotonic_epc(existing: Option<&EpcStatus>, new: EpcStatus) -> EpcStatus {
    let Some(old) = existing else { return new };
    let max = |a: f64, b: f64| if a.is_finite() { a.max(b) } else { b };
    EpcStatus {
        total_grams: max(old.total_grams, new.total_grams),
        measured_grams: max(old.measured_grams, new.measured_grams),
        inherited_grams: max(old.inherited_grams, new.inherited_grams),
        declared_grams: max(old.declared_grams, new.declared_grams),
        updated_at: new.updated_at,
    }
}

/// Whether writing `new` over `existing` lowers any published figure.
pub fn epc_lowered(existing: Option<&EpcStatus>, new: &EpcStatus) -> bool {
    existing.is_some_and(|old| {
        new.total_grams < old.total_grams
            || new.measured_grams < old.measured_grams
            || new.inherited_grams < old.inherited_grams
            || new.declared_grams < old.declared_grams
    })
}

/// Patch parameters: apply as `jobcarbon`, forcing ownership of our fields (the ledger is the
/// only writer of EPC; a stale manager must not block it).
pub fn status_patch_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    /// The SoftwareProduct is gone (deleted since the last list).
    #[error("SoftwareProduct {name:?} not found")]
    NotFound {
        /// The product's name.
        name: String,
    },
    /// The API server refused or failed the patch.
    #[error("status write for SoftwareProduct {name:?} failed: {source}")]
    Api {
        /// The product's name.
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

/// Write one product's status through the status subresource.
pub async fn write_product_status(
    client: &Client,
    name: &str,
    epc: Option<&EpcStatus>,
    conditions: &[ProductCondition],
) -> Result<SoftwareProduct, StatusWriteError> {
    let api: Api<SoftwareProduct> = Api::all(client.clone());
    let body = status_apply_body(name, epc, conditions);
    api.patch_status(name, &status_patch_params(), &Patch::Apply(&body))
        .await
        .map_err(|source| match &source {
            kube::Error::Api(status) if status.code == 404 => StatusWriteError::NotFound {
                name: name.to_owned(),
            },
            _ => StatusWriteError::Api {
                name: name.to_owned(),
                source,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epc(total: f64, measured: f64) -> EpcStatus {
        EpcStatus {
            total_grams: total,
            measured_grams: measured,
            inherited_grams: 0.0,
            declared_grams: total - measured,
            updated_at: "t".into(),
        }
    }

    #[test]
    fn published_epc_never_goes_down() {
        let old = epc(100.0, 60.0);
        // A restart that restored less: the published figures stay.
        let kept = monotonic_epc(Some(&old), epc(50.0, 10.0));
        assert_eq!((kept.total_grams, kept.measured_grams), (100.0, 60.0));
        assert!(epc_lowered(Some(&old), &epc(50.0, 10.0)));
        // Growth is published as it is.
        let grown = monotonic_epc(Some(&old), epc(120.0, 80.0));
        assert_eq!((grown.total_grams, grown.measured_grams), (120.0, 80.0));
        assert!(!epc_lowered(Some(&old), &grown));
        assert_eq!(monotonic_epc(None, epc(1.0, 1.0)), epc(1.0, 1.0));
    }
}

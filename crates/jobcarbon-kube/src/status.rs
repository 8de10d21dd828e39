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

/// Patch parameters: apply as `jobcarbon`, forcing ownership of our fields (the ledger is the
/// only writer of EPC; a stale manager must not block it).
pub fn status_patch_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    #[error("SoftwareProduct {name:?} not found")]
    NotFound { name: String },
    #[error("status write for SoftwareProduct {name:?} failed: {source}")]
    Api {
        name: String,
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

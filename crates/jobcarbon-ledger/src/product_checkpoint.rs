//! Checkpoints in a cluster: each SoftwareProduct's status carries the ledger's books for that
//! product (`status.ledger`: EPC parts, re-training pool, request totals and window), sealed
//! with a SHA-256 like the checkpoint file, next to the `status.epc` users read.
//!
//! Statuses are written one product at a time, so a crash mid-pass leaves some products at the
//! new interval and some at the one before. Each status therefore keeps the generation before
//! it (`previous`), and [`restore_products`] picks one consistent time for all: the oldest
//! current generation, taking the previous generation of products already one step ahead.
//!
//! The checksum is computed over this crate's own serialisation of the typed books, not over
//! the bytes the API server returns, so the API server re-encoding numbers (`1.0` → `1`) does
//! not break it, while any changed value does.

use crate::checkpoint::{CheckpointError, FORMAT_VERSION};
use crate::state::ProductAccount;
use jobcarbon_core::Seconds;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One generation of a product's books.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedProductBooks {
    pub version: u32,
    pub last_booked: Seconds,
    pub books: ProductAccount,
    /// SHA-256 (hex) of the canonical JSON of `[version, lastBooked, books]`.
    pub sha256: String,
}

/// `status.ledger` of a SoftwareProduct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductLedgerStatus {
    pub current: SealedProductBooks,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SealedProductBooks>,
}

fn place(product: &str) -> PathBuf {
    PathBuf::from(format!("SoftwareProduct/{product} status.ledger"))
}

fn digest(
    version: u32,
    last_booked: Seconds,
    books: &ProductAccount,
    product: &str,
) -> Result<String, CheckpointError> {
    let canonical = serde_json::to_vec(&(version, last_booked, books)).map_err(|e| {
        CheckpointError::Encode {
            path: place(product),
            reason: e.to_string(),
        }
    })?;
    Ok(Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl SealedProductBooks {
    pub fn seal(
        product: &str,
        last_booked: Seconds,
        books: ProductAccount,
    ) -> Result<Self, CheckpointError> {
        Ok(Self {
            version: FORMAT_VERSION,
            last_booked,
            sha256: digest(FORMAT_VERSION, last_booked, &books, product)?,
            books,
        })
    }

    /// Checks version and checksum; `product` names the object in errors.
    pub fn verify(&self, product: &str) -> Result<(), CheckpointError> {
        if self.version != FORMAT_VERSION {
            return Err(CheckpointError::VersionMismatch {
                path: place(product),
                found: self.version.to_string(),
                supported: FORMAT_VERSION,
            });
        }
        let actual = digest(self.version, self.last_booked, &self.books, product)?;
        if actual != self.sha256 {
            return Err(CheckpointError::ChecksumMismatch {
                path: place(product),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl ProductLedgerStatus {
    /// The status to write after booking `at`: the new books, with what was last written
    /// (if it verifies) kept as the previous generation.
    pub fn next(
        product: &str,
        written: Option<&ProductLedgerStatus>,
        at: Seconds,
        books: ProductAccount,
    ) -> Result<Self, CheckpointError> {
        let previous = written
            .map(|w| w.current.clone())
            .filter(|c| c.last_booked < at && c.verify(product).is_ok());
        Ok(Self {
            current: SealedProductBooks::seal(product, at, books)?,
            previous,
        })
    }
}

/// Product books restored from statuses, all as of one time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProductRestore {
    /// The consistent time; `None` when no product had a status.
    pub last_booked: Option<Seconds>,
    pub products: BTreeMap<String, ProductAccount>,
}

/// Restore from the raw `status.ledger` values (as the API server returned them) of every
/// product that has one. `Err` lists every product whose status cannot be trusted: the
/// ledger refuses to start from them (the same policy as a bad checkpoint file).
pub fn restore_products(
    statuses: &BTreeMap<String, serde_json::Value>,
) -> Result<ProductRestore, Vec<(String, CheckpointError)>> {
    let mut parsed = BTreeMap::new();
    let mut rejected = Vec::new();
    for (product, raw) in statuses {
        let status = serde_path_to_error::deserialize::<_, ProductLedgerStatus>(raw).map_err(|e| {
            CheckpointError::Payload {
                path: place(product),
                place: e.path().to_string(),
                reason: e.inner().to_string(),
            }
        });
        match status.and_then(|s| s.current.verify(product).map(|()| s)) {
            Ok(s) => {
                parsed.insert(product.clone(), s);
            }
            Err(e) => rejected.push((product.clone(), e)),
        }
    }
    let Some(at) = parsed
        .values()
        .map(|s| s.current.last_booked)
        .reduce(Seconds::min)
    else {
        return if rejected.is_empty() {
            Ok(ProductRestore::default())
        } else {
            Err(rejected)
        };
    };
    let mut products = BTreeMap::new();
    for (product, status) in parsed {
        let current_until = status.current.last_booked;
        let generation = if current_until == at {
            Some(status.current)
        } else {
            status
                .previous
                .filter(|p| p.last_booked == at && p.verify(&product).is_ok())
        };
        match generation {
            Some(g) => {
                products.insert(product, g.books);
            }
            None => rejected.push((
                product.clone(),
                CheckpointError::BadHeader {
                    path: place(&product),
                    reason: format!(
                        "booked until {} but other products only until {}, and no previous generation at that time",
                        current_until.value(),
                        at.value()
                    ),
                },
            )),
        }
    }
    if rejected.is_empty() {
        Ok(ProductRestore {
            last_booked: Some(at),
            products,
        })
    } else {
        Err(rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobcarbon_core::{Grams, ProductType};

    fn books(measured: f64) -> ProductAccount {
        let mut a = ProductAccount::new(ProductType::Model);
        a.measured = Grams(measured);
        a.pool
            .deposit(Seconds(0.0), Grams(measured / 3.0), Seconds(86_400.0));
        a
    }

    fn json(s: &ProductLedgerStatus) -> serde_json::Value {
        serde_json::to_value(s).unwrap()
    }

    #[test]
    fn a_crash_mid_pass_restores_one_consistent_time() {
        let a1 = ProductLedgerStatus::next("a", None, Seconds(30.0), books(1.0)).unwrap();
        let b1 = ProductLedgerStatus::next("b", None, Seconds(30.0), books(2.0)).unwrap();
        // The pass for 60 wrote `a`, then the ledger died before `b`.
        let a2 = ProductLedgerStatus::next("a", Some(&a1), Seconds(60.0), books(1.5)).unwrap();
        let restored = restore_products(&BTreeMap::from([
            ("a".into(), json(&a2)),
            ("b".into(), json(&b1)),
        ]))
        .unwrap();
        assert_eq!(restored.last_booked, Some(Seconds(30.0)));
        assert_eq!(restored.products["a"], books(1.0));
        assert_eq!(restored.products["b"], books(2.0));
    }

    #[test]
    fn api_server_number_reformatting_is_not_corruption() {
        let s = ProductLedgerStatus::next("a", None, Seconds(30.0), books(2.0)).unwrap();
        let text = serde_json::to_string(&json(&s))
            .unwrap()
            .replace("2.0", "2");
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(restore_products(&BTreeMap::from([("a".into(), raw)])).is_ok());
    }

    #[test]
    fn an_edited_value_is_detected_and_named() {
        let s = ProductLedgerStatus::next("bert", None, Seconds(30.0), books(2.0)).unwrap();
        let mut raw = json(&s);
        raw["current"]["books"]["measured"] = serde_json::json!(9.0);
        let err = restore_products(&BTreeMap::from([("bert".into(), raw)])).unwrap_err();
        assert_eq!(err[0].1.kind(), "checksum_mismatch");
        assert!(
            err[0].1.to_string().contains("SoftwareProduct/bert"),
            "{}",
            err[0].1
        );
    }

    #[test]
    fn a_product_two_steps_ahead_is_refused() {
        let a1 = ProductLedgerStatus::next("a", None, Seconds(30.0), books(1.0)).unwrap();
        let a2 = ProductLedgerStatus::next("a", Some(&a1), Seconds(60.0), books(1.0)).unwrap();
        let a3 = ProductLedgerStatus::next("a", Some(&a2), Seconds(90.0), books(1.0)).unwrap();
        let b1 = ProductLedgerStatus::next("b", None, Seconds(30.0), books(2.0)).unwrap();
        let err = restore_products(&BTreeMap::from([
            ("a".into(), json(&a3)),
            ("b".into(), json(&b1)),
        ]))
        .unwrap_err();
        assert_eq!(err[0].0, "a");
    }
}

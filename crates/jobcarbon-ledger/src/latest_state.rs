//! The restore hook of `jobcarbon ledger` ([`crate::schedule::RestoreHook`]): when a replica
//! takes the lead it continues from the latest durable state, the checkpoint it loaded or
//! this ledger's own series in Prometheus ([`crate::prom_restore`]), whichever is later.

use crate::config::Config;
use crate::durable::DurableLedger;
use crate::prom_restore::{self, RestoreContext};
use crate::schedule::{RestoreError, RestoreHook};
use async_trait::async_trait;
use jobcarbon_core::{RetrainingPolicy, Seconds};
use jobcarbon_telemetry::prom::PromClient;

impl RestoreContext {
    /// What a restore needs to know of this deployment: the ledger's own pod name and the
    /// configured products' `retraining.amortizeOver`.
    pub fn of(config: &Config, own_pod: Option<String>) -> Self {
        let amortize_over = config
            .product_defs()
            .into_iter()
            .filter_map(|p| match p.retraining {
                Some(RetrainingPolicy::AmortizeOver(over)) => Some((p.name, over)),
                _ => None,
            })
            .collect();
        Self {
            own_pod: own_pod.filter(|v| !v.is_empty()),
            amortize_over,
        }
    }
}

/// Continue from the checkpoint already loaded, or from this ledger's own series in
/// Prometheus when they are later (no checkpoint, or a new leader whose own checkpoint is
/// older).
pub struct LatestState {
    /// `None` (no `prometheus:`): the checkpoint, or nothing.
    pub prom: Option<PromClient>,
    /// The `ledger` label of the series to restore.
    pub identity: String,
    /// How far back Prometheus is searched.
    pub lookback: Seconds,
    /// `--reset-state`: never restore from Prometheus.
    pub reset: bool,
    /// What the restore needs (identity, settings, products).
    pub context: RestoreContext,
}

#[async_trait]
impl RestoreHook for LatestState {
    async fn restore(&mut self, ledger: &mut DurableLedger) -> Result<(), RestoreError> {
        let has_state = ledger.ledger().state().last_booked.is_some();
        let none = |ledger: &DurableLedger| {
            if !has_state {
                ledger.set_restored_from("none", "");
            }
        };
        let Some(client) = self.prom.as_ref().filter(|_| !self.reset) else {
            if self.reset {
                tracing::warn!(
                    "--reset-state: not restoring from Prometheus; totals start from zero"
                );
            }
            none(ledger);
            return Ok(());
        };
        let identity = &self.identity;
        let found =
            prom_restore::read_exported(client, identity, self.lookback, ledger.now()).await?;
        let Some(restored) = found
            .as_ref()
            .and_then(|(_, exported)| prom_restore::state_from_exported(exported, &self.context))
        else {
            if !has_state {
                tracing::warn!(%identity, lookback_seconds = self.lookback.value(), "no exported state of this ledger in Prometheus within the lookback (a first install, or a downtime longer than the lookback or the retention): totals start from zero");
            }
            none(ledger);
            return Ok(());
        };
        if !restored.skipped.is_empty() {
            tracing::warn!(count = restored.skipped.len(), first = %restored.skipped[0], "exported series not understood by this build; skipped");
        }
        let last_booked = restored.last_booked.value();
        if ledger.adopt_if_later(restored).await {
            let gap = (ledger.now().value() - last_booked).max(0.0);
            tracing::info!(%identity, last_booked, gap_seconds = gap, not_restored = prom_restore::MISSING, "ledger state restored from Prometheus; backfilling the gap from history");
            ledger.set_restored_from("prometheus", prom_restore::MISSING);
        } else {
            tracing::info!(
                last_booked,
                "the checkpoint is at least as recent as Prometheus: continuing from it"
            );
        }
        Ok(())
    }
}

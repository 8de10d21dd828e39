//! Fixtures shared by the ledger's integration tests.

use async_trait::async_trait;
use jobcarbon_core::{ClusterSnapshot, Phase, PodFacts, Seconds};
use jobcarbon_ledger::{ClusterError, ClusterSource};

/// A cluster of one training pod, `ml/p` on node `n1`.
pub struct OnePod;

#[async_trait]
impl ClusterSource for OnePod {
    async fn snapshot(&self, _at: Seconds) -> Result<ClusterSnapshot, ClusterError> {
        Ok(ClusterSnapshot {
            pods: vec![PodFacts::new("ml", "p").phase(Phase::Training).node("n1")],
            ..Default::default()
        })
    }
}

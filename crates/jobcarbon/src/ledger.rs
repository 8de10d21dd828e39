//! `jobcarbon ledger`: the cluster accountant. Wires the real sources into the ledger loop:
//! Kepler, DCGM and the node agent through Prometheus, request counters and live intensities
//! through Prometheus or the Electricity Maps / WattTime APIs, pods, nodes and
//! SoftwareProducts through the Kubernetes watchers; serves /metrics and the JSON API; writes
//! product EPC to SoftwareProduct status. With `JOBCARBON_LEADER_ELECTION_LEASE` set (chart
//! `replicas > 1`) only the Lease holder books.

use anyhow::Context;
use jobcarbon_core::Seconds;
use jobcarbon_kube::product::rfc3339;
use jobcarbon_kube::status::StatusWriteError;
use jobcarbon_kube::{ClusterState, EpcStatus, LeaderElector, write_product_status};
use jobcarbon_ledger::checkpoint::CheckpointFile;
use jobcarbon_ledger::durable;
use jobcarbon_ledger::kube_cluster::KubeCluster;
use jobcarbon_ledger::sources;
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Config, DurableLedger, Ledger, SharedView, Sources};
use jobcarbon_telemetry::MetricQuery;
use jobcarbon_telemetry::prom::{PromClient, PromMetrics};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ledger config file (DESIGN §11).
    #[arg(long, env = "JOBCARBON_CONFIG")]
    pub config: PathBuf,
    /// Address for /metrics, /api/v1/*, /healthz and /readyz. `[::]` (the default) listens
    /// on IPv6 and IPv4, and on IPv4 only where the node has no IPv6.
    #[arg(long, default_value = crate::listen::LEDGER_DEFAULT, env = "JOBCARBON_LISTEN")]
    pub listen: SocketAddr,
    /// Move an untrusted checkpoint (`state.file` and its `.prev`) aside and start an empty
    /// ledger. Totals restart from zero; use only when the checkpoint cannot be repaired.
    #[arg(long)]
    pub reset_state: bool,
}

pub fn run(args: Args) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobcarbon ledger: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(config, args.listen, args.reset_state)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcarbon ledger: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: Config, listen: SocketAddr, reset: bool) -> anyhow::Result<()> {
    let settings = config.settings();
    let settings_interval = settings.interval;
    let store = match &config.state.file {
        Some(path) => Some(CheckpointFile::new(path.clone())),
        None => {
            tracing::warn!(
                "`state.file` is not set: totals live in memory only and a restart loses them"
            );
            None
        }
    };
    if reset {
        match &store {
            Some(store) => {
                durable::reset_state(store, durable::wall_clock_now()).with_context(|| {
                    format!(
                        "--reset-state: cannot move {} aside",
                        store.path().display()
                    )
                })?;
            }
            None => tracing::warn!("--reset-state has no effect: `state.file` is not set"),
        }
    }
    let interval = Duration::from_secs_f64(settings.interval.value());
    type Readers = (sources::EnergySources, Option<Box<dyn MetricQuery>>);
    let (energy, metrics): Readers = match &config.prometheus {
        Some(p) => {
            let client = PromClient::new(sources::prom_config(p))
                .with_context(|| format!("prometheus.url {}", p.url))?;
            (
                sources::energy_sources(&config, &client)
                    .context("energy sources (energy.keplerZones)")?,
                Some(Box::new(PromMetrics::new(client))),
            )
        }
        None => {
            tracing::warn!("no `prometheus:` in the config: no energy is measured");
            let none = sources::EnergySources {
                sources: Vec::new(),
                estimation: None,
            };
            (none, None)
        }
    };

    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let (state, driver) = ClusterState::new(client.clone(), config.watch_config());
    tokio::spawn(driver);

    let view: SharedView = LedgerView::shared();
    let leader = match Election::from_env()? {
        None => None,
        Some(election) => {
            tracing::info!(lease = %election.lease, identity = %election.identity, "leader election on");
            if let Ok(mut v) = view.write() {
                v.leader = Some(false);
            }
            let (tx, rx) = tokio::sync::watch::channel(false);
            let elector = std::sync::Arc::new(election.elector(client.clone()));
            let rounds = tokio::spawn(run_election(elector.clone(), tx, view.clone()));
            Some((elector, rx, rounds))
        }
    };
    let estimation = energy.estimation;
    let ledger = Ledger::new(
        settings,
        Sources {
            energy: energy.sources,
            metrics,
            cluster: Box::new(KubeCluster {
                state: state.clone(),
            }),
        },
        config.product_defs(),
        config.request_queries(),
        view.clone(),
    )
    .with_estimation(estimation)
    .with_intensity_providers(
        sources::intensity_providers(&config)
            .map_err(|(region, e)| anyhow::anyhow!("regions.{region}.intensity: {e}"))?,
    );
    let mut ledger = DurableLedger::open(ledger, store, settings_interval)
        .map_err(|e| anyhow::anyhow!("cannot restore the ledger state (state.file): {e}"))?;

    let listener =
        crate::listen::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics and /api/v1");
    let server = jobcarbon_exporter::spawn(listener, view.clone());

    // Book once the first lists are in (or after one interval, whichever comes first), so
    // the first interval does not see an empty cluster.
    let _ = tokio::time::timeout(interval, state.wait_until_ready()).await;
    // The durable loop (DurableLedger::run) with two additions: a standby books nothing, and
    // the leader writes SoftwareProduct statuses after each booked interval. Intervals sit on
    // a fixed grid; after a restart the missed ones are backfilled from Prometheus history.
    let retry = interval.min(OUTAGE_RETRY);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let leading = leader.as_ref().is_none_or(|(_, rx, _)| *rx.borrow());
        let mut held = false;
        // A standby serves /metrics and /readyz but books and writes nothing.
        if leading {
            let caught = ledger.catch_up(durable::wall_clock_now()).await;
            held = !caught.held_by.is_empty();
            if caught.booked > 0
                && let Some(at) = ledger.ledger().state().last_booked
            {
                write_statuses(&client, &state, &view, at).await;
            }
        }
        let wait = if held {
            retry
        } else {
            let next = ledger.slot(durable::wall_clock_now()) + settings_interval;
            let secs = (next - durable::wall_clock_now()).value().max(0.0);
            Duration::from_secs_f64(secs)
        };
        tokio::select! {
            _ = &mut shutdown => {
                ledger.checkpoint();
                break;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if let Some((elector, _, rounds)) = &leader {
        // No more rounds: one could take the Lease back right after the release.
        rounds.abort();
        // Hand over now rather than after the lease expires (a rolling update's old pod).
        match elector.release(jobcarbon_telemetry::now()).await {
            Ok(true) => tracing::info!("released the leader Lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not release the leader Lease"),
        }
    }
    server.shutdown().await.context("the HTTP server failed")?;
    Ok(())
}

/// How long a silent leader keeps the Lease, how long it keeps acting as leader without a
/// successful renewal, and how often candidates try (client-go's defaults: 15 s, 10 s, 2 s).
const LEASE_DURATION: Seconds = Seconds(15.0);
const RENEW_DEADLINE: Seconds = Seconds(10.0);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How often a booking held by an energy-source outage is retried (at most once an interval).
const OUTAGE_RETRY: Duration = Duration::from_secs(10);

/// Leader election as the chart configures it for `replicas > 1` (docs/deploy.md).
#[derive(Debug, Clone, PartialEq)]
struct Election {
    lease: String,
    identity: String,
    namespace: String,
}

impl Election {
    /// `JOBCARBON_LEADER_ELECTION_LEASE` turns it on; the pod's name and namespace then must be
    /// set too. Without it there is no election (one replica).
    fn from_env() -> anyhow::Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let Some(lease) = var("JOBCARBON_LEADER_ELECTION_LEASE").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let required = |name: &str| {
            var(name).filter(|v| !v.is_empty()).with_context(|| {
                format!("JOBCARBON_LEADER_ELECTION_LEASE={lease} needs {name} (the chart sets it from the pod's metadata)")
            })
        };
        Ok(Some(Self {
            identity: required("JOBCARBON_POD_NAME")?,
            namespace: required("JOBCARBON_POD_NAMESPACE")?,
            lease,
        }))
    }

    fn elector(&self, client: kube::Client) -> LeaderElector {
        LeaderElector::new(
            client,
            &self.namespace,
            &self.lease,
            &self.identity,
            LEASE_DURATION,
        )
    }
}

/// Runs election rounds forever, publishing leadership to `tx` and the view's gauge. A leader
/// that cannot renew steps down after [`RENEW_DEADLINE`], before its Lease expires for others.
async fn run_election(
    elector: std::sync::Arc<LeaderElector>,
    tx: tokio::sync::watch::Sender<bool>,
    view: SharedView,
) {
    let mut renewed: Option<Seconds> = None;
    let mut ticker = tokio::time::interval(RETRY_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = jobcarbon_telemetry::now();
        let leading = match elector.try_acquire_or_renew(now).await {
            Ok(true) => {
                renewed = Some(now);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "leader election round failed");
                renewed.is_some_and(|r| now - r < RENEW_DEADLINE)
            }
        };
        if !leading {
            renewed = None;
        }
        if *tx.borrow() != leading {
            tracing::info!(leader = leading, "leadership changed");
        }
        tx.send_replace(leading);
        if let Ok(mut v) = view.write() {
            v.leader = Some(leading);
        }
    }
}

/// Write each SoftwareProduct object's EPC to its status. Config-only products have no
/// object (NotFound), which is expected and quiet.
async fn write_statuses(
    client: &kube::Client,
    state: &ClusterState,
    view: &SharedView,
    at: Seconds,
) {
    let epcs: Vec<(String, EpcStatus)> = match view.read() {
        Ok(v) => v
            .state
            .products
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    EpcStatus {
                        total_grams: p.epc.total().value(),
                        measured_grams: p.epc.measured.value(),
                        inherited_grams: p.epc.inherited.value(),
                        declared_grams: p.epc.declared.value(),
                        updated_at: rfc3339(at),
                    },
                )
            })
            .collect(),
        Err(_) => return,
    };
    let validation = state.products();
    let now = rfc3339(at);
    for (name, epc) in epcs {
        let conditions: Vec<_> = validation.condition(&name, &now).into_iter().collect();
        match write_product_status(client, &name, Some(&epc), &conditions).await {
            Ok(_) | Err(StatusWriteError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(product = %name, error = %e, "status write failed"),
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn election(vars: &[(&str, &str)]) -> anyhow::Result<Option<Election>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Election::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn election_only_with_the_lease_variable() {
        assert!(matches!(election(&[]), Ok(None)));
        assert!(matches!(
            election(&[("JOBCARBON_LEADER_ELECTION_LEASE", "")]),
            Ok(None)
        ));
        let on = election(&[
            ("JOBCARBON_LEADER_ELECTION_LEASE", "jc-leader"),
            ("JOBCARBON_POD_NAME", "jc-ledger-7d9f-abcde"),
            ("JOBCARBON_POD_NAMESPACE", "jobcarbon"),
        ]);
        assert_eq!(
            on.ok().flatten(),
            Some(Election {
                lease: "jc-leader".into(),
                identity: "jc-ledger-7d9f-abcde".into(),
                namespace: "jobcarbon".into(),
            })
        );
        let missing = election(&[
            ("JOBCARBON_LEADER_ELECTION_LEASE", "jc-leader"),
            ("JOBCARBON_POD_NAMESPACE", "jobcarbon"),
        ]);
        let message = match missing {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("a missing JOBCARBON_POD_NAME must be an error"),
        };
        assert!(message.contains("JOBCARBON_POD_NAME"), "{message}");
    }
}

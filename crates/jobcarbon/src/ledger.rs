//! `jobcarbon ledger`: the cluster accountant. Wires the real sources into the ledger loop:
//! Kepler, DCGM and the node agent through Prometheus, request counters and live intensities
//! through Prometheus or the Electricity Maps / WattTime APIs, pods, nodes and
//! SoftwareProducts through the Kubernetes watchers; serves /metrics and the JSON API; writes
//! product EPC to SoftwareProduct status. With `JOBCARBON_LEADER_ELECTION_LEASE` set (chart
//! `replicas > 1`) only the Lease holder books.

use anyhow::Context;
use jobcarbon_core::RetrainingPolicy;
use jobcarbon_core::Seconds;
use jobcarbon_kube::rfc3339;
use jobcarbon_kube::{ClusterState, EpcStatus, LeaderElector, write_product_status};
use jobcarbon_kube::{StatusWriteError, epc_lowered, monotonic_epc};
use jobcarbon_ledger::checkpoint::CheckpointFile;
use jobcarbon_ledger::clock::{OffsetClock, SharedClock};
use jobcarbon_ledger::durable;
use jobcarbon_ledger::ksm_history::KsmHistory;
use jobcarbon_ledger::kube_cluster::KubeCluster;
use jobcarbon_ledger::prom_restore;
use jobcarbon_ledger::sources;
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Config, DurableLedger, Ledger, SharedView, Sources};
use jobcarbon_telemetry::MetricQuery;
use jobcarbon_telemetry::prom::{PromClient, PromMetrics};
use std::collections::BTreeMap;
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
    /// Also skips the restore from Prometheus for this start, and lets SoftwareProduct
    /// status EPC go down (logged).
    #[arg(long)]
    pub reset_state: bool,
    /// This ledger's identity, `<namespace>/<release>`: the `ledger` label on every series
    /// it exports, and the only series it restores from Prometheus (the chart sets it).
    #[arg(long, env = "JOBCARBON_LEDGER_ID", default_value = "jobcarbon")]
    pub ledger_id: String,
    /// How far back Prometheus is searched for the ledger's last exported state when no
    /// checkpoint is trusted (a time: `7d`, `12h`).
    #[arg(long, env = "JOBCARBON_RESTORE_LOOKBACK", default_value = "7d")]
    pub restore_lookback: String,
    /// Check callers of /metrics, /api/* and / with TokenReview + SubjectAccessReview
    /// (`exporter.auth.enabled`); /healthz and /readyz stay open.
    #[arg(long, env = "JOBCARBON_AUTH")]
    pub auth: bool,
    /// Serve HTTPS with this PEM certificate chain (`exporter.tls.certFile`); needs --tls-key-file.
    #[arg(long, env = "JOBCARBON_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file (`exporter.tls.keyFile`).
    #[arg(long, env = "JOBCARBON_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// TEST ONLY: shift the ledger's clock by this many seconds (negative: the past), so a
    /// test can simulate hours of downtime without waiting. Never set it in production.
    #[arg(
        long,
        env = "JOBCARBON_TEST_CLOCK_OFFSET",
        default_value_t = 0.0,
        hide = true,
        allow_hyphen_values = true
    )]
    pub test_clock_offset: f64,
}

/// How the HTTP surface is protected: the flags, else the config's `exporter.auth`/`tls`.
struct Surface {
    auth: bool,
    tls: Option<(PathBuf, PathBuf)>,
}

impl Surface {
    fn of(args: &Args, config: &Config) -> Self {
        let tls = match (&args.tls_cert_file, &args.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => config
                .exporter
                .tls
                .as_ref()
                .map(|t| (t.cert_file.clone(), t.key_file.clone())),
        };
        Self {
            auth: args.auth || config.exporter.auth.enabled,
            tls,
        }
    }

    /// Binds `listen` and serves the surface on it in the background.
    fn serve(
        &self,
        listen: SocketAddr,
        client: &kube::Client,
        view: &SharedView,
        history: Option<jobcarbon_ledger::allocation_prom::PromHistory>,
    ) -> anyhow::Result<jobcarbon_exporter::ServerHandle> {
        let listener =
            crate::listen::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        let options = jobcarbon_exporter::ServeOptions {
            history,
            ..self.options(client)?
        };
        tracing::info!(
            address = %listener.local_addr()?,
            tls = options.tls.is_some(),
            auth = options.auth.is_some(),
            "serving /metrics and /api/v1"
        );
        Ok(jobcarbon_exporter::spawn_with(
            listener,
            view.clone(),
            options,
        ))
    }

    /// The server options; a certificate that cannot be served stops the start.
    fn options(&self, client: &kube::Client) -> anyhow::Result<jobcarbon_exporter::ServeOptions> {
        use jobcarbon_kube::auth::{CacheLimits, CachedReviewer, KubeAccessReviewer};
        let tls = match &self.tls {
            Some((cert, key)) => Some(jobcarbon_exporter::load_tls(cert, key)?),
            None => None,
        };
        let auth = self.auth.then(|| {
            let reviewer = KubeAccessReviewer::new(client.clone());
            std::sync::Arc::new(CachedReviewer::new(reviewer, CacheLimits::default()))
                as std::sync::Arc<dyn jobcarbon_kube::auth::AccessReviewer>
        });
        Ok(jobcarbon_exporter::ServeOptions {
            auth,
            tls,
            history: None,
        })
    }
}

/// How the ledger finds and marks its own state.
struct Durability {
    identity: String,
    lookback: Seconds,
    reset: bool,
    /// The system clock; shifted only by the test-only `--test-clock-offset`.
    clock: SharedClock,
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
    let lookback = match jobcarbon_core::quantity::parse::<Seconds>(&args.restore_lookback) {
        Ok(l) if l.value() > 0.0 => l,
        _ => {
            eprintln!(
                "error: --restore-lookback {:?}: expected a positive time such as 7d",
                args.restore_lookback
            );
            return ExitCode::from(2);
        }
    };
    let surface = Surface::of(&args, &config);
    let Some(clock) = test_clock(args.test_clock_offset) else {
        eprintln!("error: --test-clock-offset must be a number of seconds");
        return ExitCode::from(2);
    };
    let durability = Durability {
        identity: args.ledger_id,
        lookback,
        reset: args.reset_state,
        clock,
    };
    match runtime.block_on(serve(config, args.listen, durability, surface)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcarbon ledger: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(
    config: Config,
    listen: SocketAddr,
    durability: Durability,
    surface: Surface,
) -> anyhow::Result<()> {
    let reset = durability.reset;
    let settings = config.settings();
    let settings_interval = settings.interval;
    let store = checkpoint_store(&config, reset, durability.clock.now())?;
    let interval = Duration::from_secs_f64(settings.interval.value());
    let (energy, metrics, prom) = readers(&config)?;

    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let (state, driver) = ClusterState::new(client.clone(), config.watch_config());
    tokio::spawn(driver);

    let view: SharedView = LedgerView::shared();
    if let Ok(mut v) = view.write() {
        v.identity = Some(durability.identity.clone());
    }
    let restore_context = restore_context(&config);
    let leader = start_election(&client, &view)?;
    let estimation = energy.estimation;
    let ledger = Ledger::new(
        settings,
        Sources {
            energy: energy.sources,
            metrics,
            cluster: Box::new(cluster_source(
                &state,
                prom.as_ref(),
                &durability,
                settings_interval,
            )),
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
        .map_err(|e| anyhow::anyhow!("cannot restore the ledger state (state.file): {e}"))?
        .with_clock(durability.clock.clone());

    // With a Prometheus, /api/v1/allocation reads the ledger's own series there (it
    // survives restarts); without one, the in-memory history answers.
    let history = prom.clone().map(|client| {
        jobcarbon_ledger::allocation_prom::PromHistory::new(
            client,
            durability.identity.clone(),
            durability.lookback,
        )
    });
    let server = surface.serve(listen, &client, &view, history)?;

    // Book once the first lists are in (or after one interval, whichever comes first), so
    // the first interval does not see an empty cluster.
    let _ = tokio::time::timeout(interval, state.wait_until_ready()).await;
    let booking = Booking {
        client: &client,
        cluster: &state,
        view: &view,
        prom: prom.as_ref(),
        durability: &durability,
        restore: restore_context,
        interval: settings_interval,
    };
    book_until_shutdown(&mut ledger, leader.as_ref().map(|(_, rx, _)| rx), booking).await;
    if let Some((elector, _, rounds)) = &leader {
        // No more rounds: one could take the Lease back right after the release.
        rounds.abort();
        release_lease(elector).await;
    }
    server.shutdown().await.context("the HTTP server failed")?;
    Ok(())
}

/// The elector, the leadership channel and the election rounds' task, with
/// `JOBCARBON_LEADER_ELECTION_LEASE` set (chart `replicas > 1`); `None` without it.
type Leadership = (
    std::sync::Arc<LeaderElector>,
    tokio::sync::watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
);

/// Starts leader election when `JOBCARBON_LEADER_ELECTION_LEASE` asks for it.
fn start_election(client: &kube::Client, view: &SharedView) -> anyhow::Result<Option<Leadership>> {
    let Some(election) = Election::from_env()? else {
        return Ok(None);
    };
    tracing::info!(lease = %election.lease, identity = %election.identity, "leader election on");
    if let Ok(mut v) = view.write() {
        v.leader = Some(false);
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let elector = std::sync::Arc::new(election.elector(client.clone()));
    let rounds = tokio::spawn(run_election(elector.clone(), tx, view.clone()));
    Ok(Some((elector, rx, rounds)))
}

/// The system clock, or (test only) the wall clock shifted by `offset` seconds. `None` for
/// a non-finite offset.
fn test_clock(offset: f64) -> Option<SharedClock> {
    if !offset.is_finite() {
        return None;
    }
    if offset == 0.0 {
        return Some(jobcarbon_ledger::clock::system());
    }
    eprintln!("jobcarbon ledger: TEST CLOCK: the ledger's clock is shifted by {offset} s");
    Some(std::sync::Arc::new(OffsetClock {
        offset: Seconds(offset),
    }))
}

/// The watchers, and for pods that lived only inside a gap, kube-state-metrics history in
/// the configured Prometheus.
fn cluster_source(
    state: &ClusterState,
    prom: Option<&PromClient>,
    durability: &Durability,
    interval: Seconds,
) -> KubeCluster {
    let cluster = KubeCluster::new(state.clone());
    match prom {
        Some(client) => cluster.with_history(
            KsmHistory::new(client.clone()),
            durability.clock.clone(),
            interval,
        ),
        None => cluster,
    }
}

/// Hands the Lease over now rather than after it expires (a rolling update's old pod).
async fn release_lease(elector: &LeaderElector) {
    match elector.release(jobcarbon_telemetry::now()).await {
        Ok(true) => tracing::info!("released the leader Lease"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not release the leader Lease"),
    }
}

/// The checkpoint file of `state.file`; with `--reset-state` its generations are moved aside.
fn checkpoint_store(
    config: &Config,
    reset: bool,
    now: Seconds,
) -> anyhow::Result<Option<CheckpointFile>> {
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
                durable::reset_state(store, now).with_context(|| {
                    format!(
                        "--reset-state: cannot move {} aside",
                        store.path().display()
                    )
                })?;
            }
            None => tracing::warn!("--reset-state has no effect: `state.file` is not set"),
        }
    }
    Ok(store)
}

type Readers = (
    sources::EnergySources,
    Option<Box<dyn MetricQuery>>,
    Option<PromClient>,
);

/// The energy sources, the metric queries and the client for the restore, all from
/// `prometheus:` (none without it).
fn readers(config: &Config) -> anyhow::Result<Readers> {
    Ok(match &config.prometheus {
        Some(p) => {
            let client = PromClient::new(sources::prom_config(p))
                .with_context(|| format!("prometheus.url {}", p.url))?;
            (
                sources::energy_sources(config, &client)
                    .context("energy sources (energy.keplerZones)")?,
                Some(Box::new(PromMetrics::new(client.clone()))),
                Some(client),
            )
        }
        None => {
            tracing::warn!("no `prometheus:` in the config: no energy is measured");
            let none = sources::EnergySources {
                sources: Vec::new(),
                estimation: None,
            };
            (none, None, None)
        }
    })
}

/// What the booking loop uses besides the ledger.
struct Booking<'a> {
    client: &'a kube::Client,
    cluster: &'a ClusterState,
    view: &'a SharedView,
    prom: Option<&'a PromClient>,
    durability: &'a Durability,
    restore: prom_restore::RestoreContext,
    interval: Seconds,
}

/// The durable loop (DurableLedger::run) with three additions: a standby books and writes
/// nothing, a replica taking the lead first continues from the latest durable state, and the
/// leader writes SoftwareProduct statuses after each booked interval. Intervals sit on a fixed
/// grid; after a restart the missed ones are backfilled from Prometheus history.
async fn book_until_shutdown(
    ledger: &mut DurableLedger,
    leader: Option<&tokio::sync::watch::Receiver<bool>>,
    b: Booking<'_>,
) {
    let interval = Duration::from_secs_f64(b.interval.value());
    let retry = interval.min(OUTAGE_RETRY);
    let shutdown = crate::signal::shutdown_signal();
    tokio::pin!(shutdown);
    let mut floors = StatusFloors {
        reset: b.durability.reset,
        written: BTreeMap::new(),
    };
    // Whether this replica chose its state (checkpoint or Prometheus) since it took the lead.
    let mut restored = false;
    loop {
        let leading = leader.is_none_or(|rx| *rx.borrow());
        restored &= leading;
        let mut held = false;
        if leading && !restored {
            match restore_latest(ledger, b.prom, b.durability, &b.restore).await {
                Ok(()) => restored = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read this ledger's exported state from Prometheus; booking waits until it answers");
                    held = true;
                }
            }
        }
        if leading && restored {
            let caught = ledger.catch_up(ledger.now()).await;
            held = !caught.held_by.is_empty();
            if caught.booked > 0
                && let Some(at) = ledger.ledger().state().last_booked
            {
                write_statuses(b.client, b.cluster, b.view, at, &mut floors).await;
            }
        }
        let wait = if held {
            retry
        } else {
            let next = ledger.slot(ledger.now()) + b.interval;
            let secs = (next - ledger.now()).value().max(0.0);
            Duration::from_secs_f64(secs)
        };
        tokio::select! {
            _ = &mut shutdown => {
                // A standby's state is stale: it never writes a checkpoint.
                if leading && restored {
                    ledger.checkpoint();
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What a restore from Prometheus needs to know of this deployment.
fn restore_context(config: &Config) -> prom_restore::RestoreContext {
    let amortize_over = config
        .product_defs()
        .into_iter()
        .filter_map(|p| match p.retraining {
            Some(RetrainingPolicy::AmortizeOver(over)) => Some((p.name, over)),
            _ => None,
        })
        .collect();
    prom_restore::RestoreContext {
        own_pod: std::env::var("JOBCARBON_POD_NAME")
            .ok()
            .filter(|v| !v.is_empty()),
        amortize_over,
    }
}

/// Continue from the latest durable state: the checkpoint already loaded, or this ledger's
/// own series in Prometheus when they are later (no checkpoint, or a new leader whose own
/// checkpoint is older). `Err`: Prometheus did not answer (the caller retries; starting from
/// zero instead would publish smaller totals).
async fn restore_latest(
    ledger: &mut DurableLedger,
    prom: Option<&PromClient>,
    durability: &Durability,
    context: &prom_restore::RestoreContext,
) -> anyhow::Result<()> {
    let has_state = ledger.ledger().state().last_booked.is_some();
    let none = |ledger: &DurableLedger| {
        if !has_state {
            ledger.set_restored_from("none", "");
        }
    };
    let Some(client) = prom.filter(|_| !durability.reset) else {
        if durability.reset {
            tracing::warn!("--reset-state: not restoring from Prometheus; totals start from zero");
        }
        none(ledger);
        return Ok(());
    };
    let identity = &durability.identity;
    let found =
        prom_restore::read_exported(client, identity, durability.lookback, ledger.now()).await?;
    let Some(restored) = found
        .as_ref()
        .and_then(|(_, exported)| prom_restore::state_from_exported(exported, context))
    else {
        if !has_state {
            tracing::warn!(%identity, lookback_seconds = durability.lookback.value(), "no exported state of this ledger in Prometheus within the lookback (a first install, or a downtime longer than the lookback or the retention): totals start from zero");
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

/// The EPC this process last published per product: SoftwareProduct status never goes down
/// (`jobcarbon_kube::status::monotonic_epc`) unless the ledger started with `--reset-state`.
struct StatusFloors {
    reset: bool,
    written: BTreeMap<String, EpcStatus>,
}

impl StatusFloors {
    /// The figure to write for `name` over what is published (`published`: the status the
    /// watcher saw), logging a lowering.
    fn next(&mut self, name: &str, published: Option<&EpcStatus>, new: EpcStatus) -> EpcStatus {
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
    floors: &mut StatusFloors,
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
    let published = state.published_epc();
    let now = rfc3339(at);
    for (name, epc) in epcs {
        let epc = floors.next(&name, published.get(&name), epc);
        let conditions: Vec<_> = validation.condition(&name, &now).into_iter().collect();
        match write_product_status(client, &name, Some(&epc), &conditions).await {
            Ok(_) | Err(StatusWriteError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(product = %name, error = %e, "status write failed"),
        }
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

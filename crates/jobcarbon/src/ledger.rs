//! `jobcarbon ledger`: the cluster accountant. This file only wires: it parses the flags,
//! builds the parts and hands them to the ledger crate's one loop (`DurableLedger::run`):
//! the readers of `prometheus:` (`sources::readers`: Kepler, DCGM, the node agent, request
//! counters), live intensity providers, the Kubernetes watchers, the restore from Prometheus
//! (`latest_state`), SoftwareProduct status writes (`kube_status`) and, with
//! `JOBCARBON_LEADER_ELECTION_LEASE` set (chart `replicas > 1`), leader election
//! (`jobcarbon_kube::Election`) so only the Lease holder books. It serves /metrics and the
//! JSON API.

use anyhow::Context;
use jobcarbon_core::Seconds;
use jobcarbon_kube::{ClusterState, Election, Leadership};
use jobcarbon_ledger::KsmHistory;
use jobcarbon_ledger::KubeCluster;
use jobcarbon_ledger::LatestState;
use jobcarbon_ledger::RestoreContext;
use jobcarbon_ledger::allocation_prom::PromHistory;
use jobcarbon_ledger::checkpoint::CheckpointFile;
use jobcarbon_ledger::clock::{OffsetClock, SharedClock};
use jobcarbon_ledger::durable;
use jobcarbon_ledger::sources;
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Config, DurableLedger, Ledger, Schedule, SharedView, Sources};
use jobcarbon_ledger::{ProductStatusWriter, StatusFloors};
use jobcarbon_telemetry::prom::PromClient;
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
        history: Option<PromHistory>,
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
    let interval = config.settings().interval;
    let store = checkpoint_store(&config, durability.reset, durability.clock.now())?;
    let readers = sources::readers(&config)?;
    let prom = readers.prom.clone();
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let (state, driver) = ClusterState::new(client.clone(), config.watch_config());
    tokio::spawn(driver);

    let view: SharedView = LedgerView::shared();
    if let Ok(mut v) = view.write() {
        v.identity = Some(durability.identity.clone());
    }
    let leadership = start_election(&client, &view)?;
    let mut ledger = durable_ledger(&config, readers, store, &state, &durability, view.clone())?;

    // With a Prometheus, /api/v1/allocation reads the ledger's own series there (it
    // survives restarts); without one, the in-memory history answers.
    let history = prom
        .clone()
        .map(|client| PromHistory::new(client, durability.identity.clone(), durability.lookback));
    let server = surface.serve(listen, &client, &view, history)?;

    // Book once the first lists are in (or after one interval, whichever comes first), so
    // the first interval does not see an empty cluster.
    let first_lists = Duration::from_secs_f64(interval.value());
    let _ = tokio::time::timeout(first_lists, state.wait_until_ready()).await;
    let schedule = Schedule::new(interval)
        .with_leader(leadership.as_ref().map(Leadership::receiver))
        .with_restore(LatestState {
            prom,
            identity: durability.identity.clone(),
            lookback: durability.lookback,
            reset: durability.reset,
            context: RestoreContext::of(&config, std::env::var("JOBCARBON_POD_NAME").ok()),
        })
        .with_after_booking(ProductStatusWriter::new(
            client.clone(),
            state.clone(),
            StatusFloors::new(durability.reset),
        ));
    ledger.run(schedule, crate::signal::shutdown_signal()).await;
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    server.shutdown().await.context("the HTTP server failed")?;
    Ok(())
}

/// The ledger over the configured readers and the watchers, restored from `store`.
fn durable_ledger(
    config: &Config,
    readers: sources::Readers,
    store: Option<CheckpointFile>,
    state: &ClusterState,
    durability: &Durability,
    view: SharedView,
) -> anyhow::Result<DurableLedger> {
    let settings = config.settings();
    let interval = settings.interval;
    let cluster = cluster_source(state, readers.prom.as_ref(), durability, interval);
    let providers = sources::intensity_providers(config)
        .map_err(|(region, e)| anyhow::anyhow!("regions.{region}.intensity: {e}"))?;
    let ledger = Ledger::new(
        settings,
        Sources {
            energy: readers.energy.sources,
            metrics: readers.metrics,
            cluster: Box::new(cluster),
        },
        config.product_defs(),
        config.request_queries(),
        view,
    )
    .with_estimation(readers.energy.estimation)
    .with_intensity_providers(providers);
    Ok(DurableLedger::open(ledger, store, interval)
        .map_err(|e| anyhow::anyhow!("cannot restore the ledger state (state.file): {e}"))?
        .with_clock(durability.clock.clone()))
}

/// Leader election when `JOBCARBON_LEADER_ELECTION_LEASE` asks for it (chart
/// `replicas > 1`), published as the view's leader gauge; `None` without it.
fn start_election(client: &kube::Client, view: &SharedView) -> anyhow::Result<Option<Leadership>> {
    let Some(election) = Election::from_env()? else {
        return Ok(None);
    };
    if let Ok(mut v) = view.write() {
        v.leader = Some(false);
    }
    let view = view.clone();
    Ok(Some(election.start(client.clone(), move |leading| {
        if let Ok(mut v) = view.write() {
            v.leader = Some(leading);
        }
    })))
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

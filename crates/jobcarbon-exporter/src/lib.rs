//! jobcarbon-exporter: the HTTP surface of the ledger.
//!
//! - `/metrics`: OpenMetrics (or Prometheus text, by `Accept`) built by a prometheus-client `Collector` from the ledger
//!   view at scrape time (finished pods vanish without bookkeeping), names of DESIGN §8;
//! - `/api/v1/workloads`, `/api/v1/products`, `/api/v1/products/{name}`: JSON;
//! - `/api/v1/advice`: the least-carbon start and region for a product's next re-training
//!   run ([`advice`]);
//! - `/api/v1/allocation`: energy and carbon over a window by namespace, workload, phase and
//!   product, from Prometheus' history of the ledger's own counters when a Prometheus is
//!   configured (`jobcarbon_ledger::allocation_prom`), else from the ledger's in-memory
//!   history (`jobcarbon_ledger::allocation_query`);
//! - `/`: the web view (`ui.rs`), embedded, calling the JSON API;
//! - `/healthz` (the process serves) and `/readyz` (the first interval is booked, or this
//!   replica is a leader-election standby; booking held by an outage: `503 degraded: …`).
//!
//! With [`ServeOptions::auth`] every path but `/healthz` and `/readyz` needs a bearer token
//! that the Kubernetes API accepts and RBAC lets `get` the path (TokenReview, then SubjectAccessReview); with
//! [`ServeOptions::tls`] it is served over TLS.

#![warn(missing_docs)]

pub mod advice;
mod auth;
mod metrics;
mod scrape;
mod server;
mod ui;

pub use metrics::{Format, encode_metrics, write_metrics};
pub use scrape::CHUNK_BYTES;
pub use server::{HEADER_TIMEOUT, MAX_HEADER_BYTES, load_tls};

use axum::Router;
use axum::extract::FromRef;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jobcarbon_core::{Component, Terms};
use jobcarbon_ledger::SharedView;
use jobcarbon_ledger::allocation_prom::PromHistory;
use jobcarbon_ledger::state::{LedgerState, ProductAccount, RollupAccount, RollupKey};
use jobcarbon_ledger::view::{shared_state, snapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers share: the ledger view and, when a Prometheus is configured, the
/// ledger's history in it (`/api/v1/allocation` answers from it then).
#[derive(Clone)]
struct Api {
    view: SharedView,
    history: Option<Arc<PromHistory>>,
}

impl FromRef<Api> for SharedView {
    fn from_ref(api: &Api) -> SharedView {
        api.view.clone()
    }
}

/// The router serving every endpoint over `view` (allocation from the in-memory history).
pub fn router(view: SharedView) -> Router {
    router_with(view, None)
}

/// The router, with `/api/v1/allocation` answered from Prometheus when `history` is given.
pub fn router_with(view: SharedView, history: Option<PromHistory>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/workloads", get(workloads))
        .route("/api/v1/products", get(products))
        .route("/api/v1/products/{name}", get(product))
        .route("/api/v1/advice", get(advice_handler))
        .route("/api/v1/allocation", get(allocation))
        .route("/", get(ui::index))
        .route("/ui.js", get(ui::script))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Api {
            view,
            history: history.map(Arc::new),
        })
}

/// How the surface is served: plain HTTP, no auth and in-memory allocation history by default.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Check callers with TokenReview + SubjectAccessReview (every path but the probes).
    pub auth: Option<std::sync::Arc<dyn jobcarbon_kube::auth::AccessReviewer>>,
    /// Serve HTTPS with this config ([`load_tls`]).
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    /// With a Prometheus, `/api/v1/allocation` reads the ledger's own series there (it
    /// survives restarts); without one, the in-memory history answers.
    pub history: Option<PromHistory>,
}

/// Serve `router_with(view, history)` on `listener`, protected as `options` says, until
/// `shutdown` resolves.
async fn serve_with(
    listener: tokio::net::TcpListener,
    view: SharedView,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(view, options.history);
    let app = match options.auth {
        Some(reviewer) => auth::protect(app, reviewer),
        None => app,
    };
    server::serve_bounded(listener, app, options.tls, shutdown).await
}

/// The HTTP surface running on its own task, as the ledger and the demo run it.
pub struct ServerHandle {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves [`router`] on `listener` in the background until [`ServerHandle::shutdown`].
pub fn spawn(listener: tokio::net::TcpListener, view: SharedView) -> ServerHandle {
    spawn_with(listener, view, ServeOptions::default())
}

/// [`spawn`], protected as `options` says.
pub fn spawn_with(
    listener: tokio::net::TcpListener,
    view: SharedView,
    options: ServeOptions,
) -> ServerHandle {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve_with(listener, view, options, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    ServerHandle { stop, task }
}

impl ServerHandle {
    /// Stops accepting, lets in-flight requests finish, and reports how the server ended.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }
}

pub(crate) fn unavailable(what: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("ledger view unavailable: {what}\n"),
    )
        .into_response()
}

/// `/metrics`: a snapshot of the view, encoded and streamed without holding its lock.
async fn metrics_handler(State(view): State<SharedView>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    match snapshot(&view) {
        Some(view) => scrape::metrics_response(view, format).await,
        None => unavailable("encoding failed"),
    }
}

async fn readyz(State(view): State<SharedView>) -> Response {
    match view.read() {
        Ok(v) if v.state.is_ready() => match v.durability.degraded() {
            // Degraded: stale figures still served on /metrics; liveness (/healthz) stays up.
            Some(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("degraded: {reason}\n"),
            )
                .into_response(),
            None => (StatusCode::OK, ready_detail(&v)).into_response(),
        },
        // A standby books nothing by design; it must be ready for a surge-only rollout.
        Ok(v) if v.leader == Some(false) => (StatusCode::OK, "ready (standby)\n").into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no interval booked yet\n",
        )
            .into_response(),
        Err(_) => unavailable("lock poisoned"),
    }
}

/// `ready`, and a line per product whose request counters cannot be read (its per-request
/// figure is held): the rest of the accounting is unaffected, so the ledger stays ready.
fn ready_detail(view: &jobcarbon_ledger::LedgerView) -> String {
    let mut text = String::from("ready\n");
    for (product, status) in &view.requests {
        if let Some(reason) = &status.last_error {
            text.push_str(&format!(
                "requests of product {product} unreadable (per-request figure held): {reason}\n"
            ));
        }
    }
    text
}

/// One workload series in the JSON API: a pod, or a roll-up of finished pods (`pod: null`).
#[derive(Debug, Serialize)]
struct WorkloadJson {
    pub namespace: String,
    pub workload: String,
    pub pod: Option<String>,
    /// The run of the workload the pod belongs to (a CronJob's `Job/<name>`).
    pub run: Option<String>,
    pub phase: String,
    pub product: Option<String>,
    pub node: Option<String>,
    pub running: bool,
    pub platform: bool,
    /// Pods in a roll-up (1 for a pod).
    pub pods: u64,
    pub energy_j: BTreeMap<&'static str, f64>,
    /// Where each component's energy comes from: `measured`, or `estimated` (CCF model on a
    /// node without a meter, or a GPU's utilisation × TDP).
    pub energy_source: BTreeMap<&'static str, &'static str>,
    pub jsc_g: f64,
    pub asc_g: f64,
    pub jsce_g: f64,
    pub asce_g: f64,
    pub terms: Terms,
    /// When the workload's series stopped (no pod left), seconds since the Unix epoch; absent
    /// for live workloads. The last `MAX_RECENT_RETIRED` retired workloads are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<f64>,
}

/// `source` of each component: `estimated` for those in `estimated`, else `measured`.
fn energy_source(
    estimated: &std::collections::BTreeSet<Component>,
) -> BTreeMap<&'static str, &'static str> {
    Component::ALL
        .iter()
        .map(|c| (c.as_str(), source_of(estimated, *c)))
        .collect()
}

/// The `source` label value of one component.
fn source_of(estimated: &std::collections::BTreeSet<Component>, c: Component) -> &'static str {
    if estimated.contains(&c) {
        "estimated"
    } else {
        "measured"
    }
}

fn energy_json(
    energy: &BTreeMap<Component, jobcarbon_core::Joules>,
) -> BTreeMap<&'static str, f64> {
    let mut out: BTreeMap<&'static str, f64> = Component::ALL
        .iter()
        .map(|c| (c.as_str(), energy.get(c).map(|j| j.value()).unwrap_or(0.0)))
        .collect();
    out.insert("total", energy.values().map(|j| j.value()).sum());
    out
}

/// Every workload series of the state, pods first, then roll-ups.
fn workloads_json(state: &LedgerState) -> Vec<WorkloadJson> {
    let pods = state.pods.iter().map(|(key, a)| WorkloadJson {
        namespace: key.namespace.clone(),
        workload: a.workload.workload.clone(),
        pod: Some(key.pod.clone()),
        run: a.run.clone(),
        phase: a.phase.as_str().to_owned(),
        product: a.product.clone(),
        node: a.node.clone(),
        running: a.running,
        platform: a.platform,
        pods: 1,
        energy_j: energy_json(&a.energy),
        energy_source: energy_source(&a.estimated),
        jsc_g: a.carbon.jsc().value(),
        asc_g: a.carbon.asc().value(),
        jsce_g: a.carbon.jsce().value(),
        asce_g: a.carbon.asce().value(),
        terms: a.carbon,
        retired_at: None,
    });
    let rollups = state
        .rolled_up
        .iter()
        .map(|(key, r)| rollup_json(key, r, None));
    let retired = state
        .retired
        .recent
        .iter()
        .rev()
        .map(|w| rollup_json(&w.key, &w.books, Some(w.retired_at.value())));
    pods.chain(rollups).chain(retired).collect()
}

/// A workload's rolled-up pods (live, or retired at `retired_at`).
fn rollup_json(key: &RollupKey, r: &RollupAccount, retired_at: Option<f64>) -> WorkloadJson {
    WorkloadJson {
        namespace: key.workload.namespace.clone(),
        workload: key.workload.workload.clone(),
        pod: None,
        run: None,
        phase: key.phase.as_str().to_owned(),
        product: key.product.clone(),
        node: None,
        running: false,
        platform: false,
        pods: r.pods,
        energy_j: energy_json(&r.energy),
        energy_source: energy_source(&r.estimated),
        jsc_g: r.carbon.jsc().value(),
        asc_g: r.carbon.asc().value(),
        jsce_g: r.carbon.jsce().value(),
        asce_g: r.carbon.asce().value(),
        terms: r.carbon,
        retired_at,
    }
}

/// One run of a workload in the JSON API (the last runs of each CronJob, oldest first).
#[derive(Debug, Serialize)]
struct RunJson {
    pub namespace: String,
    pub workload: String,
    pub run: String,
    pub first_seen: f64,
    pub last_seen: f64,
    pub energy_j: BTreeMap<&'static str, f64>,
    pub jsc_g: f64,
    pub asc_g: f64,
    pub jsce_g: f64,
    pub asce_g: f64,
    pub terms: Terms,
}

/// Every run the state keeps, by workload.
fn runs_json(state: &LedgerState) -> Vec<RunJson> {
    state
        .runs
        .iter()
        .flat_map(|(workload, runs)| {
            runs.iter().map(move |r| RunJson {
                namespace: workload.namespace.clone(),
                workload: workload.workload.clone(),
                run: r.run.clone(),
                first_seen: r.first_seen.value(),
                last_seen: r.last_seen.value(),
                energy_j: energy_json(&r.energy),
                jsc_g: r.carbon.jsc().value(),
                asc_g: r.carbon.asc().value(),
                jsce_g: r.carbon.jsce().value(),
                asce_g: r.carbon.asce().value(),
                terms: r.carbon,
            })
        })
        .collect()
}

/// One product in the JSON API.
#[derive(Debug, Serialize)]
struct ProductJson {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub epc_g: f64,
    pub measured_g: f64,
    pub inherited_g: f64,
    pub declared_g: f64,
    pub retraining_pool_g: f64,
    pub retraining_deposited_g: f64,
    pub retraining_drained_g: f64,
    pub requests_total: f64,
    pub inference_grams_total: f64,
    /// Over the sliding window; null without requests in it.
    pub grams_per_request: Option<f64>,
    /// Its parents: `{product, weight, via: model|dataset}`.
    pub parents: Vec<jobcarbon_ledger::view::ParentEdge>,
}

fn product_json(
    name: &str,
    p: &ProductAccount,
    parents: Option<&Vec<jobcarbon_ledger::view::ParentEdge>>,
) -> ProductJson {
    ProductJson {
        name: name.to_owned(),
        kind: p.kind.as_str().to_owned(),
        epc_g: p.epc.total().value(),
        measured_g: p.epc.measured.value(),
        inherited_g: p.epc.inherited.value(),
        declared_g: p.epc.declared.value(),
        retraining_pool_g: p.pool.balance().value(),
        retraining_deposited_g: p.pool.deposited.value(),
        retraining_drained_g: p.pool.drained.value(),
        requests_total: p.requests_total,
        inference_grams_total: p.inference_grams_total.value(),
        grams_per_request: p.grams_per_request(),
        parents: parents.cloned().unwrap_or_default(),
    }
}

async fn workloads(State(view): State<SharedView>) -> Response {
    let Some(state) = shared_state(&view) else {
        return unavailable("lock poisoned");
    };
    axum::Json(serde_json::json!({
        "workloads": workloads_json(&state),
        "runs": runs_json(&state),
    }))
    .into_response()
}

async fn products(State(view): State<SharedView>) -> Response {
    let Some(view) = snapshot(&view) else {
        return unavailable("lock poisoned");
    };
    let products: Vec<ProductJson> = view
        .state
        .products
        .iter()
        .map(|(name, p)| product_json(name, p, view.lineage.get(name)))
        .collect();
    axum::Json(serde_json::json!({ "products": products })).into_response()
}

/// A SoftwareProduct name is a Kubernetes object name: DNS subdomain, at most 253 characters.
fn valid_product_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

async fn product(State(view): State<SharedView>, Path(name): Path<String>) -> Response {
    if !valid_product_name(&name) {
        let shown: String = name.chars().take(64).collect();
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "error": format!("{shown:?} is not a product name (a DNS subdomain, at most 253 characters)"),
                "parameter": "name",
            })),
        )
            .into_response();
    }
    let Some(view) = snapshot(&view) else {
        return unavailable("lock poisoned");
    };
    match view.state.products.get(&name) {
        Some(p) => axum::Json(product_json(&name, p, view.lineage.get(&name))).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no product named {name:?}") })),
        )
            .into_response(),
    }
}

async fn advice_handler(
    State(view): State<SharedView>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(view) = snapshot(&view) else {
        return unavailable("lock poisoned");
    };
    match advice::advice_json(&view, &params, jobcarbon_ledger::durable::wall_clock_now()) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(bad) => (StatusCode::BAD_REQUEST, axum::Json(bad)).into_response(),
    }
}

/// `GET /api/v1/allocation`: parse, answer from Prometheus when configured (else the
/// in-memory history), render. "Now" is the wall clock with Prometheus, else the end of the
/// last booked interval (simulated time in the demo).
async fn allocation(
    State(api): State<Api>,
    axum::extract::Query(params): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    use jobcarbon_ledger::allocation_query::{AllocationQuery, allocate};
    let bad_request = |e: jobcarbon_ledger::allocation_query::ParamError| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": e.message, "parameter": e.parameter })),
        )
            .into_response()
    };
    if let Some(history) = &api.history {
        let now = jobcarbon_ledger::durable::wall_clock_now();
        let query = match AllocationQuery::parse(&params, now) {
            Ok(q) => q,
            Err(e) => return bad_request(e),
        };
        return match history.allocate(&query).await {
            Ok(answer) => allocation_response(&query, &answer),
            Err(e) => prometheus_failed(&e),
        };
    }
    let Some(view) = snapshot(&api.view) else {
        return unavailable("lock poisoned");
    };
    let now = view
        .history
        .latest
        .or(view.state.last_booked)
        .unwrap_or_else(jobcarbon_ledger::durable::wall_clock_now);
    match AllocationQuery::parse(&params, now) {
        Ok(query) => allocation_response(&query, &allocate(&view.history, &query)),
        Err(e) => bad_request(e),
    }
}

fn allocation_response(
    query: &jobcarbon_ledger::allocation_query::AllocationQuery,
    answer: &jobcarbon_ledger::allocation_query::Allocation,
) -> Response {
    use jobcarbon_ledger::allocation_query::{OutputFormat, to_csv, to_json};
    match query.format {
        OutputFormat::Json => axum::Json(to_json(answer)).into_response(),
        OutputFormat::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::HeaderName::from_static("x-jobcarbon-source"),
                    answer.source.as_str(),
                ),
            ],
            to_csv(answer, &query.aggregate),
        )
            .into_response(),
    }
}

/// Prometheus could not answer: 503 when unreachable, 502 when it answered badly.
fn prometheus_failed(e: &jobcarbon_ledger::allocation_prom::SourceError) -> Response {
    use jobcarbon_ledger::allocation_prom::SourceError;
    let status = match e {
        SourceError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    tracing::warn!(error = %e, "/api/v1/allocation: Prometheus failed");
    (
        status,
        axum::Json(serde_json::json!({
            "error": e.to_string(),
            "source": "prometheus",
            "kind": e.kind(),
        })),
    )
        .into_response()
}

//! The watchers: kube-runtime reflectors for pods, nodes and SoftwareProducts, with backoff and
//! counted errors, and [`ClusterState::snapshot`] for the ledger.
//!
//! State always comes from the reflector stores. After a `410 Gone` or any desync the watcher
//! relists and the store is replaced atomically when the relist completes, so no deleted pod
//! survives and none is lost to a missed Delete event.

use crate::index::{AttributionConfig, IndexIssues};
use crate::product::{ProductSpec, ProductValidation, SoftwareProduct, validate_products};
use crate::trim::{trim_node, trim_pod};
use futures::{Stream, StreamExt};
use jobcarbon_core::ClusterSnapshot;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Which watched resource an error or relist belongs to (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchedResource {
    Pods,
    Nodes,
    SoftwareProducts,
}

impl WatchedResource {
    pub const fn as_str(self) -> &'static str {
        match self {
            WatchedResource::Pods => "pods",
            WatchedResource::Nodes => "nodes",
            WatchedResource::SoftwareProducts => "softwareproducts",
        }
    }
}

/// Kind of watch error (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchErrorKind {
    /// The list call failed (network, auth, or 404 when the CRD is not installed).
    InitialList,
    /// The watch call could not start.
    WatchStart,
    /// The API server expired our resourceVersion (410 Gone): the watcher relists.
    Gone,
    /// Another error status inside the watch stream.
    Api,
    /// The stream broke or carried an object that does not decode.
    Stream,
}

impl WatchErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            WatchErrorKind::InitialList => "initial_list",
            WatchErrorKind::WatchStart => "watch_start",
            WatchErrorKind::Gone => "gone",
            WatchErrorKind::Api => "api",
            WatchErrorKind::Stream => "stream",
        }
    }

    fn of(error: &watcher::Error) -> Self {
        match error {
            watcher::Error::InitialListFailed(_) | watcher::Error::NoResourceVersion => {
                WatchErrorKind::InitialList
            }
            watcher::Error::WatchStartFailed(_) => WatchErrorKind::WatchStart,
            watcher::Error::WatchError(status) if status.code == 410 => WatchErrorKind::Gone,
            watcher::Error::WatchError(_) => WatchErrorKind::Api,
            watcher::Error::WatchFailed(_) => WatchErrorKind::Stream,
        }
    }
}

/// Whether the SoftwareProduct CRD is served by the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrdPresence {
    /// Not known yet (first list pending), or product watching is off.
    #[default]
    Unknown,
    Installed,
    /// The API server answered 404: config-defined products are used alone.
    Absent,
}

/// Counters a metrics collector exports: errors by resource and kind, completed (re)lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchHealth {
    pub errors: BTreeMap<(WatchedResource, WatchErrorKind), u64>,
    /// Completed lists per resource: 1 after start, +1 for every relist.
    pub lists: BTreeMap<WatchedResource, u64>,
    pub last_error: Option<String>,
    pub crd: CrdPresence,
}

impl WatchHealth {
    pub fn errors_of(&self, resource: WatchedResource, kind: WatchErrorKind) -> u64 {
        self.errors.get(&(resource, kind)).copied().unwrap_or(0)
    }
    pub fn lists_of(&self, resource: WatchedResource) -> u64 {
        self.lists.get(&resource).copied().unwrap_or(0)
    }
}

/// What the watchers need to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(default)]
    pub attribution: AttributionConfig,
    /// Products from the ledger config (`products:`), same schema as the CRD spec. CRD objects
    /// of the same name take precedence.
    #[serde(default)]
    pub products: BTreeMap<String, ProductSpec>,
    /// Watch SoftwareProduct objects (off: config products only).
    #[serde(default = "yes")]
    pub watch_products: bool,
}

fn yes() -> bool {
    true
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            attribution: AttributionConfig::default(),
            products: BTreeMap::new(),
            watch_products: true,
        }
    }
}

/// The cluster as the reflectors see it. Cheap to clone; every clone reads the same stores.
#[derive(Clone)]
pub struct ClusterState {
    pods: Store<Pod>,
    nodes: Store<Node>,
    products: Store<SoftwareProduct>,
    config: Arc<WatchConfig>,
    health: Arc<Mutex<WatchHealth>>,
}

/// Everything one snapshot found, for callers that report issues as well as facts.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailedSnapshot {
    pub snapshot: ClusterSnapshot,
    pub issues: IndexIssues,
    pub products: ProductValidation,
}

impl ClusterState {
    /// Build the state and the future that drives the watchers. Spawn the future (it runs until
    /// dropped); the stores fill as lists complete.
    pub fn new(
        client: Client,
        config: WatchConfig,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let health = Arc::new(Mutex::new(WatchHealth::default()));
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (nodes, node_writer) = reflector::store::<Node>();
        let (products, product_writer) = reflector::store::<SoftwareProduct>();
        let watch_products = config.watch_products;

        let pod_stream =
            watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .modify(trim_pod)
                .reflect(pod_writer);
        let node_stream =
            watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .modify(trim_node)
                .reflect(node_writer);
        let product_stream = watcher::watcher(
            Api::<SoftwareProduct>::all(client),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|p: &mut SoftwareProduct| p.metadata.managed_fields = None)
        .reflect(product_writer);

        let driver = {
            let health = health.clone();
            async move {
                let pods = drive(pod_stream, WatchedResource::Pods, health.clone());
                let nodes = drive(node_stream, WatchedResource::Nodes, health.clone());
                if watch_products {
                    let products = drive(product_stream, WatchedResource::SoftwareProducts, health);
                    futures::join!(pods, nodes, products);
                } else {
                    futures::join!(pods, nodes);
                }
            }
        };
        let state = Self {
            pods,
            nodes,
            products,
            config: Arc::new(config),
            health,
        };
        (state, driver)
    }

    /// Wait until pods and nodes have been listed once (products may be absent).
    pub async fn wait_until_ready(&self) {
        // Errors here mean the writer was dropped, i.e. the driver stopped: nothing to wait for.
        let _ = self.pods.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
    }

    /// Error and relist counters, and whether the CRD is installed.
    pub fn health(&self) -> WatchHealth {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Config products merged with SoftwareProduct objects (objects win on a name clash),
    /// validated as one set.
    pub fn products(&self) -> ProductValidation {
        let objects = self.products.state();
        let mut specs: BTreeMap<&str, &ProductSpec> = self
            .config
            .products
            .iter()
            .map(|(name, spec)| (name.as_str(), spec))
            .collect();
        for object in &objects {
            if let Some(name) = object.metadata.name.as_deref() {
                specs.insert(name, &object.spec);
            }
        }
        validate_products(specs)
    }

    /// The cluster now, with what could not be taken at face value.
    pub fn detailed_snapshot(&self) -> DetailedSnapshot {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        let (mut snapshot, issues) = self
            .config
            .attribution
            .index(pods.iter().map(|p| &**p), nodes.iter().map(|n| &**n));
        let products = self.products();
        snapshot.products = products.defs();
        snapshot.invalid_products = products.invalid_pairs();
        DetailedSnapshot {
            snapshot,
            issues,
            products,
        }
    }

    /// The cluster now: what the ledger books each interval.
    pub fn snapshot(&self) -> ClusterSnapshot {
        self.detailed_snapshot().snapshot
    }
}

async fn drive<K, S>(stream: S, resource: WatchedResource, health: Arc<Mutex<WatchHealth>>)
where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let mut health = health.lock().unwrap_or_else(PoisonError::into_inner);
        match item {
            Ok(Event::InitDone) => {
                *health.lists.entry(resource).or_default() += 1;
                if resource == WatchedResource::SoftwareProducts {
                    health.crd = CrdPresence::Installed;
                }
            }
            Ok(_) => {}
            Err(error) => {
                let kind = WatchErrorKind::of(&error);
                *health.errors.entry((resource, kind)).or_default() += 1;
                let crd_absent = resource == WatchedResource::SoftwareProducts
                    && matches!(&error, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                if crd_absent {
                    if health.crd != CrdPresence::Absent {
                        tracing::warn!(
                            "SoftwareProduct CRD is not installed; using config-defined products only"
                        );
                    }
                    health.crd = CrdPresence::Absent;
                } else {
                    tracing::warn!(resource = resource.as_str(), kind = kind.as_str(), %error, "watch error");
                }
                health.last_error = Some(format!("{}: {error}", resource.as_str()));
            }
        }
    }
}

//! The watchers: kube-runtime reflectors for pods, nodes and SoftwareProducts, metadata-only
//! reflectors for the parents pods are lifted through (Jobs → CronJob, RayClusters → RayJob),
//! with backoff and counted errors, and [`ClusterState::snapshot`] for the ledger.
//!
//! State always comes from the reflector stores. After a `410 Gone` or any desync the watcher
//! relists and the store is replaced atomically when the relist completes, so no deleted pod
//! survives and none is lost to a missed Delete event.

use crate::index::{AttributionConfig, IndexIssues};
use crate::owner::ParentOwners;
use crate::product::{ProductSpec, ProductValidation, SoftwareProduct, validate_products};
use crate::slim::{RayCluster, SlimPod};
use crate::trim::{trim_node, trim_parent, trim_pod};
use futures::{Stream, StreamExt};
use jobcarbon_core::ClusterSnapshot;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How long [`ClusterState::wait_until_ready`] waits for the first Job list.
pub const JOBS_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Which watched resource an error or relist belongs to (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchedResource {
    /// `v1` Pods.
    Pods,
    /// `v1` Nodes.
    Nodes,
    /// `SoftwareProduct` objects.
    SoftwareProducts,
    /// Job metadata (for CronJob runs).
    Jobs,
    /// RayCluster metadata (for RayJob and RayService pods).
    RayClusters,
}

impl WatchedResource {
    /// The `resource` metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            WatchedResource::Pods => "pods",
            WatchedResource::Nodes => "nodes",
            WatchedResource::SoftwareProducts => "softwareproducts",
            WatchedResource::Jobs => "jobs",
            WatchedResource::RayClusters => "rayclusters",
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
    /// The `kind` metric label value.
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
    /// The API server serves the CRD.
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
    /// Whether KubeRay's RayCluster CRD is served (absent: Ray pods stay `RayCluster/<name>`).
    #[serde(default)]
    pub kuberay: CrdPresence,
}

impl WatchHealth {
    /// The presence flag of a resource served by a CRD.
    fn crd_of(&mut self, resource: WatchedResource) -> Option<&mut CrdPresence> {
        match resource {
            WatchedResource::SoftwareProducts => Some(&mut self.crd),
            WatchedResource::RayClusters => Some(&mut self.kuberay),
            _ => None,
        }
    }

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
    /// How pods and nodes are read into facts.
    #[serde(default)]
    pub attribution: AttributionConfig,
    /// Products from the ledger config (`products:`), same schema as the CRD spec. CRD objects
    /// of the same name take precedence.
    #[serde(default)]
    pub products: BTreeMap<String, ProductSpec>,
    /// Watch SoftwareProduct objects (off: config products only).
    #[serde(default = "yes")]
    pub watch_products: bool,
    /// Watch Jobs' metadata so a CronJob's pods book to the CronJob (off: `Job/<name>`).
    #[serde(default = "yes")]
    pub watch_jobs: bool,
    /// Watch RayClusters' metadata so Ray pods book to their RayJob or RayService.
    #[serde(default = "yes")]
    pub watch_ray_clusters: bool,
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
            watch_jobs: true,
            watch_ray_clusters: true,
        }
    }
}

/// The cluster as the reflectors see it. Cheap to clone; every clone reads the same stores.
#[derive(Clone)]
pub struct ClusterState {
    pods: Store<SlimPod>,
    nodes: Store<Node>,
    products: Store<SoftwareProduct>,
    jobs: Store<PartialObjectMeta<Job>>,
    ray_clusters: Store<PartialObjectMeta<RayCluster>>,
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
        let (pods, pod_writer) = reflector::store::<SlimPod>();
        let (nodes, node_writer) = reflector::store::<Node>();
        let (products, product_writer) = reflector::store::<SoftwareProduct>();
        let (jobs, job_writer) = reflector::store::<PartialObjectMeta<Job>>();
        let (ray_clusters, ray_writer) = reflector::store::<PartialObjectMeta<RayCluster>>();
        let enabled = (
            config.watch_products,
            config.watch_jobs,
            config.watch_ray_clusters,
        );

        let pod_stream = watcher::watcher(Api::<SlimPod>::all(client.clone()), defaults())
            .default_backoff()
            .modify(trim_pod)
            .reflect(pod_writer);
        let node_stream = watcher::watcher(Api::<Node>::all(client.clone()), defaults())
            .default_backoff()
            .modify(trim_node)
            .reflect(node_writer);
        let product_stream =
            watcher::watcher(Api::<SoftwareProduct>::all(client.clone()), defaults())
                .default_backoff()
                .modify(|p: &mut SoftwareProduct| p.metadata.managed_fields = None)
                .reflect(product_writer);
        // Metadata only: a Job's spec carries its whole pod template, and only the
        // controller reference is read.
        let job_stream = watcher::watcher(
            Api::<PartialObjectMeta<Job>>::all(client.clone()),
            defaults(),
        )
        .default_backoff()
        .modify(|j: &mut PartialObjectMeta<Job>| trim_parent(&mut j.metadata))
        .reflect(job_writer);
        let ray_stream = watcher::watcher(
            Api::<PartialObjectMeta<RayCluster>>::all(client),
            defaults(),
        )
        .default_backoff()
        .modify(|r: &mut PartialObjectMeta<RayCluster>| trim_parent(&mut r.metadata))
        .reflect(ray_writer);

        let driver = {
            let health = health.clone();
            async move {
                let (watch_products, watch_jobs, watch_ray) = enabled;
                let pods = drive(pod_stream, WatchedResource::Pods, health.clone());
                let nodes = drive(node_stream, WatchedResource::Nodes, health.clone());
                let products = optional(
                    watch_products,
                    product_stream,
                    WatchedResource::SoftwareProducts,
                    &health,
                );
                let jobs = optional(watch_jobs, job_stream, WatchedResource::Jobs, &health);
                let rays = optional(watch_ray, ray_stream, WatchedResource::RayClusters, &health);
                futures::join!(pods, nodes, products, jobs, rays);
            }
        };
        let state = Self {
            pods,
            nodes,
            products,
            jobs,
            ray_clusters,
            config: Arc::new(config),
            health,
        };
        (state, driver)
    }

    /// The Jobs and RayClusters known now, with their controllers.
    pub fn parents(&self) -> ParentOwners {
        let mut parents = ParentOwners::default();
        let jobs = self.jobs.state();
        parents.add("Job", jobs.iter().map(|j| &j.metadata));
        let clusters = self.ray_clusters.state();
        parents.add("RayCluster", clusters.iter().map(|r| &r.metadata));
        parents
    }

    /// Wait until pods and nodes have been listed once (products may be absent), and Jobs
    /// for up to `JOBS_READY_WAIT` (15 s): a CronJob pod first booked before its Job is known
    /// would stay under `Job/<name>`. A cluster that denies Job listing does not block.
    pub async fn wait_until_ready(&self) {
        // Errors here mean the writer was dropped, i.e. the driver stopped: nothing to wait for.
        let _ = self.pods.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        if self.config.watch_jobs {
            let _ = tokio::time::timeout(JOBS_READY_WAIT, self.jobs_listed_or_refused()).await;
        }
    }

    /// Done when the first Job list completed or failed (403 without RBAC, 404).
    async fn jobs_listed_or_refused(&self) {
        let listed = self.jobs.wait_until_ready();
        let mut listed = std::pin::pin!(listed);
        loop {
            tokio::select! {
                _ = &mut listed => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                    let refused = self
                        .health()
                        .errors_of(WatchedResource::Jobs, WatchErrorKind::InitialList);
                    if refused > 0 {
                        return;
                    }
                }
            }
        }
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

    /// The EPC each SoftwareProduct object's status publishes now (the floor of the next
    /// write: `crate::status::monotonic_epc`).
    pub fn published_epc(&self) -> BTreeMap<String, crate::product::EpcStatus> {
        self.products
            .state()
            .iter()
            .filter_map(|p| {
                let name = p.metadata.name.clone()?;
                Some((name, p.status.as_ref()?.epc.clone()?))
            })
            .collect()
    }

    /// The cluster now, with what could not be taken at face value.
    pub fn detailed_snapshot(&self) -> DetailedSnapshot {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        let parents = self.parents();
        let (mut snapshot, issues) = self.config.attribution.index_with_parents(
            pods.iter().map(|p| &**p),
            nodes.iter().map(|n| &**n),
            &parents,
        );
        let products = self.products();
        snapshot.products = products.defs();
        snapshot.invalid_products = products.invalid_pairs();
        DetailedSnapshot {
            snapshot,
            issues,
            products,
        }
    }

    /// Pods rebuilt from kube-state-metrics history ([`crate::ksm`]) that the watchers do not
    /// hold now, attributed like watched pods (labels, owners, the nodes and parents known
    /// now). `known` are the pods the caller already has.
    pub fn pods_from_history(
        &self,
        samples: &crate::ksm::KsmSamples,
        known: &std::collections::BTreeSet<jobcarbon_core::PodKey>,
    ) -> Vec<jobcarbon_core::PodFacts> {
        let attribution = &self.config.attribution;
        let nodes = self.nodes.state();
        let table = crate::index::NodeTable::new(nodes.iter().map(|n| &**n));
        let parents = self.parents();
        crate::ksm::pods_from_ksm(samples, &attribution.label_keys())
            .iter()
            .filter_map(|pod| attribution.resolve_pod(pod, &table, &parents))
            .map(|resolved| resolved.facts)
            .filter(|facts| !known.contains(&facts.key))
            .collect()
    }

    /// The cluster now: what the ledger books each interval.
    pub fn snapshot(&self) -> ClusterSnapshot {
        self.detailed_snapshot().snapshot
    }
}

fn defaults() -> watcher::Config {
    watcher::Config::default()
}

/// Drive `stream` when `enabled`; otherwise a future that is done at once.
async fn optional<K, S>(
    enabled: bool,
    stream: S,
    resource: WatchedResource,
    health: &Arc<Mutex<WatchHealth>>,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    if enabled {
        drive(stream, resource, health.clone()).await;
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
                if let Some(presence) = health.crd_of(resource) {
                    *presence = CrdPresence::Installed;
                }
            }
            Ok(_) => {}
            Err(error) => {
                let kind = WatchErrorKind::of(&error);
                *health.errors.entry((resource, kind)).or_default() += 1;
                let not_served = matches!(&error, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                if let Some(presence) = health.crd_of(resource).filter(|_| not_served) {
                    if *presence != CrdPresence::Absent {
                        tracing::warn!(
                            resource = resource.as_str(),
                            "CRD is not installed; {}",
                            absent_consequence(resource)
                        );
                    }
                    *presence = CrdPresence::Absent;
                } else {
                    tracing::warn!(resource = resource.as_str(), kind = kind.as_str(), %error, "watch error");
                }
                health.last_error = Some(format!("{}: {error}", resource.as_str()));
            }
        }
    }
}

fn absent_consequence(resource: WatchedResource) -> &'static str {
    match resource {
        WatchedResource::RayClusters => "Ray pods are booked to their RayCluster",
        _ => "using config-defined products only",
    }
}

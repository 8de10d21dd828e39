//! The ledger configuration file (DESIGN §11): its YAML schema, located parse errors and the
//! checks that serde cannot express (references, ranges). [`Config::settings`] resolves it into
//! the [`Settings`] the pure interval function uses.

use crate::settings::{
    IdlePolicy, IntensitySpec, PlatformDef, PlatformSplit, RegionDef, Settings, SystemDef,
};
use jobcarbon_core::intensity::Signal;
use jobcarbon_core::quantity::Q;
use jobcarbon_core::{Grams, GramsPerSecond};
use jobcarbon_core::{GramsPerKwh, ProductDef, Pue, Seconds};
use jobcarbon_kube::{
    AttributionConfig, InferenceRequests, LabelSchema, PlatformSelector, ProductSpec,
    ProductValidation, WatchConfig, WorkloadRule, default_workload_rules, validate_products,
};
use jobcarbon_telemetry::{RequestPreset, RequestQuery};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Built-in life-cycle intensities of generation sources (gCO2e/kWh, IPCC AR5 WG3 Annex III
/// medians), usable in `{mix: ...}` and overridable under `sources:`.
pub const DEFAULT_SOURCES: [(&str, f64); 10] = [
    ("coal", 820.0),
    ("gas", 490.0),
    ("biomass", 230.0),
    ("solar", 48.0),
    ("geothermal", 38.0),
    ("csp", 27.0),
    ("hydro", 24.0),
    ("nuclear", 12.0),
    ("wind-offshore", 12.0),
    ("wind", 11.0),
];

/// World-average grid intensity (IEA 2019, ~475 gCO2e/kWh), used by a live region whose query
/// has never answered and which declares no `fallback`.
pub const LIVE_INTENSITY_FALLBACK: GramsPerKwh = GramsPerKwh(475.0);

/// The `provider` of an [`IntensitySpec::Provider`] (also the `source` label of self-metrics).
pub const PROVIDER_ELECTRICITY_MAPS: &str = "electricity-maps";
pub const PROVIDER_WATTTIME: &str = "watttime";
/// Providers are polled no faster than this, whatever `pollInterval` says.
pub const MIN_POLL_INTERVAL: Seconds = Seconds(10.0);

fn default_interval() -> Q<Seconds> {
    Q(Seconds(30.0))
}
fn default_region_label() -> String {
    "topology.kubernetes.io/region".to_owned()
}
fn default_region_name() -> String {
    "default".to_owned()
}
fn default_regions() -> BTreeMap<String, RegionConfig> {
    BTreeMap::from([(
        "default".to_owned(),
        RegionConfig {
            pue: 1.1,
            intensity: IntensityConfig::Static(Q(GramsPerKwh(400.0))),
        },
    )])
}

/// The whole file. Unknown keys are errors: a typo must not silently change the accounting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default = "default_interval")]
    /// Booking interval (`30s`, `1m`).
    pub interval: Q<Seconds>,
    #[serde(default)]
    /// Where Kepler, DCGM and the other series are read from.
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default)]
    /// Energy sources and their options.
    pub energy: EnergyConfig,
    /// Extra or overriding generation sources for `{mix: ...}` intensities (gCO2e/kWh).
    #[serde(default)]
    pub sources: BTreeMap<String, f64>,
    #[serde(default = "default_regions")]
    /// Regions by name: PUE, grid intensity and node selector.
    pub regions: BTreeMap<String, RegionConfig>,
    #[serde(default = "default_region_label")]
    /// Node label whose value names a node's region.
    pub node_region_label: String,
    #[serde(default = "default_region_name")]
    /// Region of nodes without that label.
    pub default_region: String,
    /// Embodied hardware by node labels. Absent: one catch-all from the Cloud Carbon Footprint
    /// coefficients (see `default_systems`); `[]` books no embodied carbon.
    #[serde(default = "default_systems")]
    pub systems: Vec<SystemConfig>,
    #[serde(default)]
    /// The platform's overhead and embodied cost.
    pub platform: PlatformConfig,
    /// Products for clusters without the CRD: the `SoftwareProduct` spec schema.
    #[serde(default)]
    pub products: BTreeMap<String, ProductSpec>,
    /// Pod label keys (`jobcarbon.io/phase`, `jobcarbon.io/product` by default).
    #[serde(default)]
    pub labels: LabelSchema,
    /// How a pod is resolved to the workload the user submitted.
    #[serde(default)]
    pub workloads: WorkloadsConfig,
    #[serde(default)]
    /// Checkpoint file and grace period.
    pub state: StateConfig,
    #[serde(default)]
    /// Inference request counters and the per-request window.
    pub inference: InferenceConfig,
    #[serde(default)]
    /// `/metrics` and API listener options.
    pub exporter: ExporterConfig,
    #[serde(default)]
    /// Estimated energy for nodes without meters.
    pub estimation: EstimationConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusConfig {
    pub url: String,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA bundle that signed Prometheus' certificate (OpenShift's service CA, a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mTLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra headers (a Mimir/Cortex tenant: `X-Scope-OrgID`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra headers whose values are secrets, from files.
    #[serde(default)]
    pub header_files: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: Q<Seconds>,
    /// Labels of an undeduplicated HA pair, dropped from every series' identity.
    #[serde(default = "jobcarbon_telemetry::prom::default_replica_labels")]
    pub replica_labels: Vec<String>,
}
/// `prometheus.basicAuth`: the password from a file only (never in the ConfigMap).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthConfig {
    pub username: String,
    pub password_file: PathBuf,
}

fn default_prometheus_timeout() -> Q<Seconds> {
    Q(Seconds(10.0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeplerMode {
    #[default]
    Auto,
    Legacy,
    V2,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GpuMode {
    #[default]
    Dcgm,
    NodeAgent,
    Kepler,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnergyConfig {
    #[serde(default)]
    pub kepler: KeplerMode,
    #[serde(default)]
    pub gpu: GpuMode,
    #[serde(default)]
    pub node_idle: IdlePolicy,
    /// Kepler ≥ 0.10 RAPL zones to count (never summed blindly: `package` contains `core`).
    #[serde(default = "default_zones")]
    pub kepler_zones: Vec<String>,
    /// A counter series unseen for longer is forgotten; when it returns it is new again.
    #[serde(default = "default_counter_retention")]
    pub counter_retention: Q<Seconds>,
    #[serde(default)]
    pub dcgm: DcgmSection,
    /// Where CPU and DRAM energy come from: `kepler`, `estimated` (CCF model from cAdvisor),
    /// or `auto` (Kepler where a node reports it, estimated elsewhere, per node).
    #[serde(default)]
    pub cpu: CpuMode,
}

/// `energy.cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CpuMode {
    Kepler,
    Estimated,
    #[default]
    Auto,
}

/// `estimation:`: the coefficients of the estimated source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EstimationConfig {
    /// First match wins, before the built-in instance-family table and CCF's average.
    #[serde(default)]
    pub cpu: Vec<CpuCoefficientConfig>,
    #[serde(default = "default_memory_watts_per_gb")]
    pub memory_watts_per_gb: f64,
}
fn default_memory_watts_per_gb() -> f64 {
    jobcarbon_core::estimation::MEMORY_WATTS_PER_GB
}
impl Default for EstimationConfig {
    fn default() -> Self {
        Self {
            cpu: Vec::new(),
            memory_watts_per_gb: default_memory_watts_per_gb(),
        }
    }
}

/// One `estimation.cpu` entry: node labels to match, and a CCF micro-architecture name or
/// explicit watts per vCPU.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuCoefficientConfig {
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
    #[serde(default)]
    pub microarchitecture: Option<String>,
    #[serde(default)]
    pub min_watts: Option<f64>,
    #[serde(default)]
    pub max_watts: Option<f64>,
}
fn default_counter_retention() -> Q<Seconds> {
    Q(Seconds::from_hours(24.0))
}

/// `energy.dcgm`: how dcgm-exporter is deployed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DcgmSection {
    /// The exporter's container names (upstream chart `exporter`, GPU operator
    /// `nvidia-dcgm-exporter`): lines whose only pod labels name one are not a workload's.
    #[serde(default = "default_exporter_containers")]
    pub exporter_containers: Vec<String>,
    /// MIG compute slices per GPU model (substring of `modelName`), beside the built-in A30: 4.
    #[serde(default)]
    pub mig_slices: BTreeMap<String, u32>,
    /// Compute slices of a MIG GPU whose model is not listed (A100, H100, H200: 7).
    #[serde(default = "default_mig_slices")]
    pub default_mig_slices: u32,
}
fn default_exporter_containers() -> Vec<String> {
    jobcarbon_telemetry::DcgmConfig::default().exporter_containers
}
fn default_mig_slices() -> u32 {
    7
}
impl Default for DcgmSection {
    fn default() -> Self {
        Self {
            exporter_containers: default_exporter_containers(),
            mig_slices: BTreeMap::new(),
            default_mig_slices: default_mig_slices(),
        }
    }
}
fn default_zones() -> Vec<String> {
    vec!["package".to_owned(), "dram".to_owned()]
}
impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            kepler: KeplerMode::Auto,
            gpu: GpuMode::Dcgm,
            node_idle: IdlePolicy::ByEnergy,
            kepler_zones: default_zones(),
            counter_retention: default_counter_retention(),
            dcgm: DcgmSection::default(),
            cpu: CpuMode::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub pue: f64,
    pub intensity: IntensityConfig,
}

/// `400`, `{mix: {coal: 0.8, solar: 0.2}}`, `{promql: '...', fallback: 400}`,
/// `{electricityMaps: {zone, tokenFile}}` or `{wattTime: {region, usernameFile, passwordFile}}`.
#[derive(Debug, Clone)]
pub enum IntensityConfig {
    Static(Q<GramsPerKwh>),
    Mix(MixConfig),
    Live(LiveConfig),
    ElectricityMaps {
        provider: ElectricityMapsSection,
        fallback: Option<Q<GramsPerKwh>>,
    },
    WattTime {
        provider: WattTimeSection,
        fallback: Option<Q<GramsPerKwh>>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixConfig {
    pub mix: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    pub promql: String,
    #[serde(default)]
    pub fallback: Option<Q<GramsPerKwh>>,
    /// What the query returns: `average` (default) or `marginal`.
    #[serde(default)]
    pub signal: Signal,
}

fn five_minutes() -> Q<Seconds> {
    Q(Seconds::from_minutes(5.0))
}

/// `electricityMaps:` — average (life-cycle) intensity of a zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ElectricityMapsSection {
    pub zone: String,
    /// The API token, from a file only (a mounted Secret).
    pub token_file: PathBuf,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "five_minutes")]
    pub poll_interval: Q<Seconds>,
}

/// `wattTime:` — marginal emissions (`co2_moer`) of a grid region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WattTimeSection {
    pub region: String,
    pub username_file: PathBuf,
    pub password_file: PathBuf,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "five_minutes")]
    pub poll_interval: Q<Seconds>,
}

/// Every key an intensity map may have; which combinations make sense is checked after.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IntensityMap {
    #[serde(default)]
    mix: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    promql: Option<String>,
    #[serde(default)]
    signal: Option<Signal>,
    #[serde(default)]
    fallback: Option<Q<GramsPerKwh>>,
    #[serde(default)]
    electricity_maps: Option<ElectricityMapsSection>,
    #[serde(default)]
    watt_time: Option<WattTimeSection>,
}

impl IntensityMap {
    fn resolve(self) -> Result<IntensityConfig, String> {
        let forms = [
            self.mix.is_some(),
            self.promql.is_some(),
            self.electricity_maps.is_some(),
            self.watt_time.is_some(),
        ];
        if forms.iter().filter(|f| **f).count() != 1 {
            return Err("give exactly one of mix, promql, electricityMaps, wattTime".into());
        }
        if self.signal.is_some() && self.promql.is_none() {
            return Err("`signal` applies to promql only (providers know their own)".into());
        }
        let fallback = self.fallback;
        if let Some(mix) = self.mix {
            if fallback.is_some() {
                return Err("`fallback` applies to live intensities, not to a mix".into());
            }
            return Ok(IntensityConfig::Mix(MixConfig { mix }));
        }
        if let Some(promql) = self.promql {
            return Ok(IntensityConfig::Live(LiveConfig {
                promql,
                fallback,
                signal: self.signal.unwrap_or_default(),
            }));
        }
        if let Some(provider) = self.electricity_maps {
            return Ok(IntensityConfig::ElectricityMaps { provider, fallback });
        }
        match self.watt_time {
            Some(provider) => Ok(IntensityConfig::WattTime { provider, fallback }),
            None => Err("no intensity given".into()),
        }
    }
}

impl<'de> Deserialize<'de> for IntensityConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IntensityConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an intensity: a number in gCO2e/kWh, {mix: {source: fraction, ...}}, {promql: '...', fallback: N}, {electricityMaps: {zone, tokenFile}} or {wattTime: {region, usernameFile, passwordFile}}")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Q::deserialize(v.into_deserializer()).map(IntensityConfig::Static)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Q::deserialize(v.into_deserializer()).map(IntensityConfig::Static)
            }
            // Deserialised in place (not untagged), so an unknown or misplaced key is
            // reported at its own path, line and column.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IntensityMap::deserialize(de::value::MapAccessDeserializer::new(map))?
                    .resolve()
                    .map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemConfig {
    /// Node labels that must all match; `{}` matches every node (a catch-all default).
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    pub embodied: Q<Grams>,
    /// Added per GPU the node reports (`nvidia.com/gpu` capacity).
    #[serde(default)]
    pub per_gpu: Option<Q<Grams>>,
    pub lifetime: Q<Seconds>,
}

/// Cloud Carbon Footprint's embodied coefficients (from the Dell PowerEdge R740 life-cycle
/// assessment): a minimal rack server is 1,000 kgCO2e, each GPU adds 150 kgCO2e, over a
/// 4-year server lifespan. Documented with the other sources in docs/configuration.md.
pub fn default_systems() -> Vec<SystemConfig> {
    vec![SystemConfig {
        matches: BTreeMap::new(),
        embodied: Q(Grams(1_000_000.0)),
        per_gpu: Some(Q(Grams(150_000.0))),
        lifetime: Q(Seconds::from_years(4.0)),
    }]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformConfig {
    #[serde(default = "default_platform_namespaces")]
    pub namespaces: Vec<String>,
    /// Pods with all these labels are platform pods too.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Declared management overhead outside the cluster (e.g. `50g/min`), on top of platform pods.
    #[serde(default)]
    pub overhead: Option<Q<GramsPerSecond>>,
    #[serde(default = "zero_grams")]
    pub epc: Q<Grams>,
    #[serde(default = "six_years")]
    pub lifetime: Q<Seconds>,
    #[serde(default)]
    pub split: PlatformSplit,
    /// The `type: platform` product (SoftwareProduct or `products:` entry) that built the
    /// platform: its EPC is amortised over `lifetime` instead of `epc`.
    #[serde(default)]
    pub product: Option<String>,
}
fn default_platform_namespaces() -> Vec<String> {
    vec!["kube-system".to_owned(), "monitoring".to_owned()]
}
fn zero_grams() -> Q<Grams> {
    Q(Grams::ZERO)
}
fn six_years() -> Q<Seconds> {
    Q(Seconds::from_years(6.0))
}
impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            namespaces: default_platform_namespaces(),
            match_labels: BTreeMap::new(),
            overhead: None,
            epc: zero_grams(),
            lifetime: six_years(),
            split: PlatformSplit::Equal,
            product: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Sliding window of the per-request gauge.
    #[serde(default = "one_hour")]
    pub window: Q<Seconds>,
}
fn one_hour() -> Q<Seconds> {
    Q(Seconds::from_hours(1.0))
}
impl Default for InferenceConfig {
    fn default() -> Self {
        Self { window: one_hour() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExporterConfig {
    /// How long a finished pod keeps its own series before it is rolled up.
    #[serde(default = "ten_minutes")]
    pub grace_period: Q<Seconds>,
    /// At most this many pods get their own series; the rest are rolled up at once.
    #[serde(default = "default_max_pod_series")]
    pub max_pod_series: usize,
    /// One workload series per pod instead of one per workload (per-pod detail is always in
    /// the JSON API). Off by default: 100k single-pod Jobs would be ~1M series.
    #[serde(default)]
    pub pod_series: bool,
    /// `exporter.auth`: who may read the surface (off by default).
    #[serde(default)]
    pub auth: AuthConfig,
    /// `exporter.tls`: serve HTTPS from a certificate/key pair (a `kubernetes.io/tls` Secret).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// `exporter.auth`: with `enabled`, every path but `/healthz` and `/readyz` needs a bearer
/// token the API server accepts (TokenReview) and RBAC lets `get` the path
/// (SubjectAccessReview on `nonResourceURLs`), as kube-rbac-proxy checks it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthConfig {
    #[serde(default)]
    pub enabled: bool,
}

/// `exporter.tls`: PEM files, the chain's leaf first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}
fn ten_minutes() -> Q<Seconds> {
    Q(Seconds::from_minutes(10.0))
}
fn default_max_pod_series() -> usize {
    10_000
}
impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            grace_period: ten_minutes(),
            max_pod_series: default_max_pod_series(),
            pod_series: false,
            auth: AuthConfig::default(),
            tls: None,
        }
    }
}

/// `workloads:`: the label rules (replacing the built-in list when given) and the
/// metadata-only watches that lift a Job to its CronJob and a RayCluster to its RayJob.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadsConfig {
    #[serde(default = "default_workload_rules")]
    pub rules: Vec<WorkloadRule>,
    #[serde(default = "yes")]
    pub watch_jobs: bool,
    #[serde(default = "yes")]
    pub watch_ray_clusters: bool,
}

fn yes() -> bool {
    true
}

impl Default for WorkloadsConfig {
    fn default() -> Self {
        Self {
            rules: default_workload_rules(),
            watch_jobs: true,
            watch_ray_clusters: true,
        }
    }
}

impl WorkloadsConfig {
    /// The first invalid rule, as `(path, reason)`.
    fn problem(&self) -> Option<(String, String)> {
        self.rules.iter().enumerate().find_map(|(i, rule)| {
            rule.problem()
                .map(|reason| (format!("workloads.rules[{i}]"), reason))
        })
    }
}

/// A config problem, located in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}:{column}: at `{path}`: {reason}")]
    Syntax {
        file: String,
        path: String,
        line: u64,
        column: u64,
        reason: String,
    },
    #[error("{file}: at `{path}`: {reason}")]
    Invalid {
        file: String,
        path: String,
        reason: String,
    },
}

impl Config {
    fn validate_estimation(&self) -> Result<(), (String, String)> {
        let e = &self.estimation;
        if !e.memory_watts_per_gb.is_finite() || e.memory_watts_per_gb < 0.0 {
            return Err((
                "estimation.memoryWattsPerGb".into(),
                "must be a non-negative number of W/GB".into(),
            ));
        }
        for (i, c) in e.cpu.iter().enumerate() {
            let path = format!("estimation.cpu[{i}]");
            match (&c.microarchitecture, c.min_watts, c.max_watts) {
                (Some(name), None, None) => {
                    if jobcarbon_core::estimation::microarchitecture(name).is_none() {
                        let known: Vec<&str> = jobcarbon_core::estimation::CCF_MICROARCHITECTURES
                            .iter()
                            .map(|(n, _, _)| *n)
                            .collect();
                        return Err((
                            format!("{path}.microarchitecture"),
                            format!(
                                "unknown micro-architecture {name:?}; known: {}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                (None, Some(min), Some(max))
                    if min.is_finite() && max.is_finite() && 0.0 <= min && min <= max => {}
                (None, Some(_), Some(_)) => {
                    return Err((
                        path,
                        "minWatts and maxWatts must be numbers with 0 ≤ minWatts ≤ maxWatts".into(),
                    ));
                }
                _ => {
                    return Err((
                        path,
                        "give either microarchitecture or both minWatts and maxWatts".into(),
                    ));
                }
            }
        }
        if self.energy.cpu == CpuMode::Estimated && self.energy.gpu == GpuMode::Kepler {
            return Err((
                "energy.cpu".into(),
                "`estimated` does not read Kepler, but energy.gpu: kepler needs it: use `auto`"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl PrometheusConfig {
    /// Checks serde cannot express: one source of `Authorization`, TLS pairs, header names.
    fn validate(&self) -> Result<(), (String, String)> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err((
                "prometheus.url".into(),
                "must start with http:// or https://".into(),
            ));
        }
        if self.url.contains('@')
            && self
                .url
                .split("://")
                .nth(1)
                .is_some_and(|r| r.split('/').next().is_some_and(|a| a.contains('@')))
        {
            return Err((
                "prometheus.url".into(),
                "credentials in the URL end up in the ConfigMap and in logs: use basicAuth.passwordFile".into(),
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                "prometheus.certFile".into(),
                "certFile and keyFile go together (mTLS needs both)".into(),
            ));
        }
        if self.basic_auth.is_some() && self.bearer_token_file.is_some() {
            return Err((
                "prometheus.basicAuth".into(),
                "basicAuth and bearerTokenFile both set the Authorization header: choose one"
                    .into(),
            ));
        }
        for name in self.headers.keys().chain(self.header_files.keys()) {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                return Err((
                    format!("prometheus.headers.{name}"),
                    "not a valid HTTP header name".into(),
                ));
            }
            let auth_set = self.basic_auth.is_some() || self.bearer_token_file.is_some();
            if auth_set && name.eq_ignore_ascii_case("authorization") {
                return Err((
                    format!("prometheus.headers.{name}"),
                    "Authorization is already set by basicAuth or bearerTokenFile".into(),
                ));
            }
        }
        if let Some((name, _)) = self
            .headers
            .iter()
            .find(|(_, v)| v.chars().any(char::is_control))
        {
            return Err((
                format!("prometheus.headers.{name}"),
                "value holds control characters".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate YAML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        // The shared YAML reader: the path of the failing field, and serde-saphyr's error
        // with line and column.
        let config = jobcarbon_core::yaml::from_str::<Config>(text)
            .map_err(|e| syntax_error(file, e.path.unwrap_or_else(|| ".".to_owned()), *e.error))?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |path: String, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            path,
            reason,
        };
        if self.interval.0.value() <= 0.0 {
            return Err(invalid("interval".into(), "must be positive".into()));
        }
        if let Some(p) = &self.prometheus {
            p.validate()
                .map_err(|(path, reason)| invalid(path, reason))?;
        }
        self.validate_estimation()
            .map_err(|(path, reason)| invalid(path, reason))?;
        if !self.regions.contains_key(&self.default_region) {
            return Err(invalid(
                "defaultRegion".into(),
                format!(
                    "region {:?} is not defined under `regions`",
                    self.default_region
                ),
            ));
        }
        self.validate_regions(&invalid)?;
        for (i, system) in self.systems.iter().enumerate() {
            if system.lifetime.0.value() <= 0.0 {
                return Err(invalid(
                    format!("systems[{i}].lifetime"),
                    "must be positive".into(),
                ));
            }
        }
        if self.platform.lifetime.0.value() <= 0.0 {
            return Err(invalid(
                "platform.lifetime".into(),
                "must be positive".into(),
            ));
        }
        if let Some((path, reason)) = self.platform_product_problem() {
            return Err(invalid(path, reason));
        }
        // Products: the CRD spec schema, validated as one set by the kube crate (units,
        // references, weights, cycles), so the config and the CRD accept the same things.
        let validation = self.product_validation();
        if let Some(bad) = validation.invalid.first() {
            return Err(invalid(
                format!("products.{}", bad.name),
                bad.error.to_string(),
            ));
        }
        if let Some((path, reason)) = self.workloads.problem() {
            return Err(invalid(path, reason));
        }
        if self.inference.window.0.value() <= 0.0 {
            return Err(invalid(
                "inference.window".into(),
                "must be positive".into(),
            ));
        }
        Ok(())
    }

    /// `sources`, and each region's PUE, mix and live provider.
    fn validate_regions(
        &self,
        invalid: &impl Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let sources = self.source_table();
        for (name, value) in &self.sources {
            if !value.is_finite() || *value < 0.0 {
                return Err(invalid(
                    format!("sources.{name}"),
                    "must be a non-negative number of gCO2e/kWh".into(),
                ));
            }
        }
        for (name, region) in &self.regions {
            if !region.pue.is_finite() || region.pue < 1.0 {
                return Err(invalid(
                    format!("regions.{name}.pue"),
                    format!(
                        "PUE {} is below 1 (facility energy ≥ IT energy)",
                        region.pue
                    ),
                ));
            }
            if let IntensityConfig::Mix(mix) = &region.intensity {
                let mut total = 0.0;
                for (source, fraction) in &mix.mix {
                    if !sources.contains_key(source) {
                        return Err(invalid(
                            format!("regions.{name}.intensity.mix.{source}"),
                            format!(
                                "unknown source {source:?}; known: {}",
                                sources.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    if !(0.0..=1.0).contains(fraction) {
                        return Err(invalid(
                            format!("regions.{name}.intensity.mix.{source}"),
                            format!("fraction {fraction} is outside [0, 1]"),
                        ));
                    }
                    total += fraction;
                }
                if (total - 1.0).abs() > 1e-6 {
                    return Err(invalid(
                        format!("regions.{name}.intensity.mix"),
                        format!("fractions sum to {total}, not 1"),
                    ));
                }
            }
        }
        for (name, region) in &self.regions {
            validate_provider(&region.intensity).map_err(|(key, reason)| {
                invalid(format!("regions.{name}.intensity.{key}"), reason)
            })?;
        }
        Ok(())
    }

    fn source_table(&self) -> BTreeMap<String, f64> {
        let mut table: BTreeMap<String, f64> = DEFAULT_SOURCES
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        table.extend(self.sources.iter().map(|(k, v)| (k.clone(), *v)));
        table
    }

    /// The resolved settings of the pure accounting.
    pub fn settings(&self) -> Settings {
        let sources = self.source_table();
        let regions = self
            .regions
            .iter()
            .map(|(name, r)| {
                let intensity = match &r.intensity {
                    IntensityConfig::Static(q) => IntensitySpec::Static(q.0),
                    IntensityConfig::Mix(mix) => {
                        IntensitySpec::Static(jobcarbon_core::formulas::mix_intensity(
                            mix.mix.iter().map(|(source, fraction)| {
                                (
                                    *fraction,
                                    GramsPerKwh(sources.get(source).copied().unwrap_or(0.0)),
                                )
                            }),
                        ))
                    }
                    IntensityConfig::Live(live) => IntensitySpec::Live {
                        promql: live.promql.clone(),
                        fallback: live
                            .fallback
                            .map(|q| q.0)
                            .unwrap_or(LIVE_INTENSITY_FALLBACK),
                        signal: live.signal,
                    },
                    IntensityConfig::ElectricityMaps { fallback, .. } => IntensitySpec::Provider {
                        provider: PROVIDER_ELECTRICITY_MAPS.to_owned(),
                        signal: Signal::Average,
                        fallback: fallback.map(|q| q.0).unwrap_or(LIVE_INTENSITY_FALLBACK),
                    },
                    IntensityConfig::WattTime { fallback, .. } => IntensitySpec::Provider {
                        provider: PROVIDER_WATTTIME.to_owned(),
                        signal: Signal::Marginal,
                        fallback: fallback.map(|q| q.0).unwrap_or(LIVE_INTENSITY_FALLBACK),
                    },
                };
                (
                    name.clone(),
                    RegionDef {
                        pue: Pue(r.pue),
                        intensity,
                    },
                )
            })
            .collect();
        Settings {
            interval: self.interval.0,
            node_idle: self.energy.node_idle,
            regions,
            default_region: self.default_region.clone(),
            systems: self
                .systems
                .iter()
                .map(|s| SystemDef {
                    matches: s.matches.clone(),
                    embodied: s.embodied.0,
                    per_gpu: s.per_gpu.map(|q| q.0).unwrap_or(Grams::ZERO),
                    lifetime: s.lifetime.0,
                })
                .collect(),
            platform: PlatformDef {
                namespaces: self.platform.namespaces.clone(),
                overhead: self
                    .platform
                    .overhead
                    .map(|q| q.0)
                    .unwrap_or(GramsPerSecond::ZERO),
                epc: self.platform.epc.0,
                lifetime: self.platform.lifetime.0,
                split: self.platform.split,
                product: self.platform.product.clone(),
            },
            inference_window: self.inference.window.0,
            grace_period: self.exporter.grace_period.0,
            max_pod_series: self.exporter.max_pod_series,
            pod_series: self.exporter.pod_series,
            counter_retention: self.energy.counter_retention.0,
            estimation: self.estimation_settings(),
        }
    }

    fn estimation_settings(&self) -> crate::settings::EstimationSettings {
        use jobcarbon_core::estimation::{CpuCoefficients, microarchitecture};
        let cpu = self
            .estimation
            .cpu
            .iter()
            .filter_map(|c| {
                let coefficients = match (&c.microarchitecture, c.min_watts, c.max_watts) {
                    (Some(name), _, _) => microarchitecture(name)?,
                    (None, Some(min), Some(max)) => CpuCoefficients {
                        min: jobcarbon_core::Watts(min),
                        max: jobcarbon_core::Watts(max),
                    },
                    _ => return None,
                };
                Some((c.matches.clone(), coefficients))
            })
            .collect();
        crate::settings::EstimationSettings {
            cpu,
            memory_watts_per_gb: self.estimation.memory_watts_per_gb,
        }
    }

    /// The `products:` map, validated as a set.
    pub fn product_validation(&self) -> ProductValidation {
        validate_products(self.products.iter().map(|(n, s)| (n.as_str(), s)))
    }

    /// The valid `products:` as core product definitions.
    /// `platform.product`: not beside `epc`, and a `type: platform` product when `products:`
    /// defines it (a SoftwareProduct of that name is checked when it is booked).
    fn platform_product_problem(&self) -> Option<(String, String)> {
        let name = self.platform.product.as_ref()?;
        if self.platform.epc.0 > Grams::ZERO {
            return Some((
                "platform.epc".into(),
                format!(
                    "give either epc or product: the EPC of product {name:?} is the platform's"
                ),
            ));
        }
        let def = self.product_defs().into_iter().find(|d| &d.name == name)?;
        (def.kind != jobcarbon_core::ProductType::Platform).then(|| {
            (
                "platform.product".into(),
                format!(
                    "{name:?} is a {}; the platform names the `type: platform` product that built it",
                    def.kind
                ),
            )
        })
    }

    /// The products the config declares (their lineage, declared carbon, re-training policy).
    pub fn product_defs(&self) -> Vec<ProductDef> {
        self.product_validation().defs()
    }

    /// Request queries of the products that declare `inference.requests`.
    pub fn request_queries(&self) -> BTreeMap<String, RequestQuery> {
        self.product_validation()
            .valid
            .iter()
            .filter_map(|p| Some((p.def.name.clone(), request_query(p.inference.as_ref()?)?)))
            .collect()
    }

    /// What the Kubernetes watchers need: label keys, the platform selector, region label
    /// and the config products.
    pub fn watch_config(&self) -> WatchConfig {
        WatchConfig {
            attribution: AttributionConfig {
                labels: self.labels.clone(),
                platform: PlatformSelector {
                    namespaces: self.platform.namespaces.iter().cloned().collect(),
                    match_labels: self.platform.match_labels.clone(),
                },
                node_region_label: self.node_region_label.clone(),
                workload_rules: self.workloads.rules.clone(),
            },
            products: self.products.clone(),
            watch_products: true,
            watch_jobs: self.workloads.watch_jobs,
            watch_ray_clusters: self.workloads.watch_ray_clusters,
        }
    }
}

/// Checks of a provider section: names present, URL usable, poll interval sane.
fn validate_provider(intensity: &IntensityConfig) -> Result<(), (String, String)> {
    let (section, id_key, id, url, poll) = match intensity {
        IntensityConfig::ElectricityMaps { provider: p, .. } => (
            "electricityMaps",
            "zone",
            &p.zone,
            &p.url,
            p.poll_interval.0,
        ),
        IntensityConfig::WattTime { provider: p, .. } => {
            ("wattTime", "region", &p.region, &p.url, p.poll_interval.0)
        }
        _ => return Ok(()),
    };
    if id.trim().is_empty() {
        return Err((format!("{section}.{id_key}"), "must not be empty".into()));
    }
    if let Some(url) = url {
        let authority = url.split("://").nth(1).and_then(|r| r.split('/').next());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((
                format!("{section}.url"),
                "must start with http:// or https://".into(),
            ));
        }
        if authority.is_some_and(|a| a.contains('@')) {
            return Err((
                format!("{section}.url"),
                "credentials in the URL end up in the ConfigMap and in logs: use the credential files".into(),
            ));
        }
    }
    if poll.value() < MIN_POLL_INTERVAL.value() {
        return Err((
            format!("{section}.pollInterval"),
            format!(
                "at least {}s (providers rate-limit)",
                MIN_POLL_INTERVAL.value()
            ),
        ));
    }
    Ok(())
}

/// A kube-validated request counter as the telemetry crate's query.
pub fn request_query(requests: &InferenceRequests) -> Option<RequestQuery> {
    match requests {
        InferenceRequests::Preset(name) => {
            let preset = match name.as_str() {
                "vllm" => RequestPreset::Vllm,
                "triton" => RequestPreset::Triton,
                "tgi" => RequestPreset::Tgi,
                "kserve" => RequestPreset::Kserve,
                _ => return None,
            };
            Some(RequestQuery::Preset {
                preset,
                matchers: BTreeMap::new(),
            })
        }
        InferenceRequests::Promql(q) => Some(RequestQuery::Promql(q.clone())),
    }
}

fn syntax_error(file: &str, path: String, err: serde_saphyr::Error) -> ConfigError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    ConfigError::Syntax {
        file: file.to_owned(),
        path,
        line,
        column,
        reason: plain_reason(&err),
    }
}

/// serde-saphyr's Display repeats the location and a source snippet; keep the reason.
fn plain_reason(err: &serde_saphyr::Error) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop a leading "line N column M: " (the location is reported separately).
    match first.split_once(": ") {
        Some((location, rest))
            if location.starts_with("line ") && location.contains(" column ") =>
        {
            rest.to_owned()
        }
        _ => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/ledger.yaml");

    #[test]
    fn the_documented_example_parses() {
        let config = Config::parse(EXAMPLE, "examples/ledger.yaml").unwrap();
        let settings = config.settings();
        assert!(settings.regions.contains_key(&settings.default_region));
        assert!(!config.systems.is_empty());
    }

    #[test]
    fn an_empty_file_takes_the_defaults() {
        let config = Config::parse("{}", "x.yaml").unwrap();
        assert_eq!(config.interval.0, Seconds(30.0));
        assert_eq!(config.default_region, "default");
        assert_eq!(config.energy.node_idle, IdlePolicy::ByEnergy);
        // The CCF catch-all: 1 t + 150 kg per GPU over 4 years.
        let settings = config.settings();
        let node = jobcarbon_core::NodeFacts {
            name: "n".into(),
            region: None,
            instance_type: None,
            gpu_count: 8,
            gpu_model: None,
            labels: BTreeMap::new(),
            cpus: 0.0,
        };
        let system = settings.system_for(&node).unwrap();
        assert_eq!(system.embodied_of(&node), Grams(2_200_000.0));
        assert_eq!(system.lifetime, Seconds::from_years(4.0));
        let none = Config::parse("systems: []", "x.yaml").unwrap().settings();
        assert!(none.system_for(&node).is_none());
    }

    #[test]
    fn unknown_keys_fail_with_file_path_line_and_column() {
        let text = "interval: 30s\nenergy:\n  kepler: auto\n  nodeIdel: even\n";
        let err = Config::parse(text, "cfg.yaml").unwrap_err();
        let ConfigError::Syntax {
            path, line, reason, ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(path, "energy.nodeIdel");
        assert_eq!(*line, 4, "{err}");
        assert!(reason.contains("nodeIdel"), "{err}");
        assert!(err.to_string().starts_with("cfg.yaml:4:"), "{err}");
    }

    #[test]
    fn the_platform_product_is_a_platform_and_excludes_epc() {
        let ok = "platform:\n  product: iks\nproducts:\n  iks: {type: platform, lifetime: 6y, declared: {carbon: 1t}}\n";
        let config = Config::parse(ok, "cfg.yaml").unwrap();
        assert_eq!(config.settings().platform.product.as_deref(), Some("iks"));
        // A SoftwareProduct the config does not define is checked when booked.
        assert!(Config::parse("platform: {product: from-crd}\n", "cfg.yaml").is_ok());
        let model = ok.replace("type: platform", "type: model");
        let err = Config::parse(&model, "cfg.yaml").unwrap_err().to_string();
        assert!(
            err.contains("platform.product") && err.contains("model"),
            "{err}"
        );
        let both = "platform: {product: iks, epc: 5t}\n";
        let err = Config::parse(both, "cfg.yaml").unwrap_err().to_string();
        assert!(err.contains("platform.epc"), "{err}");
        let auth = "exporter:\n  auth: {enabled: true}\n  tls: {certFile: /c, keyFile: /k}\n";
        let config = Config::parse(auth, "cfg.yaml").unwrap();
        assert!(config.exporter.auth.enabled && config.exporter.tls.is_some());
    }

    #[test]
    fn bad_quantities_are_located() {
        let text = "platform:\n  epc: 5 furlongs\n";
        let err = Config::parse(text, "cfg.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("platform.epc"), "{msg}");
        assert!(msg.contains("furlongs"), "{msg}");
        assert!(msg.contains(":2:"), "{msg}");
    }

    #[test]
    fn semantic_errors_name_the_path() {
        let text = "regions:\n  eu: {pue: 0.9, intensity: 300}\ndefaultRegion: eu\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("regions.eu.pue"), "{msg}");

        let text = "products:\n  a: {type: model, lifetime: 1y, derivedFrom: [{product: b, weight: 0.5}]}\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("products.a"), "{msg}");
        assert!(msg.contains("derivedFrom[0]"), "{msg}");

        let text = "products:\n  a: {type: model, lifetime: 1y, derivedFrom: [{product: b, weight: 0.5}]}\n  b: {type: model, lifetime: 1y, derivedFrom: [{product: a, weight: 0.5}]}\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("cycle"), "{msg}");

        let text = "regions:\n  eu: {pue: 1.1, intensity: {mix: {coal: 0.5, sunshine: 0.5}}}\ndefaultRegion: eu\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("sunshine"), "{msg}");
    }

    #[test]
    fn workload_rules_parse_and_errors_are_located() {
        let config = Config::parse("{}", "c.yaml").unwrap();
        assert_eq!(config.workloads.rules, default_workload_rules());
        assert!(config.watch_config().watch_jobs);

        let text = "workloads:\n  rules:\n  - {label: example.com/pipeline, kind: Pipeline}\n  - label: ray.io/originated-from-cr-name\n    kind: RayJob\n    when: {label: ray.io/originated-from-crd, value: RayJob}\n  watchRayClusters: false\n";
        let config = Config::parse(text, "c.yaml").unwrap();
        let watch = config.watch_config();
        assert_eq!(watch.attribution.workload_rules.len(), 2);
        assert_eq!(watch.attribution.workload_rules[0].kind, "Pipeline");
        assert!(!watch.watch_ray_clusters);

        let text = "workloads:\n  rules:\n  - {label: a/b, kind: X, wen: {label: c, value: d}}\n";
        let err = Config::parse(text, "c.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("c.yaml:3:"), "{msg}");
        assert!(msg.contains("workloads.rules[0]"), "{msg}");
        assert!(msg.contains("wen"), "{msg}");

        let text =
            "workloads:\n  rules:\n  - {label: a/b, kind: X}\n  - {label: 'bad key/x/', kind: X}\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("at `workloads.rules[1]`"), "{msg}");
        assert!(msg.contains("not a label key"), "{msg}");
    }

    #[test]
    fn mixes_resolve_with_the_paper_sources() {
        let text = "regions:\n  dallas: {pue: 1.08, intensity: {mix: {coal: 0.8, solar: 0.2}}}\ndefaultRegion: dallas\n";
        let settings = Config::parse(text, "c.yaml").unwrap().settings();
        let IntensitySpec::Static(ci) = settings.regions["dallas"].intensity else {
            panic!("static expected")
        };
        assert!((ci.value() - (0.8 * 820.0 + 0.2 * 48.0)).abs() < 1e-9);
    }

    #[test]
    fn live_providers_parse_with_their_signal() {
        let text = "regions:\n  de: {pue: 1.2, intensity: {electricityMaps: {zone: DE, tokenFile: /s/em}, fallback: 380}}\n  ca:\n    pue: 1.1\n    intensity:\n      wattTime: {region: CAISO_NORTH, usernameFile: /s/u, passwordFile: /s/p, pollInterval: 10m}\n  p: {pue: 1.0, intensity: {promql: 'x', signal: marginal}}\ndefaultRegion: de\n";
        let config = Config::parse(text, "c.yaml").unwrap_or_else(|e| panic!("{e}"));
        let settings = config.settings();
        assert_eq!(
            settings.regions["de"].intensity,
            IntensitySpec::Provider {
                provider: PROVIDER_ELECTRICITY_MAPS.into(),
                signal: Signal::Average,
                fallback: GramsPerKwh(380.0),
            }
        );
        assert_eq!(settings.regions["ca"].intensity.signal(), Signal::Marginal);
        assert_eq!(settings.regions["p"].intensity.signal(), Signal::Marginal);
        let IntensityConfig::WattTime { provider, .. } = &config.regions["ca"].intensity else {
            panic!("wattTime expected")
        };
        assert_eq!(provider.poll_interval.0, Seconds(600.0));
        let providers = crate::sources::intensity_providers(&config)
            .unwrap_or_else(|(r, e)| panic!("{r}: {e}"));
        assert_eq!(providers.len(), 2);
        assert_eq!(providers["ca"].poll_interval(), Seconds(600.0));
    }

    #[test]
    fn provider_mistakes_are_located() {
        // A typo inside the provider: its own path, line and column.
        let text = "regions:\n  de:\n    pue: 1.2\n    intensity:\n      electricityMaps:\n        zone: DE\n        tokenFle: /s/em\ndefaultRegion: de\n";
        let err = Config::parse(text, "c.yaml").unwrap_err();
        let ConfigError::Syntax { path, line, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(
            path, "regions.de.intensity.electricityMaps.tokenFle",
            "{err}"
        );
        assert_eq!(*line, 7, "{err}");
        // Two forms at once, a signal on a provider, a short poll, a URL with credentials.
        for (yaml, want) in [
            ("{mix: {coal: 1}, promql: x}", "exactly one"),
            (
                "{electricityMaps: {zone: DE, tokenFile: /t}, signal: marginal}",
                "promql only",
            ),
            (
                "{wattTime: {region: R, usernameFile: /u, passwordFile: /p, pollInterval: 1s}}",
                "wattTime.pollInterval",
            ),
            (
                "{electricityMaps: {zone: DE, tokenFile: /t, url: 'https://a:b@h'}}",
                "electricityMaps.url",
            ),
            (
                "{electricityMaps: {zone: '', tokenFile: /t}}",
                "electricityMaps.zone",
            ),
        ] {
            let text =
                format!("regions:\n  de: {{pue: 1.2, intensity: {yaml}}}\ndefaultRegion: de\n");
            let msg = Config::parse(&text, "c.yaml").unwrap_err().to_string();
            assert!(msg.contains("regions.de.intensity"), "{yaml}: {msg}");
            assert!(msg.contains(want), "{yaml}: {msg}");
        }
    }
}

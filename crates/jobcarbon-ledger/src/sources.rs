//! The config → energy sources mapping: one source per physical quantity (DESIGN §5).
//!
//! | `energy.gpu` | CPU, DRAM, node idle | GPU |
//! |---|---|---|
//! | `dcgm` (default) | Kepler | dcgm-exporter (Kepler's GPU series are not read) |
//! | `node-agent` | Kepler | `jobcarbon node` (Kepler's GPU series are not read) |
//! | `kepler` | Kepler | Kepler ≥ 0.11.4 `kepler_{pod,node}_gpu_*` |
//! | `off` | Kepler | none |

use crate::config::{Config, CpuMode, GpuMode, IntensityConfig, KeplerMode, PrometheusConfig};
use jobcarbon_core::{Component, Seconds};
use jobcarbon_telemetry::dcgm::{DcgmConfig, DcgmSource};
use jobcarbon_telemetry::intensity::{
    ElectricityMaps, ElectricityMapsConfig, IntensityProvider, PolledProvider, ProviderError,
    WattTime, WattTimeConfig,
};
use jobcarbon_telemetry::kepler::{self, KeplerConfig, KeplerSource};
use jobcarbon_telemetry::prom::PromMetrics;
use jobcarbon_telemetry::prom::{Auth, PromClient, PromConfig, TlsFiles};
use jobcarbon_telemetry::{
    EnergySource, MetricQuery, NodeAgentSource, NodeAgentSourceConfig, SourceError,
};
use jobcarbon_telemetry::{EstimatedSource, EstimationCell};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// DCGM lines are looked up over at least this long, whatever the interval, so a scrape
/// interval longer than the booking interval still finds every GPU.
const MIN_DCGM_LOOKBACK: Seconds = Seconds(60.0);

/// The `prometheus:` section as the client's settings.
pub fn prom_config(p: &PrometheusConfig) -> PromConfig {
    let auth = match (&p.basic_auth, &p.bearer_token_file) {
        (Some(b), _) => Auth::Basic {
            username: b.username.clone(),
            password_file: b.password_file.clone(),
        },
        (None, Some(token)) => Auth::BearerTokenFile(token.clone()),
        (None, None) => Auth::None,
    };
    PromConfig {
        url: p.url.clone(),
        timeout: Duration::from_secs_f64(p.timeout.0.value()),
        replica_labels: p.replica_labels.clone(),
        tls: TlsFiles {
            ca_file: p.ca_file.clone(),
            cert_file: p.cert_file.clone(),
            key_file: p.key_file.clone(),
            insecure_skip_verify: p.insecure_skip_verify,
        },
        auth,
        headers: p.headers.clone(),
        header_files: p.header_files.clone(),
    }
}

/// The Kepler v2 zone → component mapping of `energy.keplerZones`.
fn zone_component(zone: &str) -> Component {
    match zone {
        "package" | "core" => Component::Cpu,
        "dram" => Component::Dram,
        _ => Component::Other,
    }
}

/// How to read Kepler, or `None` with `energy.kepler: off`.
pub fn kepler_config(config: &Config) -> Option<KeplerConfig> {
    let mode = match config.energy.kepler {
        KeplerMode::Off => return None,
        KeplerMode::Auto => kepler::KeplerMode::Auto,
        KeplerMode::Legacy => kepler::KeplerMode::Legacy,
        KeplerMode::V2 => kepler::KeplerMode::V2,
    };
    Some(KeplerConfig {
        mode,
        zones: config
            .energy
            .kepler_zones
            .iter()
            .map(|z| (z.clone(), zone_component(z)))
            .collect(),
        gpu: config.energy.gpu == GpuMode::Kepler,
        ..KeplerConfig::default()
    })
}

/// How to read dcgm-exporter.
pub fn dcgm_config(config: &Config) -> DcgmConfig {
    let dcgm = &config.energy.dcgm;
    let mut out = DcgmConfig {
        exporter_containers: dcgm.exporter_containers.clone(),
        lookback: config.interval.0.max(MIN_DCGM_LOOKBACK),
        mig_default_slices: dcgm.default_mig_slices,
        ..DcgmConfig::default()
    };
    // Listed models first: the user's word wins over the built-in table.
    let mut slices: Vec<(String, u32)> = dcgm
        .mig_slices
        .iter()
        .map(|(m, n)| (m.clone(), *n))
        .collect();
    slices.append(&mut out.mig_slices);
    out.mig_slices = slices;
    out
}

/// The energy sources the config asks for, and the estimated source's cell (refreshed by the
/// ledger from each snapshot, see [`crate::Ledger::with_estimation`]).
pub struct EnergySources {
    /// The sources, in reading order.
    pub sources: Vec<Box<dyn EnergySource>>,
    /// The estimated source's cell, when estimation is on.
    pub estimation: Option<Arc<EstimationCell>>,
}

/// The energy sources the config asks for, over one Prometheus client.
pub fn energy_sources(config: &Config, client: &PromClient) -> Result<EnergySources, SourceError> {
    let mut sources: Vec<Box<dyn EnergySource>> = Vec::new();
    let kepler_wanted =
        config.energy.cpu != CpuMode::Estimated || config.energy.gpu == GpuMode::Kepler;
    if let Some(kepler) = kepler_config(config).filter(|_| kepler_wanted) {
        sources.push(Box::new(KeplerSource::new(client.clone(), kepler)?));
    }
    let estimation = (config.energy.cpu != CpuMode::Kepler).then(|| {
        let cell = Arc::new(EstimationCell::new(config.estimation.memory_watts_per_gb));
        sources.push(Box::new(EstimatedSource::new(client.clone(), cell.clone())));
        cell
    });
    match config.energy.gpu {
        GpuMode::Dcgm => sources.push(Box::new(DcgmSource::new(
            client.clone(),
            dcgm_config(config),
        ))),
        // Read by the Kepler source (its GPU series are switched on above).
        GpuMode::Kepler | GpuMode::Off => {}
        GpuMode::NodeAgent => sources.push(Box::new(NodeAgentSource::new(
            client.clone(),
            NodeAgentSourceConfig::default(),
        ))),
    }
    Ok(EnergySources {
        sources,
        estimation,
    })
}

/// Everything the ledger reads from Prometheus: the energy sources, the metric queries
/// (request counters, intensities) and the client for the restore and the allocation history.
pub struct Readers {
    /// Energy sources.
    pub energy: EnergySources,
    /// Request counters and live intensities, when a Prometheus is configured.
    pub metrics: Option<Box<dyn MetricQuery>>,
    /// The Prometheus client (restore, allocation history).
    pub prom: Option<PromClient>,
}

/// Why the `prometheus:` section cannot be read from.
#[derive(Debug, thiserror::Error)]
pub enum ReadersError {
    #[error("prometheus.url {url}: {error}")]
    /// No client for the configured URL.
    Client {
        /// `prometheus.url`.
        url: String,
        /// Why the client could not be built.
        error: SourceError,
    },
    #[error("energy sources (energy.keplerZones): {0}")]
    /// An energy source could not be built.
    Energy(SourceError),
}

/// The readers of `prometheus:`; without it none (and no energy is measured, logged).
pub fn readers(config: &Config) -> Result<Readers, ReadersError> {
    let Some(p) = &config.prometheus else {
        tracing::warn!("no `prometheus:` in the config: no energy is measured");
        return Ok(Readers {
            energy: EnergySources {
                sources: Vec::new(),
                estimation: None,
            },
            metrics: None,
            prom: None,
        });
    };
    let client = PromClient::new(prom_config(p)).map_err(|error| ReadersError::Client {
        url: p.url.clone(),
        error,
    })?;
    Ok(Readers {
        energy: energy_sources(config, &client).map_err(ReadersError::Energy)?,
        metrics: Some(Box::new(PromMetrics::new(client.clone()))),
        prom: Some(client),
    })
}

/// Requests to an intensity provider give up after this long.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// One live intensity provider per region whose intensity names one, polled no faster than
/// its `pollInterval`. Fails on an unusable URL (a configuration error).
pub fn intensity_providers(
    config: &Config,
) -> Result<BTreeMap<String, PolledProvider>, (String, ProviderError)> {
    let mut out = BTreeMap::new();
    for (name, region) in &config.regions {
        let (provider, poll): (Box<dyn IntensityProvider>, Seconds) = match &region.intensity {
            IntensityConfig::ElectricityMaps { provider: p, .. } => {
                let em = ElectricityMaps::new(&ElectricityMapsConfig {
                    zone: p.zone.clone(),
                    token_file: p.token_file.clone(),
                    url: p
                        .url
                        .clone()
                        .unwrap_or_else(|| ElectricityMapsConfig::DEFAULT_URL.to_owned()),
                    timeout: PROVIDER_TIMEOUT,
                })
                .map_err(|e| (name.clone(), e))?;
                (Box::new(em), p.poll_interval.0)
            }
            IntensityConfig::WattTime { provider: p, .. } => {
                let wt = WattTime::new(&WattTimeConfig {
                    region: p.region.clone(),
                    username_file: p.username_file.clone(),
                    password_file: p.password_file.clone(),
                    url: p
                        .url
                        .clone()
                        .unwrap_or_else(|| WattTimeConfig::DEFAULT_URL.to_owned()),
                    timeout: PROVIDER_TIMEOUT,
                })
                .map_err(|e| (name.clone(), e))?;
                (Box::new(wt), p.poll_interval.0)
            }
            _ => continue,
        };
        out.insert(name.clone(), PolledProvider::new(provider, poll));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn kepler_gpu_series_only_when_kepler_is_the_gpu_source() {
        for (gpu, kepler_gpu, sources) in [
            ("dcgm", false, vec!["kepler", "estimated", "dcgm"]),
            (
                "node-agent",
                false,
                vec!["kepler", "estimated", "node-agent"],
            ),
            ("kepler", true, vec!["kepler", "estimated"]),
            ("off", false, vec!["kepler", "estimated"]),
        ] {
            let c = config(&format!(
                "prometheus: {{url: 'http://127.0.0.1:1'}}\nenergy: {{gpu: {gpu}}}\n"
            ));
            let k = kepler_config(&c).unwrap_or_else(|| panic!("kepler on for {gpu}"));
            assert_eq!(k.gpu, kepler_gpu, "energy.gpu: {gpu}");
            let Some(p) = &c.prometheus else {
                panic!("prometheus section")
            };
            let client = PromClient::new(prom_config(p)).unwrap_or_else(|e| panic!("{e}"));
            let names: Vec<String> = energy_sources(&c, &client)
                .unwrap_or_else(|e| panic!("{e}"))
                .sources
                .iter()
                .map(|s| s.name().to_owned())
                .collect();
            assert_eq!(names, sources, "energy.gpu: {gpu}");
        }
    }

    #[test]
    fn prometheus_gives_the_readers_and_nothing_without_it() {
        let with = readers(&config(
            "prometheus: {url: 'http://127.0.0.1:1'}\nenergy: {cpu: kepler, gpu: dcgm}\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = with.energy.sources.iter().map(|s| s.name()).collect();
        assert_eq!(names, vec!["kepler", "dcgm"]);
        assert!(with.energy.estimation.is_none(), "energy.cpu: kepler");
        assert!(with.metrics.is_some());
        assert!(with.prom.is_some());

        let estimated = readers(&config(
            "prometheus: {url: 'http://127.0.0.1:1'}\nenergy: {cpu: estimated, gpu: off}\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = estimated.energy.sources.iter().map(|s| s.name()).collect();
        assert_eq!(names, vec!["estimated"]);
        assert!(estimated.energy.estimation.is_some());

        let without = readers(&config("interval: 30s\n")).unwrap_or_else(|e| panic!("{e}"));
        assert!(without.energy.sources.is_empty());
        assert!(without.energy.estimation.is_none());
        assert!(without.metrics.is_none());
        assert!(without.prom.is_none());
    }

    #[test]
    fn dcgm_settings_from_config() {
        let c = config(
            "interval: 2m\nenergy:\n  dcgm:\n    exporterContainers: [my-dcgm]\n    migSlices: {A30: 2, GH200: 7}\n",
        );
        let d = dcgm_config(&c);
        assert_eq!(d.exporter_containers, vec!["my-dcgm".to_owned()]);
        assert_eq!(d.lookback, Seconds(120.0));
        assert_eq!(d.mig_slices[0], ("A30".to_owned(), 2));
        let c = config("interval: 30s\n");
        assert_eq!(dcgm_config(&c).lookback, MIN_DCGM_LOOKBACK);
        assert_eq!(
            c.settings().counter_retention,
            Seconds::from_hours(24.0),
            "default retention"
        );
    }

    #[test]
    fn prometheus_access_from_config() {
        let c = config(
            "prometheus:\n  url: https://thanos-querier.openshift-monitoring.svc:9091\n  caFile: /etc/jobcarbon/ca/service-ca.crt\n  certFile: /s/tls.crt\n  keyFile: /s/tls.key\n  headers: {X-Scope-OrgID: team-a}\n  headerFiles: {X-Api-Key: /s/key}\n  basicAuth: {username: jc, passwordFile: /s/password}\n",
        );
        let Some(p) = &c.prometheus else {
            panic!("prometheus section")
        };
        let pc = prom_config(p);
        assert_eq!(
            pc.tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/jobcarbon/ca/service-ca.crt"))
        );
        assert!(pc.tls.cert_file.is_some() && pc.tls.key_file.is_some());
        assert_eq!(
            pc.headers.get("X-Scope-OrgID").map(String::as_str),
            Some("team-a")
        );
        assert!(pc.header_files.contains_key("X-Api-Key"));
        assert!(matches!(pc.auth, Auth::Basic { ref username, .. } if username == "jc"));
    }

    #[test]
    fn prometheus_access_mistakes_are_located_errors() {
        for (yaml, path, reason) in [
            (
                "prometheus: {url: 'http://p:9090', certFile: /c}",
                "prometheus.certFile",
                "go together",
            ),
            (
                "prometheus: {url: 'http://p:9090', bearerTokenFile: /t, basicAuth: {username: u, passwordFile: /p}}",
                "prometheus.basicAuth",
                "choose one",
            ),
            (
                "prometheus: {url: 'http://u:pw@p:9090'}",
                "prometheus.url",
                "basicAuth.passwordFile",
            ),
            (
                "prometheus: {url: 'http://p:9090', headers: {'bad header': x}}",
                "prometheus.headers.bad header",
                "header name",
            ),
            (
                "prometheus: {url: 'http://p:9090', basicAuth: {username: u, password: oops}}",
                "prometheus.basicAuth",
                "unknown field `password`",
            ),
        ] {
            let err = Config::parse(yaml, "ledger.yaml")
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"))
                .to_string();
            assert!(err.contains("ledger.yaml"), "{err}");
            assert!(err.contains(path), "{yaml}: {err}");
            assert!(err.contains(reason), "{yaml}: {err}");
            assert!(!err.contains("pw@"), "credentials echoed: {err}");
        }
    }
}

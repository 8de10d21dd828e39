//! `jobcarbon node`: the per-node agent (DaemonSet, optional). Reads local GPUs through NVML,
//! maps GPU UUID → pod through the kubelet pod-resources socket, and exports per-container
//! GPU energy counters and power gauges on `/metrics`, with `/healthz`.
//!
//! Without an NVIDIA driver it serves `jobcarbon_node_gpus 0`, says so in its log and stays
//! healthy; it retries NVML every interval, so a driver installed later is picked up. It
//! needs no privileges beyond read access to the socket and the NVIDIA device files.

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use jobcarbon_core::Seconds;
use jobcarbon_telemetry::NodeAgent;
use jobcarbon_telemetry::podresources::{
    DEFAULT_SOCKET, GpuAssignment, PodResourcesClient, PodResourcesError,
};
use jobcarbon_telemetry::{GpuBackend, GpuError, NvmlBackend};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address for /metrics and /healthz. `[::]` (the default) listens on IPv6 and IPv4, and
    /// on IPv4 only where the node has no IPv6.
    #[arg(long, default_value = crate::listen::NODE_DEFAULT, env = "JOBCARBON_LISTEN")]
    pub listen: SocketAddr,
    /// The kubelet pod-resources socket.
    #[arg(long, default_value = DEFAULT_SOCKET, env = "JOBCARBON_POD_RESOURCES_SOCKET")]
    pub pod_resources_socket: PathBuf,
    /// How often to sample the GPUs (e.g. 10s, 1min).
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let seconds: Seconds = jobcarbon_core::quantity::parse(s).map_err(|e| e.to_string())?;
    if seconds.value() < 0.1 {
        return Err(format!("interval {s:?} is too short (at least 100ms)"));
    }
    Ok(Duration::from_secs_f64(seconds.value()))
}

/// What the scrape reads; updated by the sampler.
#[derive(Debug, Default)]
struct Exported {
    gpus: usize,
    nvml_up: bool,
    pod_resources_up: bool,
    energy: Vec<(Vec<(&'static str, String)>, f64)>,
    power: Vec<(Vec<(&'static str, String)>, f64)>,
    errors: BTreeMap<(&'static str, &'static str), u64>,
    /// Failed samples of single GPUs, by GPU and reason (the others kept reporting).
    gpu_faults: BTreeMap<(String, &'static str), u64>,
    /// GPUs the kubelet can allocate here (pod-resources `GetAllocatableResources`).
    allocatable: Option<usize>,
    last_success: Option<f64>,
}

/// What to do when the kubelet has GPUs the agent cannot see.
const NO_VISIBLE_GPUS: &str = "the kubelet reports allocatable GPUs but NVML sees none: the container runtime does not expose them to this unprivileged pod. Run the agent with the NVIDIA runtime (chart value nodeAgent.runtimeClassName: nvidia), or where the runtime ignores NVIDIA_VISIBLE_DEVICES for unprivileged pods (Bottlerocket's default) enable accept-nvidia-visible-devices-as-volume-mounts and mount the device list volume";

impl Exported {
    /// `/healthz` detail: the process serves; a node whose GPUs are invisible says so.
    fn health(&self) -> String {
        match self.allocatable {
            Some(n) if n > 0 && self.gpus == 0 => {
                format!("ok (degraded: {n} allocatable GPUs, 0 visible: {NO_VISIBLE_GPUS})\n")
            }
            _ => "ok\n".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
struct AgentCollector(Arc<Mutex<Exported>>);

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&'static str, String)>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn encode_count(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(state) = self.0.lock() else {
            return Ok(());
        };
        let none: Vec<(&'static str, String)> = Vec::new();
        encode_count(
            &mut encoder,
            "jobcarbon_node_gpus",
            "NVIDIA GPUs seen through NVML (0 without a driver)",
            i64::try_from(state.gpus).unwrap_or(i64::MAX),
        )?;
        encode_count(
            &mut encoder,
            "jobcarbon_node_nvml_up",
            "Whether the last NVML sample succeeded",
            i64::from(state.nvml_up),
        )?;
        encode_count(
            &mut encoder,
            "jobcarbon_node_pod_resources_up",
            "Whether the last kubelet pod-resources List succeeded",
            i64::from(state.pod_resources_up),
        )?;
        if let Some(t) = state.last_success {
            encode_gauge(
                &mut encoder,
                "jobcarbon_node_last_sample_timestamp_seconds",
                "Unix time of the last successful GPU sample",
                &[(none, t)],
            )?;
        }
        let mut energy = encoder.encode_descriptor(
            "jobcarbon_node_gpu_energy_joules",
            "GPU energy per container holding the GPU (split equally when shared; empty pod labels for a GPU no container holds), since the agent started",
            None,
            ConstCounter::new(0.0).metric_type(),
        )?;
        for (labels, joules) in &state.energy {
            ConstCounter::new(*joules).encode(energy.encode_family(labels)?)?;
        }
        encode_gauge(
            &mut encoder,
            "jobcarbon_node_gpu_power_watts",
            "GPU power draw per container holding the GPU (split equally when shared)",
            &state.power,
        )?;
        let mut errors = encoder.encode_descriptor(
            "jobcarbon_node_errors",
            "Failed samples by part (nvml, pod_resources) and kind",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for ((part, kind), n) in &state.errors {
            let labels = vec![("part", (*part).to_owned()), ("kind", (*kind).to_owned())];
            ConstCounter::new(*n).encode(errors.encode_family(&labels)?)?;
        }
        for ((gpu, reason), n) in &state.gpu_faults {
            let labels = vec![
                ("part", "gpu".to_owned()),
                ("kind", (*reason).to_owned()),
                ("gpu", gpu.clone()),
            ];
            ConstCounter::new(*n).encode(errors.encode_family(&labels)?)?;
        }
        if let Some(n) = state.allocatable {
            encode_count(
                &mut encoder,
                "jobcarbon_node_gpus_allocatable",
                "GPUs and MIG instances the kubelet can allocate on this node (more than jobcarbon_node_gpus: the agent cannot see them)",
                i64::try_from(n).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

fn series_labels(l: &jobcarbon_telemetry::GpuSeriesLabels) -> Vec<(&'static str, String)> {
    vec![
        ("gpu_uuid", l.gpu_uuid.clone()),
        ("gpu_model", l.gpu_model.clone()),
        ("namespace", l.namespace.clone()),
        ("pod", l.pod.clone()),
        ("container", l.container.clone()),
        (
            "source",
            if l.estimated { "estimated" } else { "measured" }.to_owned(),
        ),
    ]
}

/// One sampling step given the pod-resources answer: samples NVML and publishes the result
/// for scrapes.
fn sample_once(
    agent: &mut NodeAgent,
    listed: Result<Vec<GpuAssignment>, PodResourcesError>,
    assignments: &mut Vec<GpuAssignment>,
    exported: &Mutex<Exported>,
    gpus_logged: &mut Option<usize>,
) {
    let pod_resources_up = listed.is_ok();
    let pr_error = match listed {
        // Keep the last good mapping on failure rather than calling every GPU idle.
        Ok(a) => {
            *assignments = a;
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "pod-resources List failed; keeping the last GPU → pod mapping");
            Some(e.kind())
        }
    };
    let now = jobcarbon_telemetry::now();
    let tick = agent.tick(assignments, now);
    match &tick {
        Ok(summary) if *gpus_logged != Some(summary.gpus) => {
            tracing::info!(gpus = summary.gpus, backend = %agent.backend_description(), "sampling GPUs");
            *gpus_logged = Some(summary.gpus);
        }
        Err(GpuError::NoDriver(reason)) if *gpus_logged != Some(0) => {
            tracing::warn!(%reason, "no NVIDIA driver: reporting 0 GPUs and staying up (NVML is retried every interval)");
            *gpus_logged = Some(0);
        }
        Err(e @ GpuError::Call { .. }) => {
            tracing::warn!(error = %e, "NVML sample failed; re-initialising next interval");
        }
        _ => {}
    }
    let Ok(mut state) = exported.lock() else {
        return;
    };
    if let Ok(summary) = &tick {
        for fault in &summary.faults {
            tracing::warn!(gpu = %fault.gpu, reason = fault.reason, detail = %fault.detail, "GPU skipped this sample; the others keep reporting");
            *state
                .gpu_faults
                .entry((fault.gpu.clone(), fault.reason))
                .or_default() += 1;
        }
    }
    state.gpus = agent.gpu_count();
    state.nvml_up = tick.is_ok();
    state.pod_resources_up = pod_resources_up;
    state.energy = agent
        .energy()
        .iter()
        .map(|(l, j)| (series_labels(l), j.value()))
        .collect();
    state.power = agent
        .power()
        .iter()
        .map(|(l, w)| (series_labels(l), w.value()))
        .collect();
    if let Some(kind) = pr_error {
        *state.errors.entry(("pod_resources", kind)).or_default() += 1;
    }
    match &tick {
        Ok(_) => state.last_success = Some(now.value()),
        Err(e) => *state.errors.entry(("nvml", e.kind())).or_default() += 1,
    }
}

/// Records what the kubelet can allocate; says once, with the fix, when NVML sees none of it.
fn note_allocatable(exported: &Mutex<Exported>, allocatable: Option<usize>) {
    let Ok(mut state) = exported.lock() else {
        return;
    };
    let was_invisible = matches!(state.allocatable, Some(n) if n > 0 && state.gpus == 0);
    state.allocatable = allocatable;
    let invisible = matches!(allocatable, Some(n) if n > 0 && state.gpus == 0);
    if invisible && !was_invisible {
        tracing::error!(allocatable = allocatable.unwrap_or(0), "{NO_VISIBLE_GPUS}");
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let backend: Box<dyn GpuBackend> = match NvmlBackend::init() {
        Ok(b) => Box::new(b),
        Err(e) => {
            tracing::warn!(error = %e, "NVML unavailable at start");
            Box::new(NvmlBackend::lazy())
        }
    };
    let mut agent = NodeAgent::new(backend);
    let pod_resources = PodResourcesClient::new(&args.pod_resources_socket);
    let exported = Arc::new(Mutex::new(Exported::default()));

    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector(exported.clone())));
    let registry = Arc::new(registry);

    let listener = crate::listen::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, socket = %args.pod_resources_socket.display(), interval = ?args.interval, "jobcarbon node agent");

    let sampler_state = exported.clone();
    let interval = args.interval;
    tokio::spawn(async move {
        let mut assignments = Vec::new();
        let mut gpus_logged = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let listed = pod_resources.gpu_assignments().await;
            sample_once(
                &mut agent,
                listed,
                &mut assignments,
                &sampler_state,
                &mut gpus_logged,
            );
            // An older kubelet may not serve GetAllocatableResources: then nothing is known.
            let allocatable = pod_resources.allocatable_gpus().await.ok();
            note_allocatable(&sampler_state, allocatable);
        }
    });

    let health_state = exported.clone();
    let app = Router::new()
        .route(
            "/healthz",
            get(move || {
                let state = health_state.clone();
                async move { state.lock().map(|s| s.health()).unwrap_or_default() }
            }),
        )
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let registry = registry.clone();
                async move { metrics_response(&registry, &headers) }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::signal::shutdown_signal())
        .await
        .context("serving /metrics")?;
    Ok(())
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the Prometheus text
/// format 0.0.4 (curl, `promtool check metrics`).
fn metrics_response(
    registry: &Registry,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut body, registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jobcarbon node: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcarbon node: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobcarbon_core::Watts;
    use jobcarbon_telemetry::{FakeGpu, FakeGpuBackend};

    fn assign(pod: &str, uuid: &str) -> GpuAssignment {
        GpuAssignment {
            namespace: "ml".into(),
            pod: pod.into(),
            container: "main".into(),
            resource_name: "nvidia.com/gpu".into(),
            device_id: uuid.into(),
        }
    }

    fn scrape(exported: &Arc<Mutex<Exported>>, accept: &str) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(AgentCollector(exported.clone())));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::ACCEPT, accept.parse().unwrap());
        let response = metrics_response(&registry, &headers);
        assert_eq!(response.status(), StatusCode::OK);
        let body = futures_body(response);
        String::from_utf8(body).unwrap()
    }

    fn futures_body(response: axum::response::Response) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec()
        })
    }

    #[test]
    fn two_gpus_one_shared_one_idle_exposition_passes_promtool() {
        let fake = Arc::new(FakeGpuBackend::new(vec![
            FakeGpu::new("GPU-0", "NVIDIA A100-SXM4-80GB", Watts(300.0)),
            FakeGpu::new("GPU-1", "NVIDIA A100-SXM4-80GB", Watts(60.0)),
        ]));
        let mut agent = NodeAgent::new(Box::new(fake.clone()));
        let exported = Arc::new(Mutex::new(Exported::default()));
        let mut assignments = Vec::new();
        let mut logged = None;
        let shared = vec![assign("a", "GPU-0"), assign("b", "GPU-0")];
        sample_once(
            &mut agent,
            Ok(shared.clone()),
            &mut assignments,
            &exported,
            &mut logged,
        );
        fake.advance(10.0);
        // A failed List keeps the last mapping.
        let failed = Err(PodResourcesError::Connect {
            path: "/x".into(),
            reason: "gone".into(),
        });
        sample_once(&mut agent, failed, &mut assignments, &exported, &mut logged);
        let text = scrape(&exported, "text/plain");
        assert!(text.contains("jobcarbon_node_gpus 2\n"), "{text}");
        assert!(
            text.contains(r#"jobcarbon_node_gpu_energy_joules_total{gpu_uuid="GPU-0",gpu_model="NVIDIA A100-SXM4-80GB",namespace="ml",pod="a",container="main",source="measured"} 1500"#),
            "{text}"
        );
        assert!(
            text.contains(r#"jobcarbon_node_gpu_energy_joules_total{gpu_uuid="GPU-1",gpu_model="NVIDIA A100-SXM4-80GB",namespace="",pod="",container="",source="measured"} 600"#),
            "{text}"
        );
        assert!(text.contains(r#"jobcarbon_node_gpu_power_watts{gpu_uuid="GPU-0",gpu_model="NVIDIA A100-SXM4-80GB",namespace="ml",pod="b",container="main",source="measured"} 150"#), "{text}");
        assert!(
            text.contains(r#"jobcarbon_node_errors_total{part="pod_resources",kind="connect"} 1"#),
            "{text}"
        );

        let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(&text).unwrap();
        assert!(lint.passed, "promtool: {}", lint.output);

        let om = scrape(&exported, "application/openmetrics-text;version=1.0.0");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn lost_gpu_counted_and_invisible_gpus_reported() {
        let fake = Arc::new(FakeGpuBackend::new(vec![
            FakeGpu::new("GPU-0", "NVIDIA H100 80GB HBM3", Watts(500.0)),
            FakeGpu::new("GPU-1", "NVIDIA H100 80GB HBM3", Watts(500.0)),
        ]));
        let mut agent = NodeAgent::new(Box::new(fake.clone()));
        let exported = Arc::new(Mutex::new(Exported::default()));
        let mut assignments = Vec::new();
        let mut logged = None;
        fake.set_fault("GPU-1", Some("gpu_lost"));
        for _ in 0..2 {
            sample_once(
                &mut agent,
                Ok(Vec::new()),
                &mut assignments,
                &exported,
                &mut logged,
            );
            fake.advance(10.0);
        }
        let text = scrape(&exported, "text/plain");
        assert!(text.contains("jobcarbon_node_gpus 1\n"), "{text}");
        assert!(
            text.contains("jobcarbon_node_nvml_up 1\n"),
            "one lost GPU is not NVML down: {text}"
        );
        assert!(
            text.contains(
                r#"jobcarbon_node_errors_total{part="gpu",kind="gpu_lost",gpu="GPU-1"} 2"#
            ),
            "{text}"
        );
        let lint = jobcarbon_testkit::prometheus::promtool_check_metrics(&text).unwrap();
        assert!(lint.passed, "promtool: {}", lint.output);

        // Bottlerocket without the device-list volume: the kubelet has 8 GPUs, NVML sees none.
        let blind = Arc::new(Mutex::new(Exported::default()));
        let mut agent = NodeAgent::new(Box::new(FakeGpuBackend::new(Vec::new())));
        sample_once(
            &mut agent,
            Ok(Vec::new()),
            &mut Vec::new(),
            &blind,
            &mut None,
        );
        note_allocatable(&blind, Some(8));
        let health = blind.lock().unwrap().health();
        assert!(health.contains("8 allocatable GPUs, 0 visible"), "{health}");
        assert!(health.contains("runtimeClassName"), "{health}");
        let text = scrape(&blind, "text/plain");
        assert!(
            text.contains("jobcarbon_node_gpus_allocatable 8\n"),
            "{text}"
        );
        note_allocatable(&exported, Some(2));
        assert_eq!(exported.lock().unwrap().health(), "ok\n");
    }

    #[test]
    fn interval_parsing() {
        assert_eq!(parse_interval("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_interval("1min").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("ten").is_err());
    }
}

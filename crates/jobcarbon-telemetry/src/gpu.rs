//! Local GPUs behind [`GpuBackend`]: the real NVML implementation ([`NvmlBackend`], through
//! nvml-wrapper) and a faithful fake for tests ([`FakeGpuBackend`]).
//!
//! NVML calls and units (see docs/telemetry.md): `nvmlDeviceGetCount`, `…GetHandleByIndex`,
//! `…GetUUID`, `…GetName`, `…GetTotalEnergyConsumption` (mJ since the driver was loaded),
//! `…GetPowerUsage` (mW), `…GetMigMode`, `…GetMaxMigDeviceCount` / `…GetMigDeviceHandleByIndex`
//! (MIG UUIDs, so pod-resources MIG device ids map to their parent GPU).

use jobcarbon_core::{Joules, Watts};
use std::sync::Mutex;

/// Why GPUs could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    /// No NVIDIA driver or library (`Nvml::init` failed): the node has no usable GPU.
    #[error("no NVIDIA driver: {0}")]
    NoDriver(String),
    /// An NVML call failed (GPU lost, driver reloaded, …); the agent re-initialises.
    #[error("NVML call {call} failed: {reason}")]
    Call {
        /// The NVML function.
        call: &'static str,
        /// NVML's error text.
        reason: String,
    },
}

impl GpuError {
    /// The `kind` label value of the agent's error counter.
    pub fn kind(&self) -> &'static str {
        match self {
            GpuError::NoDriver(_) => "no_driver",
            GpuError::Call { .. } => "nvml_call",
        }
    }
}

/// One physical GPU at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    /// Energy since the driver was loaded; `None` where the GPU does not support the counter
    /// (pre-Volta): the agent then integrates `power`.
    pub energy: Option<Joules>,
    /// Current draw; `None` where unsupported.
    pub power: Option<Watts>,
    /// UUIDs of the GPU's MIG instances when MIG is enabled (their energy is the parent's).
    pub mig_uuids: Vec<String>,
    /// The device minor number (`/dev/nvidiaN`): GKE's pod-resources device ids `nvidiaN`.
    pub minor: Option<u32>,
    /// GPU utilisation, 0–1 (`nvmlDeviceGetUtilizationRates`).
    pub utilization: Option<f64>,
    /// The enforced power limit (TDP unless lowered), for the utilisation estimate.
    pub power_limit: Option<Watts>,
}

/// One GPU that could not be read while the others were.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuFault {
    /// The GPU's UUID when known, else `index-N`.
    pub gpu: String,
    /// A metric label value: `gpu_lost` (Xid 79, fallen off the bus), `not_found`, `unknown`, ….
    pub reason: &'static str,
    pub detail: String,
}

/// One sample of the node: the GPUs read, and those that failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReadout {
    pub gpus: Vec<GpuSample>,
    pub faults: Vec<GpuFault>,
}

/// A source of local GPU samples.
pub trait GpuBackend: Send + Sync {
    /// Human description for logs (`NVML 570.124.06`, `fake`).
    fn describe(&self) -> String;
    /// Every GPU; one failing GPU is a `GpuFault` beside the others, not an error.
    fn sample(&self) -> Result<GpuReadout, GpuError>;
}

/// A shared backend (tests keep a handle to drive a fake while the agent owns it).
impl<T: GpuBackend + ?Sized> GpuBackend for std::sync::Arc<T> {
    fn describe(&self) -> String {
        self.as_ref().describe()
    }
    fn sample(&self) -> Result<GpuReadout, GpuError> {
        self.as_ref().sample()
    }
}

/// The metric label for an NVML error on one device.
fn fault_reason(e: &nvml_wrapper::error::NvmlError) -> &'static str {
    use nvml_wrapper::error::NvmlError;
    match e {
        NvmlError::GpuLost => "gpu_lost",
        NvmlError::NotFound => "not_found",
        NvmlError::Uninitialized => "uninitialized",
        NvmlError::NoPermission => "no_permission",
        NvmlError::Timeout => "timeout",
        NvmlError::ResetRequired => "reset_required",
        NvmlError::InsufficientPower => "insufficient_power",
        _ => "unknown",
    }
}

/// NVML through nvml-wrapper. Holds the library handle; after a failed call the handle is
/// dropped and re-created on the next sample (a driver reload invalidates it).
pub struct NvmlBackend {
    nvml: Mutex<Option<nvml_wrapper::Nvml>>,
    driver: String,
}

impl std::fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlBackend")
            .field("driver", &self.driver)
            .finish()
    }
}

fn call_error(call: &'static str) -> impl Fn(nvml_wrapper::error::NvmlError) -> GpuError {
    move |e| GpuError::Call {
        call,
        reason: e.to_string(),
    }
}

impl NvmlBackend {
    /// Loads `libnvidia-ml.so.1` and initialises NVML. Fails with [`GpuError::NoDriver`]
    /// where the driver is absent (the caller reports zero GPUs and keeps running).
    pub fn init() -> Result<Self, GpuError> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| GpuError::NoDriver(e.to_string()))?;
        let driver = nvml
            .sys_driver_version()
            .unwrap_or_else(|_| "unknown".to_owned());
        Ok(Self {
            nvml: Mutex::new(Some(nvml)),
            driver,
        })
    }

    /// A backend that initialises NVML on its first sample and again after every failure, for
    /// a node whose driver is absent now but may be installed (or reloaded) later.
    pub fn lazy() -> Self {
        Self {
            nvml: Mutex::new(None),
            driver: "not loaded".into(),
        }
    }

    fn sample_with(nvml: &nvml_wrapper::Nvml) -> Result<GpuReadout, GpuError> {
        let count = nvml
            .device_count()
            .map_err(call_error("nvmlDeviceGetCount"))?;
        let mut out = GpuReadout::default();
        for index in 0..count {
            match Self::sample_device(nvml, index) {
                Ok(gpu) => out.gpus.push(gpu),
                Err((gpu, call, e)) => out.faults.push(GpuFault {
                    gpu,
                    reason: fault_reason(&e),
                    detail: format!("{call}: {e}"),
                }),
            }
        }
        Ok(out)
    }

    /// One GPU; a failure names the GPU (UUID once known), the call and the error.
    fn sample_device(
        nvml: &nvml_wrapper::Nvml,
        index: u32,
    ) -> Result<GpuSample, (String, &'static str, nvml_wrapper::error::NvmlError)> {
        use nvml_wrapper::error::NvmlError;
        let by_index = format!("index-{index}");
        let device = nvml
            .device_by_index(index)
            .map_err(|e| (by_index.clone(), "nvmlDeviceGetHandleByIndex", e))?;
        let uuid = device
            .uuid()
            .map_err(|e| (by_index, "nvmlDeviceGetUUID", e))?;
        let model = device.name().unwrap_or_else(|_| "unknown".to_owned());
        let energy = match device.total_energy_consumption() {
            Ok(mj) => Some(Joules::from_millijoules(mj as f64)),
            Err(NvmlError::NotSupported) => None,
            Err(e) => return Err((uuid, "nvmlDeviceGetTotalEnergyConsumption", e)),
        };
        let power = match device.power_usage() {
            Ok(mw) => Some(Watts(f64::from(mw) / 1000.0)),
            Err(NvmlError::NotSupported) => None,
            Err(e) => return Err((uuid, "nvmlDeviceGetPowerUsage", e)),
        };
        let mut mig_uuids = Vec::new();
        // MIG mode: NotSupported on GPUs without MIG, which is not an error.
        if let Ok(mode) = device.mig_mode()
            && mode.current == 1
        {
            let max = device.mig_device_count().unwrap_or(0);
            for i in 0..max {
                // Unpopulated slots answer NotFound.
                if let Ok(mig) = device.mig_device_by_index(i)
                    && let Ok(u) = mig.uuid()
                {
                    mig_uuids.push(u);
                }
            }
        }
        Ok(GpuSample {
            index,
            uuid,
            model,
            energy,
            power,
            mig_uuids,
            minor: device.minor_number().ok(),
            utilization: device
                .utilization_rates()
                .ok()
                .map(|u| f64::from(u.gpu) / 100.0),
            power_limit: device
                .enforced_power_limit()
                .ok()
                .map(|mw| Watts(f64::from(mw) / 1000.0)),
        })
    }
}

impl GpuBackend for NvmlBackend {
    fn describe(&self) -> String {
        format!("NVML, driver {}", self.driver)
    }

    fn sample(&self) -> Result<GpuReadout, GpuError> {
        let mut guard = self.nvml.lock().map_err(|_| GpuError::Call {
            call: "lock",
            reason: "NVML handle poisoned".into(),
        })?;
        if guard.is_none() {
            *guard =
                Some(nvml_wrapper::Nvml::init().map_err(|e| GpuError::NoDriver(e.to_string()))?);
        }
        let Some(nvml) = guard.as_ref() else {
            return Err(GpuError::NoDriver("NVML not initialised".into()));
        };
        let result = Self::sample_with(nvml);
        let all_failed = result
            .as_ref()
            .is_ok_and(|r| r.gpus.is_empty() && !r.faults.is_empty());
        if result.is_err() || all_failed {
            // Re-initialise next time: after a driver reload the old handle stays invalid.
            *guard = None;
        }
        result
    }
}

/// One fake GPU: energy advances by `power × dt` on every [`FakeGpuBackend::advance`].
#[derive(Debug, Clone, PartialEq)]
pub struct FakeGpu {
    /// GPU UUID, as NVML reports it.
    pub uuid: String,
    /// Product name (`NVIDIA H100 80GB HBM3`).
    pub model: String,
    /// Current power draw; energy advances at this rate.
    pub power: Watts,
    /// Energy counter since "driver load".
    pub energy: Joules,
    /// Whether the fake exposes the energy counter (false mimics pre-Volta GPUs).
    pub energy_supported: bool,
    /// UUIDs of its MIG instances (empty when MIG is off).
    pub mig_uuids: Vec<String>,
    /// The `/dev/nvidiaN` minor number, if the fake reports one.
    pub minor: Option<u32>,
    /// A fault every NVML call on this GPU reports (`gpu_lost` mimics Xid 79).
    pub fault: Option<&'static str>,
    /// Whether the fake reports power (false with `energy_supported` false mimics a virtual
    /// GPU that only reports utilisation).
    pub power_supported: bool,
    /// Utilisation 0–1 and power limit the fake reports.
    pub utilization: f64,
    /// The enforced power limit.
    pub power_limit: Watts,
}

impl FakeGpu {
    /// A GPU drawing `power`, energy at 0, no MIG, no fault, counters supported.
    pub fn new(uuid: &str, model: &str, power: Watts) -> Self {
        Self {
            uuid: uuid.into(),
            model: model.into(),
            power,
            energy: Joules::ZERO,
            energy_supported: true,
            mig_uuids: Vec::new(),
            minor: None,
            fault: None,
            power_supported: true,
            utilization: 0.0,
            power_limit: Watts(0.0),
        }
    }
}

/// A fake backend with NVML's semantics: cumulative mJ-resolution energy since "driver load",
/// power in mW resolution, a driver reload that restarts the counters, and "no driver".
#[derive(Debug, Default)]
pub struct FakeGpuBackend {
    gpus: Mutex<Vec<FakeGpu>>,
    no_driver: bool,
}

impl FakeGpuBackend {
    /// A backend exposing `gpus`.
    pub fn new(gpus: Vec<FakeGpu>) -> Self {
        Self {
            gpus: Mutex::new(gpus),
            no_driver: false,
        }
    }

    /// A node without a driver: every sample fails like `Nvml::init` does.
    pub fn without_driver() -> Self {
        Self {
            gpus: Mutex::new(Vec::new()),
            no_driver: true,
        }
    }

    /// Runs every GPU at its power for `seconds`.
    pub fn advance(&self, seconds: f64) {
        if let Ok(mut gpus) = self.gpus.lock() {
            for g in gpus.iter_mut() {
                g.energy += Joules(g.power.value() * seconds);
            }
        }
    }

    /// Makes one GPU fail every call with `reason` (`gpu_lost`), or recover (`None`).
    pub fn set_fault(&self, uuid: &str, reason: Option<&'static str>) {
        if let Ok(mut gpus) = self.gpus.lock() {
            for g in gpus.iter_mut().filter(|g| g.uuid == uuid) {
                g.fault = reason;
            }
        }
    }

    /// A driver reload: energy counters restart at 0.
    pub fn reload_driver(&self) {
        if let Ok(mut gpus) = self.gpus.lock() {
            for g in gpus.iter_mut() {
                g.energy = Joules::ZERO;
            }
        }
    }
}

impl GpuBackend for FakeGpuBackend {
    fn describe(&self) -> String {
        "fake".into()
    }

    fn sample(&self) -> Result<GpuReadout, GpuError> {
        if self.no_driver {
            return Err(GpuError::NoDriver(
                "a libloading error occurred: libnvidia-ml.so.1: cannot open shared object file"
                    .into(),
            ));
        }
        let gpus = self.gpus.lock().map_err(|_| GpuError::Call {
            call: "lock",
            reason: "fake poisoned".into(),
        })?;
        let mut out = GpuReadout::default();
        for (i, g) in gpus.iter().enumerate() {
            if let Some(reason) = g.fault {
                out.faults.push(GpuFault {
                    gpu: g.uuid.clone(),
                    reason,
                    detail: "nvmlDeviceGetTotalEnergyConsumption: GPU is lost".into(),
                });
                continue;
            }
            out.gpus.push(GpuSample {
                index: i as u32,
                uuid: g.uuid.clone(),
                model: g.model.clone(),
                // NVML reports integer mJ and mW.
                energy: g
                    .energy_supported
                    .then(|| Joules::from_millijoules((g.energy.value() * 1000.0).floor())),
                power: g
                    .power_supported
                    .then(|| Watts((g.power.value() * 1000.0).floor() / 1000.0)),
                mig_uuids: g.mig_uuids.clone(),
                minor: g.minor,
                utilization: Some(g.utilization),
                power_limit: Some(g.power_limit),
            });
        }
        Ok(out)
    }
}

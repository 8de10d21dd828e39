//! Test harnesses shared across crates. Dev-dependency only.
//!
//! - [`prometheus`]: a real Prometheus server (Debian package) on a free loopback port, with a
//!   temp TSDB, loaded from OpenMetrics history through `promtool tsdb create-blocks-from`.
//! - [`kube_api`]: a fake Kubernetes API server serving real Kubernetes JSON.

pub mod kube_api;
pub mod prometheus;

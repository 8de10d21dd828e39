//! Real Prometheus harness (being built).

//! Fake Kubernetes API server (being built).

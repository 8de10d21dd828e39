#!/usr/bin/env bash
# Whole-process scale harness: scripts/scale.sh [PODS...]   (default: 20000)
# Fake API server with PODS pods on PODS/100 nodes, a Kepler-like target, a real Prometheus and
# the release `jobcarbon ledger`; prints interval time, /metrics scrape time and size, series
# and peak RSS (docs/performance.md, "Whole process").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --locked -p jobcarbon --bin jobcarbon --example scale
target=${CARGO_TARGET_DIR:-$root/target}
for pods in "${@:-20000}"; do
  JOBCARBON_BIN="$target/release/jobcarbon" "$target/release/examples/scale" "$pods"
done

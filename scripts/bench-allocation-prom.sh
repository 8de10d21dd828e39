#!/usr/bin/env bash
# Measures /api/v1/allocation from Prometheus: loads 24 h of a ledger's counters (WORKLOADS
# workloads, one pod each, 6 carbon terms + 2 energy components, 12 unallocated reasons, a
# scrape a minute) into a real Prometheus with promtool, then times PromHistory::allocate
# (crates/jobcarbon-ledger/examples/allocation_prom_bench.rs) for three queries.
#   WORKLOADS=100 scripts/bench-allocation-prom.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
workloads=${WORKLOADS:-100}
work=$(mktemp -d)
trap 'kill "${prom_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
end=$(( $(date +%s) / 3600 * 3600 ))
start=$(( end - 86400 ))
python3 - "$work/history.om" "$workloads" "$start" "$end" <<'PY'
import sys
path, n, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
terms = ["operational", "embodied_system", "platform_operational", "platform_embodied", "model_epc", "retraining"]
reasons = ["node_idle", "unreserved_capacity", "no_concurrent_jobs", "unknown_pod", "gpu_unmapped", "node_system",
           "no_inference", "system_processes", "platform_idle", "no_requests", "out_of_window", "other"]
with open(path, "w") as f:
    for w in range(n):
        base = f'namespace="ns{w % 10}",workload="Job/w{w}",pod="w{w}-0",phase="training",product="p{w % 5}",ledger="jc/jobcarbon"'
        for i, term in enumerate(terms):
            for t in range(start, end + 1, 60):
                f.write(f'jobcarbon_workload_carbon_grams_total{{{base},term="{term}"}} {(t - start) / 60 * (i + 1) * 0.01} {t}\n')
        for c in ["cpu", "gpu"]:
            for t in range(start, end + 1, 60):
                f.write(f'jobcarbon_workload_energy_joules_total{{{base},component="{c}",source="measured"}} {(t - start) * 50.0} {t}\n')
    for r in reasons:
        for t in range(start, end + 1, 60):
            f.write(f'jobcarbon_unallocated_grams_total{{reason="{r}",ledger="jc/jobcarbon"}} {(t - start) / 600} {t}\n')
    f.write("# EOF\n")
PY
mkdir -p "$work/data"
promtool tsdb create-blocks-from openmetrics "$work/history.om" "$work/data" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global: {}\n' > "$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --storage.tsdb.retention.time=10y --web.listen-address="127.0.0.1:$port" --log.level=warn \
  >"$work/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.2; done
echo "series: $(( workloads * 8 + 12 )), samples: $(( (workloads * 8 + 12) * 1441 ))"
cd "$root"
cargo run -q --release -p jobcarbon-ledger --example allocation_prom_bench -- \
  "http://127.0.0.1:$port" jc/jobcarbon "$end"

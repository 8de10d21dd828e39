#!/usr/bin/env bash
# Load measurement of the HTTP surface (issue 15; figures in docs/performance.md):
#   1. starts `jobcarbon demo` from a release build on a free loopback port;
#   2. holds IDLE idle and SLOW slow-loris connections open for the whole run
#      (scripts/load_clients.py hold: reopened as soon as the server's header timeout closes them);
#   3. runs wrk (Debian `wrk`, scripts/install-tools.sh) with API_CONNECTIONS connections
#      against /api/v1/workloads;
#   4. meanwhile scrapes /metrics every 100 ms on a new connection and reports p50/p90/p99;
#   5. then the same scrape sampling with no load, as the baseline.
# Usage: scripts/load.sh [SECONDS=30] [IDLE=300] [SLOW=100] [API_CONNECTIONS=64]
# JOBCARBON_BIN overrides the binary (default: cargo build --release, then target/release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-30}
idle=${2:-300}
slow=${3:-100}
api_connections=${4:-64}

command -v wrk >/dev/null || { echo "load.sh: wrk not found: run scripts/install-tools.sh" >&2; exit 1; }
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bin=${JOBCARBON_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet -p jobcarbon --bin jobcarbon
  bin=${CARGO_TARGET_DIR:-target}/release/jobcarbon
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" demo --listen "127.0.0.1:$port" --table-every 0 >/dev/null 2>&1 &
demo=$!
pids=("$demo")
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "load.sh: the demo did not start" >&2; exit 1; }
sleep 2  # a few booked intervals, so the JSON API and /metrics have pods in them

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); binary $bin"
echo "== baseline: /metrics every 100 ms for ${seconds}s, no other clients"
python3 scripts/load_clients.py sample 127.0.0.1 "$port" /metrics "$seconds" 0.1

echo "== under load: $idle idle + $slow slow connections held, wrk -c$api_connections on /api/v1/workloads"
python3 scripts/load_clients.py hold 127.0.0.1 "$port" "$idle" "$slow" "$((seconds + 4))" &
pids+=($!)
sleep 2
wrk -t2 -c"$api_connections" -d"${seconds}s" --latency "http://127.0.0.1:$port/api/v1/workloads" > "${TMPDIR:-/tmp}/load-wrk.$$" &
wrk_pid=$!
python3 scripts/load_clients.py sample 127.0.0.1 "$port" /metrics "$seconds" 0.1
wait "$wrk_pid"
echo "-- wrk /api/v1/workloads:"
grep -E "Latency|50%|99%|Requests/sec|Transfer/sec|requests in|Non-2xx|Socket errors" "${TMPDIR:-/tmp}/load-wrk.$$"
rm -f "${TMPDIR:-/tmp}/load-wrk.$$"
wait "${pids[1]}"
echo "== demo RSS after the run: $(awk '/VmRSS/ {print $2, $3}' "/proc/$demo/status")"

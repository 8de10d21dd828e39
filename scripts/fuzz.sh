#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (libFuzzer) on the stable toolchain.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 600 s, every target, two at a time)
# Crashes land in fuzz/artifacts/<target>/; keep each as a regression test before fixing it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(quantity scenario_yaml scenario_json plan_yaml ledger_config prom_answer kube_objects checkpoint exposition)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
run() {
  local t=$1
  # New inputs go to a scratch corpus; fuzz/corpus/<target> holds the committed seeds.
  mkdir -p "corpus/$t" "${FUZZ_WORK:-/tmp/jobcarbon-fuzz}/$t"
  cargo fuzz run -O "$t" "${FUZZ_WORK:-/tmp/jobcarbon-fuzz}/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 \
    >"/tmp/fuzz-$t.log" 2>&1 || { echo "fuzz $t: CRASH (see /tmp/fuzz-$t.log and fuzz/artifacts/$t)"; return 1; }
  echo "fuzz $t: $(grep -E 'stat::number_of_executed_units' "/tmp/fuzz-$t.log" | tail -1) $(grep -oE 'cov: [0-9]+' "/tmp/fuzz-$t.log" | tail -1)"
}
status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" & a=$!
  if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i + 1]}" & b=$!; wait $b || status=1; fi
  wait $a || status=1
done
exit $status

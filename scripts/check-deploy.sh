#!/usr/bin/env bash
# Checks everything users deploy, with the real tools (DESIGN §9); called by scripts/test.sh.
#   1. the Helm chart: helm lint + helm template for the default values and every value set in
#      tests/deploy/values/, validated by kubernetes-validate --strict against Kubernetes 1.30
#      and by scripts/check_manifests.py (hardening, RBAC, HA, CLI, config keys), and the
#      rendered ConfigMap by `jobcarbon check-config`; the value sets in
#      tests/deploy/values-invalid/ must be rejected by values.schema.json;
#      then scripts/check_chart.py: what a platform team reads first (defaults that book right,
#      one value per port with a dual-stack listen address, scrape annotations without double
#      scraping, alerts per cluster with their own runbooks and settings, names valid at any
#      release-name length, extra volumes, NetworkPolicy, PodMonitor, docs); `helm package`
#      makes jobcarbon-<Chart version>.tgz, which lints and renders as the directory does and
#      which README's install section names;
#   2. the CRD in the chart equals deploy/crds/ (the copy `jobcarbon crd` is tested against);
#   3. deploy/ is what scripts/render-deploy.sh renders from the chart now;
#   4. alert rules: promtool check rules, promtool test rules (every alert fires above its
#      threshold and stays silent below it), per-product thresholds;
#   5. dashboards: tsc against @grafana/schema; units, cluster/job variables, __inputs and
#      down-target counts (check_dashboards.py policy); every panel and variable query run on a
#      real Prometheus, first scraping tests/deploy/sample-metrics.prom as two ledger replicas
#      (every query must return data, and gauge panels must not change with the second
#      replica), then scraping `jobcarbon demo` and `jobcarbon node` started with the
#      chart's `--listen [::]:PORT` and scraped over IPv4 (no query may fail; all but the
#      per-pod GPU and source-error queries must return data);
#   6. hadolint on the Dockerfile.
# Tools come from scripts/install-tools.sh (helm, kubernetes-validate, hadolint, tsc in
# .tools/bin; prometheus and promtool from Debian). JOBCARBON_BIN overrides the binary used
# for the demo (default: cargo build --locked, target/debug/jobcarbon).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -d "$root/.tools/bin" ] && export PATH="$root/.tools/bin:$PATH"

chart=helm/jobcarbon
k8s_version=1.30.0
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== check-deploy: %s\n' "$*"; }
fail() { printf 'check-deploy: FAILED: %s\n' "$*" >&2; exit 1; }

for tool in helm kubernetes-validate promtool prometheus hadolint tsc python3; do
  command -v "$tool" >/dev/null || fail "$tool not found on PATH: run scripts/install-tools.sh"
done
# kubernetes-validate's own Python has PyYAML, which check_manifests.py needs.
kv_python=$(head -1 "$(readlink -f "$(command -v kubernetes-validate)")" | sed 's/^#!//')
# tsc lives in node_modules/typescript/bin; @grafana/schema is its sibling.
node_modules=$(cd "$(dirname "$(readlink -f "$(command -v tsc)")")/../.." && pwd)

step "the jobcarbon binary"
bin=${JOBCARBON_BIN:-}
if [ -z "$bin" ]; then
  cargo build --locked --quiet -p jobcarbon --bin jobcarbon || fail "cargo build of the jobcarbon binary"
  bin=${CARGO_TARGET_DIR:-target}/debug/jobcarbon
fi
"$bin" --version
# DESIGN §11: the servers listen on every address, IPv6 and IPv4, by default.
"$bin" ledger --help | grep -qF '[default: [::]:9464]' || fail "\`jobcarbon ledger --listen\` must default to [::]:9464"
"$bin" node --help | grep -qF '[default: [::]:9465]' || fail "\`jobcarbon node --listen\` must default to [::]:9465"

# ---------------------------------------------------------------------------------------------
step "helm lint, helm template | kubernetes-validate --strict -k $k8s_version, jobcarbon check-config"
value_sets=("")
for f in tests/deploy/values/*.yaml; do value_sets+=("$f"); done
for values in "${value_sets[@]}"; do
  name=${values:-default}
  args=()
  [ -n "$values" ] && args=(-f "$values")
  helm lint --strict "$chart" "${args[@]}" >"$work/lint.out" 2>&1 ||
    { cat "$work/lint.out" >&2; fail "helm lint $name"; }
  helm template jobcarbon "$chart" --namespace jobcarbon --include-crds "${args[@]}" >"$work/rendered.yaml" ||
    fail "helm template $name"
  kubernetes-validate --strict -k "$k8s_version" --quiet "$work/rendered.yaml" >"$work/kv.out" 2>&1 ||
    { cat "$work/kv.out" >&2; fail "kubernetes-validate --strict: $name (rendered manifests in $work/rendered.yaml)"; }
  # Only the prometheus-operator kinds may lack a schema (checked below and by promtool).
  if grep -v "kind \(ServiceMonitor\|PodMonitor\|PrometheusRule\) with api version monitoring.coreos.com/v1" "$work/kv.out" | grep -q WARN; then
    cat "$work/kv.out" >&2; fail "kubernetes-validate warned on $name"
  fi
  "$kv_python" scripts/check_manifests.py "$name" --write-config "$work/config.yaml" <"$work/rendered.yaml" ||
    fail "manifest policy: $name"
  # The ledger itself must accept the config the chart renders.
  "$bin" check-config "$work/config.yaml" ||
    fail "\`jobcarbon check-config\` rejects the ConfigMap rendered for $name (config in $work/config.yaml)"
  if grep -q '^kind: PrometheusRule' "$work/rendered.yaml"; then
    helm template jobcarbon "$chart" "${args[@]}" --show-only templates/prometheusrule.yaml |
      awk 'found { sub(/^  /, ""); print } /^spec:$/ { found = 1 }' >"$work/rules-$(basename "$name" .yaml).yaml"
    promtool check rules "$work/rules-$(basename "$name" .yaml).yaml" >/dev/null ||
      fail "promtool check rules: the PrometheusRule of $name"
  fi
  echo "ok: $name"
done
for values in tests/deploy/values-invalid/*.yaml; do
  if helm template jobcarbon "$chart" -f "$values" >/dev/null 2>"$work/invalid.err"; then
    fail "$values should be rejected by values.schema.json but rendered"
  fi
  grep -q "values don't meet the specifications of the schema" "$work/invalid.err" ||
    { cat "$work/invalid.err" >&2; fail "$values failed, but not on the values schema"; }
  echo "ok: rejected $values: $(grep -m1 '^- ' "$work/invalid.err")"
done

for values in tests/deploy/values-refused/*.yaml; do
  if helm template jobcarbon "$chart" -f "$values" >/dev/null 2>"$work/refused.err"; then
    fail "$values should be refused by the chart (fail) but rendered"
  fi
  grep -q "ReadWriteOnce" "$work/refused.err" ||
    { cat "$work/refused.err" >&2; fail "$values failed, but not with the shared-claim message"; }
  echo "ok: refused $values"
done

# ---------------------------------------------------------------------------------------------
step "chart policy (scripts/check_chart.py)"
"$kv_python" scripts/check_chart.py --chart "$chart" || fail "chart policy (scripts/check_chart.py)"

# ---------------------------------------------------------------------------------------------
step "helm package"
chart_version=$(awk '/^version:/ { print $2 }' "$chart/Chart.yaml")
mkdir -p "$work/package"
helm package "$chart" --destination "$work/package" >/dev/null || fail "helm package $chart"
archive="$work/package/jobcarbon-$chart_version.tgz"
[ -f "$archive" ] || fail "helm package did not make jobcarbon-$chart_version.tgz (made: $(ls "$work/package"))"
helm lint --strict "$archive" >"$work/lint.out" 2>&1 || { cat "$work/lint.out" >&2; fail "helm lint of the packaged chart"; }
for args in "" "-f tests/deploy/values/everything.yaml"; do
  # shellcheck disable=SC2086
  diff <(helm template jobcarbon "$chart" --namespace jobcarbon $args) \
    <(helm template jobcarbon "$archive" --namespace jobcarbon $args) >/dev/null ||
    fail "the packaged chart renders differently from $chart ($args): a file is missing from the archive (.helmignore?)"
done
grep -qF "helm package helm/jobcarbon" README.md && grep -qF "jobcarbon-$chart_version.tgz" README.md ||
  fail "README's install section must use the packaged chart (helm package helm/jobcarbon, then jobcarbon-$chart_version.tgz)"
echo "ok: jobcarbon-$chart_version.tgz ($(du -h "$archive" | cut -f1)) lints and renders as $chart; README installs it"

# ---------------------------------------------------------------------------------------------
step "CRD: $chart/crds/ equals deploy/crds/"
if compgen -G "deploy/crds/*.yaml" >/dev/null; then
  diff -ru deploy/crds "$chart/crds" ||
    fail "$chart/crds/ differs from deploy/crds/ (generated by \`jobcarbon crd\`): cp deploy/crds/*.yaml $chart/crds/"
  echo "ok: identical"
else
  fail "deploy/crds/ holds no CRD (\`jobcarbon crd > deploy/crds/softwareproducts.jobcarbon.io.yaml\`)"
fi

# ---------------------------------------------------------------------------------------------
step "deploy/ is current (scripts/render-deploy.sh)"
mkdir -p "$work/deploy"
scripts/render-deploy.sh "$work/deploy"
for f in jobcarbon.yaml prometheus/jobcarbon-rules.yaml; do
  diff -u "deploy/$f" "$work/deploy/$f" || fail "deploy/$f is stale: run scripts/render-deploy.sh"
done
diff -ru deploy/grafana "$work/deploy/grafana" || fail "deploy/grafana/ is stale: run scripts/render-deploy.sh"
echo "ok: deploy/jobcarbon.yaml, deploy/prometheus/jobcarbon-rules.yaml, deploy/grafana/ are current"

# ---------------------------------------------------------------------------------------------
step "alert rules: promtool check rules, promtool test rules"
promtool check rules deploy/prometheus/jobcarbon-rules.yaml
promtool test rules deploy/prometheus/jobcarbon-rules.test.yaml ||
  fail "alert unit tests (deploy/prometheus/jobcarbon-rules.test.yaml)"
# Every alert of the rules file has a unit test.
for alert in $(grep -o 'alert: [A-Za-z]*' deploy/prometheus/jobcarbon-rules.yaml | cut -d' ' -f2); do
  grep -q "alertname: $alert\$" deploy/prometheus/jobcarbon-rules.test.yaml ||
    fail "alert $alert has no unit test in deploy/prometheus/jobcarbon-rules.test.yaml"
done
mkdir -p "$work/thresholds"
cp "$work/rules-monitoring.yaml" "$work/thresholds/rules.yaml"
cp tests/deploy/rules-thresholds.test.yaml "$work/thresholds/"
promtool test rules "$work/thresholds/rules-thresholds.test.yaml" ||
  fail "per-product threshold tests (tests/deploy/rules-thresholds.test.yaml)"

# ---------------------------------------------------------------------------------------------
step "dashboards: tsc against @grafana/schema, units, variables, __inputs"
python3 scripts/check_dashboards.py typecheck --node-modules "$node_modules" "$chart"/dashboards/*.json ||
  fail "dashboard type check"
python3 scripts/check_dashboards.py policy "$chart"/dashboards/*.json || fail "dashboard policy"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_prometheus NAME TARGETS [NODE_AGENT_TARGET] (host:port, TARGETS comma-separated): a
# real Prometheus with the chart's rules, scraping TARGETS every second as job "jobcarbon"
# (several: the replicas of an HA ledger) and the node agent as job "jobcarbon-node-agent",
# every target labelled cluster=NAME as in a multi-cluster setup; returns once it holds a few
# scrapes. Sets $prom_url.
start_prometheus() {
  local name=$1 targets=$2 node_target=${3:-} port dir target_list
  target_list=$(sed 's/,/", "/g' <<<"$targets")
  port=$(free_port)
  dir="$work/prometheus-$name"
  mkdir -p "$dir/data"
  cp deploy/prometheus/jobcarbon-rules.yaml "$dir/rules.yaml"
  cat >"$dir/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yaml]
scrape_configs:
  - job_name: jobcarbon
    honor_labels: true
    static_configs: [{targets: ["$target_list"], labels: {cluster: "$name"}}]
EOF
  if [ -n "$node_target" ]; then
    cat >>"$dir/prometheus.yml" <<EOF
  - job_name: jobcarbon-node-agent
    honor_labels: true
    static_configs: [{targets: ["$node_target"], labels: {cluster: "$name"}}]
EOF
  fi
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" >"$dir/log" 2>&1 &
  pids+=($!)
  prom_url="http://127.0.0.1:$port"
  python3 scripts/check_dashboards.py wait-http "$prom_url/-/ready" --timeout 30 --pid "${pids[-1]}" ||
    { tail -20 "$dir/log" >&2; fail "Prometheus ($name) did not start"; }
  python3 scripts/check_dashboards.py wait-scrapes --prometheus "$prom_url" --job jobcarbon --scrapes 4 --timeout 60 ||
    { tail -20 "$dir/log" >&2; fail "Prometheus ($name) did not scrape $targets"; }
  if [ -n "$node_target" ]; then
    python3 scripts/check_dashboards.py wait-scrapes --prometheus "$prom_url" --job jobcarbon-node-agent --scrapes 2 --timeout 30 ||
      { tail -20 "$dir/log" >&2; fail "Prometheus ($name) did not scrape the node agent at $node_target"; }
  fi
  # The rules must evaluate without error on these metrics.
  python3 scripts/check_dashboards.py rules-health --prometheus "$prom_url" || fail "rules on Prometheus ($name)"
}

step "dashboards: every query on a real Prometheus scraping tests/deploy/sample-metrics.prom (two replicas)"
mkdir -p "$work/sample"
cp tests/deploy/sample-metrics.prom "$work/sample/metrics"
sample_targets=()
for replica in 0 1; do
  sample_port=$(free_port)
  python3 -m http.server "$sample_port" --bind 127.0.0.1 --directory "$work/sample" >"$work/sample-$replica.log" 2>&1 &
  pids+=($!)
  sample_targets+=("127.0.0.1:$sample_port")
done
start_prometheus sample "$(IFS=,; echo "${sample_targets[*]}")"
python3 scripts/check_dashboards.py queries --prometheus "$prom_url" --require-data "$chart"/dashboards/*.json ||
  fail "dashboard queries on the sample metrics"
python3 scripts/check_dashboards.py replicas --prometheus "$prom_url" --instance "${sample_targets[0]}" "$chart"/dashboards/*.json ||
  fail "dashboard gauges counted once per replica (HA ledger)"

step "dashboards: every query on a real Prometheus scraping \`jobcarbon demo\` and \`jobcarbon node\`"
demo_port=$(free_port)
# A simulated day every 12 s: pre-training, distillation, inference and re-training all show up
# within seconds. Prometheus starts once the demo exports every phase of the life cycle.
"$bin" demo --listen "127.0.0.1:$demo_port" --speed 7200 --table-every 0 >"$work/demo.log" 2>&1 &
demo_pid=$!
pids+=("$demo_pid")
python3 scripts/check_dashboards.py wait-http "http://127.0.0.1:$demo_port/metrics" --timeout 90 --pid "$demo_pid" \
  --contains 'phase="training"' --contains 'phase="inference"' --contains 'phase="retraining"' \
  --contains jobcarbon_inference_carbon_grams_per_request --contains jobcarbon_retraining_pool_grams ||
  { tail -20 "$work/demo.log" >&2; fail "\`jobcarbon demo\` did not serve its life cycle on /metrics (127.0.0.1:$demo_port)"; }
# The real node agent as the DaemonSet runs it. Without a GPU driver or a kubelet here it
# reports 0 GPUs and its NVML and pod-resources errors, and stays up (DESIGN §5).
node_port=$(free_port)
# The address the chart renders for that port ([::]:PORT, dual stack or the IPv4 fallback).
node_listen=$(helm template jobcarbon "$chart" --set nodeAgent.enabled=true --set "nodeAgent.port=$node_port" \
  --show-only templates/node-agent-daemonset.yaml |
  "$kv_python" -c 'import sys, yaml; a = next(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"]; print(a[a.index("--listen") + 1])')
[ "$node_listen" = "[::]:$node_port" ] || fail "the chart renders --listen $node_listen for the node agent, want [::]:$node_port"
"$bin" node --listen "$node_listen" --pod-resources-socket "$work/no-kubelet/kubelet.sock" \
  >"$work/node-agent.log" 2>&1 &
node_pid=$!
pids+=("$node_pid")
python3 scripts/check_dashboards.py wait-http "http://127.0.0.1:$node_port/healthz" --timeout 30 --pid "$node_pid" ||
  { tail -20 "$work/node-agent.log" >&2; fail "\`jobcarbon node --listen $node_listen\` did not answer /healthz on IPv4 (the DaemonSet's probes)"; }
if curl -sf -o /dev/null -g "http://[::1]:$node_port/healthz" 2>/dev/null; then
  echo "ok: the node agent on $node_listen answers on 127.0.0.1 and [::1]"
else
  echo "ok: the node agent on $node_listen answers on 127.0.0.1 (no IPv6 loopback here)"
fi
start_prometheus demo "127.0.0.1:$demo_port" "127.0.0.1:$node_port"
# The demo's sources never fail, and without a GPU the node agent has no per-pod GPU series and
# no successful sample: only those queries may be empty. So may the build-jobs table: a finished
# job's series stop after the grace period, and at 7200x a build job lives for under a second
# of scrapes (the sample-metrics run above requires it to have data).
python3 scripts/check_dashboards.py queries --prometheus "$prom_url" --require-data \
  --allow-empty 'jobcarbon_node_gpu_|jobcarbon_node_last_sample|jobcarbon_source_errors_total|max_over_time\(jobcarbon_workload_asce_grams_total' \
  "$chart"/dashboards/*.json ||
  fail "dashboard queries on the demo's metrics"

# ---------------------------------------------------------------------------------------------
step "hadolint Dockerfile"
hadolint Dockerfile || fail "hadolint Dockerfile"
echo "ok: Dockerfile"

printf '\ncheck-deploy: all deploy checks passed\n'

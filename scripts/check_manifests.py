#!/usr/bin/env python3
"""Checks what kubernetes-validate cannot: the policy the chart promises (called by
scripts/check-deploy.sh on every rendered value set; needs PyYAML, which kubernetes-validate's
environment has).

  check_manifests.py NAME [--write-config FILE] < rendered.yaml
      (--write-config: also write the ledger config the ConfigMap holds, for
      `jobcarbon check-config FILE`)

- hardened pods: seccomp RuntimeDefault, no privilege escalation, read-only root filesystem,
  every capability dropped, never privileged, no host namespaces, requests and limits set;
  non-root except the node agent (documented: the kubelet socket is root-only);
- hostPath volumes mounted read-only;
- least-privilege RBAC: no wildcards, no secrets, writes only to SoftwareProduct status and,
  with leader election, to the release's Lease;
- HA: more than one ledger replica comes with the Lease env, the Lease Role and a PDB;
- the CLI of DESIGN §3/§11: `ledger --config FILE --listen ADDR`, `node --listen ADDR
  --pod-resources-socket PATH`;
- the ConfigMap holds a config with only the keys of DESIGN §11;
- each ServiceMonitor selects a rendered Service and names one of its ports, each PodMonitor
  and NetworkPolicy selects a rendered workload's pods (and names a container port);
- `--listen` is `[::]:PORT` with PORT the container's http-metrics port;
- no mapping key is rendered twice (YAML parsers disagree on which one wins);
- dashboard ConfigMaps hold valid JSON and the sidecar label.
"""

import json
import sys

import yaml

CONFIG_KEYS = {"interval", "prometheus", "energy", "sources", "regions", "nodeRegionLabel", "defaultRegion",
               "systems", "platform", "products", "state", "inference", "exporter"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


class Checker:
    def __init__(self, name):
        self.name = name
        self.errors = []

    def check(self, ok, where, message):
        if not ok:
            self.errors.append(f"{self.name}: {where}: {message}")


class DuplicateKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; the API server may not: reject them."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def objects(stream):
    for doc in yaml.load_all(stream, Loader=DuplicateKeyLoader):
        if doc:
            yield doc


def ident(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def check_pod(c, obj):
    where = ident(obj)
    spec = obj["spec"]["template"]["spec"]
    component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
    pod_sc = spec.get("securityContext", {})
    c.check(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where,
            "pod securityContext.seccompProfile.type must be RuntimeDefault")
    if component == "node-agent" and pod_sc.get("runAsUser") == 0:
        c.check(pod_sc.get("runAsNonRoot") is False, where, "uid 0 needs runAsNonRoot: false")
    else:
        c.check(pod_sc.get("runAsNonRoot") is True, where, "pod must set runAsNonRoot: true")
        c.check(pod_sc.get("runAsUser", 0) != 0, where, "pod must not run as uid 0")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        c.check(not spec.get(host), where, f"{host} must not be set")
    read_only_volumes = {v["name"] for v in spec.get("volumes", []) if "hostPath" in v}
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        cw = f"{where} container {container['name']}"
        sc = container.get("securityContext", {})
        c.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation must be false")
        c.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem must be true")
        c.check(not sc.get("privileged"), cw, "must not be privileged")
        caps = sc.get("capabilities", {})
        c.check("ALL" in caps.get("drop", []), cw, "capabilities.drop must include ALL")
        c.check(not caps.get("add"), cw, "must not add capabilities")
        c.check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", cw,
                "seccompProfile.type must be RuntimeDefault")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for res in ("cpu", "memory"):
                c.check(res in resources.get(kind, {}), cw, f"resources.{kind}.{res} must be set")
        for mount in container.get("volumeMounts", []):
            if mount["name"] in read_only_volumes:
                c.check(mount.get("readOnly") is True, cw, f"hostPath mount {mount['name']} must be readOnly")
        args = container.get("args", [])
        if component == "ledger":
            c.check(args[:1] == ["ledger"] and "--config" in args and "--listen" in args, cw,
                    f"args must be `ledger --config FILE --listen ADDR`, got {args}")
        if component == "node-agent":
            c.check(args[:1] == ["node"] and "--listen" in args and "--pod-resources-socket" in args, cw,
                    f"args must be `node --listen ADDR --pod-resources-socket PATH`, got {args}")
        if "--listen" in args and args.index("--listen") + 1 < len(args):
            ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
            want = f"[::]:{ports.get('http-metrics')}"
            c.check(args[args.index("--listen") + 1] == want, cw,
                    f"--listen must be {want} (every address of the http-metrics port), got {args[args.index('--listen') + 1]}")
    return component, spec


def check_rbac(c, docs):
    for obj in docs:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in obj.get("rules", []):
            where = f"{ident(obj)} rule {rule}"
            for field in ("apiGroups", "resources", "verbs"):
                c.check("*" not in rule.get(field, []), where, f"no wildcard {field}")
            c.check("secrets" not in rule.get("resources", []), where, "must not grant secrets")
            writes = WRITE_VERBS & set(rule.get("verbs", []))
            if writes:
                # tokenreviews/subjectaccessreviews: auth.enabled (create is the only verb they have).
                allowed = ({"softwareproducts/status", "tokenreviews", "subjectaccessreviews"}
                           if obj["kind"] == "ClusterRole" else {"leases"})
                c.check(set(rule.get("resources", [])) <= allowed, where,
                        f"writes ({', '.join(sorted(writes))}) only to {', '.join(sorted(allowed))}")


def main():
    args = sys.argv[1:]
    config_out = None
    if "--write-config" in args:
        i = args.index("--write-config")
        config_out = args[i + 1] if i + 1 < len(args) else sys.exit("--write-config needs a FILE")
        del args[i:i + 2]
    name = args[0] if args else "manifests"
    c = Checker(name)
    try:
        docs = list(objects(sys.stdin))
    except yaml.YAMLError as e:
        sys.exit(f"{name}: rendered manifests are not YAML: {e}")
    kinds = {}
    for obj in docs:
        kinds.setdefault(obj["kind"], []).append(obj)

    check_rbac(c, docs)
    ledger_replicas, leader = 0, False
    for obj in kinds.get("Deployment", []) + kinds.get("StatefulSet", []) + kinds.get("DaemonSet", []):
        component, spec = check_pod(c, obj)
        if component == "ledger":
            ledger_replicas = obj["spec"].get("replicas", 1)
            env = {e["name"] for ct in spec["containers"] for e in ct.get("env", [])}
            leader = "JOBCARBON_LEADER_ELECTION_LEASE" in env
            if ledger_replicas > 1:
                c.check(leader, ident(obj), "more than one replica needs leader election (Lease env)")
            if not leader and obj["kind"] == "Deployment":
                c.check(obj["spec"].get("strategy", {}).get("type") == "Recreate", ident(obj),
                        "without leader election the update strategy must be Recreate (no double booking)")
            # Each replica its own state: a shared ReadWriteOnce claim would block (or corrupt) the second.
            claims = [v for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]
            c.check(ledger_replicas == 1 or not claims, ident(obj),
                    "replicas > 1 must not share a PersistentVolumeClaim (use the StatefulSet's volumeClaimTemplates)")
            if obj["kind"] == "StatefulSet":
                c.check(bool(obj["spec"].get("volumeClaimTemplates")), ident(obj),
                        "a ledger StatefulSet keeps its state in volumeClaimTemplates")
            c.check("JOBCARBON_LEDGER_ID" in env, ident(obj),
                    "the ledger needs JOBCARBON_LEDGER_ID (the `ledger` label its Prometheus restore selects)")
    c.check(ledger_replicas >= 1, "ledger", "no ledger Deployment rendered")
    lease_roles = [r for r in kinds.get("Role", []) if any("leases" in rule.get("resources", []) for rule in r.get("rules", []))]
    c.check(bool(lease_roles) == leader, "Role", "a Lease Role exactly when leader election is on")
    if ledger_replicas > 1:
        c.check(bool(kinds.get("PodDisruptionBudget")), "PodDisruptionBudget", "HA ledger needs a PDB")

    for cm in kinds.get("ConfigMap", []):
        data = cm.get("data", {})
        if "config.yaml" in data:
            if config_out:
                with open(config_out, "w", encoding="utf-8") as f:
                    f.write(data["config.yaml"])
            config = yaml.safe_load(data["config.yaml"])
            c.check(isinstance(config, dict) and set(config) <= CONFIG_KEYS, ident(cm),
                    f"config keys must be those of DESIGN §11, got {sorted(config or {})}")
        for key, value in data.items():
            if key.endswith(".json"):
                try:
                    json.loads(value)
                except json.JSONDecodeError as e:
                    c.errors.append(f"{name}: {ident(cm)} {key}: not JSON: {e}")
                c.check(any(k == "grafana_dashboard" or "dashboard" in k for k in cm["metadata"].get("labels", {})),
                        ident(cm), "dashboard ConfigMap needs the Grafana sidecar label")

    services = kinds.get("Service", [])
    for sm in kinds.get("ServiceMonitor", []):
        selector = sm["spec"]["selector"].get("matchLabels", {})
        matches = [s for s in services if selector.items() <= s["metadata"].get("labels", {}).items()]
        c.check(len(matches) == 1, ident(sm), f"must select exactly one rendered Service, selects {len(matches)}")
        ports = {p.get("name") for s in matches for p in s["spec"]["ports"]}
        for endpoint in sm["spec"].get("endpoints", []):
            c.check(endpoint.get("port") in ports, ident(sm), f"endpoint port {endpoint.get('port')!r} not in {sorted(ports)}")

    pods = [(o["spec"]["template"]["metadata"].get("labels", {}), o["spec"]["template"]["spec"])
            for o in kinds.get("Deployment", []) + kinds.get("StatefulSet", []) + kinds.get("DaemonSet", [])]
    for pm in kinds.get("PodMonitor", []):
        selector = pm["spec"]["selector"].get("matchLabels", {})
        matches = [spec for labels, spec in pods if selector.items() <= labels.items()]
        c.check(len(matches) == 1, ident(pm), f"must select the pods of exactly one rendered workload, selects {len(matches)}")
        ports = {p.get("name") for spec in matches for ct in spec["containers"] for p in ct.get("ports", [])}
        for endpoint in pm["spec"].get("podMetricsEndpoints", []):
            c.check(endpoint.get("port") in ports, ident(pm), f"endpoint port {endpoint.get('port')!r} not in {sorted(ports)}")
    for np in kinds.get("NetworkPolicy", []):
        selector = np["spec"]["podSelector"].get("matchLabels", {})
        matches = [spec for labels, spec in pods if selector.items() <= labels.items()]
        c.check(len(matches) == 1, ident(np), f"must select the pods of exactly one rendered workload, selects {len(matches)}")

    for error in c.errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if c.errors:
        return 1
    print(f"manifests: {name}: {len(docs)} objects hardened, least-privilege and consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks the Grafana dashboards with the real tools (called by scripts/check-deploy.sh).

  check_dashboards.py typecheck DASHBOARD.json...
      Type-checks every dashboard against @grafana/schema with tsc: the dashboard must satisfy
      `Dashboard`, each panel the `Panel<Options, FieldConfig>` of its plugin (timeseries, stat,
      table, ...), so a misspelt option or a wrong enum value fails.

  check_dashboards.py wait-scrapes --prometheus URL --job JOB [--scrapes N]
  check_dashboards.py wait-http URL [--pid PID] [--contains TEXT]...
      Helpers for the script: wait for a Prometheus to hold N scrapes, for a server to answer.

  check_dashboards.py rules-health --prometheus URL
      Every rule loaded in that Prometheus has been evaluated, without error.

  check_dashboards.py queries --prometheus URL [--require-data] DASHBOARD.json...
      Runs every panel query and every template-variable query through the Prometheus HTTP
      API, with the template variables set to "All". Any error fails. An empty result fails
      with --require-data (unless the query matches --allow-empty), and is reported otherwise.

  check_dashboards.py policy DASHBOARD.json...
      What a platform team expects on first read: a unit on every panel, and the right one for
      what the query computes (g, kg, t, g/h, g/kWh, W, J, s); `cluster` and `job` variables that
      every jobcarbon query honours; `__inputs` so that an import asks for the data source; no
      `max by (...) (up)` hiding a dead target, and a count of the targets that are down.

  check_dashboards.py replicas --prometheus URL --instance INSTANCE DASHBOARD.json...
      On a Prometheus that scrapes the same exporter as two replicas (HA ledger), every query of
      a gauge (EPC, pools, intensity, PUE, tracked pods, grams per request) must give what it
      gives on the one replica INSTANCE: gauges are maxed over replicas, never summed.

Standard library only, so it runs wherever python3 does.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# Panel plugin -> the module of @grafana/schema that types its options and field config.
PANEL_TYPES = {
    "timeseries": ("TimeSeries", True),
    "stat": ("Stat", False),
    "table": ("Table", True),
    "bargauge": ("BarGauge", False),
    "gauge": ("Gauge", False),
    "piechart": ("PieChart", True),
    "text": ("Text", False),
    "barchart": ("BarChart", True),
    "heatmap": ("Heatmap", True),
    "nodegraph": ("NodeGraph", False),
}

# The schema's enums are TypeScript string enums, to which a JSON string literal is not
# assignable: Json<T> is T with every string enum replaced by the union of its values, so the
# dashboard JSON is checked against exactly the values Grafana accepts.
JSON_TYPE = """
type Json<T> = T extends string
  ? string extends T ? string : `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;
// The schema's Panel<TOptions> leaves `options` as Record<string, unknown>: type it.
type PluginPanel<O, F = Record<string, unknown>> = Omit<Panel<O, F>, 'options'> & { options?: O };
"""
PANELS_SLOT = "@@panels@@"
IMPORT_KEYS = ("__inputs", "__requires", "__elements")

# What the template variables stand for when the queries run: "All" for the dashboard's own
# variables, and what Grafana would substitute for its built-ins on a short range.
SUBSTITUTIONS = {
    "cluster": ".*",
    "job": ".*",
    "namespace": ".*",
    "product": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"{path}: cannot read dashboard JSON: {e}")


def all_panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


# ---------------------------------------------------------------------------------------------
# typecheck


def panel_module(plugin):
    name, _ = PANEL_TYPES[plugin]
    return (f"@grafana/schema/dist/esm/raw/composable/{plugin}/panelcfg/x/"
            f"{name}PanelCfg_types.gen")


def ts_panel(panel, path, imports):
    body = json.dumps(panel, indent=2, ensure_ascii=False)
    plugin = panel.get("type")
    if plugin == "row":
        return f"({body} satisfies Json<RowPanel>)"
    if plugin not in PANEL_TYPES:
        sys.exit(f"{path}: panel {panel.get('title')!r}: type {plugin!r} has no schema mapping in "
                 f"scripts/check_dashboards.py (known: {', '.join(sorted(PANEL_TYPES))})")
    alias = PANEL_TYPES[plugin][0]
    has_field_config = PANEL_TYPES[plugin][1]
    if has_field_config:
        imports.add(f"import type {{ Options as {alias}Options, FieldConfig as {alias}FieldConfig }} "
                    f"from '{panel_module(plugin)}';")
        return f"({body} satisfies Json<PluginPanel<{alias}Options, {alias}FieldConfig>>)"
    imports.add(f"import type {{ Options as {alias}Options }} from '{panel_module(plugin)}';")
    return f"({body} satisfies Json<PluginPanel<{alias}Options>>)"


def typecheck(paths, node_modules):
    if not os.path.isdir(os.path.join(node_modules, "@grafana", "schema")):
        sys.exit(f"@grafana/schema not found under {node_modules}: run scripts/install-tools.sh")
    tsc = os.path.join(node_modules, ".bin", "tsc")
    work = tempfile.mkdtemp(prefix="jobcarbon-dash-ts-")
    try:
        os.symlink(node_modules, os.path.join(work, "node_modules"))
        files = []
        for path in paths:
            dashboard = load(path)
            # __inputs/__requires/__elements are import metadata (what Grafana's import asks
            # for), read by the import and not part of the dashboard model.
            dashboard = {k: v for k, v in dashboard.items() if k not in IMPORT_KEYS}
            imports = {"import type { Dashboard, Panel, RowPanel } from '@grafana/schema';"}
            # One object literal (no spread), so that tsc's excess-property check sees every key.
            panels = ",\n".join(ts_panel(p, path, imports) for p in dashboard.get("panels", []))
            literal = json.dumps(dict(dashboard, panels=PANELS_SLOT), indent=2, ensure_ascii=False)
            literal = literal.replace(json.dumps(PANELS_SLOT), f"[\n{panels}\n]")
            source = ("\n".join(sorted(imports)) + "\n" + JSON_TYPE + "\n"
                      f"// {path}\n"
                      f"export const dashboard = {literal} satisfies Json<Dashboard>;\n")
            name = os.path.basename(path).replace(".json", ".ts")
            with open(os.path.join(work, name), "w", encoding="utf-8") as f:
                f.write(source)
            files.append(name)
        with open(os.path.join(work, "tsconfig.json"), "w", encoding="utf-8") as f:
            json.dump({"compilerOptions": {"strict": True, "noEmit": True, "target": "es2022",
                                           "module": "esnext", "moduleResolution": "bundler",
                                           "skipLibCheck": True, "exactOptionalPropertyTypes": False},
                       "files": files}, f)
        result = subprocess.run([tsc, "-p", work], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # tsc names the generated file and line; say which dashboard it came from.
            print(result.stdout + result.stderr, file=sys.stderr)
            print(f"dashboards: tsc against @grafana/schema failed (generated sources kept in {work})",
                  file=sys.stderr)
            return 1
        print(f"dashboards: {len(paths)} dashboards type-check against @grafana/schema")
        shutil.rmtree(work)
        return 0
    except BaseException:
        raise


# ---------------------------------------------------------------------------------------------
# queries


def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in SUBSTITUTIONS:
            raise KeyError(name)
        return SUBSTITUTIONS[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def api(prometheus, path, params):
    url = f"{prometheus}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except json.JSONDecodeError:
            return None, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return None, f"Prometheus at {prometheus} unreachable: {e}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body.get("data"), None


def run_target(prometheus, expr, instant, now):
    if instant:
        data, error = api(prometheus, "/api/v1/query", {"query": expr, "time": now})
    else:
        data, error = api(prometheus, "/api/v1/query_range",
                          {"query": expr, "start": now - 300, "end": now, "step": 15})
    if error:
        return None, error
    result = data.get("result")
    empty = not result if isinstance(result, list) else result is None
    return empty, None


def run_variable(prometheus, variable):
    query = variable.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", query or "")
    if not m:
        return None, f"unsupported variable query {query!r} (expected label_values(selector, label))"
    selector, label = substitute(m.group(1)), m.group(2)
    data, error = api(prometheus, f"/api/v1/label/{label}/values", {"match[]": selector})
    if error:
        return None, error
    return not data, None


def queries(paths, prometheus, require_data, allow_empty):
    now = time.time()
    failures, empties, count = [], [], 0
    for path in paths:
        dashboard = load(path)
        name = os.path.basename(path)
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            count += 1
            where = f"{name}: variable ${variable.get('name')}"
            empty, error = run_variable(prometheus, variable)
            if error:
                failures.append(f"{where}: {error}")
            elif empty:
                empties.append((where, False))
        for panel in all_panels(dashboard):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr:
                    continue
                count += 1
                where = f"{name}: panel {panel.get('title')!r} query {target.get('refId')}"
                try:
                    promql = substitute(expr)
                except KeyError as e:
                    failures.append(f"{where}: unknown template variable ${e.args[0]} in {expr!r}")
                    continue
                empty, error = run_target(prometheus, promql, bool(target.get("instant")), now)
                if error:
                    failures.append(f"{where}: {error}\n    query: {promql}")
                elif empty:
                    empties.append((f"{where}\n    query: {promql}",
                                    bool(allow_empty and re.search(allow_empty, promql))))
    missing = [e for e, allowed in empties if require_data and not allowed]
    for empty, allowed in empties:
        if require_data and not allowed:
            print(f"ERROR: no data: {empty}", file=sys.stderr)
        else:
            print(f"note: no data (allowed): {empty}")
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    if failures or missing:
        print(f"dashboards: {len(failures)} failed and {len(empties)} empty of {count} queries "
              f"against {prometheus}", file=sys.stderr)
        return 1
    print(f"dashboards: {count} queries ran without error against {prometheus}"
          f" ({count - len(empties)} with data)")
    return 0


# ---------------------------------------------------------------------------------------------
# policy

MASS_UNITS = {"massmg", "massg", "masskg", "masst"}
# Gauges: one value per replica of the ledger, identical on every replica.
GAUGES = ("jobcarbon_product_epc_grams", "jobcarbon_retraining_pool_grams", "jobcarbon_grid_intensity_grams_per_kwh",
          "jobcarbon_pue", "jobcarbon_tracked_pods", "jobcarbon_inference_carbon_grams_per_request")
SELECTOR = re.compile(r"(jobcarbon[:_][a-zA-Z0-9_:]+)(\{([^}]*)\})?")


def expected_units(expr):
    """The units a query's result may carry, from what it computes; None: any unit but none."""
    hourly = re.search(r"\*\s*3600\b", expr)
    if "grams_per_kwh" in expr:
        return {"suffix: g/kWh", "suffix:g/kWh"}, "g/kWh"
    if "grams" in expr and hourly:
        return {"suffix: g/h", "suffix:g/h", "suffix: kg/h", "suffix:kg/h"}, "g/h"
    if "grams" in expr and "/" not in expr.replace("grams_per", ""):
        return MASS_UNITS, "a mass (g, kg, t)"
    if "joules" in expr:
        if re.search(r"\brate\(", expr):
            return {"watt", "kwatt"}, "W (rate of joules)"
        if re.search(r"\bincrease\(", expr):
            return {"joule", "watth", "kwatth"}, "J or Wh (increase of joules)"
    if "_watts" in expr:
        return {"watt", "kwatt"}, "W"
    if re.search(r"_seconds(\b|\{)", expr) and "errors" not in expr:
        return {"s", "ms", "dtdurations", "dtdurationms"}, "a duration"
    return None, None


def panel_unit(panel, ref_id):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byFrameRefID" and matcher.get("options") == ref_id:
            for prop in override.get("properties", []):
                if prop.get("id") == "unit":
                    unit = prop.get("value")
    return unit


def policy(paths):
    errors = []
    for path in paths:
        dashboard = load(path)
        name = os.path.basename(path)
        variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
        for var in ("cluster", "job"):
            v = variables.get(var)
            if not v or v.get("type") != "query" or not v.get("includeAll") or v.get("allValue") != ".*":
                errors.append(f"{name}: no `{var}` query variable with All = .* (multi-cluster, per-job views)")
        inputs = [i for i in dashboard.get("__inputs", []) if i.get("type") == "datasource" and i.get("pluginId") == "prometheus"]
        if not inputs:
            errors.append(f"{name}: no __inputs for a Prometheus data source: an imported dashboard cannot ask for one")
        elif "${" + inputs[0]["name"] + "}" not in json.dumps({k: v for k, v in dashboard.items() if k != "__inputs"}):
            errors.append(f"{name}: __inputs {inputs[0]['name']} is never used (${{{inputs[0]['name']}}})")
        for panel in all_panels(dashboard):
            if panel.get("type") in ("row", "text"):
                continue
            title = f"{name}: panel {panel.get('title')!r}"
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            if not unit or unit == "none":
                errors.append(f"{title}: no unit (fieldConfig.defaults.unit is {unit!r})")
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                allowed, what = expected_units(expr)
                got = panel_unit(panel, target.get("refId"))
                if allowed is not None and got not in allowed:
                    errors.append(f"{title} query {target.get('refId')}: computes {what} but has unit {got!r}")
                if re.search(r"\bmax\s+by\s*\([^)]*\)\s*\(\s*up\b", expr):
                    errors.append(f"{title}: `max by (...) (up)` hides a dead target among live ones: count the down ones")
                for m in SELECTOR.finditer(expr):
                    matchers = m.group(3) or ""
                    need = ["cluster=~\"$cluster\""] + ([] if m.group(1).startswith("jobcarbon:") else ["job=~\"$job\""])
                    for n in need:
                        if n not in matchers:
                            errors.append(f"{title}: {m.group(1)} without {n}")
                for gauge in GAUGES:
                    if re.search(r"\bsum\s*(by\s*\([^)]*\)\s*)?\(\s*" + gauge + r"\b", expr):
                        errors.append(f"{title}: sums the gauge {gauge} over replicas (doubles with HA): use max")
    all_exprs = [t.get("expr", "") for p in paths for panel in all_panels(load(p)) for t in panel.get("targets", [])]
    if not any(re.search(r"\b(sum|count)\b.*\bup\{[^}]*\}\s*==\s*(bool\s+)?0", e) for e in all_exprs):
        errors.append("no panel counts the scrape targets that are down (sum/count of up == 0)")
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"dashboards: {len(paths)} dashboards: units, cluster/job variables, __inputs, down-target counts, gauges maxed")
    return 0


def with_instance(expr, instance):
    def repl(m):
        body = m.group(3)
        matcher = f'instance="{instance}"'
        if m.group(1).startswith("jobcarbon:"):
            return m.group(0)
        return f"{m.group(1)}{{{matcher}, {body}}}" if body else f"{m.group(1)}{{{matcher}}}"
    return SELECTOR.sub(repl, expr)


def instant(prometheus, expr, now):
    data, error = api(prometheus, "/api/v1/query", {"query": expr, "time": now})
    if error:
        return None, error
    out = {}
    for r in data.get("result", []):
        labels = tuple(sorted((k, v) for k, v in r["metric"].items() if k != "instance"))
        out[labels] = float(r["value"][1])
    return out, None


def replicas(paths, prometheus, instance):
    now = time.time()
    errors, count = [], 0
    for path in paths:
        name = os.path.basename(path)
        for panel in all_panels(load(path)):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if not any(g in expr for g in GAUGES):
                    continue
                count += 1
                where = f"{name}: panel {panel.get('title')!r} query {target.get('refId')}"
                promql = substitute(expr)
                both, e1 = instant(prometheus, promql, now)
                one, e2 = instant(prometheus, with_instance(promql, instance), now)
                if e1 or e2:
                    errors.append(f"{where}: {e1 or e2}")
                elif not one:
                    errors.append(f"{where}: no data on replica {instance}\n    query: {promql}")
                elif both != one:
                    diff = [f"{dict(k)}: {both.get(k)} with two replicas, {one.get(k)} with one"
                            for k in sorted(set(both) | set(one)) if both.get(k) != one.get(k)][:3]
                    errors.append(f"{where}: depends on the number of replicas: {'; '.join(diff)}\n    query: {promql}")
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors or not count:
        print(f"dashboards: {len(errors)} of {count} gauge queries change with a second replica", file=sys.stderr)
        return 1
    print(f"dashboards: {count} gauge queries give the same values with two ledger replicas as with one")
    return 0


def wait_scrapes(prometheus, job, scrapes, timeout):
    """Waits until Prometheus holds `scrapes` successful scrapes of `job`."""
    query = f'count_over_time(up{{job="{job}"}}[5m]) and on () up{{job="{job}"}} == 1'
    deadline = time.time() + timeout
    got = 0
    while time.time() < deadline:
        data, _ = api(prometheus, "/api/v1/query", {"query": query})
        result = (data or {}).get("result") or []
        got = int(float(result[0]["value"][1])) if result else 0
        if got >= scrapes:
            print(f"prometheus: {got} scrapes of job {job} on {prometheus}")
            return 0
        time.sleep(0.5)
    print(f"ERROR: Prometheus at {prometheus} holds {got} successful scrapes of job {job} "
          f"after {timeout} s (wanted {scrapes})", file=sys.stderr)
    return 1


def alive(pid):
    """A child the shell has not reaped yet is a zombie: exited, though kill(pid, 0) works."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_http(url, timeout, pid, contains):
    """Waits until `url` answers 200 with a body holding every string of `contains`; gives up
    early when process `pid` has exited."""
    deadline = time.time() + timeout
    missing = contains
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode("utf-8", "replace")
                missing = [c for c in contains if c not in body]
                if response.status == 200 and not missing:
                    return 0
        except (urllib.error.URLError, OSError):
            pass
        if pid and not alive(pid):
            print(f"ERROR: process {pid} exited before {url} answered", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"ERROR: {url} did not answer 200 within {timeout} s"
          + (f" with {', '.join(missing)}" if missing else ""), file=sys.stderr)
    return 1


def rules_health(prometheus):
    data, error = api(prometheus, "/api/v1/rules", {})
    if error:
        print(f"ERROR: rules: {error}", file=sys.stderr)
        return 1
    rules = [r for g in data["groups"] for r in g["rules"]]
    bad = [f"{r.get('name')}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
    if not rules or bad:
        print("ERROR: rules not evaluating cleanly on " + prometheus + ":\n  " + "\n  ".join(bad or ["no rules loaded"]),
              file=sys.stderr)
        return 1
    print(f"rules: {len(rules)} rules evaluate without error on {prometheus}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tc = sub.add_parser("typecheck")
    tc.add_argument("--node-modules", required=True,
                    help="node_modules holding @grafana/schema and typescript")
    tc.add_argument("dashboards", nargs="+")
    q = sub.add_parser("queries")
    q.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    q.add_argument("--require-data", action="store_true",
                   help="fail on a query that returns no data")
    q.add_argument("--allow-empty", default="",
                   help="with --require-data: a regex; queries matching it may return no data")
    q.add_argument("dashboards", nargs="+")
    po = sub.add_parser("policy", help="units, variables, __inputs, down-target counts, gauges maxed")
    po.add_argument("dashboards", nargs="+")
    rp = sub.add_parser("replicas", help="gauge queries do not change with a second replica")
    rp.add_argument("--prometheus", required=True)
    rp.add_argument("--instance", required=True, help="the instance label of one replica")
    rp.add_argument("dashboards", nargs="+")
    rh = sub.add_parser("rules-health", help="every loaded rule evaluated without error")
    rh.add_argument("--prometheus", required=True)
    ws = sub.add_parser("wait-scrapes", help="wait until Prometheus holds N scrapes of a job")
    ws.add_argument("--prometheus", required=True)
    ws.add_argument("--job", required=True)
    ws.add_argument("--scrapes", type=int, default=4)
    ws.add_argument("--timeout", type=float, default=60)
    wh = sub.add_parser("wait-http", help="wait until a URL answers 200")
    wh.add_argument("url")
    wh.add_argument("--timeout", type=float, default=60)
    wh.add_argument("--pid", type=int, default=0, help="give up when this process exits")
    wh.add_argument("--contains", action="append", default=[],
                    help="wait until the body holds this string (repeatable)")
    args = parser.parse_args()
    if args.command == "wait-scrapes":
        return wait_scrapes(args.prometheus.rstrip("/"), args.job, args.scrapes, args.timeout)
    if args.command == "wait-http":
        return wait_http(args.url, args.timeout, args.pid, args.contains)
    if args.command == "rules-health":
        return rules_health(args.prometheus.rstrip("/"))
    if args.command == "policy":
        return policy(args.dashboards)
    if args.command == "replicas":
        return replicas(args.dashboards, args.prometheus.rstrip("/"), args.instance)
    if args.command == "typecheck":
        return typecheck(args.dashboards, args.node_modules)
    return queries(args.dashboards, args.prometheus.rstrip("/"), args.require_data, args.allow_empty)


if __name__ == "__main__":
    sys.exit(main())

// jobcarbon web view: fetches the JSON API and renders tables and SVG. No dependencies.
"use strict";
const TERMS = ["operational", "embodied_system", "platform_operational", "platform_embodied", "model_epc", "retraining"];
const COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");

function grams(g) {
  const a = Math.abs(g);
  if (a >= 1e6) return (g / 1e6).toPrecision(4) + " t";
  if (a >= 1e3) return (g / 1e3).toPrecision(4) + " kg";
  if (a >= 1) return g.toPrecision(4) + " g";
  return (g * 1e3).toPrecision(3) + " mg";
}
const kwh = (j) => (j / 3.6e6).toPrecision(4) + " kWh";

async function getJson(path) {
  // Same-origin credentials: with `--auth` the browser must reach the ledger through something
  // that adds `Authorization: Bearer …` (docs/deploy.md, Authentication).
  const r = await fetch(path, { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error + (body.parameter ? " (" + body.parameter + ")" : ""));
  return body;
}

function table(el, columns, rows, sort) {
  const head = "<tr>" + columns.map((c, i) => `<th class="${c.text ? "t" : ""}" data-i="${i}">${esc(c.name)}</th>`).join("") + "</tr>";
  const body = rows.map((r) => "<tr>" + columns.map((c) => `<td class="${c.text ? "t" : ""}">${esc(c.show ? c.show(r) : c.get(r))}</td>`).join("") + "</tr>").join("");
  el.innerHTML = head + body;
  if (sort) el.querySelectorAll("th").forEach((th) => th.onclick = () => sort(columns[+th.dataset.i]));
}

// Workloads: sortable, filtered by namespace and phase, paginated.
const W = { rows: [], key: null, desc: true, page: 0 };
const WCOLS = [
  { name: "namespace", text: true, get: (w) => w.namespace },
  { name: "workload", text: true, get: (w) => w.workload },
  { name: "pod", text: true, get: (w) => w.pod ?? (w.retired_at ? `(${w.pods} done, series stopped)` : `(${w.pods} finished)`) },
  { name: "phase", text: true, get: (w) => w.phase },
  { name: "product", text: true, get: (w) => w.product ?? "" },
  { name: "energy", get: (w) => w.energy_j.total, show: (w) => kwh(w.energy_j.total) },
  { name: "JSC", get: (w) => w.jsc_g, show: (w) => grams(w.jsc_g) },
  { name: "ASCe", get: (w) => w.asce_g, show: (w) => grams(w.asce_g) },
];
function renderWorkloads() {
  const ns = $("fns").value, phase = $("fphase").value, per = +$("fpage").value;
  let rows = W.rows.filter((w) => (!ns || w.namespace === ns) && (!phase || w.phase === phase));
  if (W.key) {
    const get = W.key.get, sign = W.desc ? -1 : 1;
    rows = rows.slice().sort((a, b) => (get(a) < get(b) ? -1 : get(a) > get(b) ? 1 : 0) * sign);
  }
  const pages = Math.max(1, Math.ceil(rows.length / per));
  W.page = Math.min(W.page, pages - 1);
  table($("workloads"), WCOLS, rows.slice(W.page * per, (W.page + 1) * per), (col) => {
    W.desc = W.key === col ? !W.desc : true; W.key = col; renderWorkloads();
  });
  $("pager").innerHTML = `<button type="button" id="prev">&lt;</button> page ${W.page + 1} / ${pages} (${rows.length}) <button type="button" id="next">&gt;</button>`;
  $("prev").onclick = () => { W.page = Math.max(0, W.page - 1); renderWorkloads(); };
  $("next").onclick = () => { W.page += 1; renderWorkloads(); };
}
function options(select, values) {
  const keep = select.value;
  select.innerHTML = '<option value="">all</option>' + [...new Set(values)].sort().map((v) => `<option>${esc(v)}</option>`).join("");
  select.value = keep;
}

function renderProducts(products) {
  table($("products"), [
    { name: "product", text: true, get: (p) => p.name },
    { name: "type", text: true, get: (p) => p.type },
    { name: "EPC", get: (p) => grams(p.epc_g) },
    { name: "measured", get: (p) => grams(p.measured_g) },
    { name: "inherited", get: (p) => grams(p.inherited_g) },
    { name: "declared", get: (p) => grams(p.declared_g) },
  ], products);
  $("lineage").innerHTML = lineage(products);
  table($("inference"), [
    { name: "model", text: true, get: (p) => p.name },
    { name: "per inference (window)", get: (p) => grams(p.grams_per_request) },
    { name: "requests", get: (p) => Math.round(p.requests_total) },
    { name: "inference total", get: (p) => grams(p.inference_grams_total) },
  ], products.filter((p) => p.grams_per_request != null));
}

// Lineage: products in columns by depth (parents left), an arrow per edge with its weight.
function lineage(products) {
  const byName = new Map(products.map((p) => [p.name, p]));
  const depth = new Map();
  const depthOf = (name, seen = new Set()) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle is refused by the ledger; never loop here
    seen.add(name);
    const parents = byName.get(name)?.parents ?? [];
    const d = parents.length ? 1 + Math.max(...parents.map((e) => depthOf(e.product, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  const names = [...new Set(products.flatMap((p) => [p.name, ...p.parents.map((e) => e.product)]))];
  if (!products.some((p) => p.parents.length)) return "";
  const columns = [];
  names.forEach((n) => (columns[depthOf(n)] ??= []).push(n));
  const pos = new Map(), W = 170, H = 54, top = 60;
  columns.forEach((col, x) => col.forEach((n, y) => pos.set(n, [20 + x * (W + 60), top + y * (H + 20)])));
  const width = 40 + columns.length * (W + 60), height = top + 20 + Math.max(...columns.map((c) => c.length)) * (H + 20);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" id="lineage-graph" width="${width}" height="${height}" font-size="11">`;
  svg += '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z"/></marker></defs>';
  products.forEach((p) => p.parents.forEach((e) => {
    const [px, py] = pos.get(e.product), [cx, cy] = pos.get(p.name);
    const x1 = px + W, y1 = py + H / 2, x2 = cx, y2 = cy + H / 2;
    // Edges that skip a column arc over the boxes in between.
    const lift = x2 - x1 > W + 60 ? H : 0;
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2 - lift - 4;
    svg += `<path class="edge" d="M${x1},${y1} Q${mx},${(y1 + y2) / 2 - 2 * lift} ${x2},${y2}" fill="none" stroke="#555" marker-end="url(#arrow)"/>`;
    svg += `<text x="${mx}" y="${my}" text-anchor="middle" font-size="10">${esc(e.via)} × ${e.weight}</text>`;
  }));
  names.forEach((n) => {
    const [x, y] = pos.get(n), p = byName.get(n);
    svg += `<g class="product"><rect x="${x}" y="${y}" width="${W}" height="${H}" rx="6" fill="${p?.type === "dataset" ? "#e8f4e8" : "#e8eef8"}" stroke="#888"/>`;
    svg += `<text x="${x + 8}" y="${y + 18}" font-weight="bold">${esc(n)}</text>`;
    if (p) svg += `<text x="${x + 8}" y="${y + 34}">EPC ${grams(p.epc_g)}</text><text x="${x + 8}" y="${y + 48}">inherited ${grams(p.inherited_g)}</text>`;
    svg += "</g>";
  });
  return svg + "</svg>";
}

// Allocation: stacked bars by term per group (one bar per step when a step is given).
function chart(items, label) {
  const width = 860, bar = 22, pad = 300, height = items.length * (bar + 6) + 10;
  const max = Math.max(1e-12, ...items.map((i) => TERMS.reduce((s, t) => s + Math.max(0, i.terms[t]), 0)));
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img">`;
  items.forEach((it, row) => {
    let x = pad; const y = 5 + row * (bar + 6);
    const name = label(it);
    svg += `<text x="${pad - 6}" y="${y + bar * 0.7}" text-anchor="end" font-size="11">${esc(name.length > 48 ? name.slice(0, 47) + "…" : name)}</text>`;
    TERMS.forEach((t, k) => {
      const w = Math.max(0, it.terms[t]) / max * (width - pad - 90);
      if (w > 0) svg += `<rect x="${x}" y="${y}" width="${w}" height="${bar}" fill="${COLOURS[k]}"><title>${t}: ${grams(it.terms[t])}</title></rect>`;
      x += w;
    });
    svg += `<text x="${x + 4}" y="${y + bar * 0.7}" font-size="11">${grams(it.asce_g)}</text>`;
  });
  const legend = TERMS.map((t, k) => `<span><i style="background:${COLOURS[k]}"></i>${t}</span>`).join("");
  return svg + `</svg><div class="legend">${legend}</div>`;
}
const keyText = (item) => Object.values(item.key).map((v) => v ?? "-").join(" / ");

async function queryAllocation(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams({ window: $("awindow").value, aggregate: $("aby").value });
  if ($("astep").value) params.set("step", $("astep").value);
  $("acsv").href = "/api/v1/allocation?" + params + "&format=csv";
  try {
    const a = await getJson("/api/v1/allocation?" + params);
    $("aerr").textContent = "";
    const rows = a.steps ? a.steps.flatMap((s) => s.items.map((i) => ({ ...i, step: s.window.start }))) : a.items;
    $("achart").innerHTML = a.steps
      ? chart(a.steps.map((s) => ({ ...s.total, key: { step: s.window.start } })), keyText)
      : chart(a.items.slice(0, 30), keyText);
    const cols = [{ name: "key", text: true, get: keyText }];
    if (a.steps) cols.unshift({ name: "step", text: true, get: (i) => i.step });
    table($("allocation"), cols.concat([
      { name: "energy", get: (i) => kwh(i.energy_j) },
      { name: "JSC", get: (i) => grams(i.jsc_g) },
      { name: "ASC", get: (i) => grams(i.asc_g) },
      { name: "JSCe", get: (i) => grams(i.jsce_g) },
      { name: "ASCe", get: (i) => grams(i.asce_g) },
    ]), rows.concat(Object.entries(a.unallocated).map(([r, g]) => ({ key: { unallocated: r }, energy_j: 0, jsc_g: 0, asc_g: 0, jsce_g: 0, asce_g: g }))));
    return a;
  } catch (e) {
    $("aerr").textContent = e.message;
  }
}

async function refresh() {
  try {
    const [w, p, all] = await Promise.all([
      getJson("/api/v1/workloads"), getJson("/api/v1/products"),
      getJson("/api/v1/allocation?window=0,4102444800&aggregate=phase"),
    ]);
    W.rows = w.workloads;
    options($("fns"), W.rows.map((x) => x.namespace));
    options($("fphase"), W.rows.map((x) => x.phase));
    renderWorkloads();
    renderProducts(p.products);
    const t = all.total;
    $("totals").innerHTML = [["energy", kwh(t.energy_j)], ["JSC", grams(t.jsc_g)], ["ASC", grams(t.asc_g)],
      ["JSCe", grams(t.jsce_g)], ["ASCe (jobs)", grams(t.asce_g - t.unallocated_g)], ["unallocated", grams(t.unallocated_g)]]
      .map(([k, v]) => `<div class="card">${k}<b>${v}</b></div>`).join("");
  } catch (e) {
    $("totals").innerHTML = `<p class="err">${esc(e.message)}</p>`;
  }
}

["fns", "fphase", "fpage"].forEach((id) => $(id).onchange = () => { W.page = 0; renderWorkloads(); });
$("aform").onsubmit = queryAllocation;
refresh().then(() => queryAllocation());
setInterval(refresh, 10000);

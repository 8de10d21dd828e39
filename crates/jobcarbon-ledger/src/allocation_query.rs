//! `/api/v1/allocation` without the HTTP: parse the parameters, aggregate what was booked over
//! the window (and its steps) from the [`AllocationHistory`] or from Prometheus
//! (`crate::allocation_prom` produces the same [`Sums`]), render JSON or CSV. Pure, so the
//! exporter stays a thin adapter and tests need no server.
//!
//! Σ items + Σ unallocated = total, per window and per step: `total.asce_g` includes the
//! unallocated grams (also given alone as `total.unallocated_g`); the other total fields sum
//! the items.

use crate::history::{AllocationHistory, AllocationKey, Amounts, Sums};
use jobcarbon_core::{Grams, Seconds, Terms, UnallocatedReason};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Steps one query may ask for (a `1h` step over a year would be 8760 slices).
pub(crate) const MAX_STEPS: usize = 1000;

/// A parameter the caller got wrong: answered as 400 `{"error", "parameter"}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The query parameter at fault.
    pub parameter: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(parameter: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

/// What a query may aggregate by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// By namespace.
    Namespace,
    /// By workload (`Kind/name`).
    Workload,
    /// By phase (training, inference, ...).
    Phase,
    /// By software product.
    Product,
}

impl Field {
    /// Every field, in label order.
    pub const ALL: [Field; 4] = [
        Field::Namespace,
        Field::Workload,
        Field::Phase,
        Field::Product,
    ];
    /// The field's name as a query value and JSON key.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Namespace => "namespace",
            Field::Workload => "workload",
            Field::Phase => "phase",
            Field::Product => "product",
        }
    }
    fn of(self, key: &AllocationKey) -> Option<String> {
        match self {
            Field::Namespace => Some(key.namespace.clone()),
            Field::Workload => Some(key.workload.clone()),
            Field::Phase => Some(key.phase.clone()),
            Field::Product => key.product.clone(),
        }
    }
}

/// `json` (default) or `csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// JSON (the default).
    Json,
    /// CSV, one row per aggregate and step.
    Csv,
}

/// A parsed `/api/v1/allocation` request.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationQuery {
    /// Window start, seconds since the Unix epoch.
    pub start: Seconds,
    /// Window end, seconds since the Unix epoch.
    pub end: Seconds,
    /// Fields to group by (empty: one total).
    pub aggregate: Vec<Field>,
    /// Step length for a time series; `None` for one window.
    pub step: Option<Seconds>,
    /// Answer format.
    pub format: OutputFormat,
}

/// A positive duration such as `30m`, `24h`, `7d`.
pub(crate) fn parse_duration(text: &str) -> Option<Seconds> {
    jobcarbon_core::quantity::parse::<Seconds>(text)
        .ok()
        .filter(|s| s.value() > 0.0 && s.is_finite())
}

/// An instant: Unix seconds, or RFC 3339 (`2026-01-01T00:00:00Z`).
pub fn parse_instant(text: &str) -> Option<Seconds> {
    let text = text.trim();
    if let Ok(unix) = text.parse::<f64>() {
        return unix.is_finite().then_some(Seconds(unix));
    }
    let ts: jiff::Timestamp = text.parse().ok()?;
    Some(Seconds(ts.as_nanosecond() as f64 / 1e9))
}

/// RFC 3339 UTC of an instant (fractional seconds only when there are some).
pub(crate) fn format_instant(at: Seconds) -> String {
    let nanos = (at.value() * 1e9).round() as i128;
    jiff::Timestamp::from_nanosecond(nanos)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| format!("{}", at.value()))
}

/// `window`: a duration ending at `now`, or `start,end`.
pub(crate) fn parse_window(text: &str, now: Seconds) -> Result<(Seconds, Seconds), ParamError> {
    let (start, end) = match text.split_once(',') {
        Some((a, b)) => {
            let start = parse_instant(a).ok_or_else(|| {
                bad(
                    "window",
                    format!("{a:?} is neither RFC 3339 nor Unix seconds"),
                )
            })?;
            let end = parse_instant(b).ok_or_else(|| {
                bad(
                    "window",
                    format!("{b:?} is neither RFC 3339 nor Unix seconds"),
                )
            })?;
            (start, end)
        }
        None => {
            let length = parse_duration(text).ok_or_else(|| {
                bad(
                    "window",
                    format!("{text:?} is not a duration (30m, 24h, 7d) nor start,end"),
                )
            })?;
            (now - length, now)
        }
    };
    if end.value() <= start.value() {
        return Err(bad("window", "the window must end after it starts"));
    }
    Ok((start, end))
}

fn parse_aggregate(text: &str) -> Result<Vec<Field>, ParamError> {
    let mut fields = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let field = Field::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .ok_or_else(|| {
                bad(
                    "aggregate",
                    format!(
                        "cannot aggregate by {name:?}: use namespace, workload, phase, product"
                    ),
                )
            })?;
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    Ok(fields)
}

impl AllocationQuery {
    /// Parses the query parameters; `now` ends a duration window (the last booked interval).
    pub fn parse(params: &[(String, String)], now: Seconds) -> Result<Self, ParamError> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, value) in params {
            if !["window", "aggregate", "step", "format"].contains(&name.as_str()) {
                return Err(bad(name, format!("unknown parameter {name:?}")));
            }
            if seen.insert(name, value).is_some() {
                return Err(bad(name, format!("{name} given more than once")));
            }
        }
        let window = seen
            .get("window")
            .ok_or_else(|| bad("window", "window is required (7d, or start,end)"))?;
        let (start, end) = parse_window(window, now)?;
        let mut aggregate = parse_aggregate(seen.get("aggregate").copied().unwrap_or(""))?;
        if aggregate.is_empty() {
            aggregate = Field::ALL.to_vec();
        }
        let step = match seen.get("step") {
            None => None,
            Some(text) => {
                let step = parse_duration(text)
                    .ok_or_else(|| bad("step", format!("{text:?} is not a duration (1h, 1d)")))?;
                if step_windows(start, end, step).len() > MAX_STEPS {
                    return Err(bad("step", format!("more than {MAX_STEPS} steps")));
                }
                Some(step)
            }
        };
        let format = match seen.get("format").copied() {
            None | Some("json") => OutputFormat::Json,
            Some("csv") => OutputFormat::Csv,
            Some(other) => return Err(bad("format", format!("{other:?}: use json or csv"))),
        };
        Ok(Self {
            start,
            end,
            aggregate,
            step,
            format,
        })
    }
}

/// The window cut at multiples of `step` since the Unix epoch (UTC midnight for `1d`).
pub fn step_windows(start: Seconds, end: Seconds, step: Seconds) -> Vec<(Seconds, Seconds)> {
    let (s, e, size) = (start.value(), end.value(), step.value());
    let mut out = Vec::new();
    let mut lo = s;
    while lo < e {
        let hi = (((lo / size).floor() + 1.0) * size).min(e);
        out.push((Seconds(lo), Seconds(hi)));
        if out.len() > MAX_STEPS {
            break;
        }
        lo = hi;
    }
    out
}

/// One aggregated row.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Values of the aggregated fields, in query order (`None`: no product).
    pub key: Vec<(Field, Option<String>)>,
    /// Energy and carbon of the group.
    pub amounts: Amounts,
}

/// A window's (or a step's) allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Slice start, seconds since the Unix epoch.
    pub start: Seconds,
    /// Slice end, seconds since the Unix epoch.
    pub end: Seconds,
    /// Largest ASCᵉ first.
    pub items: Vec<Item>,
    /// Carbon no workload was given in the slice, gCO2e, by reason.
    pub unallocated: BTreeMap<UnallocatedReason, Grams>,
}

impl Slice {
    /// Σ of the items' amounts.
    pub fn allocated(&self) -> Amounts {
        let mut sum = Amounts::default();
        for item in &self.items {
            sum.energy += item.amounts.energy;
            sum.terms += item.amounts.terms;
        }
        sum
    }
    /// All unallocated carbon of the slice, gCO2e.
    pub fn unallocated_total(&self) -> Grams {
        self.unallocated.values().copied().sum()
    }
}

/// Where an answer's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The ledger's in-memory [`AllocationHistory`] (no Prometheus configured: the demo).
    Memory,
    /// Prometheus' history of the ledger's own counters (`crate::allocation_prom`).
    Prometheus,
}

impl Source {
    /// The source's name (`x-jobcarbon-source` header, JSON `source`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Prometheus => "prometheus",
        }
    }
}

/// The whole window and, with a step, each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Where the figures came from (Prometheus or the in-memory history).
    pub source: Source,
    /// The whole window.
    pub window: Slice,
    /// The step asked for, if any.
    pub step: Option<Seconds>,
    /// One slice per step (empty without a step).
    pub steps: Vec<Slice>,
}

/// The window's edges: its start, then the end of each step (or just its end).
pub(crate) fn edges(query: &AllocationQuery) -> Vec<Seconds> {
    let mut edges = vec![query.start];
    match query.step {
        Some(step) => edges.extend(
            step_windows(query.start, query.end, step)
                .into_iter()
                .map(|(_, e)| e),
        ),
        None => edges.push(query.end),
    }
    edges
}

/// The answer from what was booked between consecutive [`edges`] (one [`Sums`] per step, or
/// one for the whole window): the window is their sum. How a source that reads per edge (the
/// Prometheus one) shares the grouping and rendering with the in-memory history.
pub(crate) fn from_step_sums(query: &AllocationQuery, source: Source, sums: &[Sums]) -> Allocation {
    let edges = edges(query);
    let mut whole = Sums::default();
    for s in sums {
        whole.add(s);
    }
    let steps = match query.step {
        Some(_) => edges
            .windows(2)
            .zip(sums)
            .map(|(e, s)| slice(s, e[0], e[1], &query.aggregate))
            .collect(),
        None => Vec::new(),
    };
    Allocation {
        source,
        window: slice(&whole, query.start, query.end, &query.aggregate),
        step: query.step,
        steps,
    }
}

fn slice(sums: &Sums, start: Seconds, end: Seconds, by: &[Field]) -> Slice {
    let mut grouped: BTreeMap<Vec<(Field, Option<String>)>, Amounts> = BTreeMap::new();
    for (key, amounts) in &sums.items {
        let k = by.iter().map(|f| (*f, f.of(key))).collect();
        let into = grouped.entry(k).or_default();
        into.energy += amounts.energy;
        into.terms += amounts.terms;
    }
    let mut items: Vec<Item> = grouped
        .into_iter()
        .map(|(key, amounts)| Item { key, amounts })
        .collect();
    items.sort_by(|a, b| {
        b.amounts
            .terms
            .asce()
            .value()
            .total_cmp(&a.amounts.terms.asce().value())
    });
    Slice {
        start,
        end,
        items,
        unallocated: sums.unallocated.clone(),
    }
}

/// Answers `query` from `history`.
pub fn allocate(history: &AllocationHistory, query: &AllocationQuery) -> Allocation {
    let steps = match query.step {
        Some(step) => step_windows(query.start, query.end, step)
            .into_iter()
            .map(|(s, e)| slice(&history.sum(s, e), s, e, &query.aggregate))
            .collect(),
        None => Vec::new(),
    };
    let window = history.sum(query.start, query.end);
    Allocation {
        source: Source::Memory,
        window: slice(&window, query.start, query.end, &query.aggregate),
        step: query.step,
        steps,
    }
}

fn amounts_json(a: &Amounts) -> serde_json::Map<String, Value> {
    let t: &Terms = &a.terms;
    let mut m = serde_json::Map::new();
    m.insert("energy_j".into(), json!(a.energy.value()));
    m.insert("jsc_g".into(), json!(t.jsc().value()));
    m.insert("asc_g".into(), json!(t.asc().value()));
    m.insert("jsce_g".into(), json!(t.jsce().value()));
    m.insert("asce_g".into(), json!(t.asce().value()));
    m.insert("terms".into(), json!(t));
    m
}

fn slice_json(s: &Slice) -> Value {
    let items: Vec<Value> = s
        .items
        .iter()
        .map(|item| {
            let key: serde_json::Map<String, Value> = item
                .key
                .iter()
                .map(|(f, v)| (f.as_str().to_owned(), json!(v)))
                .collect();
            let mut m = amounts_json(&item.amounts);
            m.insert("key".into(), Value::Object(key));
            Value::Object(m)
        })
        .collect();
    let unallocated: serde_json::Map<String, Value> = s
        .unallocated
        .iter()
        .map(|(r, g)| (r.as_str().to_owned(), json!(g.value())))
        .collect();
    let unallocated_g = s.unallocated_total().value();
    let mut total = amounts_json(&s.allocated());
    total.insert(
        "asce_g".into(),
        json!(s.allocated().terms.asce().value() + unallocated_g),
    );
    total.insert("unallocated_g".into(), json!(unallocated_g));
    json!({
        "window": {"start": format_instant(s.start), "end": format_instant(s.end)},
        "items": items,
        "unallocated": unallocated,
        "total": total,
    })
}

/// The JSON answer: the window's slice, plus `step` and `steps` when asked for.
pub fn to_json(a: &Allocation) -> Value {
    let mut out = slice_json(&a.window);
    if let Value::Object(m) = &mut out {
        m.insert("source".into(), json!(a.source.as_str()));
    }
    if let (Some(step), Value::Object(m)) = (a.step, &mut out) {
        m.insert("step".into(), json!(step.value()));
        m.insert(
            "steps".into(),
            Value::Array(a.steps.iter().map(slice_json).collect()),
        );
    }
    out
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_numbers(a: &Amounts) -> Vec<String> {
    let t = &a.terms;
    let mut cells = vec![
        a.energy.value().to_string(),
        t.jsc().value().to_string(),
        t.asc().value().to_string(),
        t.jsce().value().to_string(),
        t.asce().value().to_string(),
    ];
    cells.extend(t.iter().map(|(_, g)| g.value().to_string()));
    cells
}

/// The same rows as CSV: one line per item and per unallocated reason (its grams in
/// `asce_g`), for each step (or the whole window); keys are the aggregated fields.
pub fn to_csv(a: &Allocation, aggregate: &[Field]) -> String {
    let mut header: Vec<String> = vec!["start".into(), "end".into()];
    header.extend(aggregate.iter().map(|f| f.as_str().to_owned()));
    header.push("unallocated_reason".into());
    header.extend(
        ["energy_j", "jsc_g", "asc_g", "jsce_g", "asce_g"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    header.extend(
        jobcarbon_core::Term::ALL
            .iter()
            .map(|t| t.as_str().to_owned()),
    );
    let mut out = header.join(",") + "\n";
    let slices = if a.step.is_some() {
        a.steps.as_slice()
    } else {
        std::slice::from_ref(&a.window)
    };
    for s in slices {
        let edges = [format_instant(s.start), format_instant(s.end)];
        for item in &s.items {
            let mut row: Vec<String> = edges.to_vec();
            row.extend(
                item.key
                    .iter()
                    .map(|(_, v)| csv_field(v.as_deref().unwrap_or(""))),
            );
            row.push(String::new());
            row.extend(csv_numbers(&item.amounts));
            out += &(row.join(",") + "\n");
        }
        for (reason, grams) in &s.unallocated {
            let mut row: Vec<String> = edges.to_vec();
            row.extend(aggregate.iter().map(|_| String::new()));
            row.push(reason.as_str().to_owned());
            let mut cells = csv_numbers(&Amounts::default());
            cells[4] = grams.value().to_string();
            row.extend(cells);
            out += &(row.join(",") + "\n");
        }
    }
    out
}

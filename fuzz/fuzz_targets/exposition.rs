//! Hostile namespace, pod, workload and product names booked and exposed on /metrics: the text
//! stays well-formed exposition (a newline or quote cannot break a line or forge a label), and
//! every label value reads back as the name that went in.
#![no_main]
use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, GramsPerKwh, Joules, Phase, PodFacts,
    Pue, Seconds,
};
use jobcarbon_exporter::{Format, encode_metrics};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_ledger::{Conditions, IntervalInput, LedgerState, Settings, book_interval};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

/// Parses one sample line `name{k="v",…} value`: its labels, unescaped, or why it is malformed.
fn sample_labels(line: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
    let Some(name_end) = name_end.filter(|&e| e > 0) else {
        return Err(format!("no metric name: {line:?}"));
    };
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest
                .find("=\"")
                .ok_or_else(|| format!("no label value: {line:?}"))?;
            let key = &rest[..eq];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}: {line:?}"));
            }
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let close = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?}: {line:?}")),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("unterminated value: {line:?}")),
                }
            };
            labels.insert(key.to_owned(), value);
            rest = &rest[eq + 2 + close + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no value: {line:?}"))?;
    let number = value.split(' ').next().unwrap_or_default();
    if number.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&number) {
        return Err(format!("bad value {number:?}: {line:?}"));
    }
    Ok(labels)
}

fuzz_target!(|names: (String, String, String, String)| {
    let (namespace, pod, workload, product) = names;
    let facts = PodFacts::new(&namespace, &pod)
        .workload("Job", &workload)
        .phase(Phase::Training)
        .product(Some(&product))
        .node("n1")
        .reserved_share(0.5);
    let settings = Settings::simple(Pue(1.2), GramsPerKwh(400.0));
    let mut state = LedgerState::default();
    for at in [0.0, 60.0] {
        let input = IntervalInput {
            at: Seconds(at),
            snapshot: ClusterSnapshot {
                pods: vec![facts.clone()],
                ..ClusterSnapshot::default()
            },
            energy: vec![EnergyDelta {
                node: "n1".into(),
                owner: EnergyOwner::Pod {
                    key: facts.key.clone(),
                    container: "c".into(),
                },
                component: Component::Gpu,
                energy: Joules(3.6e6),
                estimated: false,
            }],
            requests: BTreeMap::new(),
            conditions: BTreeMap::from([(
                "default".to_owned(),
                Conditions {
                    pue: Pue(1.2),
                    intensity: GramsPerKwh(400.0),
                },
            )]),
            requests_unknown: Default::default(),
        };
        state = book_interval(&state, &settings, &input).0;
    }
    let view = LedgerView {
        state: std::sync::Arc::new(state),
        ..LedgerView::default()
    };
    let shared = std::sync::Arc::new(std::sync::RwLock::new(view));
    let text = encode_metrics(&shared, Format::PrometheusText).expect("exposition encodes");
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let labels = sample_labels(line).unwrap_or_else(|e| panic!("{e}"));
        if let Some(ns) = labels.get("namespace") {
            assert_eq!(ns, &namespace, "{line:?}");
        }
        if let Some(w) = labels.get("workload") {
            assert_eq!(w, &format!("Job/{workload}"), "{line:?}");
        }
        if let Some(p) = labels.get("pod") {
            assert!(p == &pod || p.is_empty(), "{line:?}");
        }
    }
});

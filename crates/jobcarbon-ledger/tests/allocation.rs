//! The allocation history and `/api/v1/allocation` queries against hand-computed windows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::{Grams, Joules, Seconds, Term, Terms, UnallocatedReason};
use jobcarbon_ledger::allocation_query::{
    AllocationQuery, Field, OutputFormat, allocate, parse_instant, step_windows, to_csv, to_json,
};
use jobcarbon_ledger::history::{
    AllocationHistory, AllocationKey, Amounts, IntervalDelta, Retention,
};
use std::collections::BTreeMap;

fn key(ns: &str, workload: &str, phase: &str, product: Option<&str>) -> AllocationKey {
    AllocationKey {
        namespace: ns.into(),
        workload: workload.into(),
        phase: phase.into(),
        product: product.map(Into::into),
    }
}

fn amounts(joules: f64, operational: f64, embodied: f64) -> Amounts {
    Amounts {
        energy: Joules(joules),
        terms: Terms::of(Term::Operational, Grams(operational))
            + Terms::of(Term::EmbodiedSystem, Grams(embodied)),
    }
}

/// One interval `(end - 60, end]`: train 1 J / 1 g + 0.5 g, serve 2 g, 0.25 g node idle.
fn minute(end: f64) -> IntervalDelta {
    IntervalDelta {
        start: Seconds(end - 60.0),
        end: Seconds(end),
        items: BTreeMap::from([
            (
                key("ml", "Job/train", "training", Some("bert")),
                amounts(1.0, 1.0, 0.5),
            ),
            (
                key("serve", "Deployment/api", "inference", Some("bert")),
                amounts(0.0, 2.0, 0.0),
            ),
            (
                key("ml", "Job/prep", "data-prep", None),
                amounts(0.0, 0.0, 0.0),
            ),
        ]),
        unallocated: BTreeMap::from([(UnallocatedReason::NodeIdle, Grams(0.25))]),
    }
}

/// Ten minutes, from 01:00 to 01:10 UTC of 1970-01-01.
fn ten_minutes() -> AllocationHistory {
    let mut h = AllocationHistory::default();
    for i in 1..=10 {
        h.record(&minute(3600.0 + 60.0 * f64::from(i)));
    }
    h
}

fn query(params: &[(&str, &str)], now: f64) -> Result<AllocationQuery, String> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    AllocationQuery::parse(&params, Seconds(now)).map_err(|e| format!("{}: {e}", e.parameter))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn a_window_starting_before_the_ledger_counts_from_its_first_interval() {
    let h = ten_minutes();
    let q = query(&[("window", "0,4200"), ("aggregate", "workload")], 4200.0).unwrap();
    let a = allocate(&h, &q);
    let train = &a
        .window
        .items
        .iter()
        .find(|i| i.key[0].1.as_deref() == Some("Job/train"));
    let train = train.expect("train row");
    assert!(close(train.amounts.energy.value(), 10.0));
    assert!(close(train.amounts.terms.asce().value(), 15.0));
    assert!(close(
        a.window.unallocated[&UnallocatedReason::NodeIdle].value(),
        2.5
    ));
    // The largest ASCe first: api 20 g, train 15 g, prep 0 g.
    assert_eq!(
        a.window.items[0].key[0].1.as_deref(),
        Some("Deployment/api")
    );
    let json = to_json(&a);
    assert!(close(
        json["total"]["asce_g"].as_f64().unwrap(),
        20.0 + 15.0 + 2.5
    ));
    assert!(close(json["total"]["unallocated_g"].as_f64().unwrap(), 2.5));
    assert!(close(json["total"]["energy_j"].as_f64().unwrap(), 10.0));
    assert!(close(json["total"]["jsc_g"].as_f64().unwrap(), 30.0));
    assert_eq!(json["window"]["start"], "1970-01-01T00:00:00Z");
    assert_eq!(json["window"]["end"], "1970-01-01T01:10:00Z");
}

#[test]
fn a_duration_window_ends_at_now_and_cuts_buckets_pro_rata() {
    let h = ten_minutes();
    // The last 3 minutes: 3 whole intervals, read pro rata from the 01:05–01:10 bucket.
    let a = allocate(
        &h,
        &query(&[("window", "3m"), ("aggregate", "")], 4200.0).unwrap(),
    );
    let asce: f64 = a
        .window
        .items
        .iter()
        .map(|i| i.amounts.terms.asce().value())
        .sum();
    assert!(close(asce, 3.0 * 3.5), "{asce}");
    assert!(close(a.window.unallocated_total().value(), 0.75));
    // Half of the first interval.
    let a = allocate(&h, &query(&[("window", "3600,3630")], 4200.0).unwrap());
    let asce: f64 = a
        .window
        .items
        .iter()
        .map(|i| i.amounts.terms.asce().value())
        .sum();
    assert!(close(asce, 0.5 * 3.5), "{asce}");
    // Nothing before or after the books.
    let a = allocate(&h, &query(&[("window", "0,3600")], 4200.0).unwrap());
    assert!(a.window.items.is_empty() && a.window.unallocated.is_empty());
    let a = allocate(&h, &query(&[("window", "4200,9000")], 4200.0).unwrap());
    assert!(a.window.items.is_empty());
}

#[test]
fn steps_are_utc_aligned_and_sum_to_the_window() {
    let h = ten_minutes();
    let q = query(
        &[("window", "1970-01-01T01:02:00Z,4200"), ("step", "5m")],
        4200.0,
    )
    .unwrap();
    assert_eq!(
        step_windows(q.start, q.end, Seconds(300.0)),
        vec![
            (Seconds(3720.0), Seconds(3900.0)),
            (Seconds(3900.0), Seconds(4200.0))
        ]
    );
    let a = allocate(&h, &q);
    assert_eq!(a.steps.len(), 2);
    let asce = |s: &jobcarbon_ledger::allocation_query::Slice| {
        s.allocated().terms.asce().value() + s.unallocated_total().value()
    };
    assert!(close(asce(&a.steps[0]), 3.0 * 3.75));
    assert!(close(asce(&a.steps[1]), 5.0 * 3.75));
    assert!(close(
        asce(&a.window),
        asce(&a.steps[0]) + asce(&a.steps[1])
    ));
    let json = to_json(&a);
    assert_eq!(json["steps"].as_array().unwrap().len(), 2);
    assert_eq!(json["steps"][1]["window"]["start"], "1970-01-01T01:05:00Z");
    // A daily step over three days: UTC midnights.
    let days = step_windows(
        Seconds(43_200.0),
        Seconds(3.0 * 86_400.0),
        Seconds(86_400.0),
    );
    assert_eq!(days.len(), 3);
    assert_eq!(days[1], (Seconds(86_400.0), Seconds(172_800.0)));
}

#[test]
fn an_interval_across_a_bucket_edge_is_split_by_time() {
    let mut h = AllocationHistory::default();
    let mut d = minute(3930.0); // (01:04:30, 01:05:30]
    d.items.retain(|k, _| k.workload == "Job/train");
    h.record(&d);
    let q = query(&[("window", "3600,3900")], 3930.0).unwrap();
    assert!(close(
        allocate(&h, &q).window.allocated().terms.asce().value(),
        0.75
    ));
    let q = query(&[("window", "3900,4200")], 3930.0).unwrap();
    assert!(close(
        allocate(&h, &q).window.allocated().terms.asce().value(),
        0.75
    ));
}

#[test]
fn every_aggregate() {
    let h = ten_minutes();
    let rows = |agg: &str| {
        let a = allocate(
            &h,
            &query(&[("window", "1h"), ("aggregate", agg)], 4200.0).unwrap(),
        );
        a.window
            .items
            .iter()
            .map(|i| {
                let key: Vec<String> = i
                    .key
                    .iter()
                    .map(|(_, v)| v.clone().unwrap_or_else(|| "-".into()))
                    .collect();
                (key.join("/"), i.amounts.terms.asce().value())
            })
            .collect::<BTreeMap<String, f64>>()
    };
    assert_eq!(
        rows("namespace"),
        BTreeMap::from([("ml".into(), 15.0), ("serve".into(), 20.0)])
    );
    assert_eq!(
        rows("product"),
        BTreeMap::from([("bert".into(), 35.0), ("-".into(), 0.0)])
    );
    assert_eq!(rows("phase").len(), 3);
    assert_eq!(rows("phase")["training"], 15.0);
    assert_eq!(rows("workload")["Job/prep"], 0.0);
    assert_eq!(rows("phase,namespace")["inference/serve"], 20.0);
    let all = rows("namespace,workload,phase,product");
    assert_eq!(all["ml/Job/train/training/bert"], 15.0);
    assert_eq!(rows(""), all, "no aggregate: the finest key");
}

#[test]
fn bad_parameters_name_the_parameter() {
    let cases: [(&[(&str, &str)], &str); 10] = [
        (&[], "window"),
        (&[("window", "yesterday")], "window"),
        (&[("window", "-5m")], "window"),
        (&[("window", "200,100")], "window"),
        (&[("window", "2026-13-01T00:00:00Z,100")], "window"),
        (&[("window", "1d"), ("aggregate", "node")], "aggregate"),
        (&[("window", "1d"), ("step", "0h")], "step"),
        (&[("window", "400d"), ("step", "1m")], "step"),
        (&[("window", "1d"), ("format", "xml")], "format"),
        (&[("window", "1d"), ("agregate", "phase")], "agregate"),
    ];
    for (params, parameter) in cases {
        let err = query(params, 1e9).expect_err(&format!("{params:?} accepted"));
        assert!(
            err.starts_with(&format!("{parameter}: ")),
            "{params:?}: {err}"
        );
    }
    let q = query(&[("window", "7d"), ("format", "csv")], 1e9).unwrap();
    assert_eq!(q.format, OutputFormat::Csv);
    assert_eq!(q.aggregate, Field::ALL.to_vec());
    assert_eq!(
        parse_instant("2026-01-01T00:00:00Z"),
        Some(Seconds(1_767_225_600.0))
    );
}

#[test]
fn csv_has_the_same_rows() {
    let h = ten_minutes();
    let q = query(
        &[
            ("window", "3600,4200"),
            ("aggregate", "namespace,product"),
            ("step", "5m"),
        ],
        4200.0,
    )
    .unwrap();
    let a = allocate(&h, &q);
    let csv = to_csv(&a, &q.aggregate);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "start,end,namespace,product,unallocated_reason,energy_j,jsc_g,asc_g,jsce_g,asce_g,\
         operational,embodied_system,platform_operational,platform_embodied,model_epc,retraining"
    );
    // Per step: ml/bert, serve/bert, ml/- and node_idle.
    assert_eq!(lines.len(), 1 + 2 * 4);
    assert!(lines.contains(
        &"1970-01-01T01:00:00Z,1970-01-01T01:05:00Z,serve,bert,,0,10,10,10,10,10,0,0,0,0,0"
    ));
    assert!(lines.contains(
        &"1970-01-01T01:05:00Z,1970-01-01T01:10:00Z,,,node_idle,0,0,0,0,1.25,0,0,0,0,0,0"
    ));
}

#[test]
fn tiers_keep_memory_bounded_and_answer_old_windows_coarsely() {
    // 1 min kept 10 min, 10 min kept 1 h, 1 h kept 1 d.
    let retention = Retention {
        tiers: [
            (Seconds(60.0), Seconds(600.0)),
            (Seconds(600.0), Seconds(3600.0)),
            (Seconds(3600.0), Seconds(86_400.0)),
        ],
    };
    let mut h = AllocationHistory::new(retention);
    let mut d = minute(0.0);
    d.items.retain(|k, _| k.workload == "Job/train");
    d.unallocated.clear();
    // Two days of 30 s intervals, 1.5 g each.
    for i in 1..=5760 {
        d.start = Seconds(30.0 * f64::from(i - 1));
        d.end = Seconds(30.0 * f64::from(i));
        h.record(&d);
    }
    let total = |from: &str| {
        let q = query(&[("window", from)], 172_800.0).unwrap();
        allocate(&h, &q).window.allocated().terms.asce().value()
    };
    // Within each tier's reach the answer is exact, whatever tier serves it.
    assert!(close(total("5m"), 10.0 * 1.5));
    assert!(close(total("45m"), 90.0 * 1.5));
    assert!(close(total("20h"), 2400.0 * 1.5));
    // Older than the coarsest tier keeps: gone (the day tier kept 1 d, cut on its edge).
    assert!(close(total("2d"), 2880.0 * 1.5), "{}", total("2d"));
}

//! The pure interval accounting: hand-computed cases from the paper and DESIGN §2, and the
//! ledger-level conservation property.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, Grams, GramsPerKwh, GramsPerSecond,
    Joules, NodeFacts, Phase, PodFacts, PodKey, ProductDef, ProductType, Pue, RetrainingPolicy,
    Seconds, Term, Terms, UnallocatedReason, WorkloadRef,
};
use jobcarbon_ledger::SystemDef;
use jobcarbon_ledger::state::TotalsKey;
use jobcarbon_ledger::{
    Account, Conditions, IdlePolicy, IntervalInput, IntervalReport, LedgerState, PlatformSplit,
    Settings, Stage, book_interval, book_interval_traced,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn pod(ns: &str, name: &str, workload: &str, phase: Phase, product: Option<&str>) -> PodFacts {
    PodFacts::new(ns, name)
        .uid(&format!("uid-{name}"))
        .workload("Job", workload)
        .phase(phase)
        .product(product)
        .node("n1")
        .reserved_share(1.0)
}

fn node(name: &str) -> NodeFacts {
    NodeFacts {
        name: name.to_owned(),
        region: Some("default".to_owned()),
        instance_type: Some("p5.48xlarge".to_owned()),
        gpu_count: 8,
        gpu_model: None,
        labels: BTreeMap::from([(
            "node.kubernetes.io/instance-type".to_owned(),
            "p5.48xlarge".to_owned(),
        )]),
        cpus: 0.0,
    }
}

fn energy(pod: &PodFacts, component: Component, joules: f64) -> EnergyDelta {
    EnergyDelta {
        node: pod.node.clone().unwrap_or_default(),
        owner: EnergyOwner::Pod {
            key: pod.key.clone(),
            container: "main".to_owned(),
        },
        component,
        energy: Joules(joules),
        estimated: false,
    }
}

fn conditions(settings: &Settings, pue: f64, ci: f64) -> BTreeMap<String, Conditions> {
    settings
        .regions
        .keys()
        .map(|r| {
            (
                r.clone(),
                Conditions {
                    pue: Pue(pue),
                    intensity: GramsPerKwh(ci),
                },
            )
        })
        .collect()
}

/// Book a baseline at t=0, then one interval of `duration` with `energy` and `requests`.
fn one_interval(
    settings: &Settings,
    snapshot: ClusterSnapshot,
    energy: Vec<EnergyDelta>,
    duration: f64,
    pue: f64,
    ci: f64,
) -> (LedgerState, IntervalReport) {
    let base = IntervalInput {
        at: Seconds(0.0),
        snapshot: snapshot.clone(),
        conditions: conditions(settings, pue, ci),
        ..Default::default()
    };
    let (state, _) = book_interval(&LedgerState::default(), settings, &base);
    let input = IntervalInput {
        at: Seconds(duration),
        snapshot,
        energy,
        requests: BTreeMap::new(),
        conditions: conditions(settings, pue, ci),
        requests_unknown: Default::default(),
    };
    book_interval(&state, settings, &input)
}

#[test]
fn paper_job_gets_jsc_and_embodied_share() {
    // 1 kJ at PUE 1.08 and 80 % coal / 20 % solar; exclusive 5 min on a 10 kg, 3-year system.
    let mut settings = Settings::simple(Pue(1.08), GramsPerKwh(0.8 * 820.0 + 0.2 * 48.0));
    settings.systems.push(SystemDef {
        matches: BTreeMap::new(),
        embodied: Grams(10_000.0),
        per_gpu: Grams::ZERO,
        lifetime: Seconds::from_years(3.0),
    });
    let j = pod("ml", "j1", "j1", Phase::Training, None);
    let snapshot = ClusterSnapshot {
        pods: vec![j.clone()],
        nodes: vec![node("n1")],
        ..Default::default()
    };
    let (state, report) = one_interval(
        &settings,
        snapshot,
        vec![energy(&j, Component::Cpu, 1000.0)],
        300.0,
        1.08,
        0.8 * 820.0 + 0.2 * 48.0,
    );
    let terms = state.pods[&j.key].carbon;
    assert!(close(terms[Term::Operational].value(), 0.19968));
    let ec = 10_000.0 * 5.0 / (3.0 * 365.0 * 24.0 * 60.0);
    assert!(close(terms[Term::EmbodiedSystem].value(), ec));
    assert!((terms.asc().value() - 0.2314).abs() < 1e-4);
    assert_eq!(state.pods[&j.key].energy[&Component::Cpu], Joules(1000.0));
    assert!(report.emissions.conservation_error() < 1e-12);
}

#[test]
fn platform_overhead_matches_paper_and_idle_follows_policy() {
    // 50 g/min over 10 equal concurrent jobs for 5 min = 25 g each.
    let mut settings = Settings::simple(Pue(1.0), GramsPerKwh(360.0));
    settings.platform.overhead = GramsPerSecond::per_minute(50.0);
    let jobs: Vec<PodFacts> = (0..10)
        .map(|i| {
            pod(
                "ml",
                &format!("p{i}"),
                &format!("w{i}"),
                Phase::Training,
                None,
            )
        })
        .collect();
    let snapshot = ClusterSnapshot {
        pods: jobs.clone(),
        nodes: vec![node("n1")],
        ..Default::default()
    };
    let (state, report) = one_interval(&settings, snapshot, vec![], 300.0, 1.0, 360.0);
    for j in &jobs {
        assert!(close(
            state.pods[&j.key].carbon[Term::PlatformOperational].value(),
            25.0
        ));
    }
    assert!(close(report.emissions.input.value(), 250.0));

    idle_follows_policy();
}

/// Node idle 300 J over pods that used 100 J and 200 J: by energy 100/200, even 150/150.
fn idle_follows_policy() {
    let a = pod("ml", "a", "a", Phase::Training, None);
    let b = pod("ml", "b", "b", Phase::Training, None);
    let idle = EnergyDelta {
        node: "n1".into(),
        owner: EnergyOwner::NodeIdle,
        component: Component::Cpu,
        energy: Joules(300.0),
        estimated: false,
    };
    let snapshot = ClusterSnapshot {
        pods: vec![a.clone(), b.clone()],
        nodes: vec![node("n1")],
        ..Default::default()
    };
    let deltas = vec![
        energy(&a, Component::Cpu, 100.0),
        energy(&b, Component::Gpu, 200.0),
        idle,
    ];
    for (policy, share_a, share_b) in [
        (IdlePolicy::ByEnergy, 100.0, 200.0),
        (IdlePolicy::Even, 150.0, 150.0),
        (IdlePolicy::Unallocated, 0.0, 0.0),
    ] {
        let mut settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
        settings.node_idle = policy;
        let (state, report) = one_interval(
            &settings,
            snapshot.clone(),
            deltas.clone(),
            30.0,
            1.0,
            3600.0,
        );
        let idle_of = |k: &PodKey| {
            state
                .pods
                .get(k)
                .and_then(|p| p.energy.get(&Component::IdleShare).copied())
                .unwrap_or(Joules::ZERO)
                .value()
        };
        assert!(close(idle_of(&a.key), share_a), "{policy:?}");
        assert!(close(idle_of(&b.key), share_b), "{policy:?}");
        // 3600 g/kWh = 1 g/kJ.
        let unallocated_idle = report
            .emissions
            .unallocated
            .get(&UnallocatedReason::NodeIdle)
            .copied()
            .unwrap_or(Grams::ZERO);
        assert!(close(
            unallocated_idle.value(),
            (300.0 - share_a - share_b) / 1000.0
        ));
    }
}

#[test]
fn a_platform_built_by_a_product_amortises_that_product_s_epc() {
    // The platform product declares 1 t; the platform lives 1e6 s: an interval of 300 s
    // carries 1e6 × 300 / 1e6 = 300 g, split equally over 10 jobs = 30 g each.
    let mut settings = Settings::simple(Pue(1.0), GramsPerKwh(360.0));
    settings.platform.lifetime = Seconds(1e6);
    settings.platform.product = Some("iks".into());
    let mut iks = ProductDef::new("iks", ProductType::Platform, Seconds(1e6));
    iks.declared = Grams(1e6);
    let jobs: Vec<PodFacts> = (0..10)
        .map(|i| {
            pod(
                "ml",
                &format!("p{i}"),
                &format!("w{i}"),
                Phase::Training,
                None,
            )
        })
        .collect();
    let snapshot = ClusterSnapshot {
        pods: jobs.clone(),
        nodes: vec![node("n1")],
        products: vec![iks],
        ..Default::default()
    };
    let (state, _) = one_interval(&settings, snapshot.clone(), vec![], 300.0, 1.0, 360.0);
    for j in &jobs {
        let g = state.pods[&j.key].carbon[Term::PlatformEmbodied].value();
        assert!(close(g, 30.0), "{g}");
    }
    // Without the link the platform's own epc (0 g) is amortised: nothing.
    settings.platform.product = None;
    let (state, _) = one_interval(&settings, snapshot, vec![], 300.0, 1.0, 360.0);
    assert_eq!(
        state.pods[&jobs[0].key].carbon[Term::PlatformEmbodied],
        Grams::ZERO
    );
}

#[test]
fn reserved_share_splits_embodied_and_platform_pods_are_taxed_onto_jobs() {
    let mut settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    settings.systems.push(SystemDef {
        matches: BTreeMap::new(),
        embodied: Grams(3600.0),
        per_gpu: Grams::ZERO,
        lifetime: Seconds(3600.0),
    });
    settings.platform.namespaces = vec!["kube-system".into()];
    let mut a = pod("ml", "a", "a", Phase::Training, None);
    a.reserved_share = 0.25;
    let mut b = pod("ml", "b", "b", Phase::Training, None);
    b.reserved_share = 0.5;
    let mut dns = pod("kube-system", "dns", "dns", Phase::Unlabelled, None);
    dns.reserved_share = 0.125;
    let snapshot = ClusterSnapshot {
        pods: vec![a.clone(), b.clone(), dns.clone()],
        nodes: vec![node("n1")],
        ..Default::default()
    };
    // 60 s of a 3600 g / 3600 s system = 60 g: a 15, b 30, dns 7.5, unreserved 7.5.
    // dns also used 2 kJ = 2 g, split equally over a and b with its 7.5 g embodied.
    let (state, report) = one_interval(
        &settings,
        snapshot,
        vec![energy(&dns, Component::Cpu, 2000.0)],
        60.0,
        1.0,
        3600.0,
    );
    let ta = state.pods[&a.key].carbon;
    assert!(close(ta[Term::EmbodiedSystem].value(), 15.0));
    assert!(close(ta[Term::PlatformOperational].value(), 1.0));
    assert!(close(ta[Term::PlatformEmbodied].value(), 3.75));
    assert!(close(
        state.pods[&b.key].carbon[Term::EmbodiedSystem].value(),
        30.0
    ));
    assert_eq!(state.pods[&dns.key].carbon.asce(), Grams::ZERO);
    assert_eq!(
        state.pods[&dns.key].energy[&Component::Cpu],
        Joules(2000.0),
        "platform pods keep their energy series"
    );
    assert!(close(
        report.emissions.unallocated[&UnallocatedReason::UnreservedCapacity].value(),
        7.5
    ));
    assert!(close(
        report.emissions.allocated[&Account::Platform].value(),
        9.5
    ));
    assert!(close(report.transfers.input.value(), 9.5));
}

fn model(name: &str, lifetime: f64, amortize: Option<f64>) -> ProductDef {
    let mut m = ProductDef::new(name, ProductType::Model, Seconds(lifetime));
    m.retraining = amortize.map(|s| RetrainingPolicy::AmortizeOver(Seconds(s)));
    m
}

#[test]
fn build_retraining_and_inference_flow_through_epc_and_pool() {
    let settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0)); // 1 g per kJ
    let m = model("m", 1000.0, Some(100.0));
    let train = pod("ml", "train", "train", Phase::Training, Some("m"));
    let retrain = pod("ml", "retrain", "retrain", Phase::Retraining, Some("m"));
    let mut serve = pod("ml", "serve-0", "serve", Phase::Inference, Some("m"));
    serve.workload = WorkloadRef::new("ml", "Deployment", "serve");
    let snapshot = ClusterSnapshot {
        pods: vec![train.clone(), retrain.clone(), serve.clone()],
        nodes: vec![node("n1")],
        products: vec![m],
        ..Default::default()
    };
    // Interval 1 (10 s): train 50 g → EPC; retrain 20 g → pool; serve 1 g.
    let (s1, r1) = one_interval(
        &settings,
        snapshot.clone(),
        vec![
            energy(&train, Component::Gpu, 50_000.0),
            energy(&retrain, Component::Gpu, 20_000.0),
            energy(&serve, Component::Gpu, 1000.0),
        ],
        10.0,
        1.0,
        3600.0,
    );
    assert!(close(r1.epc_deposits["m"].value(), 50.0));
    assert!(close(r1.pool_deposits["m"].value(), 20.0));
    assert!(close(s1.products["m"].epc.measured.value(), 50.0));
    // Model EPC share: 50 g × 10 s / 1000 s = 0.5 g; pool drain 20 g × 10 / 100 = 2 g.
    let st = s1.pods[&serve.key].carbon;
    assert!(close(st[Term::ModelEpc].value(), 0.5));
    assert!(close(st[Term::Retraining].value(), 2.0));
    assert!(close(s1.products["m"].pool.balance().value(), 18.0));

    // Interval 2: requests; per-request = inference ASCᵉ / requests over the window.
    let input = IntervalInput {
        at: Seconds(20.0),
        snapshot,
        energy: vec![energy(&serve, Component::Gpu, 1000.0)],
        requests: BTreeMap::from([("m".to_owned(), 10.0)]),
        conditions: conditions(&settings, 1.0, 3600.0),
        requests_unknown: Default::default(),
    };
    let (s2, r2) = book_interval(&s1, &settings, &input);
    let serve_terms = r2.pod_terms[&serve.key];
    // 1 g operational + 0.5 g model EPC + 2 g retraining = 3.5 g, plus the 3.5 g of interval 1
    // (no requests then) in the window: 7 g / 10 requests.
    assert!(close(serve_terms.asce().value(), 3.5));
    assert!(close(
        s2.products["m"].grams_per_request().unwrap_or(0.0),
        0.7
    ));
    assert_eq!(s2.products["m"].requests_total, 10.0);
}

#[test]
fn no_inference_leaves_model_epc_unallocated_and_keeps_the_pool() {
    let settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    let retrain = pod("ml", "retrain", "retrain", Phase::Retraining, Some("m"));
    let snapshot = ClusterSnapshot {
        pods: vec![retrain.clone()],
        nodes: vec![node("n1")],
        products: vec![model("m", 100.0, Some(100.0))],
        ..Default::default()
    };
    let (state, report) = one_interval(
        &settings,
        snapshot,
        vec![energy(&retrain, Component::Gpu, 10_000.0)],
        10.0,
        1.0,
        3600.0,
    );
    assert!(close(state.products["m"].pool.balance().value(), 10.0));
    assert_eq!(state.products["m"].pool.drained, Grams::ZERO);
    assert!(report.transfers.conservation_error() < 1e-12);
}

#[test]
fn finished_pods_roll_up_after_the_grace_period_and_the_cap_rolls_up_the_rest() {
    let mut settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    settings.grace_period = Seconds(60.0);
    settings.max_pod_series = 1;
    let a = pod("ml", "a", "w", Phase::Training, None);
    let b = pod("ml", "b", "w", Phase::Training, None);
    let snapshot = ClusterSnapshot {
        pods: vec![a.clone(), b.clone()],
        nodes: vec![node("n1")],
        ..Default::default()
    };
    let (s1, _) = one_interval(
        &settings,
        snapshot,
        vec![
            energy(&a, Component::Cpu, 1000.0),
            energy(&b, Component::Cpu, 2000.0),
        ],
        30.0,
        1.0,
        3600.0,
    );
    assert_eq!(s1.pods.len(), 1, "cap of one pod series");
    assert_eq!(s1.series_dropped, 1);
    let rollup_grams: f64 = s1.rolled_up.values().map(|r| r.carbon.asce().value()).sum();
    assert!(close(rollup_grams, 2.0));

    // Both pods finish; after the grace period a's series is rolled up too.
    let empty = IntervalInput {
        at: Seconds(60.0),
        snapshot: ClusterSnapshot {
            nodes: vec![node("n1")],
            ..Default::default()
        },
        conditions: conditions(&settings, 1.0, 3600.0),
        ..Default::default()
    };
    let (s2, _) = book_interval(&s1, &settings, &empty);
    assert_eq!(s2.pods[&a.key].finished_at, Some(Seconds(60.0)));
    let later = IntervalInput {
        at: Seconds(130.0),
        ..empty
    };
    let (s3, _) = book_interval(&s2, &settings, &later);
    assert!(s3.pods.is_empty());
    // No pod of the workload is left: its roll-up is retired (its series stop) and its grams
    // stay in the totals family.
    assert!(s3.rolled_up.is_empty());
    assert_eq!(s3.retired.workloads, 1);
    assert!(close(s3.retired.books.carbon.asce().value(), 3.0));
    assert!(close(s3.totals_carbon().value(), 3.0));
    let totals = &s3.totals[&TotalsKey {
        namespace: "ml".into(),
        phase: Phase::Training,
        product: None,
    }];
    assert!(close(totals.energy[&Component::Cpu].value(), 3000.0));
}

#[test]
fn a_workload_retires_when_its_pods_are_done_even_if_the_api_still_lists_them() {
    // A completed Job's pod stays in the API (no TTL); a Deployment keeps running. After the
    // grace period the Job's series stop, the Deployment's do not, and the totals keep both.
    let mut settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    settings.grace_period = Seconds(60.0);
    let job = pod("ml", "job-0", "once", Phase::Training, None);
    let serve =
        pod("ml", "serve-0", "serve", Phase::Inference, None).workload("Deployment", "serve");
    let nodes = vec![node("n1")];
    let snapshot = |job: &PodFacts| ClusterSnapshot {
        pods: vec![job.clone(), serve.clone()],
        nodes: nodes.clone(),
        ..Default::default()
    };
    let (mut state, _) = one_interval(
        &settings,
        snapshot(&job),
        vec![
            energy(&job, Component::Cpu, 1000.0),
            energy(&serve, Component::Cpu, 500.0),
        ],
        30.0,
        1.0,
        3600.0,
    );
    let done = job.clone().running(false);
    for at in [60.0, 90.0, 130.0, 160.0] {
        let input = IntervalInput {
            at: Seconds(at),
            snapshot: snapshot(&done),
            conditions: conditions(&settings, 1.0, 3600.0),
            ..Default::default()
        };
        state = book_interval(&state, &settings, &input).0;
    }
    assert_eq!(state.retired.workloads, 1);
    assert!(close(state.retired.books.carbon.asce().value(), 1.0));
    // The JSON API still lists it, with its books.
    let recent = &state.retired.recent[0];
    assert_eq!(recent.key.workload, WorkloadRef::new("ml", "Job", "once"));
    assert!(close(recent.books.carbon.asce().value(), 1.0));
    assert!(state.rolled_up.is_empty());
    // The still-listed pod has an empty account of its own again; the Deployment is live.
    assert_eq!(state.pods[&job.key].carbon, Terms::ZERO);
    assert!(close(state.pods[&serve.key].carbon.asce().value(), 0.5));
    assert!(close(state.totals_carbon().value(), 1.5));
}

#[test]
fn a_cronjob_is_one_workload_and_each_run_keeps_its_own_books() {
    // Two runs of one CronJob: the same accounting as two Jobs (same energy, same n), booked
    // under one workload, and each run visible with its own ASCe.
    let settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    let cron = |pod_name: &str, run: &str| {
        PodFacts::new("ml", pod_name)
            .workload("CronJob", "nightly")
            .run(run)
            .phase(Phase::Retraining)
            .node("n1")
            .reserved_share(0.5)
    };
    let jobs = |pod_name: &str, job: &str| {
        PodFacts::new("ml", pod_name)
            .workload("Job", job)
            .phase(Phase::Retraining)
            .node("n1")
            .reserved_share(0.5)
    };
    let book = |a: PodFacts, b: PodFacts| {
        let snapshot = ClusterSnapshot {
            pods: vec![a.clone(), b.clone()],
            nodes: vec![node("n1")],
            ..Default::default()
        };
        let energy = vec![
            energy(&a, Component::Gpu, 1000.0),
            energy(&b, Component::Gpu, 3000.0),
        ];
        one_interval(&settings, snapshot, energy, 60.0, 1.0, 3600.0).0
    };
    let as_cron = book(
        cron("nightly-1-x", "Job/nightly-1"),
        cron("nightly-2-y", "Job/nightly-2"),
    );
    let as_jobs = book(
        jobs("nightly-1-x", "nightly-1"),
        jobs("nightly-2-y", "nightly-2"),
    );

    let workload = WorkloadRef::new("ml", "CronJob", "nightly");
    let runs = &as_cron.runs[&workload];
    assert_eq!(runs.len(), 2);
    for (run, pod_name) in [
        ("Job/nightly-1", "nightly-1-x"),
        ("Job/nightly-2", "nightly-2-y"),
    ] {
        let booked = runs.iter().find(|r| r.run == run).unwrap();
        let key = PodKey::new("ml", pod_name);
        assert_eq!(booked.carbon, as_cron.pods[&key].carbon, "{run}");
        // Every number is what the same pods booked as two Jobs.
        assert_eq!(
            as_cron.pods[&key].carbon, as_jobs.pods[&key].carbon,
            "{run}"
        );
        assert_eq!(as_cron.pods[&key].run.as_deref(), Some(run));
    }
    assert!(as_jobs.runs.is_empty());
    assert_eq!(as_cron.unallocated, as_jobs.unallocated);
}

// ---- conservation property ----

#[derive(Debug, Clone)]
struct World {
    settings: Settings,
    intervals: Vec<IntervalInput>,
}

fn world() -> impl Strategy<Value = World> {
    let pods = prop::collection::vec(
        (
            0usize..3,     // node
            0usize..9,     // phase
            0usize..3,     // product (2 = none)
            0usize..4,     // workload
            any::<bool>(), // running
            any::<bool>(), // platform
            0.0..1.2f64,   // reserved share
        ),
        0..8,
    );
    let energies = prop::collection::vec(
        prop::collection::vec((0usize..13, 0usize..4, 0.0..1e6f64), 0..14),
        1..5,
    );
    (
        pods,
        energies,
        0usize..3,
        any::<bool>(),
        (0.0..100.0f64, 0.0..1e7f64, 1.0..2.0f64, 0.0..900.0f64),
        prop::collection::vec(0.0..1e4f64, 1..5),
    )
        .prop_map(
            |(pods, energies, idle, by_energy, (overhead, epc, pue, ci), requests)| {
                let settings = world_settings(idle, by_energy, overhead, epc, pue, ci);
                let facts = world_pods(&pods);
                let mut d = ProductDef::new("d", ProductType::Dataset, Seconds::from_years(1.0));
                d.declared = Grams(5.0);
                let mut m = ProductDef::new("m", ProductType::Model, Seconds::from_days(30.0));
                m.datasets.push(jobcarbon_core::LineageEdge {
                    product: "d".into(),
                    weight: 0.5,
                });
                m.retraining = Some(RetrainingPolicy::AmortizeOver(Seconds(600.0)));
                let nodes: Vec<NodeFacts> = (0..3).map(|i| node(&format!("n{i}"))).collect();
                let intervals = energies
                    .iter()
                    .enumerate()
                    .map(|(t, deltas)| {
                        // Pods come and go: interval t sees the pods with index ≥ t.
                        let pods: Vec<PodFacts> = facts.iter().skip(t).cloned().collect();
                        IntervalInput {
                            at: Seconds(300.0 * (t as f64 + 1.0)),
                            snapshot: ClusterSnapshot {
                                pods,
                                nodes: nodes.clone(),
                                products: vec![d.clone(), m.clone()],
                                invalid_products: vec![],
                            },
                            energy: world_energy(deltas),
                            requests: BTreeMap::from([(
                                "m".to_owned(),
                                requests[t % requests.len()],
                            )]),
                            requests_unknown: Default::default(),
                            conditions: BTreeMap::from([(
                                "default".to_owned(),
                                Conditions {
                                    pue: Pue(pue),
                                    intensity: GramsPerKwh(ci),
                                },
                            )]),
                        }
                    })
                    .collect();
                World {
                    settings,
                    intervals,
                }
            },
        )
}

/// A generated pod: node, phase, product (2 = none), workload, running, platform, share.
type PodParams = (usize, usize, usize, usize, bool, bool, f64);

fn world_settings(
    idle: usize,
    by_energy: bool,
    overhead: f64,
    epc: f64,
    pue: f64,
    ci: f64,
) -> Settings {
    let mut settings = Settings::simple(Pue(pue), GramsPerKwh(ci));
    settings.node_idle = [
        IdlePolicy::ByEnergy,
        IdlePolicy::Even,
        IdlePolicy::Unallocated,
    ][idle];
    settings.platform.split = if by_energy {
        PlatformSplit::ByEnergy
    } else {
        PlatformSplit::Equal
    };
    settings.platform.overhead = GramsPerSecond(overhead);
    settings.platform.epc = Grams(epc);
    settings.systems.push(SystemDef {
        matches: BTreeMap::new(),
        embodied: Grams(1e6),
        per_gpu: Grams(1e5),
        lifetime: Seconds::from_years(4.0),
    });
    settings.max_pod_series = 5;
    settings
}

fn world_pods(pods: &[PodParams]) -> Vec<PodFacts> {
    let phases = Phase::ALL;
    pods.iter()
        .enumerate()
        .map(|(i, (n, ph, pr, w, running, platform, share))| {
            PodFacts::new("ns", &format!("p{i}"))
                .uid(&format!("u{i}"))
                .workload("Job", &format!("w{w}"))
                .phase(phases[*ph])
                .product(["m", "d"].get(*pr).copied())
                .node(&format!("n{n}"))
                .platform(*platform)
                .reserved_share(*share)
                .running(*running)
        })
        .collect()
}

/// Owners 0..=7 are pods, then node system, an unmapped GPU, node active and node idle.
fn world_energy(deltas: &[(usize, usize, f64)]) -> Vec<EnergyDelta> {
    deltas
        .iter()
        .map(|(owner, c, j)| EnergyDelta {
            node: format!("n{}", owner % 3),
            owner: match owner {
                0..=7 => EnergyOwner::pod("ns", format!("p{owner}"), "c"),
                8 => EnergyOwner::NodeSystem,
                9 => EnergyOwner::UnmappedGpu { uuid: "g".into() },
                10 => EnergyOwner::NodeActive,
                _ => EnergyOwner::NodeIdle,
            },
            component: Component::ALL[*c],
            energy: Joules(*j),
            estimated: false,
        })
        .collect()
}

/// Carbon held by pod accounts, roll-ups and retired workloads.
fn state_total(state: &LedgerState) -> f64 {
    state.booked_to_workloads().value()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Σ workloads + products + unallocated = Σ inputs, every interval and cumulatively.
    #[test]
    fn every_interval_conserves(world in world()) {
        let mut state = LedgerState::default();
        let mut new_inputs = 0.0;
        let mut transfers_from_stocks = 0.0;
        for input in &world.intervals {
            let before_pool: f64 = state.products.values().map(|p| p.pool.balance().value()).sum();
            let before_measured: f64 = state.products.values().map(|p| p.measured.value()).sum();
            let (next, report) = book_interval(&state, &world.settings, input);
            let scale = report.emissions.input.value().max(report.transfers.input.value()).max(1.0);

            // Both books conserve.
            prop_assert!(report.emissions.conservation_error() < 1e-9);
            prop_assert!(report.transfers.conservation_error() < 1e-9);

            // The platform account is a pass-through: what platform pods emitted moved onto jobs.
            let platform_in = report.emissions.allocated.get(&Account::Platform).copied().unwrap_or(Grams::ZERO).value();
            let epc_and_pool = report.transfers.input.value() - platform_in;

            // Σ pod terms + Σ unallocated = new emissions + carbon taken from EPC and pools.
            let pods: f64 = report.pod_terms.values().map(|t| t.asce().value()).sum();
            let unallocated: f64 = report.emissions.unallocated.values().chain(report.transfers.unallocated.values()).map(|g| g.value()).sum();
            prop_assert!((pods + unallocated - (report.emissions.input.value() + epc_and_pool)).abs() <= 1e-9 * scale,
                "pods {pods} + unallocated {unallocated} != emissions {} + transfers {epc_and_pool}", report.emissions.input.value());

            // Products: measured EPC grew by the build jobs' carbon; pools by deposits − drains.
            let deposits: f64 = report.epc_deposits.values().map(|g| g.value()).sum();
            let after_measured: f64 = next.products.values().map(|p| p.measured.value()).sum();
            prop_assert!((after_measured - before_measured - deposits).abs() <= 1e-9 * scale);
            let pool_in: f64 = report.pool_deposits.values().map(|g| g.value()).sum();
            let pool_out: f64 = report.pool_drains.values().map(|g| g.value()).sum();
            let after_pool: f64 = next.products.values().map(|p| p.pool.balance().value()).sum();
            prop_assert!((after_pool - before_pool - pool_in + pool_out).abs() <= 1e-9 * scale.max(before_pool));

            // Every per-pod term lands in the state (pod series or roll-ups): nothing lost.
            let added = state_total(&next) - state_total(&state);
            prop_assert!((added - pods).abs() <= 1e-9 * scale.max(state_total(&next)), "state grew {added}, pods {pods}");
            // The totals family holds exactly what the workloads (live and retired) hold.
            let totals = next.totals_carbon().value();
            prop_assert!((totals - state_total(&next)).abs() <= 1e-9 * totals.max(1.0), "totals {totals} vs workloads {}", state_total(&next));

            // Nothing negative.
            prop_assert!(report.pod_terms.values().all(|t| t.iter().all(|(_, g)| g.value() >= -1e-9 * scale)));

            new_inputs += report.emissions.input.value();
            transfers_from_stocks += epc_and_pool;
            state = next;
        }
        // Cumulatively: state totals + unallocated totals = all inputs.
        let unallocated_total: f64 = state.unallocated.values().map(|g| g.value()).sum();
        let total = state_total(&state) + unallocated_total;
        let inputs = new_inputs + transfers_from_stocks;
        prop_assert!((total - inputs).abs() <= 1e-9 * inputs.max(1.0), "{total} vs {inputs}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every stage balances on its own: the joules or grams that entered it left it to pods,
    /// products, pools or unallocated with a reason. The stages run in order, their balances
    /// add up to the interval's books, and tracing them changes nothing.
    #[test]
    fn every_stage_conserves(world in world()) {
        let mut state = LedgerState::default();
        for input in &world.intervals {
            let (next, report, flows) = book_interval_traced(&state, &world.settings, input);
            let stages: Vec<Stage> = flows.iter().map(|f| f.stage).collect();
            prop_assert_eq!(stages, Stage::ALL.to_vec());
            for flow in &flows {
                prop_assert!(flow.error() <= jobcarbon_ledger::interval::STAGE_TOLERANCE, "{flow:?}");
            }
            let flow = |stage: Stage| flows.iter().find(|f| f.stage == stage).unwrap();

            // Measure takes in every joule of the interval.
            let measured: f64 = input.energy.iter().map(|d| d.energy.non_negative().value()).sum();
            prop_assert!(close(flow(Stage::Measure).joules.entered.value(), measured));

            // The carbon stages' intake is the interval's two books.
            let carbon_in: f64 = [Stage::Operational, Stage::Embodied, Stage::Platform, Stage::Inference]
                .into_iter()
                .map(|s| flow(s).grams.entered.value())
                .sum();
            let books = report.emissions.input.value() + report.transfers.input.value();
            prop_assert!(close(carbon_in, books), "stages {carbon_in} vs books {books}");

            // Deposits capitalise what the products and pools received.
            let deposits: f64 = report.epc_deposits.values().chain(report.pool_deposits.values()).map(|g| g.value()).sum();
            prop_assert!(close(flow(Stage::Deposits).grams.entered.value(), deposits));

            // Accounts book every pod term and every unallocated gram of the interval.
            let pods: f64 = report.pod_terms.values().map(|t| t.asce().value()).sum();
            let unallocated: f64 = report.emissions.unallocated.values().chain(report.transfers.unallocated.values()).map(|g| g.value()).sum();
            prop_assert!(close(flow(Stage::Accounts).grams.entered.value(), pods + unallocated));

            let (plain, plain_report) = book_interval(&state, &world.settings, input);
            prop_assert_eq!(&plain, &next);
            prop_assert_eq!(&plain_report, &report);
            state = next;
        }
    }
}

fn node_delta(owner: EnergyOwner, component: Component, joules: f64) -> EnergyDelta {
    EnergyDelta {
        node: "n1".into(),
        owner,
        component,
        energy: Joules(joules),
        estimated: false,
    }
}

/// Kepler ≥ 0.10: node active energy the pods do not account for is non-pod work, booked as
/// unallocated like the legacy `system_processes`, so both generations give the same totals.
#[test]
fn kepler_v2_non_pod_active_energy_is_unallocated_system_processes() {
    // 3600 g/kWh at PUE 1: 1 J = 1 mg.
    let settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    let a = pod("ml", "a", "a", Phase::Training, None);
    let snapshot = ClusterSnapshot {
        pods: vec![a.clone()],
        nodes: vec![node("n1")],
        ..Default::default()
    };
    let deltas = vec![
        energy(&a, Component::Cpu, 700.0),
        node_delta(EnergyOwner::NodeActive, Component::Cpu, 1000.0),
        // Active below the pods' sum (rounding between counters): nothing negative.
        node_delta(EnergyOwner::NodeActive, Component::Dram, 0.0),
    ];
    let (state, report) = one_interval(&settings, snapshot, deltas, 30.0, 1.0, 3600.0);
    assert!(close(
        state.pods[&a.key].carbon[Term::Operational].value(),
        0.7
    ));
    assert!(close(
        report.emissions.unallocated[&UnallocatedReason::SystemProcesses].value(),
        0.3
    ));
    assert!(close(report.emissions.input.value(), 1.0));
    assert!(report.emissions.conservation_error() < 1e-12);
}

/// A GPU line naming no workload is node idle as far as the node has GPUs no running pod
/// requests; the rest is some pod's energy the exporter did not map: `gpu_unmapped`.
#[test]
fn unmapped_gpu_energy_is_idle_only_where_gpus_are_free() {
    let settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    let unmapped = |uuid: &str, joules| {
        node_delta(
            EnergyOwner::UnmappedGpu { uuid: uuid.into() },
            Component::Gpu,
            joules,
        )
    };
    let mut two_gpus = node("n1");
    two_gpus.gpu_count = 2;
    // (pods holding GPUs, expected idle grams, expected gpu_unmapped grams) for 2 × 500 J.
    for (held, idle_g, unmapped_g) in [(0.0, 1.0, 0.0), (1.0, 0.5, 0.5), (2.0, 0.0, 1.0)] {
        let a = pod("ml", "a", "a", Phase::Training, None).gpus(held);
        let snapshot = ClusterSnapshot {
            pods: vec![a.clone()],
            nodes: vec![two_gpus.clone()],
            ..Default::default()
        };
        let deltas = vec![
            energy(&a, Component::Cpu, 100.0),
            unmapped("GPU-1", 500.0),
            unmapped("GPU-2", 500.0),
        ];
        let (state, report) = one_interval(&settings, snapshot, deltas, 30.0, 1.0, 3600.0);
        let idle_share = state.pods[&a.key]
            .energy
            .get(&Component::IdleShare)
            .map_or(0.0, |j| j.value() / 1000.0);
        let gpu_unmapped = report
            .emissions
            .unallocated
            .get(&UnallocatedReason::GpuUnmapped)
            .map_or(0.0, |g| g.value());
        assert!(close(idle_share, idle_g), "{held} held: idle {idle_share}");
        assert!(
            close(gpu_unmapped, unmapped_g),
            "{held} held: {gpu_unmapped}"
        );
        assert!(report.emissions.conservation_error() < 1e-12);
    }
}

/// A product whose request counters cannot be read keeps its per-request figure: its grams are
/// booked, but the interval does not enter the per-request window (it would inflate it).
#[test]
fn unreadable_requests_hold_the_per_request_figure() {
    let settings = Settings::simple(Pue(1.0), GramsPerKwh(3600.0));
    let serve = pod("ml", "s", "s", Phase::Inference, Some("m"));
    let snapshot = ClusterSnapshot {
        pods: vec![serve.clone()],
        nodes: vec![node("n1")],
        products: vec![ProductDef::new(
            "m",
            ProductType::Model,
            Seconds::from_years(1.0),
        )],
        ..Default::default()
    };
    let (s1, _) = one_interval(
        &settings,
        snapshot.clone(),
        vec![energy(&serve, Component::Gpu, 1000.0)],
        60.0,
        1.0,
        3600.0,
    );
    let input = |at: f64, requests: f64, unknown: bool| IntervalInput {
        at: Seconds(at),
        snapshot: snapshot.clone(),
        energy: vec![energy(&serve, Component::Gpu, 1000.0)],
        requests: BTreeMap::from([("m".to_owned(), requests)]),
        requests_unknown: if unknown {
            ["m".to_owned()].into()
        } else {
            Default::default()
        },
        conditions: conditions(&settings, 1.0, 3600.0),
    };
    let (s2, _) = book_interval(&s1, &settings, &input(120.0, 10.0, false));
    let window = |s: &LedgerState| s.products["m"].window.len();
    let grams = |s: &LedgerState| s.products["m"].inference_grams_total.value();
    let (s3, _) = book_interval(&s2, &settings, &input(180.0, 0.0, true));
    assert_eq!(
        window(&s3),
        window(&s2),
        "the unknown interval stays out of the window"
    );
    assert!(grams(&s3) > grams(&s2), "its grams are still booked");
    let (s4, _) = book_interval(&s3, &settings, &input(240.0, 10.0, false));
    assert_eq!(window(&s4), window(&s2) + 1);
}

//! A synthetic cluster at scale, shared by the ledger and exporter benchmarks
//! (`#[path]`-included): 100 pods per node, training/fine-tuning/inference/unlabelled pods,
//! one platform pod per node, 100 products, CPU + DRAM energy per pod, GPU energy for build
//! jobs, node idle per node. Deterministic, so runs compare.

use jobcarbon_core::{
    ClusterSnapshot, Component, EnergyDelta, EnergyOwner, Grams, GramsPerKwh, GramsPerSecond,
    Joules, NodeFacts, Phase, PodFacts, PodKey, ProductDef, ProductType, Pue, Seconds,
};
use jobcarbon_ledger::SystemDef;
use jobcarbon_ledger::{Conditions, IntervalInput, LedgerState, Settings, book_interval};
use std::collections::BTreeMap;

pub const PODS_PER_NODE: usize = 100;
pub const PRODUCTS: usize = 100;
pub const STEP: f64 = 30.0;

pub struct World {
    pub settings: Settings,
    pub snapshot: ClusterSnapshot,
    pub energy: Vec<EnergyDelta>,
    pub conditions: BTreeMap<String, Conditions>,
}

impl World {
    pub fn input(&self, at: f64) -> IntervalInput {
        IntervalInput {
            at: Seconds(at),
            snapshot: self.snapshot.clone(),
            energy: self.energy.clone(),
            requests: (0..PRODUCTS)
                .map(|p| (format!("model-{p}"), 1000.0))
                .collect(),
            requests_unknown: Default::default(),
            conditions: self.conditions.clone(),
        }
    }

    /// The state after `intervals` booked intervals (every pod has its series).
    pub fn booked(&self, intervals: usize) -> LedgerState {
        let mut state = LedgerState::default();
        for i in 0..intervals {
            state = book_interval(&state, &self.settings, &self.input(STEP * i as f64)).0;
        }
        state
    }
}

pub fn world(pods: usize) -> World {
    let nodes = pods.div_ceil(PODS_PER_NODE);
    let conditions = BTreeMap::from([(
        "default".to_owned(),
        Conditions {
            pue: Pue(1.1),
            intensity: GramsPerKwh(400.0),
        },
    )]);
    let mut snapshot = ClusterSnapshot::default();
    let mut energy = Vec::new();
    for p in 0..PRODUCTS {
        snapshot.products.push(ProductDef::new(
            format!("model-{p}"),
            ProductType::Model,
            Seconds::from_years(3.0),
        ));
    }
    add_nodes(&mut snapshot, &mut energy, nodes);
    add_pods(&mut snapshot, &mut energy, pods);
    World {
        settings: settings(pods, nodes),
        snapshot,
        energy,
        conditions,
    }
}

fn settings(pods: usize, nodes: usize) -> Settings {
    let mut settings = Settings::simple(Pue(1.1), GramsPerKwh(400.0));
    settings.max_pod_series = pods + nodes;
    settings.platform.namespaces = vec!["monitoring".to_owned()];
    settings.platform.overhead = GramsPerSecond::per_minute(50.0);
    settings.platform.epc = Grams(2e9);
    settings.systems.push(SystemDef {
        matches: BTreeMap::from([(
            "node.kubernetes.io/instance-type".to_owned(),
            "p5.48xlarge".to_owned(),
        )]),
        embodied: Grams(10.3e6),
        per_gpu: Grams::ZERO,
        lifetime: Seconds::from_years(6.0),
    });
    settings
}

/// `nodes` p5.48xlarge nodes, each with some idle CPU energy.
fn add_nodes(snapshot: &mut ClusterSnapshot, energy: &mut Vec<EnergyDelta>, nodes: usize) {
    for n in 0..nodes {
        let node = format!("node-{n:05}");
        snapshot.nodes.push(NodeFacts {
            name: node.clone(),
            region: None,
            instance_type: Some("p5.48xlarge".to_owned()),
            gpu_count: 8,
            gpu_model: Some("H100".to_owned()),
            labels: BTreeMap::from([(
                "node.kubernetes.io/instance-type".to_owned(),
                "p5.48xlarge".to_owned(),
            )]),
            cpus: 0.0,
        });
        energy.push(EnergyDelta {
            node: node.clone(),
            owner: EnergyOwner::NodeIdle,
            component: Component::Cpu,
            energy: Joules(3000.0),
            estimated: false,
        });
    }
}

/// `pods` pods, [`PODS_PER_NODE`] a node, the first on each node a platform pod.
fn add_pods(snapshot: &mut ClusterSnapshot, energy: &mut Vec<EnergyDelta>, pods: usize) {
    for i in 0..pods {
        let node = format!("node-{:05}", i / PODS_PER_NODE);
        let platform = i % PODS_PER_NODE == 0;
        let (namespace, phase) = match i % 10 {
            _ if platform => ("monitoring", Phase::Unlabelled),
            0..=5 => ("train", Phase::Training),
            6 => ("tune", Phase::FineTuning),
            7 | 8 => ("serve", Phase::Inference),
            _ => ("batch", Phase::Unlabelled),
        };
        let name = format!("pod-{i:06}");
        let product = (phase != Phase::Unlabelled).then(|| format!("model-{}", i % PRODUCTS));
        let key = PodKey::new(namespace, &name);
        snapshot.pods.push(
            PodFacts::new(namespace, &name)
                .uid(&format!("uid-{i}"))
                .workload("Job", &format!("job-{}", i / 8))
                .phase(phase)
                .product(product.as_deref())
                .node(&node)
                .platform(platform)
                .reserved_share(0.01),
        );
        let mut push = |component, joules| {
            energy.push(EnergyDelta {
                node: node.clone(),
                owner: EnergyOwner::Pod {
                    key: key.clone(),
                    container: "main".to_owned(),
                },
                component,
                energy: Joules(joules),
                estimated: false,
            })
        };
        push(Component::Cpu, 300.0 + (i % 17) as f64);
        push(Component::Dram, 40.0);
        if phase.builds_product() {
            push(Component::Gpu, 9000.0);
        }
    }
}

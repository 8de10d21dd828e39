//! Generated scenarios shared by the `calc` bench and the `yaml_probe` example.

#![allow(clippy::unwrap_used)] // a generator that cannot write its own input should stop

use std::fmt::Write;

/// Deterministic xorshift, so every run measures the same scenario.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn is_dataset(i: usize) -> bool {
    i.is_multiple_of(4)
}

pub fn scenario_yaml(products: usize, jobs: usize) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut y = String::with_capacity(jobs * 160 + products * 120);
    y.push_str("regions:\n  a: {pue: 1.2, intensity: 380}\n  b: {pue: 1.1, intensity: {mix: {hydro: 0.6, nuclear: 0.3, wind: 0.1}}}\n");
    y.push_str(
        "systems:\n  gpu: {embodied: 10.3t, lifetime: 6y}\n  cpu: {embodied: 1.5t, lifetime: 5y}\n",
    );
    y.push_str("platforms:\n  k8s: {overhead: 120g/h, epc: 4t, lifetime: 6y}\n");
    y.push_str("products:\n");
    for i in 0..products {
        if is_dataset(i) {
            writeln!(y, "  p{i}: {{type: dataset, declared: 1kg}}").unwrap();
            continue;
        }
        write!(y, "  p{i}: {{type: model, lifetime: 2y").unwrap();
        let mut parents = Vec::new();
        let mut datasets = Vec::new();
        if i > 1 {
            for _ in 0..rng.below(4) {
                let j = rng.below(i);
                if is_dataset(j) {
                    datasets.push(j)
                } else {
                    parents.push(j)
                }
            }
        }
        parents.dedup();
        datasets.dedup();
        if !parents.is_empty() {
            let list: Vec<String> = parents
                .iter()
                .map(|j| format!("{{product: p{j}, weight: 0.2}}"))
                .collect();
            write!(y, ", derivedFrom: [{}]", list.join(", ")).unwrap();
        }
        if !datasets.is_empty() {
            let list: Vec<String> = datasets
                .iter()
                .map(|j| format!("{{product: p{j}, weight: 0.5}}"))
                .collect();
            write!(y, ", datasets: [{}]", list.join(", ")).unwrap();
        }
        if i % 10 == 1 {
            y.push_str(", retraining: {carbon: 5kg, interval: 1d, jobsPerInterval: 1000000}");
        }
        y.push_str("}\n");
    }
    y.push_str("jobs:\n");
    let model = |rng: &mut Rng, below: usize| loop {
        let m = rng.below(below.max(2));
        if !is_dataset(m) {
            break m;
        }
    };
    for k in 0..jobs {
        write!(y, "  - {{name: j{k}, power: 700W, devices: {}, duration: {}s, region: {}, system: gpu, share: 0.5, platform: k8s, concurrent: 20",
            1 + rng.below(8), 1 + rng.below(86_400), if k.is_multiple_of(2) { "a" } else { "b" }).unwrap();
        match k % 3 {
            0 => {
                let p = rng.below(products);
                write!(y, ", builds: p{p}").unwrap();
                if k.is_multiple_of(9) && p > 2 {
                    write!(y, ", serves: p{}", model(&mut rng, p)).unwrap();
                }
            }
            1 => write!(
                y,
                ", serves: p{}, concurrentServing: 10",
                model(&mut rng, products)
            )
            .unwrap(),
            _ => {}
        }
        y.push_str("}\n");
    }
    y
}

//! Pods resolved to the workload the user submitted, through the fake API server: each
//! submitter's pods (fixtures/kube/submitters, shaped as the controllers create them) are listed
//! by the reflector and read back from `ClusterState::snapshot()`.

use jobcarbon_kube::{ClusterState, CrdPresence, WatchConfig};
use jobcarbon_kube::{WatchErrorKind, WatchedResource};
use jobcarbon_testkit::kube_api::{FakeKubeApi, WatchScript, event, list};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const PODS: &str = "/api/v1/pods";
const NODES: &str = "/api/v1/nodes";
const JOBS: &str = "/apis/batch/v1/jobs";
const RAY_CLUSTERS: &str = "/apis/ray.io/v1/rayclusters";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

fn json(path: &str) -> Value {
    let text = jobcarbon_testkit::fixture(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn submitter(name: &str) -> Value {
    json(&format!("kube/submitters/{name}"))
}

fn node_list() -> Value {
    let path = format!(
        "{}/tests/fixtures/node-gpu-node-a1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let node = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let node: Value = serde_json::from_str(&node).unwrap_or_else(|e| panic!("{path}: {e}"));
    list("v1", "NodeList", "1479920", vec![node])
}

async fn start(api: &FakeKubeApi) -> ClusterState {
    let url = api.url().parse().unwrap_or_else(|e| panic!("url: {e}"));
    let client =
        kube::Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| panic!("client: {e}"));
    let config = WatchConfig {
        watch_products: false,
        ..WatchConfig::default()
    };
    let (state, driver) = ClusterState::new(client, config);
    tokio::spawn(driver);
    tokio::time::timeout(Duration::from_secs(30), state.wait_until_ready())
        .await
        .unwrap_or_else(|_| panic!("stores never became ready"));
    state
}

/// Pod name → (workload, run) as the ledger would book it.
fn booked(state: &ClusterState) -> BTreeMap<String, (String, Option<String>)> {
    state
        .snapshot()
        .pods
        .into_iter()
        .map(|p| (p.key.pod, (p.workload.workload, p.run)))
        .collect()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Serve `pods` (and nodes) with no Jobs or RayClusters, and return what each pod books to.
async fn resolve(pods: Value) -> BTreeMap<String, (String, Option<String>)> {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, pods);
    api.push_list(NODES, node_list());
    booked(&start(&api).await)
}

fn workload_of<'a>(booked: &'a BTreeMap<String, (String, Option<String>)>, pod: &str) -> &'a str {
    booked
        .get(pod)
        .map(|(w, _)| w.as_str())
        .unwrap_or_else(|| panic!("{pod} missing from {booked:?}"))
}

#[tokio::test]
async fn jobset_pods_of_both_child_jobs_are_one_jobset() {
    let booked = resolve(submitter("jobset-pretrain-llm-pods.json")).await;
    assert_eq!(booked.len(), 2);
    for (pod, (workload, run)) in &booked {
        assert_eq!(workload, "JobSet/pretrain-llm", "{pod}");
        assert_eq!(run, &None);
    }
}

#[tokio::test]
async fn kserve_raw_and_serverless_pods_are_the_inferenceservice() {
    let booked = resolve(submitter("kserve-llama-chat-pods.json")).await;
    for pod in [
        "llama-chat-predictor-7c9d8b6f5-h4j6k",
        "llama-chat-predictor-00001-deployment-5d8f9c7b6-r2t4y",
    ] {
        assert_eq!(workload_of(&booked, pod), "InferenceService/llama-chat");
    }
}

#[tokio::test]
async fn knative_pods_are_the_knative_service() {
    let booked = resolve(submitter("knative-hello-pods.json")).await;
    assert_eq!(
        workload_of(&booked, "hello-00003-deployment-6b7c8d9f4-p9s3d"),
        "Service/hello"
    );
}

#[tokio::test]
async fn leader_and_worker_statefulsets_are_one_leaderworkerset() {
    let booked = resolve(submitter("lws-vllm-multinode-pods.json")).await;
    assert_eq!(
        workload_of(&booked, "vllm-multinode-0"),
        "LeaderWorkerSet/vllm-multinode"
    );
    assert_eq!(
        workload_of(&booked, "vllm-multinode-0-1"),
        "LeaderWorkerSet/vllm-multinode"
    );
}

#[tokio::test]
async fn kubeflow_training_pods_are_their_pytorchjob() {
    let booked = resolve(submitter("kubeflow-pytorchjob-pods.json")).await;
    for pod in ["bert-finetune-master-0", "bert-finetune-worker-0"] {
        assert_eq!(workload_of(&booked, pod), "PyTorchJob/bert-finetune");
    }
}

#[tokio::test]
async fn rayjob_pods_are_the_rayjob_once_the_raycluster_is_known() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, submitter("kuberay-tune-sweep-pods.json"));
    api.push_list(NODES, node_list());
    api.push_list(
        RAY_CLUSTERS,
        submitter("kuberay-tune-sweep-rayclusters.json"),
    );
    let state = start(&api).await;
    eventually("RayClusters listed", || {
        state.health().kuberay == CrdPresence::Installed
    })
    .await;
    let booked = booked(&state);
    for pod in [
        "tune-sweep-x7k2p-head-q8w2n",
        "tune-sweep-x7k2p-gpu-group-worker-t5v7b",
        "tune-sweep-4xk8s",
    ] {
        assert_eq!(workload_of(&booked, pod), "RayJob/tune-sweep", "{pod}");
    }
    // The RayClusters were read metadata-only.
    let ray_list = api
        .requests()
        .into_iter()
        .find(|r| r.path == RAY_CLUSTERS)
        .unwrap_or_else(|| panic!("no RayCluster request"));
    assert_eq!(ray_list.accept.as_deref(), Some(METADATA_LIST));
}

#[tokio::test]
async fn without_kuberay_ray_pods_stay_with_their_raycluster() {
    // No RayCluster CRD: 404, reported, and the head and workers keep today's workload.
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, submitter("kuberay-tune-sweep-pods.json"));
    api.push_list(NODES, node_list());
    let state = start(&api).await;
    eventually("RayCluster CRD reported absent", || {
        state.health().kuberay == CrdPresence::Absent
    })
    .await;
    let booked = booked(&state);
    assert_eq!(
        workload_of(&booked, "tune-sweep-x7k2p-head-q8w2n"),
        "RayCluster/tune-sweep-x7k2p"
    );
    // The submitter pod names its RayJob itself.
    assert_eq!(
        workload_of(&booked, "tune-sweep-4xk8s"),
        "RayJob/tune-sweep"
    );
}

#[tokio::test]
async fn cronjob_pods_are_the_cronjob_with_their_run_via_the_metadata_watch() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    let pods = submitter("cronjob-nightly-retrain-pods.json");
    let jobs = submitter("cronjob-nightly-retrain-jobs.json");
    api.push_list(PODS, pods.clone());
    api.push_list(NODES, node_list());
    // Listed: yesterday's run and a hand-made Job. Tonight's run arrives on the watch.
    let items = jobs["items"].as_array().cloned().unwrap_or_default();
    let tonight = items
        .iter()
        .find(|j| j["metadata"]["name"] == "nightly-retrain-29412960")
        .cloned()
        .unwrap_or_else(|| panic!("fixture lacks tonight's Job"));
    let listed: Vec<Value> = items.into_iter().filter(|j| *j != tonight).collect();
    api.push_list(JOBS, list("batch/v1", "JobList", "1500700", listed));
    api.push_watch(JOBS, WatchScript::hang(vec![event("ADDED", &tonight)]));
    let state = start(&api).await;

    eventually("tonight's Job known", || {
        booked(&state)
            .get("nightly-retrain-29412960-8kz2w")
            .is_some_and(|(w, _)| w == "CronJob/nightly-retrain")
    })
    .await;
    let booked = booked(&state);
    assert_eq!(
        booked["nightly-retrain-29412960-8kz2w"],
        (
            "CronJob/nightly-retrain".to_owned(),
            Some("Job/nightly-retrain-29412960".to_owned())
        )
    );
    // Broken chains: a Job without owner, a Job nobody lists (CronJob and Job deleted).
    assert_eq!(
        booked["manual-retrain-q3n5b"],
        ("Job/manual-retrain".to_owned(), None)
    );
    assert_eq!(
        booked["weekly-eval-29410080-v6c1x"],
        ("Job/weekly-eval-29410080".to_owned(), None)
    );

    // Metadata only, list and watch, answered in the API server's shapes.
    let job_requests: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == JOBS)
        .collect();
    assert!(job_requests.len() >= 2, "{job_requests:?}");
    assert_eq!(job_requests[0].accept.as_deref(), Some(METADATA_LIST));
    assert!(
        job_requests[1..].iter().all(|r| r
            .accept
            .as_deref()
            .is_some_and(|a| a.contains("as=PartialObjectMetadata;"))),
        "{job_requests:?}"
    );
    assert_eq!(
        state
            .health()
            .errors_of(WatchedResource::Jobs, WatchErrorKind::Stream),
        0
    );
}

#[tokio::test]
async fn before_the_jobs_are_known_a_cronjob_pod_stays_its_job() {
    // Job listing refused (no RBAC for jobs yet): the name suffix is no proof of a CronJob.
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, submitter("cronjob-nightly-retrain-pods.json"));
    api.push_list(NODES, node_list());
    let state = start(&api).await;
    let booked = booked(&state);
    assert_eq!(
        booked["nightly-retrain-29412960-8kz2w"],
        ("Job/nightly-retrain-29412960".to_owned(), None)
    );
    assert!(
        state
            .health()
            .errors_of(WatchedResource::Jobs, WatchErrorKind::InitialList)
            >= 1
    );
}

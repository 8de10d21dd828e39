//! Watchers against the fake API server (jobcarbon-testkit) serving real Kubernetes JSON.

use jobcarbon_core::{Phase, ProductType};
use jobcarbon_kube::{ClusterState, CrdPresence, WatchConfig, write_product_status};
use jobcarbon_kube::{EpcStatus, SoftwareProductSpec};
use jobcarbon_kube::{StatusWriteError, status_apply_body};
use jobcarbon_kube::{WatchErrorKind, WatchedResource};
use jobcarbon_testkit::kube_api::{
    FakeKubeApi, WatchScript, bookmark, event, expired, list, status_failure,
};
use serde_json::{Value, json};
use std::time::Duration;

const PODS: &str = "/api/v1/pods";
const NODES: &str = "/api/v1/nodes";
const PRODUCTS: &str = "/apis/jobcarbon.io/v1alpha1/softwareproducts";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn pod_list() -> Value {
    json_fixture("podlist-gpu-node.json")
}

fn lifecycle_lines() -> Vec<String> {
    fixture("watch-pods-job-lifecycle.jsonl")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn node_list() -> Value {
    list(
        "v1",
        "NodeList",
        "1479920",
        vec![json_fixture("node-gpu-node-a1.json")],
    )
}

fn product(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "jobcarbon.io/v1alpha1",
        "kind": "SoftwareProduct",
        "metadata": {"name": name, "resourceVersion": "77", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2024-06-01T00:00:00Z"},
        "spec": spec,
    })
}

fn product_list() -> Value {
    list(
        "jobcarbon.io/v1alpha1",
        "SoftwareProductList",
        "80",
        vec![
            product("wikipedia-en", json!({"type": "dataset", "lifetime": "2y"})),
            product(
                "bert-base",
                json!({"type": "model", "lifetime": "3y",
                       "datasets": [{"product": "wikipedia-en", "weight": 0.5}],
                       "declared": {"carbon": "552kg", "source": "model card"},
                       "inference": {"requests": {"preset": "vllm"}},
                       "retraining": {"amortizeOver": "24h"}}),
            ),
            product(
                "loop-a",
                json!({"type": "model", "lifetime": "1y", "derivedFrom": [{"product": "loop-b", "weight": 0.5}]}),
            ),
            product(
                "loop-b",
                json!({"type": "model", "lifetime": "1y", "derivedFrom": [{"product": "loop-a", "weight": 0.5}]}),
            ),
        ],
    )
}

async fn client(api: &FakeKubeApi) -> kube::Client {
    let url = api.url().parse().unwrap_or_else(|e| panic!("url: {e}"));
    kube::Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| panic!("client: {e}"))
}

async fn start(api: &FakeKubeApi, config: WatchConfig) -> ClusterState {
    let (state, driver) = ClusterState::new(client(api).await, config);
    tokio::spawn(driver);
    tokio::time::timeout(Duration::from_secs(20), state.wait_until_ready())
        .await
        .unwrap_or_else(|_| panic!("stores never became ready"));
    state
}

/// Poll until `check` holds; the watchers run on their own tasks.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn pod_names(state: &ClusterState) -> Vec<String> {
    state
        .snapshot()
        .pods
        .iter()
        .map(|p| p.key.pod.clone())
        .collect()
}

#[tokio::test]
async fn job_pod_resolves_to_workload_phase_product_node_region_and_share() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, pod_list());
    api.push_list(NODES, node_list());
    api.push_list(PRODUCTS, product_list());
    let state = start(&api, WatchConfig::default()).await;
    eventually("products listed", || {
        state.health().crd == CrdPresence::Installed
    })
    .await;

    let snapshot = state.snapshot();
    assert_eq!(snapshot.pods.len(), 4);
    let train = snapshot
        .pods
        .iter()
        .find(|p| p.key.pod == "bert-base-train-7x9kq")
        .unwrap_or_else(|| panic!("training pod missing"));
    assert_eq!(train.workload.workload, "Job/bert-base-train");
    assert_eq!(train.workload.namespace, "ml-training");
    assert_eq!(train.phase, Phase::Training);
    assert_eq!(train.product.as_deref(), Some("bert-base"));
    assert_eq!(train.node.as_deref(), Some("gpu-node-a1"));
    assert_eq!(train.uid, "8995efeb-a903-4050-909c-5892503e12b4");
    assert!(train.running);
    // One of two GPUs dominates 8 of 23.5 cores and 64Gi of ~332Gi.
    assert_eq!(train.reserved_share, 0.5);

    let serve = snapshot
        .pods
        .iter()
        .find(|p| p.key.pod == "bert-base-serve-6d8f7b9c5d-k2m4x")
        .unwrap_or_else(|| panic!("serving pod missing"));
    assert_eq!(serve.workload.workload, "Deployment/bert-base-serve");
    assert_eq!(serve.phase, Phase::Inference);
    let kepler = snapshot
        .pods
        .iter()
        .find(|p| p.key.pod == "kepler-vx5lp")
        .unwrap_or_else(|| panic!("kepler pod missing"));
    assert_eq!(kepler.workload.workload, "DaemonSet/kepler");
    assert_eq!(kepler.phase, Phase::Unlabelled);

    let node = &snapshot.nodes[0];
    assert_eq!(node.name, "gpu-node-a1");
    assert_eq!(node.region.as_deref(), Some("us-central1"));
    assert_eq!(node.instance_type.as_deref(), Some("a2-ultragpu-2g"));
    assert_eq!(node.gpu_count, 2);
    assert_eq!(node.gpu_model.as_deref(), Some("NVIDIA-A100-SXM4-80GB"));

    let names: Vec<&str> = snapshot.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["bert-base", "wikipedia-en"]);
    assert_eq!(snapshot.products[0].kind, ProductType::Model);
    let invalid: Vec<&str> = snapshot
        .invalid_products
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(invalid, ["loop-a", "loop-b"]);
    assert!(snapshot.invalid_products[0].1.contains("lineage cycle"));
}

#[tokio::test]
async fn relist_after_410_loses_no_pod_and_keeps_no_deleted_one() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    let first = pod_list();
    api.push_list(PODS, first.clone());
    let lines = lifecycle_lines();
    // ADDED (Pending), MODIFIED (Running), BOOKMARK, then the resourceVersion expires.
    let mut script = lines[..3].to_vec();
    script.push(fixture("watch-error-410-expired.json").trim().to_owned());
    api.push_watch(PODS, WatchScript::hang(script));

    // While the watch was broken: coredns was deleted (no DELETED event will ever arrive) and
    // a new pod was created (no ADDED event either). The relist alone must show both.
    let added: Value = serde_json::from_str::<Value>(&lines[1])
        .ok()
        .and_then(|e| e.get("object").cloned())
        .unwrap_or_else(|| panic!("bad fixture line"));
    let mut newcomer = added.clone();
    newcomer["metadata"]["name"] = json!("bert-base-train-newpd");
    newcomer["metadata"]["uid"] = json!("0e6f2a4c-1b3d-4f5e-8a7c-9d1b3f5a7c9e");
    let mut items: Vec<Value> = first["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["name"] != "coredns-76f75df574-8qzsv")
        .collect();
    items.push(added);
    items.push(newcomer);
    api.push_list(PODS, list("v1", "PodList", "1481950", items));
    api.push_list(NODES, node_list());

    let state = start(&api, WatchConfig::default()).await;
    eventually("relist after 410", || {
        state.health().lists_of(WatchedResource::Pods) >= 2
    })
    .await;
    let names = pod_names(&state);
    assert!(
        !names.contains(&"coredns-76f75df574-8qzsv".to_owned()),
        "{names:?}"
    );
    for kept in [
        "bert-base-train-7x9kq",
        "bert-base-serve-6d8f7b9c5d-k2m4x",
        "kepler-vx5lp",
        "bert-base-train-m4d2z",
        "bert-base-train-newpd",
    ] {
        assert!(names.contains(&kept.to_owned()), "{kept} lost: {names:?}");
    }
    let health = state.health();
    assert_eq!(
        health.errors_of(WatchedResource::Pods, WatchErrorKind::Gone),
        1
    );
    assert!(api.list_count(PODS) >= 2);
    // The watch resumed from the bookmark's resourceVersion before it expired.
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path == PODS && r.has_query("resourceVersion", "1480301"))
    );
}

#[tokio::test]
async fn watch_events_add_update_and_delete() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, pod_list());
    api.push_list(NODES, node_list());
    let lines = lifecycle_lines();
    api.push_watch(PODS, WatchScript::hang(lines[..2].to_vec()));
    let state = start(&api, WatchConfig::default()).await;
    eventually("ADDED then MODIFIED applied", || {
        state
            .snapshot()
            .pods
            .iter()
            .any(|p| p.key.pod == "bert-base-train-m4d2z" && p.running)
    })
    .await;
    drop(state);

    // A fresh watcher that sees the whole lifecycle ends without the pod.
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, pod_list());
    api.push_list(NODES, node_list());
    api.push_watch(PODS, WatchScript::hang(lines.clone()));
    let state = start(&api, WatchConfig::default()).await;
    eventually("DELETED applied", || {
        api.watch_count(PODS) >= 1
            && !pod_names(&state).contains(&"bert-base-train-m4d2z".to_owned())
            && state.snapshot().pods.len() == 4
    })
    .await;
    let bookmark_line = bookmark("v1", "Pod", "1");
    assert!(bookmark_line.contains("BOOKMARK"));
}

#[tokio::test]
async fn malformed_object_is_counted_and_the_watch_goes_on() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, pod_list());
    api.push_list(NODES, node_list());
    let lines = lifecycle_lines();
    let malformed = json!({"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": 42, "namespace": ["not", "a", "string"]},
        "spec": {"containers": "everything"}}})
    .to_string();
    api.push_watch(
        PODS,
        WatchScript::hang(vec![malformed, "{not json".to_owned(), lines[0].clone()]),
    );
    let state = start(&api, WatchConfig::default()).await;
    eventually("valid event after malformed ones", || {
        pod_names(&state).contains(&"bert-base-train-m4d2z".to_owned())
    })
    .await;
    let health = state.health();
    assert!(health.errors_of(WatchedResource::Pods, WatchErrorKind::Stream) >= 1);
    assert_eq!(state.snapshot().pods.len(), 5);
}

#[tokio::test]
async fn absent_crd_is_reported_and_config_products_are_used() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, pod_list());
    api.push_list(NODES, node_list());
    let spec = |yaml: &str| -> SoftwareProductSpec {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    };
    let config = WatchConfig {
        products: [
            ("bert-base".to_owned(), spec("type: model\nlifetime: 3y\n")),
            (
                "broken".to_owned(),
                spec("type: model\nlifetime: 3y\nderivedFrom: [{product: nowhere, weight: 0.5}]\n"),
            ),
        ]
        .into(),
        ..WatchConfig::default()
    };
    let state = start(&api, config).await;
    eventually("CRD reported absent", || {
        state.health().crd == CrdPresence::Absent
    })
    .await;
    let snapshot = state.snapshot();
    assert_eq!(snapshot.products.len(), 1);
    assert_eq!(snapshot.products[0].name, "bert-base");
    assert_eq!(snapshot.invalid_products.len(), 1);
    assert_eq!(snapshot.invalid_products[0].0, "broken");
    assert!(
        snapshot.invalid_products[0]
            .1
            .contains("unknown product \"nowhere\"")
    );
    assert!(
        state.health().errors_of(
            WatchedResource::SoftwareProducts,
            WatchErrorKind::InitialList
        ) >= 1
    );
}

#[tokio::test]
async fn status_is_written_by_server_side_apply_on_the_subresource() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PRODUCTS, product_list());
    let client = client(&api).await;
    // Serve the list once so the fake knows the objects.
    let listed: kube::Api<jobcarbon_kube::SoftwareProduct> = kube::Api::all(client.clone());
    listed
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));

    let epc = EpcStatus {
        total_grams: 612_000.0,
        measured_grams: 10_000.0,
        inherited_grams: 50_000.0,
        declared_grams: 552_000.0,
        updated_at: "2024-06-11T09:30:00Z".into(),
    };
    let validation = jobcarbon_kube::validate_products(std::iter::empty());
    assert!(validation.condition("bert-base", "x").is_none());
    let written = write_product_status(&client, "bert-base", Some(&epc), &[])
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(
        written.status.and_then(|s| s.epc).map(|e| e.total_grams),
        Some(612_000.0)
    );
    let patch = api.patches().pop().unwrap_or_else(|| panic!("no PATCH"));
    assert_eq!(patch.path, format!("{PRODUCTS}/bert-base/status"));
    assert!(
        patch.has_query("fieldManager", "jobcarbon"),
        "{}",
        patch.query
    );
    assert!(patch.has_query("force", "true"), "{}", patch.query);
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(patch.body, status_apply_body("bert-base", Some(&epc), &[]));

    let missing = write_product_status(&client, "no-such-product", Some(&epc), &[]).await;
    assert!(
        matches!(missing, Err(StatusWriteError::NotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(status_failure(404, "NotFound", "x")["code"], 404);
    assert!(expired("x").contains("410"));
    let _ = event("ADDED", &json!({}));
}

/// `count` running pods cloned from the fixture's training pod, named `pod-0000`….
fn many_pods(count: usize) -> Vec<Value> {
    let template = pod_list()["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|p| p["metadata"]["name"] == "bert-base-train-7x9kq")
        })
        .cloned()
        .unwrap_or_else(|| panic!("fixture lacks bert-base-train-7x9kq"));
    (0..count)
        .map(|i| {
            let mut pod = template.clone();
            pod["metadata"]["name"] = json!(format!("pod-{i:04}"));
            pod["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            pod
        })
        .collect()
}

#[tokio::test]
async fn a_large_cluster_arrives_whole_through_pages() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, list("v1", "PodList", "5000", many_pods(1234)));
    api.push_list(NODES, node_list());

    let state = start(&api, WatchConfig::default()).await;
    let mut names = pod_names(&state);
    names.sort();
    let expected: Vec<String> = (0..1234).map(|i| format!("pod-{i:04}")).collect();
    assert_eq!(names, expected);
    // kube-runtime's watcher asks for pages of 500 and follows `continue` to the end.
    let pages = api.list_requests(PODS);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages.iter().all(|r| r.has_query("limit", "500")),
        "{pages:?}"
    );
    assert!(!pages[0].query.contains("continue="), "{pages:?}");
    assert!(
        pages[1..].iter().all(|r| r.query.contains("continue=")),
        "{pages:?}"
    );
}

async fn get(client: &kube::Client, uri: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(uri)
        .body(Vec::new())
        .unwrap_or_else(|e| panic!("request {uri}: {e}"));
    client.request::<Value>(request).await
}

fn api_error_code(result: Result<Value, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn pages_carry_the_api_servers_continue_and_expire_with_their_snapshot() {
    let api = FakeKubeApi::start().await.unwrap_or_else(|e| panic!("{e}"));
    api.push_list(PODS, list("v1", "PodList", "5000", many_pods(5)));
    api.push_list(PODS, list("v1", "PodList", "6000", many_pods(3)));
    let client = client(&api).await;

    let first = get(&client, "/api/v1/pods?limit=2")
        .await
        .unwrap_or_else(|e| panic!("first page: {e}"));
    assert_eq!(first["kind"], "PodList");
    assert_eq!(first["metadata"]["resourceVersion"], "5000");
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    let token = first["metadata"]["continue"]
        .as_str()
        .unwrap_or_else(|| panic!("no continue token: {first}"))
        .to_owned();

    let second = get(&client, &format!("/api/v1/pods?limit=2&continue={token}"))
        .await
        .unwrap_or_else(|e| panic!("second page: {e}"));
    assert_eq!(second["items"][0]["metadata"]["name"], "pod-0002");
    assert_eq!(second["metadata"]["remainingItemCount"], 1);

    // `continue` may not be combined with `resourceVersion` (400), as on the API server.
    let both = get(
        &client,
        &format!("/api/v1/pods?continue={token}&resourceVersion=5000"),
    )
    .await;
    assert_eq!(api_error_code(both), (400, "BadRequest".to_owned()));

    // A new list (resourceVersion 6000) starts; the old snapshot's token is then 410 Expired.
    let newer = get(&client, "/api/v1/pods?limit=10")
        .await
        .unwrap_or_else(|e| panic!("new list: {e}"));
    assert_eq!(newer["metadata"]["resourceVersion"], "6000");
    assert!(newer["metadata"].get("continue").is_none(), "{newer}");
    let stale = get(&client, &format!("/api/v1/pods?limit=2&continue={token}")).await;
    assert_eq!(api_error_code(stale), (410, "Expired".to_owned()));
}

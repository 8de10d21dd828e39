//! Leader election against the fake API server: create, renew, standby, takeover after expiry,
//! and a lost race (stale resourceVersion → 409) that leaves the loser standing by.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::Seconds;
use jobcarbon_kube::LeaderElector;
use jobcarbon_testkit::kube_api::FakeKubeApi;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/jobcarbon/leases";

fn elector(api: &FakeKubeApi, me: &str) -> LeaderElector {
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    LeaderElector::new(client, "jobcarbon", "jobcarbon-leader", me, Seconds(15.0))
}

fn last_put(api: &FakeKubeApi) -> serde_json::Value {
    api.requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PUT" || r.method == "POST")
        .map(|r| r.body)
        .unwrap()
}

#[tokio::test]
async fn one_leader_renews_standby_takes_over_after_expiry() {
    let api = FakeKubeApi::start().await.unwrap();
    let a = elector(&api, "ledger-a");
    let b = elector(&api, "ledger-b");
    let t0 = 1_764_000_000.0;

    assert!(a.try_acquire_or_renew(Seconds(t0)).await.unwrap());
    let created = last_put(&api);
    assert_eq!(created["spec"]["holderIdentity"], "ledger-a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    assert!(
        api.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == LEASES)
    );

    // b stands by while a renews.
    assert!(!b.try_acquire_or_renew(Seconds(t0 + 5.0)).await.unwrap());
    assert!(a.try_acquire_or_renew(Seconds(t0 + 10.0)).await.unwrap());
    assert!(!b.try_acquire_or_renew(Seconds(t0 + 20.0)).await.unwrap());
    let renewed = last_put(&api);
    assert_eq!(renewed["spec"]["renewTime"], "2025-11-24T16:00:10.000000Z");
    assert_eq!(
        renewed["spec"]["acquireTime"],
        "2025-11-24T16:00:00.000000Z"
    );

    // a goes silent: 15 s after its last renewal b takes over, one transition.
    assert!(b.try_acquire_or_renew(Seconds(t0 + 25.0)).await.unwrap());
    let taken = last_put(&api);
    assert_eq!(taken["spec"]["holderIdentity"], "ledger-b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    // a comes back and now follows.
    assert!(!a.try_acquire_or_renew(Seconds(t0 + 26.0)).await.unwrap());
}

#[tokio::test]
async fn a_lost_race_is_a_standby_not_an_error() {
    let api = FakeKubeApi::start().await.unwrap();
    let a = elector(&api, "ledger-a");
    let t0 = 1_764_000_000.0;
    assert!(a.try_acquire_or_renew(Seconds(t0)).await.unwrap());
    // c takes the expired lease over; a, coming back, reads c's live lease and follows.
    let c = elector(&api, "ledger-c");
    assert!(c.try_acquire_or_renew(Seconds(t0 + 30.0)).await.unwrap());
    assert!(!a.try_acquire_or_renew(Seconds(t0 + 31.0)).await.unwrap());
    // A write at a stale resourceVersion (what the slower of two racing candidates sends)
    // is refused with 409 by the server.
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client, "jobcarbon");
    let mut stale = leases.get("jobcarbon-leader").await.unwrap();
    assert!(c.try_acquire_or_renew(Seconds(t0 + 32.0)).await.unwrap());
    stale.spec.as_mut().unwrap().holder_identity = Some("ledger-b".into());
    let err = leases
        .replace("jobcarbon-leader", &Default::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    // Two creates of the same Lease: the second is AlreadyExists → standby.
    let other = FakeKubeApi::start().await.unwrap();
    let x = elector(&other, "x");
    let y = elector(&other, "y");
    assert!(x.try_acquire_or_renew(Seconds(t0)).await.unwrap());
    assert!(!y.try_acquire_or_renew(Seconds(t0)).await.unwrap());
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let api = FakeKubeApi::start().await.unwrap();
    let a = elector(&api, "ledger-a");
    let b = elector(&api, "ledger-b");
    let t0 = 1_764_000_000.0;
    assert!(a.try_acquire_or_renew(Seconds(t0)).await.unwrap());
    // Only the holder can release.
    assert!(!b.release(Seconds(t0 + 1.0)).await.unwrap());
    assert!(!b.try_acquire_or_renew(Seconds(t0 + 1.0)).await.unwrap());
    assert!(a.release(Seconds(t0 + 2.0)).await.unwrap());
    assert!(last_put(&api)["spec"].get("holderIdentity").is_none());
    // Well before the 15 s expiry.
    assert!(b.try_acquire_or_renew(Seconds(t0 + 3.0)).await.unwrap());
    assert_eq!(last_put(&api)["spec"]["holderIdentity"], "ledger-b");
}

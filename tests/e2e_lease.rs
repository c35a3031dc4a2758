//! Leader election against a real API server, in-process: `/readyz` follows the lease API for a
//! standby and the watches for the leader, and a replica that loses the lease goes back to
//! standby (and leads again once it can) instead of exiting.

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use runwarden::controller::lease::Lease;
use runwarden::controller::runner::run_elected;
use runwarden::controller::{Health, Parts};

const LEASE: &str = "runwarden-lease-test";

fn leading(h: &Harness) -> bool {
    h.metrics
        .encode()
        .lines()
        .any(|l| l.trim() == "runwarden_leader 1")
}

async fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the lease as held by `holder` (`None`: released) for an hour.
async fn hand_lease_to(leases: &Api<LeaseObject>, holder: Option<&str>) {
    let mut lease = leases.get(LEASE).await.expect("lease");
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.holder_identity = holder.map(str::to_owned);
    spec.lease_duration_seconds = Some(3600);
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        jiff::Timestamp::now(),
    ));
    leases
        .replace(LEASE, &PostParams::default(), &lease)
        .await
        .expect("replace lease");
}

fn elect(
    h: &Harness,
    parts: Parts,
    lease_ns: &str,
) -> (
    Health,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), runwarden::controller::lease::LeaseError>>,
) {
    let mut lease = Lease::new(
        h.client.clone(),
        lease_ns,
        LEASE,
        "replica-a",
        h.metrics.clone(),
    );
    lease.duration = Duration::from_secs(3);
    lease.renew_every = Duration::from_millis(500);
    let health = Health::default();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_elected(parts, health.clone(), lease, async move {
        let _ = rx.await;
    }));
    (health, tx, task)
}

#[tokio::test]
async fn a_lost_lease_returns_to_standby_and_readiness_follows_the_lease_api_then_the_watches() {
    let Some(h) = Harness::new("lost-lease").await else {
        return;
    };
    // The lease's namespace does not exist yet: the lease API refuses every call.
    let lease_ns = format!("{}-lease", h.ns);
    let (health, stop, task) = elect(&h, h.parts().await, &lease_ns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !health.is_ready(),
        "a standby the lease API has not answered cannot take over: not ready"
    );

    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": lease_ns}})).unwrap();
    Api::<Namespace>::all(h.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("lease namespace");
    wait_until("the replica to lead, with its watches synced", || {
        leading(&h) && health.is_ready()
    })
    .await;

    // Another replica takes the lease: this one must stop acting, and stay up as a standby.
    let leases: Api<LeaseObject> = Api::namespaced(h.client.clone(), &lease_ns);
    hand_lease_to(&leases, Some("replica-b")).await;
    wait_until("the replica to notice the lost lease", || !leading(&h)).await;
    wait_until("the standby to be ready (the lease API answers it)", || {
        health.is_ready()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished(), "a lost lease does not end the process");
    assert!(
        !leading(&h),
        "replica-b's lease is unexpired: replica-a waits"
    );

    // replica-b releases it: replica-a leads again.
    hand_lease_to(&leases, None).await;
    wait_until("the replica to lead again", || {
        leading(&h) && health.is_ready()
    })
    .await;

    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stops on shutdown")
        .expect("task");
    assert!(ended.is_ok(), "{ended:?}");
    let released = leases.get(LEASE).await.expect("lease");
    assert_eq!(
        released.spec.and_then(|s| s.holder_identity),
        None,
        "released on shutdown"
    );
}

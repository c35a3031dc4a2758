//! A canary rollout, against a real API server and the emulator: pin 90% to the running
//! revision while a new image takes 10% under a tag, then promote it to 100%, with
//! `status.traffic` following Cloud Run's `trafficStatuses` at each step and no write once in
//! sync.

mod common;

use std::time::Duration;

use common::{Harness, spec};
use google_cloud_run_v2::model::TrafficTargetAllocationType;
use runwarden::api::v1alpha1::{CloudRunService, TrafficStatus};

const V1: &str = "europe-docker.pkg.dev/runwarden-test/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const V2: &str = "europe-docker.pkg.dev/runwarden-test/apps/api@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn with(image: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = spec(image);
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s
}

fn traffic(o: &CloudRunService) -> Vec<TrafficStatus> {
    o.status
        .as_ref()
        .map(|s| s.traffic.clone())
        .unwrap_or_default()
}

fn ready_with(o: Option<&CloudRunService>, want: &dyn Fn(&[TrafficStatus]) -> bool) -> bool {
    o.is_some_and(|o| {
        runwarden::controller::cloudrunservice::is_ready(o) == Some(true) && want(&traffic(o))
    })
}

#[tokio::test]
async fn canary_then_promote_with_status_traffic_following() {
    let Some(mut h) = Harness::new("traffic-canary").await else {
        return;
    };
    h.config.resync = Duration::from_millis(500);
    h.start_controller().await;

    // Step 0: a service, all traffic to its latest revision (the default).
    h.apply("api", spec(V1)).await;
    let obj = h.wait_ready("api").await;
    let stable = obj
        .status
        .as_ref()
        .and_then(|s| s.latest_ready_revision.clone())
        .expect("a ready revision");
    assert_eq!(
        traffic(&obj),
        [TrafficStatus {
            type_: "Latest".into(),
            percent: 100,
            ..TrafficStatus::default()
        }]
    );

    // Step 1: the new image as a 10% canary under a tag; 90% stays on the stable revision.
    h.apply(
        "api",
        with(
            V2,
            serde_json::json!({"traffic": [
                {"type": "Revision", "revision": stable, "percent": 90},
                {"type": "Latest", "percent": 10, "tag": "canary"}]}),
        ),
    )
    .await;
    let obj = h
        .wait_for("api", "the 90/10 split in status.traffic", |o| {
            ready_with(o, &|t| t.len() == 2)
        })
        .await
        .unwrap();
    let status = obj.status.clone().unwrap();
    assert_ne!(
        status.latest_ready_revision.as_deref(),
        Some(stable.as_str()),
        "the new image is a new revision"
    );
    let t = traffic(&obj);
    assert_eq!(
        (
            t[0].type_.as_str(),
            t[0].revision.as_deref(),
            t[0].percent,
            t[0].tag.as_deref()
        ),
        ("Revision", Some(stable.as_str()), 90, None)
    );
    assert_eq!(
        (t[1].type_.as_str(), t[1].percent, t[1].tag.as_deref()),
        ("Latest", 10, Some("canary"))
    );
    let uri = t[1].uri.as_deref().unwrap_or_default();
    assert!(
        uri.starts_with("https://canary---"),
        "the tag's own URL: {uri}"
    );
    let svc = h.gcp_service("api").await.unwrap();
    assert_eq!(svc.traffic.len(), 2);
    assert_eq!(svc.traffic[0].r#type, TrafficTargetAllocationType::Revision);
    assert_eq!(svc.traffic[0].revision, stable);

    // In sync: resyncs write nothing.
    let writes = h.writes();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.writes(), writes, "{:?}", h.emu.counters());

    // Step 2: promote — traffic removed from the spec means 100% to the latest revision.
    h.apply("api", spec(V2)).await;
    let obj = h
        .wait_for("api", "100% latest in status.traffic", |o| {
            ready_with(o, &|t| t.len() == 1 && t[0].percent == 100)
        })
        .await
        .unwrap();
    assert_eq!(
        traffic(&obj),
        [TrafficStatus {
            type_: "Latest".into(),
            percent: 100,
            ..TrafficStatus::default()
        }]
    );
    let svc = h.gcp_service("api").await.unwrap();
    assert_eq!(svc.traffic.len(), 1);
    assert_eq!(svc.traffic[0].r#type, TrafficTargetAllocationType::Latest);
    assert_eq!(svc.traffic[0].percent, 100);
}

//! Drift, against a real API server and the emulator: `managementPolicy: Observe` reports and
//! never writes; `ignoreDrift: [Image]` keeps an image rolled outside runwarden while other
//! drift is set back and announced.

mod common;

use std::time::Duration;

use common::{Harness, spec};
use google_cloud_run_v2::model::IngressTraffic;

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const ROLLED: &str = "europe-docker.pkg.dev/runwarden-test/apps/api@sha256:9999999999999999999999999999999999999999999999999999999999999999";

/// Changes the service in the emulator as the console or a CI pipeline would.
async fn console(h: &Harness, id: &str, image: &str, ingress: IngressTraffic) {
    let mut svc = h.gcp_service(id).await.expect("service");
    svc.ingress = ingress;
    svc.template.as_mut().unwrap().containers[0].image = image.into();
    h.run
        .update_service()
        .set_service(svc)
        .send()
        .await
        .unwrap();
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut s = spec(IMAGE);
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s
}

#[tokio::test]
async fn observe_reports_drift_and_never_writes() {
    let Some(mut h) = Harness::new("drift-observe").await else {
        return;
    };
    h.config.resync = Duration::from_millis(500);
    h.start_controller().await;
    // A service that exists already (here made by runwarden, then abandoned).
    h.apply(
        "api",
        with(serde_json::json!({"deletionPolicy": "Abandon"})),
    )
    .await;
    h.wait_ready("api").await;
    h.delete("api").await;
    h.wait_for("api", "gone", |o| o.is_none()).await;

    // Brought under observation by a new object.
    let writes = h.writes();
    h.apply(
        "api",
        with(serde_json::json!({"managementPolicy": "Observe"})),
    )
    .await;
    let obj = h.wait_ready("api").await;
    assert!(obj.status.unwrap().drift.is_empty());

    console(&h, "api", ROLLED, IngressTraffic::All).await;
    let after_console = h.writes();
    let obj = h.wait_reason("api", "Ready", "Drifted").await;
    let status = obj.status.unwrap();
    assert_eq!(status.drift, ["ingress", "template.containers[0].image"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.writes(),
        after_console,
        "Observe wrote to Google: {:?}",
        h.emu.counters()
    );
    assert_eq!(after_console, writes + 1, "only the console's own patch");
    let svc = h.gcp_service("api").await.unwrap();
    assert_eq!(svc.template.unwrap().containers[0].image, ROLLED);

    // Switching to Manage (and Adopt: the service is not this object's) sets it back.
    h.apply(
        "api",
        with(serde_json::json!({"managementPolicy": "Manage", "adoptionPolicy": "Adopt"})),
    )
    .await;
    h.wait_ready("api").await;
    let svc = h.gcp_service("api").await.unwrap();
    assert_eq!(svc.ingress, IngressTraffic::InternalOnly);
    h.stop_controller().await;
}

#[tokio::test]
async fn ignored_image_drift_is_kept_while_other_drift_is_undone() {
    let Some(mut h) = Harness::new("drift-ignore").await else {
        return;
    };
    h.config.resync = Duration::from_millis(500);
    h.start_controller().await;
    h.apply("api", with(serde_json::json!({"ignoreDrift": ["Image"]})))
        .await;
    h.wait_ready("api").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    console(&h, "api", ROLLED, IngressTraffic::All).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let svc = h.gcp_service("api").await.unwrap();
        if svc.ingress == IngressTraffic::InternalOnly {
            assert_eq!(
                svc.template.unwrap().containers[0].image,
                ROLLED,
                "the image rolled outside runwarden stays"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ingress drift not undone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = h.events("api").await;
    assert!(
        events.iter().any(|e| e.starts_with("DriftCorrected:")
            && e.contains("ingress")
            && !e.contains("image")),
        "{events:?}"
    );
    let obj = h.wait_ready("api").await;
    assert!(obj.status.unwrap().drift.is_empty(), "cleared once in sync");
    h.stop_controller().await;
}

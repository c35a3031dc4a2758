//! A CloudRunService deployed from source (`spec.build`) against the emulator and a real API
//! server: built, deployed by digest with the base image, a quiet resync, a new source
//! generation, a failed build.

mod common;

use common::{Harness, PROJECT, REGION};
use runwarden::api::v1alpha1::{BuildState, CloudRunService};

fn from_source(generation: i64) -> serde_json::Value {
    serde_json::json!({
        "region": REGION,
        "containers": [{"image": "hello"}],
        "build": {
            "source": {"bucket": "src-bucket", "object": "fn/hello.tar.gz", "generation": generation},
            "functionTarget": "helloHttp",
        },
    })
}

fn reason(obj: &CloudRunService, type_: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| format!("{}/{}: {}", c.status, c.reason, c.message))
        .unwrap_or_default()
}

fn built_image(obj: &CloudRunService) -> Option<String> {
    obj.status.as_ref()?.build.as_ref()?.image.clone()
}

#[tokio::test]
async fn a_service_from_source_builds_deploys_the_digest_and_rebuilds_only_for_a_new_source() {
    let Some(mut h) = Harness::new("from-source").await else {
        return;
    };
    h.start_controller().await;
    h.apply("hello", from_source(1)).await;
    let obj = h.wait_ready("hello").await;
    let build = obj.status.clone().unwrap().build.expect("status.build");
    assert_eq!(build.state, BuildState::Succeeded);
    assert_eq!(build.source_generation, Some(1));
    let image = build.image.clone().expect("built image");
    assert!(
        image.starts_with(&format!(
            "{REGION}-docker.pkg.dev/{PROJECT}/cloud-run-source-deploy/hello@sha256:"
        )),
        "{image}"
    );
    let svc = h.gcp_service("hello").await.expect("service in Google");
    let c = &svc.template.as_ref().unwrap().containers[0];
    assert_eq!(c.image, image, "the built digest is deployed");
    assert_eq!(
        c.base_image_uri,
        format!("{REGION}-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22"),
        "enrolled in automatic base image updates"
    );
    assert_eq!(
        c.build_info.as_ref().map(|b| b.function_target.as_str()),
        Some("helloHttp")
    );
    assert_eq!(h.emu.count("run.builds.submit"), 1);

    // A no-op resync: no build, no write.
    h.emu.reset_counters();
    h.poke(&h.api(), "hello", "services.get").await;
    assert_eq!(
        h.emu.count("run.builds.submit"),
        0,
        "{:?}",
        h.emu.counters()
    );
    assert_eq!(h.writes(), 0, "{:?}", h.emu.counters());

    // A new source generation builds once and rolls out.
    h.emu.reset_counters();
    h.apply("hello", from_source(2)).await;
    let obj = h
        .wait_for("hello", "the second build deployed", |o| {
            o.is_some_and(|o| {
                runwarden::controller::cloudrunservice::is_ready(o) == Some(true)
                    && built_image(o).is_some_and(|i| i != image)
            })
        })
        .await;
    let second = built_image(obj.as_ref().unwrap()).unwrap();
    let svc = h.gcp_service("hello").await.unwrap();
    assert_eq!(svc.template.unwrap().containers[0].image, second);
    assert_eq!(h.emu.count("run.builds.submit"), 1);
    assert_eq!(h.emu.count("run.services.patch"), 1, "rolled out once");
    let serving = svc.latest_ready_revision.clone();

    // A failed build: BuildFailed with Google's message and the log, the old revision serves.
    h.emu
        .fail_builds(&format!("projects/{PROJECT}/locations/{REGION}"), 1);
    h.emu.reset_counters();
    h.apply("hello", from_source(3)).await;
    let obj = h
        .wait_for("hello", "BuildFailed", |o| {
            o.is_some_and(|o| reason(o, "ServiceReady").starts_with("False/BuildFailed"))
        })
        .await;
    let why = reason(obj.as_ref().unwrap(), "ServiceReady");
    assert!(
        why.contains("Build failed; check build logs for details"),
        "{why}"
    );
    assert!(why.contains("logs: https://"), "{why}");
    let svc = h.gcp_service("hello").await.unwrap();
    assert_eq!(
        svc.latest_ready_revision, serving,
        "the old revision keeps serving"
    );
    assert_eq!(svc.template.unwrap().containers[0].image, second);
    assert_eq!(h.emu.count("run.services.patch"), 0);
    assert_eq!(
        h.emu.count("run.builds.submit"),
        1,
        "not retried without a spec change"
    );
}

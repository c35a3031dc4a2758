//! A deletion Google refuses, end to end on a real kube-apiserver and the emulator with IAM
//! enforcement (issue 23): a namespace's identity loses its Cloud Run rights, then the team
//! deletes its CloudRunService. The finalizer keeps the object and Google keeps the service,
//! and the object says why from the first failed cleanup pass (it used to go on reading
//! `Ready=True` while every pass failed at its first read); a grant given back lets it go.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use runwarden::api::v1alpha1::CloudRunService;
use runwarden::api::{FINALIZER, GOOGLE_SERVICE_ACCOUNT_ANNOTATION};

fn condition(obj: &CloudRunService, type_: &str) -> (String, String, String) {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| {
            (
                c.status.to_string(),
                c.reason.to_string(),
                c.message.to_string(),
            )
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_cleanup_refused_at_its_first_read_says_why_and_keeps_the_finalizer() {
    let test = "a_cleanup_refused_at_its_first_read_says_why_and_keeps_the_finalizer";
    let Some(mut h) = Harness::new(test).await else {
        return;
    };
    let account = format!("team-api@{PROJECT}.iam.gserviceaccount.com");
    let member = format!("serviceAccount:{account}");
    let endpoint = h.emu.endpoint();
    let rights = [
        ("roles/run.admin", member.as_str()),
        ("roles/iam.serviceAccountUser", member.as_str()),
    ];
    grant(&endpoint, PROJECT, &rights).await;
    Api::<Namespace>::all(h.client.clone())
        .patch(
            &h.ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {GOOGLE_SERVICE_ACCOUNT_ANNOTATION: account}}
            })),
        )
        .await
        .expect("annotate the namespace");
    h.start_controller().await;
    h.apply("api", spec("europe-docker.pkg.dev/p/apps/api:1"))
        .await;
    h.wait_ready("api").await;

    // The team's grant is revoked, then the team deletes its service.
    grant(&endpoint, PROJECT, &rights[1..]).await;
    let deleted = Instant::now();
    h.delete("api").await;
    let refused = h.wait_reason("api", "Ready", "PermissionDenied").await;
    let elapsed = deleted.elapsed();
    // The first cleanup pass runs on the deletion itself; the status comes with it, well
    // within one step of the harness's backoff (at most 5 s).
    assert!(
        elapsed < Duration::from_secs(5),
        "the refusal took {elapsed:?} to show"
    );
    let (status, reason, message) = condition(&refused, "ServiceReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PermissionDenied")
    );
    assert!(
        message.contains("run.services.get") && message.contains(&account),
        "Google's message, naming the permission and the identity: {message}"
    );
    assert!(
        message.contains("finalizer keeps this object") && message.contains("Abandon"),
        "how out: {message}"
    );
    assert_eq!(condition(&refused, "Ready").0, "False");
    assert!(refused.metadata.deletion_timestamp.is_some());
    assert!(
        refused
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
        "the finalizer stays"
    );
    assert!(
        h.gcp_service("api").await.is_some(),
        "the service is kept in Google"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = h.events("api").await;
        if events
            .iter()
            .any(|e| e.starts_with("PermissionDenied:") && e.contains("run.services.get"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Warning event for the refused cleanup: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The grant given back lets the deletion finish without touching the object.
    grant(&endpoint, PROJECT, &rights).await;
    h.wait_for("api", "the object to go", |o| o.is_none()).await;
    assert!(
        h.gcp_service("api").await.is_none(),
        "deleted in Google once allowed"
    );
    h.stop_controller().await;
}

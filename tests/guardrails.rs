//! Guardrails enforced by the controller, against a real API server and the emulator: an object
//! that predates a policy is blocked without any Google write, an Audit policy reports without
//! blocking, and policy changes re-evaluate services within seconds without a spec change.
//! (Admission by the API server itself is tested in `admission.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::{Harness, spec};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use runwarden::api::v1alpha1::RunSecurityPolicy;

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE_V2: &str = "europe-docker.pkg.dev/runwarden-test/apps/api@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn condition(
    obj: &runwarden::api::v1alpha1::CloudRunService,
    type_: &str,
) -> (String, String, String) {
    let c = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_}"));
    (
        c.status.to_string(),
        c.reason.to_string(),
        c.message.to_string(),
    )
}

#[tokio::test]
async fn policies_block_report_and_release_services_without_spec_changes() {
    let Some(mut h) = Harness::new("guardrails").await else {
        return;
    };
    // A label only this test's namespace carries, so the cluster-wide policy touches nothing else.
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces
        .patch(
            &h.ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"guardrails-test": h.ns}}})),
        )
        .await
        .unwrap();
    h.start_controller().await;
    h.apply("api", spec(IMAGE)).await;
    let obj = h.wait_ready("api").await;
    assert_eq!(condition(&obj, "PolicyCompliant").1, "NoPolicy");

    // An Enforce policy the running service violates.
    let policies: Api<RunSecurityPolicy> = Api::all(h.client.clone());
    let name = format!("require-cmek-{}", h.ns);
    let policy: RunSecurityPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1", "kind": "RunSecurityPolicy",
        "metadata": {"name": name},
        "spec": {
            "enforcement": "Enforce",
            "namespaceSelector": {"matchLabels": {"guardrails-test": h.ns}},
            "requireCmek": true,
            "forbidUnauthenticated": true,
        }
    }))
    .unwrap();
    let writes = h.writes();
    let created = Instant::now();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let obj = h.wait_reason("api", "PolicyCompliant", "Violation").await;
    eprintln!(
        "guardrails: Enforce policy created → Violation in {:?}",
        created.elapsed()
    );
    let (_, reason, message) = condition(&obj, "Ready");
    assert_eq!(reason, "Violation");
    assert!(
        message.contains(&name) && message.contains("requireCmek"),
        "{message}"
    );
    let gcp = h.gcp_service("api").await.expect("still running");
    assert_eq!(
        gcp.template.unwrap().containers[0].image,
        IMAGE,
        "left running as it is"
    );

    // A spec change while blocked: nothing reaches Google.
    h.apply("api", spec(IMAGE_V2)).await;
    h.wait_for("api", "the new generation judged", |o| {
        o.and_then(|o| o.status.as_ref())
            .is_some_and(|s| s.observed_generation == Some(2))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.writes(),
        writes,
        "no Google write while violating: {:?}",
        h.emu.counters()
    );
    assert!(
        h.events("api")
            .await
            .iter()
            .any(|e| e.starts_with("Violation:") && e.contains(&name)),
        "{:?}",
        h.events("api").await
    );

    // The policy's own status counts the service.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = policies.get(&name).await.unwrap();
        let counts = p
            .status
            .as_ref()
            .map(|s| (s.matched_services, s.violating_services));
        if counts == Some((Some(1), Some(1))) {
            break;
        }
        assert!(Instant::now() < deadline, "policy status: {:?}", p.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Audit: deployed, reported, Ready.
    let relaxed = Instant::now();
    policies
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"enforcement": "Audit"}})),
        )
        .await
        .unwrap();
    let obj = h
        .wait_reason("api", "PolicyCompliant", "AuditViolation")
        .await;
    eprintln!(
        "guardrails: Enforce → Audit flipped in {:?}",
        relaxed.elapsed()
    );
    assert_eq!(condition(&obj, "PolicyCompliant").0, "False");
    let obj = h.wait_ready("api").await;
    assert_eq!(
        condition(&obj, "Ready").0,
        "True",
        "an audit finding does not block"
    );
    let gcp = h.gcp_service("api").await.unwrap();
    assert_eq!(
        gcp.template.unwrap().containers[0].image,
        IMAGE_V2,
        "the blocked change deployed"
    );

    // Deleting the policy: back to NoPolicy.
    policies
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_reason("api", "PolicyCompliant", "NoPolicy").await;

    // A namespace relabelled into a policy's selector is judged at once too.
    let tightened = Instant::now();
    let mut policy = policy;
    policy.metadata.name = Some(format!("{name}-2"));
    policy.spec.namespace_selector = Some(
        serde_json::from_value(serde_json::json!({"matchLabels": {"guardrails-tier": h.ns}}))
            .unwrap(),
    );
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        condition(&h.api().get("api").await.unwrap(), "PolicyCompliant").1,
        "NoPolicy"
    );
    namespaces
        .patch(
            &h.ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"guardrails-tier": h.ns}}})),
        )
        .await
        .unwrap();
    h.wait_reason("api", "PolicyCompliant", "Violation").await;
    eprintln!(
        "guardrails: namespace relabelled → Violation in {:?}",
        tightened.elapsed()
    );
    policies
        .delete(&format!("{name}-2"), &DeleteParams::default())
        .await
        .unwrap();
    h.stop_controller().await;
}

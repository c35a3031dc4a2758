//! The CloudRunService controller against the emulator and a real API server.

mod common;

use std::time::Duration;

use common::{Harness, PROJECT, REGION, spec};
use google_cloud_iam_v1::model::{Binding, Policy};
use runwarden::api::v1alpha1::CloudRunService;

const IMAGE_V1: &str = "europe-docker.pkg.dev/runwarden-test/apps/payments@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE_V2: &str = "europe-docker.pkg.dev/runwarden-test/apps/payments@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn condition<'a>(obj: &'a CloudRunService, type_: &str) -> &'a runwarden::api::v1alpha1::Condition {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn service_path(id: &str) -> String {
    format!("projects/{PROJECT}/locations/{REGION}/services/{id}")
}

#[tokio::test]
async fn create_update_and_no_op_resync() {
    let Some(mut h) = Harness::new("create-update").await else {
        return;
    };
    h.start_controller().await;
    h.apply("payments", spec(IMAGE_V1)).await;
    let obj = h.wait_ready("payments").await;
    let status = obj.status.clone().unwrap();
    assert!(
        status
            .uri
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        "uri in status: {status:?}"
    );
    assert_eq!(
        status.resource_name.as_deref(),
        Some(service_path("payments").as_str())
    );
    assert_eq!(status.operation, None, "operation cleared once done");
    for t in [
        "Ready",
        "ServiceReady",
        "NetworkReady",
        "EncryptionReady",
        "AccessReady",
        "PolicyCompliant",
    ] {
        assert_eq!(condition(&obj, t).status, "True", "{t}");
    }
    assert_eq!(condition(&obj, "NetworkReady").reason, "NotConfigured");
    let svc = h.gcp_service("payments").await.expect("service in Google");
    assert_eq!(
        svc.labels.get("managed-by").map(String::as_str),
        Some("runwarden")
    );
    assert_eq!(svc.labels.get("runwarden-owner"), obj.metadata.uid.as_ref());
    assert_eq!(
        format!("{:?}", svc.ingress),
        "InternalOnly",
        "internal by default"
    );
    assert_eq!(h.emu.count("run.services.create"), 1);
    let first_revision = status.latest_ready_revision.clone().expect("revision");
    assert!(
        h.events("payments")
            .await
            .iter()
            .any(|e| e.starts_with("Created:"))
    );

    // Unchanged spec: a reconcile (triggered by a metadata change) writes nothing to Google.
    h.emu.reset_counters();
    h.poke(&h.api(), "payments", "services.get").await;
    assert_eq!(
        h.writes(),
        0,
        "no-op resync must not write: {:?}",
        h.emu.counters()
    );

    // Image update: a new revision, Ready again.
    h.emu.reset_counters();
    let mut s = spec(IMAGE_V2);
    s["ingress"] = "InternalAndCloudLoadBalancing".into();
    h.apply("payments", s).await;
    let obj = h
        .wait_for("payments", "a new revision", |o| {
            o.is_some_and(|o| {
                runwarden::controller::cloudrunservice::is_ready(o) == Some(true)
                    && o.status
                        .as_ref()
                        .and_then(|s| s.latest_ready_revision.as_ref())
                        != Some(&first_revision)
            })
        })
        .await
        .unwrap();
    let svc = h.gcp_service("payments").await.unwrap();
    assert_eq!(svc.template.as_ref().unwrap().containers[0].image, IMAGE_V2);
    assert_eq!(format!("{:?}", svc.ingress), "InternalLoadBalancer");
    assert_eq!(
        h.emu.count("run.services.patch"),
        1,
        "one patch for one change: {:?}",
        h.emu.counters()
    );
    assert_eq!(h.emu.count("run.services.create"), 0);
    assert!(
        obj.status
            .unwrap()
            .latest_ready_revision
            .unwrap()
            .starts_with("payments-00002-")
    );
    assert!(
        h.events("payments")
            .await
            .iter()
            .any(|e| e.starts_with("Updated:") && e.contains("template.containers[0].image"))
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn invokers_are_exact_and_foreign_roles_survive() {
    let Some(mut h) = Harness::new("invokers").await else {
        return;
    };
    h.start_controller().await;
    let mut s = spec(IMAGE_V1);
    s["access"] = serde_json::json!({"invokers": ["group:frontend@example.com"]});
    h.apply("api", s.clone()).await;
    h.wait_ready("api").await;

    // Someone grants another role, and adds an invoker behind our back.
    let policy = h
        .run
        .get_iam_policy()
        .set_resource(service_path("api"))
        .send()
        .await
        .unwrap();
    let mut bindings = policy.bindings.clone();
    bindings.push(
        Binding::new()
            .set_role("roles/run.developer")
            .set_members(["user:dev@example.com"]),
    );
    for b in bindings
        .iter_mut()
        .filter(|b| b.role == "roles/run.invoker")
    {
        b.members.push("user:intruder@example.com".into());
    }
    h.run
        .set_iam_policy()
        .set_resource(service_path("api"))
        .set_policy(
            Policy::new()
                .set_bindings(bindings)
                .set_etag(policy.etag.clone()),
        )
        .send()
        .await
        .unwrap();

    s["access"] = serde_json::json!({"invokers": ["group:frontend@example.com", "serviceAccount:batch@runwarden-test.iam.gserviceaccount.com"]});
    h.apply("api", s).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let policy = h
            .run
            .get_iam_policy()
            .set_resource(service_path("api"))
            .send()
            .await
            .unwrap();
        let members = |role: &str| {
            let mut m: Vec<String> = policy
                .bindings
                .iter()
                .filter(|b| b.role == role)
                .flat_map(|b| b.members.clone())
                .collect();
            m.sort();
            m
        };
        if members("roles/run.invoker")
            == [
                "group:frontend@example.com",
                "serviceAccount:batch@runwarden-test.iam.gserviceaccount.com",
            ]
        {
            assert_eq!(
                members("roles/run.developer"),
                ["user:dev@example.com"],
                "a foreign role must be kept"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "invokers never converged: {policy:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.wait_ready("api").await;
    h.stop_controller().await;
}

#[tokio::test]
async fn drift_is_undone_within_one_resync() {
    let Some(mut h) = Harness::new("drift").await else {
        return;
    };
    h.config.resync = Duration::from_secs(2);
    h.start_controller().await;
    h.apply("web", spec(IMAGE_V1)).await;
    h.wait_ready("web").await;

    // Someone opens the service to the internet and swaps the image in the console.
    let mut svc = h.gcp_service("web").await.unwrap();
    svc.ingress = google_cloud_run_v2::model::IngressTraffic::All;
    svc.template.as_mut().unwrap().containers[0].image = "docker.io/evil/image:latest".into();
    h.run
        .update_service()
        .set_service(svc)
        .send()
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let svc = h.gcp_service("web").await.unwrap();
        if format!("{:?}", svc.ingress) == "InternalOnly"
            && svc.template.as_ref().unwrap().containers[0].image == IMAGE_V1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drift not undone: {:?}",
            svc.ingress
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.stop_controller().await;
}

#[tokio::test]
async fn adoption_is_refused_then_allowed() {
    let Some(mut h) = Harness::new("adoption").await else {
        return;
    };
    // A service created by someone else.
    let existing = google_cloud_run_v2::model::Service::new().set_template(
        google_cloud_run_v2::model::RevisionTemplate::new()
            .set_containers([google_cloud_run_v2::model::Container::new()
                .set_image("us-docker.pkg.dev/cloudrun/container/hello")]),
    );
    h.run
        .create_service()
        .set_parent(format!("projects/{PROJECT}/locations/{REGION}"))
        .set_service_id("legacy")
        .set_service(existing)
        .send()
        .await
        .unwrap();
    h.start_controller().await;
    h.apply("legacy", spec(IMAGE_V1)).await;
    let obj = h
        .wait_reason("legacy", "ServiceReady", "AlreadyExists")
        .await;
    assert_eq!(condition(&obj, "Ready").status, "False");
    assert!(
        condition(&obj, "ServiceReady")
            .message
            .contains("adoptionPolicy: Adopt")
    );
    assert_eq!(
        h.emu.count("run.services.patch"),
        0,
        "a refused service must not be touched"
    );
    let untouched = h.gcp_service("legacy").await.unwrap();
    assert!(!untouched.labels.contains_key("runwarden-owner"));

    let mut s = spec(IMAGE_V1);
    s["adoptionPolicy"] = "Adopt".into();
    h.apply("legacy", s).await;
    let obj = h.wait_ready("legacy").await;
    let adopted = h.gcp_service("legacy").await.unwrap();
    assert_eq!(
        adopted.labels.get("runwarden-owner"),
        obj.metadata.uid.as_ref()
    );
    assert_eq!(adopted.template.unwrap().containers[0].image, IMAGE_V1);
    assert!(
        h.events("legacy")
            .await
            .iter()
            .any(|e| e.starts_with("Adopted:"))
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn delete_removes_and_abandon_keeps() {
    let Some(mut h) = Harness::new("delete").await else {
        return;
    };
    h.start_controller().await;
    h.apply("gone", spec(IMAGE_V1)).await;
    let mut s = spec(IMAGE_V1);
    s["deletionPolicy"] = "Abandon".into();
    h.apply("kept", s).await;
    h.wait_ready("gone").await;
    h.wait_ready("kept").await;

    h.delete("gone").await;
    h.delete("kept").await;
    h.wait_for("gone", "deletion", |o| o.is_none()).await;
    h.wait_for("kept", "deletion", |o| o.is_none()).await;
    assert!(
        h.gcp_service("gone").await.is_none(),
        "Delete removes the Cloud Run service"
    );
    assert!(h.gcp_service("kept").await.is_some(), "Abandon leaves it");
    assert_eq!(h.emu.count("run.services.delete"), 1);
    h.stop_controller().await;
}

#[tokio::test]
async fn an_operation_in_flight_is_resumed_after_a_restart() {
    let Some(mut h) = Harness::new("resume").await else {
        return;
    };
    h.emu.set_operation_delay(Duration::from_secs(3));
    h.start_controller().await;
    h.apply("slow", spec(IMAGE_V1)).await;
    let obj = h
        .wait_for("slow", "an operation in status", |o| {
            o.and_then(|o| o.status.as_ref())
                .is_some_and(|s| s.operation.is_some())
        })
        .await
        .unwrap();
    let operation = obj.status.unwrap().operation.unwrap();
    h.stop_controller().await;

    h.start_controller().await;
    let obj = h.wait_ready("slow").await;
    assert_eq!(
        h.emu.count("run.services.create"),
        1,
        "the restarted controller must not create again"
    );
    assert_eq!(
        h.emu.count("run.services.patch"),
        0,
        "nor patch an unchanged service"
    );
    assert!(
        h.emu.count("run.operations.get") >= 1,
        "it followed {operation}"
    );
    assert_eq!(obj.status.unwrap().operation, None);
    h.stop_controller().await;
}

#[tokio::test]
async fn google_errors_become_reasons_and_transient_ones_are_retried() {
    let Some(mut h) = Harness::new("errors").await else {
        return;
    };
    h.emu.inject_fault(runwarden_emulator::Fault {
        api: "run".into(),
        method: Some("services.create".into()),
        code: "RESOURCE_EXHAUSTED".into(),
        message: Some("Quota exceeded for quota metric 'Services'".into()),
        count: Some(2),
        rate: None,
    });
    h.start_controller().await;
    h.apply("quota", spec(IMAGE_V1)).await;
    let obj = h
        .wait_reason("quota", "ServiceReady", "QuotaExceeded")
        .await;
    assert!(
        condition(&obj, "ServiceReady")
            .message
            .contains("Quota exceeded")
    );
    h.wait_ready("quota").await;
    assert_eq!(
        h.emu.count("run.services.create"),
        3,
        "two refused, then one that worked"
    );
    assert!(h.metrics.encode().contains(
        "runwarden_reconcile_failures_total{kind=\"CloudRunService\",reason=\"QuotaExceeded\"} 2"
    ));
    assert!(
        h.events("quota")
            .await
            .iter()
            .any(|e| e.starts_with("QuotaExceeded:"))
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn resyncs_of_a_healthy_service_rewrite_no_status() {
    let Some(mut h) = Harness::new("quiet-status").await else {
        return;
    };
    h.config.resync = Duration::from_millis(500);
    h.start_controller().await;
    h.apply("quiet", spec(IMAGE_V1)).await;
    let obj = h.wait_ready("quiet").await;
    // Let the status settle (the pass that saw the operation done writes the final status).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = h
        .api()
        .get("quiet")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let gets_before = h.emu.count("run.services.get");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        h.emu.count("run.services.get") >= gets_before + 3,
        "resyncs ran"
    );
    let after = h.api().get("quiet").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, settled,
        "a resync that finds nothing new must not write status"
    );
    assert_eq!(
        after.status.unwrap().conditions[0].last_transition_time,
        obj.status.unwrap().conditions[0].last_transition_time
    );
    h.stop_controller().await;
}

/// Google refuses a service under an organization policy with only `Precondition check
/// failed.` and the constraint in a `PreconditionFailure` detail (the emulator answers so):
/// the condition names the constraint, nothing is retried until the spec changes, and a spec
/// the policy allows heals it.
#[tokio::test]
async fn an_org_policy_refusal_names_the_constraint_and_waits_for_a_spec_change() {
    let Some(mut h) = Harness::new("org-policy").await else {
        return;
    };
    // A backoff this short would show a retry loop as dozens of calls within seconds.
    h.config.min_backoff = Duration::from_millis(50);
    h.config.max_backoff = Duration::from_millis(200);
    h.emu
        .set_org_policies(serde_json::json!({
            PROJECT: {"run.allowedIngress": ["internal", "internal-and-cloud-load-balancing"]}
        }))
        .expect("org policies");
    h.start_controller().await;
    let mut s = spec(IMAGE_V1);
    s["ingress"] = "All".into();
    h.apply("public", s.clone()).await;
    let obj = h
        .wait_reason("public", "ServiceReady", "FailedPrecondition")
        .await;
    let cond = condition(&obj, "ServiceReady");
    assert_eq!(cond.status, "False");
    assert!(
        cond.message.starts_with("Precondition check failed.")
            && cond
                .message
                .contains("violates constraints/run.allowedIngress: Ingress 'all' is not allowed"),
        "{}",
        cond.message
    );
    let ready = condition(&obj, "Ready");
    assert_eq!(ready.status, "False");
    assert!(
        !runwarden::controller::reasons::PROGRESSING.contains(&ready.reason.as_ref()),
        "Ready reason {} says runwarden heals it by itself",
        ready.reason
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = h.emu.count("run.services.create");
    assert!(refused >= 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        (
            h.emu.count("run.services.create"),
            h.emu.count("run.services.patch")
        ),
        (refused, 0),
        "no retries of a request the org policy refuses"
    );
    assert!(h.gcp_service("public").await.is_none());

    s["ingress"] = "InternalAndCloudLoadBalancing".into();
    h.apply("public", s).await;
    h.wait_ready("public").await;
    let svc = h.gcp_service("public").await.expect("service in Google");
    assert_eq!(format!("{:?}", svc.ingress), "InternalLoadBalancer");
    assert_eq!(h.emu.count("run.services.create"), refused + 1);
    h.stop_controller().await;
}

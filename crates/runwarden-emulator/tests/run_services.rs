//! Cloud Run v2 services driven through the official google-cloud-run-v2 client.

mod common;

use std::time::Duration;

use common::*;
use google_cloud_gax::error::rpc::Code;
use google_cloud_lro::Poller;
use google_cloud_run_v2::model::{
    self, Container, IngressTraffic, RevisionTemplate, Service, condition, vpc_access,
};

#[tokio::test]
async fn create_fills_cloud_run_defaults_and_becomes_ready() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("hello")
        .set_service(hello_service().set_labels([("team", "a")]))
        .poller()
        .until_done()
        .await?;

    assert_eq!(svc.name, service_name("hello"));
    assert_eq!(svc.generation, 1);
    assert_eq!(svc.observed_generation, 1);
    assert!(!svc.reconciling);
    assert_eq!(svc.ingress, IngressTraffic::All);
    assert_eq!(svc.launch_stage.name(), Some("GA"));
    let t = svc.template.as_ref().expect("template");
    assert_eq!(t.timeout.map(|d| d.seconds()), Some(300));
    assert_eq!(t.max_instance_request_concurrency, 80);
    let number = runwarden_emulator::state::project_number(PROJECT);
    assert_eq!(
        t.service_account,
        format!("{number}-compute@developer.gserviceaccount.com")
    );
    let c = &t.containers[0];
    let limits = &c.resources.as_ref().expect("resources").limits;
    assert_eq!(limits.get("cpu").map(String::as_str), Some("1000m"));
    assert_eq!(limits.get("memory").map(String::as_str), Some("512Mi"));
    assert_eq!(c.ports[0].container_port, 8080);
    assert_eq!(c.ports[0].name, "http1");
    let tc = svc.terminal_condition.as_ref().expect("terminal condition");
    assert_eq!(tc.state, condition::State::ConditionSucceeded);
    assert_eq!(tc.r#type, "Ready");
    let rev = svc
        .latest_ready_revision
        .rsplit('/')
        .next()
        .unwrap_or_default();
    assert!(
        rev.starts_with("hello-00001-") && rev.len() == "hello-00001-abc".len(),
        "{rev}"
    );
    assert_eq!(svc.latest_created_revision, svc.latest_ready_revision);
    assert!(
        svc.uri.starts_with("https://hello-") && svc.uri.ends_with("-uc.a.run.app"),
        "{}",
        svc.uri
    );
    assert_eq!(svc.traffic_statuses.len(), 1);
    assert!(!svc.etag.is_empty() && !svc.uid.is_empty() && svc.create_time.is_some());
    assert_eq!(emu.count("run.services.create"), 1);
    assert!(emu.count("run.operations.get") >= 1);
    Ok(())
}

#[tokio::test]
async fn get_by_project_number_returns_the_same_service() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    client
        .create_service()
        .set_parent(parent())
        .set_service_id("num")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    let number = runwarden_emulator::state::project_number(PROJECT);
    let got = client
        .get_service()
        .set_name(format!("projects/{number}/locations/{REGION}/services/num"))
        .send()
        .await?;
    assert_eq!(got.name, service_name("num"));
    Ok(())
}

#[tokio::test]
async fn template_change_makes_a_new_revision_and_other_changes_do_not() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("rev")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    let first_rev = svc.latest_ready_revision.clone();

    // Ingress only: new generation, same revision.
    let svc2 = client
        .update_service()
        .set_service(svc.clone().set_ingress(IngressTraffic::InternalOnly))
        .poller()
        .until_done()
        .await?;
    assert_eq!(svc2.generation, 2);
    assert_eq!(svc2.observed_generation, 2);
    assert_eq!(svc2.ingress, IngressTraffic::InternalOnly);
    assert_eq!(svc2.latest_ready_revision, first_rev);

    // Template change: new revision 00002.
    let mut t = svc2.template.clone().expect("template");
    t.containers[0].image = "gcr.io/cloudrun/hello:v2".into();
    let svc3 = client
        .update_service()
        .set_service(svc2.clone().set_template(t))
        .poller()
        .until_done()
        .await?;
    assert_eq!(svc3.generation, 3);
    assert!(
        svc3.latest_ready_revision.contains("/revisions/rev-00002-"),
        "{}",
        svc3.latest_ready_revision
    );
    assert_ne!(svc3.etag, svc2.etag);

    // No change: no new generation.
    let svc4 = client
        .update_service()
        .set_service(svc3.clone())
        .poller()
        .until_done()
        .await?;
    assert_eq!(svc4.generation, 3);
    Ok(())
}

#[tokio::test]
async fn operation_delay_shows_reconciling_until_done() -> TestResult {
    let emu = emulator_with_delay(Duration::from_millis(150)).await;
    let client = run(&emu).await;
    let op = client
        .create_service()
        .set_parent(parent())
        .set_service_id("slow")
        .set_service(hello_service())
        .send()
        .await?;
    assert!(!op.done);
    assert!(op.name.starts_with(&format!("{}/operations/", parent())));
    let meta = op.metadata.as_ref().expect("metadata");
    assert_eq!(
        meta.type_url(),
        Some("type.googleapis.com/google.cloud.run.v2.Service")
    );
    let during = client
        .get_service()
        .set_name(service_name("slow"))
        .send()
        .await?;
    assert!(during.reconciling);
    assert_eq!(during.observed_generation, 0);
    assert!(during.latest_ready_revision.is_empty());
    assert_eq!(
        during.terminal_condition.as_ref().map(|c| c.state.clone()),
        Some(condition::State::ConditionReconciling)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = client
        .get_service()
        .set_name(service_name("slow"))
        .send()
        .await?;
    assert!(!after.reconciling);
    assert_eq!(after.observed_generation, 1);
    assert!(!after.latest_ready_revision.is_empty());
    Ok(())
}

#[tokio::test]
async fn delete_removes_the_service_after_the_operation() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    client
        .create_service()
        .set_parent(parent())
        .set_service_id("gone")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    let deleted = client
        .delete_service()
        .set_name(service_name("gone"))
        .poller()
        .until_done()
        .await?;
    assert!(deleted.delete_time.is_some());
    assert_eq!(deleted.generation, 2);
    let err = client
        .get_service()
        .set_name(service_name("gone"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    assert_eq!(err.http_status_code(), Some(404));
    assert_eq!(
        message(&err),
        format!(
            "Resource 'gone' of kind 'SERVICE' in region '{REGION}' in project '{PROJECT}' does not exist."
        )
    );
    let err = client
        .delete_service()
        .set_name(service_name("gone"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    Ok(())
}

#[tokio::test]
async fn create_twice_is_already_exists() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    client
        .create_service()
        .set_parent(parent())
        .set_service_id("dup")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    let err = client
        .create_service()
        .set_parent(parent())
        .set_service_id("dup")
        .set_service(hello_service())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::AlreadyExists));
    assert_eq!(err.http_status_code(), Some(409));
    assert_eq!(message(&err), "Resource 'dup' already exists.");
    Ok(())
}

#[tokio::test]
async fn invalid_requests_are_invalid_argument() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let attempt = |id: &'static str, svc: Service| {
        let client = client.clone();
        async move {
            client
                .create_service()
                .set_parent(parent())
                .set_service_id(id)
                .set_service(svc)
                .send()
                .await
        }
    };
    for (id, svc, needle) in [
        ("Bad_Id", hello_service(), "Invalid ID 'Bad_Id'"),
        (
            "reserved",
            hello_service().set_labels([("run.googleapis.com/foo", "x")]),
            "run.googleapis.com/",
        ),
        (
            "knative",
            hello_service().set_labels([("serving.knative.dev/x", "y")]),
            "reserved",
        ),
        (
            "noimage",
            Service::new().set_template(RevisionTemplate::new().set_containers([Container::new()])),
            "image",
        ),
        (
            "nocontainers",
            Service::new().set_template(RevisionTemplate::new()),
            "container",
        ),
        (
            "negative",
            hello_service().set_template(
                RevisionTemplate::new()
                    .set_containers([Container::new().set_image("x")])
                    .set_scaling(model::RevisionScaling::new().set_max_instance_count(-1)),
            ),
            "max_instance_count",
        ),
    ] {
        let err = attempt(id, svc).await.unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{id}: {err:?}");
        assert_eq!(err.http_status_code(), Some(400));
        assert!(message(&err).contains(needle), "{id}: {}", message(&err));
    }
    assert!(emu.count("run.services.create") >= 6);
    let list = client.list_services().set_parent(parent()).send().await?;
    assert!(list.services.is_empty(), "nothing was created");
    Ok(())
}

#[tokio::test]
async fn stale_etag_on_update_is_aborted() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("etag")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    client
        .update_service()
        .set_service(svc.clone().set_labels([("v", "2")]))
        .poller()
        .until_done()
        .await?;
    let err = client
        .update_service()
        .set_service(svc.clone().set_labels([("v", "3")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::Aborted));
    assert_eq!(err.http_status_code(), Some(409));
    Ok(())
}

#[tokio::test]
async fn allow_missing_update_creates_and_plain_update_is_not_found() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let err = client
        .update_service()
        .set_service(hello_service().set_name(service_name("upsert")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    let svc = client
        .update_service()
        .set_service(hello_service().set_name(service_name("upsert")))
        .set_allow_missing(true)
        .poller()
        .until_done()
        .await?;
    assert_eq!(svc.generation, 1);
    assert_eq!(svc.name, service_name("upsert"));
    Ok(())
}

#[tokio::test]
async fn update_mask_touches_only_named_fields() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("mask")
        .set_service(hello_service().set_labels([("keep", "me")]))
        .poller()
        .until_done()
        .await?;
    let out = client
        .update_service()
        .set_service(
            Service::new()
                .set_name(svc.name.clone())
                .set_ingress(IngressTraffic::InternalLoadBalancer),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["ingress"]))
        .poller()
        .until_done()
        .await?;
    assert_eq!(out.ingress, IngressTraffic::InternalLoadBalancer);
    assert_eq!(out.labels.get("keep").map(String::as_str), Some("me"));
    assert_eq!(out.template.map(|t| t.containers.len()), Some(1));
    Ok(())
}

#[tokio::test]
async fn enums_round_trip_through_the_int_encoding() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    // VPC egress and revocation action only matter to round trip here; use Direct VPC.
    let t = RevisionTemplate::new()
        .set_containers([Container::new().set_image("gcr.io/x/y")])
        .set_execution_environment(model::ExecutionEnvironment::Gen1)
        .set_vpc_access(
            model::VpcAccess::new()
                .set_egress(vpc_access::VpcEgress::PrivateRangesOnly)
                .set_network_interfaces([vpc_access::NetworkInterface::new()
                    .set_network("default")
                    .set_subnetwork("default")
                    .set_tags(["a"])]),
        );
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("enums")
        .set_service(
            Service::new()
                .set_template(t)
                .set_ingress(IngressTraffic::InternalOnly),
        )
        .poller()
        .until_done()
        .await?;
    let t = svc.template.expect("template");
    assert_eq!(t.execution_environment, model::ExecutionEnvironment::Gen1);
    let vpc = t.vpc_access.expect("vpc access");
    assert_eq!(vpc.egress, vpc_access::VpcEgress::PrivateRangesOnly);
    assert_eq!(vpc.network_interfaces[0].network, "default");
    assert_eq!(vpc.network_interfaces[0].tags, vec!["a".to_string()]);
    assert_eq!(svc.ingress, IngressTraffic::InternalOnly);
    assert_eq!(
        svc.traffic[0].r#type,
        model::TrafficTargetAllocationType::Latest
    );
    Ok(())
}

#[tokio::test]
async fn list_pages_through_services() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    for id in ["a1", "a2", "a3"] {
        client
            .create_service()
            .set_parent(parent())
            .set_service_id(id)
            .set_service(hello_service())
            .poller()
            .until_done()
            .await?;
    }
    let page = client
        .list_services()
        .set_parent(parent())
        .set_page_size(2)
        .send()
        .await?;
    assert_eq!(page.services.len(), 2);
    assert!(!page.next_page_token.is_empty());
    let rest = client
        .list_services()
        .set_parent(parent())
        .set_page_size(2)
        .set_page_token(page.next_page_token)
        .send()
        .await?;
    assert_eq!(rest.services.len(), 1);
    assert!(rest.next_page_token.is_empty());
    Ok(())
}

#[tokio::test]
async fn operations_can_be_fetched_and_listed() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let op = client
        .create_service()
        .set_parent(parent())
        .set_service_id("ops")
        .set_service(hello_service())
        .send()
        .await?;
    let got = client
        .get_operation()
        .set_name(op.name.clone())
        .send()
        .await?;
    assert!(got.done, "with delay 0 the first operations.get is done");
    let listed = client.list_operations().set_name(parent()).send().await?;
    assert!(listed.operations.iter().any(|o| o.name == op.name));
    let missing = client
        .get_operation()
        .set_name(format!("{}/operations/nope", parent()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some(Code::NotFound));
    Ok(())
}

//! Emulator controls (faults, counters, delay, reset), forbidden projects, the error codes the
//! controller maps, plain-JSON (curl-style) calls with string enums, and clean shutdown.

mod common;

use std::time::Duration;

use common::*;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_lro::Poller;
use runwarden_emulator::Fault;
use serde_json::json;

fn fault(api: &str, method: Option<&str>, code: &str, count: Option<u64>) -> Fault {
    Fault {
        api: api.into(),
        method: method.map(String::from),
        code: code.into(),
        message: None,
        count,
        rate: None,
    }
}

#[tokio::test]
async fn counted_fault_fails_then_clears_and_counts_every_attempt() -> TestResult {
    let emu = emulator().await;
    emu.inject_fault(fault("run", Some("services.get"), "UNAVAILABLE", Some(2)));
    let client = run(&emu).await;
    for _ in 0..2 {
        let err = client
            .get_service()
            .set_name(service_name("x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::Unavailable));
        assert_eq!(err.http_status_code(), Some(503));
    }
    let err = client
        .get_service()
        .set_name(service_name("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        Some(Code::NotFound),
        "fault exhausted after 2 calls"
    );
    assert_eq!(emu.count("run.services.get"), 3);
    assert_eq!(emu.count("run.services.create"), 0);
    Ok(())
}

#[tokio::test]
async fn client_retries_are_visible_in_the_counters() -> TestResult {
    let emu = emulator().await;
    emu.inject_fault(fault("run", Some("services.get"), "UNAVAILABLE", Some(2)));
    let client = google_cloud_run_v2::client::Services::builder()
        .with_endpoint(emu.endpoint())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .with_retry_policy(Aip194Strict.with_attempt_limit(5))
        .with_backoff_policy(
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(Duration::from_millis(5))
                .with_maximum_delay(Duration::from_millis(10))
                .build()?,
        )
        .build()
        .await?;
    let err = client
        .get_service()
        .set_name(service_name("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    assert_eq!(
        emu.count("run.services.get"),
        3,
        "two failures, then the real answer"
    );
    Ok(())
}

#[tokio::test]
async fn each_mapped_error_code_reaches_the_client() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    for (status, want, http) in [
        ("PERMISSION_DENIED", Code::PermissionDenied, 403),
        ("RESOURCE_EXHAUSTED", Code::ResourceExhausted, 429),
        ("UNAVAILABLE", Code::Unavailable, 503),
        ("ABORTED", Code::Aborted, 409),
        ("INTERNAL", Code::Internal, 500),
    ] {
        emu.inject_fault(fault("run", Some("services.create"), status, Some(1)));
        let err = client
            .create_service()
            .set_parent(parent())
            .set_service_id("f")
            .set_service(hello_service())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(want), "{status}");
        assert_eq!(err.http_status_code(), Some(http), "{status}");
        assert!(!message(&err).is_empty());
    }
    let list = client.list_services().set_parent(parent()).send().await?;
    assert!(list.services.is_empty(), "faulted creates wrote nothing");
    assert_eq!(emu.count("run.services.create"), 5);
    Ok(())
}

#[tokio::test]
async fn api_wide_and_rate_faults() -> TestResult {
    let emu = emulator().await;
    emu.inject_fault(Fault {
        rate: Some(1.0),
        ..fault("kms", None, "UNAVAILABLE", None)
    });
    let k = kms(&emu).await;
    let err = k
        .get_key_ring()
        .set_name(format!("projects/{PROJECT}/locations/{REGION}/keyRings/r"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::Unavailable));
    // Other APIs are untouched.
    let err = run(&emu)
        .await
        .get_service()
        .set_name(service_name("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    emu.clear_faults();
    let err = k
        .get_key_ring()
        .set_name(format!("projects/{PROJECT}/locations/{REGION}/keyRings/r"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    Ok(())
}

#[tokio::test]
async fn denied_projects_refuse_every_call() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let err = client
        .create_service()
        .set_parent(format!("projects/denied-project/locations/{REGION}"))
        .set_service_id("x")
        .set_service(hello_service())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied));
    assert!(
        message(&err).contains("run.services.create"),
        "{}",
        message(&err)
    );
    let err = projects(&emu)
        .await
        .get_project()
        .set_name("projects/denied-project")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied));
    assert_eq!(emu.count("run.services.create"), 1);
    Ok(())
}

#[tokio::test]
async fn http_controls_delay_counters_faults_reset() -> TestResult {
    let emu = emulator().await;
    let (s, v) = http(&emu, "GET", "/emulator/v1/healthz", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"operationDelay":"2.5s"}"#),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"operationDelay": "2.5s", "runReadsPerMinute": 0, "runWritesPerMinute": 0, "clockOffset": "0s", "taskDuration": "0s", "buildDuration": "0s"})
        )
    );
    let (_, v) = http(&emu, "GET", "/emulator/v1/config", None).await;
    assert_eq!(v["operationDelay"], "2.5s");
    let job = "projects/demo-project/locations/us-central1/jobs/j";
    let (s, v) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(&format!(
            r#"{{"taskDuration":"2s","taskFailures":{{"{job}":3}}}}"#
        )),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["taskDuration"], "2s");
    assert_eq!(v["taskFailures"], json!({job: 3}));
    let (s, _) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"taskFailures":{"not-a-job":1}}"#),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"operationDelay":"soon"}"#),
    )
    .await;
    assert_eq!(s, 400);

    let body = r#"{"api":"run","method":"services.get","code":"RESOURCE_EXHAUSTED","count":1}"#;
    assert_eq!(
        http(&emu, "POST", "/emulator/v1/faults", Some(body))
            .await
            .0,
        200
    );
    let path = format!("/v2/{}", service_name("x"));
    let (s, v) = http(&emu, "GET", &path, None).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    let (_, v) = http(&emu, "GET", "/emulator/v1/counters", None).await;
    assert_eq!(v["counters"]["run.services.get"], 1);
    assert_eq!(
        http(
            &emu,
            "POST",
            "/emulator/v1/faults",
            Some(r#"{"api":"nope","code":"ABORTED"}"#)
        )
        .await
        .0,
        400
    );

    assert_eq!(
        http(&emu, "DELETE", "/emulator/v1/counters", None).await.0,
        200
    );
    assert!(emu.counters().is_empty());
    emu.set_operation_delay(Duration::ZERO);
    run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("r")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    assert_eq!(http(&emu, "POST", "/emulator/v1/reset", None).await.0, 200);
    assert!(emu.counters().is_empty());
    let (s, _) = http(&emu, "GET", &format!("/v2/{}", service_name("r")), None).await;
    assert_eq!(s, 404, "reset drops all state");
    Ok(())
}

#[tokio::test]
async fn plain_json_with_string_enums_like_curl() -> TestResult {
    let emu = emulator().await;
    let body = r#"{"ingress":"INGRESS_TRAFFIC_INTERNAL_ONLY","template":{"containers":[{"image":"gcr.io/cloudrun/hello"}],"vpcAccess":{"egress":"ALL_TRAFFIC","networkInterfaces":[{"network":"default"}]}}}"#;
    let (s, op) = http(
        &emu,
        "POST",
        &format!("/v2/{}/services?serviceId=curl", parent()),
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    assert_eq!(op["metadata"]["generation"], "1", "int64 as a string");
    assert_eq!(op["metadata"]["template"]["timeout"], "300s");
    let (_, done) = http(
        &emu,
        "GET",
        &format!("/v2/{}", op["name"].as_str().unwrap_or_default()),
        None,
    )
    .await;
    assert_eq!(done["done"], true);
    assert_eq!(done["response"]["ingress"], "INGRESS_TRAFFIC_INTERNAL_ONLY");
    let (_, ints) = http(
        &emu,
        "GET",
        &format!(
            "/v2/{}?%24alt=json%3Benum-encoding%3Dint",
            service_name("curl")
        ),
        None,
    )
    .await;
    assert_eq!(ints["ingress"], 2);
    assert_eq!(ints["template"]["vpcAccess"]["egress"], 1);

    let bad = r#"{"ingress":"EVERYONE","template":{"containers":[{"image":"x"}]}}"#;
    let (s, err) = http(
        &emu,
        "POST",
        &format!("/v2/{}/services?serviceId=bad", parent()),
        Some(bad),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        err["error"]["message"],
        "Invalid value at 'service.ingress' (type.googleapis.com/google.cloud.run.v2.IngressTraffic), \"EVERYONE\""
    );
    let (s, err) = http(
        &emu,
        "POST",
        &format!("/v2/{}/services?serviceId=bad", parent()),
        Some("{not json"),
    )
    .await;
    assert_eq!((s, err["error"]["code"].as_i64()), (400, Some(400)));
    let (s, err) = http(&emu, "GET", "/v2/projects/x/unknown", None).await;
    assert_eq!(
        (s, err["error"]["status"].as_str()),
        (501, Some("UNIMPLEMENTED"))
    );
    Ok(())
}

#[tokio::test]
async fn serve_stops_when_the_shutdown_future_resolves() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runwarden_emulator::serve(
        listener,
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    let client = google_cloud_resourcemanager_v3::client::Projects::builder()
        .with_endpoint(format!("http://{addr}"))
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await?;
    let p = client
        .get_project()
        .set_name("projects/some-project")
        .send()
        .await?;
    assert_eq!(p.project_id, "some-project");
    drop(client);
    tx.send(()).ok();
    let res = tokio::time::timeout(Duration::from_secs(5), server).await??;
    assert!(res.is_ok());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed"
    );

    let emu = emulator().await;
    let addr = emu.local_addr();
    emu.shutdown().await;
    assert!(std::net::TcpStream::connect(addr).is_err());
    Ok(())
}

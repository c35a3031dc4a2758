//! Cloud Run Admin API rate quotas and the services-per-region limit, through the official client.

mod common;

use std::time::Duration;

use common::*;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use runwarden_emulator::Quotas;

#[tokio::test]
async fn reads_over_the_quota_get_429_with_retry_info_until_the_window_resets() -> TestResult {
    let emu = emulator().await;
    emu.set_quotas(Quotas {
        run_reads_per_minute: 2,
        run_writes_per_minute: 0,
    });
    let client = run(&emu).await;
    for _ in 0..2 {
        client.list_services().set_parent(parent()).send().await?;
    }
    let e = client
        .get_service()
        .set_name(service_name("x"))
        .send()
        .await
        .unwrap_err();
    let status = e.status().expect("a service error");
    assert_eq!(status.code, Code::ResourceExhausted);
    let number = runwarden_emulator::state::project_number(PROJECT);
    assert_eq!(
        status.message,
        format!(
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region' of service 'run.googleapis.com' for consumer 'project_number:{number}'."
        )
    );
    let retry = status.details.iter().find_map(|d| match d {
        StatusDetails::RetryInfo(r) => r.retry_delay,
        _ => None,
    });
    let retry = retry.expect("RetryInfo with a retryDelay");
    assert!(
        retry.seconds() <= 60 && (retry.seconds() > 0 || retry.nanos() > 0),
        "{retry:?}"
    );
    let info = status
        .details
        .iter()
        .find_map(|d| match d {
            StatusDetails::ErrorInfo(i) => Some(i.clone()),
            _ => None,
        })
        .expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("RATE_LIMIT_EXCEEDED", "googleapis.com")
    );
    assert_eq!(
        info.metadata.get("quota_metric").map(String::as_str),
        Some("run.googleapis.com/read_regional")
    );
    assert_eq!(
        info.metadata.get("quota_limit").map(String::as_str),
        Some("ReadPerMinutePerProjectRegion")
    );
    assert!(
        status
            .details
            .iter()
            .any(|d| matches!(d, StatusDetails::QuotaFailure(q) if q.violations.len() == 1))
    );
    assert_eq!(emu.count("run.services.get"), 1, "429s are counted");

    // Writes, other regions and other projects have their own budgets.
    client
        .create_service()
        .set_parent(parent())
        .set_service_id("hello")
        .set_service(hello_service())
        .send()
        .await?;
    client
        .list_services()
        .set_parent(format!("projects/{PROJECT}/locations/europe-west1"))
        .send()
        .await?;

    emu.advance_clock(Duration::from_secs(retry.seconds() as u64 + 1));
    client.list_services().set_parent(parent()).send().await?;
    Ok(())
}

#[tokio::test]
async fn write_quota_is_set_through_the_config_control() -> TestResult {
    let emu = emulator().await;
    let (s, v) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"runWritesPerMinute":1}"#),
    )
    .await;
    assert_eq!((s, &v["runWritesPerMinute"]), (200, &serde_json::json!(1)));
    assert_eq!(emu.quotas().run_writes_per_minute, 1);
    let client = run(&emu).await;
    create(&client, "a", hello_service()).await?;
    let e = refused_create(&client, "b", hello_service()).await;
    assert_eq!(code(&e), Some(Code::ResourceExhausted));
    assert!(message(&e).contains("'Write requests per minute per region'"));
    client
        .get_service()
        .set_name(service_name("a"))
        .send()
        .await?;

    let (s, _) = http(
        &emu,
        "POST",
        "/emulator/v1/clock:advance",
        Some(r#"{"by":"60s"}"#),
    )
    .await;
    assert_eq!(s, 200);
    client
        .delete_service()
        .set_name(service_name("a"))
        .send()
        .await?;
    let (s, _) = http(
        &emu,
        "PUT",
        "/emulator/v1/config",
        Some(r#"{"runWritesPerMinute":-1}"#),
    )
    .await;
    assert_eq!(s, 400);
    Ok(())
}

#[tokio::test]
async fn a_region_holds_at_most_1000_services() -> TestResult {
    let emu = emulator().await;
    let body = r#"{"template":{"containers":[{"image":"gcr.io/cloudrun/hello"}]}}"#;
    for i in 0..1000 {
        let path = format!("/v2/{}/services?serviceId=s{i}", parent());
        let (s, v) = http(&emu, "POST", &path, Some(body)).await;
        assert_eq!(s, 200, "{v}");
    }
    let client = run(&emu).await;
    let e = refused_create(&client, "one-too-many", hello_service()).await;
    assert_eq!(code(&e), Some(Code::ResourceExhausted));
    assert!(
        message(&e).starts_with("Quota exceeded for total allowable count of services"),
        "{}",
        message(&e)
    );
    client
        .create_service()
        .set_parent(format!("projects/{PROJECT}/locations/europe-west1"))
        .set_service_id("elsewhere")
        .set_service(hello_service())
        .send()
        .await?;
    Ok(())
}

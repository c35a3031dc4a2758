//! The security behaviour Cloud Run enforces: CMEK key permission and state, key location, VPC
//! connector existence/readiness/region. Each test fails if the emulator stops modelling it.

mod common;

use common::*;
use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::model::{CryptoKeyVersion, crypto_key_version};
use google_cloud_lro::Poller;
use google_cloud_run_v2::model::{Container, RevisionTemplate, Service, VpcAccess, condition};
use google_cloud_vpcaccess_v1::model::Connector;
use runwarden_emulator::Emulator;

fn cmek_service(key: &str) -> Service {
    Service::new().set_template(
        RevisionTemplate::new()
            .set_containers([Container::new().set_image("gcr.io/cloudrun/hello")])
            .set_encryption_key(key),
    )
}

#[tokio::test]
async fn cmek_deploy_fails_without_the_service_agent_role() -> TestResult {
    let emu = emulator().await;
    let key = key_name(REGION, "k1");
    make_key(&emu, REGION, "k1").await;
    let client = run(&emu).await;
    let err = client
        .create_service()
        .set_parent(parent())
        .set_service_id("cmek")
        .set_service(cmek_service(&key))
        .poller()
        .until_done()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::FailedPrecondition), "{err:?}");
    assert!(
        message(&err).contains("serverless-robot-prod"),
        "{}",
        message(&err)
    );
    let svc = client
        .get_service()
        .set_name(service_name("cmek"))
        .send()
        .await?;
    let tc = svc.terminal_condition.expect("terminal condition");
    assert_eq!(tc.state, condition::State::ConditionFailed);
    assert_eq!(
        tc.reason(),
        Some(&condition::CommonReason::EncryptionKeyPermissionDenied)
    );
    assert!(
        svc.latest_ready_revision.is_empty(),
        "nothing ever became ready"
    );
    Ok(())
}

#[tokio::test]
async fn cmek_deploy_succeeds_once_the_agent_holds_the_role() -> TestResult {
    let emu = emulator().await;
    let key = key_name(REGION, "k2");
    make_key(&emu, REGION, "k2").await;
    grant_agent(&emu, &key).await;
    let svc = run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("cmek-ok")
        .set_service(cmek_service(&key))
        .poller()
        .until_done()
        .await?;
    assert_eq!(
        svc.terminal_condition.map(|c| c.state),
        Some(condition::State::ConditionSucceeded)
    );
    assert_eq!(svc.template.map(|t| t.encryption_key), Some(key));
    Ok(())
}

#[tokio::test]
async fn a_conditional_grant_does_not_count() -> TestResult {
    let emu = emulator().await;
    let key = key_name(REGION, "k3");
    make_key(&emu, REGION, "k3").await;
    let k = kms(&emu).await;
    let policy = Policy::new().set_version(3).set_bindings([Binding::new()
        .set_role("roles/cloudkms.cryptoKeyEncrypterDecrypter")
        .set_members([agent()])
        .set_condition(
            google_cloud_type::model::Expr::new()
                .set_expression("request.time < timestamp('2000-01-01T00:00:00Z')")
                .set_title("expired"),
        )]);
    let out = k
        .set_iam_policy()
        .set_resource(&key)
        .set_policy(policy)
        .send()
        .await?;
    assert_eq!(out.version, 3);
    assert!(
        out.bindings[0].condition.is_some(),
        "condition kept verbatim"
    );
    let err = run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("cond")
        .set_service(cmek_service(&key))
        .poller()
        .until_done()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::FailedPrecondition));
    Ok(())
}

#[tokio::test]
async fn disabled_primary_version_fails_the_deploy_and_keeps_the_old_revision_serving() -> TestResult
{
    let emu = emulator().await;
    let key = key_name(REGION, "k4");
    make_key(&emu, REGION, "k4").await;
    grant_agent(&emu, &key).await;
    let client = run(&emu).await;
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("kv")
        .set_service(cmek_service(&key))
        .poller()
        .until_done()
        .await?;
    let ready = svc.latest_ready_revision.clone();

    // Disable version 1, then deploy a new template.
    let k = kms(&emu).await;
    let disabled = k
        .update_crypto_key_version()
        .set_crypto_key_version(
            CryptoKeyVersion::new()
                .set_name(format!("{key}/cryptoKeyVersions/1"))
                .set_state(crypto_key_version::CryptoKeyVersionState::Disabled),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await?;
    assert_eq!(
        disabled.state,
        crypto_key_version::CryptoKeyVersionState::Disabled
    );
    let mut t = svc.template.clone().expect("template");
    t.containers[0].image = "gcr.io/cloudrun/hello:v2".into();
    let err = client
        .update_service()
        .set_service(svc.clone().set_template(t))
        .poller()
        .until_done()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::FailedPrecondition));
    let now = client
        .get_service()
        .set_name(service_name("kv"))
        .send()
        .await?;
    let tc = now.terminal_condition.clone().expect("terminal condition");
    assert_eq!(tc.state, condition::State::ConditionFailed);
    assert_eq!(
        tc.reason(),
        Some(&condition::CommonReason::EncryptionKeyCheckFailed)
    );
    assert_eq!(
        now.latest_ready_revision, ready,
        "the previous ready revision still serves"
    );
    assert!(
        now.latest_created_revision.contains("-00002-"),
        "{}",
        now.latest_created_revision
    );

    // Re-enable: the same spec rolls out again and succeeds.
    k.update_crypto_key_version()
        .set_crypto_key_version(
            CryptoKeyVersion::new()
                .set_name(format!("{key}/cryptoKeyVersions/1"))
                .set_state(crypto_key_version::CryptoKeyVersionState::Enabled),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await?;
    let healed = client
        .update_service()
        .set_service(now.clone())
        .poller()
        .until_done()
        .await?;
    assert_eq!(
        healed.terminal_condition.map(|c| c.state),
        Some(condition::State::ConditionSucceeded)
    );
    assert_ne!(healed.latest_ready_revision, ready);
    Ok(())
}

#[tokio::test]
async fn key_in_another_location_is_refused() -> TestResult {
    let emu = emulator().await;
    make_key(&emu, "us-east1", "far").await;
    let err = run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("far")
        .set_service(cmek_service(&key_name("us-east1", "far")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::InvalidArgument));
    assert!(message(&err).contains("same location"), "{}", message(&err));
    let missing = run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("nokey")
        .set_service(cmek_service(&key_name(REGION, "nope")))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some(Code::InvalidArgument));
    Ok(())
}

fn connector_service(connector: &str) -> Service {
    Service::new().set_template(
        RevisionTemplate::new()
            .set_containers([Container::new().set_image("gcr.io/cloudrun/hello")])
            .set_vpc_access(VpcAccess::new().set_connector(connector)),
    )
}

async fn create_connector(emu: &Emulator, region: &str, id: &str) -> String {
    let vpc = vpc(emu).await;
    vpc.create_connector()
        .set_parent(format!("projects/{PROJECT}/locations/{region}"))
        .set_connector_id(id)
        .set_connector(
            Connector::new()
                .set_network("default")
                .set_ip_cidr_range("10.8.0.0/28"),
        )
        .poller()
        .until_done()
        .await
        .expect("connector created")
        .name
}

#[tokio::test]
async fn vpc_connector_must_exist() -> TestResult {
    let emu = emulator().await;
    let name = format!("{}/connectors/missing", parent());
    let err = run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("vpc")
        .set_service(connector_service(&name))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::InvalidArgument));
    assert!(
        message(&err).contains("does not exist"),
        "{}",
        message(&err)
    );
    Ok(())
}

#[tokio::test]
async fn vpc_connector_must_be_in_the_service_region() -> TestResult {
    let emu = emulator().await;
    let name = create_connector(&emu, "europe-west1", "eu-conn").await;
    let err = run(&emu)
        .await
        .create_service()
        .set_parent(parent())
        .set_service_id("vpc")
        .set_service(connector_service(&name))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::InvalidArgument));
    assert!(message(&err).contains("same region"), "{}", message(&err));
    Ok(())
}

#[tokio::test]
async fn vpc_connector_must_be_ready() -> TestResult {
    let emu = emulator_with_delay(std::time::Duration::from_millis(150)).await;
    let op = vpc(&emu)
        .await
        .create_connector()
        .set_parent(parent())
        .set_connector_id("slow-conn")
        .set_connector(
            Connector::new()
                .set_network("default")
                .set_ip_cidr_range("10.8.0.16/28"),
        )
        .send()
        .await?;
    assert!(!op.done);
    let name = format!("{}/connectors/slow-conn", parent());
    let client = run(&emu).await;
    let err = client
        .create_service()
        .set_parent(parent())
        .set_service_id("vpc")
        .set_service(connector_service(&name))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::FailedPrecondition));
    assert!(message(&err).contains("CREATING"), "{}", message(&err));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    emu.set_operation_delay(std::time::Duration::ZERO);
    let svc = client
        .create_service()
        .set_parent(parent())
        .set_service_id("vpc")
        .set_service(connector_service(&name))
        .poller()
        .until_done()
        .await?;
    assert_eq!(
        svc.template.and_then(|t| t.vpc_access).map(|v| v.connector),
        Some(name.clone())
    );
    let conn = vpc(&emu)
        .await
        .get_connector()
        .set_name(&name)
        .send()
        .await?;
    assert_eq!(conn.connected_projects, vec![PROJECT.to_string()]);
    Ok(())
}

#[tokio::test]
async fn connector_ids_follow_the_real_pattern() -> TestResult {
    let emu = emulator().await;
    let v = vpc(&emu).await;
    for bad in [
        "Upper",
        "1starts-with-digit",
        "ends-with-dash-",
        "x",
        "this-connector-id-is-far-too-long",
    ] {
        let err = v
            .create_connector()
            .set_parent(parent())
            .set_connector_id(bad)
            .set_connector(
                Connector::new()
                    .set_network("default")
                    .set_ip_cidr_range("10.8.0.0/28"),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), Some(Code::InvalidArgument), "{bad}");
    }
    Ok(())
}

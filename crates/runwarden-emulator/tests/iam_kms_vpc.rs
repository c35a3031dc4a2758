//! IAM read-modify-write (Cloud Run and KMS), KMS keys and versions, VPC Access connectors,
//! Resource Manager projects — through the official clients.

mod common;

use common::*;
use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_v1::model::Binding;
use google_cloud_kms_v1::model::{CryptoKey, KeyRing, crypto_key, crypto_key_version};
use google_cloud_lro::Poller;
use google_cloud_vpcaccess_v1::model::{Connector, connector};

#[tokio::test]
async fn service_iam_read_modify_write_and_stale_etag_is_aborted() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    client
        .create_service()
        .set_parent(parent())
        .set_service_id("iam")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    let name = service_name("iam");
    let empty = client.get_iam_policy().set_resource(&name).send().await?;
    assert!(empty.bindings.is_empty());
    assert!(!empty.etag.is_empty(), "an empty policy still has an etag");

    let policy = empty.clone().set_bindings([Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["allUsers", "user:alice@example.com"])]);
    let set = client
        .set_iam_policy()
        .set_resource(&name)
        .set_policy(policy)
        .send()
        .await?;
    assert_ne!(set.etag, empty.etag);
    let read = client.get_iam_policy().set_resource(&name).send().await?;
    assert_eq!(
        read.bindings[0].members,
        vec!["allUsers".to_string(), "user:alice@example.com".to_string()]
    );
    assert_eq!(read.etag, set.etag);

    // Writing with the etag read before the last write is a concurrent-change conflict.
    let stale = empty.set_bindings([Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["user:bob@example.com"])]);
    let err = client
        .set_iam_policy()
        .set_resource(&name)
        .set_policy(stale)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::Aborted));
    assert_eq!(err.http_status_code(), Some(409));
    assert!(
        message(&err).contains("concurrent policy changes"),
        "{}",
        message(&err)
    );
    let unchanged = client.get_iam_policy().set_resource(&name).send().await?;
    assert_eq!(unchanged.bindings, read.bindings);
    Ok(())
}

#[tokio::test]
async fn invalid_member_is_refused_and_named() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    client
        .create_service()
        .set_parent(parent())
        .set_service_id("iam2")
        .set_service(hello_service())
        .poller()
        .until_done()
        .await?;
    let policy = google_cloud_iam_v1::model::Policy::new().set_bindings([Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["alice@example.com"])]);
    let err = client
        .set_iam_policy()
        .set_resource(service_name("iam2"))
        .set_policy(policy)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::InvalidArgument));
    assert!(
        message(&err).contains("alice@example.com"),
        "{}",
        message(&err)
    );
    let missing = client
        .get_iam_policy()
        .set_resource(service_name("nope"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some(Code::NotFound));
    Ok(())
}

#[tokio::test]
async fn kms_keys_versions_disable_enable_destroy_restore() -> TestResult {
    let emu = emulator().await;
    let k = kms(&emu).await;
    let loc = format!("projects/{PROJECT}/locations/{REGION}");
    let ring = k
        .create_key_ring()
        .set_parent(&loc)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await?;
    assert_eq!(ring.name, format!("{loc}/keyRings/r"));
    let dup = k
        .create_key_ring()
        .set_parent(&loc)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup), Some(Code::AlreadyExists));

    let missing = k
        .get_crypto_key()
        .set_name(format!("{}/cryptoKeys/nope", ring.name))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some(Code::NotFound));
    assert_eq!(
        message(&missing),
        format!("CryptoKey {}/cryptoKeys/nope not found.", ring.name)
    );

    let key = k
        .create_crypto_key()
        .set_parent(&ring.name)
        .set_crypto_key_id("k")
        .set_crypto_key(
            CryptoKey::new()
                .set_purpose(crypto_key::CryptoKeyPurpose::EncryptDecrypt)
                .set_labels([("a", "b")]),
        )
        .send()
        .await?;
    let primary = key.primary.clone().expect("primary version");
    assert_eq!(
        primary.state,
        crypto_key_version::CryptoKeyVersionState::Enabled
    );
    assert!(primary.name.ends_with("/cryptoKeyVersions/1"));
    assert_eq!(
        key.destroy_scheduled_duration.map(|d| d.seconds()),
        Some(2_592_000)
    );

    let v2 = k
        .create_crypto_key_version()
        .set_parent(&key.name)
        .send()
        .await?;
    assert!(v2.name.ends_with("/cryptoKeyVersions/2"));
    let listed = k
        .list_crypto_key_versions()
        .set_parent(&key.name)
        .send()
        .await?;
    assert_eq!(listed.crypto_key_versions.len(), 2);

    let v1 = format!("{}/cryptoKeyVersions/1", key.name);
    let destroyed = k.destroy_crypto_key_version().set_name(&v1).send().await?;
    assert_eq!(
        destroyed.state,
        crypto_key_version::CryptoKeyVersionState::DestroyScheduled
    );
    assert!(destroyed.destroy_time.is_some());
    let got = k.get_crypto_key().set_name(&key.name).send().await?;
    assert_eq!(
        got.primary.map(|p| p.state),
        Some(crypto_key_version::CryptoKeyVersionState::DestroyScheduled)
    );
    // A destroyed version cannot be enabled.
    let err = k
        .update_crypto_key_version()
        .set_crypto_key_version(
            google_cloud_kms_v1::model::CryptoKeyVersion::new()
                .set_name(&v1)
                .set_state(crypto_key_version::CryptoKeyVersionState::Enabled),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::FailedPrecondition));
    let restored = k.restore_crypto_key_version().set_name(&v1).send().await?;
    assert_eq!(
        restored.state,
        crypto_key_version::CryptoKeyVersionState::Disabled
    );
    assert!(restored.destroy_time.is_none());

    let patched = k
        .update_crypto_key()
        .set_crypto_key(
            CryptoKey::new()
                .set_name(&key.name)
                .set_labels([("a", "c")]),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
        .send()
        .await?;
    assert_eq!(patched.labels.get("a").map(String::as_str), Some("c"));
    assert_eq!(
        patched.purpose,
        crypto_key::CryptoKeyPurpose::EncryptDecrypt
    );
    Ok(())
}

#[tokio::test]
async fn kms_key_iam_policy_round_trips() -> TestResult {
    let emu = emulator().await;
    let k = kms(&emu).await;
    let loc = format!("projects/{PROJECT}/locations/{REGION}");
    k.create_key_ring()
        .set_parent(&loc)
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await?;
    let key = k
        .create_crypto_key()
        .set_parent(format!("{loc}/keyRings/r"))
        .set_crypto_key_id("k")
        .set_crypto_key(CryptoKey::new().set_purpose(crypto_key::CryptoKeyPurpose::EncryptDecrypt))
        .send()
        .await?;
    let p = k.get_iam_policy().set_resource(&key.name).send().await?;
    let member = "serviceAccount:service-1@serverless-robot-prod.iam.gserviceaccount.com";
    let set = k
        .set_iam_policy()
        .set_resource(&key.name)
        .set_policy(
            p.clone().set_bindings([Binding::new()
                .set_role("roles/cloudkms.cryptoKeyEncrypterDecrypter")
                .set_members([member])]),
        )
        .send()
        .await?;
    assert_eq!(set.version, 1);
    assert_eq!(set.bindings[0].members, vec![member.to_string()]);
    let err = k
        .set_iam_policy()
        .set_resource(&key.name)
        .set_policy(p)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::Aborted));
    Ok(())
}

#[tokio::test]
async fn connectors_create_list_delete() -> TestResult {
    let emu = emulator().await;
    let v = vpc(&emu).await;
    let created = v
        .create_connector()
        .set_parent(parent())
        .set_connector_id("conn-1")
        .set_connector(
            Connector::new()
                .set_network("default")
                .set_ip_cidr_range("10.8.0.0/28")
                .set_min_throughput(300)
                .set_max_throughput(400),
        )
        .poller()
        .until_done()
        .await?;
    assert_eq!(created.state, connector::State::Ready);
    assert_eq!((created.min_instances, created.max_instances), (3, 4));
    assert_eq!(created.machine_type, "e2-micro");
    let defaults = v
        .create_connector()
        .set_parent(parent())
        .set_connector_id("conn-2")
        .set_connector(
            Connector::new().set_subnet(
                connector::Subnet::new()
                    .set_name("sub")
                    .set_project_id(PROJECT),
            ),
        )
        .poller()
        .until_done()
        .await?;
    assert_eq!((defaults.min_instances, defaults.max_instances), (2, 10));
    assert_eq!(defaults.subnet.map(|s| s.name), Some("sub".to_string()));

    let bad = v
        .create_connector()
        .set_parent(parent())
        .set_connector_id("conn-3")
        .set_connector(
            Connector::new()
                .set_network("default")
                .set_ip_cidr_range("10.8.0.0/24"),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad), Some(Code::InvalidArgument));

    let list = v.list_connectors().set_parent(parent()).send().await?;
    assert_eq!(list.connectors.len(), 2);
    v.delete_connector()
        .set_name(&created.name)
        .poller()
        .until_done()
        .await?;
    let err = v
        .get_connector()
        .set_name(&created.name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound));
    assert_eq!(message(&err), "The connector is not found.");
    assert_eq!(emu.count("vpcaccess.connectors.create"), 3);
    assert_eq!(emu.count("vpcaccess.connectors.delete"), 1);
    Ok(())
}

#[tokio::test]
async fn project_number_lookup_is_stable() -> TestResult {
    let emu = emulator().await;
    let p = projects(&emu).await;
    let got = p
        .get_project()
        .set_name(format!("projects/{PROJECT}"))
        .send()
        .await?;
    let number = runwarden_emulator::state::project_number(PROJECT);
    assert_eq!(got.name, format!("projects/{number}"));
    assert_eq!(got.project_id, PROJECT);
    assert_eq!(
        got.state,
        google_cloud_resourcemanager_v3::model::project::State::Active
    );
    let by_number = p
        .get_project()
        .set_name(format!("projects/{number}"))
        .send()
        .await?;
    assert_eq!(by_number.project_id, PROJECT);
    let err = p
        .get_project()
        .set_name("projects/Not_A_Project")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied));
    Ok(())
}

//! CMEK: the service agent's grant on the key, and the key watched on every resync, against the
//! emulator and a real API server.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, PROJECT, REGION, anonymous, spec};
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, KeyRing};
use google_cloud_type::model::Expr;
use runwarden::api::v1alpha1::CloudRunService;
use runwarden::controller::cloudrunservice::is_ready;

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/payments@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const KMS_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// The Cloud Run service agent of the test project, as an IAM member.
fn agent() -> String {
    format!(
        "serviceAccount:service-{}@serverless-robot-prod.iam.gserviceaccount.com",
        runwarden_emulator::state::project_number(PROJECT)
    )
}

/// The official KMS client on the test's emulator.
async fn kms(h: &Harness) -> KeyManagementService {
    KeyManagementService::builder()
        .with_endpoint(h.emu.endpoint())
        .with_credentials(anonymous())
        .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
        .build()
        .await
        .expect("kms client")
}

/// Creates key ring `ring` (once) and key `key` in the test region; returns the key's name.
async fn create_key(kms: &KeyManagementService, ring: &str, key: &str) -> String {
    let parent = format!("projects/{PROJECT}/locations/{REGION}");
    let ring_name = format!("{parent}/keyRings/{ring}");
    if kms
        .get_key_ring()
        .set_name(&ring_name)
        .send()
        .await
        .is_err()
    {
        kms.create_key_ring()
            .set_parent(&parent)
            .set_key_ring_id(ring)
            .set_key_ring(KeyRing::new())
            .send()
            .await
            .expect("key ring");
    }
    kms.create_crypto_key()
        .set_parent(&ring_name)
        .set_crypto_key_id(key)
        .set_crypto_key(CryptoKey::new().set_purpose(CryptoKeyPurpose::EncryptDecrypt))
        .send()
        .await
        .expect("crypto key")
        .name
}

/// Sets the state of version 1 (the primary) of `key`.
async fn set_state(kms: &KeyManagementService, key: &str, state: CryptoKeyVersionState) {
    kms.update_crypto_key_version()
        .set_crypto_key_version(
            CryptoKeyVersion::new()
                .set_name(format!("{key}/cryptoKeyVersions/1"))
                .set_state(state),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
        .send()
        .await
        .expect("version state");
}

async fn policy(kms: &KeyManagementService, key: &str) -> Policy {
    kms.get_iam_policy()
        .set_resource(key)
        .set_options(
            google_cloud_iam_v1::model::GetPolicyOptions::new().set_requested_policy_version(3),
        )
        .send()
        .await
        .expect("key policy")
}

/// Adds a binding to the key's policy, as a security admin would.
async fn add_binding(kms: &KeyManagementService, key: &str, binding: Binding) {
    let mut p = policy(kms, key).await;
    p.bindings.push(binding);
    p.version = 3;
    kms.set_iam_policy()
        .set_resource(key)
        .set_policy(p)
        .send()
        .await
        .expect("set key policy");
}

/// Sorted members of the unconditioned binding(s) of `role`.
fn members(p: &Policy, role: &str) -> Vec<String> {
    let mut m: Vec<String> = p
        .bindings
        .iter()
        .filter(|b| b.role == role && b.condition.is_none())
        .flat_map(|b| b.members.clone())
        .collect();
    m.sort();
    m
}

fn cmek(key: &str, encryption: serde_json::Value) -> serde_json::Value {
    let mut s = spec(IMAGE);
    s["encryption"] = encryption;
    s["encryption"]["kmsKey"] = key.into();
    s
}

fn condition(obj: &CloudRunService, type_: &str) -> (String, String, String) {
    let c = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (
        c.status.to_string(),
        c.reason.to_string(),
        c.message.to_string(),
    )
}

#[tokio::test]
async fn grant_then_deploy_keeps_foreign_bindings() {
    let Some(mut h) = Harness::new("cmek-grant").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "payments").await;
    // Bindings that are not runwarden's: another role, another member of the same role, and a
    // conditional binding of the same role.
    let conditional = Binding::new()
        .set_role(KMS_ROLE)
        .set_members(["user:temp@example.com"])
        .set_condition(
            Expr::new()
                .set_title("until 2030")
                .set_expression("request.time < timestamp('2030-01-01T00:00:00Z')"),
        );
    add_binding(
        &kms,
        &key,
        Binding::new()
            .set_role("roles/cloudkms.admin")
            .set_members(["user:secadmin@example.com"]),
    )
    .await;
    add_binding(
        &kms,
        &key,
        Binding::new()
            .set_role(KMS_ROLE)
            .set_members(["serviceAccount:batch@runwarden-test.iam.gserviceaccount.com"]),
    )
    .await;
    add_binding(&kms, &key, conditional.clone()).await;
    h.emu.reset_counters();

    h.config.resync = Duration::from_secs(2);
    h.start_controller().await;
    h.apply(
        "payments",
        cmek(
            &key,
            serde_json::json!({"revocationAction": "Shutdown", "shutdownHours": 12}),
        ),
    )
    .await;
    let obj = h.wait_ready("payments").await;

    // Granted before the deploy: the first rollout succeeded, no retry was needed.
    assert_eq!(h.emu.count("run.services.create"), 1);
    assert_eq!(
        h.emu.count("run.services.patch"),
        0,
        "{:?}",
        h.emu.counters()
    );
    assert_eq!(h.emu.count("kms.cryptoKeys.setIamPolicy"), 1);
    let status = obj.status.clone().unwrap();
    assert_eq!(
        status.service_agent.map(|a| format!("serviceAccount:{a}")),
        Some(agent())
    );
    let (s, reason, message) = condition(&obj, "EncryptionReady");
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("True", "KeyUsable"),
        "{message}"
    );

    let p = policy(&kms, &key).await;
    let mut want = vec![
        agent(),
        "serviceAccount:batch@runwarden-test.iam.gserviceaccount.com".to_owned(),
    ];
    want.sort();
    assert_eq!(members(&p, KMS_ROLE), want);
    assert_eq!(
        members(&p, "roles/cloudkms.admin"),
        ["user:secadmin@example.com"]
    );
    let kept: Vec<&Binding> = p
        .bindings
        .iter()
        .filter(|b| b.condition.is_some())
        .collect();
    assert_eq!(kept.len(), 1, "the conditional binding must survive: {p:?}");
    assert_eq!(kept[0].members, conditional.members);
    assert_eq!(kept[0].condition, conditional.condition);
    assert!(
        h.events("payments")
            .await
            .iter()
            .any(|e| e.starts_with("KeyGranted:") && e.contains(&agent()) && e.contains(KMS_ROLE))
    );

    // The key and the revocation settings are in the template.
    let svc = h.gcp_service("payments").await.unwrap();
    let t = svc.template.unwrap();
    assert_eq!(t.encryption_key, key);
    assert_eq!(
        t.encryption_key_revocation_action,
        google_cloud_run_v2::model::EncryptionKeyRevocationAction::Shutdown
    );
    assert_eq!(
        t.encryption_key_shutdown_duration.map(|d| d.seconds()),
        Some(12 * 3600)
    );

    // One resync with nothing changed: what it costs, and no write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.emu.reset_counters();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.emu.count("run.services.getIamPolicy") == 0 {
        assert!(Instant::now() < deadline, "no resync within 10s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = h.emu.counters();
    eprintln!(
        "cmek: Google calls per no-op resync of a CMEK service: {} {calls:?}",
        calls.values().sum::<u64>()
    );
    let expected: std::collections::BTreeMap<String, u64> = [
        "kms.cryptoKeys.get",
        "kms.cryptoKeys.getIamPolicy",
        "run.services.get",
        "run.services.getIamPolicy",
    ]
    .into_iter()
    .map(|m| (m.to_owned(), 1))
    .collect();
    assert_eq!(calls, expected, "a no-op resync of a CMEK service");
    h.stop_controller().await;
}

#[tokio::test]
async fn a_concurrent_key_policy_change_is_retried() {
    let Some(mut h) = Harness::new("cmek-aborted").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "api").await;
    h.emu.reset_counters();
    h.emu.inject_fault(runwarden_emulator::Fault {
        api: "kms".into(),
        method: Some("cryptoKeys.setIamPolicy".into()),
        code: "ABORTED".into(),
        message: None,
        count: Some(2),
        rate: None,
    });
    h.start_controller().await;
    h.apply("api", cmek(&key, serde_json::json!({}))).await;
    h.wait_ready("api").await;
    assert_eq!(
        h.emu.count("kms.cryptoKeys.setIamPolicy"),
        3,
        "two ABORTED writes, then one that lands: {:?}",
        h.emu.counters()
    );
    assert!(
        h.emu.count("kms.cryptoKeys.getIamPolicy") >= 3,
        "each attempt reads the policy (and its etag) again: {:?}",
        h.emu.counters()
    );
    assert_eq!(members(&policy(&kms, &key).await, KMS_ROLE), [agent()]);
    let events = h.events("api").await;
    assert!(
        !events.iter().any(|e| e.starts_with("Conflict:")),
        "retried within the pass, not reported: {events:?}"
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn a_disabled_key_flips_ready_within_one_resync_and_recovers() {
    let Some(mut h) = Harness::new("cmek-disabled").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "web").await;
    h.config.resync = Duration::from_secs(2);
    h.start_controller().await;
    h.apply("web", cmek(&key, serde_json::json!({}))).await;
    let ready = h.wait_ready("web").await;
    let revision = ready.status.unwrap().latest_ready_revision;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.emu.reset_counters();

    set_state(&kms, &key, CryptoKeyVersionState::Disabled).await;
    let started = Instant::now();
    let obj = h.wait_reason("web", "EncryptionReady", "KeyDisabled").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "noticed after {took:?}; the resync is 2s ±10%"
    );
    let (s, _, message) = condition(&obj, "EncryptionReady");
    assert_eq!(s, "False");
    assert!(
        message.contains("DISABLED") && message.contains(&key),
        "{message}"
    );
    let (s, reason, _) = condition(&obj, "Ready");
    assert_eq!((s.as_str(), reason.as_str()), ("False", "KeyDisabled"));
    eprintln!("cmek: key disabled → EncryptionReady=False after {took:?} (resync 2s)");

    // Retries back off; the Warning is one event (a series), not one per retry.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warnings: Vec<String> = h
        .events("web")
        .await
        .into_iter()
        .filter(|e| e.starts_with("KeyDisabled:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&key), "{warnings:?}");

    // Destroyed (scheduled), restored (disabled), enabled: each is seen without a spec change.
    kms.destroy_crypto_key_version()
        .set_name(format!("{key}/cryptoKeyVersions/1"))
        .send()
        .await
        .expect("destroy");
    h.wait_reason("web", "EncryptionReady", "KeyDestroyed")
        .await;
    kms.restore_crypto_key_version()
        .set_name(format!("{key}/cryptoKeyVersions/1"))
        .send()
        .await
        .expect("restore");
    h.wait_reason("web", "EncryptionReady", "KeyDisabled").await;
    set_state(&kms, &key, CryptoKeyVersionState::Enabled).await;
    let obj = h.wait_ready("web").await;
    assert_eq!(condition(&obj, "EncryptionReady").1, "KeyUsable");
    assert_eq!(obj.status.unwrap().latest_ready_revision, revision);
    for write in ["run.services.create", "run.services.patch"] {
        assert_eq!(
            h.emu.count(write),
            0,
            "nothing is deployed while the key is unusable, nor after: {:?}",
            h.emu.counters()
        );
    }
    h.stop_controller().await;
}

#[tokio::test]
async fn a_rollout_that_failed_on_the_key_is_sent_again_once_the_key_is_enabled() {
    let Some(mut h) = Harness::new("cmek-redeploy").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "jobs").await;
    h.emu.set_operation_delay(Duration::from_secs(2));
    h.start_controller().await;
    h.apply("jobs", cmek(&key, serde_json::json!({}))).await;
    h.wait_for("jobs", "the create in flight", |o| {
        o.and_then(|o| o.status.as_ref())
            .is_some_and(|s| s.operation.is_some())
    })
    .await;
    // The key is disabled while Cloud Run rolls out: the rollout fails on the key.
    set_state(&kms, &key, CryptoKeyVersionState::Disabled).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let svc = h.gcp_service("jobs").await.expect("service");
        let failed = svc.terminal_condition.as_ref().is_some_and(|c| {
            c.state == google_cloud_run_v2::model::condition::State::ConditionFailed
        });
        if failed && !svc.reconciling {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not fail: {svc:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.wait_reason("jobs", "EncryptionReady", "KeyDisabled")
        .await;
    h.emu.reset_counters();

    set_state(&kms, &key, CryptoKeyVersionState::Enabled).await;
    let obj = h.wait_ready("jobs").await;
    assert!(
        obj.status
            .unwrap()
            .latest_ready_revision
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(
        h.emu.count("run.services.patch"),
        1,
        "the same template is sent once more: {:?}",
        h.emu.counters()
    );
    assert!(
        h.events("jobs")
            .await
            .iter()
            .any(|e| e.starts_with("Updated:") && e.contains("encryption key"))
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn services_share_a_key_and_the_grant_outlives_them() {
    let Some(mut h) = Harness::new("cmek-shared").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "shared").await;
    h.start_controller().await;
    h.apply("alpha", cmek(&key, serde_json::json!({}))).await;
    h.apply("beta", cmek(&key, serde_json::json!({}))).await;
    h.wait_ready("alpha").await;
    h.wait_ready("beta").await;
    assert_eq!(
        members(&policy(&kms, &key).await, KMS_ROLE),
        [agent()],
        "one binding serves both"
    );
    let granted = h
        .events("alpha")
        .await
        .iter()
        .chain(h.events("beta").await.iter())
        .filter(|e| e.starts_with("KeyGranted:"))
        .count();
    assert_eq!(granted, 1, "granted once for both services");
    let writes = h.emu.count("kms.cryptoKeys.setIamPolicy");

    h.delete("alpha").await;
    h.wait_for("alpha", "alpha gone", |o| o.is_none()).await;
    assert!(h.gcp_service("alpha").await.is_none());
    assert_eq!(
        members(&policy(&kms, &key).await, KMS_ROLE),
        [agent()],
        "beta still needs the grant"
    );
    assert_eq!(is_ready(&h.api().get("beta").await.unwrap()), Some(true));

    // The last service goes: the grant stays (runwarden never removes it, see encryption.rs).
    h.delete("beta").await;
    h.wait_for("beta", "beta gone", |o| o.is_none()).await;
    assert_eq!(members(&policy(&kms, &key).await, KMS_ROLE), [agent()]);
    assert_eq!(
        h.emu.count("kms.cryptoKeys.setIamPolicy"),
        writes,
        "deleting services writes nothing to the key"
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn without_grant_service_agent_the_binding_is_checked_not_written() {
    let Some(mut h) = Harness::new("cmek-nogrant").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "audited").await;
    h.emu.reset_counters();
    h.start_controller().await;
    h.apply(
        "audited",
        cmek(&key, serde_json::json!({"grantServiceAgent": false})),
    )
    .await;
    let obj = h
        .wait_reason("audited", "EncryptionReady", "PermissionDenied")
        .await;
    let (s, _, message) = condition(&obj, "EncryptionReady");
    assert_eq!(s, "False");
    for part in [agent().as_str(), KMS_ROLE, key.as_str()] {
        assert!(message.contains(part), "{message} should name {part}");
    }
    assert_eq!(condition(&obj, "Ready").1, "PermissionDenied");
    assert!(
        h.events("audited")
            .await
            .iter()
            .any(|e| e.starts_with("PermissionDenied:") && e.contains(&agent()))
    );
    assert_eq!(h.emu.count("kms.cryptoKeys.setIamPolicy"), 0);
    assert_eq!(h.emu.count("run.services.create"), 0, "no doomed deploy");

    // The security admins grant it: the service deploys, without runwarden writing the policy.
    add_binding(
        &kms,
        &key,
        Binding::new().set_role(KMS_ROLE).set_members([agent()]),
    )
    .await;
    let obj = h.wait_ready("audited").await;
    assert_eq!(condition(&obj, "EncryptionReady").1, "KeyUsable");
    // A second service finds the binding in place and deploys straight away.
    h.apply(
        "second",
        cmek(&key, serde_json::json!({"grantServiceAgent": false})),
    )
    .await;
    h.wait_ready("second").await;
    assert!(
        !h.events("second")
            .await
            .iter()
            .any(|e| e.starts_with("PermissionDenied:"))
    );
    assert_eq!(
        h.emu.count("kms.cryptoKeys.setIamPolicy"),
        1,
        "only the admin's write: {:?}",
        h.emu.counters()
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn a_missing_key_blocks_until_it_exists_and_shutdown_hours_need_shutdown() {
    let Some(mut h) = Harness::new("cmek-missing").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = format!("projects/{PROJECT}/locations/{REGION}/keyRings/later/cryptoKeys/late");

    // Refused at admission: shutdownHours without revocationAction: Shutdown.
    let bad = serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "CloudRunService",
        "metadata": {"name": "late"},
        "spec": cmek(&key, serde_json::json!({"shutdownHours": 5})),
    });
    let err = h
        .api()
        .patch(
            "late",
            &kube::api::PatchParams::apply("test-user"),
            &kube::api::Patch::Apply(&bad),
        )
        .await
        .expect_err("the CRD schema must refuse shutdownHours without Shutdown");
    assert!(
        err.to_string()
            .contains("shutdownHours is only allowed with revocationAction: Shutdown"),
        "{err}"
    );

    h.start_controller().await;
    h.apply("late", cmek(&key, serde_json::json!({}))).await;
    let obj = h
        .wait_reason("late", "EncryptionReady", "KeyNotFound")
        .await;
    assert!(condition(&obj, "EncryptionReady").2.contains(&key));
    assert_eq!(h.emu.count("run.services.create"), 0);
    assert_eq!(create_key(&kms, "later", "late").await, key);
    h.wait_ready("late").await;
    h.stop_controller().await;
}

#[tokio::test]
async fn a_grant_runwarden_may_not_write_says_what_to_do() {
    let Some(mut h) = Harness::new("cmek-forbidden").await else {
        return;
    };
    let kms = kms(&h).await;
    let key = create_key(&kms, "ring", "locked").await;
    h.emu.inject_fault(runwarden_emulator::Fault {
        api: "kms".into(),
        method: Some("cryptoKeys.setIamPolicy".into()),
        code: "PERMISSION_DENIED".into(),
        message: None,
        count: None,
        rate: None,
    });
    h.start_controller().await;
    h.apply("locked", cmek(&key, serde_json::json!({}))).await;
    let obj = h
        .wait_reason("locked", "EncryptionReady", "PermissionDenied")
        .await;
    let message = condition(&obj, "EncryptionReady").2;
    for part in [
        "cloudkms.cryptoKeys.setIamPolicy",
        "grantServiceAgent: false",
        agent().as_str(),
        KMS_ROLE,
    ] {
        assert!(message.contains(part), "{message} should name {part}");
    }
    assert_eq!(h.emu.count("run.services.create"), 0, "no doomed deploy");
    h.emu.clear_faults();
    h.wait_ready("locked").await;
    h.stop_controller().await;
}

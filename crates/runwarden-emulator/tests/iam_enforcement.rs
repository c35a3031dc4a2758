//! IAM enforcement through the official clients: tokens from IAM Credentials'
//! `generateAccessToken` act as their service account; grants come from project, service, key and
//! service-account policies; anonymous callers keep full access.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::model::{CryptoKey, KeyRing, crypto_key};

const RUN_ADMIN: &str = "roles/run.admin";

fn project_path() -> String {
    format!("/v3/projects/{PROJECT}")
}

fn sa_path(email: &str) -> String {
    format!("/v1/projects/-/serviceAccounts/{email}")
}

fn member(email: &str) -> String {
    format!("serviceAccount:{email}")
}

/// The `ErrorInfo` metadata value `key` of a client error.
fn error_info(e: &Error, key: &str) -> Option<String> {
    e.status()?.details.iter().find_map(|d| match d {
        StatusDetails::ErrorInfo(i) if i.reason == "IAM_PERMISSION_DENIED" => {
            assert_eq!(i.domain, "iam.googleapis.com");
            i.metadata.get(key).cloned()
        }
        _ => None,
    })
}

/// The permission a PERMISSION_DENIED client error names in its `ErrorInfo`.
fn denied(e: &Error) -> String {
    assert_eq!(code(e), Some(Code::PermissionDenied), "{e}");
    error_info(e, "permission").unwrap_or_default()
}

#[tokio::test]
async fn tokens_are_issued_expire_and_unknown_ones_are_refused() -> TestResult {
    let emu = emulator().await;
    let deployer = sa("deployer");
    let resp = credentials(&emu)
        .await
        .generate_access_token()
        .set_name(format!("projects/-/serviceAccounts/{deployer}"))
        .set_scope(["https://www.googleapis.com/auth/cloud-platform"])
        .set_lifetime(google_cloud_wkt::Duration::clamp(600, 0))
        .send()
        .await?;
    assert!(
        resp.access_token.starts_with("ya29."),
        "{}",
        resp.access_token
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let expires = resp.expire_time.expect("expireTime").seconds();
    assert!(
        (now + 595..=now + 605).contains(&expires),
        "{expires} vs {now}"
    );

    set_policy(
        &emu,
        &project_path(),
        &[("roles/run.viewer", &[&member(&deployer)])],
    )
    .await;
    let as_deployer = run_as(&emu, &resp.access_token).await;
    as_deployer
        .list_services()
        .set_parent(parent())
        .send()
        .await?;

    emu.advance_clock(Duration::from_secs(601));
    let e = as_deployer
        .list_services()
        .set_parent(parent())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Unauthenticated));
    assert!(
        message(&e).starts_with(
            "Request had invalid authentication credentials. Expected OAuth 2 access token"
        ),
        "{}",
        message(&e)
    );
    let e = run_as(&emu, "ya29.not-issued")
        .await
        .list_services()
        .set_parent(parent())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Unauthenticated));

    let bad = format!("projects/-/serviceAccounts/deployer@{PROJECT}.example.com");
    let e = credentials(&emu)
        .await
        .generate_access_token()
        .set_name(&bad)
        .set_scope(["https://www.googleapis.com/auth/cloud-platform"])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::NotFound));
    assert_eq!(
        message(&e),
        format!("Not found; Gaia id not found for email deployer@{PROJECT}.example.com")
    );
    let e = credentials(&emu)
        .await
        .generate_access_token()
        .set_name(format!("projects/-/serviceAccounts/{deployer}"))
        .set_scope(["https://www.googleapis.com/auth/cloud-platform"])
        .set_lifetime(google_cloud_wkt::Duration::clamp(7200, 0))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::InvalidArgument));
    Ok(())
}

#[tokio::test]
async fn a_caller_without_grants_is_denied_naming_permission_and_resource() -> TestResult {
    let emu = emulator().await;
    let token = token_for(&emu, &sa("nobody")).await;
    let e = create(&run_as(&emu, &token).await, "hello", hello_service())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    let resource = service_name("hello");
    assert_eq!(
        message(&e),
        format!(
            "Permission 'run.services.create' denied on resource '{resource}' (or resource may not exist)."
        )
    );
    assert_eq!(denied(&e), "run.services.create");
    assert_eq!(error_info(&e, "resource"), Some(resource));
    let e = run_as(&emu, &token)
        .await
        .get_service()
        .set_name(service_name("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(denied(&e), "run.services.get");
    Ok(())
}

#[tokio::test]
async fn a_project_grant_of_run_admin_lets_it_deploy_and_developer_cannot_set_iam() -> TestResult {
    let emu = emulator().await;
    let (admin, dev) = (sa("run-admin"), sa("run-developer"));
    set_policy(
        &emu,
        &project_path(),
        &[
            (RUN_ADMIN, &[&member(&admin)]),
            ("roles/run.developer", &[&member(&dev)]),
            // Both deploy as the default compute account.
            (
                "roles/iam.serviceAccountUser",
                &[&member(&admin), &member(&dev)],
            ),
        ],
    )
    .await;
    let as_admin = run_as(&emu, &token_for(&emu, &admin).await).await;
    let svc = create(&as_admin, "hello", hello_service()).await?;
    assert_eq!(svc.name, service_name("hello"));
    let policy = Policy::new().set_bindings([Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["allUsers"])]);
    as_admin
        .set_iam_policy()
        .set_resource(&svc.name)
        .set_policy(policy.clone())
        .send()
        .await?;

    let as_dev = run_as(&emu, &token_for(&emu, &dev).await).await;
    create(&as_dev, "other", hello_service()).await?;
    as_dev
        .get_iam_policy()
        .set_resource(&svc.name)
        .send()
        .await?;
    let e = as_dev
        .set_iam_policy()
        .set_resource(&svc.name)
        .set_policy(policy)
        .send()
        .await
        .unwrap_err();
    assert_eq!(denied(&e), "run.services.setIamPolicy");

    let held = as_dev
        .test_iam_permissions()
        .set_resource(&svc.name)
        .set_permissions(["run.services.update", "run.services.setIamPolicy"])
        .send()
        .await?;
    assert_eq!(held.permissions, ["run.services.update"]);
    Ok(())
}

#[tokio::test]
async fn deploying_as_a_service_account_needs_act_as_on_it() -> TestResult {
    let emu = emulator().await;
    let (deployer, runtime) = (sa("deployer"), sa("runtime"));
    set_policy(&emu, &project_path(), &[(RUN_ADMIN, &[&member(&deployer)])]).await;
    let client = run_as(&emu, &token_for(&emu, &deployer).await).await;
    let mut svc = hello_service();
    if let Some(t) = svc.template.as_mut() {
        t.service_account = runtime.clone();
    }
    let e = create(&client, "hello", svc.clone()).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    assert_eq!(
        message(&e),
        format!(
            "Permission 'iam.serviceaccounts.actAs' denied on service account {runtime} (or it may not exist)."
        )
    );
    assert_eq!(denied(&e), "iam.serviceAccounts.actAs");

    set_policy(
        &emu,
        &sa_path(&runtime),
        &[("roles/iam.serviceAccountUser", &[&member(&deployer)])],
    )
    .await;
    let created = create(&client, "hello", svc).await?;
    assert_eq!(created.template.map(|t| t.service_account), Some(runtime));
    Ok(())
}

#[tokio::test]
async fn deploying_without_a_service_account_needs_act_as_on_the_default_compute_account()
-> TestResult {
    let emu = emulator().await;
    let deployer = sa("deployer");
    set_policy(&emu, &project_path(), &[(RUN_ADMIN, &[&member(&deployer)])]).await;
    let client = run_as(&emu, &token_for(&emu, &deployer).await).await;
    let e = create(&client, "hello", hello_service()).await.unwrap_err();
    assert_eq!(denied(&e), "iam.serviceAccounts.actAs");
    let number = message(&e)
        .split("service account ")
        .nth(1)
        .and_then(|rest| rest.split("-compute@developer.gserviceaccount.com").next())
        .map(str::to_owned)
        .expect("the default compute account named");
    assert!(
        number.len() == 12 && number.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        message(&e)
    );
    let compute = format!("{number}-compute@developer.gserviceaccount.com");
    set_policy(
        &emu,
        &sa_path(&compute),
        &[("roles/iam.serviceAccountUser", &[&member(&deployer)])],
    )
    .await;
    let created = create(&client, "hello", hello_service()).await?;
    assert_eq!(created.template.map(|t| t.service_account), Some(compute));
    Ok(())
}

#[tokio::test]
async fn a_key_level_grant_covers_that_key_and_its_versions_only() -> TestResult {
    let emu = emulator().await;
    let admin = kms(&emu).await;
    let ring = admin
        .create_key_ring()
        .set_parent(parent())
        .set_key_ring_id("r")
        .set_key_ring(KeyRing::new())
        .send()
        .await?;
    let mut keys = Vec::new();
    for id in ["a", "b"] {
        let key = admin
            .create_crypto_key()
            .set_parent(&ring.name)
            .set_crypto_key_id(id)
            .set_crypto_key(
                CryptoKey::new().set_purpose(crypto_key::CryptoKeyPurpose::EncryptDecrypt),
            )
            .send()
            .await?;
        keys.push(key.name);
    }
    let reader = sa("key-reader");
    set_policy(
        &emu,
        &format!("/v1/{}", keys[0]),
        &[("roles/cloudkms.viewer", &[&member(&reader)])],
    )
    .await;
    let client = kms_as(&emu, &token_for(&emu, &reader).await).await;
    client.get_crypto_key().set_name(&keys[0]).send().await?;
    client
        .get_crypto_key_version()
        .set_name(format!("{}/cryptoKeyVersions/1", keys[0]))
        .send()
        .await?;
    let e = client
        .get_crypto_key()
        .set_name(&keys[1])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    assert_eq!(
        message(&e),
        format!(
            "Permission 'cloudkms.cryptoKeys.get' denied on resource '{}' (or it may not exist).",
            keys[1]
        )
    );
    let e = client
        .get_key_ring()
        .set_name(&ring.name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(denied(&e), "cloudkms.keyRings.get");
    Ok(())
}

#[tokio::test]
async fn impersonation_needs_token_creator_along_the_chain() -> TestResult {
    let emu = emulator().await;
    let (deployer, runner, middle) = (sa("deployer"), sa("runner"), sa("middle"));
    // Not even an owner may mint tokens without the token creator role.
    set_policy(
        &emu,
        &project_path(),
        &[("roles/owner", &[&member(&deployer)])],
    )
    .await;
    let as_deployer = credentials_as(&emu, &token_for(&emu, &deployer).await).await;
    let mint = |delegates: Vec<String>| {
        as_deployer
            .generate_access_token()
            .set_name(format!("projects/-/serviceAccounts/{runner}"))
            .set_delegates(delegates)
            .set_scope(["https://www.googleapis.com/auth/cloud-platform"])
            .send()
    };
    let e = mint(vec![]).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    assert_eq!(
        message(&e),
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
    );
    assert_eq!(denied(&e), "iam.serviceAccounts.getAccessToken");

    // deployer -> middle -> runner: each hop needs the token creator role on the next account.
    let via_middle = vec![format!("projects/-/serviceAccounts/{middle}")];
    set_policy(
        &emu,
        &sa_path(&middle),
        &[(
            "roles/iam.serviceAccountTokenCreator",
            &[&member(&deployer)],
        )],
    )
    .await;
    let e = mint(via_middle.clone()).await.unwrap_err();
    assert_eq!(denied(&e), "iam.serviceAccounts.getAccessToken");
    set_policy(
        &emu,
        &sa_path(&runner),
        &[("roles/iam.serviceAccountTokenCreator", &[&member(&middle)])],
    )
    .await;
    let token = mint(via_middle).await?.access_token;

    // The token acts as runner, which holds nothing.
    let e = run_as(&emu, &token)
        .await
        .list_services()
        .set_parent(parent())
        .send()
        .await
        .unwrap_err();
    assert_eq!(denied(&e), "run.services.list");
    // A direct grant on runner lets deployer impersonate it without delegates.
    set_policy(
        &emu,
        &sa_path(&runner),
        &[(
            "roles/iam.serviceAccountTokenCreator",
            &[&member(&middle), &member(&deployer)],
        )],
    )
    .await;
    mint(vec![]).await?;
    Ok(())
}

#[tokio::test]
async fn project_iam_has_etags_and_needs_its_own_permissions() -> TestResult {
    let emu = emulator().await;
    let client = projects(&emu).await;
    let resource = format!("projects/{PROJECT}");
    let empty = client
        .get_iam_policy()
        .set_resource(&resource)
        .send()
        .await?;
    assert!(empty.bindings.is_empty() && !empty.etag.is_empty());
    let editor = sa("editor");
    let policy = empty.clone().set_bindings([Binding::new()
        .set_role("roles/editor")
        .set_members([member(&editor)])]);
    let set = client
        .set_iam_policy()
        .set_resource(&resource)
        .set_policy(policy.clone())
        .send()
        .await?;
    assert_ne!(set.etag, empty.etag);
    let e = client
        .set_iam_policy()
        .set_resource(&resource)
        .set_policy(policy)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::Aborted));

    // An editor can do everything but change IAM.
    let token = token_for(&emu, &editor).await;
    create(&run_as(&emu, &token).await, "hello", hello_service()).await?;
    let as_editor = projects_as(&emu, &token).await;
    as_editor
        .get_iam_policy()
        .set_resource(&resource)
        .send()
        .await?;
    let e = as_editor
        .set_iam_policy()
        .set_resource(&resource)
        .set_policy(set)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::PermissionDenied));
    assert_eq!(
        message(&e),
        format!(
            "Permission 'resourcemanager.projects.setIamPolicy' denied on resource '//cloudresourcemanager.googleapis.com/projects/{PROJECT}' (or it may not exist)."
        )
    );
    Ok(())
}

#[tokio::test]
async fn anonymous_callers_keep_full_access_whatever_the_policies() -> TestResult {
    let emu = emulator().await;
    set_policy(
        &emu,
        &project_path(),
        &[("roles/viewer", &["user:someone@example.com"])],
    )
    .await;
    let client = run(&emu).await;
    let mut svc = hello_service();
    if let Some(t) = svc.template.as_mut() {
        t.service_account = sa("runtime");
    }
    let svc = create(&client, "hello", svc).await?;
    client
        .set_iam_policy()
        .set_resource(&svc.name)
        .set_policy(
            Policy::new().set_bindings([Binding::new()
                .set_role("roles/run.invoker")
                .set_members(["allUsers"])]),
        )
        .send()
        .await?;
    let (status, v) = http(
        &emu,
        "POST",
        &format!("{}:getIamPolicy", sa_path(&sa("runtime"))),
        None,
    )
    .await;
    assert_eq!((status, v), (200, serde_json::json!({"etag": "ACAB"})));
    Ok(())
}

/// Domain restricted sharing (`constraints/iam.allowedPolicyMemberDomains`): Cloud Run's
/// `setIamPolicy` on a service or a job refuses a new member outside the allowed domains with
/// Google's recorded answer, and keeps a member the policy already had.
#[tokio::test]
async fn domain_restricted_sharing_refuses_outside_members_on_services_and_jobs() -> TestResult {
    let emu = emulator().await;
    let run = run(&emu).await;
    let jobs = jobs(&emu).await;
    create(&run, "shop", hello_service()).await?;
    create_job(&jobs, "export", hello_job()).await?;
    let service = service_name("shop");
    // Someone granted an outside member before the organization restricted sharing.
    let before = run.get_iam_policy().set_resource(&service).send().await?;
    let legacy = before.clone().set_bindings([Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["user:partner@elsewhere.org"])]);
    let legacy = run
        .set_iam_policy()
        .set_resource(&service)
        .set_policy(legacy)
        .send()
        .await?;
    emu.set_org_policies(serde_json::json!({
        PROJECT: {"iam.allowedPolicyMemberDomains": ["example.com"]}
    }))?;

    let public = legacy.clone().set_bindings([Binding::new()
        .set_role("roles/run.invoker")
        .set_members(["user:partner@elsewhere.org", "allUsers"])]);
    let e = run
        .set_iam_policy()
        .set_resource(&service)
        .set_policy(public)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::FailedPrecondition), "{e}");
    assert_eq!(e.http_status_code(), Some(400));
    assert_eq!(
        message(&e),
        "One or more users named in the policy do not belong to a permitted customer, perhaps due to an organization policy."
    );
    let violations: Vec<(String, String)> = e
        .status()
        .expect("a status")
        .details
        .iter()
        .filter_map(|d| match d {
            StatusDetails::PreconditionFailure(f) => Some(f.violations.clone()),
            _ => None,
        })
        .flatten()
        .map(|v| (v.r#type, v.subject))
        .collect();
    assert_eq!(
        violations,
        [(
            "constraints/iam.allowedPolicyMemberDomains".to_string(),
            format!("orgpolicy:projects/{PROJECT}?configvalue=allUsers")
        )],
        "only the new member is judged"
    );
    assert_eq!(
        run.get_iam_policy()
            .set_resource(&service)
            .send()
            .await?
            .etag,
        legacy.etag,
        "nothing was written"
    );

    // Members of the organization's domains (and its service accounts) are granted.
    let inside = legacy.set_bindings([Binding::new().set_role("roles/run.invoker").set_members([
        "user:partner@elsewhere.org",
        "group:shop@eu.example.com",
        &member(&sa("eventarc")),
    ])]);
    run.set_iam_policy()
        .set_resource(&service)
        .set_policy(inside)
        .send()
        .await?;

    let job = job_name("export");
    let policy = jobs.get_iam_policy().set_resource(&job).send().await?;
    let e = jobs
        .set_iam_policy()
        .set_resource(&job)
        .set_policy(
            policy.set_bindings([Binding::new()
                .set_role("roles/run.invoker")
                .set_members(["user:eve@example.com.evil.io"])]),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::FailedPrecondition), "{e}");
    Ok(())
}

//! Organization policies set through the `config` control: Cloud Run create and patch refuse a
//! violating service with FAILED_PRECONDITION and a `PreconditionFailure` detail, as the official
//! client parses it, and change nothing.

mod common;

use common::*;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_lro::Poller;
use google_cloud_run_v2::model::{BinaryAuthorization, IngressTraffic, VpcAccess, vpc_access};
use serde_json::json;

/// `(type, subject, description)` of each violation of the error's `PreconditionFailure`.
fn violations(e: &google_cloud_gax::error::Error) -> Vec<(String, String, String)> {
    let status = e.status().expect("a service error");
    status
        .details
        .iter()
        .filter_map(|d| match d {
            StatusDetails::PreconditionFailure(f) => Some(&f.violations),
            _ => None,
        })
        .flatten()
        .map(|v| (v.r#type.clone(), v.subject.clone(), v.description.clone()))
        .collect()
}

async fn set_policies(emu: &runwarden_emulator::Emulator, policies: serde_json::Value) {
    let body = json!({ "orgPolicies": policies }).to_string();
    let (s, v) = http(emu, "PUT", "/emulator/v1/config", Some(&body)).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn a_create_violating_the_ingress_constraint_is_refused_and_creates_nothing() -> TestResult {
    let emu = emulator().await;
    set_policies(
        &emu,
        json!({PROJECT: {"run.allowedIngress": ["internal", "internal-and-cloud-load-balancing"]}}),
    )
    .await;
    let client = run(&emu).await;
    let e = refused_create(
        &client,
        "public",
        hello_service().set_ingress(IngressTraffic::All),
    )
    .await;
    assert_eq!(code(&e), Some(Code::FailedPrecondition));
    assert_eq!(e.http_status_code(), Some(400));
    assert_eq!(message(&e), "Precondition check failed.");
    assert_eq!(
        violations(&e),
        [(
            "constraints/run.allowedIngress".to_string(),
            format!("orgpolicy:projects/{PROJECT}"),
            format!(
                "Ingress 'all' is not allowed by the organization policy constraint constraints/run.allowedIngress on projects/{PROJECT}; allowed: internal, internal-and-cloud-load-balancing."
            ),
        )]
    );
    let missing = client
        .get_service()
        .set_name(service_name("public"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some(Code::NotFound));
    let ops = client.list_operations().set_name(parent()).send().await?;
    assert!(ops.operations.is_empty(), "no operation: {ops:?}");

    // Without ingress set, Cloud Run's default (all) violates it too.
    let e = refused_create(&client, "public", hello_service()).await;
    assert_eq!(code(&e), Some(Code::FailedPrecondition));

    let svc = create(
        &client,
        "public",
        hello_service().set_ingress(IngressTraffic::InternalLoadBalancer),
    )
    .await?;
    assert_eq!(svc.ingress, IngressTraffic::InternalLoadBalancer);
    Ok(())
}

#[tokio::test]
async fn a_patch_violating_constraints_gets_one_violation_each_and_changes_nothing() -> TestResult {
    let emu = emulator().await;
    let client = run(&emu).await;
    let direct_vpc = |egress| {
        VpcAccess::new()
            .set_egress(egress)
            .set_network_interfaces([vpc_access::NetworkInterface::new().set_network("default")])
    };
    let mut wanted = hello_service().set_ingress(IngressTraffic::InternalOnly);
    if let Some(t) = wanted.template.as_mut() {
        t.vpc_access = Some(direct_vpc(vpc_access::VpcEgress::AllTraffic));
    }
    let before = create(&client, "svc", wanted.clone()).await?;

    set_policies(
        &emu,
        json!({PROJECT: {
            "run.allowedIngress": ["internal"],
            "constraints/run.allowedVPCEgress": ["private-ranges-only"],
            "run.allowedBinaryAuthorizationPolicies": ["default"],
        }}),
    )
    .await;
    let (_, config) = http(&emu, "GET", "/emulator/v1/config", None).await;
    assert_eq!(
        config["orgPolicies"][PROJECT]["run.allowedVPCEgress"],
        json!(["private-ranges-only"])
    );
    let patches_before = emu.count("run.services.patch");
    let e = client
        .update_service()
        .set_service(
            wanted
                .clone()
                .set_name(service_name("svc"))
                .set_labels([("team", "a")]),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::FailedPrecondition));
    assert_eq!(message(&e), "Precondition check failed.");
    let kinds: Vec<String> = violations(&e).into_iter().map(|v| v.0).collect();
    assert_eq!(
        kinds,
        [
            "constraints/run.allowedVPCEgress",
            "constraints/run.allowedBinaryAuthorizationPolicies"
        ]
    );
    assert!(
        violations(&e)[1]
            .2
            .contains("Binary Authorization policy is not set"),
        "{:?}",
        violations(&e)
    );
    assert_eq!(emu.count("run.services.patch"), patches_before + 1);
    let after = client
        .get_service()
        .set_name(service_name("svc"))
        .send()
        .await?;
    assert_eq!(after.generation, before.generation, "nothing changed");
    assert_eq!(after.etag, before.etag);
    assert!(after.labels.is_empty());

    // A Binary Authorization policy other than the allowed one is named in the description.
    if let Some(t) = wanted.template.as_mut() {
        t.vpc_access = Some(direct_vpc(vpc_access::VpcEgress::PrivateRangesOnly));
    }
    let e = client
        .update_service()
        .set_service(
            wanted
                .clone()
                .set_name(service_name("svc"))
                .set_binary_authorization(
                    BinaryAuthorization::new().set_policy("projects/p/platforms/cloudRun/x"),
                ),
        )
        .send()
        .await
        .unwrap_err();
    let v = violations(&e);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].2.starts_with(
            "Binary Authorization policy 'projects/p/platforms/cloudRun/x' is not allowed"
        ),
        "{v:?}"
    );

    let healed = client
        .update_service()
        .set_service(
            wanted
                .set_name(service_name("svc"))
                .set_binary_authorization(BinaryAuthorization::new().set_use_default(true)),
        )
        .poller()
        .until_done()
        .await?;
    assert_eq!(healed.generation, before.generation + 1);
    Ok(())
}

#[tokio::test]
async fn org_policies_are_checked_set_per_project_and_cleared() -> TestResult {
    let emu = emulator().await;
    for bad in [
        r#"{"orgPolicies": {"p": {"run.allowedRegions": ["x"]}}}"#,
        r#"{"orgPolicies": {"p": {"run.allowedIngress": "internal"}}}"#,
        r#"{"orgPolicies": []}"#,
    ] {
        let (s, v) = http(&emu, "PUT", "/emulator/v1/config", Some(bad)).await;
        assert_eq!(
            (s, v["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{bad}"
        );
    }
    let (_, v) = http(&emu, "GET", "/emulator/v1/config", None).await;
    assert!(v.get("orgPolicies").is_none(), "{v}");

    set_policies(
        &emu,
        json!({"other-project": {"run.allowedIngress": ["internal"]}}),
    )
    .await;
    let client = run(&emu).await;
    create(&client, "a", hello_service()).await?;

    emu.set_org_policies(json!({PROJECT: {"run.allowedIngress": ["internal"]}}))?;
    let refused = refused_create(&client, "b", hello_service()).await;
    assert_eq!(code(&refused), Some(Code::FailedPrecondition));

    set_policies(&emu, json!({})).await;
    create(&client, "b", hello_service()).await?;
    Ok(())
}

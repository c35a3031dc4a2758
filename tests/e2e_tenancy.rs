//! Tenancy end to end, on a real kube-apiserver and the emulator with IAM enforcement: two team
//! namespaces, each acting in Google as its own service account (impersonated through
//! `generateAccessToken`), under `--require-namespace-identity`.
//!
//! Google's IAM (the emulator's) decides what each team may touch: a team naming another team's
//! project is refused with nothing created; a cross-namespace `Adopt` of a live service is
//! refused with the service untouched; a grant given later heals without a spec change; a
//! namespace without an identity reconciles nothing until a cluster admin annotates it.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use runwarden::api::v1alpha1::VpcAccessConnector;
use runwarden::api::{GOOGLE_SERVICE_ACCOUNT_ANNOTATION, PROJECT_ANNOTATION};

const PROJECT_A: &str = "tenant-a-prod";
const PROJECT_B: &str = "tenant-b-prod";

fn account(team: &str, project: &str) -> String {
    format!("{team}@{project}.iam.gserviceaccount.com")
}

async fn namespace(client: &kube::Client, name: &str, annotations: serde_json::Value) {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

fn condition_message(obj: &runwarden::api::v1alpha1::CloudRunService, type_: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn each_namespace_acts_as_its_own_google_identity() {
    let Some(mut h) = Harness::new("each_namespace_acts_as_its_own_google_identity").await else {
        return;
    };
    let suffix = fastrand::u32(..) % 100_000;
    let (ns_a, ns_b, ns_none) = (
        format!("team-a-{suffix}"),
        format!("team-b-{suffix}"),
        format!("team-none-{suffix}"),
    );
    let (sa_a, sa_b) = (account("team-a", PROJECT_A), account("team-b", PROJECT_B));
    let endpoint = h.emu.endpoint();
    // Each team may run services in its own project only.
    let member_a = format!("serviceAccount:{sa_a}");
    let member_b = format!("serviceAccount:{sa_b}");
    grant(
        &endpoint,
        PROJECT_A,
        &[
            ("roles/run.admin", &member_a),
            ("roles/iam.serviceAccountUser", &member_a),
            ("roles/vpcaccess.admin", &member_a),
        ],
    )
    .await;
    grant(
        &endpoint,
        PROJECT_B,
        &[
            ("roles/run.admin", &member_b),
            ("roles/iam.serviceAccountUser", &member_b),
        ],
    )
    .await;
    namespace(
        &h.client,
        &ns_a,
        serde_json::json!({GOOGLE_SERVICE_ACCOUNT_ANNOTATION: sa_a, PROJECT_ANNOTATION: PROJECT_A}),
    )
    .await;
    namespace(
        &h.client,
        &ns_b,
        serde_json::json!({GOOGLE_SERVICE_ACCOUNT_ANNOTATION: sa_b, PROJECT_ANNOTATION: PROJECT_B}),
    )
    .await;
    namespace(
        &h.client,
        &ns_none,
        serde_json::json!({PROJECT_ANNOTATION: PROJECT_A}),
    )
    .await;
    h.config.watch_namespace = None;
    h.config.default_project = None;
    h.config.require_namespace_identity = true;
    h.start_controller().await;

    // Team A deploys into its own project, as its own identity.
    h.apply_in(&ns_a, "api", spec("europe-docker.pkg.dev/p/apps/api:1"))
        .await;
    h.wait_ready_in(&ns_a, "api").await;
    let api = h
        .gcp_service_in(PROJECT_A, "api")
        .await
        .expect("api in project A");
    let tokens = h
        .metrics
        .gcp_request_count("iamcredentials", "generateAccessToken", "OK");
    assert!(tokens >= 1, "the controller impersonated team A");

    // Team B names team A's project: Google refuses team B's identity; nothing is created.
    let mut intruder = spec("europe-docker.pkg.dev/p/apps/intruder:1");
    intruder["projectId"] = PROJECT_A.into();
    h.apply_in(&ns_b, "intruder", intruder).await;
    let refused = h
        .wait_reason_in(&ns_b, "intruder", "ServiceReady", "PermissionDenied")
        .await;
    let message = condition_message(&refused, "ServiceReady");
    assert!(
        message.contains("run.services") && message.contains(PROJECT_A),
        "names the permission and the resource: {message}"
    );
    assert!(message.contains(&sa_b), "names the identity: {message}");
    assert!(h.gcp_service_in(PROJECT_A, "intruder").await.is_none());

    // Team B tries to take team A's live service over: refused, the service untouched.
    grant(
        &endpoint,
        PROJECT_A,
        &[
            ("roles/run.admin", &member_a),
            ("roles/iam.serviceAccountUser", &member_a),
            ("roles/run.viewer", &member_b),
        ],
    )
    .await;
    let mut takeover = spec("europe-docker.pkg.dev/p/apps/evil:1");
    takeover["projectId"] = PROJECT_A.into();
    takeover["adoptionPolicy"] = "Adopt".into();
    h.apply_in(&ns_b, "api", takeover).await;
    let refused = h
        .wait_reason_in(&ns_b, "api", "ServiceReady", "AlreadyOwned")
        .await;
    assert!(
        condition_message(&refused, "ServiceReady").contains(&format!("{ns_a}/api")),
        "names the owner"
    );
    let after = h
        .gcp_service_in(PROJECT_A, "api")
        .await
        .expect("still there");
    assert_eq!(after.generation, api.generation, "untouched");
    assert_eq!(after.labels, api.labels, "still team A's");

    // A grant given later heals the intruder without a spec change.
    grant(
        &endpoint,
        PROJECT_A,
        &[
            ("roles/run.admin", &member_a),
            ("roles/iam.serviceAccountUser", &member_a),
            ("roles/run.admin", &member_b),
            ("roles/iam.serviceAccountUser", &member_b),
        ],
    )
    .await;
    h.wait_ready_in(&ns_b, "intruder").await;
    assert!(h.gcp_service_in(PROJECT_A, "intruder").await.is_some());

    // No identity under --require-namespace-identity: nothing reconciled, nothing in Google...
    h.apply_in(
        &ns_none,
        "quiet",
        spec("europe-docker.pkg.dev/p/apps/quiet:1"),
    )
    .await;
    let waiting = h
        .wait_reason_in(&ns_none, "quiet", "Ready", "IdentityNotConfigured")
        .await;
    assert!(condition_message(&waiting, "Ready").contains(GOOGLE_SERVICE_ACCOUNT_ANNOTATION));
    assert!(h.gcp_service_in(PROJECT_A, "quiet").await.is_none());
    // A connector waits the same way (the resync is 10 minutes: only the namespace's change
    // can wake it within this test).
    let connectors = Api::<VpcAccessConnector>::namespaced(h.client.clone(), &ns_none);
    connectors
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "runwarden.dev/v1alpha1",
                "kind": "VpcAccessConnector",
                "metadata": {"name": "quiet-egress"},
                "spec": {"region": "europe-west1", "network": "default", "ipCidrRange": "10.8.0.0/28"},
            }))
            .expect("connector"),
        )
        .await
        .expect("create connector");
    let connector_reason = || async {
        connectors
            .get("quiet-egress")
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.into_owned())
            .unwrap_or_default()
    };
    wait_until_async("the connector's IdentityNotConfigured", || async {
        connector_reason().await == "IdentityNotConfigured"
    })
    .await;
    // ...until a cluster admin annotates the namespace: reconciled at once, as that identity.
    Api::<Namespace>::all(h.client.clone())
        .patch(
            &ns_none,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {GOOGLE_SERVICE_ACCOUNT_ANNOTATION: sa_a}}
            })),
        )
        .await
        .expect("annotate");
    h.wait_ready_in(&ns_none, "quiet").await;
    assert!(h.gcp_service_in(PROJECT_A, "quiet").await.is_some());
    wait_until_async("the connector to act as team A", || async {
        !["", "IdentityNotConfigured"].contains(&connector_reason().await.as_str())
    })
    .await;

    // Token calls are amortised: one identity's token serves all its objects.
    let tokens = h
        .metrics
        .gcp_request_count("iamcredentials", "generateAccessToken", "OK");
    assert!(tokens <= 4, "{tokens} token calls for two identities");
    h.stop_controller().await;
}

/// Polls `check` every 100 ms for up to 30 s; panics naming `what` then.
async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    check: impl Fn() -> F,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 30 s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

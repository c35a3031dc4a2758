//! Invoker IAM that coexists (`access.mode: Additive`) and domain restricted sharing, on a real
//! API server with the emulator.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Harness, PROJECT, REGION, spec};
use google_cloud_iam_v1::model::Binding;
use runwarden::api::v1alpha1::CloudRunService;

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/hooks@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const FRONTEND: &str = "group:frontend@example.com";
const BATCH: &str = "serviceAccount:batch@runwarden-test.iam.gserviceaccount.com";
const PARTNER: &str = "user:partner@example.com";

/// The member an Eventarc trigger grants itself on the service it pushes to.
fn eventarc() -> String {
    format!("serviceAccount:eventarc-trigger@{PROJECT}.iam.gserviceaccount.com")
}

fn service_path(id: &str) -> String {
    format!("projects/{PROJECT}/locations/{REGION}/services/{id}")
}

fn additive(invokers: &[&str]) -> serde_json::Value {
    let mut s = spec(IMAGE);
    s["access"] = serde_json::json!({"mode": "Additive", "invokers": invokers});
    s
}

fn set(members: &[&str]) -> BTreeSet<String> {
    members.iter().map(|m| m.to_string()).collect()
}

async fn invokers(h: &Harness, id: &str) -> BTreeSet<String> {
    h.run
        .get_iam_policy()
        .set_resource(service_path(id))
        .send()
        .await
        .expect("policy")
        .bindings
        .iter()
        .filter(|b| b.role == "roles/run.invoker")
        .flat_map(|b| b.members.clone())
        .collect()
}

/// Another system adds `member` to `roles/run.invoker`, as Eventarc or a Pub/Sub push
/// subscription does (read-modify-write with the etag).
async fn grant_behind_our_back(h: &Harness, id: &str, member: &str) {
    let policy = h
        .run
        .get_iam_policy()
        .set_resource(service_path(id))
        .send()
        .await
        .expect("policy");
    let mut bindings = policy.bindings.clone();
    match bindings.iter_mut().find(|b| b.role == "roles/run.invoker") {
        Some(b) => b.members.push(member.to_owned()),
        None => bindings.push(
            Binding::new()
                .set_role("roles/run.invoker")
                .set_members([member]),
        ),
    }
    h.run
        .set_iam_policy()
        .set_resource(service_path(id))
        .set_policy(policy.set_bindings(bindings))
        .send()
        .await
        .expect("a grant by someone else");
}

async fn wait_invokers(h: &Harness, id: &str, want: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = invokers(h, id).await;
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "roles/run.invoker is {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn granted(obj: &CloudRunService) -> BTreeSet<String> {
    obj.status
        .as_ref()
        .and_then(|s| s.access.as_ref())
        .map(|a| a.granted.iter().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn additive_invokers_keep_members_granted_by_others() {
    let Some(mut h) = Harness::new("access-additive").await else {
        return;
    };
    h.start_controller().await;
    h.apply("hooks", additive(&[FRONTEND])).await;
    let obj = h.wait_ready("hooks").await;
    assert_eq!(granted(&obj), set(&[FRONTEND]));
    assert_eq!(invokers(&h, "hooks").await, set(&[FRONTEND]));

    // Eventarc grants its trigger's account between two resyncs, and someone grants a partner.
    grant_behind_our_back(&h, "hooks", &eventarc()).await;
    grant_behind_our_back(&h, "hooks", PARTNER).await;
    h.emu.reset_counters();
    h.poke(&h.api(), "hooks", "services.get").await;
    assert_eq!(h.writes(), 0, "{:?}", h.emu.counters());
    assert_eq!(
        (
            h.emu.count("run.services.get"),
            h.emu.count("run.services.getIamPolicy")
        ),
        (1, 1),
        "a no-op resync in Additive mode reads the service and its policy, nothing else: {:?}",
        h.emu.counters()
    );
    assert_eq!(
        invokers(&h, "hooks").await,
        set(&[FRONTEND, &eventarc(), PARTNER])
    );

    // The spec drops frontend, adds batch and lists the partner, whom runwarden did not grant.
    h.apply("hooks", additive(&[BATCH, PARTNER])).await;
    wait_invokers(&h, "hooks", &set(&[BATCH, PARTNER, &eventarc()])).await;
    let obj = h
        .wait_for("hooks", "grants recorded", |o| {
            o.is_some_and(|o| granted(o) == set(&[BATCH]))
        })
        .await
        .unwrap();
    assert_eq!(
        obj.status
            .as_ref()
            .unwrap()
            .access
            .as_ref()
            .unwrap()
            .granted,
        [BATCH],
        "the partner was already there: not ours"
    );
    assert!(
        h.events("hooks")
            .await
            .iter()
            .any(|e| e.starts_with("InvokersUpdated:")
                && e.contains(&format!("granted [{BATCH}], removed [{FRONTEND}]"))),
        "{:?}",
        h.events("hooks").await
    );

    // Unlisting the partner leaves it: runwarden never removes a grant it did not make.
    h.apply("hooks", additive(&[BATCH])).await;
    h.wait_for("hooks", "generation 3 reconciled", |o| {
        o.is_some_and(|o| {
            o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation
        })
    })
    .await;
    h.poke(&h.api(), "hooks", "services.get").await;
    assert_eq!(
        invokers(&h, "hooks").await,
        set(&[BATCH, PARTNER, &eventarc()])
    );

    // Switching to Authoritative takes the whole role: everyone else's members go.
    let mut s = spec(IMAGE);
    s["access"] = serde_json::json!({"invokers": [BATCH]});
    h.apply("hooks", s).await;
    wait_invokers(&h, "hooks", &set(&[BATCH])).await;
    let obj = h
        .wait_for("hooks", "no record in Authoritative mode", |o| {
            o.is_some_and(|o| o.status.as_ref().is_some_and(|s| s.access.is_none()))
        })
        .await
        .unwrap();
    assert!(runwarden::controller::cloudrunservice::is_ready(&obj) == Some(true));
    h.stop_controller().await;
}

/// The grant is in `status.access.granted` before Google has it: a controller stopped between
/// the two (here: every `setIamPolicy` fails until it restarts) grants it after the restart,
/// and removes it later as its own, while a member someone else added meanwhile stays.
#[tokio::test]
async fn a_grant_recorded_before_a_restart_is_neither_lost_nor_taken_for_foreign() {
    let Some(mut h) = Harness::new("access-restart").await else {
        return;
    };
    h.emu.inject_fault(runwarden_emulator::Fault {
        api: "run".into(),
        method: Some("services.setIamPolicy".into()),
        code: "UNAVAILABLE".into(),
        message: Some("The service is currently unavailable.".into()),
        count: Some(1_000_000),
        rate: None,
    });
    h.start_controller().await;
    h.apply("hooks", additive(&[FRONTEND])).await;
    h.wait_for("hooks", "the grant recorded, the write refused", |o| {
        o.is_some_and(|o| {
            granted(o) == set(&[FRONTEND])
                && o.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "AccessReady" && c.reason == "Unavailable")
                })
        })
    })
    .await;
    assert!(
        invokers(&h, "hooks").await.is_empty(),
        "Google never got the grant"
    );
    h.stop_controller().await;
    h.emu.clear_faults();
    grant_behind_our_back(&h, "hooks", &eventarc()).await;

    h.start_controller().await;
    let obj = h.wait_ready("hooks").await;
    assert_eq!(granted(&obj), set(&[FRONTEND]));
    assert_eq!(invokers(&h, "hooks").await, set(&[FRONTEND, &eventarc()]));

    h.apply("hooks", additive(&[])).await;
    wait_invokers(&h, "hooks", &set(&[&eventarc()])).await;
    h.wait_for("hooks", "nothing left of ours", |o| {
        o.is_some_and(|o| {
            granted(o).is_empty()
                && runwarden::controller::cloudrunservice::is_ready(o) == Some(true)
        })
    })
    .await;
    h.stop_controller().await;
}

/// Domain restricted sharing refuses `allUsers`: `AccessReady=False` names the constraint,
/// nothing retries the refused write, and a spec inside the organization heals it.
#[tokio::test]
async fn domain_restricted_sharing_is_named_and_not_retried() {
    let Some(mut h) = Harness::new("access-domains").await else {
        return;
    };
    h.config.min_backoff = Duration::from_millis(50);
    h.config.max_backoff = Duration::from_millis(200);
    h.emu
        .set_org_policies(serde_json::json!({
            PROJECT: {"iam.allowedPolicyMemberDomains": ["example.com"]}
        }))
        .expect("org policies");
    h.start_controller().await;
    let mut s = spec(IMAGE);
    s["access"] = serde_json::json!({"allowUnauthenticated": true, "invokers": [FRONTEND]});
    h.apply("public", s).await;
    let obj = h
        .wait_reason("public", "AccessReady", "AllowedPolicyMemberDomains")
        .await;
    let access = obj
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "AccessReady")
        .unwrap();
    assert_eq!(access.status, "False");
    assert!(
        access.message.starts_with(
            "One or more users named in the policy do not belong to a permitted customer"
        ) && access
            .message
            .contains("constraints/iam.allowedPolicyMemberDomains"),
        "{}",
        access.message
    );
    let ready = obj
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        !runwarden::controller::reasons::PROGRESSING.contains(&ready.reason.as_ref()),
        "Ready reason {} says runwarden heals it by itself",
        ready.reason
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = h.emu.count("run.services.setIamPolicy");
    assert!(refused >= 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        h.emu.count("run.services.setIamPolicy"),
        refused,
        "no retries of a write the organization policy refuses: {:?}",
        h.emu.counters()
    );
    assert!(invokers(&h, "public").await.is_empty());

    let mut s = spec(IMAGE);
    s["access"] = serde_json::json!({"invokers": [FRONTEND]});
    h.apply("public", s).await;
    h.wait_ready("public").await;
    assert_eq!(invokers(&h, "public").await, set(&[FRONTEND]));
    h.stop_controller().await;
}

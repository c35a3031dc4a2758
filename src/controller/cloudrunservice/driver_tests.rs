//! Passes of the CloudRunService pipeline (observe → plan → act → status) against the in-memory
//! fake Google: each test states the Google calls it expects, pass by pass.

use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;

use super::plan::Input;
use super::*;
use crate::api::v1alpha1::{CloudRunServiceSpec, status};
use crate::controller::context::ProjectNumbers;
use crate::gcp::Code;
use crate::gcp::fake::{FakeGcp, OpMode};

const NAME: &str = "projects/p1/locations/europe-west1/services/api";
const KEY: &str = "projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k";

struct World {
    google: FakeGcp,
    numbers: ProjectNumbers,
    obj: CloudRunService,
}

/// What one pass did, as a user would notice it.
#[derive(Debug)]
struct Pass {
    calls: Vec<String>,
    events: Vec<&'static str>,
    outcome: &'static str,
    status_changed: bool,
}

impl World {
    fn new(spec: serde_json::Value) -> Self {
        let mut base = serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "europe-docker.pkg.dev/p1/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111"}],
        });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
            b.extend(extra.clone());
        }
        let spec: CloudRunServiceSpec = serde_json::from_value(base).unwrap();
        let mut obj = CloudRunService::new("api", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.uid = Some("uid-1".into());
        obj.metadata.generation = Some(1);
        Self {
            google: FakeGcp::new(),
            numbers: ProjectNumbers::default(),
            obj,
        }
    }

    /// What the caches would give a pass over the object.
    fn input(&self) -> Input<'_> {
        Input {
            obj: &self.obj,
            project: Some("p1".into()),
            connector: None,
            policy: Cond::ok(POLICY_COMPLIANT, reasons::NO_POLICY, "none"),
            identity: Ok(crate::gcp::identity::Identity::Controller),
            owners: &super::plan::NoOwners,
        }
    }

    /// One pass, its status stored on the object as the controller would.
    async fn pass(&mut self) -> Pass {
        self.google.take_calls();
        let (status, applied) = pass(&self.input(), &self.google.gcp(), &self.numbers).await;
        let outcome = match &applied.outcome {
            crate::controller::Outcome::InSync => "InSync",
            crate::controller::Outcome::Progressing => "Progressing",
            crate::controller::Outcome::Stop(e) => e.metric_label(),
        };
        let status_changed = self.obj.status.as_ref() != Some(&status);
        self.obj.status = Some(status);
        Pass {
            calls: self.google.take_calls(),
            events: applied.notes.iter().map(|n| n.reason).collect(),
            outcome,
            status_changed,
        }
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let c = conditions::find(&self.obj.status.as_ref().unwrap().conditions, type_).unwrap();
        (c.status.to_string(), c.reason.to_string())
    }
}

#[tokio::test]
async fn create_follow_and_a_quiet_resync() {
    let mut w = World::new(serde_json::json!({"access": {"invokers": ["group:fe@example.com"]}}));
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.services.get", "run.services.create"]);
    assert_eq!(
        (p.events.as_slice(), p.outcome),
        (&["Creating"][..], "Progressing")
    );

    // The finished operation carries the service: it is not read again.
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.operations.get",
            "run.services.getIamPolicy",
            "run.services.setIamPolicy"
        ]
    );
    assert_eq!(p.events, ["Created", "InvokersUpdated"]);
    assert_eq!(p.outcome, "InSync");
    assert_eq!(w.condition("Ready"), (status::TRUE.into(), "Ready".into()));
    assert_eq!(w.obj.status.as_ref().unwrap().operation, None);

    let p = w.pass().await;
    assert_eq!(p.calls, ["run.services.get", "run.services.getIamPolicy"]);
    assert!(p.events.is_empty());
    assert!(
        !p.status_changed,
        "a pass that finds nothing new leaves the status as it is"
    );
}

#[tokio::test]
async fn a_restarted_controller_resumes_the_operation_in_status() {
    let mut w = World::new(serde_json::json!({}));
    w.google.set_mode(OpMode::Manual);
    w.pass().await;
    // A new process: nothing in memory, only the object's status.
    w.numbers = ProjectNumbers::default();
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        ["run.operations.get"],
        "waiting reads only the operation"
    );
    assert_eq!(w.condition("ServiceReady").1, "Reconciling");
    w.google.complete_all();
    let p = w.pass().await;
    assert_eq!(p.outcome, "InSync");
    assert_eq!(
        w.google.count("run.services.create"),
        0,
        "counted since the last take"
    );
    assert_eq!(w.condition("Ready").0, status::TRUE);
}

#[tokio::test]
async fn a_concurrent_key_policy_change_is_retried_within_the_pass() {
    let mut w = World::new(serde_json::json!({"encryption": {"kmsKey": KEY}}));
    w.google.put_key(KEY, CryptoKeyVersionState::Enabled);
    w.google
        .fail("kms.cryptoKeys.setIamPolicy", Code::Aborted, 2);
    let p = w.pass().await;
    let count = |m: &str| p.calls.iter().filter(|c| *c == m).count();
    assert_eq!(count("kms.cryptoKeys.setIamPolicy"), 3, "{:?}", p.calls);
    assert_eq!(
        count("kms.cryptoKeys.getIamPolicy"),
        3,
        "each retry reads the etag again"
    );
    assert_eq!(p.events, ["KeyGranted", "Creating"]);
    let agent = w
        .obj
        .status
        .as_ref()
        .unwrap()
        .service_agent
        .clone()
        .unwrap();
    let policy = w.google.policy(KEY).unwrap();
    assert!(
        policy
            .bindings
            .iter()
            .any(|b| b.members.contains(&format!("serviceAccount:{agent}")))
    );
}

#[tokio::test]
async fn a_foreign_service_is_left_alone_until_adopted() {
    let mut w = World::new(serde_json::json!({}));
    let mut other = World::new(serde_json::json!({}));
    other.obj.metadata.uid = Some("someone-else".into());
    other.google = w.google.clone();
    other.pass().await;
    other.pass().await;
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.services.get"]);
    assert_eq!(p.outcome, "AlreadyExists");
    assert_eq!(
        w.condition("Ready"),
        (status::FALSE.into(), "AlreadyExists".into())
    );

    w.obj.spec.adoption_policy = crate::api::v1alpha1::AdoptionPolicy::Adopt;
    let p = w.pass().await;
    assert!(
        p.calls.contains(&"run.services.patch".to_owned()),
        "{:?}",
        p.calls
    );
    assert_eq!(p.events, ["Adopted"]);
    let owner = w.google.service(NAME).unwrap().labels[crate::api::OWNER_LABEL].clone();
    assert_eq!(owner, "uid-1");
}

#[tokio::test]
async fn google_errors_become_the_reasons_users_see() {
    let cases = [
        (
            "run.services.get",
            Code::PermissionDenied,
            "ServiceReady",
            "PermissionDenied",
        ),
        (
            "run.services.create",
            Code::ResourceExhausted,
            "ServiceReady",
            "QuotaExceeded",
        ),
        (
            "run.services.get",
            Code::Unavailable,
            "ServiceReady",
            "Unavailable",
        ),
    ];
    for (method, code, type_, reason) in cases {
        let mut w = World::new(serde_json::json!({}));
        w.google.fail(method, code, 1);
        let p = w.pass().await;
        assert_eq!(p.outcome, reason, "{method} {code:?}");
        assert_eq!(w.condition(type_), (status::FALSE.into(), reason.into()));
        assert_eq!(
            w.condition("Ready").1,
            reason,
            "Ready takes the first failing reason"
        );
        // The fault was one-off: the next pass heals without a spec change.
        w.pass().await;
        assert!(
            w.google.service(NAME).is_some(),
            "{method}: created on retry"
        );
    }
}

/// Changes the service in Google behind runwarden's back, as the console or a CI job would.
fn console(google: &FakeGcp, edit: impl FnOnce(&mut google_cloud_run_v2::model::Service)) {
    let mut svc = google.service(NAME).expect("the service exists");
    edit(&mut svc);
    google.put_service(svc);
}

const ROLLED: &str = "europe-docker.pkg.dev/p1/apps/api@sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[tokio::test]
async fn observe_reports_drift_and_never_writes() {
    // Someone else's service, as it runs today.
    let mut owner =
        World::new(serde_json::json!({"access": {"invokers": ["group:fe@example.com"]}}));
    owner.obj.metadata.uid = Some("another-tool".into());
    owner.pass().await;
    owner.pass().await;

    let mut w = World::new(serde_json::json!({
        "managementPolicy": "Observe",
        "access": {"invokers": ["group:fe@example.com"]},
    }));
    w.google = owner.google.clone();
    let writes = |p: &Pass| {
        p.calls
            .iter()
            .filter(|c| !c.ends_with(".get") && !c.ends_with("getIamPolicy"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let p = w.pass().await;
    assert!(writes(&p).is_empty(), "{:?}", p.calls);
    assert_eq!(
        w.condition("Ready").0,
        status::TRUE,
        "Google matches the spec"
    );

    console(&w.google, |s| {
        s.template.as_mut().unwrap().containers[0].image = ROLLED.into();
        s.ingress = google_cloud_run_v2::model::IngressTraffic::All;
    });
    let p = w.pass().await;
    assert!(writes(&p).is_empty(), "{:?}", p.calls);
    assert_eq!(
        w.condition("Ready"),
        (status::FALSE.into(), "Drifted".into())
    );
    assert_eq!(
        w.obj.status.as_ref().unwrap().drift,
        ["ingress", "template.containers[0].image"]
    );
    assert_eq!(
        w.google.service(NAME).unwrap().template.unwrap().containers[0].image,
        ROLLED
    );
}

#[tokio::test]
async fn ignored_image_drift_is_kept_while_other_drift_is_corrected() {
    let mut w = World::new(serde_json::json!({"ignoreDrift": ["Image"]}));
    w.pass().await;
    w.pass().await;
    assert_eq!(w.condition("Ready").0, status::TRUE);
    console(&w.google, |s| {
        s.template.as_mut().unwrap().containers[0].image = ROLLED.into();
        s.ingress = google_cloud_run_v2::model::IngressTraffic::All;
    });
    let p = w.pass().await;
    assert!(
        p.calls.contains(&"run.services.patch".to_owned()),
        "{:?}",
        p.calls
    );
    assert_eq!(p.events, ["DriftCorrected", "Updated"]);
    assert_eq!(w.obj.status.as_ref().unwrap().drift, ["ingress"]);
    let svc = w.google.service(NAME).unwrap();
    assert_eq!(
        svc.ingress,
        google_cloud_run_v2::model::IngressTraffic::InternalOnly
    );
    assert_eq!(
        svc.template.unwrap().containers[0].image,
        ROLLED,
        "the rolled image stays"
    );
    w.pass().await;
    let p = w.pass().await;
    assert_eq!(p.outcome, "InSync");
    assert!(w.obj.status.as_ref().unwrap().drift.is_empty());
}

/// Whether a pass of `w` counted an update towards the cap.
async fn counted_update(w: &World) -> bool {
    pass_with(&w.input(), &w.google.gcp(), &w.numbers, 0)
        .await
        .2
}

#[tokio::test]
async fn only_an_update_google_accepted_counts_towards_the_cap() {
    let mut w = World::new(serde_json::json!({}));
    w.pass().await;
    w.pass().await;
    w.obj.spec.containers[0].image =
        "europe-docker.pkg.dev/p1/apps/api@sha256:2222222222222222222222222222222222222222222222222222222222222222".into();
    w.obj.metadata.generation = Some(2);
    w.google.fail("run.services.patch", Code::Unavailable, 1);
    assert!(!counted_update(&w).await, "a refused patch changed nothing");
    assert!(counted_update(&w).await, "an accepted one counts");
}

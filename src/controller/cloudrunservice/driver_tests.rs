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
    assert_eq!(
        p.calls,
        ["run.services.create"],
        "an object that never named a service creates it without reading first"
    );
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
    assert_eq!(
        p.calls,
        ["run.services.create", "run.services.get"],
        "the create Google refuses as existing changes nothing; the pass reads and refuses to take the service"
    );
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
            "run.services.create",
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
            "run.services.create",
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

#[tokio::test]
async fn a_service_created_before_its_status_was_written_is_found_and_taken_as_ours() {
    // A controller stopped between Google's answer to the create and the status write: the
    // service is there with this object's owner label, the object's status says nothing.
    let mut w = World::new(serde_json::json!({"access": {"invokers": ["group:fe@example.com"]}}));
    w.pass().await;
    w.pass().await;
    assert_eq!(w.condition("Ready").0, status::TRUE);
    w.obj.status = None;
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "run.services.create",
            "run.services.get",
            "run.services.getIamPolicy"
        ],
        "refused as existing, read, found ours and in sync: no second service, no write"
    );
    assert_eq!(p.outcome, "InSync");
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert_eq!(w.condition("Ready"), (status::TRUE.into(), "Ready".into()));
    assert_eq!(
        w.obj.status.as_ref().unwrap().resource_name.as_deref(),
        Some(NAME)
    );
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.services.get", "run.services.getIamPolicy"]);
}

#[tokio::test]
async fn observe_reads_before_it_reports_a_service_missing() {
    let mut w = World::new(serde_json::json!({"managementPolicy": "Observe"}));
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.services.get"], "Observe presumes nothing");
    assert_eq!(w.condition("ServiceReady").1, "Drifted");
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
    pass_with(
        &w.input(),
        &Ok(w.google.gcp()),
        &w.numbers,
        0,
        &crate::controller::access::Unrecorded,
    )
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

/// Where a cleanup pass can fail, for [`every_failed_cleanup_step_says_why_in_the_status_it_writes`].
#[derive(Clone, Copy, Debug)]
enum CleanupFault {
    /// The clients of the namespace's identity cannot be made (the controller may no longer
    /// impersonate it): the pass fails before any Google call.
    Clients,
    /// The namespace has no usable identity.
    Identity,
    /// One Google call is refused.
    Call(&'static str, Code),
    /// The delete call is accepted, its operation read is refused.
    OperationRead,
    /// The delete call is accepted, its operation fails.
    DeleteOperation,
}

impl World {
    /// One cleanup pass, its status stored on the object when the controller would write it;
    /// `clients` is what making the identity's clients gave.
    async fn cleanup(
        &mut self,
        clients: crate::gcp::GcpResult<crate::gcp::Gcp>,
        identity: Result<crate::gcp::identity::Identity, String>,
    ) -> (bool, crate::controller::CleanupOutcome) {
        let mut input = self.input();
        input.identity = identity;
        let (status, cleaned, write) = cleanup_pass(&input, &clients, &self.numbers).await;
        if write {
            self.obj.status = Some(status);
        }
        (write, cleaned.outcome)
    }

    fn condition_message(&self, type_: &str) -> String {
        conditions::find(&self.obj.status.as_ref().unwrap().conditions, type_)
            .unwrap()
            .message
            .to_string()
    }
}

/// Issue 23: a deletion that cannot go on says why on its first failed pass, whatever step
/// failed: `Ready` and `ServiceReady` False with the step's reason and Google's message (and
/// how out of the finalizer), in a status the pass writes; the service stays in Google.
#[tokio::test]
async fn every_failed_cleanup_step_says_why_in_the_status_it_writes() {
    use crate::controller::CleanupOutcome;
    use crate::gcp::identity::Identity;
    let cases = [
        (
            CleanupFault::Clients,
            "PermissionDenied",
            "generateAccessToken",
        ),
        (
            CleanupFault::Identity,
            "IdentityNotConfigured",
            "no runwarden.dev/google-service-account",
        ),
        (
            CleanupFault::Call("run.services.get", Code::PermissionDenied),
            "PermissionDenied",
            "injected PERMISSION_DENIED on run.services.get",
        ),
        (
            CleanupFault::Call("run.services.delete", Code::PermissionDenied),
            "PermissionDenied",
            "injected PERMISSION_DENIED on run.services.delete",
        ),
        (
            CleanupFault::Call("run.services.get", Code::Unavailable),
            "Unavailable",
            "injected UNAVAILABLE on run.services.get",
        ),
        (
            CleanupFault::OperationRead,
            "Unavailable",
            "injected UNAVAILABLE on run.operations.get",
        ),
        (
            CleanupFault::DeleteOperation,
            "DeleteFailed",
            "the service is protected",
        ),
    ];
    for (fault, reason, google_said) in cases {
        let mut w = World::new(serde_json::json!({}));
        w.pass().await;
        w.pass().await;
        assert_eq!(
            w.condition("Ready").0,
            status::TRUE,
            "{fault:?}: Ready first"
        );
        let ok = || Ok(Identity::Controller);
        let gcp = w.google.gcp();
        let (write, outcome) = match fault {
            CleanupFault::Clients => {
                let refused = crate::gcp::GcpError::new(
                    "iamcredentials",
                    "generateAccessToken",
                    Code::PermissionDenied,
                    "iamcredentials.generateAccessToken: Permission 'iam.serviceAccounts.getAccessToken' denied",
                );
                w.cleanup(Err(refused), ok()).await
            }
            CleanupFault::Identity => {
                let none = Err("namespace team has no runwarden.dev/google-service-account".into());
                w.cleanup(Ok(gcp), none).await
            }
            CleanupFault::Call(method, code) => {
                w.google.fail(method, code, 1);
                w.cleanup(Ok(gcp), ok()).await
            }
            CleanupFault::OperationRead | CleanupFault::DeleteOperation => {
                w.google.set_mode(OpMode::Manual);
                if matches!(fault, CleanupFault::DeleteOperation) {
                    w.google
                        .fail_next_operation(Code::FailedPrecondition, "the service is protected");
                }
                let (write, waiting) = w.cleanup(Ok(gcp.clone()), ok()).await;
                assert!(write && matches!(waiting, CleanupOutcome::Wait { .. }));
                assert_eq!(w.condition("ServiceReady").1, "Deleting");
                if matches!(fault, CleanupFault::OperationRead) {
                    w.google.fail("run.operations.get", Code::Unavailable, 1);
                } else {
                    w.google.complete_all();
                }
                w.cleanup(Ok(gcp), ok()).await
            }
        };
        assert!(write, "{fault:?}: the failed pass writes its status");
        assert!(
            matches!(outcome, CleanupOutcome::Stop(_)),
            "{fault:?}: the finalizer stays, retried"
        );
        assert_eq!(
            w.condition("Ready"),
            (status::FALSE.into(), reason.into()),
            "{fault:?}"
        );
        assert_eq!(
            w.condition("ServiceReady"),
            (status::FALSE.into(), reason.into()),
            "{fault:?}"
        );
        let message = w.condition_message("ServiceReady");
        assert!(message.contains(google_said), "{fault:?}: {message}");
        assert!(
            message.contains("finalizer keeps this object") && message.contains("Abandon"),
            "{fault:?}: says how out: {message}"
        );
        assert!(
            w.google.service(NAME).is_some(),
            "{fault:?}: the service is kept"
        );
    }
}

/// Issue 23: whatever a pass over a live object fails at, its status does not say Ready.
#[tokio::test]
async fn a_failed_pass_never_leaves_ready_true() {
    let failing = [
        ("run.services.get", Code::PermissionDenied),
        ("run.services.getIamPolicy", Code::PermissionDenied),
        ("run.services.setIamPolicy", Code::Unavailable),
        ("run.services.patch", Code::Unavailable),
    ];
    for (method, code) in failing {
        let mut w =
            World::new(serde_json::json!({"access": {"invokers": ["group:fe@example.com"]}}));
        w.pass().await;
        w.pass().await;
        assert_eq!(w.condition("Ready").0, status::TRUE);
        // A spec change, so that the next pass patches and sets the invokers again.
        w.obj.spec.access.invokers = vec!["group:be@example.com".into()];
        w.obj.spec.containers[0].image = "europe-docker.pkg.dev/p1/apps/api:2".into();
        w.obj.metadata.generation = Some(2);
        w.google.fail(method, code, 1);
        let p = w.pass().await;
        assert!(
            p.calls.iter().any(|c| c == method),
            "{method}: the fault was met: {:?}",
            p.calls
        );
        assert_ne!(p.outcome, "InSync", "{method}");
        assert_eq!(w.condition("Ready").0, status::FALSE, "{method}: {p:?}");
    }

    // The clients cannot be made: nothing is called, and the status says why.
    let mut w = World::new(serde_json::json!({}));
    w.pass().await;
    w.pass().await;
    assert_eq!(w.condition("Ready").0, status::TRUE);
    let refused = crate::gcp::GcpError::new(
        "iamcredentials",
        "generateAccessToken",
        Code::PermissionDenied,
        "Permission 'iam.serviceAccounts.getAccessToken' denied",
    );
    let (status, applied, _) = pass_with(
        &w.input(),
        &Err(refused),
        &w.numbers,
        0,
        &crate::controller::access::Unrecorded,
    )
    .await;
    assert!(matches!(
        applied.outcome,
        crate::controller::Outcome::Stop(_)
    ));
    w.obj.status = Some(status);
    assert_eq!(
        w.condition("Ready"),
        (status::FALSE.into(), "PermissionDenied".into())
    );
    assert!(
        w.condition_message("ServiceReady")
            .contains("getAccessToken")
    );
    assert!(w.google.take_calls().is_empty(), "no Google call");
}

fn from_source(generation: i64) -> serde_json::Value {
    serde_json::json!({
        "containers": [{"image": "hello"}],
        "build": {
            "source": {"bucket": "src-p1", "object": "hello.tar.gz", "generation": generation},
            "functionTarget": "helloHttp",
            "serviceAccount": "builder@p1.iam.gserviceaccount.com",
        },
    })
}

/// The container Google runs.
fn deployed(w: &World) -> google_cloud_run_v2::model::Container {
    let svc = w.google.service(NAME).expect("service");
    svc.template.unwrap().containers[0].clone()
}

#[tokio::test]
async fn a_service_from_source_builds_once_deploys_the_digest_and_rebuilds_only_for_a_new_source() {
    let mut w = World::new(from_source(1));
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        ["run.builds.submit"],
        "nothing deployed before a build"
    );
    assert_eq!(
        (p.events.as_slice(), p.outcome),
        (&["BuildSubmitted"][..], "Progressing")
    );
    assert_eq!(
        w.condition(SERVICE_READY),
        ("Unknown".into(), "Building".into())
    );
    let recorded = w.obj.status.as_ref().unwrap().build.clone().unwrap();
    assert!(recorded.operation.is_some(), "recorded with the submit");
    assert_eq!(recorded.source_generation, Some(1));

    // The build is done: the digest is deployed with the base image Google answered.
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "cloudbuild.operations.get",
            "run.services.get",
            "run.services.create"
        ]
    );
    assert_eq!(p.events, ["Built", "Creating"]);
    let build = w.obj.status.as_ref().unwrap().build.clone().unwrap();
    assert_eq!(build.state, crate::api::v1alpha1::BuildState::Succeeded);
    let image = build.image.clone().unwrap();
    assert!(
        image.starts_with("europe-west1-docker.pkg.dev/p1/cloud-run-source-deploy/api@sha256:"),
        "{image}"
    );
    let c = deployed(&w);
    assert_eq!(c.image, image);
    assert_eq!(c.base_image_uri, crate::gcp::fake::FAKE_BASE_IMAGE);
    let svc = w.google.service(NAME).unwrap();
    let bc = svc.build_config.expect("buildConfig as metadata");
    assert_eq!(bc.source_location, "gs://src-p1/hello.tar.gz#1");
    assert_eq!(bc.function_target, "helloHttp");
    assert!(bc.enable_automatic_updates, "on by default");

    while w.pass().await.outcome != "InSync" {}
    // A no-op resync: no build, no write.
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.services.get", "run.services.getIamPolicy"]);
    assert!(!p.status_changed);

    // A new source generation builds once and rolls out.
    w.obj.spec = serde_json::from_value(serde_json::json!({
        "region": "europe-west1",
        "containers": [{"image": "hello"}],
        "build": from_source(2)["build"],
    }))
    .unwrap();
    w.obj.metadata.generation = Some(2);
    let p = w.pass().await;
    assert_eq!(p.calls, ["run.builds.submit"]);
    let p = w.pass().await;
    assert_eq!(
        p.calls,
        [
            "cloudbuild.operations.get",
            "run.services.get",
            "run.services.getIamPolicy",
            "run.services.patch"
        ]
    );
    let second = w.obj.status.as_ref().unwrap().build.clone().unwrap();
    assert_ne!(second.image, Some(image), "a new digest");
    assert_eq!(deployed(&w).image, second.image.unwrap());
    while w.pass().await.outcome != "InSync" {}
    let p = w.pass().await;
    assert!(
        !p.calls.iter().any(|c| c.contains("build")),
        "{:?}",
        p.calls
    );
}

#[tokio::test]
async fn a_failed_build_is_build_failed_with_the_log_and_the_old_revision_keeps_serving() {
    let mut w = World::new(from_source(1));
    while w.pass().await.outcome != "InSync" {}
    let serving = deployed(&w).image;
    w.google
        .fail_next_build("Build failed; check build logs for details");
    w.obj.spec.build.as_mut().unwrap().source.generation = 2;
    w.obj.metadata.generation = Some(2);
    assert_eq!(w.pass().await.calls, ["run.builds.submit"]);
    let p = w.pass().await;
    assert_eq!(p.calls, ["cloudbuild.operations.get"], "no deploy");
    assert_eq!(p.events, ["BuildFailed"]);
    assert_eq!(p.outcome, "BuildFailed");
    assert_eq!(
        w.condition(SERVICE_READY),
        ("False".into(), "BuildFailed".into())
    );
    let c = conditions::find(&w.obj.status.as_ref().unwrap().conditions, SERVICE_READY).unwrap();
    assert!(c.message.contains("check build logs"), "{}", c.message);
    assert!(c.message.contains("logs: https://"), "{}", c.message);
    assert_eq!(
        deployed(&w).image,
        serving,
        "the old revision keeps serving"
    );
    // Waits for a spec change: no build, no read of Google, no write.
    let p = w.pass().await;
    assert!(p.calls.is_empty(), "{:?}", p.calls);
    assert!(!p.status_changed);
}

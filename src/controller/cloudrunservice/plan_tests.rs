//! Table tests of the pure plan: what a pass reads, writes and reports, for each situation,
//! without Google or Kubernetes.

use google_cloud_iam_v1::model::{Binding, Policy};
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion};
use google_cloud_longrunning::model::Operation;
use google_cloud_run_v2::model::{Condition, condition};

use super::*;
use crate::api::v1alpha1::{CloudRunServiceSpec, CloudRunServiceStatus, status};
use crate::controller::cloudrunservice::{ENCRYPTION_READY, NETWORK_READY};
use crate::gcp::Code;

const PROJECT: &str = "p1";
const NAME: &str = "projects/p1/locations/europe-west1/services/api";
const UID: &str = "uid-1";
const KEY: &str = "projects/p1/locations/europe-west1/keyRings/r/cryptoKeys/k";
const AGENT: &str = "serviceAccount:service-42@serverless-robot-prod.iam.gserviceaccount.com";

fn object(spec: serde_json::Value) -> CloudRunService {
    let mut spec_json = serde_json::json!({
        "region": "europe-west1",
        "containers": [{"image": "europe-docker.pkg.dev/p1/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111"}],
    });
    if let (Some(base), Some(extra)) = (spec_json.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    let spec: CloudRunServiceSpec = serde_json::from_value(spec_json).unwrap();
    let mut obj = CloudRunService::new("api", spec);
    obj.metadata.namespace = Some("team".into());
    obj.metadata.uid = Some(UID.into());
    obj.metadata.generation = Some(1);
    obj
}

fn input(obj: &CloudRunService) -> Input<'_> {
    Input {
        obj,
        project: Some(PROJECT.into()),
        connector: None,
        policy: Cond::ok(super::super::POLICY_COMPLIANT, NO_POLICY, "none"),
        identity: Ok(Identity::Controller),
        owners: &NoOwners,
    }
}

/// Google's answers: what each read returns.
#[derive(Clone, Default)]
struct Google {
    service: Option<Service>,
    service_error: Option<Code>,
    invokers: Policy,
    invoker_error: Option<Code>,
    operation: Option<Operation>,
    key: Option<CryptoKey>,
    key_policy: Policy,
    /// The service `status.resourceName` names, when the project resolves elsewhere.
    pinned: Option<Service>,
}

fn gcp_error(code: Code) -> GcpError {
    GcpError::new("run", "x", code, format!("{code:?} from Google"))
}

/// Runs the plan against `google` as the controller would (each read made when asked), and
/// returns the plan with the reads it made, in order.
fn run(input: &Input, google: &Google) -> (Plan, Vec<Read>) {
    let mut obs = Observed::default();
    let mut reads = vec![];
    loop {
        match plan(input, &obs) {
            Ok(p) => return (p, reads),
            Err(read) => {
                assert!(!reads.contains(&read), "{read:?} asked twice");
                match &read {
                    Read::Service(_) => {
                        obs.service = Some(match google.service_error {
                            Some(code) => Err(gcp_error(code)),
                            None => Ok(google.service.clone()),
                        });
                    }
                    Read::InvokerPolicy(_) => {
                        obs.invoker_policy = Some(match google.invoker_error {
                            Some(code) => Err(gcp_error(code)),
                            None => Ok(google.invokers.clone()),
                        });
                    }
                    Read::Operation(_) => {
                        obs.operation = Some(
                            google
                                .operation
                                .clone()
                                .ok_or_else(|| gcp_error(Code::NotFound)),
                        );
                    }
                    Read::ProjectNumber(_) => obs.project_number = Some(Ok("42".into())),
                    Read::Key(_) => obs.key = Some(Ok(google.key.clone())),
                    Read::KeyPolicy(_) => obs.key_policy = Some(Ok(google.key_policy.clone())),
                    Read::Connector(_) => obs.connector = Some(Ok(None)),
                    Read::Pinned(_) => obs.pinned = Some(Ok(google.pinned.clone())),
                    Read::BuildOperation(_) => {
                        obs.build_operation = Some(Err(gcp_error(Code::NotFound)));
                    }
                }
                reads.push(read);
            }
        }
    }
}

/// The service Google has after deploying exactly what `obj` asks for.
fn deployed(obj: &CloudRunService) -> Service {
    render::desired_service(
        obj,
        &Resolved {
            project: PROJECT.into(),
            connector: None,
            built: None,
        },
    )
    .set_generation(1)
    .set_observed_generation(1)
    .set_uri("https://api-xyz.a.run.app")
    .set_latest_ready_revision(format!("{NAME}/revisions/api-00001-abc"))
    .set_terminal_condition(Condition::new().set_state(condition::State::ConditionSucceeded))
}

fn invokers(members: &[&str]) -> Policy {
    Policy::new().set_bindings(if members.is_empty() {
        vec![]
    } else {
        vec![
            Binding::new()
                .set_role(INVOKER_ROLE)
                .set_members(members.iter().copied()),
        ]
    })
}

fn cond<'a>(p: &'a Plan, type_: &str) -> &'a Cond {
    p.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {:?}", p.conditions))
}

fn stop_reason(p: &Plan) -> (&'static str, bool) {
    match &p.outcome {
        Outcome::Stop(e) => (e.metric_label(), e.is_transient()),
        other => panic!("not stopped: {other:?}"),
    }
}

#[test]
fn a_new_service_is_created_after_one_read() {
    let obj = object(serde_json::json!({}));
    let (p, reads) = run(&input(&obj), &Google::default());
    assert_eq!(reads, [Read::Service(NAME.into())]);
    let [
        Change::Create {
            parent,
            id,
            service,
        },
    ] = p.changes.as_slice()
    else {
        panic!("{:?}", p.changes)
    };
    assert_eq!(
        (parent.as_str(), id.as_str()),
        ("projects/p1/locations/europe-west1", "api")
    );
    assert!(service.name.is_empty(), "create sends no name");
    assert_eq!(
        service.labels.get(OWNER_LABEL).map(String::as_str),
        Some(UID)
    );
    assert!(matches!(p.outcome, Outcome::Progressing));
    assert_eq!(cond(&p, SERVICE_READY).reason, RECONCILING);
    assert_eq!(cond(&p, ACCESS_READY).reason, PENDING);
    assert_eq!(p.fields.resource_name.as_deref(), Some(NAME));
}

#[test]
fn an_unchanged_service_is_in_sync_after_two_reads_and_no_write() {
    let obj = object(serde_json::json!({"access": {"invokers": ["group:fe@example.com"]}}));
    let google = Google {
        service: Some(deployed(&obj)),
        invokers: invokers(&["group:fe@example.com"]),
        ..Default::default()
    };
    let (p, reads) = run(&input(&obj), &google);
    assert_eq!(
        reads,
        [Read::Service(NAME.into()), Read::InvokerPolicy(NAME.into())]
    );
    assert!(p.in_sync(), "{:?} {:?}", p.changes, p.outcome);
    for c in &p.conditions {
        assert_eq!(c.status, status::TRUE, "{c:?}");
    }
    assert_eq!(p.fields.uri.as_deref(), Some("https://api-xyz.a.run.app"));
    assert_eq!(
        p.fields.latest_ready_revision.as_deref(),
        Some("api-00001-abc")
    );
}

#[test]
fn drift_is_patched_and_invokers_set_in_one_pass() {
    let obj = object(
        serde_json::json!({"ingress": "Internal", "access": {"invokers": ["group:fe@example.com"]}}),
    );
    let mut console = deployed(&obj);
    console.ingress = google_cloud_run_v2::model::IngressTraffic::All;
    let google = Google {
        service: Some(console),
        invokers: invokers(&["user:intruder@example.com"]),
        ..Default::default()
    };
    let (p, _) = run(&input(&obj), &google);
    let [
        Change::Update { changed, adopt, .. },
        Change::SetInvokers(crate::controller::access::SetMembers { add, remove, .. }),
    ] = p.changes.as_slice()
    else {
        panic!("{:?}", p.changes)
    };
    assert_eq!(changed, &["ingress"]);
    assert!(!adopt);
    assert_eq!(add, &["group:fe@example.com"]);
    assert_eq!(remove, &["user:intruder@example.com"]);
    assert!(matches!(p.outcome, Outcome::Progressing));
}

#[test]
fn a_foreign_service_is_refused_unless_adopted() {
    let obj = object(serde_json::json!({}));
    let mut foreign = deployed(&obj);
    foreign.labels.remove(OWNER_LABEL);
    let google = Google {
        service: Some(foreign),
        ..Default::default()
    };
    let (p, reads) = run(&input(&obj), &google);
    assert!(p.changes.is_empty(), "nothing written: {:?}", p.changes);
    assert_eq!(stop_reason(&p), (ALREADY_EXISTS, false));
    assert_eq!(reads.len(), 1, "not even the IAM policy is read: {reads:?}");

    let adopting = object(serde_json::json!({"adoptionPolicy": "Adopt"}));
    let (p, _) = run(&input(&adopting), &google);
    assert!(matches!(
        p.changes.first(),
        Some(Change::Update { adopt: true, changed, .. }) if changed == &["labels"]
    ));
}

#[test]
fn an_operation_in_flight_is_all_a_pass_reads() {
    let mut obj = object(serde_json::json!({}));
    obj.status = Some(CloudRunServiceStatus {
        operation: Some("projects/p1/locations/europe-west1/operations/op-1".into()),
        ..Default::default()
    });
    let google = Google {
        operation: Some(Operation::new().set_done(false)),
        ..Default::default()
    };
    let (p, reads) = run(&input(&obj), &google);
    assert!(matches!(reads.as_slice(), [Read::Operation(_)]));
    assert!(p.changes.is_empty());
    assert!(matches!(p.outcome, Outcome::Progressing));
    assert!(p.fields.operation.is_some(), "still followed");
    // Nor are the dependencies (the key, its policy) read again at each look.
    let mut cmek = object(serde_json::json!({"encryption": {"kmsKey": KEY}}));
    cmek.status = obj.status.clone();
    let (_, reads) = run(&input(&cmek), &google);
    assert!(
        matches!(reads.as_slice(), [Read::Operation(_)]),
        "{reads:?}"
    );

    // Done: cleared, and the created service is announced.
    let google = Google {
        operation: Some(Operation::new().set_done(true)),
        service: Some(deployed(&obj)),
        ..Default::default()
    };
    let (p, _) = run(&input(&obj), &google);
    assert_eq!(p.fields.operation, None);
    assert_eq!(p.notes.first().map(|n| n.reason), Some("Created"));
    // Forgotten by Google (expired): carry on, nothing announced.
    let (p, _) = run(
        &input(&obj),
        &Google {
            operation: None,
            ..google
        },
    );
    assert_eq!(p.fields.operation, None);
    assert!(p.notes.is_empty());
}

#[test]
fn a_rollout_that_failed_on_the_key_is_sent_again_once_the_key_is_usable() {
    let obj = object(serde_json::json!({"encryption": {"kmsKey": KEY}}));
    let failed = deployed(&obj).set_terminal_condition(
        Condition::new()
            .set_state(condition::State::ConditionFailed)
            .set_reason(condition::CommonReason::EncryptionKeyCheckFailed),
    );
    let enabled = CryptoKey::new().set_name(KEY).set_primary(
        CryptoKeyVersion::new()
            .set_name(format!("{KEY}/cryptoKeyVersions/1"))
            .set_state(CryptoKeyVersionState::Enabled),
    );
    let google = Google {
        service: Some(failed),
        key: Some(enabled),
        key_policy: Policy::new().set_bindings([Binding::new()
            .set_role(encryption::KMS_ROLE)
            .set_members([AGENT])]),
        ..Default::default()
    };
    let (p, reads) = run(&input(&obj), &google);
    assert_eq!(
        reads[..3],
        [
            Read::ProjectNumber(PROJECT.into()),
            Read::Key(KEY.into()),
            Read::KeyPolicy(KEY.into())
        ],
        "the key is checked before the service is read"
    );
    assert!(matches!(
        p.changes.first(),
        Some(Change::Update { changed, .. }) if changed[0].starts_with("template (again")
    ));
    assert_eq!(cond(&p, ENCRYPTION_READY).reason, "KeyUsable");
    assert_eq!(
        p.fields.service_agent.as_deref(),
        AGENT.strip_prefix("serviceAccount:")
    );
}

#[test]
fn a_disabled_key_stops_the_pass_before_the_service_is_read_and_an_ungranted_agent_is_granted() {
    let obj = object(serde_json::json!({"encryption": {"kmsKey": KEY}}));
    let key = |state| {
        CryptoKey::new().set_name(KEY).set_primary(
            CryptoKeyVersion::new()
                .set_name(format!("{KEY}/cryptoKeyVersions/1"))
                .set_state(state),
        )
    };
    let google = Google {
        key: Some(key(CryptoKeyVersionState::Disabled)),
        ..Default::default()
    };
    let (p, reads) = run(&input(&obj), &google);
    assert!(
        !reads.iter().any(|r| matches!(r, Read::Service(_))),
        "{reads:?}"
    );
    assert_eq!(stop_reason(&p), (KEY_DISABLED, true));
    assert!(p.changes.is_empty());

    let google = Google {
        key: Some(key(CryptoKeyVersionState::Enabled)),
        ..Default::default()
    };
    let (p, _) = run(&input(&obj), &google);
    assert!(matches!(
        p.changes.as_slice(),
        [Change::GrantKey { member, .. }, Change::Create { .. }] if member == AGENT
    ));
}

#[test]
fn a_missing_connector_waits_without_calling_google() {
    let obj = object(serde_json::json!({"egress": {"connectorRef": {"name": "egress"}}}));
    let (p, reads) = run(&input(&obj), &Google::default());
    assert!(reads.is_empty(), "{reads:?}");
    assert_eq!(cond(&p, NETWORK_READY).reason, CONNECTOR_NOT_FOUND);
    assert_eq!(stop_reason(&p), (CONNECTOR_NOT_FOUND, true));
}

#[test]
fn an_invalid_spec_or_a_violation_reads_nothing_and_waits_for_a_change() {
    let obj = object(serde_json::json!({"scaling": {"minInstances": 5, "maxInstances": 2}}));
    let (p, reads) = run(&input(&obj), &Google::default());
    assert!(reads.is_empty());
    assert_eq!(stop_reason(&p), (INVALID_SPEC, false));

    let obj = object(serde_json::json!({}));
    let mut violating = input(&obj);
    violating.policy = Cond::fail(
        super::super::POLICY_COMPLIANT,
        VIOLATION,
        "RunSecurityPolicy prod: requireCmek",
    );
    let (p, reads) = run(&violating, &Google::default());
    assert!(reads.is_empty());
    assert_eq!(stop_reason(&p), (VIOLATION, false));

    let mut no_project = input(&obj);
    no_project.project = None;
    let (p, reads) = run(&no_project, &Google::default());
    assert!(reads.is_empty());
    assert_eq!(stop_reason(&p), (INVALID_SPEC, false));
}

#[test]
fn google_errors_map_to_the_condition_of_their_step() {
    let obj = object(serde_json::json!({"access": {"invokers": ["user:a@example.com"]}}));
    let cases = [
        (
            Some(Code::PermissionDenied),
            None,
            SERVICE_READY,
            PERMISSION_DENIED,
            true,
        ),
        (
            Some(Code::ResourceExhausted),
            None,
            SERVICE_READY,
            QUOTA_EXCEEDED,
            true,
        ),
        (
            Some(Code::Unavailable),
            None,
            SERVICE_READY,
            UNAVAILABLE,
            true,
        ),
        (
            None,
            Some(Code::InvalidArgument),
            ACCESS_READY,
            INVALID_MEMBER,
            false,
        ),
        (None, Some(Code::Aborted), ACCESS_READY, CONFLICT, true),
    ];
    for (service_error, invoker_error, type_, reason, transient) in cases {
        let google = Google {
            service: Some(deployed(&obj)),
            service_error,
            invoker_error,
            ..Default::default()
        };
        let (p, _) = run(&input(&obj), &google);
        assert_eq!(
            cond(&p, type_).reason,
            reason,
            "{service_error:?} {invoker_error:?}"
        );
        assert_eq!(stop_reason(&p).1, transient, "{reason}");
    }
}

#[test]
fn cleanup_deletes_only_its_own_service() {
    let obj = object(serde_json::json!({}));
    let ours = Google {
        service: Some(deployed(&obj)),
        ..Default::default()
    };
    let mut reads = vec![];
    let mut obs = Observed::default();
    let p = loop {
        match plan_cleanup(&input(&obj), &obs) {
            Ok(p) => break p,
            Err(read) => {
                obs.service = Some(Ok(ours.service.clone()));
                reads.push(read);
            }
        }
    };
    assert_eq!(p.delete.as_deref(), Some(NAME));

    let mut foreign = deployed(&obj);
    foreign
        .labels
        .insert(OWNER_LABEL.into(), "someone-else".into());
    let obs = Observed {
        service: Some(Ok(Some(foreign))),
        ..Default::default()
    };
    let p = plan_cleanup(&input(&obj), &obs).unwrap();
    assert_eq!(p.delete, None);
    assert_eq!(p.notes[0].reason, "LeftInPlace");

    let abandon = object(serde_json::json!({"deletionPolicy": "Abandon"}));
    let p = plan_cleanup(&input(&abandon), &Observed::default()).unwrap();
    assert_eq!((p.delete, p.notes[0].reason), (None, "Abandoned"));
}

/// The cluster's live owners, for tests: one object, `team-b/api`, with uid `uid-b`.
#[derive(Debug)]
struct OneLiveOwner;

impl Owners for OneLiveOwner {
    fn live(&self, uid: &str) -> Option<String> {
        (uid == "uid-b").then(|| "team-b/api".to_owned())
    }
}

#[test]
fn without_an_identity_nothing_is_read_and_the_pass_waits_for_the_namespace() {
    let obj = object(serde_json::json!({}));
    let mut i = input(&obj);
    i.identity = Err("namespace team has no runwarden.dev/google-service-account".into());
    let (p, reads) = run(&i, &Google::default());
    assert!(reads.is_empty(), "{reads:?}");
    assert!(p.changes.is_empty());
    assert_eq!(stop_reason(&p), (IDENTITY_NOT_CONFIGURED, false));
    assert_eq!(cond(&p, SERVICE_READY).reason, IDENTITY_NOT_CONFIGURED);

    let p = plan_cleanup(&i, &Observed::default()).unwrap();
    assert_eq!(p.delete, None, "nothing deleted with no identity to act as");
    assert!(matches!(p.outcome, CleanupOutcome::Stop(_)));
    assert!(p.conditions[0].message.contains("deletionPolicy: Abandon"));
}

#[test]
fn adopt_never_takes_a_service_another_live_object_owns() {
    let adopting = object(serde_json::json!({"adoptionPolicy": "Adopt"}));
    let mut theirs = deployed(&adopting);
    theirs.labels.insert(OWNER_LABEL.into(), "uid-b".into());
    let google = Google {
        service: Some(theirs.clone()),
        ..Default::default()
    };
    let mut i = input(&adopting);
    i.owners = &OneLiveOwner;
    let (p, reads) = run(&i, &google);
    assert!(p.changes.is_empty(), "nothing written: {:?}", p.changes);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(stop_reason(&p), (ALREADY_OWNED, true));
    assert!(cond(&p, SERVICE_READY).message.contains("team-b/api"));

    // An owner that is gone leaves the service to be adopted.
    theirs.labels.insert(OWNER_LABEL.into(), "uid-gone".into());
    let google = Google {
        service: Some(theirs),
        ..Default::default()
    };
    let (p, _) = run(&i, &google);
    assert!(matches!(
        p.changes.first(),
        Some(Change::Update { adopt: true, .. })
    ));
}

#[test]
fn a_service_stays_in_the_project_it_was_created_in() {
    const OLD: &str = "projects/p0/locations/europe-west1/services/api";
    let mut obj = object(serde_json::json!({}));
    obj.status = Some(CloudRunServiceStatus {
        resource_name: Some(OLD.into()),
        ..Default::default()
    });
    let mut ours = deployed(&obj);
    ours.name = OLD.into();
    let google = Google {
        pinned: Some(ours),
        ..Default::default()
    };
    let (p, reads) = run(&input(&obj), &google);
    assert_eq!(reads, [Read::Pinned(OLD.into())]);
    assert!(p.changes.is_empty(), "no second service: {:?}", p.changes);
    assert_eq!(stop_reason(&p), (PROJECT_CHANGED, false));
    let message = &cond(&p, SERVICE_READY).message;
    assert!(message.contains(OLD) && message.contains("p1"), "{message}");

    // Nothing of this object behind the old name (never created): the new project is used.
    let (p, reads) = run(&input(&obj), &Google::default());
    assert_eq!(
        reads,
        [Read::Pinned(OLD.into()), Read::Service(NAME.into())]
    );
    assert!(matches!(p.changes.as_slice(), [Change::Create { .. }]));
    assert_eq!(p.fields.resource_name.as_deref(), Some(NAME));

    // Cleanup deletes what the status names, wherever the project now resolves.
    let mut old = deployed(&obj);
    old.name = OLD.into();
    let obs = Observed {
        service: Some(Ok(Some(old))),
        ..Default::default()
    };
    assert!(matches!(
        plan_cleanup(&input(&obj), &Observed::default()),
        Err(Read::Service(n)) if n == OLD
    ));
    let p = plan_cleanup(&input(&obj), &obs).unwrap();
    assert_eq!(p.delete.as_deref(), Some(OLD));
}

//! Plan (pure): from the object, what the controller's caches know and what has been observed in
//! Google, what a pass does — the writes to make, in order, the conditions that follow, and
//! what happens next. `runwarden plan` prints it; the controller executes it ([`super::act`]).

use std::collections::BTreeSet;

use google_cloud_iam_v1::model::Policy;
use google_cloud_run_v2::model::{Service, condition};
use kube::ResourceExt;

use super::observe::{Observed, Read, finished_service, need};
use super::render::{self, Resolved};
use super::{ACCESS_READY, ENCRYPTION_READY, SERVICE_READY, encryption, network, validate};
use crate::api::v1alpha1::{
    AccessStatus, AdoptionPolicy, CloudRunService, CloudRunServiceStatus, DeletionPolicy,
    DriftAspect, ManagementPolicy, TrafficStatus,
};
use crate::api::{MANAGED_BY_LABEL, OWNER_LABEL, PROJECT_ANNOTATION};
use crate::controller::access::{self, SetMembers};
use crate::controller::conditions::{self, Cond};
use crate::controller::iam::{ALL_USERS, INVOKER_ROLE};
use crate::controller::operation::{Followed, follow};
use crate::controller::ownership::{Named, claim};
use crate::controller::reasons::*;
use crate::controller::{CleanupOutcome, Note, Outcome, last_segment, no_project_message};
use crate::error::{Error, reason_of};
use crate::gcp::GcpError;
use crate::gcp::identity::Identity;

/// What a pass knows without calling Google: the object and what the caches say about it.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The object.
    pub obj: &'a CloudRunService,
    /// Its project, resolved (spec, namespace annotation, default); `None` when none is set.
    pub project: Option<String>,
    /// The VpcAccessConnector that `egress.connectorRef` names, if it exists.
    pub connector: Option<crate::api::v1alpha1::VpcAccessConnector>,
    /// `PolicyCompliant`, as the RunSecurityPolicies that match the namespace judge the spec.
    pub policy: Cond,
    /// Whose credentials the pass acts with; `Err`: none usable (`IdentityNotConfigured`).
    pub identity: Result<Identity, String>,
    /// The live objects that own Google resources, by the owner uid the resources carry.
    pub owners: &'a dyn Owners,
}

/// Which live object of the cluster owns a Google resource, by the `runwarden-owner` uid it
/// carries.
pub trait Owners: std::fmt::Debug + Sync {
    /// `namespace/name` of the live object with `uid` (or why it may be live), `None` when no
    /// object has it.
    fn live(&self, uid: &str) -> Option<String>;
}

/// No object owns anything (plans without a cluster).
#[derive(Debug)]
pub struct NoOwners;

impl Owners for NoOwners {
    fn live(&self, _: &str) -> Option<String> {
        None
    }
}

/// The status fields besides conditions, as a pass leaves them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    /// The service's URL.
    pub uri: Option<String>,
    /// Its full Google name.
    pub resource_name: Option<String>,
    /// The newest ready revision.
    pub latest_ready_revision: Option<String>,
    /// The project's Cloud Run service agent (CMEK).
    pub service_agent: Option<String>,
    /// A Google operation in flight.
    pub operation: Option<String>,
    /// How Cloud Run splits the requests (`trafficStatuses`).
    pub traffic: Vec<TrafficStatus>,
    /// Managed field paths that differed from the spec at this pass.
    pub drift: Vec<String>,
    /// `access.mode: Additive`: the members runwarden granted.
    pub access: Option<AccessStatus>,
    /// The build from source in flight or the last one (`spec.build`).
    pub build: Option<crate::api::v1alpha1::BuildStatus>,
}

impl Fields {
    fn from_status(status: Option<&CloudRunServiceStatus>) -> Self {
        status.map_or_else(Self::default, |s| Self {
            uri: s.uri.clone(),
            resource_name: s.resource_name.clone(),
            latest_ready_revision: s.latest_ready_revision.clone(),
            service_agent: s.service_agent.clone(),
            operation: s.operation.clone(),
            traffic: s.traffic.clone(),
            drift: s.drift.clone(),
            access: s.access.clone(),
            build: s.build.clone(),
        })
    }
}

/// A write to Google.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Add the Cloud Run service agent to the key's encrypter/decrypter binding.
    GrantKey {
        /// The key.
        key: String,
        /// `serviceAccount:service-{number}@serverless-robot-prod.iam.gserviceaccount.com`.
        member: String,
        /// The policy to write (with the etag that was read).
        policy: Policy,
    },
    /// Create the service.
    Create {
        /// `projects/{p}/locations/{l}`.
        parent: String,
        /// Service id.
        id: String,
        /// The service (without a name).
        service: Service,
    },
    /// Replace the managed fields of the service.
    Update {
        /// Google's service with the managed fields replaced.
        service: Service,
        /// The managed fields that differ, e.g. `template.containers[0].image`.
        changed: Vec<String>,
        /// Whether this takes over a service the object did not create.
        adopt: bool,
    },
    /// Submit a build from source (`spec.build`).
    SubmitBuild {
        /// The request.
        request: Box<google_cloud_run_v2::model::SubmitBuildRequest>,
        /// `status.build` once submitted (its operation and base image filled in by act).
        record: crate::api::v1alpha1::BuildStatus,
    },
    /// Set the members of `roles/run.invoker` (in `access.mode`).
    SetInvokers(SetMembers),
}

/// What one pass does.
#[derive(Debug)]
pub struct Plan {
    /// Sub-conditions decided by this pass (the others keep their previous value).
    pub conditions: Vec<Cond>,
    /// Writes to make, in order; the first that fails ends the pass.
    pub changes: Vec<Change>,
    /// What happens after them.
    pub outcome: Outcome,
    /// Status fields as they stand after the writes.
    pub fields: Fields,
    /// Events to publish that do not depend on a write (an operation that finished).
    pub notes: Vec<Note>,
}

impl Plan {
    fn new(status: Option<&CloudRunServiceStatus>) -> Self {
        Self {
            conditions: vec![],
            changes: vec![],
            outcome: Outcome::Progressing,
            fields: Fields::from_status(status),
            notes: vec![],
        }
    }

    /// Records a condition (replacing one of the same type).
    pub fn set(&mut self, c: Cond) {
        self.conditions.retain(|o| o.type_ != c.type_);
        self.conditions.push(c);
    }

    fn stop(mut self, c: Cond, error: Error) -> Self {
        self.set(c);
        self.outcome = Outcome::Stop(error);
        self
    }

    /// Stops the pass with `c` and `error`; `None`, for a [`Step`].
    fn halt<T>(&mut self, c: Cond, error: Error) -> Option<T> {
        self.set(c);
        self.outcome = Outcome::Stop(error);
        None
    }

    fn google_failed(self, type_: &'static str, e: &GcpError) -> Self {
        self.stop(
            Cond::fail(type_, reason_of(e.code), e.message.clone()),
            e.clone().into(),
        )
    }

    /// Whether the pass writes nothing and finds Google as the spec asks.
    pub fn in_sync(&self) -> bool {
        self.changes.is_empty() && matches!(self.outcome, Outcome::InSync)
    }
}

/// A stage of the plan: `Ok(Some(value))` to go on, `Ok(None)` when the plan is complete (its
/// outcome set), `Err(read)` when a fact must be observed first.
type Step<T> = Result<Option<T>, Read>;

/// The plan of a pass of an object that is not being deleted, or the next [`Read`] it needs.
///
/// Stages, each stopping the pass when it must: [`admit`] (project, validation, guardrails) →
/// [`follow_operation`] → [`dependencies`] (egress, key) → the service: absent ([`absent`]),
/// not ours ([`owned`]), then compared ([`observe_only`] or [`manage`]) → invokers.
pub fn plan(input: &Input, obs: &Observed) -> Result<Plan, Read> {
    let mut p = Plan::new(input.obj.status.as_ref());
    let Some(project) = admit(input, obs, &mut p)? else {
        return Ok(p);
    };
    // An operation in flight is all a pass reads: the dependencies are read once it is over.
    let Some(finished) = follow_operation(obs, &mut p)? else {
        return Ok(p);
    };
    // A build from source in flight or failed is all a pass does: the running revision
    // keeps serving until an image is built.
    let Some(built) = super::build::plan(input, project, obs, &mut p)? else {
        return Ok(p);
    };
    let Some((connector, grant_drift)) = dependencies(input, project, obs, &mut p)? else {
        return Ok(p);
    };
    let resolved = Resolved {
        project: project.to_owned(),
        connector,
        built,
    };
    let desired = render::desired_service(input.obj, &resolved);
    let left_by_operation = finished
        .is_some()
        .then(|| finished_service(obs.operation.as_ref()))
        .flatten()
        .filter(|s| s.name == desired.name);
    let actual = match &left_by_operation {
        Some(service) => service,
        None => match need(&obs.service, || Read::Service(desired.name.clone()))? {
            Err(e) => return Ok(p.google_failed(SERVICE_READY, e)),
            Ok(None) => return Ok(absent(input, project, desired, p)),
            Ok(Some(actual)) => actual,
        },
    };
    let Some(ours) = owned(input, actual, finished.as_ref(), &mut p) else {
        return Ok(p);
    };
    let mut drift: Vec<String> = grant_drift.into_iter().collect();
    if input.obj.spec.management_policy == ManagementPolicy::Observe {
        observe_only(input, desired, actual, obs, p, drift)
    } else {
        let failed = finished.as_ref().and_then(Followed::error);
        let p = manage(input, &desired, actual, ours, failed, p, &mut drift);
        let mut p = invokers(p, input.obj, &desired.name, obs)?;
        if p.changes
            .iter()
            .any(|c| matches!(c, Change::SetInvokers(_)))
        {
            drift.push(INVOKERS_DRIFT.to_owned());
        }
        report_drift(input.obj, &mut p, drift);
        Ok(p)
    }
}

/// What a pass over `input` may take as observed without reading it, for
/// [`crate::controller::plan_and_act`]: the service of an object that has never named one in
/// its status (no `status.resourceName`, no operation) is absent. Never in Observe, which
/// must report what is there. `runwarden plan` presumes nothing: it reads.
pub fn presumed(input: &Input) -> Option<Observed> {
    let status = input.obj.status.as_ref();
    let named = status.is_some_and(|s| s.resource_name.is_some() || s.operation.is_some());
    let observe = input.obj.spec.management_policy == ManagementPolicy::Observe;
    (!named && !observe).then(|| Observed {
        service: Some(Ok(None)),
        ..Observed::default()
    })
}

/// The identity, the project, the controller's validation and the guardrails: nothing is read
/// from Google for an object they stop (but the service it already manages, when the project
/// now resolves elsewhere).
fn admit<'a>(input: &'a Input, obs: &Observed, p: &mut Plan) -> Step<&'a str> {
    let obj = input.obj;
    if let Err(message) = &input.identity {
        let c = Cond::fail(SERVICE_READY, IDENTITY_NOT_CONFIGURED, message);
        let e = Error::Spec {
            reason: IDENTITY_NOT_CONFIGURED,
            message: message.clone(),
        };
        return Ok(p.halt(c, e));
    }
    let Some(project) = input.project.as_deref() else {
        let message = no_project_message(&obj.namespace().unwrap_or_default());
        let c = Cond::fail(SERVICE_READY, INVALID_SPEC, &message);
        return Ok(p.halt(
            c,
            Error::Spec {
                reason: INVALID_SPEC,
                message,
            },
        ));
    };
    if let Err(invalid) = validate::validate(obj) {
        let (c, e) = *invalid;
        return Ok(p.halt(c, e));
    }
    if pinned_elsewhere(input, project, obs, p)?.is_none() {
        return Ok(None);
    }
    p.fields.resource_name = Some(render::service_name(obj, project));
    p.set(input.policy.clone());
    if input.policy.reason == VIOLATION {
        let error = Error::Spec {
            reason: VIOLATION,
            message: input.policy.message.clone(),
        };
        return Ok(p.halt(input.policy.clone(), error));
    }
    Ok(Some(project))
}

/// The service this object manages stays where it is: when the project now resolves elsewhere
/// (the namespace's annotation or the default changed; `spec.projectId` is immutable) and the
/// service named in `status.resourceName` is still this object's, the pass stops with
/// `ProjectChanged` instead of creating a second service and orphaning the first. A pinned name
/// with nothing of this object behind it (never created, or deleted) is simply replaced.
fn pinned_elsewhere(input: &Input, project: &str, obs: &Observed, p: &mut Plan) -> Step<()> {
    let obj = input.obj;
    let wanted = render::service_name(obj, project);
    let Some(pinned) = obj
        .status
        .as_ref()
        .and_then(|s| s.resource_name.clone())
        .filter(|n| *n != wanted)
    else {
        return Ok(Some(()));
    };
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    match need(&obs.pinned, || Read::Pinned(pinned.clone()))? {
        Err(e) => {
            let c = Cond::fail(SERVICE_READY, reason_of(e.code), e.message.clone());
            Ok(p.halt(c, e.clone().into()))
        }
        Ok(Some(s)) if s.labels.get(OWNER_LABEL).map(String::as_str) == Some(uid) => {
            let message = format!(
                "this object manages Cloud Run service {pinned}, but its project now resolves to {project} (the namespace's {PROJECT_ANNOTATION} annotation or the controller's default project changed); runwarden neither moves nor orphans a service: restore the project, or delete this object (its deletionPolicy applies to {pinned}) and create it again"
            );
            let c = Cond::fail(SERVICE_READY, PROJECT_CHANGED, &message);
            let e = Error::Spec {
                reason: PROJECT_CHANGED,
                message,
            };
            Ok(p.halt(c, e))
        }
        Ok(_) => Ok(Some(())),
    }
}

/// Egress and the key: the connector's full name to deploy with, and whether (in Observe) the
/// service agent's grant is missing.
fn dependencies(
    input: &Input,
    project: &str,
    obs: &Observed,
    p: &mut Plan,
) -> Step<(Option<String>, Option<String>)> {
    let spec = &input.obj.spec;
    let workload = spec.workload();
    let namespace = input.obj.namespace().unwrap_or_default();
    let connector = match network::plan(&workload, &namespace, input.connector.as_ref(), obs)? {
        Ok((c, connector)) => {
            p.set(c);
            connector
        }
        Err((c, e)) => return Ok(p.halt(c, e)),
    };
    let key = encryption::plan(&workload, project, obs)?;
    p.fields.service_agent = key.agent;
    let observe = spec.management_policy == ManagementPolicy::Observe;
    match key.result {
        Ok((_, Some(Change::GrantKey { key, member, .. }))) if observe => {
            p.set(Cond::fail(
                ENCRYPTION_READY,
                DRIFTED,
                format!(
                    "{member} does not hold {} on {key} (Observe: runwarden grants nothing)",
                    encryption::KMS_ROLE
                ),
            ));
            Ok(Some((connector, Some(GRANT_DRIFT.to_owned()))))
        }
        Ok((c, grant)) => {
            p.set(c);
            p.changes.extend(grant);
            Ok(Some((connector, None)))
        }
        Err((c, e)) => Ok(p.halt(c, e)),
    }
}

/// An operation this object started: wait for it without holding a worker. Goes on with what
/// became of it (`None`: there was none).
fn follow_operation(obs: &Observed, p: &mut Plan) -> Step<Option<Followed>> {
    let Some(op) = p.fields.operation.clone() else {
        return Ok(Some(None));
    };
    match follow(need(&obs.operation, || Read::Operation(op.clone()))?) {
        Ok(Followed::Pending) => {
            p.set(Cond::unknown(
                SERVICE_READY,
                RECONCILING,
                format!("waiting for Google operation {op}"),
            ));
            Ok(None)
        }
        Ok(f) => {
            p.fields.operation = None;
            Ok(Some(Some(f)))
        }
        Err(e) => {
            let c = Cond::fail(SERVICE_READY, reason_of(e.code), e.message.clone());
            Ok(p.halt(c, e.clone().into()))
        }
    }
}

/// No such service in Google: create it (in Observe, report it missing).
fn absent(input: &Input, project: &str, desired: Service, mut p: Plan) -> Plan {
    let obj = input.obj;
    let name = desired.name.clone();
    p.set(Cond::unknown(
        ACCESS_READY,
        PENDING,
        "set once the service exists",
    ));
    if obj.spec.management_policy == ManagementPolicy::Observe {
        p.fields.drift = vec!["service".to_owned()];
        p.set(Cond::fail(
            SERVICE_READY,
            DRIFTED,
            format!("Cloud Run service {name} does not exist (Observe: runwarden creates nothing)"),
        ));
        p.outcome = Outcome::InSync;
        return p;
    }
    let mut service = desired;
    service.name.clear();
    p.changes.push(Change::Create {
        parent: render::parent(project, &obj.spec.region),
        id: obj.service_id(),
        service,
    });
    p.set(Cond::unknown(
        SERVICE_READY,
        RECONCILING,
        "Cloud Run is creating the service",
    ));
    p
}

/// Whether the service is this object's: `None` (the plan stops with `AlreadyExists`) when it
/// is someone else's and may not be adopted. Also records what Google says about it.
fn owned(
    input: &Input,
    actual: &Service,
    finished: Option<&Followed>,
    p: &mut Plan,
) -> Option<bool> {
    let (obj, name) = (input.obj, &actual.name);
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let owner = actual.labels.get(OWNER_LABEL).map(String::as_str);
    // Observe writes nothing, so it may look at a service it does not own.
    let observe = obj.spec.management_policy == ManagementPolicy::Observe;
    let adopt = obj.spec.adoption_policy == AdoptionPolicy::Adopt;
    let named = Named {
        what: "Cloud Run service",
        name,
        owner_kind: "CloudRunService",
        marker: &format!("{OWNER_LABEL} label"),
    };
    let ours = match claim(named, owner, uid, observe, adopt, input.owners) {
        Ok(ours) => ours,
        Err((reason, message, error)) => {
            return p.halt(Cond::fail(SERVICE_READY, reason, message), error);
        }
    };
    p.fields.uri = Some(actual.uri.clone()).filter(|u| !u.is_empty());
    p.fields.latest_ready_revision =
        Some(last_segment(&actual.latest_ready_revision).to_owned()).filter(|r| !r.is_empty());
    p.fields.traffic = render::traffic_status(actual);
    if finished == Some(&Followed::Done { error: None }) && ours && actual.generation == 1 {
        p.notes.push(Note::normal(
            "Created",
            "Create",
            format!("Created Cloud Run service {name}"),
        ));
    }
    Some(ours)
}

/// The managed fields that differ, without those the spec leaves to others.
fn differences(input: &Input, desired: &Service, actual: &Service) -> Vec<String> {
    let mut changed = render::changes(desired, actual);
    changed.retain(|path| !ignored(&input.obj.spec.ignore_drift, path));
    changed
}

/// `managementPolicy: Observe`: compare everything, write nothing.
fn observe_only(
    input: &Input,
    mut desired: Service,
    actual: &Service,
    obs: &Observed,
    mut p: Plan,
    mut drift: Vec<String>,
) -> Result<Plan, Read> {
    // Observe does not take the service over: its ownership labels are not compared.
    for key in [MANAGED_BY_LABEL, OWNER_LABEL] {
        match actual.labels.get(key) {
            Some(v) => desired.labels.insert(key.to_owned(), v.clone()),
            None => desired.labels.remove(key),
        };
    }
    let changed = differences(input, &desired, actual);
    p.set(if changed.is_empty() {
        service_condition(actual, None)
    } else {
        Cond::fail(
            SERVICE_READY,
            DRIFTED,
            format!(
                "Google differs from the spec at {} (Observe: runwarden changes nothing)",
                changed.join(", ")
            ),
        )
    });
    drift.extend(changed);
    let mut p = invokers(p, input.obj, &desired.name, obs)?;
    if let Some(Change::SetInvokers(SetMembers { add, remove, .. })) = p.changes.pop() {
        drift.push(INVOKERS_DRIFT.to_owned());
        p.set(Cond::fail(
            ACCESS_READY,
            DRIFTED,
            format!(
                "{INVOKER_ROLE} differs from spec.access: would add [{}], remove [{}] (Observe: runwarden changes nothing)",
                add.join(", "),
                remove.join(", ")
            ),
        ));
    }
    p.fields.drift = drift;
    if !matches!(p.outcome, Outcome::Stop(_)) {
        p.outcome = Outcome::InSync;
    }
    Ok(p)
}

/// `managementPolicy: Manage`: patch what differs, or judge what Cloud Run reports.
fn manage(
    input: &Input,
    desired: &Service,
    actual: &Service,
    ours: bool,
    operation_error: Option<&str>,
    mut p: Plan,
    drift: &mut Vec<String>,
) -> Plan {
    let mut changed = differences(input, desired, actual);
    drift.extend(changed.iter().cloned());
    // CMEK recovery: Cloud Run does not retry a rollout of this very template that failed on
    // the key (ENCRYPTION_KEY_*). The key has just been found usable and granted, so send the
    // same template again: Cloud Run rolls it out anew. Not in the pass that saw our own
    // operation fail: that one reports DeployFailed and backs off before the next attempt.
    if changed.is_empty() && operation_error.is_none() && encryption::failed_on_key(actual) {
        changed.push("template (again, after a rollout failed on the encryption key)".into());
    }
    if !changed.is_empty() {
        p.set(Cond::unknown(
            SERVICE_READY,
            RECONCILING,
            format!("Cloud Run is deploying changes to {}", changed.join(", ")),
        ));
        let mut update = render::update_from(actual, desired);
        keep_ignored(&input.obj.spec.ignore_drift, actual, &mut update);
        p.changes.push(Change::Update {
            service: update,
            changed,
            adopt: !ours,
        });
        return p;
    }
    let service = service_condition(actual, operation_error);
    p.set(service.clone());
    // A failed deploy can heal outside the spec (a grant, a re-enabled key, an image pushed
    // later): look again with backoff, writing nothing while nothing changed.
    p.outcome = match service.status {
        crate::api::v1alpha1::status::TRUE => Outcome::InSync,
        crate::api::v1alpha1::status::UNKNOWN => Outcome::Progressing,
        _ => Outcome::Stop(Error::Blocked {
            reason: if service.reason == REVISION_FAILED {
                REVISION_FAILED
            } else {
                DEPLOY_FAILED
            },
            message: service.message,
        }),
    };
    p
}

/// Drift is a difference Google came to have after runwarden had made it match this very spec:
/// not a spec change rolling out, nor the first write of a new or adopted service.
fn report_drift(obj: &CloudRunService, p: &mut Plan, mut drift: Vec<String>) {
    drift.retain(|path| {
        let type_ = if path == INVOKERS_DRIFT {
            ACCESS_READY
        } else if path == GRANT_DRIFT {
            ENCRYPTION_READY
        } else {
            SERVICE_READY
        };
        held(obj, type_)
    });
    if !drift.is_empty() {
        p.notes.push(Note::normal(
            "DriftCorrected",
            "Update",
            format!(
                "Google differed from the spec at {}: set back",
                drift.join(", ")
            ),
        ));
    }
    p.fields.drift = drift;
}

/// The drift path of invoker members.
pub const INVOKERS_DRIFT: &str = "access.invokers";
/// The drift path of the service agent's grant on the key.
pub const GRANT_DRIFT: &str = "encryption.grantServiceAgent";

/// Whether the last pass left condition `type_` True for the object's current generation.
fn held(obj: &CloudRunService, type_: &str) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.observed_generation == obj.metadata.generation
            && crate::controller::conditions::find(&s.conditions, type_)
                .is_some_and(|c| c.status == crate::api::v1alpha1::status::TRUE)
    })
}

/// Whether `path` belongs to an aspect the spec leaves to others after create.
pub fn ignored(aspects: &[DriftAspect], path: &str) -> bool {
    aspects.iter().any(|a| match a {
        DriftAspect::Image => path.starts_with("template.containers[") && path.ends_with("].image"),
        DriftAspect::Scaling => {
            path.starts_with("template.scaling.") || path.starts_with("scaling.")
        }
        DriftAspect::Traffic => path.starts_with("traffic"),
    })
}

/// Puts Google's values of the ignored aspects back into an update.
fn keep_ignored(aspects: &[DriftAspect], actual: &Service, update: &mut Service) {
    for aspect in aspects {
        let templates = (actual.template.as_ref(), update.template.as_mut());
        match aspect {
            DriftAspect::Image => {
                if let (Some(have), Some(out)) = templates {
                    for (c, h) in out.containers.iter_mut().zip(&have.containers) {
                        c.image = h.image.clone();
                    }
                }
            }
            DriftAspect::Scaling => {
                if let (Some(have), Some(out)) = templates {
                    out.scaling = have.scaling.clone();
                }
                update.scaling = actual.scaling.clone();
            }
            DriftAspect::Traffic => update.traffic = actual.traffic.clone(),
        }
    }
}

/// The members `roles/run.invoker` must hold.
pub fn invoker_members(obj: &CloudRunService) -> BTreeSet<String> {
    let mut members: BTreeSet<String> = obj.spec.access.invokers.iter().cloned().collect();
    if obj.spec.access.allow_unauthenticated {
        members.insert(ALL_USERS.to_owned());
    }
    members
}

/// `AccessReady`, and the invoker write when the policy differs ([`access::decide`]).
fn invokers(mut p: Plan, obj: &CloudRunService, name: &str, obs: &Observed) -> Result<Plan, Read> {
    let members = invoker_members(obj);
    let policy = match need(&obs.invoker_policy, || Read::InvokerPolicy(name.to_owned()))? {
        Ok(policy) => policy,
        Err(e) => return Ok(p.stop(access::failed(e), e.clone().into())),
    };
    let status = obj.status.as_ref();
    let decision = access::decide_after(
        name,
        obj.spec.access.mode,
        &members,
        status.map_or(&[][..], |s| &s.conditions),
        status.and_then(|s| s.access.as_ref()),
        policy,
    );
    if obj.spec.management_policy == ManagementPolicy::Manage {
        p.fields.access = decision.access;
    }
    p.changes.extend(decision.change.map(Change::SetInvokers));
    p.set(Cond::ok(
        ACCESS_READY,
        "InvokersSet",
        format!("{INVOKER_ROLE} is held by {}", decision.summary),
    ));
    Ok(p)
}

/// `ServiceReady` from what Cloud Run reports about the service.
pub fn service_condition(actual: &Service, operation_error: Option<&str>) -> Cond {
    use condition::State;
    let terminal = actual.terminal_condition.clone().unwrap_or_default();
    let message = if terminal.message.is_empty() {
        operation_error.unwrap_or_default().to_owned()
    } else {
        terminal.message.clone()
    };
    let or = |m: String, fallback: &str| if m.is_empty() { fallback.to_owned() } else { m };
    if actual.reconciling
        || matches!(
            terminal.state,
            State::ConditionPending | State::ConditionReconciling
        )
    {
        return Cond::unknown(
            SERVICE_READY,
            RECONCILING,
            or(message, "Cloud Run is deploying"),
        );
    }
    match terminal.state {
        State::ConditionFailed => {
            let reason = match terminal.reasons {
                Some(condition::Reasons::RevisionReason(_)) => REVISION_FAILED,
                _ => DEPLOY_FAILED,
            };
            Cond::fail(
                SERVICE_READY,
                reason,
                or(message, "Cloud Run could not deploy the service"),
            )
        }
        State::ConditionSucceeded if actual.observed_generation == actual.generation => Cond::ok(
            SERVICE_READY,
            "Serving",
            format!(
                "revision {} serves at {}",
                last_segment(&actual.latest_ready_revision),
                actual.uri
            ),
        ),
        _ => Cond::unknown(
            SERVICE_READY,
            RECONCILING,
            "Cloud Run has not finished deploying the latest generation",
        ),
    }
}

/// What a pass over an object being deleted does.
#[derive(Debug)]
pub struct CleanupPlan {
    /// Sub-conditions decided by this pass.
    pub conditions: Vec<Cond>,
    /// The service to delete, if any.
    pub delete: Option<String>,
    /// What happens after.
    pub outcome: CleanupOutcome,
    /// Status fields.
    pub fields: Fields,
    /// Events to publish.
    pub notes: Vec<Note>,
}

/// The plan of a pass over an object being deleted, or the next [`Read`] it needs.
pub fn plan_cleanup(input: &Input, obs: &Observed) -> Result<CleanupPlan, Read> {
    let obj = input.obj;
    let mut p = CleanupPlan {
        conditions: vec![],
        delete: None,
        outcome: CleanupOutcome::Done,
        fields: Fields::from_status(obj.status.as_ref()),
        notes: vec![],
    };
    if obj.spec.deletion_policy == DeletionPolicy::Abandon {
        p.notes.push(Note::normal(
            "Abandoned",
            "Delete",
            "left the Cloud Run service in place (deletionPolicy: Abandon)",
        ));
        return Ok(p);
    }
    let Some(name) = cleanup_target(input) else {
        return Ok(p);
    };
    if let Err(message) = &input.identity {
        p.conditions.push(Cond::fail(
            SERVICE_READY,
            IDENTITY_NOT_CONFIGURED,
            format!(
                "cannot delete {name}: {message}; {}",
                stuck_deletion_help(&name)
            ),
        ));
        p.outcome = CleanupOutcome::Stop(Error::Spec {
            reason: IDENTITY_NOT_CONFIGURED,
            message: message.clone(),
        });
        return Ok(p);
    }
    let failed = |mut p: CleanupPlan, e: &GcpError| {
        p.conditions.push(Cond::fail(
            SERVICE_READY,
            reason_of(e.code),
            format!("{}; {}", e.message, stuck_deletion_help(&name)),
        ));
        p.outcome = CleanupOutcome::Stop(e.clone().into());
        Ok(p)
    };
    let mut finished = false;
    if let Some(op) = p.fields.operation.clone() {
        // Whether the operation is this cleanup's delete (an earlier pass said `Deleting`),
        // not a deploy the deletion interrupted.
        let deleting = obj
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, SERVICE_READY))
            .is_some_and(|c| c.reason == DELETING);
        match follow(need(&obs.operation, || Read::Operation(op.clone()))?) {
            Ok(Followed::Pending) => {
                p.outcome = CleanupOutcome::wait(format!("operation {op}"));
                return Ok(p);
            }
            Ok(Followed::Done { error: Some(error) }) if deleting => {
                // Said, and retried with backoff (the next pass deletes again), instead of
                // deleting again at once with `Deleting` as if nothing had happened.
                let message = format!(
                    "Cloud Run could not delete {name} (operation {op}): {error}; {}",
                    stuck_deletion_help(&name)
                );
                p.fields.operation = None;
                p.conditions
                    .push(Cond::fail(SERVICE_READY, DELETE_FAILED, &message));
                p.outcome = CleanupOutcome::Stop(Error::Blocked {
                    reason: DELETE_FAILED,
                    message,
                });
                return Ok(p);
            }
            Ok(f) => {
                finished = f == (Followed::Done { error: None });
                p.fields.operation = None;
            }
            Err(e) => return failed(p, e),
        }
    }
    let actual = match need(&obs.service, || Read::Service(name.clone()))? {
        Err(e) => return failed(p, e),
        Ok(None) => {
            if finished {
                p.notes.push(Note::normal(
                    "Deleted",
                    "Delete",
                    format!("Deleted Cloud Run service {name}"),
                ));
            }
            return Ok(p);
        }
        Ok(Some(actual)) => actual,
    };
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    if actual.labels.get(OWNER_LABEL).map(String::as_str) != Some(uid) {
        p.notes.push(Note::normal(
            "LeftInPlace",
            "Delete",
            format!("Cloud Run service {name} was not created by this object: left in place"),
        ));
        return Ok(p);
    }
    if actual.reconciling && p.fields.operation.is_none() {
        // Someone's deploy is running; Cloud Run would refuse or race the delete.
        p.conditions.push(Cond::fail(
            SERVICE_READY,
            DELETING,
            "waiting for the running deploy to finish before deleting",
        ));
        p.outcome = CleanupOutcome::wait(format!("deploy of {name} before deleting it"));
        return Ok(p);
    }
    p.delete = Some(name);
    Ok(p)
}

/// The service a cleanup pass deletes: the one this object created or adopted, as its status
/// names it; else the one the spec names in the resolved project; `None` without either
/// (nothing can have been created).
fn cleanup_target(input: &Input) -> Option<String> {
    let obj = input.obj;
    let pinned = obj.status.as_ref().and_then(|s| s.resource_name.clone());
    pinned.or_else(|| {
        input
            .project
            .as_deref()
            .map(|project| render::service_name(obj, project))
    })
}

/// The plan of a pass over a live object whose Google clients could not be made (the
/// controller may no longer act as the namespace's identity): nothing is read or written;
/// `ServiceReady` says what Google answered.
pub fn without_clients(input: &Input, e: &GcpError) -> Plan {
    Plan {
        conditions: vec![
            input.policy.clone(),
            Cond::fail(SERVICE_READY, reason_of(e.code), e.message.clone()),
        ],
        changes: vec![],
        outcome: Outcome::Stop(e.clone().into()),
        fields: Fields::from_status(input.obj.status.as_ref()),
        notes: vec![],
    }
}

/// The plan of a cleanup pass whose Google clients could not be made, when the cleanup needs
/// Google (see [`plan_cleanup`]): the finalizer stays, and `ServiceReady` says why and how out.
pub fn cleanup_without_clients(input: &Input, e: &GcpError) -> CleanupPlan {
    let name = cleanup_target(input).unwrap_or_default();
    CleanupPlan {
        conditions: vec![Cond::fail(
            SERVICE_READY,
            reason_of(e.code),
            format!("{}; {}", e.message, stuck_deletion_help(&name)),
        )],
        delete: None,
        outcome: CleanupOutcome::Stop(e.clone().into()),
        fields: Fields::from_status(input.obj.status.as_ref()),
        notes: vec![],
    }
}

/// How to get an object whose Google service cannot be deleted out of its finalizer.
pub(super) fn stuck_deletion_help(name: &str) -> String {
    format!(
        "the finalizer keeps this object until {name} is deleted: give the namespace's Google identity the permission (roles/run.admin on the project), or set spec.deletionPolicy: Abandon to leave the service in Google and let the object go"
    )
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

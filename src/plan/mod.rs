//! `runwarden plan`: what a reconcile of each manifest would do, without a cluster and without
//! writing to Google.
//!
//! The manifests are read and checked against the CRD schemas ([`crate::manifest`]); each
//! CloudRunService is then validated with the controller's own rules, judged by the
//! RunSecurityPolicies among the manifests, and planned by **the controller's pure plan** over
//! Google's answers to the same reads the controller makes (read-only: no write is ever made).
//! There is no second diff engine: what `plan` prints is what the controller would execute.
//!
//! Exit codes follow Terraform's `-detailed-exitcode`: 0 nothing to change, 2 changes to make
//! (or objects that will wait for something outside the manifests, e.g. a KMS key that does not
//! exist yet), 1 invalid input, a policy violation, or a Google error.
//!
//! What differs from a reconcile, and why:
//! - objects have no uid outside a cluster: a Google service labelled `managed-by: runwarden`
//!   is taken to be the object's own (a note says so), any other is judged as the controller
//!   would (`AlreadyExists` unless `adoptionPolicy: Adopt`);
//! - a VpcAccessConnector among the manifests counts as Ready for the services that reference
//!   it (it is planned itself, above them).

mod output;

use std::collections::BTreeMap;

use serde::Serialize;

pub use output::{render_json, render_text};

use crate::api::v1alpha1::{CloudRunJob, CloudRunService, VpcAccessConnector};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL, PROJECT_ANNOTATION};
use crate::controller::cloudrunservice::observe::Observed;
use crate::controller::cloudrunservice::plan::{self as service_plan, Change, Input, NoOwners};
use crate::controller::cloudrunservice::render;
use crate::controller::conditions::Cond;
use crate::controller::context::{ProjectNumbers, resolve_project};
use crate::controller::vpcaccessconnector::{self, plan as connector_plan};
use crate::controller::{Outcome, observe_and_plan_from};
use crate::error::Error;
use crate::gcp::Gcp;
use crate::gcp::identity::Identity;
use crate::manifest::Manifests;

/// What a reconcile would do with one object.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPlan {
    /// `CloudRunService`, `CloudRunJob` or `VpcAccessConnector`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Where it was read, `file#document`.
    pub source: String,
    /// The Google resource, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The verdict.
    pub action: Verdict,
    /// The writes a reconcile would make, in order (for `waits`: once the wait is over).
    pub calls: Vec<Call>,
    /// Why it cannot proceed, or what it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message that goes with `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Managed field paths where Google differs from the spec.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Remarks (assumptions, audit violations).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The verdict on one object.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Google matches the spec: no call.
    InSync,
    /// The resource would be created.
    Create,
    /// The resource (or its IAM policy, or its key's) would be changed.
    Update,
    /// `managementPolicy: Observe`: Google differs, and runwarden would not write.
    Drifted,
    /// The reconcile would wait for something outside the manifests (a key, a connector).
    Waits,
    /// The spec cannot work as written (including a Google resource it may not take over).
    Invalid,
    /// An `Enforce` RunSecurityPolicy forbids it.
    Violation,
    /// Google refused a read.
    Error,
}

/// One write to Google.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `{api}.{method}`, e.g. `run.services.create`.
    pub method: &'static str,
    /// The resource written.
    pub resource: String,
    /// Changed fields (create: every managed field).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// IAM members added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// IAM members removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// The IAM role, for policy writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `Additive` for a policy write in `access.mode: Additive` (what is added and removed is
    /// runwarden's own; `kept` lists everyone else's members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// IAM members that are not runwarden's and stay (`Additive`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

/// A managed field that changes, as canonical values (defaults folded in).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FieldChange {
    /// The field path, e.g. `template.containers[0].image`.
    pub path: String,
    /// Google's value (absent on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The spec's value.
    pub to: String,
}

/// The plan of every object.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Report {
    /// Connectors first (services and jobs depend on them), then services, then jobs, each
    /// sorted by namespace and name.
    pub objects: Vec<ObjectPlan>,
    /// Documents that were skipped, and other remarks.
    pub notes: Vec<String>,
}

impl Report {
    /// 0 nothing to change, 2 changes to make (or waits), 1 anything invalid, forbidden or
    /// failed.
    pub fn exit_code(&self) -> u8 {
        let worst = self.objects.iter().map(|o| o.action).max();
        match worst {
            None | Some(Verdict::InSync) => 0,
            Some(Verdict::Invalid | Verdict::Violation | Verdict::Error) => 1,
            Some(_) => 2,
        }
    }
}

/// How each object's project and policies are found.
pub struct Settings {
    /// Project of objects that name none and whose Namespace has no annotation.
    pub default_project: Option<String>,
}

/// Plans every object of `manifests` against `gcp`, reading only.
pub async fn plan(manifests: &Manifests, gcp: &Gcp, settings: &Settings) -> Report {
    let numbers = ProjectNumbers::default();
    let mut report = Report {
        notes: manifests.skipped.iter().map(ToString::to_string).collect(),
        ..Default::default()
    };
    let project_of = |spec_project: Option<&str>, namespace: &str| {
        resolve_project(
            spec_project,
            manifests
                .namespaces
                .get(namespace)
                .and_then(|ns| ns.annotations.get(PROJECT_ANNOTATION).cloned())
                .filter(|p| !p.is_empty()),
            settings.default_project.as_deref(),
        )
    };
    let mut connectors: Vec<&VpcAccessConnector> = manifests.connectors.iter().collect();
    connectors.sort_by_key(|c| (c.metadata.namespace.clone(), c.metadata.name.clone()));
    for connector in connectors {
        let namespace = connector.metadata.namespace.clone().unwrap_or_default();
        let project = project_of(connector.spec.project_id.as_deref(), &namespace);
        report
            .objects
            .push(plan_connector(manifests, connector, project, gcp, &numbers).await);
    }
    let mut services: Vec<&CloudRunService> = manifests.services.iter().collect();
    services.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    for service in services {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let project = project_of(service.spec.project_id.as_deref(), &namespace);
        let connector = referenced_connector(
            manifests,
            &namespace,
            service.spec.egress.as_deref(),
            &project_of,
        );
        let policy = policy_condition(manifests, service, project.as_deref());
        report.objects.push(
            plan_service(
                manifests, service, project, connector, policy, gcp, &numbers,
            )
            .await,
        );
    }
    let mut jobs: Vec<&CloudRunJob> = manifests.jobs.iter().collect();
    jobs.sort_by_key(|j| (j.metadata.namespace.clone(), j.metadata.name.clone()));
    for job in jobs {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let project = project_of(job.spec.project_id.as_deref(), &namespace);
        let connector = referenced_connector(
            manifests,
            &namespace,
            job.spec.egress.as_deref(),
            &project_of,
        );
        let labels = manifests
            .namespaces
            .get(&namespace)
            .map(|ns| ns.labels.clone())
            .unwrap_or_default();
        let policy = crate::controller::cloudrunjob::policy_condition(
            job,
            &labels,
            project.as_deref(),
            &manifests.policies,
        );
        report
            .objects
            .push(plan_job(manifests, job, project, connector, policy, gcp, &numbers).await);
    }
    report
}

/// What a reconcile would do with a CloudRunJob: the controller's job plan over Google's
/// answers, read only.
async fn plan_job(
    manifests: &Manifests,
    obj: &CloudRunJob,
    project: Option<String>,
    connector: Option<VpcAccessConnector>,
    policy: Cond,
    gcp: &Gcp,
    numbers: &ProjectNumbers,
) -> ObjectPlan {
    use crate::controller::cloudrunjob::{observe, plan as job_plan, render as job_render};
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut out = ObjectPlan {
        kind: "CloudRunJob",
        source: source(manifests, "CloudRunJob", &namespace, &name),
        namespace,
        name,
        resource: None,
        action: Verdict::InSync,
        calls: vec![],
        reason: None,
        message: None,
        drift: vec![],
        notes: vec![],
    };
    if policy.reason == crate::controller::reasons::AUDIT_VIOLATION {
        out.notes.push(format!("audit: {}", policy.message));
    }
    // Outside a cluster the object has no uid: a job runwarden manages is taken as its own.
    let mut obj = obj.clone();
    let mut seed = observe::Observed::default();
    if let Some(project) = &project {
        let name = job_render::job_name(&obj, project);
        let read = gcp.jobs.get_job(&name).await;
        if let Ok(Some(job)) = &read
            && job.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
            && let Some(owner) = job.labels.get(OWNER_LABEL)
        {
            out.notes.push(format!(
                "{name} is managed by runwarden (owner uid {owner}): taken to be this object's"
            ));
            obj.metadata.uid = Some(owner.clone());
        }
        // Its Scheduler job is this object's too when it is runwarden's.
        if obj.spec.schedule.is_some() {
            let schedule = job_plan::schedule_name(&obj, project);
            if let Ok(Some(s)) = gcp.scheduler.get_job(&schedule).await
                && let Some(owner) = job_plan::description_owner(&s.description)
                && obj.metadata.uid.is_none()
            {
                obj.metadata.uid = Some(owner.to_owned());
            }
        }
        seed.job = Some(read);
    }
    let input = job_plan::Input {
        obj: &obj,
        project,
        connector,
        policy,
        identity: Ok(Identity::Controller),
        owners: &NoOwners,
    };
    let (plan, observed) =
        observe_and_plan_from(seed, gcp, numbers, |o| job_plan::plan(&input, o)).await;
    out.resource = plan.fields.resource_name.clone();
    out.drift = plan.fields.drift.clone();
    let actual = observed.job.and_then(Result::ok).flatten();
    for change in &plan.changes {
        out.calls.push(job_call(change, actual.as_ref()));
    }
    out.action = verdict(&plan.outcome, &out.calls, &plan.conditions);
    // Waiting for a key or a connector: what the reconcile does once it is there.
    if out.action == Verdict::Waits
        && actual.is_none()
        && let Some(project) = input.project.clone()
    {
        let connector = input
            .connector
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.resource_name.clone());
        let mut job = job_render::desired_job(
            &obj,
            &render::Resolved {
                project,
                connector,
                built: None,
            },
        );
        job.name.clear();
        job.create_execution =
            obj.spec
                .execution
                .as_ref()
                .and_then(|e| e.token())
                .map(|(token, run)| {
                    use google_cloud_run_v2::model::job::CreateExecution;
                    if run {
                        CreateExecution::RunExecutionToken(token.to_owned())
                    } else {
                        CreateExecution::StartExecutionToken(token.to_owned())
                    }
                });
        out.calls.push(job_call(
            &job_plan::Change::Create {
                parent: render::parent(
                    input.project.as_deref().unwrap_or_default(),
                    &obj.spec.region,
                ),
                id: obj.job_id(),
                job: Box::new(job),
            },
            None,
        ));
    }
    // A created job's executors and Scheduler job follow once Google's operation finishes.
    if out.calls.iter().any(|c| c.method == "run.jobs.create") {
        let resource = plan.fields.resource_name.clone().unwrap_or_default();
        let members = job_plan::executor_members(&obj);
        out.calls.extend(first_members_call(
            "run.jobs.setIamPolicy",
            &resource,
            obj.spec.access.mode,
            &members,
        ));
        if let Some(schedule) = input
            .project
            .as_deref()
            .and_then(|p| job_plan::desired_schedule(&obj, p))
        {
            out.calls.push(job_call(
                &job_plan::Change::CreateSchedule {
                    parent: String::new(),
                    job: Box::new(schedule),
                },
                None,
            ));
        }
    }
    if let Outcome::Stop(e) = &plan.outcome {
        out.reason = Some(e.metric_label().to_owned());
        out.message = Some(message_of(e));
    } else if out.action == Verdict::Drifted
        && let Some(c) = plan.conditions.iter().find(|c| !c.is_true())
    {
        out.reason = Some(c.reason.clone());
        out.message = Some(c.message.clone());
    }
    out
}

/// The call a planned job change makes, with its field-level diff.
fn job_call(
    change: &crate::controller::cloudrunjob::plan::Change,
    actual: Option<&google_cloud_run_v2::model::Job>,
) -> Call {
    use crate::controller::cloudrunjob::plan::Change as C;
    use crate::controller::cloudrunjob::render as job_render;
    let call = |method, resource: &str| Call {
        method,
        resource: resource.to_owned(),
        fields: vec![],
        add: vec![],
        remove: vec![],
        ..Call::default()
    };
    let created = |shape: BTreeMap<String, String>| -> Vec<FieldChange> {
        shape
            .into_iter()
            .filter(|(path, v)| {
                !(v.is_empty()
                    || v == "<unmanaged>"
                    || v == "[]"
                    || path.ends_with("vpcAccess.networkInterfaces") && v == "0")
            })
            .map(|(path, to)| FieldChange {
                path,
                from: None,
                to,
            })
            .collect()
    };
    match change {
        C::GrantKey { key, member, .. } => Call {
            add: vec![member.clone()],
            role: Some(crate::controller::cloudrunservice::encryption::KMS_ROLE.to_owned()),
            ..call("kms.cryptoKeys.setIamPolicy", key)
        },
        C::Create { parent, id, job } => {
            let name = format!("{parent}/jobs/{id}");
            let mut named = (**job).clone();
            named.name = name.clone();
            let mut fields = created(job_render::shape(&named));
            if let Some(token) = execution_token(&named) {
                fields.push(FieldChange {
                    path: "executionToken".into(),
                    from: None,
                    to: token,
                });
            }
            Call {
                fields,
                ..call("run.jobs.create", &name)
            }
        }
        C::Update { job, changed, .. } => {
            let want = job_render::shape(job);
            let have = actual.map(job_render::shape).unwrap_or_default();
            let mut fields: Vec<FieldChange> = changed
                .iter()
                .filter(|path| !path.starts_with("execution token "))
                .map(|path| FieldChange {
                    path: path.clone(),
                    from: have.get(path).cloned(),
                    to: want.get(path).cloned().unwrap_or_else(|| path.clone()),
                })
                .collect();
            if let Some(token) = execution_token(job) {
                fields.push(FieldChange {
                    path: "executionToken".into(),
                    from: None,
                    to: token,
                });
            }
            Call {
                fields,
                ..call("run.jobs.patch", &job.name)
            }
        }
        C::SetExecutors(change) => members_call("run.jobs.setIamPolicy", change),
        C::CreateSchedule { job, .. } => Call {
            fields: [
                ("schedule", job.schedule.clone()),
                ("timeZone", job.time_zone.clone()),
                (
                    "httpTarget.oauthToken.serviceAccountEmail",
                    job.http_target()
                        .and_then(|t| t.oauth_token())
                        .map(|o| o.service_account_email.clone())
                        .unwrap_or_default(),
                ),
            ]
            .into_iter()
            .map(|(path, to)| FieldChange {
                path: path.to_owned(),
                from: None,
                to,
            })
            .collect(),
            ..call("cloudscheduler.jobs.create", &job.name)
        },
        C::UpdateSchedule { job, mask } => Call {
            fields: mask
                .iter()
                .map(|path| FieldChange {
                    path: path.clone(),
                    from: None,
                    to: match path.as_str() {
                        "schedule" => job.schedule.clone(),
                        "time_zone" => job.time_zone.clone(),
                        "description" => job.description.clone(),
                        _ => path.clone(),
                    },
                })
                .collect(),
            ..call("cloudscheduler.jobs.patch", &job.name)
        },
        C::PauseSchedule(name) => call("cloudscheduler.jobs.pause", name),
        C::ResumeSchedule(name) => call("cloudscheduler.jobs.resume", name),
        C::DeleteSchedule(name) => call("cloudscheduler.jobs.delete", name),
    }
}

/// The execution token a job write carries, as `runToken:T` or `startToken:T`.
fn execution_token(job: &google_cloud_run_v2::model::Job) -> Option<String> {
    use google_cloud_run_v2::model::job::CreateExecution;
    match job.create_execution.as_ref()? {
        CreateExecution::RunExecutionToken(t) => Some(format!("runToken:{t}")),
        CreateExecution::StartExecutionToken(t) => Some(format!("startToken:{t}")),
        _ => None,
    }
}

/// `PolicyCompliant` for a service from the RunSecurityPolicies among the manifests.
fn policy_condition(manifests: &Manifests, obj: &CloudRunService, project: Option<&str>) -> Cond {
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let labels = manifests
        .namespaces
        .get(&namespace)
        .map(|ns| ns.labels.clone())
        .unwrap_or_default();
    crate::controller::cloudrunservice::policy_condition(obj, &labels, project, &manifests.policies)
}

/// The VpcAccessConnector of the manifests an object's `egress.connectorRef` names, as it will
/// see it once it exists.
fn referenced_connector(
    manifests: &Manifests,
    namespace: &str,
    egress: Option<&crate::api::v1alpha1::Egress>,
    project_of: &dyn Fn(Option<&str>, &str) -> Option<String>,
) -> Option<VpcAccessConnector> {
    let r = egress?.connector_ref.as_ref()?;
    let c = manifests.connectors.iter().find(|c| {
        c.metadata.namespace.as_deref() == Some(namespace)
            && c.metadata.name.as_deref() == Some(r.name.as_str())
    })?;
    Some(as_ready(
        c,
        project_of(c.spec.project_id.as_deref(), namespace),
    ))
}

/// A connector of the manifests as the services that use it will see it once it exists.
fn as_ready(c: &VpcAccessConnector, project: Option<String>) -> VpcAccessConnector {
    use crate::api::v1alpha1::{Condition, VpcAccessConnectorStatus, status};
    let mut ready = c.clone();
    ready.status = Some(VpcAccessConnectorStatus {
        state: Some(vpcaccessconnector::state::READY.to_owned()),
        resource_name: Some(vpcaccessconnector::connector_name(
            c,
            project.as_deref().unwrap_or("PROJECT"),
        )),
        observed_generation: c.metadata.generation,
        conditions: vec![Condition {
            type_: vpcaccessconnector::READY.into(),
            status: status::TRUE.into(),
            reason: "Ready".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    ready
}

fn source(manifests: &Manifests, kind: &str, namespace: &str, name: &str) -> String {
    manifests
        .source(kind, Some(namespace), name)
        .map(ToString::to_string)
        .unwrap_or_default()
}

async fn plan_service(
    manifests: &Manifests,
    obj: &CloudRunService,
    project: Option<String>,
    connector: Option<VpcAccessConnector>,
    policy: Cond,
    gcp: &Gcp,
    numbers: &ProjectNumbers,
) -> ObjectPlan {
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut out = ObjectPlan {
        kind: "CloudRunService",
        source: source(manifests, "CloudRunService", &namespace, &name),
        namespace,
        name,
        resource: None,
        action: Verdict::InSync,
        calls: vec![],
        reason: None,
        message: None,
        drift: vec![],
        notes: vec![],
    };
    if policy.reason == crate::controller::reasons::AUDIT_VIOLATION {
        out.notes.push(format!("audit: {}", policy.message));
    }
    // Outside a cluster the object has no uid: a service runwarden manages is taken as its own.
    let mut obj = obj.clone();
    let mut seed = Observed::default();
    if let Some(project) = &project {
        let name = render::service_name(&obj, project);
        let read = gcp.run.get_service(&name).await;
        if let Ok(Some(svc)) = &read
            && svc.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
            && let Some(owner) = svc.labels.get(OWNER_LABEL)
        {
            out.notes.push(format!(
                "{name} is managed by runwarden (owner uid {owner}): taken to be this object's"
            ));
            obj.metadata.uid = Some(owner.clone());
        }
        seed.service = Some(read);
    }
    // `runwarden plan` reads with the caller's own credentials, whatever identity the namespace
    // names.
    let input = Input {
        obj: &obj,
        project,
        connector,
        policy,
        identity: Ok(Identity::Controller),
        owners: &NoOwners,
    };
    let (plan, observed) =
        observe_and_plan_from(seed, gcp, numbers, |o| service_plan::plan(&input, o)).await;
    out.resource = plan.fields.resource_name.clone();
    out.drift = plan.fields.drift.clone();
    let actual = observed.service.and_then(Result::ok).flatten();
    for change in &plan.changes {
        out.calls.push(service_call(change, actual.as_ref()));
    }
    out.action = verdict(&plan.outcome, &out.calls, &plan.conditions);
    // Waiting for a key or a connector: what the reconcile does once it is there.
    if out.action == Verdict::Waits
        && let Some(project) = input.project.clone()
    {
        let connector = input
            .connector
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.resource_name.clone());
        let desired = render::desired_service(
            &obj,
            &render::Resolved {
                project,
                connector,
                built: None,
            },
        );
        let then = match &actual {
            None => {
                let mut service = desired.clone();
                service.name.clear();
                Some(Change::Create {
                    parent: render::parent(
                        input.project.as_deref().unwrap_or_default(),
                        &obj.spec.region,
                    ),
                    id: obj.service_id(),
                    service,
                })
            }
            Some(actual) => {
                let changed = render::changes(&desired, actual);
                (!changed.is_empty()).then(|| Change::Update {
                    service: render::update_from(actual, &desired),
                    changed,
                    adopt: false,
                })
            }
        };
        if let Some(then) = then {
            out.calls.push(service_call(&then, actual.as_ref()));
        }
    }
    // A created service's invokers are set by the pass after Google's operation finishes.
    if matches!(out.action, Verdict::Create | Verdict::Waits)
        && out.calls.iter().any(|c| c.method == "run.services.create")
    {
        out.calls.extend(first_members_call(
            "run.services.setIamPolicy",
            &plan.fields.resource_name.clone().unwrap_or_default(),
            obj.spec.access.mode,
            &service_plan::invoker_members(&obj),
        ));
    }
    if let Outcome::Stop(e) = &plan.outcome {
        out.reason = Some(e.metric_label().to_owned());
        out.message = Some(message_of(e));
    } else if out.action == Verdict::Drifted
        && let Some(c) = plan.conditions.iter().find(|c| !c.is_true())
    {
        out.reason = Some(c.reason.clone());
        out.message = Some(c.message.clone());
    }
    out
}

fn message_of(e: &Error) -> String {
    match e {
        Error::Spec { message, .. } | Error::Blocked { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn verdict(outcome: &Outcome, calls: &[Call], conditions: &[Cond]) -> Verdict {
    use crate::controller::reasons::{DRIFTED, VIOLATION};
    match outcome {
        Outcome::Stop(Error::Spec { reason, .. }) if *reason == VIOLATION => Verdict::Violation,
        Outcome::Stop(Error::Spec { .. }) => Verdict::Invalid,
        Outcome::Stop(Error::Blocked { .. }) => Verdict::Waits,
        Outcome::Stop(Error::Gcp(e))
            if !e.is_transient() && e.code != crate::gcp::Code::PermissionDenied =>
        {
            Verdict::Invalid
        }
        Outcome::Stop(_) => Verdict::Error,
        _ if calls.iter().any(|c| c.method.ends_with(".create")) => Verdict::Create,
        _ if !calls.is_empty() => Verdict::Update,
        _ if conditions.iter().any(|c| c.reason == DRIFTED) => Verdict::Drifted,
        _ => Verdict::InSync,
    }
}

/// The call a planned change makes, with its field-level diff.
fn service_call(change: &Change, actual: Option<&google_cloud_run_v2::model::Service>) -> Call {
    let call = |method, resource: &str| Call {
        method,
        resource: resource.to_owned(),
        fields: vec![],
        add: vec![],
        remove: vec![],
        ..Call::default()
    };
    match change {
        Change::SubmitBuild { request, .. } => Call {
            fields: vec![FieldChange {
                path: "image".into(),
                from: None,
                to: request.image_uri.clone(),
            }],
            ..call("run.builds.submit", &request.parent)
        },
        Change::GrantKey { key, member, .. } => Call {
            add: vec![member.clone()],
            role: Some(crate::controller::cloudrunservice::encryption::KMS_ROLE.to_owned()),
            ..call("kms.cryptoKeys.setIamPolicy", key)
        },
        Change::Create {
            parent,
            id,
            service,
        } => {
            let name = format!("{parent}/services/{id}");
            let mut named = service.clone();
            named.name = name.clone();
            let fields = render::shape(&named)
                .into_iter()
                .filter(|(path, v)| {
                    !(v.is_empty()
                        || v == "<unmanaged>"
                        || v == "[]"
                        || path == "template.vpcAccess.networkInterfaces" && v == "0")
                })
                .map(|(path, to)| FieldChange {
                    path,
                    from: None,
                    to,
                })
                .collect();
            Call {
                fields,
                ..call("run.services.create", &name)
            }
        }
        Change::Update {
            service, changed, ..
        } => {
            let want = render::shape(service);
            let have = actual.map(render::shape).unwrap_or_default();
            let fields = changed
                .iter()
                .map(|path| FieldChange {
                    path: path.clone(),
                    from: have.get(path).cloned(),
                    to: want.get(path).cloned().unwrap_or_else(|| path.clone()),
                })
                .collect();
            Call {
                fields,
                ..call("run.services.patch", &service.name)
            }
        }
        Change::SetInvokers(change) => members_call("run.services.setIamPolicy", change),
    }
}

/// The call of a write of `roles/run.invoker` members.
fn members_call(method: &'static str, change: &crate::controller::access::SetMembers) -> Call {
    Call {
        add: change.add.clone(),
        remove: change.remove.clone(),
        role: Some(crate::controller::iam::INVOKER_ROLE.to_owned()),
        mode: mode_name(change.mode),
        kept: change.kept.clone(),
        method,
        resource: change.resource.clone(),
        fields: vec![],
    }
}

/// The members write of the pass after a create: the one access decision, on the new
/// resource's empty policy; `None` when nobody is to hold the role.
fn first_members_call(
    method: &'static str,
    resource: &str,
    mode: crate::api::v1alpha1::AccessMode,
    members: &std::collections::BTreeSet<String>,
) -> Option<Call> {
    let wanted = crate::controller::access::Wanted {
        resource,
        mode,
        members,
        recorded: None,
        was_authoritative: false,
    };
    crate::controller::access::decide(wanted, &google_cloud_iam_v1::model::Policy::default())
        .change
        .map(|change| members_call(method, &change))
}

/// `Some("Additive")` in Additive mode (the default goes unsaid).
fn mode_name(mode: crate::api::v1alpha1::AccessMode) -> Option<&'static str> {
    (mode == crate::api::v1alpha1::AccessMode::Additive).then_some("Additive")
}

async fn plan_connector(
    manifests: &Manifests,
    obj: &VpcAccessConnector,
    project: Option<String>,
    gcp: &Gcp,
    numbers: &ProjectNumbers,
) -> ObjectPlan {
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut out = ObjectPlan {
        kind: "VpcAccessConnector",
        source: source(manifests, "VpcAccessConnector", &namespace, &name),
        namespace,
        name,
        resource: project
            .as_deref()
            .map(|p| vpcaccessconnector::connector_name(obj, p)),
        action: Verdict::InSync,
        calls: vec![],
        reason: None,
        message: None,
        drift: vec![],
        notes: vec![],
    };
    // Outside a cluster nothing records ownership: a connector that exists is taken as this
    // object's (a note says so), so the plan shows what Google has against the spec.
    let mut obj = obj.clone();
    if let Some(resource) = &out.resource
        && let Ok(Some(_)) = gcp.vpcaccess.get_connector(resource).await
    {
        out.notes.push(format!(
            "{resource} exists: taken to be this object's (connectors carry no labels; a cluster records ownership in status.resourceName)"
        ));
        obj.status = Some(crate::api::v1alpha1::VpcAccessConnectorStatus {
            resource_name: Some(resource.clone()),
            ..Default::default()
        });
    }
    let input = connector_plan::Input {
        obj: &obj,
        project,
        users: vec![],
        identity: Ok(Identity::Controller),
        claimed_by: None,
    };
    let (plan, _) = observe_and_plan_from(connector_plan::Observed::default(), gcp, numbers, |o| {
        connector_plan::plan(&input, o)
    })
    .await;
    if let Some(connector_plan::Change::Create {
        name, connector, ..
    }) = &plan.change
    {
        let fields = [
            ("network", connector.network.clone()),
            ("ipCidrRange", connector.ip_cidr_range.clone()),
            (
                "subnet",
                connector
                    .subnet
                    .as_ref()
                    .map(|s| format!("{}/{}", s.project_id, s.name))
                    .unwrap_or_default(),
            ),
            ("machineType", connector.machine_type.clone()),
            ("minInstances", connector.min_instances.to_string()),
            ("maxInstances", connector.max_instances.to_string()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty() && v != "0")
        .map(|(path, to)| FieldChange {
            path: path.to_owned(),
            from: None,
            to,
        })
        .collect();
        out.calls.push(Call {
            method: "vpcaccess.connectors.create",
            resource: name.clone(),
            fields,
            add: vec![],
            remove: vec![],
            ..Call::default()
        });
    }
    out.action = verdict(&plan.outcome, &out.calls, &[]);
    if let Outcome::Stop(e) = &plan.outcome {
        out.reason = Some(e.metric_label().to_owned());
        out.message = Some(message_of(e));
    }
    out
}

/// Every distinct verdict of a report, counted.
pub fn summary(report: &Report) -> BTreeMap<Verdict, usize> {
    let mut out = BTreeMap::new();
    for o in &report.objects {
        *out.entry(o.action).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests;

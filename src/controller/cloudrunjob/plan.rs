//! Plan (pure): from a CloudRunJob, what the caches know and what has been observed in Google,
//! what a pass does. The stages a service has run unchanged where a job has the same thing
//! (identity, project, guardrails, egress, key, ownership, the `roles/run.invoker` members);
//! the job's own are the job itself, its execution token and its Cloud Scheduler job.
//!
//! [`plan`]: admit → follow the operation → egress and key → the job (absent: create; not
//! ours: refuse; else compare) → executors → schedule → execution.

use std::collections::BTreeSet;

use google_cloud_iam_v1::model::Policy;
use google_cloud_run_v2::model::{Execution, Job, condition, job::CreateExecution};
use google_cloud_scheduler_v1::model::{
    HttpMethod, HttpTarget, Job as SchedulerJob, OAuthToken, job::State as SchedulerState,
};
use kube::ResourceExt;

use super::observe::{Observed, Read, finished_job, need};
use super::render;
use super::{ACCESS_READY, JOB_READY, SCHEDULE_READY};
use crate::api::v1alpha1::{
    AdoptionPolicy, CloudRunJob, CloudRunJobStatus, DeletionPolicy, DriftAspect, LatestExecution,
    ManagementPolicy, ScheduleStatus,
};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL};
use crate::controller::access::{self, SetMembers};
use crate::controller::cloudrunservice::plan::Owners;
use crate::controller::cloudrunservice::render::Resolved;
use crate::controller::cloudrunservice::{encryption, network, plan as service_plan};
use crate::controller::conditions::Cond;
use crate::controller::iam::INVOKER_ROLE;
use crate::controller::operation::{Followed, follow};
use crate::controller::ownership::{Named, claim};
use crate::controller::reasons::*;
use crate::controller::{CleanupOutcome, Note, Outcome, last_segment, no_project_message};
use crate::error::{Error, reason_of};
use crate::gcp::GcpError;
use crate::gcp::identity::Identity;

/// The OAuth scope Cloud Scheduler asks a token for when it calls the job's `:run`.
pub const SCHEDULER_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// What a pass knows without calling Google.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The object.
    pub obj: &'a CloudRunJob,
    /// Its project, resolved (spec, namespace annotation, default).
    pub project: Option<String>,
    /// The VpcAccessConnector that `egress.connectorRef` names, if it exists.
    pub connector: Option<crate::api::v1alpha1::VpcAccessConnector>,
    /// `PolicyCompliant`, as the RunSecurityPolicies that match the namespace judge the spec.
    pub policy: Cond,
    /// Whose credentials the pass acts with; `Err`: none usable.
    pub identity: Result<Identity, String>,
    /// The live CloudRunJobs, by the owner uid Google resources carry.
    pub owners: &'a dyn Owners,
}

/// The status fields besides conditions, as a pass leaves them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    /// The job's full Google name.
    pub resource_name: Option<String>,
    /// Executions Google created.
    pub execution_count: Option<i32>,
    /// The project's Cloud Run service agent (CMEK).
    pub service_agent: Option<String>,
    /// A Google operation in flight.
    pub operation: Option<String>,
    /// Managed field paths that differed from the spec at this pass.
    pub drift: Vec<String>,
    /// The newest execution.
    pub latest_execution: Option<LatestExecution>,
    /// The Scheduler job.
    pub schedule: Option<ScheduleStatus>,
    /// `access.mode: Additive`: the members runwarden granted.
    pub access: Option<crate::api::v1alpha1::AccessStatus>,
}

impl Fields {
    fn from_status(status: Option<&CloudRunJobStatus>) -> Self {
        status.map_or_else(Self::default, |s| Self {
            resource_name: s.resource_name.clone(),
            execution_count: s.execution_count,
            service_agent: s.service_agent.clone(),
            operation: s.operation.clone(),
            drift: s.drift.clone(),
            latest_execution: s.latest_execution.clone(),
            schedule: s.schedule.clone(),
            access: s.access.clone(),
        })
    }
}

/// A write to Google.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Add the Cloud Run service agent to the key's encrypter/decrypter binding (the service's
    /// own change).
    GrantKey {
        /// The key.
        key: String,
        /// The service agent.
        member: String,
        /// The policy to write.
        policy: Policy,
    },
    /// Create the job.
    Create {
        /// `projects/{p}/locations/{l}`.
        parent: String,
        /// Job id.
        id: String,
        /// The job (without a name), with the execution token if one is due.
        job: Box<Job>,
    },
    /// Replace the job (the whole job: UpdateJob has no field mask).
    Update {
        /// Google's job with the managed fields replaced.
        job: Box<Job>,
        /// The managed fields that differ (or the token that starts an execution).
        changed: Vec<String>,
        /// Whether this takes over a job the object did not create.
        adopt: bool,
    },
    /// Set the members of `roles/run.invoker` on the job (in `access.mode`).
    SetExecutors(SetMembers),
    /// Create the Scheduler job (its name recorded in status first).
    CreateSchedule {
        /// `projects/{p}/locations/{l}`.
        parent: String,
        /// The Scheduler job.
        job: Box<SchedulerJob>,
    },
    /// Update the fields of `mask` of the Scheduler job.
    UpdateSchedule {
        /// The Scheduler job with the desired fields.
        job: Box<SchedulerJob>,
        /// `schedule`, `time_zone`, `http_target`, `description`.
        mask: Vec<String>,
    },
    /// Pause the Scheduler job.
    PauseSchedule(String),
    /// Resume the Scheduler job.
    ResumeSchedule(String),
    /// Delete the Scheduler job (`schedule` left the spec).
    DeleteSchedule(String),
}

/// What one pass does.
#[derive(Debug)]
pub struct Plan {
    /// Sub-conditions decided by this pass.
    pub conditions: Vec<Cond>,
    /// Writes to make, in order; the first that fails ends the pass.
    pub changes: Vec<Change>,
    /// What happens after them.
    pub outcome: Outcome,
    /// Status fields as they stand after the writes.
    pub fields: Fields,
    /// Events to publish that do not depend on a write.
    pub notes: Vec<Note>,
}

impl Plan {
    fn new(status: Option<&CloudRunJobStatus>) -> Self {
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

    fn halt<T>(&mut self, c: Cond, error: Error) -> Option<T> {
        self.set(c);
        self.outcome = Outcome::Stop(error);
        None
    }

    fn google_failed<T>(&mut self, type_: &'static str, e: &GcpError) -> Option<T> {
        self.halt(
            Cond::fail(type_, reason_of(e.code), e.message.clone()),
            e.clone().into(),
        )
    }

    /// Whether the pass writes nothing and finds Google as the spec asks.
    pub fn in_sync(&self) -> bool {
        self.changes.is_empty() && matches!(self.outcome, Outcome::InSync)
    }
}

type Step<T> = Result<Option<T>, Read>;

/// What a pass may take as observed without reading it (see
/// [`crate::controller::plan_and_act`]): the job of an object that has never named one in its
/// status (no `status.resourceName`, no operation) is absent, and so is the Cloud Scheduler job
/// of one that has never recorded a schedule (`status.schedule`). Never in Observe.
pub fn presumed(input: &Input) -> Option<Observed> {
    if input.obj.spec.management_policy == ManagementPolicy::Observe {
        return None;
    }
    let status = input.obj.status.as_ref();
    let named = status.is_some_and(|s| s.resource_name.is_some() || s.operation.is_some());
    let scheduled = status.is_some_and(|s| s.schedule.is_some());
    let mut observed = Observed::default();
    if !named {
        observed.job = Some(Ok(None));
    }
    if !scheduled && input.obj.spec.schedule.is_some() {
        observed.schedule = Some(Ok(None));
    }
    (observed.job.is_some() || observed.schedule.is_some()).then_some(observed)
}

/// The plan of a pass over a live CloudRunJob, or the next [`Read`] it needs.
pub fn plan(input: &Input, obs: &Observed) -> Result<Plan, Read> {
    let mut p = Plan::new(input.obj.status.as_ref());
    let Some(project) = admit(input, obs, &mut p)? else {
        return Ok(p);
    };
    let Some(finished) = follow_operation(input, project, obs, &mut p)? else {
        return Ok(p);
    };
    let Some(connector) = dependencies(input, project, obs, &mut p)? else {
        return Ok(p);
    };
    let resolved = Resolved {
        project: project.to_owned(),
        connector,
        built: None,
    };
    let desired = render::desired_job(input.obj, &resolved);
    let observe = input.obj.spec.management_policy == ManagementPolicy::Observe;
    let left = finished
        .is_some()
        .then(|| finished_job(obs.operation.as_ref()))
        .flatten()
        .filter(|j| j.name == desired.name);
    let actual = match &left {
        Some(job) => job,
        None => match need(&obs.job, || Read::Job(desired.name.clone()))? {
            Err(e) => {
                p.google_failed::<()>(JOB_READY, e);
                return Ok(p);
            }
            Ok(None) => return Ok(absent(input, project, desired, p)),
            Ok(Some(actual)) => actual,
        },
    };
    let Some(ours) = owned(input, actual, finished.as_ref(), &mut p) else {
        return Ok(p);
    };
    let failed = finished.as_ref().and_then(Followed::error);
    let mut drift = Vec::new();
    let started = token_started(input.obj, &actual.name, obs)?;
    let p = job_stage(
        input, &desired, actual, ours, failed, started, p, &mut drift,
    );
    let mut p = executors(p, input.obj, &desired.name, obs)?;
    if let Some(c) = p.changes.iter().position(is_executors) {
        drift.push(EXECUTORS_DRIFT.to_owned());
        if observe && let Change::SetExecutors(SetMembers { add, remove, .. }) = p.changes.remove(c)
        {
            p.set(Cond::fail(
                    ACCESS_READY,
                    DRIFTED,
                    format!(
                        "{INVOKER_ROLE} on the job differs from spec.access.executors: would add [{}], remove [{}] (Observe: runwarden changes nothing)",
                        add.join(", "),
                        remove.join(", ")
                    ),
                ));
        }
    }
    let mut p = schedule(p, input, project, obs)?;
    if !matches!(p.outcome, Outcome::Stop(_)) {
        p = execution(p, input, actual, obs)?;
    }
    report_drift(input.obj, &mut p, drift, observe);
    Ok(p)
}

fn is_executors(c: &Change) -> bool {
    matches!(c, Change::SetExecutors(_))
}

/// The identity, the project, the controller's validation and the guardrails.
fn admit<'a>(input: &'a Input, obs: &Observed, p: &mut Plan) -> Step<&'a str> {
    let obj = input.obj;
    if let Err(message) = &input.identity {
        let c = Cond::fail(JOB_READY, IDENTITY_NOT_CONFIGURED, message);
        let e = Error::Spec {
            reason: IDENTITY_NOT_CONFIGURED,
            message: message.clone(),
        };
        return Ok(p.halt(c, e));
    }
    let Some(project) = input.project.as_deref() else {
        let message = no_project_message(&obj.namespace().unwrap_or_default());
        let c = Cond::fail(JOB_READY, INVALID_SPEC, &message);
        let e = Error::Spec {
            reason: INVALID_SPEC,
            message,
        };
        return Ok(p.halt(c, e));
    };
    if let Err(message) = super::validate::validate(obj) {
        let c = Cond::fail(JOB_READY, INVALID_SPEC, &message);
        let e = Error::Spec {
            reason: INVALID_SPEC,
            message,
        };
        return Ok(p.halt(c, e));
    }
    let wanted = render::job_name(obj, project);
    if let Some(pinned) = obj
        .status
        .as_ref()
        .and_then(|s| s.resource_name.clone())
        .filter(|n| *n != wanted)
    {
        let uid = obj.metadata.uid.as_deref().unwrap_or_default();
        match need(&obs.pinned, || Read::Pinned(pinned.clone()))? {
            Err(e) => return Ok(p.google_failed(JOB_READY, e)),
            Ok(Some(j)) if j.labels.get(OWNER_LABEL).map(String::as_str) == Some(uid) => {
                let message = format!(
                    "this object manages Cloud Run job {pinned}, but its project now resolves to {project}; runwarden neither moves nor orphans a job: restore the project, or delete this object (its deletionPolicy applies to {pinned}) and create it again"
                );
                let c = Cond::fail(JOB_READY, PROJECT_CHANGED, &message);
                let e = Error::Spec {
                    reason: PROJECT_CHANGED,
                    message,
                };
                return Ok(p.halt(c, e));
            }
            Ok(_) => {}
        }
    }
    p.fields.resource_name = Some(wanted);
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

/// An operation this object started: wait for it without holding a worker. A create or update
/// that carries a `runToken` finishes only when its execution does: meanwhile the execution is
/// followed (`ExecutionRunning`, with its task counts).
fn follow_operation(
    input: &Input,
    project: &str,
    obs: &Observed,
    p: &mut Plan,
) -> Step<Option<Followed>> {
    let Some(op) = p.fields.operation.clone() else {
        return Ok(Some(None));
    };
    match follow(need(&obs.operation, || Read::Operation(op.clone()))?) {
        Ok(Followed::Pending) => {
            let obj = input.obj;
            let running = match execution_name(obj, &render::job_name(obj, project)) {
                Some(name) => need(&obs.execution, || Read::Execution(name))?
                    .as_ref()
                    .ok()
                    .cloned()
                    .flatten(),
                None => None,
            };
            match running {
                Some(e) => {
                    let token = obj.spec.execution.as_ref().and_then(|t| t.token());
                    let latest = latest_execution(&e, token.map(|(t, _)| t));
                    let known = obj
                        .status
                        .as_ref()
                        .and_then(|s| s.latest_execution.as_ref())
                        .is_some_and(|l| l.name == latest.name);
                    if !known {
                        p.notes.push(Note::normal(
                            "ExecutionStarted",
                            "Run",
                            format!("Started execution {}", latest.name),
                        ));
                    }
                    p.set(execution_condition(&latest, true));
                    p.fields.latest_execution = Some(latest);
                }
                None => p.set(Cond::unknown(
                    JOB_READY,
                    RECONCILING,
                    format!("waiting for Google operation {op}"),
                )),
            }
            Ok(None)
        }
        Ok(f) => {
            p.fields.operation = None;
            Ok(Some(Some(f)))
        }
        Err(e) => Ok(p.google_failed(JOB_READY, e)),
    }
}

/// Egress and the key, by the service's own stages: the connector's full name to deploy with.
fn dependencies(
    input: &Input,
    project: &str,
    obs: &Observed,
    p: &mut Plan,
) -> Step<Option<String>> {
    let workload = input.obj.spec.workload();
    let namespace = input.obj.namespace().unwrap_or_default();
    let connector =
        match network::plan(&workload, &namespace, input.connector.as_ref(), &obs.shared)? {
            Ok((c, connector)) => {
                p.set(c);
                connector
            }
            Err((c, e)) => return Ok(p.halt(c, e)),
        };
    let key = encryption::plan(&workload, project, &obs.shared)?;
    p.fields.service_agent = key.agent;
    let observe = workload.management_policy == ManagementPolicy::Observe;
    match key.result {
        Ok((_, Some(service_plan::Change::GrantKey { key, member, .. }))) if observe => {
            p.set(Cond::fail(
                crate::controller::cloudrunservice::ENCRYPTION_READY,
                DRIFTED,
                format!(
                    "{member} does not hold {} on {key} (Observe: runwarden grants nothing)",
                    encryption::KMS_ROLE
                ),
            ));
            Ok(Some(connector))
        }
        Ok((c, grant)) => {
            p.set(c);
            if let Some(service_plan::Change::GrantKey {
                key,
                member,
                policy,
            }) = grant
            {
                p.changes.push(Change::GrantKey {
                    key,
                    member,
                    policy,
                });
            }
            Ok(Some(connector))
        }
        Err((c, e)) => Ok(p.halt(c, e)),
    }
}

/// The execution of the spec's token: `{job}/executions/{jobId}-{token}`.
pub fn execution_name(obj: &CloudRunJob, job: &str) -> Option<String> {
    let (token, _) = obj.spec.execution.as_ref()?.token()?;
    Some(format!("{job}/executions/{}-{token}", obj.job_id()))
}

/// Whether the spec's token has started its execution: status records it, or (after a crash
/// or a lost status write) Google has it. Reads the execution only in the second case.
fn token_started(obj: &CloudRunJob, job: &str, obs: &Observed) -> Result<bool, Read> {
    let Some((token, _)) = obj.spec.execution.as_ref().and_then(|e| e.token()) else {
        return Ok(true);
    };
    let recorded = obj
        .status
        .as_ref()
        .and_then(|s| s.latest_execution.as_ref())
        .is_some_and(|e| e.token.as_deref() == Some(token));
    if recorded {
        return Ok(true);
    }
    let name = execution_name(obj, job).unwrap_or_default();
    Ok(matches!(
        need(&obs.execution, || Read::Execution(name))?,
        Ok(Some(_))
    ))
}

/// The execution token the spec asks for, unless its execution has been started.
fn due_token(obj: &CloudRunJob, started: bool) -> Option<CreateExecution> {
    let trigger = obj.spec.execution.as_ref()?;
    let (token, run) = trigger.token()?;
    (!started).then(|| {
        if run {
            CreateExecution::RunExecutionToken(token.to_owned())
        } else {
            CreateExecution::StartExecutionToken(token.to_owned())
        }
    })
}

/// No such job in Google: create it (with the token, if any).
fn absent(input: &Input, project: &str, desired: Job, mut p: Plan) -> Plan {
    let obj = input.obj;
    let name = desired.name.clone();
    p.set(Cond::unknown(
        ACCESS_READY,
        PENDING,
        "set once the job exists",
    ));
    if obj.spec.management_policy == ManagementPolicy::Observe {
        p.fields.drift = vec!["job".to_owned()];
        p.set(Cond::fail(
            JOB_READY,
            DRIFTED,
            format!("Cloud Run job {name} does not exist (Observe: runwarden creates nothing)"),
        ));
        p.outcome = Outcome::InSync;
        return p;
    }
    let mut job = desired;
    job.name.clear();
    job.create_execution = due_token(obj, false);
    p.changes.push(Change::Create {
        parent: crate::controller::parent(project, &obj.spec.region),
        id: obj.job_id(),
        job: Box::new(job),
    });
    p.set(Cond::unknown(
        JOB_READY,
        RECONCILING,
        "Cloud Run is creating the job",
    ));
    p
}

/// Whether the job is this object's; `None` when it is someone else's and may not be adopted.
fn owned(input: &Input, actual: &Job, finished: Option<&Followed>, p: &mut Plan) -> Option<bool> {
    let obj = input.obj;
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let owner = actual.labels.get(OWNER_LABEL).map(String::as_str);
    let named = Named {
        what: "Cloud Run job",
        name: &actual.name,
        owner_kind: "CloudRunJob",
        marker: &format!("{OWNER_LABEL} label"),
    };
    let observe = obj.spec.management_policy == ManagementPolicy::Observe;
    let adopt = obj.spec.adoption_policy == AdoptionPolicy::Adopt;
    let ours = match claim(named, owner, uid, observe, adopt, input.owners) {
        Ok(ours) => ours,
        Err((reason, message, error)) => {
            return p.halt(Cond::fail(JOB_READY, reason, message), error);
        }
    };
    p.fields.execution_count = Some(actual.execution_count);
    if finished == Some(&Followed::Done { error: None }) && ours && actual.generation == 1 {
        p.notes.push(Note::normal(
            "Created",
            "Create",
            format!("Created Cloud Run job {}", actual.name),
        ));
    }
    Some(ours)
}

/// The managed fields that differ, without those the spec leaves to others.
fn differences(input: &Input, desired: &Job, actual: &Job) -> Vec<String> {
    let mut changed = render::changes(desired, actual);
    if input.obj.spec.ignore_drift.contains(&DriftAspect::Image) {
        changed.retain(|path| {
            !(path.starts_with("template.template.containers[") && path.ends_with("].image"))
        });
    }
    changed
}

/// The job compared: an update when it differs (or a token is due), else `JobReady` from
/// what Cloud Run reports.
#[allow(clippy::too_many_arguments)]
fn job_stage(
    input: &Input,
    desired: &Job,
    actual: &Job,
    ours: bool,
    operation_error: Option<&str>,
    started: bool,
    mut p: Plan,
    drift: &mut Vec<String>,
) -> Plan {
    let obj = input.obj;
    let mut desired = desired.clone();
    if obj.spec.management_policy == ManagementPolicy::Observe {
        // Observe does not take the job over: its ownership labels are not compared.
        for key in [MANAGED_BY_LABEL, OWNER_LABEL] {
            match actual.labels.get(key) {
                Some(v) => desired.labels.insert(key.to_owned(), v.clone()),
                None => desired.labels.remove(key),
            };
        }
        let changed = differences(input, &desired, actual);
        p.set(if changed.is_empty() {
            job_condition(actual, None)
        } else {
            Cond::fail(
                JOB_READY,
                DRIFTED,
                format!(
                    "Google differs from the spec at {} (Observe: runwarden changes nothing)",
                    changed.join(", ")
                ),
            )
        });
        drift.extend(changed);
        p.outcome = Outcome::InSync;
        return p;
    }
    let changed = differences(input, &desired, actual);
    drift.extend(changed.iter().cloned());
    let token = due_token(obj, started);
    if !changed.is_empty() || token.is_some() {
        let mut what = changed.clone();
        if let Some(t) = &token {
            what.push(format!("execution token {}", token_of(t)));
        }
        p.set(Cond::unknown(
            JOB_READY,
            RECONCILING,
            format!("Cloud Run is updating the job: {}", what.join(", ")),
        ));
        let mut update = if changed.is_empty() {
            let mut same = actual.clone();
            same.create_execution = None;
            same
        } else {
            let mut update = render::update_from(actual, &desired);
            if obj.spec.ignore_drift.contains(&DriftAspect::Image)
                && let (Some(have), Some(out)) = (
                    actual.template.as_ref().and_then(|t| t.template.as_ref()),
                    update.template.as_mut().and_then(|t| t.template.as_mut()),
                )
            {
                for (c, h) in out.containers.iter_mut().zip(&have.containers) {
                    c.image = h.image.clone();
                }
            }
            update
        };
        update.create_execution = token;
        p.changes.push(Change::Update {
            job: Box::new(update),
            changed: what,
            adopt: !ours,
        });
        return p;
    }
    let c = job_condition(actual, operation_error);
    p.outcome = match c.status {
        crate::api::v1alpha1::status::TRUE => Outcome::InSync,
        crate::api::v1alpha1::status::UNKNOWN => Outcome::Progressing,
        _ => Outcome::Stop(Error::Blocked {
            reason: DEPLOY_FAILED,
            message: c.message.clone(),
        }),
    };
    p.set(c);
    p
}

fn token_of(t: &CreateExecution) -> &str {
    match t {
        CreateExecution::RunExecutionToken(t) | CreateExecution::StartExecutionToken(t) => t,
        _ => "",
    }
}

/// `JobReady` from what Cloud Run reports about the job itself.
pub fn job_condition(actual: &Job, operation_error: Option<&str>) -> Cond {
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
            JOB_READY,
            RECONCILING,
            or(message, "Cloud Run is deploying"),
        );
    }
    match terminal.state {
        // A runToken's execution that failed fails the job's terminal condition (with an
        // execution reason): the job itself is deployed, and its execution is judged on its own.
        State::ConditionFailed
            if matches!(
                terminal.reasons,
                Some(condition::Reasons::ExecutionReason(_))
            ) =>
        {
            Cond::ok(
                JOB_READY,
                "Deployed",
                format!(
                    "Cloud Run job {} matches the spec",
                    last_segment(&actual.name)
                ),
            )
        }
        State::ConditionFailed => Cond::fail(
            JOB_READY,
            DEPLOY_FAILED,
            or(message, "Cloud Run could not deploy the job"),
        ),
        State::ConditionSucceeded if actual.observed_generation == actual.generation => Cond::ok(
            JOB_READY,
            "Deployed",
            format!(
                "Cloud Run job {} matches the spec",
                last_segment(&actual.name)
            ),
        ),
        _ if operation_error.is_some() => Cond::fail(JOB_READY, DEPLOY_FAILED, message),
        _ => Cond::unknown(
            JOB_READY,
            RECONCILING,
            "Cloud Run has not finished deploying the latest generation",
        ),
    }
}

/// The members `roles/run.invoker` on the job must hold: the executors and the schedule's
/// account (so a schedule is never denied at its first tick).
pub fn executor_members(obj: &CloudRunJob) -> BTreeSet<String> {
    let mut members: BTreeSet<String> = obj.spec.access.executors.iter().cloned().collect();
    if let Some(s) = &obj.spec.schedule {
        members.insert(format!("serviceAccount:{}", s.service_account));
    }
    members
}

/// The drift path of executor members.
pub const EXECUTORS_DRIFT: &str = "access.executors";

/// `AccessReady`, and the executors' write when the policy differs.
fn executors(mut p: Plan, obj: &CloudRunJob, name: &str, obs: &Observed) -> Result<Plan, Read> {
    if matches!(p.outcome, Outcome::Stop(_)) {
        return Ok(p);
    }
    let members = executor_members(obj);
    let policy = match need(&obs.policy, || Read::Policy(name.to_owned()))? {
        Ok(policy) => policy,
        Err(e) => {
            p.halt::<()>(access::failed(e), e.clone().into());
            return Ok(p);
        }
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
    p.changes.extend(decision.change.map(Change::SetExecutors));
    p.set(Cond::ok(
        ACCESS_READY,
        "ExecutorsSet",
        format!("{INVOKER_ROLE} on the job is held by {}", decision.summary),
    ));
    Ok(p)
}

/// The Cloud Scheduler job's name: the Cloud Run job's id, in its project and region.
pub fn schedule_name(obj: &CloudRunJob, project: &str) -> String {
    format!(
        "{}/jobs/{}",
        crate::controller::parent(project, &obj.spec.region),
        obj.job_id()
    )
}

/// What a Scheduler job runwarden manages carries in its description (Scheduler jobs have no
/// labels): `managed-by: runwarden, runwarden-owner: <uid>`.
pub fn owner_description(uid: &str) -> String {
    format!("{MANAGED_BY_LABEL}: {MANAGED_BY_VALUE}, {OWNER_LABEL}: {uid}")
}

/// The owner uid a Scheduler job's description records, if any.
pub fn description_owner(description: &str) -> Option<&str> {
    description
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix(&format!("{OWNER_LABEL}: ")[..]))
}

/// The Scheduler job `spec.schedule` asks for.
pub fn desired_schedule(obj: &CloudRunJob, project: &str) -> Option<SchedulerJob> {
    let s = obj.spec.schedule.as_ref()?;
    let job = render::job_name(obj, project);
    Some(
        SchedulerJob::new()
            .set_name(schedule_name(obj, project))
            .set_description(owner_description(
                obj.metadata.uid.as_deref().unwrap_or_default(),
            ))
            .set_schedule(&s.cron)
            .set_time_zone(&s.time_zone)
            .set_http_target(
                HttpTarget::new()
                    .set_uri(format!("https://run.googleapis.com/v2/{job}:run"))
                    .set_http_method(HttpMethod::Post)
                    .set_oauth_token(
                        OAuthToken::new()
                            .set_service_account_email(&s.service_account)
                            .set_scope(SCHEDULER_SCOPE),
                    ),
            ),
    )
}

/// The fields of the Scheduler job that differ from the desired one, as update-mask paths.
pub fn schedule_changes(desired: &SchedulerJob, actual: &SchedulerJob) -> Vec<String> {
    let mut mask = Vec::new();
    if desired.schedule != actual.schedule {
        mask.push("schedule".to_owned());
    }
    let zone = |z: &str| {
        if z.is_empty() || z == "UTC" {
            "Etc/UTC".to_owned()
        } else {
            z.to_owned()
        }
    };
    if zone(&desired.time_zone) != zone(&actual.time_zone) {
        mask.push("time_zone".to_owned());
    }
    let target = |j: &SchedulerJob| {
        j.http_target().map(|t| {
            (
                t.uri.clone(),
                matches!(t.http_method, HttpMethod::Post | HttpMethod::Unspecified),
                t.oauth_token()
                    .map(|o| (o.service_account_email.clone(), o.scope.clone())),
            )
        })
    };
    if target(desired) != target(actual) {
        mask.push("http_target".to_owned());
    }
    if desired.description != actual.description {
        mask.push("description".to_owned());
    }
    mask
}

/// `ScheduleReady` and the Scheduler writes: create, update, pause or resume, or delete once
/// `schedule` left the spec. The name is recorded in status before the create call.
fn schedule(mut p: Plan, input: &Input, project: &str, obs: &Observed) -> Result<Plan, Read> {
    if matches!(p.outcome, Outcome::Stop(_)) {
        return Ok(p);
    }
    let obj = input.obj;
    let observe = obj.spec.management_policy == ManagementPolicy::Observe;
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let Some(desired) = desired_schedule(obj, project) else {
        p.set(Cond::ok(SCHEDULE_READY, NOT_CONFIGURED, "no schedule"));
        // A schedule this object created and that has left the spec goes.
        let Some(recorded) = p.fields.schedule.clone() else {
            return Ok(p);
        };
        let name = recorded.resource_name;
        match need(&obs.schedule, || Read::Schedule(name.clone()))? {
            Err(e) => {
                p.google_failed::<()>(SCHEDULE_READY, e);
            }
            Ok(Some(actual)) if description_owner(&actual.description) == Some(uid) => {
                if observe {
                    p.set(Cond::fail(
                        SCHEDULE_READY,
                        DRIFTED,
                        format!("Cloud Scheduler job {name} exists but the spec has no schedule (Observe: runwarden deletes nothing)"),
                    ));
                } else {
                    p.changes.push(Change::DeleteSchedule(name));
                    p.fields.schedule = None;
                }
            }
            Ok(_) => p.fields.schedule = None,
        }
        return Ok(p);
    };
    let name = desired.name.clone();
    let paused = obj.spec.schedule.as_ref().is_some_and(|s| s.paused);
    let actual = match need(&obs.schedule, || Read::Schedule(name.clone()))? {
        Err(e) => {
            p.google_failed::<()>(SCHEDULE_READY, e);
            return Ok(p);
        }
        Ok(actual) => actual,
    };
    let Some(actual) = actual else {
        if observe {
            p.set(Cond::fail(
                SCHEDULE_READY,
                DRIFTED,
                format!(
                    "Cloud Scheduler job {name} does not exist (Observe: runwarden creates nothing)"
                ),
            ));
            return Ok(p);
        }
        p.fields.schedule = Some(ScheduleStatus {
            resource_name: name.clone(),
            state: Some(if paused { "Paused" } else { "Enabled" }.to_owned()),
            ..ScheduleStatus::default()
        });
        p.changes.push(Change::CreateSchedule {
            parent: crate::controller::parent(project, &obj.spec.region),
            job: Box::new(desired),
        });
        if paused {
            p.changes.push(Change::PauseSchedule(name.clone()));
        }
        // Cloud Scheduler creates synchronously: a refusal replaces this condition.
        p.set(schedule_ready(&name, paused));
        return Ok(p);
    };
    let named = Named {
        what: "Cloud Scheduler job",
        name: &name,
        owner_kind: "CloudRunJob",
        marker: "description's runwarden-owner",
    };
    let adopt = obj.spec.adoption_policy == AdoptionPolicy::Adopt;
    let owner = description_owner(&actual.description);
    if let Err((reason, message, error)) = claim(named, owner, uid, observe, adopt, input.owners) {
        p.halt::<()>(Cond::fail(SCHEDULE_READY, reason, message), error);
        return Ok(p);
    }
    p.fields.schedule = Some(schedule_status(&name, actual));
    let mask = schedule_changes(&desired, actual);
    let is_paused = actual.state == SchedulerState::Paused;
    if observe {
        let mut differ = mask.clone();
        if is_paused != paused {
            differ.push("paused".into());
        }
        p.set(if differ.is_empty() {
            schedule_ready(&name, paused)
        } else {
            Cond::fail(
                SCHEDULE_READY,
                DRIFTED,
                format!(
                    "Cloud Scheduler job {name} differs from spec.schedule at {} (Observe: runwarden changes nothing)",
                    differ.join(", ")
                ),
            )
        });
        return Ok(p);
    }
    if !mask.is_empty() {
        p.changes.push(Change::UpdateSchedule {
            job: Box::new(desired),
            mask,
        });
    }
    if is_paused && !paused {
        p.changes.push(Change::ResumeSchedule(name.clone()));
    } else if !is_paused && paused {
        p.changes.push(Change::PauseSchedule(name.clone()));
    }
    p.set(schedule_ready(&name, paused));
    Ok(p)
}

fn schedule_ready(name: &str, paused: bool) -> Cond {
    Cond::ok(
        SCHEDULE_READY,
        if paused { "Paused" } else { "Scheduled" },
        format!(
            "Cloud Scheduler job {name} {}",
            if paused {
                "is paused"
            } else {
                "runs the job on its schedule"
            }
        ),
    )
}

/// `status.schedule` from Google's Scheduler job.
fn schedule_status(name: &str, actual: &SchedulerJob) -> ScheduleStatus {
    ScheduleStatus {
        resource_name: name.to_owned(),
        state: Some(
            match actual.state {
                SchedulerState::Paused => "Paused",
                SchedulerState::UpdateFailed => "UpdateFailed",
                _ => "Enabled",
            }
            .to_owned(),
        ),
        last_attempt_time: actual.last_attempt_time.map(|t| timestamp(&t)),
        last_attempt_code: actual.status.as_ref().map(|s| s.code),
    }
}

fn timestamp(t: &google_cloud_wkt::Timestamp) -> String {
    jiff::Timestamp::new(t.seconds(), 0)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The state of an execution: `Running`, `Succeeded`, `Failed` or `Cancelled`.
pub fn execution_state(e: &Execution) -> &'static str {
    if e.completion_time.is_none() {
        "Running"
    } else if e.cancelled_count > 0 && e.failed_count == 0 {
        "Cancelled"
    } else if e.failed_count > 0 || e.succeeded_count < e.task_count {
        "Failed"
    } else {
        "Succeeded"
    }
}

/// `status.latestExecution` of an execution.
pub fn latest_execution(e: &Execution, token: Option<&str>) -> LatestExecution {
    LatestExecution {
        name: last_segment(&e.name).to_owned(),
        token: token.map(str::to_owned),
        state: execution_state(e).to_owned(),
        succeeded_tasks: e.succeeded_count,
        failed_tasks: e.failed_count,
        running_tasks: e.running_count,
        start_time: e.start_time.map(|t| timestamp(&t)),
        completion_time: e.completion_time.map(|t| timestamp(&t)),
    }
}

/// The execution of the spec's token: followed while it runs; `JobReady` waits on it (a
/// `runToken` until it completes, a `startToken` until it started). Without a token,
/// `status.latestExecution` is Google's `latestCreatedExecution`.
fn execution(mut p: Plan, input: &Input, actual: &Job, obs: &Observed) -> Result<Plan, Read> {
    let obj = input.obj;
    let job_ready = p
        .conditions
        .iter()
        .any(|c| c.type_ == JOB_READY && c.status == crate::api::v1alpha1::status::TRUE);
    let token = obj.spec.execution.as_ref().and_then(|t| t.token());
    let Some((token, run)) = token else {
        if let Some(latest) = actual
            .latest_created_execution
            .as_ref()
            .filter(|l| !l.name.is_empty())
        {
            use google_cloud_run_v2::model::execution_reference::CompletionStatus as S;
            let state = match latest.completion_status {
                S::ExecutionSucceeded => "Succeeded",
                S::ExecutionFailed => "Failed",
                S::ExecutionCancelled => "Cancelled",
                _ => "Running",
            };
            let known = p
                .fields
                .latest_execution
                .clone()
                .filter(|l| l.name == last_segment(&latest.name));
            p.fields.latest_execution = Some(LatestExecution {
                name: last_segment(&latest.name).to_owned(),
                token: None,
                state: state.to_owned(),
                start_time: known.as_ref().and_then(|k| k.start_time.clone()),
                completion_time: latest.completion_time.map(|t| timestamp(&t)),
                ..known.unwrap_or_default()
            });
        }
        return Ok(p);
    };
    if !job_ready {
        return Ok(p);
    }
    let name = execution_name(obj, &actual.name).unwrap_or_default();
    let previous = obj
        .status
        .as_ref()
        .and_then(|s| s.latest_execution.clone())
        .filter(|l| l.token.as_deref() == Some(token));
    // A finished execution stays finished: no read on resync.
    if let Some(done) = previous.as_ref().filter(|l| l.state != "Running") {
        p.fields.latest_execution = Some(done.clone());
        p.set(execution_condition(done, run));
        if done.state != "Succeeded" && run {
            p.outcome = Outcome::Stop(Error::Spec {
                reason: EXECUTION_FAILED,
                message: execution_condition(done, run).message,
            });
        }
        return Ok(p);
    }
    let found = match need(&obs.execution, || Read::Execution(name.clone()))? {
        Err(e) => {
            p.google_failed::<()>(JOB_READY, e);
            return Ok(p);
        }
        Ok(found) => found,
    };
    let Some(e) = found else {
        // Started by the update this pass makes, or Google has not created it yet.
        if !p
            .changes
            .iter()
            .any(|c| matches!(c, Change::Update { .. } | Change::Create { .. }))
        {
            p.set(Cond::unknown(
                JOB_READY,
                EXECUTION_RUNNING,
                format!("waiting for execution {} to appear", last_segment(&name)),
            ));
            p.outcome = Outcome::Progressing;
        }
        return Ok(p);
    };
    let latest = latest_execution(e, Some(token));
    let before = previous.as_ref().map(|l| l.state.as_str());
    if before.is_none() {
        p.notes.push(Note::normal(
            "ExecutionStarted",
            "Run",
            format!("Started execution {} (token {token})", latest.name),
        ));
    }
    if before != Some(latest.state.as_str()) {
        match latest.state.as_str() {
            "Succeeded" => p.notes.push(Note::normal(
                "ExecutionSucceeded",
                "Run",
                format!(
                    "Execution {} succeeded: {} task(s)",
                    latest.name, latest.succeeded_tasks
                ),
            )),
            "Failed" | "Cancelled" => p.notes.push(Note::warning(
                "ExecutionFailed",
                "Run",
                format!(
                    "Execution {} {}: {} task(s) failed, {} succeeded",
                    latest.name,
                    latest.state.to_lowercase(),
                    latest.failed_tasks,
                    latest.succeeded_tasks
                ),
            )),
            _ => {}
        }
    }
    let c = execution_condition(&latest, run);
    p.outcome = match (latest.state.as_str(), run) {
        (_, false) | ("Succeeded", true) => p.outcome_if_in_sync(),
        ("Running", true) => Outcome::Progressing,
        _ => Outcome::Stop(Error::Spec {
            reason: EXECUTION_FAILED,
            message: c.message.clone(),
        }),
    };
    p.set(c);
    p.fields.latest_execution = Some(latest);
    Ok(p)
}

impl Plan {
    fn outcome_if_in_sync(&mut self) -> Outcome {
        std::mem::replace(&mut self.outcome, Outcome::InSync)
    }
}

/// `JobReady` from the token's execution.
fn execution_condition(e: &LatestExecution, run: bool) -> Cond {
    match (e.state.as_str(), run) {
        (_, false) => Cond::ok(
            JOB_READY,
            "ExecutionStarted",
            format!("execution {} started (startToken)", e.name),
        ),
        ("Succeeded", true) => Cond::ok(
            JOB_READY,
            "ExecutionSucceeded",
            format!(
                "execution {} succeeded: {} task(s)",
                e.name, e.succeeded_tasks
            ),
        ),
        ("Running", true) => Cond::unknown(
            JOB_READY,
            EXECUTION_RUNNING,
            format!(
                "execution {} is running: {} running, {} succeeded, {} failed",
                e.name, e.running_tasks, e.succeeded_tasks, e.failed_tasks
            ),
        ),
        (state, true) => Cond::fail(
            JOB_READY,
            EXECUTION_FAILED,
            format!(
                "execution {} {}: {} task(s) failed, {} succeeded; set a new spec.execution.runToken to run it again",
                e.name,
                state.to_lowercase(),
                e.failed_tasks,
                e.succeeded_tasks
            ),
        ),
    }
}

/// Drift is a difference Google came to have after runwarden had made it match this spec.
fn report_drift(obj: &CloudRunJob, p: &mut Plan, mut drift: Vec<String>, observe: bool) {
    if observe {
        p.fields.drift = drift;
        return;
    }
    drift.retain(|path| {
        let type_ = if path == EXECUTORS_DRIFT {
            ACCESS_READY
        } else {
            JOB_READY
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

fn held(obj: &CloudRunJob, type_: &str) -> bool {
    obj.status.as_ref().is_some_and(|s| {
        s.observed_generation == obj.metadata.generation
            && crate::controller::conditions::find(&s.conditions, type_)
                .is_some_and(|c| c.status == crate::api::v1alpha1::status::TRUE)
    })
}

/// What a pass over an object being deleted does.
#[derive(Debug)]
pub struct CleanupPlan {
    /// Sub-conditions decided by this pass.
    pub conditions: Vec<Cond>,
    /// The Scheduler job to delete first, if any.
    pub delete_schedule: Option<String>,
    /// The job to delete, if any.
    pub delete: Option<String>,
    /// What happens after.
    pub outcome: CleanupOutcome,
    /// Status fields.
    pub fields: Fields,
    /// Events to publish.
    pub notes: Vec<Note>,
}

/// The plan of a pass whose Google clients could not be made (the namespace's identity was
/// refused): nothing is read or written, and `JobReady` says why.
pub fn without_clients(input: &Input, e: &GcpError) -> Plan {
    Plan {
        conditions: vec![
            input.policy.clone(),
            Cond::fail(JOB_READY, reason_of(e.code), e.message.clone()),
        ],
        changes: vec![],
        outcome: Outcome::Stop(e.clone().into()),
        fields: Fields::from_status(input.obj.status.as_ref()),
        notes: vec![],
    }
}

/// The plan of a cleanup pass whose Google clients could not be made, when the cleanup needs
/// Google: the finalizer stays, and `JobReady` says why and how out.
pub fn cleanup_without_clients(input: &Input, e: &GcpError) -> CleanupPlan {
    let obj = input.obj;
    let name = obj
        .status
        .as_ref()
        .and_then(|s| s.resource_name.clone())
        .or_else(|| input.project.as_deref().map(|p| render::job_name(obj, p)))
        .unwrap_or_default();
    CleanupPlan {
        conditions: vec![Cond::fail(
            JOB_READY,
            reason_of(e.code),
            format!("{}; {}", e.message, stuck_deletion_help(&name)),
        )],
        delete_schedule: None,
        delete: None,
        outcome: CleanupOutcome::Stop(e.clone().into()),
        fields: Fields::from_status(obj.status.as_ref()),
        notes: vec![],
    }
}

/// How to get an object whose Google job cannot be deleted out of its finalizer.
pub fn stuck_deletion_help(name: &str) -> String {
    format!(
        "the finalizer keeps this object until {name} is deleted: give the namespace's Google identity the permission (roles/run.admin and roles/cloudscheduler.admin on the project), or set spec.deletionPolicy: Abandon to leave the job in Google and let the object go"
    )
}

/// The plan of a pass over an object being deleted, or the next [`Read`] it needs: the
/// Scheduler job this object created goes first (so it cannot start an execution of a job
/// being deleted), then the job. Running executions are Google's business.
pub fn plan_cleanup(input: &Input, obs: &Observed) -> Result<CleanupPlan, Read> {
    let obj = input.obj;
    let mut p = CleanupPlan {
        conditions: vec![],
        delete_schedule: None,
        delete: None,
        outcome: CleanupOutcome::Done,
        fields: Fields::from_status(obj.status.as_ref()),
        notes: vec![],
    };
    if obj.spec.deletion_policy == DeletionPolicy::Abandon {
        p.notes.push(Note::normal(
            "Abandoned",
            "Delete",
            "left the Cloud Run job and its Scheduler job in place (deletionPolicy: Abandon)",
        ));
        return Ok(p);
    }
    let pinned = obj.status.as_ref().and_then(|s| s.resource_name.clone());
    let Some(name) = pinned.or_else(|| {
        input
            .project
            .as_deref()
            .map(|project| render::job_name(obj, project))
    }) else {
        return Ok(p);
    };
    let fail =
        |mut p: CleanupPlan, type_: &'static str, reason: &str, message: String, e: Error| {
            p.conditions.push(Cond::fail(
                type_,
                reason,
                format!("{message}; {}", stuck_deletion_help(&name)),
            ));
            p.outcome = CleanupOutcome::Stop(e);
            Ok(p)
        };
    if let Err(message) = &input.identity {
        let e = Error::Spec {
            reason: IDENTITY_NOT_CONFIGURED,
            message: message.clone(),
        };
        return fail(
            p,
            JOB_READY,
            IDENTITY_NOT_CONFIGURED,
            format!("cannot delete {name}: {message}"),
            e,
        );
    }
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    if let Some(schedule) = p.fields.schedule.clone() {
        match need(&obs.schedule, || {
            Read::Schedule(schedule.resource_name.clone())
        })? {
            Err(e) => {
                return fail(
                    p,
                    SCHEDULE_READY,
                    reason_of(e.code),
                    e.message.clone(),
                    e.clone().into(),
                );
            }
            Ok(Some(actual)) if description_owner(&actual.description) == Some(uid) => {
                p.delete_schedule = Some(schedule.resource_name);
            }
            Ok(_) => p.fields.schedule = None,
        }
    }
    let mut finished = false;
    if let Some(op) = p.fields.operation.clone() {
        match follow(need(&obs.operation, || Read::Operation(op.clone()))?) {
            Ok(Followed::Pending) => {
                p.outcome = CleanupOutcome::wait(format!("operation {op}"));
                return Ok(p);
            }
            Ok(f) => {
                finished = f == (Followed::Done { error: None });
                p.fields.operation = None;
            }
            Err(e) => {
                return fail(
                    p,
                    JOB_READY,
                    reason_of(e.code),
                    e.message.clone(),
                    e.clone().into(),
                );
            }
        }
    }
    let actual = match need(&obs.job, || Read::Job(name.clone()))? {
        Err(e) => {
            return fail(
                p,
                JOB_READY,
                reason_of(e.code),
                e.message.clone(),
                e.clone().into(),
            );
        }
        Ok(None) => {
            if finished {
                p.notes.push(Note::normal(
                    "Deleted",
                    "Delete",
                    format!("Deleted Cloud Run job {name}"),
                ));
            }
            return Ok(p);
        }
        Ok(Some(actual)) => actual,
    };
    if actual.labels.get(OWNER_LABEL).map(String::as_str) != Some(uid) {
        p.notes.push(Note::normal(
            "LeftInPlace",
            "Delete",
            format!("Cloud Run job {name} was not created by this object: left in place"),
        ));
        return Ok(p);
    }
    if actual.reconciling && p.fields.operation.is_none() {
        p.conditions.push(Cond::fail(
            JOB_READY,
            DELETING,
            "waiting for the running update to finish before deleting",
        ));
        p.outcome = CleanupOutcome::wait(format!("update of {name} before deleting it"));
        return Ok(p);
    }
    p.delete = Some(name);
    Ok(p)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

//! The `CloudRunJob` controller: a Cloud Run job with who may execute it, the executions its
//! tokens start, and the Cloud Scheduler job that triggers it.
//!
//! The pass has the service's shape and reuses its parts: the [`Workload`] render aspects of
//! the task template, the egress and key stages, the ownership rule, the `roles/run.invoker`
//! edit and its read-modify-write, the guardrails' verdict, the status rules and the frame
//! (finalizer, backoff, events). [`plan`] adds what only a job has: its execution token and its
//! schedule.
//!
//! [`Workload`]: crate::api::v1alpha1::Workload

pub mod act;
pub mod observe;
pub mod plan;
pub mod render;
pub mod status;
pub mod validate;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Cond};
use super::{Context, observe_and_plan, reasons, write_status};
use crate::api::v1alpha1::{CloudRunJob, CloudRunJobStatus};
use crate::error::Result;
use plan::Input;

pub use super::cloudrunservice::{ENCRYPTION_READY, NETWORK_READY, POLICY_COMPLIANT};

/// The kind, for metrics and logs.
pub const KIND: &str = "CloudRunJob";
/// The Cloud Run job matches the spec (and, with a `runToken`, that token's execution
/// succeeded; with a `startToken`, started).
pub const JOB_READY: &str = "JobReady";
/// `roles/run.invoker` on the job holds the executors (and the schedule's account).
pub const ACCESS_READY: &str = "AccessReady";
/// The Cloud Scheduler job matches `spec.schedule` (`NotConfigured` counts as True).
pub const SCHEDULE_READY: &str = "ScheduleReady";
/// Every sub-condition, in causal order.
pub const SUB_CONDITIONS: [&str; 6] = [
    POLICY_COMPLIANT,
    NETWORK_READY,
    ENCRYPTION_READY,
    JOB_READY,
    ACCESS_READY,
    SCHEDULE_READY,
];

impl super::frame::Reconciled for CloudRunJob {
    const KIND: &'static str = KIND;
}

impl super::frame::Finalized for CloudRunJob {
    fn apply<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>> {
        Box::pin(apply(self, ctx))
    }

    fn cleanup<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>> {
        Box::pin(cleanup(self, ctx))
    }
}

async fn apply(obj: &CloudRunJob, ctx: &Context) -> Result<Action> {
    let owners = CachedOwners(ctx);
    let input = input(obj, ctx, &owners);
    // Clients that cannot be made (the namespace's identity refused) fail this pass like any
    // other step: with a status that says so.
    let gcp = ctx.gcp(&input.identity).await;
    let record = super::access::StatusRecord {
        client: &ctx.client,
        obj,
        current: obj.status.as_ref(),
        with: |s, access| crate::api::v1alpha1::CloudRunJobStatus {
            access: Some(access.clone()),
            ..s.cloned().unwrap_or_default()
        },
    };
    let (status, applied) = pass_with(&input, &gcp, &ctx.project_numbers, &record).await;
    ctx.publish(obj, &applied.notes).await;
    write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    applied.outcome.into_result(ctx, &status.conditions)
}

/// One pass over a live object, without Kubernetes: observe and plan, act, and the status it
/// leaves (to write when it differs from the stored one).
pub async fn pass(
    input: &Input<'_>,
    gcp: &crate::gcp::Gcp,
    numbers: &super::context::ProjectNumbers,
) -> (CloudRunJobStatus, act::Applied) {
    pass_with(input, &Ok(gcp.clone()), numbers, &super::access::Unrecorded).await
}

/// [`pass`] with the clients of the object's identity, or the error that kept them from being
/// made, and `record` to persist grants before they are made (`access.mode: Additive`).
pub async fn pass_with(
    input: &Input<'_>,
    gcp: &crate::gcp::GcpResult<crate::gcp::Gcp>,
    numbers: &super::context::ProjectNumbers,
    record: &dyn super::access::Record,
) -> (CloudRunJobStatus, act::Applied) {
    let applied = match gcp {
        Ok(gcp) => {
            super::plan_and_act(
                plan::presumed(input),
                gcp,
                numbers,
                |o| plan::plan(input, o),
                |plan| act::execute(plan, gcp, record),
            )
            .await
        }
        Err(e) => {
            let plan = plan::without_clients(input, e);
            act::Applied {
                conditions: plan.conditions,
                fields: plan.fields,
                notes: plan.notes,
                outcome: plan.outcome,
            }
        }
    };
    let status = status::compute(
        input.obj,
        &applied.conditions,
        applied.fields.clone(),
        applied.outcome.failure(),
        &super::now(),
    );
    (status, applied)
}

async fn cleanup(obj: &CloudRunJob, ctx: &Context) -> Result<Action> {
    let owners = CachedOwners(ctx);
    let input = input(obj, ctx, &owners);
    let gcp = ctx.gcp(&input.identity).await;
    let (status, cleaned, write) = cleanup_pass(&input, &gcp, &ctx.project_numbers).await;
    ctx.publish(obj, &cleaned.notes).await;
    let result = cleaned.outcome.into_result(ctx, &status.conditions);
    if write {
        write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    }
    result
}

/// One pass over an object being deleted, without Kubernetes, and whether to write the status
/// it leaves: every pass that keeps the object (a wait, or a failure at any step) writes it, so
/// a stuck deletion says why from its first failed pass.
pub async fn cleanup_pass(
    input: &Input<'_>,
    gcp: &crate::gcp::GcpResult<crate::gcp::Gcp>,
    numbers: &super::context::ProjectNumbers,
) -> (CloudRunJobStatus, act::Cleaned, bool) {
    let obj = input.obj;
    let cleaned = match gcp {
        Ok(gcp) => {
            let plan = observe_and_plan(gcp, numbers, |o| plan::plan_cleanup(input, o)).await;
            act::execute_cleanup(plan, gcp).await
        }
        // Without clients, only a cleanup that needs no Google (Abandon, nothing created) goes on.
        Err(e) => {
            let plan = match plan::plan_cleanup(input, &observe::Observed::default()) {
                Ok(plan) if plan.delete.is_none() && plan.delete_schedule.is_none() => plan,
                _ => plan::cleanup_without_clients(input, e),
            };
            act::Cleaned {
                conditions: plan.conditions,
                fields: plan.fields,
                notes: plan.notes,
                outcome: plan.outcome,
            }
        }
    };
    let previous = obj.status.as_ref().and_then(|s| s.operation.as_ref());
    let operation_changed = cleaned.fields.operation.as_ref() != previous;
    let status = status::compute(
        obj,
        &cleaned.conditions,
        cleaned.fields.clone(),
        cleaned.outcome.failure(),
        &super::now(),
    );
    let write = cleaned.outcome.keeps_object() || operation_changed;
    (status, cleaned, write)
}

/// The owners of Google resources, as the controller's cache of CloudRunJobs knows them.
struct CachedOwners<'a>(&'a Context);

impl std::fmt::Debug for CachedOwners<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedOwners")
    }
}

impl super::cloudrunservice::plan::Owners for CachedOwners<'_> {
    fn live(&self, uid: &str) -> Option<String> {
        let found = self
            .0
            .caches
            .jobs
            .state()
            .into_iter()
            .find(|s| s.meta().uid.as_deref() == Some(uid))
            .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()));
        super::cloudrunservice::owner_in_view(found, uid, &self.0.config)
    }
}

/// What a pass knows about the object from the controller's caches.
fn input<'a>(
    obj: &'a CloudRunJob,
    ctx: &Context,
    owners: &'a dyn super::cloudrunservice::plan::Owners,
) -> Input<'a> {
    let namespace = obj.namespace().unwrap_or_default();
    let connector = obj
        .spec
        .egress
        .as_ref()
        .and_then(|e| e.connector_ref.as_ref())
        .and_then(|r| ctx.caches.connector(&namespace, &r.name));
    let project = ctx.project_for(obj.spec.project_id.as_deref(), &namespace);
    let policy = policy_condition(
        obj,
        &ctx.caches.namespace_labels(&namespace),
        project.as_deref(),
        &ctx.caches.policies(),
    );
    Input {
        obj,
        project,
        connector,
        policy,
        identity: ctx.identity_for(&namespace),
        owners,
    }
}

/// `PolicyCompliant` of a job: the RunSecurityPolicies whose selector matches its namespace,
/// judged by the rules that mean something for a job (see [`crate::policy`]).
pub fn policy_condition(
    obj: &CloudRunJob,
    namespace_labels: &std::collections::BTreeMap<String, String>,
    project: Option<&str>,
    policies: &[crate::api::v1alpha1::RunSecurityPolicy],
) -> Cond {
    let namespace = obj.namespace().unwrap_or_default();
    let subject = crate::policy::Subject::job(&obj.spec, &namespace, namespace_labels, project);
    super::cloudrunservice::verdict_condition(&subject, policies)
}

/// Whether the object's Cloud Run job is Ready for its current generation.
pub fn is_ready(obj: &CloudRunJob) -> Option<bool> {
    let status = obj.status.as_ref()?;
    conditions::is_ready(
        &status.conditions,
        status.observed_generation,
        obj.meta().generation,
    )
}

/// The reasons a job's `Ready` can show while runwarden works towards it (Argo CD:
/// `Progressing`): the services' and a running execution.
pub fn progressing(reason: &str) -> bool {
    reasons::PROGRESSING.contains(&reason) || reason == reasons::EXECUTION_RUNNING
}

//! The `CloudRunService` controller.
//!
//! Each pass is a pipeline: resolve the project → validate (pure) → render the desired Cloud
//! Run service (pure) → follow an operation in flight → read the service → create it, or patch
//! only what differs → invoker IAM → status (pure), written only when it changed.

mod encryption;
mod network;
pub mod render;
mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;

use google_cloud_longrunning::model::operation::Result as OpResult;
use google_cloud_run_v2::model::{Service, condition};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument};

use super::conditions::{self, Cond};
use super::iam::{self, ALL_USERS, INVOKER_ROLE};
use super::{Context, error_policy_for, reconcile_with_finalizer, write_status};
use crate::api::OWNER_LABEL;
use crate::api::v1alpha1::{
    AdoptionPolicy, CloudRunService, CloudRunServiceStatus, DeletionPolicy,
};
use crate::error::{Error, Result, reason_of};
use crate::gcp::{Code, GcpError};
use render::Resolved;

/// The kind, for metrics and logs.
pub const KIND: &str = "CloudRunService";

/// Condition types, in causal order: the first one not True gives `Ready` its reason.
pub const POLICY_COMPLIANT: &str = "PolicyCompliant";
/// Egress is configured as asked.
pub const NETWORK_READY: &str = "NetworkReady";
/// The key is usable and the service agent holds the role.
pub const ENCRYPTION_READY: &str = "EncryptionReady";
/// The Cloud Run service matches the spec and serves.
pub const SERVICE_READY: &str = "ServiceReady";
/// The invokers equal the spec.
pub const ACCESS_READY: &str = "AccessReady";
/// Every sub-condition, in causal order.
pub const SUB_CONDITIONS: [&str; 5] = [
    POLICY_COMPLIANT,
    NETWORK_READY,
    ENCRYPTION_READY,
    SERVICE_READY,
    ACCESS_READY,
];

/// Reconciles one CloudRunService.
#[instrument(skip(guard, ctx), fields(kind = KIND, namespace = guard.namespace(), name = guard.name_any()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<CloudRunService>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    reconcile_with_finalizer(
        KIND,
        &guard,
        &ctx,
        |o, c| Box::pin(apply(o, c)),
        |o, c| Box::pin(cleanup(o, c)),
    )
    .await
}

/// Retry policy after a failed reconcile.
pub fn error_policy(
    guard: Arc<DeserializeGuard<CloudRunService>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    error_policy_for(
        KIND,
        guard.namespace().unwrap_or_default(),
        guard.name_any(),
        err,
        &ctx,
    )
}

/// The status being computed during one pass.
#[derive(Default)]
pub(crate) struct Draft {
    conditions: Vec<Cond>,
    uri: Option<String>,
    resource_name: Option<String>,
    latest_ready_revision: Option<String>,
    /// The project's Cloud Run service agent, once known (CMEK).
    pub(crate) service_agent: Option<String>,
    operation: Option<String>,
}

impl Draft {
    /// Starts from what the object's status says, so values a pass does not reach are kept.
    fn from_status(status: Option<&CloudRunServiceStatus>) -> Self {
        let Some(s) = status else {
            return Self::default();
        };
        Self {
            conditions: vec![],
            uri: s.uri.clone(),
            resource_name: s.resource_name.clone(),
            latest_ready_revision: s.latest_ready_revision.clone(),
            service_agent: s.service_agent.clone(),
            operation: s.operation.clone(),
        }
    }

    pub(crate) fn set(&mut self, c: Cond) {
        self.conditions.retain(|o| o.type_ != c.type_);
        self.conditions.push(c);
    }

    /// The status to store: every sub-condition (a pass that stopped early keeps the previous
    /// value of those it did not reach) and `Ready` first.
    fn into_status(self, obj: &CloudRunService, now: &str) -> CloudRunServiceStatus {
        let old = obj
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let subs: Vec<Cond> = SUB_CONDITIONS
            .iter()
            .map(|t| {
                self.conditions
                    .iter()
                    .find(|c| c.type_ == *t)
                    .cloned()
                    .unwrap_or_else(|| match conditions::find(old, t) {
                        Some(prev) => Cond {
                            type_: t,
                            status: status_str(&prev.status),
                            reason: prev.reason.clone(),
                            message: prev.message.clone(),
                        },
                        None => Cond::unknown(t, "Pending", "not evaluated yet"),
                    })
            })
            .collect();
        let mut all = vec![conditions::ready(&subs)];
        all.extend(subs);
        let generation = obj.metadata.generation;
        CloudRunServiceStatus {
            observed_generation: generation,
            conditions: conditions::merge(old, &all, generation, now),
            uri: self.uri,
            resource_name: self.resource_name,
            latest_ready_revision: self.latest_ready_revision,
            service_agent: self.service_agent,
            operation: self.operation,
        }
    }
}

fn status_str(s: &str) -> &'static str {
    use crate::api::v1alpha1::status;
    match s {
        status::TRUE => status::TRUE,
        status::FALSE => status::FALSE,
        _ => status::UNKNOWN,
    }
}

async fn apply(obj: &CloudRunService, ctx: &Context) -> Result<Action> {
    let mut draft = Draft::from_status(obj.status.as_ref());
    let result = steps(obj, ctx, &mut draft).await;
    // Keep the timestamps of an unchanged status, so an unchanged pass writes nothing.
    let status = draft.into_status(obj, &super::now());
    write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    result
}

async fn steps(obj: &CloudRunService, ctx: &Context, d: &mut Draft) -> Result<Action> {
    let spec = &obj.spec;
    let namespace = obj.namespace().unwrap_or_default();
    let Some(project) = ctx.project_for(spec.project_id.as_deref(), &namespace) else {
        let message = format!(
            "no Google Cloud project: set spec.projectId, annotate namespace {namespace} with runwarden.dev/project-id, or start the controller with --default-project"
        );
        d.set(Cond::fail(SERVICE_READY, "InvalidSpec", &message));
        return Err(Error::Spec {
            reason: "InvalidSpec",
            message,
        });
    };
    if let Err(invalid) = validate::validate(obj) {
        let (condition, error) = *invalid;
        d.set(condition);
        return Err(error);
    }
    d.set(Cond::ok(
        POLICY_COMPLIANT,
        "NoPolicy",
        "no RunSecurityPolicy applies to this namespace",
    ));
    let connector = network::resolve(obj, ctx, &project, d).await?;
    encryption::ensure(obj, ctx, &project, d).await?;
    let resolved = Resolved { project, connector };

    let desired = render::desired_service(obj, &resolved);
    let name = desired.name.clone();
    d.resource_name = Some(name.clone());

    // An operation we started: wait for it without holding a worker.
    let mut operation_error = None;
    if let Some(op_name) = d.operation.clone() {
        match ctx.gcp.run.get_operation(&op_name).await {
            Ok(op) if !op.done => {
                d.set(Cond::unknown(
                    SERVICE_READY,
                    "Reconciling",
                    format!("waiting for Google operation {op_name}"),
                ));
                return Ok(Action::requeue(ctx.config.operation_poll));
            }
            Ok(op) => {
                if let Some(OpResult::Error(status)) = op.result {
                    operation_error = Some(status.message.clone());
                }
                d.operation = None;
            }
            Err(e) if e.code == Code::NotFound => d.operation = None,
            Err(e) => return Err(service_failed(d, e)),
        }
    }

    let actual = match ctx
        .gcp
        .run
        .get_service(&name)
        .await
        .map_err(|e| service_failed(d, e))?
    {
        Some(actual) => actual,
        None => {
            let mut body = desired;
            body.name.clear();
            let op = ctx
                .gcp
                .run
                .create_service(
                    &render::parent(&resolved.project, &spec.region),
                    &obj.service_id(),
                    body,
                )
                .await
                .map_err(|e| service_failed(d, e))?;
            info!(service = %name, operation = %op.name, "creating Cloud Run service");
            ctx.event(
                obj,
                EventType::Normal,
                "Created",
                "Create",
                format!("Creating Cloud Run service {name}"),
            )
            .await;
            d.operation = Some(op.name);
            d.set(Cond::unknown(
                SERVICE_READY,
                "Reconciling",
                "Cloud Run is creating the service",
            ));
            d.set(Cond::unknown(
                ACCESS_READY,
                "Pending",
                "set once the service exists",
            ));
            return Ok(Action::requeue(ctx.config.operation_poll));
        }
    };

    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let owner = actual.labels.get(OWNER_LABEL).map(String::as_str);
    let ours = owner == Some(uid);
    if !ours && spec.adoption_policy == AdoptionPolicy::Never {
        let message = format!(
            "Cloud Run service {name} exists and was not created by this object (its {OWNER_LABEL} label is {}); set spec.adoptionPolicy: Adopt to take it over",
            owner.map_or("absent".to_owned(), |o| format!("{o:?}"))
        );
        d.set(Cond::fail(SERVICE_READY, "AlreadyExists", &message));
        return Err(Error::Spec {
            reason: "AlreadyExists",
            message,
        });
    }
    d.uri = Some(actual.uri.clone()).filter(|u| !u.is_empty());
    d.latest_ready_revision =
        Some(last_segment(&actual.latest_ready_revision)).filter(|r| !r.is_empty());

    let mut changes = render::changes(&desired, &actual);
    // CMEK recovery: Cloud Run does not retry a rollout of this very template that failed on
    // the key (ENCRYPTION_KEY_*). `encryption::ensure` has just found the key usable and granted,
    // so send the same template again: Cloud Run rolls it out anew. Not in the pass that saw our
    // own operation fail: that one reports DeployFailed and backs off before the next attempt.
    let key_retry =
        changes.is_empty() && operation_error.is_none() && encryption::failed_on_key(&actual);
    if key_retry {
        changes.push("template (again, after a rollout failed on the encryption key)".into());
    }
    if !changes.is_empty() {
        let op = ctx
            .gcp
            .run
            .update_service(render::update_from(&actual, &desired))
            .await
            .map_err(|e| service_failed(d, e))?;
        let (reason, verb) = if ours {
            ("Updated", "Updating")
        } else {
            ("Adopted", "Adopting")
        };
        let fields = changes.join(", ");
        info!(service = %name, operation = %op.name, %fields, "{verb} Cloud Run service");
        ctx.event(
            obj,
            EventType::Normal,
            reason,
            "Update",
            format!("{verb} Cloud Run service {name}: {fields}"),
        )
        .await;
        d.operation = Some(op.name);
        d.set(Cond::unknown(
            SERVICE_READY,
            "Reconciling",
            format!("Cloud Run is deploying changes to {fields}"),
        ));
        ensure_invokers(obj, ctx, &name, d).await?;
        return Ok(Action::requeue(ctx.config.operation_poll));
    }

    let service = service_condition(&actual, operation_error.as_deref());
    d.set(service.clone());
    ensure_invokers(obj, ctx, &name, d).await?;
    match service.status {
        crate::api::v1alpha1::status::TRUE => Ok(Action::requeue(ctx.resync())),
        crate::api::v1alpha1::status::UNKNOWN => Ok(Action::requeue(ctx.config.operation_poll)),
        // A failed deploy can heal outside the spec (a grant, a re-enabled key, an image pushed
        // later): look again with backoff, writing nothing while nothing changed.
        _ => Err(Error::Blocked {
            reason: if service.reason == "RevisionFailed" {
                "RevisionFailed"
            } else {
                "DeployFailed"
            },
            message: service.message,
        }),
    }
}

/// `ServiceReady` from what Cloud Run reports about the service.
fn service_condition(actual: &Service, operation_error: Option<&str>) -> Cond {
    use condition::State;
    let terminal = actual.terminal_condition.clone().unwrap_or_default();
    let message = if terminal.message.is_empty() {
        operation_error.unwrap_or_default().to_owned()
    } else {
        terminal.message.clone()
    };
    if actual.reconciling
        || matches!(
            terminal.state,
            State::ConditionPending | State::ConditionReconciling
        )
    {
        return Cond::unknown(
            SERVICE_READY,
            "Reconciling",
            if message.is_empty() {
                "Cloud Run is deploying".to_owned()
            } else {
                message
            },
        );
    }
    match terminal.state {
        State::ConditionFailed => {
            let reason = match terminal.reasons {
                Some(condition::Reasons::RevisionReason(_)) => "RevisionFailed",
                _ => "DeployFailed",
            };
            Cond::fail(
                SERVICE_READY,
                reason,
                if message.is_empty() {
                    "Cloud Run could not deploy the service".to_owned()
                } else {
                    message
                },
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
            "Reconciling",
            "Cloud Run has not finished deploying the latest generation",
        ),
    }
}

/// Makes `roles/run.invoker` hold exactly the spec's members.
async fn ensure_invokers(
    obj: &CloudRunService,
    ctx: &Context,
    name: &str,
    d: &mut Draft,
) -> Result<()> {
    let mut members: BTreeSet<String> = obj.spec.access.invokers.iter().cloned().collect();
    if obj.spec.access.allow_unauthenticated {
        members.insert(ALL_USERS.to_owned());
    }
    let written = iam::read_modify_write(ctx.gcp.run.as_ref(), name, |p| {
        iam::with_exact_members(p, INVOKER_ROLE, &members)
    })
    .await;
    match written {
        Ok(changed) => {
            if changed {
                let list = if members.is_empty() {
                    "nobody".to_owned()
                } else {
                    members.iter().cloned().collect::<Vec<_>>().join(", ")
                };
                ctx.event(
                    obj,
                    EventType::Normal,
                    "InvokersUpdated",
                    "SetIamPolicy",
                    format!("{INVOKER_ROLE} on {name} is now held by {list}"),
                )
                .await;
            }
            d.set(Cond::ok(
                ACCESS_READY,
                "InvokersSet",
                format!(
                    "{INVOKER_ROLE} is held by {} member(s) as specified",
                    members.len()
                ),
            ));
            Ok(())
        }
        Err(e) => {
            let reason = if e.code == Code::InvalidArgument {
                "InvalidMember"
            } else {
                reason_of(e.code)
            };
            d.set(Cond::fail(ACCESS_READY, reason, e.message.clone()));
            Err(e.into())
        }
    }
}

/// Records a failed Cloud Run call on `ServiceReady` and returns the error.
fn service_failed(d: &mut Draft, e: GcpError) -> Error {
    d.set(Cond::fail(
        SERVICE_READY,
        reason_of(e.code),
        e.message.clone(),
    ));
    e.into()
}

async fn cleanup(obj: &CloudRunService, ctx: &Context) -> Result<Action> {
    if obj.spec.deletion_policy == DeletionPolicy::Abandon {
        ctx.event(
            obj,
            EventType::Normal,
            "Abandoned",
            "Delete",
            "left the Cloud Run service in place (deletionPolicy: Abandon)",
        )
        .await;
        return Ok(Action::await_change());
    }
    let namespace = obj.namespace().unwrap_or_default();
    let Some(project) = ctx.project_for(obj.spec.project_id.as_deref(), &namespace) else {
        // Without a project nothing can have been created.
        return Ok(Action::await_change());
    };
    let name = render::service_name(obj, &project);
    let mut d = Draft::from_status(obj.status.as_ref());
    let result = delete_steps(obj, ctx, &name, &mut d).await;
    if matches!(result, Err(Error::Waiting { .. }))
        || d.operation != obj.status.as_ref().and_then(|s| s.operation.clone())
    {
        let status = d.into_status(obj, &super::now());
        write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    }
    result
}

async fn delete_steps(
    obj: &CloudRunService,
    ctx: &Context,
    name: &str,
    d: &mut Draft,
) -> Result<Action> {
    let waiting = |what: String| Error::Waiting {
        what,
        after: ctx.config.operation_poll,
    };
    if let Some(op_name) = d.operation.clone() {
        match ctx.gcp.run.get_operation(&op_name).await {
            Ok(op) if !op.done => return Err(waiting(format!("operation {op_name}"))),
            Ok(_) => d.operation = None,
            Err(e) if e.code == Code::NotFound => d.operation = None,
            Err(e) => return Err(service_failed(d, e)),
        }
    }
    let Some(actual) = ctx
        .gcp
        .run
        .get_service(name)
        .await
        .map_err(|e| service_failed(d, e))?
    else {
        return Ok(Action::await_change());
    };
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    if actual.labels.get(OWNER_LABEL).map(String::as_str) != Some(uid) {
        ctx.event(
            obj,
            EventType::Normal,
            "LeftInPlace",
            "Delete",
            format!("Cloud Run service {name} was not created by this object: left in place"),
        )
        .await;
        return Ok(Action::await_change());
    }
    if actual.reconciling && d.operation.is_none() {
        // Someone's deploy is running; Cloud Run would refuse or race the delete.
        d.set(Cond::fail(
            SERVICE_READY,
            "Deleting",
            "waiting for the running deploy to finish before deleting",
        ));
        return Err(waiting(format!("deploy of {name} before deleting it")));
    }
    match ctx
        .gcp
        .run
        .delete_service(name)
        .await
        .map_err(|e| service_failed(d, e))?
    {
        None => Ok(Action::await_change()),
        Some(op) => {
            info!(service = %name, operation = %op.name, "deleting Cloud Run service");
            ctx.event(
                obj,
                EventType::Normal,
                "Deleted",
                "Delete",
                format!("Deleting Cloud Run service {name}"),
            )
            .await;
            d.operation = Some(op.name.clone());
            d.set(Cond::fail(
                SERVICE_READY,
                "Deleting",
                format!("Cloud Run is deleting the service (operation {})", op.name),
            ));
            Err(waiting(format!("deletion of {name}")))
        }
    }
}

fn last_segment(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Whether the object's Cloud Run service is Ready for its current generation.
pub fn is_ready(obj: &CloudRunService) -> Option<bool> {
    let status = obj.status.as_ref()?;
    let ready = conditions::find(&status.conditions, "Ready")?;
    match ready.status.as_str() {
        "True" => Some(status.observed_generation == obj.meta().generation),
        "False" => Some(false),
        _ => None,
    }
}

//! The `CloudRunService` controller.
//!
//! Each pass: [`input`] from the caches (project, connector, policies) → [`observe`] and
//! [`plan`] (pure: validate, guardrails, egress, key, operation, service, invokers) → [`act`]
//! (the planned writes) → [`status`] (pure), written only when it changed. The desired service
//! is rendered by [`render`], which also finds the managed fields that differ.

pub mod act;
pub mod build;
pub mod encryption;
pub mod network;
pub mod observe;
pub mod plan;
pub mod render;
pub mod status;
pub mod validate;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Cond};
use super::{Config, Context, observe_and_plan, reasons, write_status};
use crate::api::OWNER_LABEL;
use crate::api::v1alpha1::CloudRunService;
use crate::error::{Error, Result};
use plan::Input;

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

impl super::frame::Reconciled for CloudRunService {
    const KIND: &'static str = KIND;
}

impl super::frame::Finalized for CloudRunService {
    fn apply<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>> {
        Box::pin(apply(self, ctx))
    }

    fn cleanup<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>> {
        Box::pin(cleanup(self, ctx))
    }
}

async fn apply(obj: &CloudRunService, ctx: &Context) -> Result<Action> {
    let owners = CachedOwners(ctx);
    let input = input(obj, ctx, &owners);
    // Clients that cannot be made (the namespace's identity refused) fail this pass like any
    // other step: with a status that says so.
    let gcp = ctx.gcp(&input.identity).await;
    let key = super::frame::key_of(KIND, obj);
    let generation = obj.metadata.generation;
    let made = ctx.attempts.updates(&key, generation);
    let record = super::access::StatusRecord {
        client: &ctx.client,
        obj,
        current: obj.status.as_ref(),
        with: |s, access| crate::api::v1alpha1::CloudRunServiceStatus {
            access: Some(access.clone()),
            ..s.cloned().unwrap_or_default()
        },
    };
    let (status, applied, updated) =
        pass_with(&input, &gcp, &ctx.project_numbers, made, &record).await;
    if updated {
        ctx.attempts.updated(key, generation);
    }
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
) -> (crate::api::v1alpha1::CloudRunServiceStatus, act::Applied) {
    let (status, applied, _) = pass_with(
        input,
        &Ok(gcp.clone()),
        numbers,
        0,
        &super::access::Unrecorded,
    )
    .await;
    (status, applied)
}

/// Most updates of one generation runwarden sends while Google keeps differing from the spec
/// (it never finds the service in sync in between); then it stops updating ([`cap_updates`]).
pub const MAX_UPDATES_PER_GENERATION: u32 = 3;

/// The plan without its update when `made` updates of this generation have not brought Google
/// in line with the spec: `ServiceReady=False`, reason `DeployFailed`, and the pass stops with
/// a [`Error::Blocked`] (looked at again with backoff, writing nothing to the service, until
/// Google matches the spec or the spec changes).
pub fn cap_updates(mut plan: plan::Plan, made: u32, generation: Option<i64>) -> plan::Plan {
    let changed = plan.changes.iter().find_map(|c| match c {
        plan::Change::Update { changed, .. } => Some(changed.join(", ")),
        _ => None,
    });
    let Some(changed) = changed.filter(|_| made >= MAX_UPDATES_PER_GENERATION) else {
        return plan;
    };
    plan.changes
        .retain(|c| !matches!(c, plan::Change::Update { .. }));
    let message = format!(
        "Google still differs from the spec at {changed} after {made} updates of generation {}: runwarden stops updating the service until the spec changes (or Google matches it)",
        generation.unwrap_or_default()
    );
    plan.set(Cond::fail(SERVICE_READY, reasons::DEPLOY_FAILED, &message));
    plan.outcome = super::Outcome::Stop(Error::Blocked {
        reason: reasons::DEPLOY_FAILED,
        message,
    });
    plan
}

/// [`pass`] after `made` updates of this generation (see [`cap_updates`]), with the clients of
/// the object's identity or the error that kept them from being made, and `record` to persist
/// grants before they are made (`access.mode: Additive`); also says whether it sent an update.
pub async fn pass_with(
    input: &Input<'_>,
    gcp: &crate::gcp::GcpResult<crate::gcp::Gcp>,
    numbers: &super::context::ProjectNumbers,
    made: u32,
    record: &dyn super::access::Record,
) -> (
    crate::api::v1alpha1::CloudRunServiceStatus,
    act::Applied,
    bool,
) {
    let gcp = match gcp {
        Ok(gcp) => gcp,
        Err(e) => {
            let plan = plan::without_clients(input, e);
            let applied = act::Applied {
                conditions: plan.conditions,
                fields: plan.fields,
                notes: plan.notes,
                outcome: plan.outcome,
            };
            let status = status::compute(
                input.obj,
                &applied.conditions,
                applied.fields.clone(),
                applied.outcome.failure(),
                &super::now(),
            );
            return (status, applied, false);
        }
    };
    let planned_update = std::sync::atomic::AtomicBool::new(false);
    let applied = super::plan_and_act(
        plan::presumed(input),
        gcp,
        numbers,
        |o| plan::plan(input, o).map(|p| cap_updates(p, made, input.obj.metadata.generation)),
        |plan: plan::Plan| {
            let update = plan
                .changes
                .iter()
                .any(|c| matches!(c, plan::Change::Update { .. }));
            planned_update.store(update, std::sync::atomic::Ordering::Relaxed);
            act::execute(plan, gcp, record)
        },
    )
    .await;
    let planned_update = planned_update.into_inner();
    // Only an update Google accepted (it started an operation) counts towards the cap: a patch
    // refused by a transient fault changed nothing and is simply retried.
    let previous = input.obj.status.as_ref().and_then(|s| s.operation.as_ref());
    let updated = planned_update
        && applied.fields.operation.is_some()
        && applied.fields.operation.as_ref() != previous;
    let status = status::compute(
        input.obj,
        &applied.conditions,
        applied.fields.clone(),
        applied.outcome.failure(),
        &super::now(),
    );
    (status, applied, updated)
}

async fn cleanup(obj: &CloudRunService, ctx: &Context) -> Result<Action> {
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

/// One pass over an object being deleted, without Kubernetes: observe and plan the cleanup,
/// make its delete call, and the status it leaves, with whether to write it. Every pass that
/// keeps the object (a wait, or a failure at any step: the clients, a read, the delete, the
/// operation) writes it, so a deletion that is stuck says why from its first failed pass; one
/// that lets the object go writes only a changed operation.
pub async fn cleanup_pass(
    input: &Input<'_>,
    gcp: &crate::gcp::GcpResult<crate::gcp::Gcp>,
    numbers: &super::context::ProjectNumbers,
) -> (
    crate::api::v1alpha1::CloudRunServiceStatus,
    act::Cleaned,
    bool,
) {
    let obj = input.obj;
    let cleaned = match gcp {
        Ok(gcp) => {
            let plan = observe_and_plan(gcp, numbers, |o| plan::plan_cleanup(input, o)).await;
            act::execute_cleanup(plan, gcp).await
        }
        // Without clients, only a cleanup that needs no Google (Abandon, nothing created)
        // goes on.
        Err(e) => {
            let plan = match plan::plan_cleanup(input, &observe::Observed::default()) {
                Ok(plan) if plan.delete.is_none() => plan,
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

#[cfg(test)]
mod driver_tests;

/// The owners of Google resources, as the controller's cache of CloudRunServices knows them.
struct CachedOwners<'a>(&'a Context);

impl std::fmt::Debug for CachedOwners<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedOwners")
    }
}

impl plan::Owners for CachedOwners<'_> {
    fn live(&self, uid: &str) -> Option<String> {
        let found = self
            .0
            .caches
            .services
            .state()
            .into_iter()
            .find(|s| s.meta().uid.as_deref() == Some(uid))
            .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()));
        owner_in_view(found, uid, &self.0.config)
    }
}

/// The live owner with `uid`: the object found in the cache, else, for a shard
/// (`--watch-selector`), one it cannot see: a shard cannot tell that an owner outside its
/// selection is gone (objects move between shards), so it takes every unknown owner as live
/// and adoption fails closed. A controller limited to one namespace (`--watch-namespace`) sees
/// every owner in its namespace; an owner elsewhere belongs to another installation, which
/// acts in Google as its own identity (Google's IAM keeps the two apart), so an unknown owner
/// counts as gone there, as in a controller that sees the whole cluster: an object deleted
/// with `deletionPolicy: Abandon` can be adopted by its successor.
pub(super) fn owner_in_view(found: Option<String>, uid: &str, config: &Config) -> Option<String> {
    found.or_else(|| {
        config.watch_selector.as_ref().map(|_| {
            format!(
                "with uid {uid}, outside this shard's --watch-selector: it may be live in another shard (if that object is gone, remove the service's {OWNER_LABEL} label in Google to let this one adopt it)"
            )
        })
    })
}

/// What a pass knows about the object from the controller's caches.
fn input<'a>(obj: &'a CloudRunService, ctx: &Context, owners: &'a dyn plan::Owners) -> Input<'a> {
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

/// `PolicyCompliant` of a service: how the RunSecurityPolicies whose namespace selector
/// matches its namespace judge its spec and resolved project (see [`crate::policy`]). A policy
/// that cannot be evaluated (an invalid selector) counts as violated: guardrails fail closed.
pub fn policy_condition(
    obj: &CloudRunService,
    namespace_labels: &std::collections::BTreeMap<String, String>,
    project: Option<&str>,
    policies: &[crate::api::v1alpha1::RunSecurityPolicy],
) -> Cond {
    let namespace = obj.namespace().unwrap_or_default();
    let subject = crate::policy::Subject {
        spec: &obj.spec,
        namespace: &namespace,
        namespace_labels,
        project,
    };
    verdict_condition(&subject, policies)
}

/// `PolicyCompliant` from how the RunSecurityPolicies judge `subject` (any kind's).
pub fn verdict_condition(
    subject: &crate::policy::Subject<'_>,
    policies: &[crate::api::v1alpha1::RunSecurityPolicy],
) -> Cond {
    use crate::policy::{Verdict, evaluate};
    match evaluate(subject, policies).verdict() {
        Verdict::NoPolicy => Cond::ok(
            POLICY_COMPLIANT,
            reasons::NO_POLICY,
            "no RunSecurityPolicy applies to this namespace",
        ),
        Verdict::Compliant => Cond::ok(
            POLICY_COMPLIANT,
            reasons::COMPLIANT,
            "every RunSecurityPolicy that applies to this namespace passes",
        ),
        Verdict::Violation { message } => Cond::fail(POLICY_COMPLIANT, reasons::VIOLATION, message),
        Verdict::AuditViolation { message } => {
            Cond::fail(POLICY_COMPLIANT, reasons::AUDIT_VIOLATION, message)
        }
    }
}

/// Whether the object's Cloud Run service is Ready for its current generation.
pub fn is_ready(obj: &CloudRunService) -> Option<bool> {
    let status = obj.status.as_ref()?;
    conditions::is_ready(
        &status.conditions,
        status.observed_generation,
        obj.meta().generation,
    )
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn only_a_shard_takes_an_owner_it_cannot_see_as_live() {
        let whole = Config::default();
        assert_eq!(owner_in_view(None, "u1", &whole), None, "gone");
        assert_eq!(
            owner_in_view(Some("team-a/api".into()), "u1", &whole).as_deref(),
            Some("team-a/api")
        );
        let namespaced = Config {
            watch_namespace: Some("team-b".into()),
            ..Config::default()
        };
        assert_eq!(
            owner_in_view(None, "u1", &namespaced),
            None,
            "an abandoned object's successor may adopt"
        );
        let shard = Config {
            watch_selector: Some("shard=a".into()),
            ..Config::default()
        };
        let unseen = owner_in_view(None, "u1", &shard).expect("taken as live");
        assert!(
            unseen.contains("u1") && unseen.contains("--watch-selector"),
            "{unseen}"
        );
        assert!(unseen.contains(OWNER_LABEL), "how out: {unseen}");
        assert_eq!(
            owner_in_view(Some("team-a/api".into()), "u1", &shard).as_deref(),
            Some("team-a/api")
        );
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;
    use crate::api::v1alpha1::status;

    fn updating() -> plan::Plan {
        plan::Plan {
            conditions: vec![],
            changes: vec![plan::Change::Update {
                service: Default::default(),
                changed: vec!["ingress".into()],
                adopt: false,
            }],
            outcome: super::super::Outcome::Progressing,
            fields: Default::default(),
            notes: vec![],
        }
    }

    #[test]
    fn google_diverging_after_repeated_updates_of_one_generation_stops_the_updates() {
        let free = cap_updates(updating(), MAX_UPDATES_PER_GENERATION - 1, Some(4));
        assert_eq!(free.changes.len(), 1);
        let capped = cap_updates(updating(), MAX_UPDATES_PER_GENERATION, Some(4));
        assert!(capped.changes.is_empty(), "no further update");
        let c = &capped.conditions[0];
        assert_eq!(
            (c.type_, c.status, c.reason.as_str()),
            (SERVICE_READY, status::FALSE, reasons::DEPLOY_FAILED)
        );
        assert!(
            c.message
                .contains("at ingress after 3 updates of generation 4"),
            "{}",
            c.message
        );
        assert!(matches!(
            capped.outcome,
            super::super::Outcome::Stop(Error::Blocked { .. })
        ));
    }
}

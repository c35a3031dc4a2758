//! The `CloudRunService` controller.
//!
//! Each pass: [`input`] from the caches (project, connector, policies) → [`observe`] and
//! [`plan`] (pure: validate, guardrails, egress, key, operation, service, invokers) → [`act`]
//! (the planned writes) → [`status`] (pure), written only when it changed. The desired service
//! is rendered by [`render`], which also finds the managed fields that differ.

pub mod act;
pub mod encryption;
mod network;
pub mod observe;
pub mod plan;
pub mod render;
pub mod status;
pub mod validate;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Cond};
use super::{Context, observe_and_plan, reasons, write_status};
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
    let gcp = ctx.gcp(&input.identity).await?;
    let (status, applied) = pass(&input, &gcp, &ctx.project_numbers).await;
    ctx.publish(obj, &applied.notes).await;
    write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    applied.outcome.into_result(ctx)
}

/// One pass over a live object, without Kubernetes: observe and plan, act, and the status it
/// leaves (to write when it differs from the stored one).
pub async fn pass(
    input: &Input<'_>,
    gcp: &crate::gcp::Gcp,
    numbers: &super::context::ProjectNumbers,
) -> (crate::api::v1alpha1::CloudRunServiceStatus, act::Applied) {
    let plan = observe_and_plan(gcp, numbers, |o| plan::plan(input, o)).await;
    let applied = act::execute(plan, gcp).await;
    let status = status::compute(
        input.obj,
        &applied.conditions,
        applied.fields.clone(),
        &super::now(),
    );
    (status, applied)
}

async fn cleanup(obj: &CloudRunService, ctx: &Context) -> Result<Action> {
    let owners = CachedOwners(ctx);
    let input = input(obj, ctx, &owners);
    let gcp = ctx.gcp(&input.identity).await?;
    let plan = observe_and_plan(&gcp, &ctx.project_numbers, |o| {
        plan::plan_cleanup(&input, o)
    })
    .await;
    let cleaned = act::execute_cleanup(plan, &gcp).await;
    ctx.publish(obj, &cleaned.notes).await;
    let result = cleaned.outcome.into_result(ctx);
    let previous = obj.status.as_ref().and_then(|s| s.operation.as_ref());
    if matches!(result, Err(Error::Waiting { .. })) || cleaned.fields.operation.as_ref() != previous
    {
        let status = status::compute(obj, &cleaned.conditions, cleaned.fields, &super::now());
        write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    }
    result
}

#[cfg(test)]
mod driver_tests;

/// The owners of Google resources, as the controller's cache of CloudRunServices knows them.
/// A controller that watches only some objects (`--watch-namespace`, `--watch-selector`) cannot
/// tell that an owner outside its watch is gone, so it takes every unknown owner as live:
/// adoption fails closed.
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
        let config = &self.0.config;
        let partial = config.watch_namespace.is_some() || config.watch_selector.is_some();
        found.or_else(|| {
            partial.then(|| {
                format!(
                    "with uid {uid}, outside this controller's --watch-namespace/--watch-selector (it may be live)"
                )
            })
        })
    }
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
    use crate::policy::{Subject, Verdict, evaluate};
    let namespace = obj.namespace().unwrap_or_default();
    let subject = Subject {
        spec: &obj.spec,
        namespace: &namespace,
        namespace_labels,
        project,
    };
    match evaluate(&subject, policies).verdict() {
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

//! The frame every controller's reconcile shares: the finalizer, metrics, backoff, Warning
//! events for failures, and status writes that happen only on change.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Context;
use crate::api::FIELD_MANAGER;
use crate::error::{Error, Result};

/// A reconcile step of kind `K`: `apply` or `cleanup`.
pub type Step<K> = for<'a> fn(&'a K, &'a Context) -> futures::future::BoxFuture<'a, Result<Action>>;

/// The frame every controller's reconcile shares: read the object (a malformed one is reported,
/// not fatal), run `apply` or `cleanup` under the finalizer, count and time the pass, forget
/// past failures after a clean one, and publish a Warning event for a failure.
pub async fn reconcile_with_finalizer<K>(
    kind: &'static str,
    guard: &kube::core::DeserializeGuard<K>,
    ctx: &Context,
    apply: Step<K>,
    cleanup: Step<K>,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::finalizer::{Event as Finalizer, finalizer};

    let obj = match &guard.0 {
        Ok(obj) => Arc::new(obj.clone()),
        Err(invalid) => return Err(Error::InvalidObject(invalid.error.clone())),
    };
    let start = std::time::Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer(
        &api,
        crate::api::FINALIZER,
        obj.clone(),
        |event| async move {
            match event {
                Finalizer::Apply(obj) => apply(&obj, ctx).await,
                Finalizer::Cleanup(obj) => cleanup(&obj, ctx).await,
            }
        },
    )
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(kind, start.elapsed());
    match &result {
        Ok(_) => ctx.succeeded(&(kind, obj.namespace().unwrap_or_default(), obj.name_any())),
        Err(e) if matches!(e.inner(), Error::Waiting { .. }) => {}
        Err(e) => {
            ctx.event(
                obj.as_ref(),
                EventType::Warning,
                e.metric_label(),
                "Reconcile",
                e.to_string(),
            )
            .await
        }
    }
    result
}

/// A kind runwarden reconciles, as metrics and logs name it.
pub trait Reconciled: Resource<DynamicType = ()> {
    /// The kind, e.g. `CloudRunService`.
    const KIND: &'static str;
}

/// A kind whose Google resources are cleaned up under the finalizer: its pass for a live
/// object and for one being deleted.
pub trait Finalized:
    Reconciled
    + Resource<Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The pass over a live object.
    fn apply<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>>;
    /// The pass over an object being deleted.
    fn cleanup<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>>;
}

/// Reconciles one object of a [`Finalized`] kind (the entry point its controller runs).
#[tracing::instrument(skip(guard, ctx), fields(kind = K::KIND, namespace = guard.namespace(), name = guard.name_any()))]
pub async fn reconcile<K: Finalized>(
    guard: Arc<kube::core::DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    reconcile_with_finalizer(
        K::KIND,
        &guard,
        &ctx,
        |o, c| o.apply(c),
        |o, c| o.cleanup(c),
    )
    .await
}

/// The retry policy every controller runs with (see [`error_policy_for`]).
pub fn error_policy<K: Reconciled>(
    guard: Arc<kube::core::DeserializeGuard<K>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    error_policy_for(
        K::KIND,
        guard.namespace().unwrap_or_default(),
        guard.name_any(),
        err,
        &ctx,
    )
}

/// What to do after a failed reconcile: wait for a spec change when retrying cannot help, else
/// retry when the error says (Google's `RetryInfo`, a spent Cloud Run budget), else with capped,
/// jittered exponential backoff.
pub fn error_policy_for(
    kind: &'static str,
    namespace: String,
    name: String,
    err: &Error,
    ctx: &Context,
) -> Action {
    if let Error::Waiting { after, .. } = err.inner() {
        return Action::requeue(*after);
    }
    ctx.metrics.failed(kind, err.metric_label());
    warn!(kind, namespace, name, error = %err, "reconcile failed");
    if err.is_transient() {
        Action::requeue(
            err.retry_after()
                .filter(|after| !after.is_zero())
                .unwrap_or_else(|| ctx.backoff((kind, namespace, name))),
        )
    } else {
        Action::await_change()
    }
}

/// Writes `status` with server-side apply, only when it differs from `current`.
pub async fn write_status<K, S>(
    client: &Client,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

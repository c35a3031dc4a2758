//! The frame every controller's reconcile shares: the finalizer, metrics, backoff, Warning
//! events for failures, and status writes that happen only on change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The frame every controller's reconcile shares (the entry point its controller runs): read
/// the object (a malformed one is reported, not fatal), run [`Finalized::apply`] or
/// [`Finalized::cleanup`] under the finalizer, count and time the pass, forget past failures
/// after a clean one, and publish a Warning event for a failure.
#[tracing::instrument(skip(guard, ctx), fields(kind = K::KIND, namespace = guard.namespace(), name = guard.name_any()))]
pub async fn reconcile<K: Finalized>(
    guard: Arc<kube::core::DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    use kube::runtime::finalizer::{Event as Finalizer, finalizer};

    let obj = match &guard.0 {
        Ok(obj) => Arc::new(obj.clone()),
        Err(invalid) => return Err(Error::InvalidObject(invalid.error.clone())),
    };
    let ctx = ctx.as_ref();
    let start = std::time::Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer(
        &api,
        crate::api::FINALIZER,
        obj.clone(),
        |event| async move {
            match event {
                Finalizer::Apply(obj) => obj.apply(ctx).await,
                Finalizer::Cleanup(obj) => obj.cleanup(ctx).await,
            }
        },
    )
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(K::KIND, start.elapsed());
    let key = key_of(K::KIND, obj.as_ref());
    match &result {
        Ok(_) => ctx.succeeded(&key),
        // A pass that only started (or waits for) Google's work has not shown the object
        // healthy: its failures are kept, so a deploy that keeps failing backs off further.
        Err(e) if matches!(e.inner(), Error::Waiting { .. }) => ctx.attempts.unsettled(key),
        Err(e) => {
            ctx.attempts.unsettled(key);
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

/// An object in per-object state: kind, namespace (empty for cluster-scoped kinds), name.
pub type Key = (&'static str, String, String);

/// The [`Key`] of an object of `kind`.
pub fn key_of<K: Resource>(kind: &'static str, obj: &K) -> Key {
    (kind, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// What runwarden remembers of one object between passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Attempt {
    /// Consecutive failed passes (the backoff exponent).
    failures: u32,
    /// The generation `updates` counts for.
    generation: Option<i64>,
    /// Updates sent to Google for `generation` since the object was last found in sync.
    updates: u32,
}

/// Per-object retry state: consecutive failures (for backoff) and the updates made to one
/// generation (to stop patching when Google keeps differing). A clean pass forgets an
/// object; [`Attempts::retain`] forgets objects that are gone.
#[derive(Debug, Default)]
pub struct Attempts(Mutex<HashMap<Key, Attempt>>);

impl Attempts {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Key, Attempt>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Counts one more failure of `key`; returns the consecutive failures so far.
    pub fn failed(&self, key: Key) -> u32 {
        self.with(|m| {
            let a = m.entry(key).or_default();
            a.failures = a.failures.saturating_add(1);
            a.failures
        })
    }

    /// Forgets `key` after a clean pass.
    pub fn settled(&self, key: &Key) {
        self.with(|m| m.remove(key));
    }

    /// Remembers that the last pass of `key` was not clean (it failed, or waits for Google):
    /// the paced resync leaves it to its own retry or to a change.
    pub fn unsettled(&self, key: Key) {
        self.with(|m| {
            m.entry(key).or_default();
        });
    }

    /// Whether the last pass of `key` was clean (nothing is remembered of it).
    pub fn is_settled(&self, key: &Key) -> bool {
        self.with(|m| !m.contains_key(key))
    }

    /// The updates sent to Google for `generation` of `key` since it was last in sync.
    pub fn updates(&self, key: &Key, generation: Option<i64>) -> u32 {
        self.with(|m| {
            m.get(key)
                .filter(|a| a.generation == generation)
                .map_or(0, |a| a.updates)
        })
    }

    /// Counts one more update sent to Google for `generation` of `key`.
    pub fn updated(&self, key: Key, generation: Option<i64>) {
        self.with(|m| {
            let a = m.entry(key).or_default();
            if a.generation != generation {
                a.generation = generation;
                a.updates = 0;
            }
            a.updates = a.updates.saturating_add(1);
        });
    }

    /// Keeps only the objects `live` says still exist (the others were deleted, or left this
    /// controller's shard).
    pub fn retain(&self, live: impl Fn(&Key) -> bool) {
        self.with(|m| m.retain(|k, _| live(k)));
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.with(|m| m.len())
    }

    /// Whether no object is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The retry delay after `failures` consecutive failures, before jitter: `min` doubling per
/// failure, at most `max`.
pub fn backoff_delay(failures: u32, min: Duration, max: Duration) -> Duration {
    min.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)))
        .min(max)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("CloudRunService", "team".into(), name.into())
    }

    #[test]
    fn failures_count_up_until_a_clean_pass_and_gone_objects_are_forgotten() {
        let attempts = Attempts::default();
        assert_eq!(attempts.failed(key("a")), 1);
        assert_eq!(attempts.failed(key("a")), 2);
        attempts.failed(key("gone"));
        attempts.retain(|k| k.2 != "gone");
        assert_eq!(
            attempts.len(),
            1,
            "a deleted object's failures are forgotten"
        );
        attempts.settled(&key("a"));
        assert!(attempts.is_empty());
    }

    #[test]
    fn updates_count_per_generation() {
        let attempts = Attempts::default();
        attempts.updated(key("a"), Some(1));
        attempts.updated(key("a"), Some(1));
        assert_eq!(attempts.updates(&key("a"), Some(1)), 2);
        assert_eq!(attempts.updates(&key("a"), Some(2)), 0);
        attempts.updated(key("a"), Some(2));
        assert_eq!(attempts.updates(&key("a"), Some(2)), 1);
        assert_eq!(attempts.failed(key("a")), 1, "updates are no failures");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let delays: Vec<u64> = [1, 2, 3, 9, 10, 40]
            .map(|n| backoff_delay(n, min, max).as_secs())
            .into();
        assert_eq!(delays, [1, 2, 4, 256, 300, 300]);
    }

    #[test]
    fn a_pass_that_only_started_google_work_is_not_clean() {
        use crate::controller::Outcome;
        let poll = Duration::from_secs(1);
        let progressing = Outcome::Progressing.result(poll);
        assert!(
            matches!(&progressing, Err(e) if matches!(e.inner(), Error::Waiting { .. })),
            "{progressing:?}"
        );
        assert!(Outcome::InSync.result(poll).is_ok());
    }
}

//! The controllers, their shared context and the machinery around them: retries with backoff,
//! status writes, events.

pub mod cloudrunservice;
pub mod conditions;
pub mod iam;
pub mod lease;
pub mod vpcaccessconnector;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::api::{FIELD_MANAGER, PROJECT_ANNOTATION};
use crate::error::{Error, Result};
use crate::gcp::Gcp;
use crate::metrics::Metrics;

/// Settings of the controllers (from the command line).
#[derive(Clone, Debug)]
pub struct Config {
    /// Project used when neither the object nor its namespace names one.
    pub default_project: Option<String>,
    /// Period of the drift check of a healthy object (jittered ±10%).
    pub resync: Duration,
    /// How often an in-flight Google operation is polled.
    pub operation_poll: Duration,
    /// First retry delay after a transient failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Cap of the retry delay.
    pub max_backoff: Duration,
    /// Reconciles run at once per kind.
    pub concurrency: u16,
    /// Only watch this namespace (all when `None`).
    pub watch_namespace: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_project: None,
            resync: Duration::from_secs(600),
            operation_poll: Duration::from_secs(1),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 16,
            watch_namespace: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Google API clients.
    pub gcp: Gcp,
    /// Settings.
    pub config: Config,
    /// The one event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Namespaces' metadata (for the project annotation).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<(&'static str, String, String), u32>>,
    /// Project numbers by project id (they never change).
    project_numbers: Mutex<HashMap<String, String>>,
}

impl Context {
    /// A context over these clients and stores.
    pub fn new(
        client: Client,
        gcp: Gcp,
        config: Config,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
    ) -> Self {
        Self {
            client,
            gcp,
            config,
            recorder,
            metrics,
            namespaces,
            failures: Mutex::default(),
            project_numbers: Mutex::default(),
        }
    }

    /// The project of an object: its own `projectId`, else its namespace's annotation, else the
    /// controller's default.
    pub fn project_for(&self, spec_project: Option<&str>, namespace: &str) -> Option<String> {
        spec_project
            .map(str::to_owned)
            .or_else(|| {
                self.namespaces
                    .get(&ObjectRef::new(namespace))
                    .and_then(|ns| ns.annotations().get(PROJECT_ANNOTATION).cloned())
                    .filter(|p| !p.is_empty())
            })
            .or_else(|| self.config.default_project.clone())
    }

    /// The project number of `project_id`, from Resource Manager once, then from the cache.
    pub async fn project_number(
        &self,
        project_id: &str,
    ) -> std::result::Result<String, crate::gcp::GcpError> {
        if let Some(n) = self
            .project_numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(project_id)
        {
            return Ok(n.clone());
        }
        let number = self.gcp.projects.project_number(project_id).await?;
        self.project_numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(project_id.to_owned(), number.clone());
        Ok(number)
    }

    /// The next delay after one more transient failure of an object.
    fn backoff(&self, key: (&'static str, String, String)) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_default();
        *n = n.saturating_add(1);
        let exp = self
            .config
            .min_backoff
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)));
        iam::jittered(exp.min(self.config.max_backoff)).min(self.config.max_backoff)
    }

    /// Forgets the failures of an object after it reconciled cleanly.
    fn succeeded(&self, key: &(&'static str, String, String)) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Publishes an event; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note.into(), 1024)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// The delay before the next drift check of a healthy object.
    pub fn resync(&self) -> Duration {
        self.config.resync.mul_f64(0.9 + 0.2 * fastrand::f64())
    }
}

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

/// What to do after a failed reconcile: wait for a spec change when retrying cannot help, else
/// retry with capped, jittered exponential backoff.
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
        Action::requeue(ctx.backoff((kind, namespace, name)))
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

/// RFC 3339 timestamp of now, for conditions.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Handles the daemon shares with its HTTP endpoints.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Health {
    /// Whether every watch has synced.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the controllers are built from.
pub struct Parts {
    /// Kubernetes client.
    pub client: Client,
    /// Google API clients.
    pub gcp: Gcp,
    /// Settings.
    pub config: Config,
    /// The one event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Runs the controllers until `shutdown` resolves, then lets in-flight reconciles finish.
pub async fn run(
    parts: Parts,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::StreamExt;
    use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};

    use crate::api::v1alpha1::{CloudRunService, VpcAccessConnector};
    use kube::core::DeserializeGuard;

    let client = parts.client.clone();
    let (ns_writer, namespaces) = {
        let (store, writer) = reflector::store();
        (writer, store)
    };
    let ns_events = reflector(
        ns_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|event| {
        if let Err(e) = event {
            warn!(error = %e, "namespace watch failed; retrying");
        }
        std::future::ready(())
    });
    let ns_task = tokio::spawn(ns_events);

    let ctx = Arc::new(Context::new(
        parts.client,
        parts.gcp,
        parts.config,
        parts.recorder,
        parts.metrics,
        namespaces.clone(),
    ));
    fn scoped<K>(client: &Client, namespace: Option<&String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let watch_namespace = ctx.config.watch_namespace.clone();
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency);
    // Both controllers stop on the same signal.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let stopped = || shutdown.clone();

    // Connectors: reconciled on their own changes, and, while one is being deleted, on changes
    // of the services that reference it (its deletion waits for them).
    let connectors = Controller::new(
        scoped::<DeserializeGuard<VpcAccessConnector>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(stopped());
    let connector_store = connectors.store();
    let connectors = {
        let connector_store = connector_store.clone();
        connectors.watches(
            scoped::<DeserializeGuard<CloudRunService>>(&client, watch_namespace.as_ref()),
            watcher::Config::default().any_semantic(),
            move |service| {
                let name = service
                    .0
                    .as_ref()
                    .ok()
                    .and_then(|s| s.spec.egress.as_ref())
                    .and_then(|e| e.connector_ref.as_ref())
                    .map(|r| r.name.clone())?;
                let target = ObjectRef::new(&name).within(&service.namespace()?);
                connector_store
                    .get(&target)
                    .filter(|c| c.meta().deletion_timestamp.is_some())
                    .map(|_| target)
            },
        )
    };

    // Services: reconciled on their own changes, and on every change of a connector they
    // reference, so one that waits for its connector deploys as soon as it is Ready.
    let services = Controller::new(
        scoped::<DeserializeGuard<CloudRunService>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config)
    .graceful_shutdown_on(stopped());
    let store = services.store();
    let services = {
        let store = store.clone();
        services.watches(
            scoped::<DeserializeGuard<VpcAccessConnector>>(&client, watch_namespace.as_ref()),
            watcher::Config::default().any_semantic(),
            move |connector| {
                let (ns, name) = (connector.namespace(), connector.name_any());
                store
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == ns && vpcaccessconnector::references(s, &name))
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
    };

    let ready_task = {
        let (store, connector_store, namespaces, health) = (
            store.clone(),
            connector_store.clone(),
            namespaces.clone(),
            health.clone(),
        );
        tokio::spawn(async move {
            // A fresh wait each second: with several waiters on one store, kube-runtime 5
            // may wake only one of them when the store becomes ready.
            let services = synced(&store).await;
            let connectors = synced(&connector_store).await;
            let ns = synced(&namespaces).await;
            if services && connectors && ns {
                health.set_ready();
                tracing::info!("watches synced; ready");
            }
        })
    };
    let gauge_task = {
        let (store, connector_store, metrics) =
            (store.clone(), connector_store.clone(), ctx.metrics.clone());
        tokio::spawn(async move {
            fn count<K>(
                store: &Store<DeserializeGuard<K>>,
                is_ready: fn(&K) -> Option<bool>,
            ) -> [(&'static str, i64); 3]
            where
                K: Resource<DynamicType = ()> + Clone + 'static,
            {
                let mut counts = [("true", 0), ("false", 0), ("unknown", 0)];
                for guard in store.state() {
                    let i = match guard.0.as_ref().ok().and_then(is_ready) {
                        Some(true) => 0,
                        Some(false) => 1,
                        None => 2,
                    };
                    counts[i].1 += 1;
                }
                counts
            }
            loop {
                metrics.set_managed(
                    cloudrunservice::KIND,
                    count(&store, cloudrunservice::is_ready),
                );
                metrics.set_managed(
                    vpcaccessconnector::KIND,
                    count(&connector_store, vpcaccessconnector::is_ready),
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };

    futures::join!(
        services
            .run(
                cloudrunservice::reconcile,
                cloudrunservice::error_policy,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(())),
        connectors
            .run(
                vpcaccessconnector::reconcile,
                vpcaccessconnector::error_policy,
                ctx,
            )
            .for_each(|_| std::future::ready(())),
    );
    for task in [ns_task, ready_task, gauge_task] {
        task.abort();
    }
}

async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) =
            tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await
        {
            return result.is_ok();
        }
    }
}

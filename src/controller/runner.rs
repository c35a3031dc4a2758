//! Runs the controllers: the watches, their caches, readiness and the managed-objects gauge.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::Caches;
use super::{Config, Context, cloudrunservice, runsecuritypolicy, vpcaccessconnector};
use crate::api::v1alpha1::{CloudRunService, RunSecurityPolicy, VpcAccessConnector};
use crate::metrics::Metrics;

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

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the controllers are built from.
pub struct Parts {
    /// Kubernetes client.
    pub client: Client,
    /// Google API clients, one set per identity.
    pub clients: Arc<crate::gcp::identity::Clients>,
    /// Settings.
    pub config: Config,
    /// The one event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// With leader election: a ready standby until this replica holds the lease, then the
/// controllers until `shutdown` resolves or the lease is lost (then in-flight reconciles finish
/// and the lease is released, or the error says it was lost).
pub async fn run_elected(
    parts: Parts,
    health: Health,
    lease: super::lease::Lease,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), super::lease::LeaseError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // A standby is healthy and ready; it just does not act.
    health.set_ready();
    let mut leadership = lease.campaign(stop_rx.clone());
    if leadership.leading().await {
        let lost = leadership.lost();
        let mut stop_rx = stop_rx;
        let stopped = async move {
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => {}
                _ = lost => {}
            }
        };
        run(parts, health, stopped).await;
    }
    leadership.end().await
}

/// Runs the controllers until `shutdown` resolves, then lets in-flight reconciles finish.
///
/// The caches a pass reads (namespaces, connectors, policies) are filled by the same watch
/// streams that trigger the services they concern, so a service woken by a change always sees
/// that change in the cache.
pub async fn run(
    parts: Parts,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = parts.client.clone();
    let watch_namespace = parts.config.watch_namespace.clone();
    let config = kube::runtime::controller::Config::default().concurrency(parts.config.concurrency);
    // The controllers stop on the same signal.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));

    // Namespaces (metadata only): labels select policies, an annotation names the project.
    let (namespaces, namespace_changes) = cached_watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    );
    let namespace_changes = namespace_changes.predicate_filter(
        |ns: &PartialObjectMeta<Namespace>| {
            let mut h = std::hash::DefaultHasher::new();
            (ns.labels(), ns.annotations()).hash(&mut h);
            Some(h.finish())
        },
        Default::default(),
    );
    let (policies_cache, policy_changes) = cached_watch(
        Api::<DeserializeGuard<RunSecurityPolicy>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let (connectors_cache, connector_changes) = cached_watch(
        scoped::<DeserializeGuard<VpcAccessConnector>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    );

    let connectors = Controller::new(
        scoped::<DeserializeGuard<VpcAccessConnector>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(config.clone())
    .graceful_shutdown_on(shutdown.clone());
    let services = Controller::new(
        scoped::<DeserializeGuard<CloudRunService>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(config.clone())
    .graceful_shutdown_on(shutdown.clone());
    let policies = Controller::new(
        Api::<DeserializeGuard<RunSecurityPolicy>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(config)
    .graceful_shutdown_on(shutdown);
    let caches = Caches {
        namespaces,
        services: services.store(),
        connectors: connectors_cache,
        policies: policies_cache,
    };

    // Connectors: reconciled on their own changes, and, while one is being deleted, on changes
    // of the services that reference it (its deletion waits for them).
    let connectors = {
        let store = connectors.store();
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
                store
                    .get(&target)
                    .filter(|c| c.meta().deletion_timestamp.is_some())
                    .map(|_| target)
            },
        )
    };
    let services = services_triggers(
        services,
        &caches,
        connector_changes,
        namespace_changes,
        policy_changes,
    );
    let tasks = [
        ready_task(caches.clone(), health),
        gauge_task(caches.clone(), parts.metrics.clone()),
    ];

    let ctx = Arc::new(Context::new(
        parts.client,
        parts.clients,
        parts.config,
        parts.recorder,
        parts.metrics,
        caches,
    ));
    futures::join!(
        services
            .run(
                super::frame::reconcile::<CloudRunService>,
                super::frame::error_policy::<CloudRunService>,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(())),
        connectors
            .run(
                super::frame::reconcile::<VpcAccessConnector>,
                super::frame::error_policy::<VpcAccessConnector>,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(())),
        policies
            .run(
                runsecuritypolicy::reconcile,
                super::frame::error_policy::<RunSecurityPolicy>,
                ctx,
            )
            .for_each(|_| std::future::ready(())),
    );
    for task in tasks {
        task.abort();
    }
}

/// A cache of `api`'s objects and the stream of their changes that fills it (the cache is up to
/// date with an object when its change comes out of the stream).
fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let changes = reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    (store, changes)
}

/// Services are reconciled on their own changes; on every change of a connector they
/// reference, so one that waits for its connector deploys as soon as it is Ready; on a change
/// of a RunSecurityPolicy that concerns them, and of their namespace's labels or annotations,
/// so guardrails and project changes apply within seconds.
fn services_triggers(
    services: Controller<DeserializeGuard<CloudRunService>>,
    caches: &Caches,
    connector_changes: impl futures::Stream<
        Item = Result<DeserializeGuard<VpcAccessConnector>, watcher::Error>,
    > + Send
    + 'static,
    namespace_changes: impl futures::Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>>
    + Send
    + 'static,
    policy_changes: impl futures::Stream<
        Item = Result<DeserializeGuard<RunSecurityPolicy>, watcher::Error>,
    > + Send
    + 'static,
) -> Controller<DeserializeGuard<CloudRunService>> {
    let cache = caches.clone();
    let services = services.watches_stream(connector_changes, move |connector| {
        let name = connector.name_any();
        cache
            .services_in(&connector.namespace().unwrap_or_default())
            .into_iter()
            .filter(|s| vpcaccessconnector::references(s, &name))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect::<Vec<_>>()
    });
    let cache = caches.clone();
    let services = services.watches_stream(namespace_changes, move |ns| {
        cache
            .services_in(&ns.name_any())
            .iter()
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect::<Vec<_>>()
    });
    let cache = caches.clone();
    services.watches_stream(policy_changes, move |policy| {
        let Ok(p) = &policy.0 else {
            return vec![];
        };
        runsecuritypolicy::affected_services(p, &cache.services.state(), |ns| {
            cache.namespace_labels(ns)
        })
    })
}

/// Marks the daemon ready once every watch has listed.
fn ready_task(caches: Caches, health: Health) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // A fresh wait each second: with several waiters on one store, kube-runtime 5 may wake
        // only one of them when the store becomes ready.
        let services = synced(&caches.services).await;
        let connectors = synced(&caches.connectors).await;
        let ns = synced(&caches.namespaces).await;
        let policies = synced(&caches.policies).await;
        if services && connectors && ns && policies {
            health.set_ready();
            tracing::info!("watches synced; ready");
        }
    })
}

/// Refreshes the gauges computed from the caches every 5 s.
fn gauge_task(caches: Caches, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            metrics.set_managed(
                cloudrunservice::KIND,
                count(&caches.services, cloudrunservice::is_ready),
            );
            metrics.set_managed(
                vpcaccessconnector::KIND,
                count(&caches.connectors, vpcaccessconnector::is_ready),
            );
            metrics.set_deletions_stuck(cloudrunservice::KIND, stuck(&caches.services));
            metrics.set_deletions_stuck(vpcaccessconnector::KIND, stuck(&caches.connectors));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// An `Api` over one namespace, or all.
fn scoped<K>(client: &Client, namespace: Option<&String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Objects of a store by Ready status: true, false, unknown.
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

/// Objects of a store being deleted for longer than [`crate::metrics::STUCK_DELETION_AFTER`].
fn stuck<K>(store: &Store<DeserializeGuard<K>>) -> i64
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let objects = store.state();
    crate::metrics::stuck_deletions(
        objects.iter().map(|g| g.meta().deletion_timestamp.as_ref()),
        jiff::Timestamp::now(),
        crate::metrics::STUCK_DELETION_AFTER,
    )
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

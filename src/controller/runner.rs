//! Runs the controllers: the watches, their caches, readiness and the managed-objects gauge.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use super::context::Caches;
use super::{Config, Context, cloudrunservice, vpcaccessconnector};
use crate::api::v1alpha1::{CloudRunService, VpcAccessConnector};
use crate::gcp::Gcp;
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
    /// Google API clients.
    pub gcp: Gcp,
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
pub async fn run(
    parts: Parts,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = parts.client.clone();
    let (namespaces, ns_writer) = reflector::store();
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

    fn scoped<K>(client: &Client, namespace: Option<&String>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let watch_namespace = parts.config.watch_namespace.clone();
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(parts.config.concurrency);
    // Both controllers stop on the same signal.
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let stopped = || shutdown.clone();

    let connectors = Controller::new(
        scoped::<DeserializeGuard<VpcAccessConnector>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(stopped());
    let services = Controller::new(
        scoped::<DeserializeGuard<CloudRunService>>(&client, watch_namespace.as_ref()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config)
    .graceful_shutdown_on(stopped());
    let caches = Caches {
        namespaces: namespaces.clone(),
        services: services.store(),
        connectors: connectors.store(),
    };

    // Connectors: reconciled on their own changes, and, while one is being deleted, on changes
    // of the services that reference it (its deletion waits for them).
    let connectors = {
        let store = caches.connectors.clone();
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

    // Services: reconciled on their own changes, and on every change of a connector they
    // reference, so one that waits for its connector deploys as soon as it is Ready.
    let services = {
        let store = caches.services.clone();
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
        let (caches, health) = (caches.clone(), health.clone());
        tokio::spawn(async move {
            // A fresh wait each second: with several waiters on one store, kube-runtime 5
            // may wake only one of them when the store becomes ready.
            let services = synced(&caches.services).await;
            let connectors = synced(&caches.connectors).await;
            let ns = synced(&caches.namespaces).await;
            if services && connectors && ns {
                health.set_ready();
                tracing::info!("watches synced; ready");
            }
        })
    };
    let gauge_task = {
        let (caches, metrics) = (caches.clone(), parts.metrics.clone());
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
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };

    let ctx = Arc::new(Context::new(
        parts.client,
        parts.gcp,
        parts.config,
        parts.recorder,
        parts.metrics,
        caches,
    ));
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

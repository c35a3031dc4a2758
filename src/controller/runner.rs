//! Runs the controllers: the watches, their caches, readiness and the managed-objects gauge.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::Caches;
use super::{Config, Context, cloudrunjob, cloudrunservice, runsecuritypolicy, vpcaccessconnector};
use crate::api::v1alpha1::{CloudRunJob, CloudRunService, RunSecurityPolicy, VpcAccessConnector};
use crate::metrics::Metrics;

/// A flag one task sets and others read.
#[derive(Clone, Debug, Default)]
pub struct Flag(Arc<std::sync::atomic::AtomicBool>);

impl Flag {
    /// Whether the flag is set.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets or clears the flag.
    pub fn set(&self, value: bool) {
        self.0.store(value, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Handles the daemon shares with its HTTP endpoints.
///
/// `/readyz`: without leader election, ready once every watch has synced. With it, a standby
/// runs no watches: it is ready once the Kubernetes API answered its lease calls (it can take
/// over, so a rollout may proceed and stop the old leader); the leader is ready once its
/// watches synced; a replica that lost the lease is not ready until the API answers it again.
#[derive(Clone, Default)]
pub struct Health {
    ready: Flag,
}

impl Health {
    /// Whether `/readyz` answers ready.
    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.set(ready);
    }
}

/// What the controllers are built from.
#[derive(Clone)]
pub struct Parts {
    /// Kubernetes client.
    pub client: Client,
    /// Google API clients, one set per identity.
    pub clients: Arc<crate::gcp::identity::Clients>,
    /// Settings.
    pub config: Config,
    /// Who publishes the events.
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// With leader election: a standby until this replica holds the lease, then the controllers
/// until `shutdown` resolves (in-flight reconciles finish, then the lease is released) or the
/// lease is lost. A lost lease aborts the in-flight reconciles at once (another replica may
/// act now) and the replica campaigns again as a standby; it does not exit.
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
    let lease = Arc::new(lease);
    loop {
        let mut leadership = lease.campaign(stop_rx.clone());
        health.set_ready(false);
        let standby_ready = {
            let (answered, health) = (leadership.answered(), health.clone());
            async move {
                health.set_ready(answered.await);
                std::future::pending::<()>().await;
            }
        };
        let leading = tokio::select! {
            leading = leadership.leading() => leading,
            () = standby_ready => false,
        };
        if leading {
            // Ready again once this replica's watches synced.
            health.set_ready(false);
            tokio::select! {
                () = run(parts.clone(), health.clone(), stopped(stop_rx.clone())) => {}
                () = leadership.lost() => {
                    tracing::warn!("lost the leader lease: aborted the in-flight reconciles");
                }
            }
        }
        match leadership.end().await {
            Err(super::lease::LeaseError::Lost(name)) if !*stop_rx.borrow() => {
                tracing::warn!(lease = %name, "campaigning for the leader lease again");
            }
            ended => return ended,
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A task that is aborted when dropped (the controllers' helpers stop with them, also when
/// a lost lease drops the controllers mid-flight).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The watcher settings of the kinds a shard owns (CloudRunService, CloudRunJob,
/// VpcAccessConnector): `--watch-selector` applies to them, and to every watch over them; not
/// to namespaces or policies, which every shard needs whole.
///
/// Their lists are paged (500 objects a page, kube's default), which the API server only
/// honours for a list of the most recent state: a list "at any resource version" (`0`, from
/// its watch cache) comes back whole. A restarted controller with 10,000 objects then held the
/// whole response and its parsed copy at once, the peak a memory limit must survive; with
/// pages it holds one page beside the cache it fills.
pub fn sharded(selector: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default();
    match selector {
        Some(s) if !s.trim().is_empty() => config.labels(s),
        _ => config,
    }
}

/// The annotation `kubectl apply` keeps a full copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no pass reads from an object's metadata before it enters a cache: managed
/// fields and `kubectl apply`'s copy of the object (often as big as the object itself).
/// Labels and the other annotations (`runwarden.dev/*`) stay.
pub fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// What wakes an object's own controller: its spec (generation), deletion, finalizers, labels
/// or annotations changed. A status change alone (the controller's own status write) does not:
/// every follow-up a pass needs is a requeue, never a wake-up by its own write.
pub fn spec_or_metadata<K: Resource>(obj: &K) -> Option<u64> {
    let m = obj.meta();
    let mut h = std::hash::DefaultHasher::new();
    (
        m.generation,
        m.deletion_timestamp.as_ref().map(|t| t.0),
        &m.finalizers,
        &m.labels,
        &m.annotations,
    )
        .hash(&mut h);
    Some(h.finish())
}

/// A controller of a kind a shard owns, over its cache and the changes that fill it: the cache
/// holds every change (status included, which passes of other kinds read), but only
/// [`spec_or_metadata`] changes wake it, once `gate` is open.
fn owned<K>(
    store: Store<K>,
    changes: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    gate: &Gate,
) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let changes = news(changes, store.clone(), spec_or_metadata::<K>, gate.clone());
    Controller::for_stream(changes, store)
}

/// How often [`news`] forgets the objects that left its store.
const NEWS_PRUNE_EVERY: Duration = Duration::from_secs(300);

/// The changes whose `predicate` value is new for their object (kube-runtime's
/// `predicate_filter`, in less memory): what it remembers of an object is a hash of its
/// namespace, name and uid and the value, 16 bytes, where kube-runtime keeps the three strings
/// and a timestamp (about 200 bytes); objects that left `store` (deleted, or out of the shard)
/// are forgotten every [`NEWS_PRUNE_EVERY`]. Before `gate` opens, changes are remembered but
/// pass nothing on (see [`Gate`]).
fn news<K>(
    changes: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    store: Store<K>,
    predicate: fn(&K) -> Option<u64>,
    gate: Gate,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut seen: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut pruned = std::time::Instant::now();
    changes.filter(move |change| {
        let new = match change {
            Ok(obj) => match predicate(obj) {
                Some(value) => seen.insert(identity(obj), value) != Some(value),
                None => true,
            },
            Err(_) => true,
        } && gate.is_open();
        if pruned.elapsed() >= NEWS_PRUNE_EVERY {
            pruned = std::time::Instant::now();
            let live: std::collections::HashSet<u64> =
                store.state().iter().map(|o| identity(o.as_ref())).collect();
            seen.retain(|id, _| live.contains(id));
            seen.shrink_to_fit();
        }
        std::future::ready(new)
    })
}

/// A hash of an object's namespace, name and uid (a deleted and recreated object is another).
fn identity<K: Resource>(obj: &K) -> u64 {
    let m = obj.meta();
    let mut h = std::hash::DefaultHasher::new();
    (&m.namespace, &m.name, &m.uid).hash(&mut h);
    h.finish()
}

/// The start of a kind's reconciles: no pass runs before every cache has listed (`synced`),
/// and the first pass of each listed object is let in a few at a time.
///
/// A restarted controller lists every object before its gate opens. Each used to be handed to
/// kube-runtime's scheduler as it was listed, held back (and requeued every [`SYNC_RECHECK`])
/// until the gate opened, then passed: with 10,000 objects the scheduler held 10,000 entries
/// at once, and its queue and map keep their size after they empty. Now the changes of the
/// list wake nothing (see [`news`]); once the gate opens, the first round of [`resync_rounds`]
/// hands the cached objects on while fewer than `room` of its passes are outstanding.
#[derive(Clone, Debug)]
pub struct Gate {
    synced: Flag,
    room: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl Gate {
    /// A gate over `synced` letting `room` first passes be outstanding at once.
    pub fn new(synced: Flag, room: usize) -> Self {
        let limit = room.max(1);
        Self {
            synced,
            room: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    /// The room for a controller running `concurrency` passes at once: two each, so the next
    /// are queued when one ends (kube-runtime's 0, unlimited, gets 64).
    pub fn for_concurrency(synced: Flag, concurrency: u16) -> Self {
        let concurrency = if concurrency == 0 { 32 } else { concurrency };
        Self::new(synced, 2 * usize::from(concurrency))
    }

    /// Whether the caches synced.
    pub fn is_open(&self) -> bool {
        self.synced.get()
    }

    /// Waits until the caches synced.
    pub async fn opened(&self) {
        while !self.is_open() {
            tokio::time::sleep(SYNC_CHECK).await;
        }
    }

    /// Waits until fewer than its room of first passes are outstanding, or [`ROOM_WAIT`] at
    /// most: an object deleted before its pass never passes, and must not stop the round.
    pub async fn room(&self) {
        if let Ok(Ok(permit)) = tokio::time::timeout(ROOM_WAIT, self.room.acquire()).await {
            permit.forget();
        }
    }

    /// A pass ended: room for one more (any pass counts; the room stays at its limit, give or
    /// take passes that end at the same instant: the check and the add are two steps).
    pub fn passed(&self) {
        if self.room.available_permits() < self.limit {
            self.room.add_permits(1);
        }
    }
}

/// How often a task waiting for the caches to sync looks.
const SYNC_CHECK: Duration = Duration::from_millis(100);

/// The longest a first round waits for room before it hands on the next object anyway.
pub const ROOM_WAIT: Duration = Duration::from_secs(1);

/// The reconcile `reconcile`, held back until `gate` opens: before every cache has listed, a
/// pass could miss a namespace's project annotation (and fall back to `--default-project`), a
/// connector or a policy. A held-back pass calls nothing and looks again shortly. Every pass
/// that ran makes room in the gate.
pub fn gated<K, C, Fut>(
    gate: Gate,
    reconcile: impl Fn(Arc<K>, Arc<C>) -> Fut,
) -> impl Fn(Arc<K>, Arc<C>) -> futures::future::BoxFuture<'static, crate::Result<Action>>
where
    Fut: std::future::Future<Output = crate::Result<Action>> + Send + 'static,
{
    move |obj, ctx| {
        let gate = gate.clone();
        let pass = gate.is_open().then(|| reconcile(obj, ctx));
        Box::pin(async move {
            let Some(pass) = pass else {
                return Err(crate::Error::Waiting {
                    what: "the caches to sync".into(),
                    after: SYNC_RECHECK,
                });
            };
            let result = pass.await;
            gate.passed();
            result
        })
    }
}

/// How soon a pass held back until the caches synced looks again.
pub const SYNC_RECHECK: Duration = Duration::from_millis(500);

/// The changes of `changes` once `gate` is open; the earlier ones (the lists that fill the
/// caches) wake nothing: the first round after the gate opens visits every cached object.
fn once_open<S>(gate: &Gate, changes: S) -> impl futures::Stream<Item = S::Item> + Send + 'static
where
    S: futures::Stream + Send + 'static,
    S::Item: Send,
{
    let gate = gate.clone();
    changes.filter(move |_| std::future::ready(gate.is_open()))
}

/// Runs the controllers until `shutdown` resolves, then lets in-flight reconciles finish.
/// Dropping the returned future aborts them (and the helper tasks).
///
/// The caches a pass reads (namespaces, connectors, policies) are filled by the same watch
/// streams that trigger the services they concern, so a service woken by a change always sees
/// that change in the cache. No pass runs before every cache has listed.
pub async fn run(
    parts: Parts,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = parts.client.clone();
    let watch_namespace = parts.config.watch_namespace.clone();
    let selector = parts.config.watch_selector.clone();
    let selector = selector.as_deref();
    let config = kube::runtime::controller::Config::default().concurrency(parts.config.concurrency);
    // One flag opens every kind's gate, each with its own room for first passes.
    let synced = Flag::default();
    let gate = || Gate::for_concurrency(synced.clone(), parts.config.concurrency);
    let (service_gate, job_gate, connector_gate) = (gate(), gate(), gate());
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
    // One watch per owned kind: its cache is the controller's, and what its changes mean for
    // the other kind is derived from the same stream (a second watch would list and parse
    // every object again).
    let (connectors_store, connector_changes) = cached_watch(
        scoped::<DeserializeGuard<VpcAccessConnector>>(&client, watch_namespace.as_ref()),
        sharded(selector),
    );
    let (services_store, service_changes) = cached_watch(
        scoped::<DeserializeGuard<CloudRunService>>(&client, watch_namespace.as_ref()),
        sharded(selector),
    );
    let (jobs_store, job_changes) = cached_watch(
        scoped::<DeserializeGuard<CloudRunJob>>(&client, watch_namespace.as_ref()),
        sharded(selector),
    );
    let caches = Caches {
        namespaces,
        services: services_store.clone(),
        jobs: jobs_store.clone(),
        connectors: connectors_store.clone(),
        policies: policies_cache,
    };
    // Both kinds resolve their project and identity from the namespace.
    let (namespace_task, namespace_changes, connectors_of_namespace) =
        fan_out(namespace_changes, {
            let caches = caches.clone();
            move |ns| {
                caches
                    .connectors_in(&ns.name_any())
                    .iter()
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            }
        });
    // Jobs too: a namespace's project or identity changes what every job of it does.
    let (job_namespace_task, namespace_changes, jobs_of_namespace) = fan_out(namespace_changes, {
        let caches = caches.clone();
        move |ns| {
            caches
                .jobs_in(&ns.name_any())
                .iter()
                .map(|j| ObjectRef::from_obj(j.as_ref()))
                .collect::<Vec<_>>()
        }
    });
    // Every change of a connector wakes the services that reference it, so one that waits for
    // its connector deploys as soon as it is Ready.
    let (connector_task, connector_changes, services_of_connector) = fan_out(connector_changes, {
        let caches = caches.clone();
        move |connector| {
            let name = connector.name_any();
            caches
                .services_in(&connector.namespace().unwrap_or_default())
                .into_iter()
                .filter(|s| vpcaccessconnector::references(s, &name))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        }
    });
    // A connector being deleted waits for the services that reference it: their changes wake it.
    let (service_task, service_changes, deleted_connector_of_service) = fan_out(service_changes, {
        let connectors = connectors_store.clone();
        move |service| {
            let name = service
                .0
                .as_ref()
                .ok()
                .and_then(|s| s.spec.egress.as_ref())
                .and_then(|e| e.connector_ref.as_ref())
                .map(|r| r.name.clone())?;
            let target = ObjectRef::new(&name).within(&service.namespace()?);
            connectors
                .get(&target)
                .filter(|c| c.meta().deletion_timestamp.is_some())
                .map(|_| target)
        }
    });

    // Connectors: reconciled on their own changes, on their namespace's labels or annotations
    // (project, identity), and, while one is being deleted, on changes of its services.
    let connectors = owned(connectors_store, connector_changes, &connector_gate)
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .reconcile_on(once_open(&connector_gate, connectors_of_namespace))
        .reconcile_on(once_open(&connector_gate, deleted_connector_of_service));
    let services = owned(services_store, service_changes, &service_gate)
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .reconcile_on(once_open(&service_gate, services_of_connector));
    // A policy change re-judges the services and the jobs it concerns.
    let (policy_task, policy_changes, jobs_of_policy) = fan_out(policy_changes, {
        let caches = caches.clone();
        move |policy: &DeserializeGuard<RunSecurityPolicy>| {
            let Ok(p) = &policy.0 else {
                return vec![];
            };
            runsecuritypolicy::affected_jobs(p, &caches.jobs.state(), |ns| {
                caches.namespace_labels(ns)
            })
        }
    });
    let services = services_triggers(
        services,
        &caches,
        once_open(&service_gate, namespace_changes),
        once_open(&service_gate, policy_changes),
    );
    let jobs = owned(jobs_store, job_changes, &job_gate)
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .reconcile_on(once_open(&job_gate, jobs_of_namespace))
        .reconcile_on(once_open(&job_gate, jobs_of_policy));
    // The resync: one paced round per kind instead of a scheduled requeue per object.
    let (service_resync, service_resyncs) = futures::channel::mpsc::unbounded();
    let (job_resync, job_resyncs) = futures::channel::mpsc::unbounded();
    let (connector_resync, connector_resyncs) = futures::channel::mpsc::unbounded();
    let services = services.reconcile_on(service_resyncs);
    let jobs = jobs.reconcile_on(job_resyncs);
    let connectors = connectors.reconcile_on(connector_resyncs);
    let policies = Controller::new(
        Api::<DeserializeGuard<RunSecurityPolicy>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(config)
    .graceful_shutdown_on(shutdown);

    let ctx = Arc::new(Context::new(
        parts.client,
        parts.clients,
        parts.config,
        parts.reporter,
        parts.metrics,
        caches,
    ));
    let _tasks = [
        namespace_task,
        job_namespace_task,
        policy_task,
        connector_task,
        service_task,
        ready_task(ctx.caches.clone(), health, synced.clone()),
        housekeeping_task(ctx.clone()),
        resync_task(
            ctx.clone(),
            ctx.caches.services.clone(),
            cloudrunservice::KIND,
            service_resync,
            service_gate.clone(),
        ),
        resync_task(
            ctx.clone(),
            ctx.caches.jobs.clone(),
            cloudrunjob::KIND,
            job_resync,
            job_gate.clone(),
        ),
        resync_task(
            ctx.clone(),
            ctx.caches.connectors.clone(),
            vpcaccessconnector::KIND,
            connector_resync,
            connector_gate.clone(),
        ),
    ];
    futures::join!(
        services
            .run(
                gated(service_gate, super::frame::reconcile::<CloudRunService>),
                super::frame::error_policy::<CloudRunService>,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(())),
        jobs.run(
            gated(job_gate, super::frame::reconcile::<CloudRunJob>),
            super::frame::error_policy::<CloudRunJob>,
            ctx.clone(),
        )
        .for_each(|_| std::future::ready(())),
        connectors
            .run(
                gated(
                    connector_gate,
                    super::frame::reconcile::<VpcAccessConnector>
                ),
                super::frame::error_policy::<VpcAccessConnector>,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(())),
        policies
            .run(
                gated(
                    Gate::for_concurrency(synced, 0),
                    runsecuritypolicy::reconcile
                ),
                super::frame::error_policy::<RunSecurityPolicy>,
                ctx,
            )
            .for_each(|_| std::future::ready(())),
    );
}

/// A watch stream's changes for their own controller, and what `derived` makes of each
/// (e.g. the objects of another kind it wakes) for another. A task of its own drives the
/// stream, so the cache it fills advances even when one controller is busy (each change is in
/// the cache before either stream hands it on); it stops (and its watch with it) when the
/// returned task is dropped.
fn fan_out<K, I>(
    changes: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    derived: impl Fn(&K) -> I + Send + 'static,
) -> (
    AbortOnDrop,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    impl futures::Stream<Item = I::Item> + Send + 'static,
)
where
    K: Send + 'static,
    I: IntoIterator,
    I::Item: Send + 'static,
{
    let (first, first_rx) = futures::channel::mpsc::unbounded();
    let (second, second_rx) = futures::channel::mpsc::unbounded();
    let task = tokio::spawn(async move {
        let mut changes = std::pin::pin!(changes);
        while let Some(change) = changes.next().await {
            if let Ok(obj) = &change {
                for item in derived(obj) {
                    let _ = second.unbounded_send(item);
                }
            }
            let _ = first.unbounded_send(change);
            if first.is_closed() && second.is_closed() {
                break;
            }
        }
    });
    (AbortOnDrop(task), first_rx, second_rx)
}

/// A cache of `api`'s objects ([`slim`]med) and the stream of their changes that fills it (the
/// cache is up to date with an object when its change comes out of the stream).
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
    let changes = watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut K| slim(obj.meta_mut()))
        .reflect(writer)
        .touched_objects();
    (store, changes)
}

/// Services are reconciled on their own changes (and on their connector's, see [`run`]); on a
/// change of a RunSecurityPolicy that concerns them, and of their namespace's labels or
/// annotations, so guardrails and project changes apply within seconds.
fn services_triggers(
    services: Controller<DeserializeGuard<CloudRunService>>,
    caches: &Caches,
    namespace_changes: impl futures::Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>>
    + Send
    + 'static,
    policy_changes: impl futures::Stream<
        Item = Result<DeserializeGuard<RunSecurityPolicy>, watcher::Error>,
    > + Send
    + 'static,
) -> Controller<DeserializeGuard<CloudRunService>> {
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

/// Opens the gate of the reconciles and marks the daemon ready once every watch has listed.
fn ready_task(caches: Caches, health: Health, synced: Flag) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        // A fresh wait each second: with several waiters on one store, kube-runtime 5 may wake
        // only one of them when the store becomes ready.
        let services = wait_synced(&caches.services).await;
        let jobs = wait_synced(&caches.jobs).await;
        let connectors = wait_synced(&caches.connectors).await;
        let ns = wait_synced(&caches.namespaces).await;
        let policies = wait_synced(&caches.policies).await;
        if services && jobs && connectors && ns && policies {
            synced.set(true);
            health.set_ready(true);
            tracing::info!("watches synced; ready");
        }
    }))
}

/// Every 5 s: refreshes the gauges computed from the caches, and forgets the retry state of
/// objects that are gone (deleted, or moved to another shard).
fn housekeeping_task(ctx: Arc<Context>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            let (caches, metrics) = (&ctx.caches, &ctx.metrics);
            metrics.set_managed(
                cloudrunservice::KIND,
                count(&caches.services, cloudrunservice::is_ready),
            );
            metrics.set_managed(
                cloudrunjob::KIND,
                count(&caches.jobs, cloudrunjob::is_ready),
            );
            metrics.set_managed(
                vpcaccessconnector::KIND,
                count(&caches.connectors, vpcaccessconnector::is_ready),
            );
            metrics.set_deletions_stuck(cloudrunservice::KIND, stuck(&caches.services));
            metrics.set_deletions_stuck(cloudrunjob::KIND, stuck(&caches.jobs));
            metrics.set_deletions_stuck(vpcaccessconnector::KIND, stuck(&caches.connectors));
            ctx.attempts.retain(|key| cached(caches, key));
            release_free_memory();
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }))
}

/// The resync of one kind: every `--resync` period, each object of `store` whose last pass
/// was clean is reconciled once (to find drift in Google), the visits spread evenly over the
/// period (see [`pace`]). Objects whose last pass failed or waits for Google are left to their
/// own retry, or to a change (a spec error is not looked at again until the spec changes).
///
/// One round per kind replaces a scheduled requeue per object: kube-runtime's scheduler keeps
/// an entry (with the object's reference) for every pending requeue, about 550 bytes for each
/// of thousands of healthy objects; a round holds only the names it walks. It also spreads the
/// reads evenly over the period instead of bunching them where the objects were created.
///
/// The first round, once `gate` opens, is every cached object's first pass (see [`Gate`]).
fn resync_task<K>(
    ctx: Arc<Context>,
    store: Store<DeserializeGuard<K>>,
    kind: &'static str,
    out: futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<K>>>,
    gate: Gate,
) -> AbortOnDrop
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let period = ctx.config.resync;
    AbortOnDrop(tokio::spawn(resync_rounds(
        store,
        period,
        move |ns, name| {
            ctx.attempts
                .is_settled(&(kind, ns.to_owned(), name.to_owned()))
        },
        out,
        gate,
    )))
}

/// The rounds of [`resync_task`], with `settled` saying which objects to visit: first, once
/// `gate` opens, every object as fast as the gate has room, then, a period later, the paced
/// rounds.
async fn resync_rounds<K>(
    store: Store<DeserializeGuard<K>>,
    period: Duration,
    settled: impl Fn(&str, &str) -> bool,
    out: futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<K>>>,
    gate: Gate,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    K: 'static,
{
    let names = || -> Vec<(String, String)> {
        store
            .state()
            .iter()
            .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
            .collect()
    };
    gate.opened().await;
    for (ns, name) in names() {
        gate.room().await;
        if out
            .unbounded_send(ObjectRef::new(&name).within(&ns))
            .is_err()
        {
            return;
        }
    }
    // Each object's next look is a period after its first.
    tokio::time::sleep(period).await;
    loop {
        let round = names();
        let (step, per_step) = pace(period, round.len());
        if round.is_empty() {
            tokio::time::sleep(period).await;
            continue;
        }
        for chunk in round.chunks(per_step) {
            tokio::time::sleep(step).await;
            for (ns, name) in chunk.iter().filter(|(ns, name)| settled(ns, name)) {
                if out.unbounded_send(ObjectRef::new(name).within(ns)).is_err() {
                    return;
                }
            }
        }
    }
}

/// The shortest pause between two steps of a resync round.
pub const MIN_RESYNC_STEP: Duration = Duration::from_millis(20);

/// How a round over `n` objects spreads over `period`: the pause before each step and the
/// objects each step visits (one per step unless the steps would come closer than
/// [`MIN_RESYNC_STEP`]).
pub fn pace(period: Duration, n: usize) -> (Duration, usize) {
    let n = n.max(1);
    let step = (period / u32::try_from(n).unwrap_or(u32::MAX)).max(MIN_RESYNC_STEP);
    let steps = (period.as_nanos() / step.as_nanos()).max(1);
    let per_step = (n as u128).div_ceil(steps);
    (step, usize::try_from(per_step).unwrap_or(n))
}

/// The heap arenas the controller's allocations share (see [`limit_heap_arenas`]).
pub const HEAP_ARENAS: i32 = 1;

/// The arena limit to set, unless the operator chose one: glibc reads `MALLOC_ARENA_MAX` or
/// the `glibc.malloc.arena_max` tunable (in `GLIBC_TUNABLES`) itself, and those win.
pub fn arena_limit(malloc_arena_max: Option<&str>, glibc_tunables: Option<&str>) -> Option<i32> {
    let chosen = malloc_arena_max.is_some_and(|v| !v.trim().is_empty())
        || glibc_tunables.is_some_and(|t| t.contains("glibc.malloc.arena_max"));
    (!chosen).then_some(HEAP_ARENAS)
}

/// Caps the heap arenas glibc's malloc keeps; to be called before any thread but the first
/// exists.
///
/// glibc gives a thread that finds its arena locked an arena of its own, up to 8 per core;
/// each fragments on its own and keeps its own free pages between live blocks. A restarted
/// controller fills its caches from the list while the reconciles of the objects listed so
/// far run on other threads, so the cached objects can end up spread over several arenas
/// among the reconciles' short-lived blocks (the likely cause; not traced). With 3,000
/// services (`cargo bench --bench scale`, `MALLOC_ARENA_MAX` set in the environment), the
/// restart peak and the RSS after the next resync were 59.7 and 51.1 MiB with glibc's default,
/// 51.8 and 48.7 with 2 arenas, 46.3 and 44.1 with 1, all-Ready RSS the same (39.5-40.2 MiB).
/// With one arena, 10,000 services were all Ready 258 s after the first apply (376 s before,
/// on a busier host): the controller waits on the network more than on malloc's lock.
#[allow(unsafe_code)]
pub fn limit_heap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Some(n) = arena_limit(
        std::env::var("MALLOC_ARENA_MAX").ok().as_deref(),
        std::env::var("GLIBC_TUNABLES").ok().as_deref(),
    ) {
        // SAFETY: mallopt only sets a parameter of glibc's allocator, under its own lock.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
    }
}

/// Hands the heap's free pages back to the system; whether any were.
///
/// Every object change a watch delivers is parsed into a new object (via a buffered copy of
/// the whole JSON): short-lived allocations interleaved with the long-lived cached ones. glibc's
/// malloc returns memory only from the top of its heaps, so the pages freed between cached
/// objects stayed resident: about 9 MB with 10,000 services (measured with
/// `cargo bench --bench scale`). `malloc_trim` releases every whole free page.
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only takes glibc's own allocator locks; it is safe at any time.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether the object of `key` is in its kind's cache.
fn cached(caches: &Caches, (kind, namespace, name): &super::frame::Key) -> bool {
    match *kind {
        cloudrunservice::KIND => caches
            .services
            .get(&ObjectRef::new(name).within(namespace))
            .is_some(),
        cloudrunjob::KIND => caches
            .jobs
            .get(&ObjectRef::new(name).within(namespace))
            .is_some(),
        vpcaccessconnector::KIND => caches
            .connectors
            .get(&ObjectRef::new(name).within(namespace))
            .is_some(),
        _ => caches.policies.get(&ObjectRef::new(name)).is_some(),
    }
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

async fn wait_synced<K>(store: &Store<K>) -> bool
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn service() -> DeserializeGuard<CloudRunService> {
        let spec = serde_json::from_value(serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "europe-docker.pkg.dev/p1/apps/api:1"}],
        }))
        .unwrap();
        let mut obj = CloudRunService::new("api", spec);
        obj.metadata.namespace = Some("team".into());
        obj.metadata.generation = Some(1);
        DeserializeGuard(Ok(obj))
    }

    fn edit(f: impl FnOnce(&mut CloudRunService)) -> DeserializeGuard<CloudRunService> {
        let mut s = service();
        f(s.0.as_mut().unwrap());
        s
    }

    #[test]
    fn a_status_write_does_not_wake_the_controller_a_spec_or_metadata_change_does() {
        let before = spec_or_metadata(&service());
        let status_only = edit(|s| {
            s.status = Some(Default::default());
            s.metadata.resource_version = Some("2".into());
            s.metadata.managed_fields = Some(vec![Default::default()]);
        });
        assert_eq!(spec_or_metadata(&status_only), before);
        type Change = Box<dyn Fn(&mut CloudRunService)>;
        let wakes: [Change; 5] = [
            Box::new(|s| s.metadata.generation = Some(2)),
            Box::new(|s| {
                s.metadata.deletion_timestamp = Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
                )
            }),
            Box::new(|s| s.metadata.finalizers = Some(vec![crate::api::FINALIZER.into()])),
            Box::new(|s| s.metadata.labels = Some(BTreeMap::from([("shard".into(), "a".into())]))),
            Box::new(|s| {
                s.metadata.annotations =
                    Some(BTreeMap::from([("runwarden.dev/x".into(), "1".into())]))
            }),
        ];
        for (i, change) in wakes.into_iter().enumerate() {
            assert_ne!(spec_or_metadata(&edit(change)), before, "change {i}");
        }
    }

    #[test]
    fn cached_objects_lose_managed_fields_and_the_last_applied_copy_only() {
        let mut meta = ObjectMeta {
            managed_fields: Some(vec![Default::default()]),
            annotations: Some(BTreeMap::from([
                (LAST_APPLIED.to_owned(), "{...}".to_owned()),
                (crate::api::PROJECT_ANNOTATION.to_owned(), "p1".to_owned()),
            ])),
            labels: Some(BTreeMap::from([("team".into(), "a".into())])),
            ..ObjectMeta::default()
        };
        slim(&mut meta);
        assert_eq!(meta.managed_fields, None);
        assert_eq!(
            meta.annotations.unwrap().into_keys().collect::<Vec<_>>(),
            [crate::api::PROJECT_ANNOTATION]
        );
        assert!(meta.labels.is_some());
    }

    #[test]
    fn the_arena_cap_yields_to_the_operators_choice() {
        assert_eq!(arena_limit(None, None), Some(HEAP_ARENAS));
        assert_eq!(
            arena_limit(Some(""), Some("glibc.malloc.tcache_count=0")),
            Some(HEAP_ARENAS)
        );
        assert_eq!(arena_limit(Some("8"), None), None);
        assert_eq!(
            arena_limit(
                None,
                Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4")
            ),
            None
        );
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn free_pages_between_live_objects_are_handed_back() {
        // Many small blocks, every 64th kept: the freed ones make whole free pages that lie
        // below live blocks, which malloc only hands back when trimmed.
        let mut blocks: Vec<Vec<u8>> = (0..200_000).map(|_| vec![1u8; 200]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        assert!(release_free_memory(), "free pages were released");
        assert!(kept.iter().all(|b| b.iter().all(|&x| x == 1)));
    }

    #[tokio::test]
    async fn only_news_wake_the_controller() {
        let (store, _writer) = reflector::store();
        let recreated = edit(|s| s.metadata.uid = Some("uid-2".into()));
        let changes = vec![
            Ok(service()),
            Ok(edit(|s| s.status = Some(Default::default()))),
            Ok(edit(|s| s.metadata.generation = Some(2))),
            Ok(edit(|s| s.metadata.generation = Some(2))),
            Ok(recreated),
        ];
        let open = Gate::new(Flag::default(), 1);
        open.synced.set(true);
        let passed: Vec<_> = news(
            futures::stream::iter(changes),
            store,
            spec_or_metadata,
            open,
        )
        .map(|c| {
            let obj = c.unwrap().0.unwrap();
            (obj.metadata.generation, obj.metadata.uid)
        })
        .collect()
        .await;
        assert_eq!(
            passed,
            [
                (Some(1), None),
                (Some(2), None),
                (Some(1), Some("uid-2".into()))
            ],
            "the first sight, a new generation, and a new object of the same name"
        );
    }

    #[tokio::test]
    async fn the_list_before_the_gate_opens_wakes_nothing_and_is_remembered() {
        let (store, _writer) = reflector::store();
        let gate = Gate::new(Flag::default(), 1);
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut passed = std::pin::pin!(news(rx, store, spec_or_metadata, gate.clone()));
        tx.unbounded_send(Ok(service())).unwrap();
        tx.unbounded_send(Ok(edit(|s| s.metadata.name = Some("web".into()))))
            .unwrap();
        let early = tokio::time::timeout(Duration::from_millis(50), passed.next()).await;
        assert!(early.is_err(), "the list woke {early:?}");
        gate.synced.set(true);
        // Unchanged since the list (the first round visits it), then a new generation.
        tx.unbounded_send(Ok(service())).unwrap();
        tx.unbounded_send(Ok(edit(|s| s.metadata.generation = Some(2))))
            .unwrap();
        let next = passed.next().await.unwrap().unwrap().0.unwrap();
        assert_eq!(next.metadata.generation, Some(2));
    }

    /// The name of the next object handed on within `wait`.
    async fn next<K: kube::runtime::reflector::Lookup>(
        rx: &mut futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>,
        wait: Duration,
    ) -> Option<String> {
        let next = tokio::time::timeout(wait, rx.next()).await;
        next.ok().flatten().map(|r| r.name)
    }

    #[tokio::test]
    async fn the_first_round_waits_for_the_gate_and_for_room() {
        let (store, mut writer) = reflector::store();
        for name in ["a", "b", "c"] {
            writer.apply_watcher_event(&watcher::Event::Apply(edit(|s| {
                s.metadata.name = Some(name.into())
            })));
        }
        let gate = Gate::new(Flag::default(), 2);
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let period = Duration::from_secs(3600);
        let rounds = tokio::spawn(resync_rounds(store, period, |_, _| true, tx, gate.clone()));
        let short = Duration::from_millis(200);
        assert_eq!(
            next(&mut rx, short).await,
            None,
            "nothing before the gate opens"
        );
        gate.synced.set(true);
        let mut first = vec![
            next(&mut rx, Duration::from_secs(5)).await.unwrap(),
            next(&mut rx, Duration::from_secs(5)).await.unwrap(),
        ];
        assert_eq!(
            next(&mut rx, short).await,
            None,
            "two passes outstanding fill the room"
        );
        gate.passed();
        first.push(next(&mut rx, Duration::from_secs(5)).await.unwrap());
        first.sort();
        assert_eq!(first, ["a", "b", "c"]);
        rounds.abort();
    }

    #[tokio::test]
    async fn the_first_round_does_not_wait_for_a_pass_that_never_comes() {
        let (store, mut writer) = reflector::store();
        for name in ["deleted", "b"] {
            writer.apply_watcher_event(&watcher::Event::Apply(edit(|s| {
                s.metadata.name = Some(name.into())
            })));
        }
        let gate = Gate::new(Flag::default(), 1);
        gate.synced.set(true);
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let period = Duration::from_secs(3600);
        let rounds = tokio::spawn(resync_rounds(store, period, |_, _| true, tx, gate));
        let started = std::time::Instant::now();
        for _ in 0..2 {
            let next = tokio::time::timeout(ROOM_WAIT * 5, rx.next()).await;
            assert!(matches!(next, Ok(Some(_))), "{next:?}");
        }
        assert!(started.elapsed() >= ROOM_WAIT, "the second waited for room");
        rounds.abort();
    }

    #[test]
    fn the_owned_kinds_list_in_pages() {
        let config = sharded(None);
        assert_eq!(config.page_size, Some(500));
        assert_eq!(
            config.list_semantic,
            watcher::ListSemantic::MostRecent,
            "only a list of the most recent state is paged by the API server"
        );
    }

    #[test]
    fn the_watch_selector_selects_the_sharded_kinds() {
        assert_eq!(
            sharded(Some("shard=a")).label_selector.as_deref(),
            Some("shard=a")
        );
        assert_eq!(sharded(None).label_selector, None);
        assert_eq!(sharded(Some(" ")).label_selector, None);
    }

    #[test]
    fn retry_state_is_kept_only_for_cached_objects() {
        let (services, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(service()));
        let caches = Caches {
            namespaces: reflector::store().0,
            services,
            jobs: reflector::store().0,
            connectors: reflector::store().0,
            policies: reflector::store().0,
        };
        let attempts = super::super::frame::Attempts::default();
        for name in ["api", "deleted"] {
            attempts.failed((cloudrunservice::KIND, "team".into(), name.into()));
        }
        attempts.failed((vpcaccessconnector::KIND, "team".into(), "api".into()));
        attempts.retain(|key| cached(&caches, key));
        assert_eq!(
            attempts.len(),
            1,
            "only team/api, a cached CloudRunService, is kept"
        );
    }

    #[test]
    fn a_resync_round_spreads_over_its_period() {
        let minute = Duration::from_secs(60);
        assert_eq!(pace(minute, 1), (minute, 1));
        assert_eq!(pace(minute, 0), (minute, 1));
        assert_eq!(pace(minute, 600), (Duration::from_millis(100), 1));
        // 10,000 objects in 10 s: a step every 20 ms, 20 objects each (500 steps).
        assert_eq!(pace(Duration::from_secs(10), 10_000), (MIN_RESYNC_STEP, 20));
        for (period, n) in [(minute, 7), (Duration::from_secs(10), 10_000), (minute, 1)] {
            let (step, per_step) = pace(period, n);
            let round = step * u32::try_from(n.div_ceil(per_step)).unwrap();
            assert!(
                round <= period && round + step > period,
                "{n} in {period:?}: {round:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_resync_round_visits_each_settled_object_once_and_skips_the_others() {
        let (store, mut writer) = reflector::store();
        for name in ["a", "b", "failing", "c"] {
            writer.apply_watcher_event(&watcher::Event::Apply(edit(|s| {
                s.metadata.name = Some(name.into())
            })));
        }
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let period = Duration::from_millis(400);
        let gate = Gate::new(Flag::default(), 10);
        gate.synced.set(true);
        let rounds = tokio::spawn(resync_rounds(
            store,
            period,
            |ns, name| ns == "team" && name != "failing",
            tx,
            gate,
        ));
        // The first round visits every object, the failing one too.
        let mut first = Vec::new();
        for _ in 0..4 {
            let next = tokio::time::timeout(Duration::from_secs(5), rx.next()).await;
            first.push(next.unwrap().unwrap().name);
        }
        first.sort();
        assert_eq!(first, ["a", "b", "c", "failing"]);
        let mut seen = Vec::new();
        let started = std::time::Instant::now();
        while seen.len() < 3 {
            let next = tokio::time::timeout(Duration::from_secs(5), rx.next()).await;
            seen.push(next.unwrap().unwrap().name);
        }
        let round = started.elapsed();
        rounds.abort();
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"], "one visit each, none of the failing");
        assert!(
            round >= period + period * 3 / 4,
            "a period after the first round, the visits spread over the period: {round:?}"
        );
    }

    #[tokio::test]
    async fn no_pass_runs_before_the_caches_synced() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let synced = Flag::default();
        let gate = Gate::new(synced.clone(), 1);
        let reconcile = gated(
            gate.clone(),
            |_: Arc<()>, calls: Arc<std::sync::atomic::AtomicU32>| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::future::ready(Ok(Action::await_change()))
            },
        );
        let held = reconcile(Arc::new(()), calls.clone()).await;
        assert!(matches!(
            held,
            Err(crate::Error::Waiting {
                after: SYNC_RECHECK,
                ..
            })
        ));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(
            gate.room.available_permits(),
            1,
            "a held-back pass makes no room"
        );
        synced.set(true);
        gate.room().await;
        assert!(reconcile(Arc::new(()), calls.clone()).await.is_ok());
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            gate.room.available_permits(),
            1,
            "a pass that ran made room"
        );
    }
}

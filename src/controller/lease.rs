//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder runs the controllers,
//! so only it writes to Google or to status. The holder renews the lease every
//! `renew_every`; a standby takes over once it has seen the lease unchanged for the lease's
//! duration, measured on its own monotonic clock (as client-go does), so clock offsets between
//! nodes do not matter. On shutdown the holder releases the lease (an update, never a delete) so
//! a standby takes over at once. A holder that cannot renew stops its controllers one renew
//! period before its last renewal could have expired for others (each renewal attempt is bounded
//! by that deadline) and aborts its in-flight reconciles, so two replicas never act at the same
//! time; it then campaigns again as a standby (see [`super::runner::run_elected`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Why leading stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Renewal failed for longer than the lease lasts: another replica may lead now.
    #[error("lost the leader lease {0}: stopped to let the new leader act alone")]
    Lost(String),
    /// The Kubernetes API refused a lease call.
    #[error("leader lease: {0}")]
    Kube(#[from] kube::Error),
}

/// Whether this replica leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the lease.
    Standby,
    /// Holding the lease: the controllers may act.
    Leading,
    /// The lease could not be renewed in time: stop acting at once.
    Lost,
}

/// A campaign for the lease, as a value the runner reads.
pub struct Leadership {
    rx: watch::Receiver<Role>,
    answered: watch::Receiver<bool>,
    lease: Arc<Lease>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Waits until this replica leads; `false` when the campaign ended first (shutdown).
    pub async fn leading(&mut self) -> bool {
        matches!(
            self.rx.wait_for(|r| *r != Role::Standby).await.map(|r| *r),
            Ok(Role::Leading)
        )
    }

    /// Resolves once the Kubernetes API answered a lease call (whoever holds the lease): a
    /// standby that got this far can take over; `false` when the campaign ended first.
    pub fn answered(&self) -> impl Future<Output = bool> + Send + Sync + 'static {
        let mut rx = self.answered.clone();
        async move { rx.wait_for(|a| *a).await.is_ok() }
    }

    /// Resolves when the lease is lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|r| *r == Role::Lost).await;
        }
    }

    /// Ends the campaign after the controllers stopped: releases a lease still held, so a
    /// standby takes over at once; fails when it was lost.
    pub async fn end(self) -> Result<(), LeaseError> {
        self.task.abort();
        let role = *self.rx.borrow();
        self.lease.metrics.set_leader(false);
        match role {
            Role::Lost => Err(LeaseError::Lost(self.lease.name.clone())),
            Role::Standby => Ok(()),
            Role::Leading => {
                self.lease.release().await?;
                info!(lease = %self.lease.name, "released the leader lease");
                Ok(())
            }
        }
    }
}

/// A leader election Lease.
pub struct Lease {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    metrics: Arc<Metrics>,
    /// How long a lease holds without renewal (written in whole seconds, rounded up).
    pub duration: Duration,
    /// How often the holder renews, and a standby retries. Keep it well under `duration`: the
    /// holder gives up one `renew_every` before its lease could expire.
    pub renew_every: Duration,
    /// The lease record a standby saw last and when it first saw it (its own clock).
    observed: Mutex<Option<(String, Instant)>>,
}

impl Lease {
    /// A lease `namespace/name` to be held as `identity` (unique per process), with a 15 s
    /// duration renewed every 2 s.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            metrics,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
            observed: Mutex::default(),
        }
    }

    /// Campaigns for the lease in the background until `stop` turns true: the returned
    /// [`Leadership`] says whether this replica leads, and turns `Lost` for good when the lease
    /// could not be renewed in time (another replica may lead now).
    /// A lease can be campaigned for again after a campaign ended (a lost lease).
    pub fn campaign(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Leadership {
        let (tx, rx) = watch::channel(Role::Standby);
        let (answered_tx, answered) = watch::channel(false);
        let lease = self.clone();
        let task = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.hold(stop, tx, answered_tx).await })
        };
        Leadership {
            rx,
            answered,
            lease,
            task,
        }
    }

    async fn hold(
        &self,
        mut stop: watch::Receiver<bool>,
        role: watch::Sender<Role>,
        answered: watch::Sender<bool>,
    ) {
        self.metrics.set_leader(false);
        let acquired_at = loop {
            if *stop.borrow() {
                return;
            }
            let attempt = Instant::now();
            let acquired = self.try_acquire().await;
            if acquired.is_ok() {
                answered.send_replace(true);
            }
            match acquired {
                Ok(true) => break attempt,
                Ok(false) => {}
                Err(e) => warn!(error = %e, lease = %self.name, "cannot read the leader lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every) => {}
                _ = stop.changed() => return,
            }
        };
        info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
        self.metrics.set_leader(true);
        let _ = role.send(Role::Leading);
        // When the last successful renewal was sent: others see the lease expire no sooner
        // than `duration` after it.
        let mut renewed_at = acquired_at;
        loop {
            tokio::time::sleep(self.renew_every).await;
            // Give up one renew period early, leaving time to stop the controllers.
            let give_up_at = renewed_at + self.duration.saturating_sub(self.renew_every);
            let attempt = Instant::now();
            if attempt >= give_up_at {
                warn!(lease = %self.name, "could not renew the leader lease in time");
                break;
            }
            // A hung API call must not keep us leading past the deadline.
            match tokio::time::timeout_at(give_up_at, self.renew()).await {
                Ok(Ok(true)) => renewed_at = attempt,
                Ok(Ok(false)) => {
                    warn!(lease = %self.name, "another replica holds the leader lease now");
                    break;
                }
                Ok(Err(e)) => warn!(error = %e, "cannot renew the leader lease"),
                Err(_) => warn!(lease = %self.name, "renewing the leader lease timed out"),
            }
        }
        self.metrics.set_leader(false);
        let _ = role.send(Role::Lost);
    }

    fn now() -> MicroTime {
        MicroTime(jiff::Timestamp::now())
    }

    /// Whether a lease held by another replica has expired: its record has not changed for its
    /// duration since this replica first saw it, on this replica's monotonic clock. The
    /// timestamps inside the record come from another machine's clock and are not compared.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = serde_json::to_string(spec).unwrap_or_default();
        let secs = spec.lease_duration_seconds.unwrap_or(0).max(0);
        let now = Instant::now();
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match observed.as_ref() {
            Some((seen, since)) if *seen == record => {
                now.duration_since(*since) >= Duration::from_secs(secs.unsigned_abs().into())
            }
            _ => {
                *observed = Some((record, now));
                false
            }
        }
    }

    /// Takes the lease if it is free, expired, or already ours.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = LeaseObject {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if !(holder.is_empty() || holder == self.identity || self.expired(&spec)) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        lease.spec = Some(self.held_spec(transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else took it between our read and write.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn held_spec(&self, transitions: i32) -> LeaseSpec {
        let now = Self::now();
        let secs = self.duration.as_secs() + u64::from(self.duration.subsec_nanos() > 0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(secs.max(1)).unwrap_or(i32::MAX)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Renews the lease; `false` when another replica holds it now, or it was deleted (a
    /// standby may have created a new one already).
    async fn renew(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(false);
        }
        spec.renew_time = Some(Self::now());
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so that a standby can take it at once.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(Self::now());
        lease.spec = Some(spec);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

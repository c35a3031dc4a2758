//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder runs the controllers,
//! so only it writes to Google or to status. The holder renews the lease every
//! `renew_every`; a standby takes over once it has seen the lease unchanged for the lease's
//! duration, measured on its own monotonic clock (as client-go does), so clock offsets between
//! nodes do not matter. On shutdown the holder releases the lease (an update, never a delete) so
//! a standby takes over at once. A holder that cannot renew stops its controllers one renew
//! period before its last renewal could have expired for others (each renewal attempt is bounded
//! by that deadline), and exits with an error, so two replicas never act at the same time.

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

use super::{Health, Parts};
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

    /// Waits for the lease, runs the controllers while holding it, and releases it on shutdown.
    pub async fn run_while_leading(
        self,
        parts: Parts,
        health: Health,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), LeaseError> {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        // A standby is healthy and ready; it just does not act.
        health.set_ready();
        self.metrics.set_leader(false);
        let acquired_at = loop {
            if *stop_rx.borrow() {
                return Ok(());
            }
            let attempt = Instant::now();
            match self.try_acquire().await {
                Ok(true) => break attempt,
                Ok(false) => {}
                Err(e) => warn!(error = %e, lease = %self.name, "cannot read the leader lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every) => {}
                _ = stop_rx.changed() => return Ok(()),
            }
        };
        info!(lease = %self.name, identity = %self.identity, "acquired the leader lease");
        self.metrics.set_leader(true);

        let (lost_tx, lost_rx) = watch::channel(false);
        let stop_controllers = {
            let (mut stop_rx, mut lost_rx) = (stop_rx.clone(), lost_rx.clone());
            async move {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => {}
                    _ = lost_rx.wait_for(|l| *l) => {}
                }
            }
        };
        let renewing = {
            let this = self.clone_handle();
            tokio::spawn(async move {
                // When the last successful renewal was sent: others see the lease expire no
                // sooner than `duration` after it.
                let mut renewed_at = acquired_at;
                loop {
                    tokio::time::sleep(this.renew_every).await;
                    // Give up one renew period early, leaving time to stop the controllers.
                    let give_up_at = renewed_at + this.duration.saturating_sub(this.renew_every);
                    let attempt = Instant::now();
                    if attempt >= give_up_at {
                        warn!(lease = %this.name, "could not renew the leader lease in time");
                        break;
                    }
                    // A hung API call must not keep us leading past the deadline.
                    match tokio::time::timeout_at(give_up_at, this.renew()).await {
                        Ok(Ok(true)) => renewed_at = attempt,
                        Ok(Ok(false)) => {
                            warn!(lease = %this.name, "another replica holds the leader lease now");
                            break;
                        }
                        Ok(Err(e)) => warn!(error = %e, "cannot renew the leader lease"),
                        Err(_) => warn!(lease = %this.name, "renewing the leader lease timed out"),
                    }
                }
                this.metrics.set_leader(false);
                let _ = lost_tx.send(true);
            })
        };
        super::run(parts, health, stop_controllers).await;
        renewing.abort();
        self.metrics.set_leader(false);
        if *lost_rx.borrow() {
            return Err(LeaseError::Lost(self.name.clone()));
        }
        self.release().await?;
        info!(lease = %self.name, "released the leader lease");
        Ok(())
    }

    fn clone_handle(&self) -> Self {
        Self {
            api: self.api.clone(),
            name: self.name.clone(),
            identity: self.identity.clone(),
            metrics: self.metrics.clone(),
            duration: self.duration,
            renew_every: self.renew_every,
            observed: Mutex::default(),
        }
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

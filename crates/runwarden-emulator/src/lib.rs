//! A local emulator of the Google Cloud REST APIs runwarden uses: Cloud Run Admin v2 (services,
//! jobs, executions, tasks, operations, IAM), Cloud Scheduler v1 (jobs), Serverless VPC Access v1 (connectors, operations), Cloud KMS v1 (key rings,
//! crypto keys, versions, key IAM), Resource Manager v3 (`projects.get`, project IAM), IAM v1
//! (service-account IAM) and IAM Credentials v1 (`generateAccessToken`).
//!
//! Calls without an `Authorization` header have full access. Calls with a bearer token the
//! emulator issued are made as that service account and checked against the IAM policies that
//! apply (`authz`); Cloud Run read/write rate quotas can be switched on (`quota`).
//!
//! It speaks Google's wire format as the official google-cloud-rust clients send and expect it
//! (integer or string enums, int64 as strings, durations as `"300s"`, `{"error":{...}}` bodies),
//! models what Cloud Run does server-side (defaults, generations, revisions, long-running
//! operations, the CMEK and VPC connector checks), and offers controls under `/emulator/v1/`
//! (operation delay, fault injection, request counters, reset).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emu = runwarden_emulator::Emulator::start("127.0.0.1:0", Default::default()).await?;
//! println!("point the clients at {}", emu.endpoint());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authz;
mod completion;
mod controls;
mod cron;
pub mod enums;
pub mod error;
pub mod iam;
mod kms;
mod operations;
pub mod orgpolicy;
mod quota;
mod request;
mod resourcemanager;
mod roles;
mod router;
mod routes;
mod run;
mod scheduler;
mod serviceaccounts;
mod shared;
pub mod state;
pub mod util;
mod vpcaccess;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::quota::Quotas;
pub use crate::shared::Fault;
use crate::shared::{Shared, lock};

/// Emulator settings.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// How long each long-running operation takes before it reports `done` (default 0s: the first
    /// `operations.get` already shows it done).
    pub operation_delay: Duration,
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Emulator {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves in a background tokio task.
    pub async fn start(addr: &str, config: Config) -> std::io::Result<Emulator> {
        Emulator::start_with(addr, config, Quotas::default()).await
    }

    /// Like [`Emulator::start`], with Cloud Run rate quotas switched on from the first request.
    pub async fn start_with(
        addr: &str,
        config: Config,
        quotas: Quotas,
    ) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config.operation_delay, quotas));
        let (tx, rx) = oneshot::channel::<()>();
        let app = router::app(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Emulator {
            shared,
            addr: local,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:8085` (no trailing slash).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received, by method key (`run.services.create`, ...), faulted ones included.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.counters).clone()
    }

    /// Requests received for one method key; 0 when never called.
    pub fn count(&self, method: &str) -> u64 {
        lock(&self.shared.counters)
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// Clears the request counters.
    pub fn reset_counters(&self) {
        lock(&self.shared.counters).clear();
    }

    /// Sets the delay of operations started from now on.
    pub fn set_operation_delay(&self, d: Duration) {
        *lock(&self.shared.delay) = d;
    }

    /// Sets how long each task attempt of executions started from now on takes (default 0s).
    pub fn set_task_duration(&self, d: Duration) {
        *lock(&self.shared.task_duration) = d;
    }

    /// Makes the next `k` task attempts of Cloud Run job `job`
    /// (`projects/P/locations/R/jobs/J`, project by id) fail; 0 clears them.
    pub fn fail_tasks(&self, job: &str, k: u64) {
        let failures = &mut lock(&self.shared.state).task_failures;
        if k == 0 {
            failures.remove(job);
        } else {
            failures.insert(job.to_string(), k);
        }
    }

    /// Makes the next `k` builds submitted under `parent` (`projects/P/locations/R`, project by
    /// id) fail, as the `buildFailures` control does; 0 clears them.
    pub fn fail_builds(&self, parent: &str, k: u64) {
        let failures = &mut lock(&self.shared.state).build_failures;
        if k == 0 {
            failures.remove(parent);
        } else {
            failures.insert(parent.to_string(), k);
        }
    }

    /// Sets the Cloud Run rate quotas (0 = off); usage so far is kept.
    pub fn set_quotas(&self, quotas: Quotas) {
        lock(&self.shared.quotas).limits = quotas;
    }

    /// The Cloud Run rate quotas in force.
    pub fn quotas(&self) -> Quotas {
        lock(&self.shared.quotas).limits
    }

    /// Moves the emulator clock forward: access tokens expire, quota windows reset, execution
    /// tasks progress and Cloud Scheduler jobs fall due as if `by` had passed (long-running
    /// operations keep real time).
    pub fn advance_clock(&self, by: Duration) {
        *lock(&self.shared.clock_offset) += by;
    }

    /// Sets the organization policies of every project, in the shape of the `orgPolicies` field
    /// of `PUT /emulator/v1/config` (see [`orgpolicy`]); replaces the policies set before.
    pub fn set_org_policies(&self, policies: serde_json::Value) -> Result<(), error::GError> {
        let policies = orgpolicy::parse(&policies)?;
        lock(&self.shared.state).org_policies = policies;
        Ok(())
    }

    /// Adds a fault.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Stops accepting requests and waits for the server task (at most 5 seconds, then aborts it).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves on an already-bound listener until `shutdown` resolves (used by `runwarden emulator`
/// with a SIGTERM future).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(config.operation_delay, Quotas::default()));
    axum::serve(listener, router::app(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

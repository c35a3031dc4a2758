//! A local emulator of the Google Cloud REST APIs runwarden uses: Cloud Run Admin v2 (services,
//! operations, IAM), Serverless VPC Access v1 (connectors, operations), Cloud KMS v1 (key rings,
//! crypto keys, versions, key IAM) and Resource Manager v3 (`projects.get`).
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

mod controls;
pub mod enums;
pub mod error;
pub mod iam;
mod kms;
mod resourcemanager;
mod router;
mod run;
pub mod state;
pub mod util;
mod vpcaccess;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Code;
use crate::state::State;

/// Emulator settings.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// How long each long-running operation takes before it reports `done` (default 0s: the first
    /// `operations.get` already shows it done).
    pub operation_delay: Duration,
}

/// A fault to inject: matching calls fail with `code` instead of being served.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// `run`, `vpcaccess`, `kms` or `resourcemanager`.
    pub api: String,
    /// A method such as `services.patch` (the `{api}.` prefix is optional); `None` = every method
    /// of the API.
    #[serde(default)]
    pub method: Option<String>,
    /// gRPC status name: `UNAVAILABLE`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, `ABORTED`, ...
    pub code: String,
    /// The error message; a Google-like default per code when absent.
    #[serde(default)]
    pub message: Option<String>,
    /// Fail the next N matching calls, then stop.
    #[serde(default)]
    pub count: Option<u64>,
    /// Or fail each matching call with this probability (0.0..=1.0). With neither `count` nor
    /// `rate`, every matching call fails until the faults are cleared.
    #[serde(default)]
    pub rate: Option<f64>,
}

/// State shared by the server task and the [`Emulator`] handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) counters: Mutex<BTreeMap<String, u64>>,
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) delay: Mutex<Duration>,
}

/// Locks a mutex, recovering from poisoning (a panicking handler must not wedge the emulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new(config: &Config) -> Self {
        let s = Shared::default();
        *lock(&s.delay) = config.operation_delay;
        s
    }

    pub(crate) fn count(&self, key: &str) {
        *lock(&self.counters).entry(key.to_string()).or_default() += 1;
    }

    /// The fault to apply to this call, if any (consumes one unit of a counted fault).
    pub(crate) fn take_fault(&self, api: &str, key: &str) -> Option<(Code, Option<String>)> {
        let mut faults = lock(&self.faults);
        let method = key.strip_prefix(api).and_then(|m| m.strip_prefix('.'))?;
        let idx = faults.iter().position(|f| {
            f.api == api
                && f.method
                    .as_deref()
                    .is_none_or(|m| m == method || m == key || m.is_empty())
                && match (f.count, f.rate) {
                    (Some(n), _) => n > 0,
                    (None, Some(r)) => fastrand::f64() < r,
                    (None, None) => true,
                }
        })?;
        let f = &mut faults[idx];
        let out = (
            Code::parse(&f.code).unwrap_or(Code::Unknown),
            f.message.clone(),
        );
        if let Some(n) = f.count.as_mut() {
            *n -= 1;
            if *n == 0 {
                faults.remove(idx);
            }
        }
        Some(out)
    }

    pub(crate) fn reset(&self) {
        *lock(&self.state) = State::default();
        lock(&self.counters).clear();
        lock(&self.faults).clear();
    }
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
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config));
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
    let shared = Arc::new(Shared::new(&config));
    axum::serve(listener, router::app(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

//! What the server task and the [`crate::Emulator`] handle share: the emulated state, request
//! counters, injected faults, the operation delay, the rate quotas and the emulator clock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::error::Code;
use crate::quota::{Quotas, Usage};
use crate::state::State;

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
    /// How long each task attempt of executions started from now on takes (`taskDuration`).
    pub(crate) task_duration: Mutex<Duration>,
    /// Rate quotas and their usage.
    pub(crate) quotas: Mutex<Usage>,
    /// How far the emulator clock is ahead of the system clock (token expiry, quota windows).
    pub(crate) clock_offset: Mutex<Duration>,
}

/// Locks a mutex, recovering from poisoning (a panicking handler must not wedge the emulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Empty state, with this delay for the operations to come.
    pub(crate) fn new(operation_delay: Duration, quotas: Quotas) -> Self {
        let shared = Shared {
            delay: Mutex::new(operation_delay),
            ..Shared::default()
        };
        lock(&shared.quotas).limits = quotas;
        shared
    }

    /// The emulator clock: the system clock plus what [`crate::Emulator::advance_clock`] added.
    pub(crate) fn now(&self) -> SystemTime {
        SystemTime::now() + *lock(&self.clock_offset)
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
        lock(&self.quotas).clear();
    }
}

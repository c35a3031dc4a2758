//! Following a long-running Google operation that a pass started, without holding a worker:
//! its name is kept in `status.operation` and looked at again on the next pass: soon after it
//! started, then less and less often ([`poll_after`]).

use std::time::Duration;

use google_cloud_longrunning::model::Operation;
use google_cloud_longrunning::model::operation::Result as OpResult;

use crate::gcp::{Code, GcpError, GcpResult};

/// The longest wait between two looks at Google's work in flight.
pub const MAX_POLL: Duration = Duration::from_secs(10);

/// When to look again at work that has been in flight for `running_for`: after `first` at
/// first, then after as long as it has been running (so the looks space out, doubling:
/// `first`, `first`, 2×, 4×…), at most [`MAX_POLL`] (or `first`, if that is longer).
pub fn poll_after(first: Duration, running_for: Duration) -> Duration {
    running_for.clamp(first, MAX_POLL.max(first))
}

/// How long an object's work has been in flight at `now`: since its `Ready` condition last
/// changed (zero when it has none, or it changed in the future of this clock).
pub fn in_flight_for(
    conditions: &[crate::api::v1alpha1::Condition],
    now: jiff::Timestamp,
) -> Duration {
    super::conditions::find(conditions, "Ready")
        .and_then(|c| c.last_transition_time.known())
        .and_then(|since| Duration::try_from(now.duration_since(since)).ok())
        .unwrap_or_default()
}

/// What became of an operation in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Followed {
    /// Still running: look again later.
    Pending,
    /// Finished; `error` is Google's message when it failed.
    Done {
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// Google no longer knows it (operations expire): carry on as if it finished.
    Gone,
}

impl Followed {
    /// Whether the operation is over (done or forgotten).
    pub fn is_over(&self) -> bool {
        !matches!(self, Followed::Pending)
    }

    /// Google's error message, if the operation failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            Followed::Done { error } => error.as_deref(),
            _ => None,
        }
    }
}

/// Classifies the answer of `operations.get`; other errors are the caller's to report.
pub fn follow(read: &GcpResult<Operation>) -> Result<Followed, &GcpError> {
    match read {
        Ok(op) if !op.done => Ok(Followed::Pending),
        Ok(op) => Ok(Followed::Done {
            error: match &op.result {
                Some(OpResult::Error(status)) => Some(status.message.clone()),
                _ => None,
            },
        }),
        Err(e) if e.code == Code::NotFound => Ok(Followed::Gone),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: Code) -> GcpError {
        GcpError::new("run", "operations.get", code, "m")
    }

    #[test]
    fn operations_are_pending_done_failed_or_gone() {
        assert_eq!(
            follow(&Ok(Operation::new().set_done(false))),
            Ok(Followed::Pending)
        );
        assert_eq!(
            follow(&Ok(Operation::new().set_done(true))),
            Ok(Followed::Done { error: None })
        );
        let failed: Operation = serde_json::from_value(serde_json::json!({
            "done": true, "error": {"code": 9, "message": "key disabled"}
        }))
        .unwrap();
        assert_eq!(follow(&Ok(failed)).unwrap().error(), Some("key disabled"));
        assert_eq!(follow(&Err(err(Code::NotFound))), Ok(Followed::Gone));
        assert!(follow(&Err(err(Code::Unavailable))).is_err());
    }
}

#[cfg(test)]
mod poll_tests {
    use super::*;
    use crate::api::v1alpha1::Condition;

    #[test]
    fn operations_are_polled_soon_then_less_often_up_to_a_cap() {
        let first = Duration::from_millis(500);
        let delays: Vec<u128> = [0, 400, 1_000, 3_000, 8_000, 60_000]
            .map(|ms| poll_after(first, Duration::from_millis(ms)).as_millis())
            .into();
        assert_eq!(delays, [500, 500, 1_000, 3_000, 8_000, 10_000]);
        assert_eq!(
            poll_after(Duration::from_secs(30), Duration::ZERO),
            Duration::from_secs(30),
            "a first poll longer than the cap is kept"
        );
    }

    #[test]
    fn work_is_in_flight_since_ready_last_changed() {
        let ready = |t: &str| Condition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: "Reconciling".into(),
            message: "".into(),
            last_transition_time: t.into(),
            observed_generation: Some(1),
        };
        let now: jiff::Timestamp = "2026-01-01T00:00:08Z".parse().unwrap();
        assert_eq!(
            in_flight_for(&[ready("2026-01-01T00:00:02Z")], now),
            Duration::from_secs(6)
        );
        assert_eq!(in_flight_for(&[], now), Duration::ZERO);
        assert_eq!(
            in_flight_for(&[ready("2026-01-01T00:01:00Z")], now),
            Duration::ZERO
        );
        assert_eq!(in_flight_for(&[ready("garbage")], now), Duration::ZERO);
    }
}

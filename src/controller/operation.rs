//! Following a long-running Google operation that a pass started, without holding a worker:
//! its name is kept in `status.operation` and looked at again on the next pass.

use google_cloud_longrunning::model::Operation;
use google_cloud_longrunning::model::operation::Result as OpResult;

use crate::gcp::{Code, GcpError, GcpResult};

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

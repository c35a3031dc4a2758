//! The crate's error type: each error knows whether a retry can heal it.

use std::time::Duration;

use crate::gcp::{Code, GcpError};

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// A Google API call failed.
    #[error("{0}")]
    Gcp(#[from] GcpError),

    /// The spec cannot work as written; nothing is retried until it changes.
    #[error("{reason}: {message}")]
    Spec {
        /// Condition reason, e.g. `InvalidSpec`, `AlreadyExists`, `LocationMismatch`.
        reason: &'static str,
        /// What the user has to change.
        message: String,
    },

    /// Google cannot serve the spec yet for a reason outside the spec (a failed deploy); looked
    /// at again with backoff.
    #[error("{reason}: {message}")]
    Blocked {
        /// Condition reason, e.g. `DeployFailed`.
        reason: &'static str,
        /// Google's explanation.
        message: String,
    },

    /// Something runwarden waits for (an operation, a dependency); not a failure.
    #[error("waiting: {what}")]
    Waiting {
        /// What is awaited, for logs.
        what: String,
        /// When to look again.
        after: Duration,
    },

    /// The object could not be read as its kind (a malformed object).
    #[error("invalid object: {0}")]
    InvalidObject(String),

    /// The finalizer helper failed around our apply or cleanup.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// Serializing a patch failed.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Unwraps finalizer errors to the reconcile error inside, if any.
    pub fn inner(&self) -> &Error {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(boxed) => match boxed.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }

    /// Whether a retry with backoff can succeed; `false` means wait for a spec change.
    pub fn is_transient(&self) -> bool {
        match self.inner() {
            Error::Spec { .. } | Error::InvalidObject(_) | Error::Serialization(_) => false,
            Error::Gcp(e) => {
                e.is_transient()
                    || !(matches!(e.code, Code::InvalidArgument | Code::AlreadyExists)
                        || org_policy_violation(e))
            }
            _ => true,
        }
    }

    /// When to retry, if the failed call said (Google's `RetryInfo`, or a spent client-side
    /// Cloud Run budget): the retry is scheduled for then instead of the exponential backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.inner() {
            Error::Gcp(e) => e.retry_after,
            _ => None,
        }
    }

    /// A short label for metrics and condition reasons.
    pub fn metric_label(&self) -> &'static str {
        match self.inner() {
            Error::Kube(_) => "KubeError",
            Error::Gcp(e) => reason_of(e.code),
            Error::Spec { reason, .. } | Error::Blocked { reason, .. } => reason,
            Error::Waiting { .. } => "Waiting",
            Error::InvalidObject(_) => "InvalidObject",
            Error::Finalizer(_) => "FinalizerError",
            Error::Serialization(_) => "SerializationError",
        }
    }
}

/// Whether Google refused a call because an organization policy constraint forbids it
/// (`FAILED_PRECONDITION` naming a `constraints/...`, e.g. `constraints/run.allowedIngress`):
/// retrying the same request cannot succeed; the spec (or the organization's policy, then
/// touch the object) has to change.
///
/// Google names the constraint in a `google.rpc.PreconditionFailure` violation (its `type`),
/// often with no more than `Precondition check failed.` as the message; the message is looked
/// at too, for answers without the detail.
pub fn org_policy_violation(e: &GcpError) -> bool {
    let message = e.message.to_ascii_lowercase();
    e.code == Code::FailedPrecondition
        && (e.preconditions.iter().any(|v| v.is_constraint())
            || ["constraints/", "organization policy", "org policy"]
                .iter()
                .any(|m| message.contains(m)))
}

/// The condition reason for a Google status code.
pub fn reason_of(code: Code) -> &'static str {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => "PermissionDenied",
        Code::ResourceExhausted => "QuotaExceeded",
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => "Unavailable",
        Code::Aborted => "Conflict",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::InvalidArgument | Code::OutOfRange => "InvalidSpec",
        Code::FailedPrecondition => "FailedPrecondition",
        _ => "GoogleError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcp(code: Code) -> Error {
        Error::Gcp(GcpError::new("run", "services.patch", code, "m"))
    }

    #[test]
    fn google_codes_map_to_the_reasons_users_see() {
        assert_eq!(
            gcp(Code::PermissionDenied).metric_label(),
            "PermissionDenied"
        );
        assert_eq!(gcp(Code::ResourceExhausted).metric_label(), "QuotaExceeded");
        assert_eq!(gcp(Code::Unavailable).metric_label(), "Unavailable");
    }

    #[test]
    fn spec_errors_wait_for_a_change_and_quota_errors_retry() {
        assert!(
            !Error::Spec {
                reason: "InvalidSpec",
                message: String::new()
            }
            .is_transient()
        );
        assert!(!gcp(Code::InvalidArgument).is_transient());
        assert!(gcp(Code::ResourceExhausted).is_transient());
        assert!(
            gcp(Code::PermissionDenied).is_transient(),
            "a missing grant can be fixed outside the spec"
        );
    }

    #[test]
    fn retry_advice_survives_the_finalizer_wrapper() {
        let advised = GcpError {
            retry_after: Some(Duration::from_secs(42)),
            ..GcpError::new("run", "services.patch", Code::ResourceExhausted, "m")
        };
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            Error::Gcp(advised),
        )));
        assert_eq!(wrapped.retry_after(), Some(Duration::from_secs(42)));
        assert_eq!(gcp(Code::ResourceExhausted).retry_after(), None);
        assert_eq!(
            Error::Spec {
                reason: "InvalidSpec",
                message: String::new()
            }
            .retry_after(),
            None
        );
    }

    #[test]
    fn an_org_policy_refusal_waits_for_a_change_other_preconditions_retry() {
        let refused = Error::Gcp(GcpError::new(
            "run",
            "services.create",
            Code::FailedPrecondition,
            "Violation in CreateServiceRequest.service.ingress: ingress 'all' is not allowed by organization policy constraint 'constraints/run.allowedIngress'",
        ));
        assert!(!refused.is_transient());
        assert_eq!(refused.metric_label(), "FailedPrecondition");
        assert!(
            gcp(Code::FailedPrecondition).is_transient(),
            "a precondition outside org policy (a key being enabled) can heal"
        );
    }

    #[test]
    fn a_constraint_named_only_in_the_precondition_detail_waits_for_a_change() {
        let violation = |kind: &str| crate::gcp::PreconditionViolation {
            kind: kind.into(),
            subject: "orgpolicy:projects/p".into(),
            description: String::new(),
        };
        let refused = |kind: &str| {
            Error::Gcp(GcpError {
                preconditions: vec![violation(kind)],
                ..GcpError::new(
                    "run",
                    "services.create",
                    Code::FailedPrecondition,
                    "Precondition check failed.",
                )
            })
        };
        assert!(!refused("constraints/run.allowedIngress").is_transient());
        assert!(
            refused("TOS").is_transient(),
            "a precondition other than a constraint (terms of service accepted) can heal"
        );
        let not_a_precondition = Error::Gcp(GcpError {
            preconditions: vec![violation("constraints/run.allowedIngress")],
            ..GcpError::new("run", "services.create", Code::Unavailable, "m")
        });
        assert!(not_a_precondition.is_transient());
    }

    #[test]
    fn finalizer_errors_are_judged_by_the_error_inside() {
        let inner = Error::Spec {
            reason: "AlreadyExists",
            message: String::new(),
        };
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            inner,
        )));
        assert_eq!(wrapped.metric_label(), "AlreadyExists");
        assert!(!wrapped.is_transient());
    }
}

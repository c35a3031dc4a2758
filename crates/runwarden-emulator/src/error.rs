//! Google API errors: `{"error":{"code","message","status","details"}}` with the HTTP code that
//! Google's front end uses for each gRPC status.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// A gRPC status code, as Google APIs report it in `error.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Code {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    const ALL: [Code; 16] = [
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The status name, e.g. `NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The numeric gRPC code (used in `google.rpc.Status.code` inside operations).
    pub fn number(self) -> i32 {
        match self {
            Code::Cancelled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DataLoss => 15,
            Code::Unauthenticated => 16,
        }
    }

    /// The HTTP status Google's front end maps this code to.
    pub fn http(self) -> StatusCode {
        match self {
            Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// Parses a status name such as `UNAVAILABLE` (case-insensitive).
    pub fn parse(s: &str) -> Option<Code> {
        let upper = s.trim().to_ascii_uppercase();
        Code::ALL.into_iter().find(|c| c.name() == upper)
    }
}

/// An error as a Google API returns it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct GError {
    /// The gRPC status.
    pub code: Code,
    /// The human-readable message.
    pub message: String,
    /// `google.protobuf.Any` details, each with its `@type`.
    pub details: Vec<Value>,
}

impl GError {
    /// An error without details.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        GError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// INVALID_ARGUMENT with a `google.rpc.BadRequest` field violation.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        GError::new(Code::InvalidArgument, message.clone()).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": message}]
        }))
    }

    /// INVALID_ARGUMENT without a field.
    pub fn invalid(message: impl Into<String>) -> Self {
        GError::new(Code::InvalidArgument, message)
    }

    /// NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        GError::new(Code::NotFound, message)
    }

    /// FAILED_PRECONDITION.
    pub fn precondition(message: impl Into<String>) -> Self {
        GError::new(Code::FailedPrecondition, message)
    }

    /// PERMISSION_DENIED for an IAM permission, with the `ErrorInfo` Google attaches.
    pub fn permission(permission: &str, message: impl Into<String>) -> Self {
        GError::new(Code::PermissionDenied, message).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "iam.googleapis.com",
            "metadata": {"permission": permission}
        }))
    }

    /// PERMISSION_DENIED for an IAM permission on a resource: `ErrorInfo` metadata names both.
    pub fn permission_on(permission: &str, resource: &str, message: impl Into<String>) -> Self {
        let mut e = GError::permission(permission, message);
        e.details[0]["metadata"]["resource"] = json!(resource);
        e
    }

    /// Adds one `details` entry.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// The HTTP error body.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code.http().as_u16(),
            "message": self.message,
            "status": self.code.name(),
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }

    /// The `google.rpc.Status` form used in an operation's `error`.
    pub fn rpc_status(&self) -> Value {
        let mut status = json!({"code": self.code.number(), "message": self.message});
        if !self.details.is_empty() {
            status["details"] = Value::Array(self.details.clone());
        }
        status
    }
}

/// Result of a handler.
pub type GResult<T> = std::result::Result<T, GError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_codes_follow_google() {
        assert_eq!(Code::Aborted.http(), StatusCode::CONFLICT);
        assert_eq!(Code::FailedPrecondition.http(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Code::ResourceExhausted.http(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(Code::parse("unavailable"), Some(Code::Unavailable));
        assert_eq!(Code::parse("NOPE"), None);
        let body = GError::not_found("x").body();
        assert_eq!(body["error"]["code"], 404);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
    }
}

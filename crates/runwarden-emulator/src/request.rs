//! A parsed API request, as the router hands it to the API handlers. A leaf module: it knows
//! nothing of routing or of the APIs, so handlers and the router can both depend on it.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::error::{GError, GResult};
use crate::util;

/// A parsed API request.
pub(crate) struct Req {
    /// Path segments after the version (`projects`, `p`, `locations`, ...), verb removed.
    pub(crate) segs: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Value,
    /// Print enums as numbers.
    pub(crate) int: bool,
    /// Operation delay for operations started by this request.
    pub(crate) delay: Duration,
    /// How long each task attempt of executions started by this request takes.
    pub(crate) task_duration: Duration,
    /// Who makes the call (resolved from the bearer token with the state locked).
    pub(crate) caller: Caller,
    /// The emulator clock when the request arrived (drives token expiry and quota windows).
    pub(crate) now: SystemTime,
}

/// Who makes a request: nobody in particular (no `Authorization` header, full access) or the
/// service account a token from `generateAccessToken` stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Anonymous,
    ServiceAccount(String),
}

impl Req {
    /// Path segment `i` (after the version), or `""`.
    pub(crate) fn seg(&self, i: usize) -> &str {
        self.segs.get(i).map(String::as_str).unwrap_or("")
    }
    /// A query parameter.
    pub(crate) fn q(&self, key: &str) -> Option<&str> {
        util::query_param(&self.query, key)
    }
    /// A boolean query parameter (`true`/`1`).
    pub(crate) fn q_bool(&self, key: &str) -> bool {
        util::query_bool(&self.query, key)
    }
    /// The body as a JSON object (`{}` when empty), or INVALID_ARGUMENT.
    pub(crate) fn object_body(&self) -> GResult<Value> {
        match &self.body {
            Value::Null => Ok(json!({})),
            Value::Object(_) => Ok(self.body.clone()),
            other => Err(GError::invalid(format!(
                "Invalid JSON payload received. Expected an object, got {other}."
            ))),
        }
    }
}

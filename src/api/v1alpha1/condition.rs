use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition, in the shape of Kubernetes' `metav1.Condition`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, e.g. `Ready`.
    #[serde(rename = "type")]
    #[schemars(length(max = 64))]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(length(max = 8))]
    pub status: String,
    /// A CamelCase word saying why the condition is in this state.
    #[schemars(length(max = 128))]
    pub reason: String,
    /// A human-readable explanation, often Google's own error message.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[schemars(length(max = 64))]
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition status values.
pub mod status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// It is not known yet whether the condition holds.
    pub const UNKNOWN: &str = "Unknown";
}

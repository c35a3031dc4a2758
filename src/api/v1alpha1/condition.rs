use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A word of a condition's small vocabulary (its type, status or reason): one shared copy per
/// distinct word instead of one allocation per condition of every cached object.
pub type Word = Cow<'static, str>;

/// At most this many distinct words are shared; any further one is kept per condition (the
/// shared ones live as long as the process, so they must stay few).
const MAX_SHARED_WORDS: usize = 512;
/// Longest word shared.
const MAX_SHARED_LEN: usize = 128;

static WORDS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// `word` as a [`Word`]: the shared copy (made on first sight, while fewer than
/// [`MAX_SHARED_WORDS`] exist), else `word` itself.
pub fn word(word: impl Into<Word>) -> Word {
    let word = word.into();
    if let Cow::Borrowed(_) = word {
        return word;
    }
    if word.len() > MAX_SHARED_LEN {
        return word;
    }
    let mut words = WORDS.lock().unwrap_or_else(|e| e.into_inner());
    let words = words.get_or_insert_with(HashSet::new);
    if let Some(shared) = words.get(word.as_ref()) {
        return Cow::Borrowed(shared);
    }
    if words.len() >= MAX_SHARED_WORDS {
        return word;
    }
    let shared: &'static str = Box::leak(word.into_owned().into_boxed_str());
    words.insert(shared);
    Cow::Borrowed(shared)
}

fn shared_word<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Word, D::Error> {
    String::deserialize(deserializer).map(word)
}

/// A status condition, in the shape of Kubernetes' `metav1.Condition`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, e.g. `Ready`.
    #[serde(rename = "type")]
    #[serde(deserialize_with = "shared_word")]
    #[schemars(length(max = 64))]
    pub type_: Word,
    /// `True`, `False` or `Unknown`.
    #[serde(deserialize_with = "shared_word")]
    #[schemars(length(max = 8))]
    pub status: Word,
    /// A CamelCase word saying why the condition is in this state.
    #[serde(deserialize_with = "shared_word")]
    #[schemars(length(max = 128))]
    pub reason: Word,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(reason: &str) -> Condition {
        serde_json::from_value(serde_json::json!({
            "type": "Ready", "status": "True", "reason": reason,
            "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn parsed_conditions_share_one_copy_of_each_word() {
        let (a, b) = (parsed("Serving"), parsed("Serving"));
        for (x, y) in [
            (&a.type_, &b.type_),
            (&a.status, &b.status),
            (&a.reason, &b.reason),
        ] {
            assert!(matches!(x, Cow::Borrowed(_)), "{x} is shared");
            assert_eq!(x.as_ptr(), y.as_ptr(), "{x}: one copy");
        }
        assert_eq!((a.type_.as_ref(), a.status.as_ref()), ("Ready", "True"));
        // The wire form is unchanged.
        assert_eq!(
            serde_json::to_value(&a).unwrap()["reason"],
            serde_json::json!("Serving")
        );
    }

    #[test]
    fn a_word_too_long_to_share_is_kept_as_it_is() {
        let long = "x".repeat(MAX_SHARED_LEN + 1);
        assert!(matches!(parsed(&long).reason, Cow::Owned(r) if r == long));
    }
}

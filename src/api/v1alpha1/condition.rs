use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A word of a condition's small vocabulary (its type, status or reason): one shared copy per
/// distinct word instead of one allocation per condition of every cached object.
pub type Word = Cow<'static, str>;

/// At most this many distinct words (and, apart, messages) are shared; any further one is
/// kept per condition (the shared ones live as long as the process, so they must stay few).
const MAX_SHARED_WORDS: usize = 512;
/// Longest word (or message) shared.
const MAX_SHARED_LEN: usize = 128;

/// One table of shared words.
struct Shared(Mutex<Option<HashSet<&'static str>>>);

/// Types, statuses and reasons.
static WORDS: Shared = Shared(Mutex::new(None));
/// Messages: most are the same for every healthy object (`no VPC egress`, `no RunSecurityPolicy
/// applies to this namespace`, ...). The ones that name the object are not shared once the
/// table is full; a table of their own keeps them from crowding out the reasons.
static MESSAGES: Shared = Shared(Mutex::new(None));

impl Shared {
    fn get(&self, word: Word) -> Word {
        if let Cow::Borrowed(_) = word {
            return word;
        }
        if word.len() > MAX_SHARED_LEN {
            return word;
        }
        let mut words = self.0.lock().unwrap_or_else(|e| e.into_inner());
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
}

/// `word` as a [`Word`]: the shared copy (made on first sight, while fewer than
/// [`MAX_SHARED_WORDS`] exist), else `word` itself.
pub fn word(word: impl Into<Word>) -> Word {
    WORDS.get(word.into())
}

fn shared_word<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Word, D::Error> {
    String::deserialize(deserializer).map(word)
}

fn shared_message<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Word, D::Error> {
    Option::<String>::deserialize(deserializer).map(|m| MESSAGES.get(m.unwrap_or_default().into()))
}

/// A condition's `lastTransitionTime`: RFC 3339 on the wire, a time in memory (16 bytes, where
/// the text took 24 and a heap block). A text that is no time (a status written by hand) reads
/// as the Unix epoch, so the object stays readable and the next change of the condition
/// replaces it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub jiff::Timestamp);

impl Stamp {
    /// The time, unless the text was no time.
    pub fn known(self) -> Option<jiff::Timestamp> {
        (self != Stamp::default()).then_some(self.0)
    }
}

impl From<&str> for Stamp {
    fn from(text: &str) -> Self {
        Stamp(text.parse().unwrap_or_default())
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Stamp::from(text.as_ref()))
    }
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
    #[serde(default, deserialize_with = "shared_message")]
    #[schemars(with = "String", length(max = 32768))]
    pub message: Word,
    /// When the status last changed (RFC 3339).
    #[schemars(with = "String", length(max = 64))]
    pub last_transition_time: Stamp,
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
    fn messages_are_shared_and_times_kept_without_text() {
        let (a, b) = (parsed("Serving"), parsed("Serving"));
        assert!(matches!(a.message, Cow::Borrowed(_)));
        assert_eq!(a.message.as_ptr(), b.message.as_ptr(), "one copy");
        assert_eq!(
            serde_json::to_value(&a).unwrap()["lastTransitionTime"],
            serde_json::json!("2026-01-01T00:00:00Z"),
            "the wire form is unchanged"
        );
        let by_hand: Condition = serde_json::from_value(serde_json::json!({
            "type": "Ready", "status": "True", "reason": "R", "lastTransitionTime": "yesterday",
        }))
        .unwrap();
        assert_eq!(by_hand.last_transition_time, Stamp::default());
        assert_eq!(by_hand.message, "");
    }

    #[test]
    fn a_word_too_long_to_share_is_kept_as_it_is() {
        let long = "x".repeat(MAX_SHARED_LEN + 1);
        assert!(matches!(parsed(&long).reason, Cow::Owned(r) if r == long));
    }
}

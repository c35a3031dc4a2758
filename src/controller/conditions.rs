//! Status conditions: building them, and merging them into the previous ones so that
//! `lastTransitionTime` only moves when a status really changes.

use crate::api::v1alpha1::{Condition, status};

/// A condition as a reconcile computes it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Cond {
    /// A condition that holds.
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: status::TRUE,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn fail(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: status::FALSE,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// A condition whose outcome is not known yet.
    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: status::UNKNOWN,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// Whether the condition holds.
    pub fn is_true(&self) -> bool {
        self.status == status::TRUE
    }
}

/// The `Ready` condition over sub-conditions given in causal order: True when all are, else the
/// first one that is not, with its reason and message; one not evaluated yet (`Pending`) gives
/// way to a later one that says what stops the object (a pass that stopped before the earlier
/// steps). An `Audit` policy's violation (`AuditViolation`) reports without blocking: the
/// service is deployed and serves.
pub fn ready(subs: &[Cond]) -> Cond {
    let blocking = |c: &&Cond| !c.is_true() && c.reason != super::reasons::AUDIT_VIOLATION;
    let evaluated = |c: &&Cond| c.reason != super::reasons::PENDING;
    match subs
        .iter()
        .filter(blocking)
        .find(evaluated)
        .or_else(|| subs.iter().find(blocking))
    {
        None => Cond::ok("Ready", "Ready", "all conditions are satisfied"),
        Some(first) => Cond {
            type_: "Ready",
            status: first.status,
            reason: first.reason.clone(),
            message: format!("{}: {}", first.type_, first.message),
        },
    }
}

/// `Ready` as a pass leaves it: [`ready`] over `subs`, but never True unless the pass decided
/// every one of them (a sub-condition carried over from an earlier pass, maybe of an earlier
/// generation, is no proof for this one): `Unknown`, reason `Reconciling`, then.
pub fn ready_after(decided: &[Cond], subs: &[Cond]) -> Cond {
    let ready = ready(subs);
    let unchecked = subs
        .iter()
        .find(|s| !decided.iter().any(|d| d.type_ == s.type_));
    match unchecked {
        Some(sub) if ready.is_true() => Cond::unknown(
            "Ready",
            super::reasons::RECONCILING,
            format!("{}: not checked for this generation yet", sub.type_),
        ),
        _ => ready,
    }
}

/// `Ready` as a pass that stopped with `failure` leaves it: a failed pass never leaves `Ready`
/// True (nor `Unknown`, which says nothing of why): unless a sub-condition already makes it
/// False, it is False with the error's reason and message. Whatever step failed, and however
/// early (before any sub-condition was decided), the status cannot claim the object is fine
/// while its last pass failed. A wait is no failure.
pub fn ready_unless_failed(ready: Cond, failure: Option<&crate::Error>) -> Cond {
    match failure.map(crate::Error::inner) {
        Some(crate::Error::Waiting { .. }) | None => ready,
        Some(_) if ready.status == status::FALSE => ready,
        Some(e) => Cond::fail(
            "Ready",
            e.metric_label(),
            format!("the last pass failed: {e}"),
        ),
    }
}

/// The longest condition message the CRDs accept (`maxLength` of `message`); longer ones (a
/// Google error quoting a whole request) are cut with an ellipsis, or the API server would
/// refuse the whole status.
pub const MESSAGE_MAX: usize = 32768;

/// The conditions to store: `new` in order, keeping the previous `lastTransitionTime` of a type
/// whose status did not change, and `now` for the others; messages cut to [`MESSAGE_MAX`].
pub fn merge(
    old: &[Condition],
    new: &[Cond],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    new.iter()
        .map(|c| {
            let previous = old.iter().find(|o| o.type_ == c.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == c.status => p.last_transition_time,
                _ => now.into(),
            };
            Condition {
                type_: c.type_.into(),
                status: c.status.into(),
                reason: crate::api::v1alpha1::word(c.reason.clone()),
                message: super::truncate(c.message.clone(), MESSAGE_MAX).into(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The conditions of `types` (in that order) for a status: the one a pass `decided`, else the
/// previous one carried over (a pass that stopped early does not reach every condition), else
/// `Unknown`/`Pending`.
pub fn carry_over(decided: &[Cond], old: &[Condition], types: &[&'static str]) -> Vec<Cond> {
    types
        .iter()
        .map(|t| {
            decided
                .iter()
                .rev()
                .find(|c| c.type_ == *t)
                .cloned()
                .unwrap_or_else(|| match find(old, t) {
                    Some(prev) => Cond {
                        type_: t,
                        status: match prev.status.as_ref() {
                            status::TRUE => status::TRUE,
                            status::FALSE => status::FALSE,
                            _ => status::UNKNOWN,
                        },
                        reason: prev.reason.to_string(),
                        message: prev.message.to_string(),
                    },
                    None => Cond::unknown(t, "Pending", "not evaluated yet"),
                })
        })
        .collect()
}

/// Whether an object is Ready for its current generation: `Some(true)` only when `Ready` is
/// True and the status observed `generation`; `None` when unknown.
pub fn is_ready(
    conditions: &[Condition],
    observed_generation: Option<i64>,
    generation: Option<i64>,
) -> Option<bool> {
    match find(conditions, "Ready")?.status.as_ref() {
        status::TRUE => Some(observed_generation == generation),
        status::FALSE => Some(false),
        _ => None,
    }
}

/// The status of condition `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The conditions a pass leaves on a workload (any kind): `Ready` first (True only when the pass
/// checked every sub-condition, never after a pass that stopped with a `failure`), then every
/// sub-condition of `types` (those the pass did not reach keep their `old` value), with
/// transition times kept for unchanged statuses, so a pass that finds nothing new computes the
/// conditions already stored.
pub fn after_pass(
    old: &[Condition],
    decided: &[Cond],
    types: &[&'static str],
    failure: Option<&crate::Error>,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let subs = carry_over(decided, old, types);
    let mut all = vec![ready_unless_failed(ready_after(decided, &subs), failure)];
    all.extend(subs);
    merge(old, &all, generation, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_takes_the_first_failing_reason() {
        let subs = [
            Cond::ok("PolicyCompliant", "NoPolicy", ""),
            Cond::fail(
                "NetworkReady",
                "ConnectorNotReady",
                "connector c is Creating",
            ),
            Cond::fail("ServiceReady", "DeployFailed", "boom"),
        ];
        let r = ready(&subs);
        assert_eq!(
            (r.status, r.reason.as_str()),
            (status::FALSE, "ConnectorNotReady")
        );
        assert_eq!(r.message, "NetworkReady: connector c is Creating");
        assert!(ready(&subs[..1]).is_true());
        let audited = [Cond::fail(
            "PolicyCompliant",
            "AuditViolation",
            "requireCmek",
        )];
        assert!(
            ready(&audited).is_true(),
            "an audit finding does not block Ready"
        );
        let stopped_early = [
            Cond::unknown("PolicyCompliant", "Pending", "not evaluated yet"),
            Cond::fail("ServiceReady", "IdentityNotConfigured", "annotate it"),
        ];
        assert_eq!(ready(&stopped_early).reason, "IdentityNotConfigured");
        assert_eq!(ready(&stopped_early[..1]).reason, "Pending");
    }

    #[test]
    fn ready_is_true_only_when_the_pass_checked_every_sub_condition() {
        let subs = [
            Cond::ok("PolicyCompliant", "NoPolicy", ""),
            Cond::ok("ServiceReady", "Ready", "carried over"),
        ];
        let r = ready_after(&subs[..1], &subs);
        assert_eq!(
            (r.status, r.reason.as_str()),
            (status::UNKNOWN, "Reconciling")
        );
        assert_eq!(
            r.message,
            "ServiceReady: not checked for this generation yet"
        );
        assert!(ready_after(&subs, &subs).is_true());
        let failing = [Cond::fail("PolicyCompliant", "Violation", "no")];
        assert_eq!(ready_after(&[], &failing).reason, "Violation");
    }

    #[test]
    fn a_failed_pass_never_leaves_ready_true() {
        let refused = crate::Error::Gcp(crate::gcp::GcpError::new(
            "run",
            "services.get",
            crate::gcp::Code::PermissionDenied,
            "Permission 'run.services.get' denied",
        ));
        let fine = Cond::ok("Ready", "Ready", "all conditions are satisfied");
        let r = ready_unless_failed(fine.clone(), Some(&refused));
        assert_eq!(
            (r.status, r.reason.as_str()),
            (status::FALSE, "PermissionDenied")
        );
        assert!(r.message.contains("run.services.get"), "{}", r.message);
        let unchecked = Cond::unknown("Ready", "Reconciling", "not checked");
        assert_eq!(
            ready_unless_failed(unchecked, Some(&refused)).status,
            status::FALSE
        );
        let said = Cond::fail("Ready", "DeployFailed", "ServiceReady: boom");
        assert_eq!(
            ready_unless_failed(said.clone(), Some(&refused)),
            said,
            "a sub-condition that already says why is kept"
        );
        assert_eq!(ready_unless_failed(fine.clone(), None), fine);
        let waiting = crate::Error::Waiting {
            what: "an operation".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            ready_unless_failed(fine.clone(), Some(&waiting)),
            fine,
            "a wait is no failure"
        );
    }

    #[test]
    fn messages_are_cut_to_the_schema_limit_on_a_char_boundary() {
        let schema = serde_json::to_value(schemars::schema_for!(Condition)).unwrap();
        assert_eq!(
            schema["properties"]["message"]["maxLength"],
            serde_json::json!(MESSAGE_MAX),
            "MESSAGE_MAX is the CRD's limit"
        );
        let long = "é".repeat(MESSAGE_MAX);
        let merged = merge(&[], &[Cond::fail("Ready", "DeployFailed", long)], None, "t");
        let message = &merged[0].message;
        assert!(message.len() <= MESSAGE_MAX, "{}", message.len());
        assert!(message.ends_with('…'));
        let short = merge(&[], &[Cond::ok("Ready", "Ready", "fine")], None, "t");
        assert_eq!(short[0].message, "fine");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        const T1: &str = "2026-01-01T00:00:01Z";
        const T3: &str = "2026-01-01T00:00:03Z";
        let first = merge(
            &[],
            &[Cond::unknown("Ready", "Reconciling", "")],
            Some(1),
            T1,
        );
        let same = merge(
            &first,
            &[Cond::unknown("Ready", "Waiting", "x")],
            Some(2),
            "2026-01-01T00:00:02Z",
        );
        assert_eq!(same[0].last_transition_time, T1.into());
        assert_eq!(same[0].reason, "Waiting");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(&same, &[Cond::ok("Ready", "Ready", "")], Some(2), T3);
        assert_eq!(flipped[0].last_transition_time, T3.into());
    }
}

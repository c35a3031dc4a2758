//! Who may call a workload: the members of `roles/run.invoker` on a service (its invokers) or a
//! job (its executors), one stage for both kinds in the object's `access.mode`.
//!
//! - `Authoritative` (default): the role holds exactly the wanted members; every other grant of
//!   it is removed.
//! - `Additive`: runwarden grants the wanted members and removes a member only when it granted
//!   it for this object (`status.access.granted`) and it left the spec. Members granted by anyone
//!   else are never removed, even when the spec lists and later unlists them. A grant is recorded
//!   in status *before* the IAM write that makes it ([`Record`]), so a crash in between cannot
//!   forget it.
//!
//! Switching modes: `Additive` → `Authoritative` makes the role hold exactly the spec (that is
//! what Authoritative means: other members go) and forgets `status.access`. `Authoritative` →
//! `Additive` takes the spec's members that hold the role as runwarden's (it kept them until
//! then) and leaves every other member alone.

use std::collections::BTreeSet;

use google_cloud_iam_v1::model::Policy;

use crate::api::v1alpha1::{AccessMode, AccessStatus};
use crate::controller::Note;
use crate::controller::conditions::Cond;
use crate::controller::iam::{self, INVOKER_ROLE};
use crate::controller::reasons::{INVALID_MEMBER, RECONCILING};
use crate::error::{Error, reason_of};
use crate::gcp::{Code, GcpError, IamPolicyApi};

/// The condition type of this stage, for both kinds.
pub const ACCESS_READY: &str = "AccessReady";

/// The organization policy constraint of domain restricted sharing.
pub const MEMBER_DOMAINS_CONSTRAINT: &str = "constraints/iam.allowedPolicyMemberDomains";

/// `AccessReady` reason when domain restricted sharing refused a member: it names the
/// constraint, and waits for a spec change (or the organization's policy, then a touch).
pub const ALLOWED_POLICY_MEMBER_DOMAINS: &str = "AllowedPolicyMemberDomains";

/// What the object asks of the role.
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    /// The service or job.
    pub resource: &'a str,
    /// `access.mode`.
    pub mode: AccessMode,
    /// The members the role must hold (the spec's, with what the kind adds).
    pub members: &'a BTreeSet<String>,
    /// `status.access` as the last pass left it.
    pub recorded: Option<&'a AccessStatus>,
    /// Whether the last pass held the role in `Authoritative` mode (its members are then
    /// runwarden's when the object switches to `Additive`).
    pub was_authoritative: bool,
}

/// The write of the role's members.
#[derive(Clone, Debug, PartialEq)]
pub struct SetMembers {
    /// The service or job.
    pub resource: String,
    /// `access.mode`.
    pub mode: AccessMode,
    /// The members wanted.
    pub members: BTreeSet<String>,
    /// Members granted.
    pub add: Vec<String>,
    /// Members removed (`Additive`: only runwarden's).
    pub remove: Vec<String>,
    /// `Additive`: members that are not runwarden's, left as they are.
    pub kept: Vec<String>,
    /// `status.access` to record before the write (`Additive`, new grants).
    pub record: Option<AccessStatus>,
    /// `status.access` once the write is made.
    pub after: Option<AccessStatus>,
    /// The policy to write (with the etag that was read).
    pub policy: Policy,
}

impl SetMembers {
    /// The same edit of another version of the policy (after a concurrent change), `None` when
    /// it already is so.
    pub fn edit(&self, policy: &Policy) -> Option<Policy> {
        match self.mode {
            AccessMode::Authoritative => {
                iam::with_exact_members(policy, INVOKER_ROLE, &self.members)
            }
            AccessMode::Additive => additive_edit(policy, &self.add, &self.remove),
        }
    }
}

fn additive_edit(policy: &Policy, add: &[String], remove: &[String]) -> Option<Policy> {
    let mut out: Option<Policy> = None;
    for m in add {
        if let Some(p) = iam::with_member(out.as_ref().unwrap_or(policy), INVOKER_ROLE, m) {
            out = Some(p);
        }
    }
    for m in remove {
        if let Some(p) = iam::without_member(out.as_ref().unwrap_or(policy), INVOKER_ROLE, m) {
            out = Some(p);
        }
    }
    out
}

/// What the stage decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The write, when the policy differs.
    pub change: Option<SetMembers>,
    /// `status.access` after the pass (`None` in `Authoritative` mode).
    pub access: Option<AccessStatus>,
    /// How many members the role holds for the spec, and (`Additive`) how many others it keeps.
    pub summary: String,
}

/// The members of the role's unconditional bindings.
fn unconditional(policy: &Policy) -> BTreeSet<String> {
    policy
        .bindings
        .iter()
        .filter(|b| b.role == INVOKER_ROLE && b.condition.is_none())
        .flat_map(|b| b.members.iter().cloned())
        .collect()
}

/// [`decide`] for an object whose last pass left `conditions` and `recorded`
/// (`status.access`).
pub fn decide_after(
    resource: &str,
    mode: AccessMode,
    members: &BTreeSet<String>,
    conditions: &[crate::api::v1alpha1::Condition],
    recorded: Option<&AccessStatus>,
    policy: &Policy,
) -> Decision {
    decide(
        Wanted {
            resource,
            mode,
            members,
            recorded,
            was_authoritative: was_authoritative(conditions, recorded),
        },
        policy,
    )
}

/// Decides the role's write from the policy read (pure).
pub fn decide(wanted: Wanted<'_>, policy: &Policy) -> Decision {
    match wanted.mode {
        AccessMode::Authoritative => {
            let current: BTreeSet<String> = policy
                .bindings
                .iter()
                .filter(|b| b.role == INVOKER_ROLE)
                .flat_map(|b| b.members.iter().cloned())
                .collect();
            let change =
                iam::with_exact_members(policy, INVOKER_ROLE, wanted.members).map(|next| {
                    SetMembers {
                        resource: wanted.resource.to_owned(),
                        mode: wanted.mode,
                        members: wanted.members.clone(),
                        add: wanted.members.difference(&current).cloned().collect(),
                        remove: current.difference(wanted.members).cloned().collect(),
                        kept: vec![],
                        record: None,
                        after: None,
                        policy: next,
                    }
                });
            Decision {
                change,
                access: None,
                summary: format!("{} member(s) as specified", wanted.members.len()),
            }
        }
        AccessMode::Additive => additive(wanted, policy),
    }
}

fn additive(wanted: Wanted<'_>, policy: &Policy) -> Decision {
    let current = unconditional(policy);
    let recorded: BTreeSet<String> = wanted
        .recorded
        .map(|a| a.granted.iter().cloned().collect())
        .unwrap_or_default();
    let ours: BTreeSet<String> = match wanted.recorded {
        Some(_) => recorded.clone(),
        None if wanted.was_authoritative => {
            wanted.members.intersection(&current).cloned().collect()
        }
        None => BTreeSet::new(),
    };
    let present: BTreeSet<String> = ours.intersection(&current).cloned().collect();
    let add: Vec<String> = wanted.members.difference(&current).cloned().collect();
    let remove: Vec<String> = present.difference(wanted.members).cloned().collect();
    let kept: Vec<String> = current.difference(&present).cloned().collect();
    let before: BTreeSet<String> = present.iter().chain(&add).cloned().collect();
    let after: BTreeSet<String> = before
        .iter()
        .filter(|m| !remove.contains(m))
        .cloned()
        .collect();
    let status = |set: &BTreeSet<String>| AccessStatus {
        granted: set.iter().cloned().collect(),
    };
    let change = additive_edit(policy, &add, &remove).map(|next| SetMembers {
        resource: wanted.resource.to_owned(),
        mode: wanted.mode,
        members: wanted.members.clone(),
        record: (!add.iter().all(|m| recorded.contains(m))).then(|| status(&before)),
        after: Some(status(&after)),
        add,
        remove,
        kept: kept.clone(),
        policy: next,
    });
    let others = kept.iter().filter(|m| !wanted.members.contains(*m)).count();
    Decision {
        change,
        access: Some(status(&after)),
        summary: format!(
            "the {} member(s) of the spec (Additive: {} granted by runwarden, {others} other member(s) left as they are)",
            wanted.members.len(),
            after.len()
        ),
    }
}

/// Persists `status.access` before an IAM write grants members, so that a crash between the
/// two cannot forget a grant.
#[async_trait::async_trait]
pub trait Record: Sync {
    /// Writes `access` into the object's status.
    async fn granted(&self, access: &AccessStatus) -> Result<(), Error>;
}

/// A pass nobody persists (a plan without a cluster, a test of one pass): records nothing.
#[derive(Debug)]
pub struct Unrecorded;

#[async_trait::async_trait]
impl Record for Unrecorded {
    async fn granted(&self, _: &AccessStatus) -> Result<(), Error> {
        Ok(())
    }
}

/// The controller's [`Record`]: the object's status as stored, with `access` replaced, written
/// (server-side apply) before the grant.
pub struct StatusRecord<'a, K, S> {
    /// The cluster.
    pub client: &'a kube::Client,
    /// The object.
    pub obj: &'a K,
    /// Its status as stored.
    pub current: Option<&'a S>,
    /// The stored status with `access` replaced.
    pub with: fn(Option<&S>, &AccessStatus) -> S,
}

#[async_trait::async_trait]
impl<K, S> Record for StatusRecord<'_, K, S>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Sync,
    S: serde::Serialize + PartialEq + Send + Sync,
{
    async fn granted(&self, access: &AccessStatus) -> Result<(), Error> {
        let status = (self.with)(self.current, access);
        super::frame::write_status(self.client, self.obj, self.current, &status)
            .await
            .map(|_| ())
    }
}

/// Makes the write: records the grants first when it must, then the read-modify-write (which
/// re-applies the same edit after a concurrent change). `access` is the pass's
/// `status.access`; `updated` the event reason (`InvokersUpdated`, `ExecutorsUpdated`).
pub async fn apply(
    api: &dyn IamPolicyApi,
    change: SetMembers,
    record: &dyn Record,
    updated: &'static str,
    access: &mut Option<AccessStatus>,
    notes: &mut Vec<Note>,
) -> Result<(), (Cond, Error)> {
    if let Some(before) = &change.record {
        record.granted(before).await.map_err(|e| {
            let c = Cond::unknown(
                ACCESS_READY,
                RECONCILING,
                format!("could not record the members to grant in status.access first: {e}"),
            );
            (c, e)
        })?;
        *access = Some(before.clone());
    }
    let written = iam::write_or_retry(api, &change.resource, change.policy.clone(), |p| {
        change.edit(p)
    })
    .await
    .map_err(|e| (failed(&e), Error::from(e)))?;
    access.clone_from(&change.after);
    if written {
        let resource = &change.resource;
        let message = match change.mode {
            AccessMode::Authoritative => {
                let list = if change.members.is_empty() {
                    "nobody".to_owned()
                } else {
                    change
                        .members
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("{INVOKER_ROLE} on {resource} is now held by {list}")
            }
            AccessMode::Additive => format!(
                "{INVOKER_ROLE} on {resource}: granted [{}], removed [{}] (Additive: {} other member(s) kept)",
                change.add.join(", "),
                change.remove.join(", "),
                change.kept.len()
            ),
        };
        notes.push(Note::normal(updated, "SetIamPolicy", message));
    }
    Ok(())
}

/// Whether Google refused the write under domain restricted sharing.
pub fn domain_restricted(e: &GcpError) -> bool {
    e.code == Code::FailedPrecondition
        && (e
            .preconditions
            .iter()
            .any(|v| v.kind == MEMBER_DOMAINS_CONSTRAINT)
            || e.message.contains("do not belong to a permitted customer"))
}

/// `AccessReady` after a failed IAM policy call.
pub fn failed(e: &GcpError) -> Cond {
    let reason = if e.code == Code::InvalidArgument {
        INVALID_MEMBER
    } else if domain_restricted(e) {
        ALLOWED_POLICY_MEMBER_DOMAINS
    } else {
        reason_of(e.code)
    };
    Cond::fail(ACCESS_READY, reason, e.message.clone())
}

/// Whether the last pass left the role held in `Authoritative` mode: `AccessReady` True and no
/// `status.access`.
pub fn was_authoritative(
    conditions: &[crate::api::v1alpha1::Condition],
    recorded: Option<&AccessStatus>,
) -> bool {
    recorded.is_none()
        && crate::controller::conditions::find(conditions, ACCESS_READY)
            .is_some_and(|c| c.status == crate::api::v1alpha1::status::TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_iam_v1::model::Binding;

    fn policy(members: &[&str]) -> Policy {
        Policy::new()
            .set_etag(bytes::Bytes::from_static(b"e1"))
            .set_bindings([
                Binding::new()
                    .set_role("roles/run.developer")
                    .set_members(["user:dev@example.com"]),
                Binding::new()
                    .set_role(INVOKER_ROLE)
                    .set_members(members.iter().copied()),
            ])
    }

    fn set(members: &[&str]) -> BTreeSet<String> {
        members.iter().map(|m| m.to_string()).collect()
    }

    fn status(members: &[&str]) -> AccessStatus {
        AccessStatus {
            granted: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn additive<'a>(
        members: &'a BTreeSet<String>,
        recorded: Option<&'a AccessStatus>,
    ) -> Wanted<'a> {
        Wanted {
            resource: "projects/p/locations/r/services/s",
            mode: AccessMode::Additive,
            members,
            recorded,
            was_authoritative: false,
        }
    }

    const EVENTARC: &str = "serviceAccount:eventarc@p.iam.gserviceaccount.com";

    #[test]
    fn additive_grants_what_is_missing_records_it_first_and_keeps_every_other_member() {
        let members = set(&["group:shop@example.com"]);
        let d = decide(additive(&members, None), &policy(&[EVENTARC]));
        let change = d.change.expect("a grant");
        assert_eq!(change.add, ["group:shop@example.com"]);
        assert!(change.remove.is_empty());
        assert_eq!(change.kept, [EVENTARC]);
        assert_eq!(change.record, Some(status(&["group:shop@example.com"])));
        assert_eq!(d.access, Some(status(&["group:shop@example.com"])));
        let written = unconditional(&change.policy);
        assert_eq!(written, set(&[EVENTARC, "group:shop@example.com"]));
        assert_eq!(change.policy.bindings[0].role, "roles/run.developer");
        assert_eq!(change.policy.etag, bytes::Bytes::from_static(b"e1"));
    }

    #[test]
    fn additive_removes_only_its_own_grants_that_left_the_spec() {
        // Ours: a and b; Eventarc's and the partner's are not, though the spec once listed the
        // partner (it held the role already, so runwarden never granted it).
        let recorded = status(&["user:a@example.com", "user:b@example.com"]);
        let members = set(&["user:a@example.com"]);
        let current = policy(&[
            "user:a@example.com",
            "user:b@example.com",
            "user:partner@example.com",
            EVENTARC,
        ]);
        let d = decide(additive(&members, Some(&recorded)), &current);
        let change = d.change.expect("a removal");
        assert!(change.add.is_empty());
        assert_eq!(change.remove, ["user:b@example.com"]);
        assert_eq!(change.record, None, "a removal needs no record first");
        assert_eq!(change.after, Some(status(&["user:a@example.com"])));
        assert_eq!(
            unconditional(&change.policy),
            set(&["user:a@example.com", "user:partner@example.com", EVENTARC])
        );
        // In sync: no write, the record stays.
        let d = decide(
            additive(&members, change.after.as_ref()),
            &change.policy.clone(),
        );
        assert_eq!(d.change, None);
        assert_eq!(d.access, Some(status(&["user:a@example.com"])));
    }

    #[test]
    fn a_recorded_grant_that_never_reached_google_is_granted_again_or_forgotten() {
        // The pass recorded b, then stopped before the write.
        let recorded = status(&["user:a@example.com", "user:b@example.com"]);
        let current = policy(&["user:a@example.com", EVENTARC]);
        let members = set(&["user:a@example.com", "user:b@example.com"]);
        let d = decide(additive(&members, Some(&recorded)), &current);
        let change = d.change.expect("b granted");
        assert_eq!(change.add, ["user:b@example.com"]);
        assert_eq!(change.record, None, "already recorded");
        // Or b left the spec meanwhile: nothing to remove, and the record forgets it.
        let members = set(&["user:a@example.com"]);
        let d = decide(additive(&members, Some(&recorded)), &current);
        assert_eq!(d.change, None);
        assert_eq!(d.access, Some(status(&["user:a@example.com"])));
    }

    #[test]
    fn switching_modes_does_the_safe_thing() {
        let members = set(&["user:a@example.com"]);
        let current = policy(&["user:a@example.com", "user:old@example.com", EVENTARC]);
        // Authoritative → Additive: the spec's members become runwarden's, nothing is removed.
        let d = decide(
            Wanted {
                was_authoritative: true,
                ..additive(&members, None)
            },
            &current,
        );
        assert_eq!(d.change, None);
        assert_eq!(d.access, Some(status(&["user:a@example.com"])));
        // A fresh object in Additive mode owns nothing it did not grant.
        let d = decide(additive(&members, None), &current);
        assert_eq!(d.access, Some(status(&[])));
        // Additive → Authoritative: the role becomes exactly the spec; the record goes.
        let d = decide(
            Wanted {
                mode: AccessMode::Authoritative,
                ..additive(&members, Some(&status(&["user:a@example.com"])))
            },
            &current,
        );
        let change = d.change.expect("others removed");
        assert_eq!(
            change.remove,
            [
                "serviceAccount:eventarc@p.iam.gserviceaccount.com",
                "user:old@example.com"
            ]
        );
        assert_eq!(d.access, None);
    }

    #[test]
    fn a_concurrent_change_is_met_by_the_same_edit() {
        let members = set(&["user:a@example.com"]);
        let recorded = status(&["user:a@example.com", "user:b@example.com"]);
        let d = decide(
            additive(&members, Some(&recorded)),
            &policy(&["user:b@example.com"]),
        );
        let change = d.change.expect("a write");
        // Meanwhile someone added Eventarc: the retry keeps it.
        let again = change
            .edit(&policy(&["user:b@example.com", EVENTARC]))
            .expect("an edit");
        assert_eq!(
            unconditional(&again),
            set(&["user:a@example.com", EVENTARC])
        );
        assert!(change.edit(&policy(&["user:a@example.com"])).is_none());
    }

    #[test]
    fn domain_restricted_sharing_has_its_own_reason() {
        let mut e = GcpError::new(
            "run",
            "services.setIamPolicy",
            Code::FailedPrecondition,
            "One or more users named in the policy do not belong to a permitted customer, perhaps due to an organization policy.",
        );
        e.preconditions = vec![crate::gcp::PreconditionViolation {
            kind: MEMBER_DOMAINS_CONSTRAINT.into(),
            subject: "orgpolicy:projects/p?configvalue=allUsers".into(),
            description: "User allUsers is not in permitted organization.".into(),
        }];
        let c = failed(&e);
        assert_eq!(c.reason, ALLOWED_POLICY_MEMBER_DOMAINS);
        let err = Error::from(e);
        assert!(!err.is_transient(), "waits for a spec change");
    }

    /// What happened, in order: status records and IAM writes.
    #[derive(Default)]
    struct Log(std::sync::Mutex<Vec<String>>, bool);

    #[async_trait::async_trait]
    impl IamPolicyApi for Log {
        async fn get_iam_policy(&self, _: &str) -> crate::gcp::GcpResult<Policy> {
            unreachable!("no concurrent change in these tests")
        }
        async fn set_iam_policy(&self, _: &str, p: Policy) -> crate::gcp::GcpResult<Policy> {
            let members = unconditional(&p).into_iter().collect::<Vec<_>>().join(",");
            self.0.lock().unwrap().push(format!("set {members}"));
            Ok(p)
        }
    }

    #[async_trait::async_trait]
    impl Record for Log {
        async fn granted(&self, access: &AccessStatus) -> Result<(), Error> {
            self.0
                .lock()
                .unwrap()
                .push(format!("record {}", access.granted.join(",")));
            if self.1 {
                Err(Error::Waiting {
                    what: "a refused status write".into(),
                    after: std::time::Duration::ZERO,
                })
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn a_grant_is_recorded_before_the_write_that_makes_it_and_never_without() {
        let members = set(&["user:a@example.com"]);
        let change = decide(additive(&members, None), &policy(&[EVENTARC]))
            .change
            .expect("a grant");
        let log = Log::default();
        let (mut access, mut notes) = (None, vec![]);
        apply(
            &log,
            change.clone(),
            &log,
            "InvokersUpdated",
            &mut access,
            &mut notes,
        )
        .await
        .expect("applied");
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "record user:a@example.com".to_owned(),
                format!("set {EVENTARC},user:a@example.com")
            ]
        );
        assert_eq!(access, Some(status(&["user:a@example.com"])));
        assert!(
            notes[0]
                .message
                .contains("granted [user:a@example.com], removed []")
        );

        // The status cannot be written: Google is not asked.
        let refusing = Log(Default::default(), true);
        let (mut access, mut notes) = (None, vec![]);
        let (c, _) = apply(
            &refusing,
            change,
            &refusing,
            "InvokersUpdated",
            &mut access,
            &mut notes,
        )
        .await
        .expect_err("stopped");
        assert_eq!(c.type_, ACCESS_READY);
        assert_eq!(*refusing.0.lock().unwrap(), ["record user:a@example.com"]);
        assert_eq!(access, None);
    }
}

//! IAM policy edits (pure) and the read-modify-write loop that applies them.

use std::collections::BTreeSet;
use std::time::Duration;

use google_cloud_iam_v1::model::{Binding, Policy};

use crate::gcp::{Code, GcpResult, IamPolicyApi};

/// The role that lets a principal call a Cloud Run service.
pub const INVOKER_ROLE: &str = "roles/run.invoker";
/// The member that means "anyone on the internet".
pub const ALL_USERS: &str = "allUsers";
/// Attempts of a read-modify-write that keeps meeting concurrent changes (`ABORTED`).
pub const MAX_ATTEMPTS: u32 = 5;

/// Policy version written: 3 keeps conditional bindings intact.
const POLICY_VERSION: i32 = 3;

/// `policy` with `role` held by exactly `members` (one unconditional binding, none when empty),
/// every other role untouched; `None` when the policy already is so.
pub fn with_exact_members(
    policy: &Policy,
    role: &str,
    members: &BTreeSet<String>,
) -> Option<Policy> {
    let current: Vec<&Binding> = policy.bindings.iter().filter(|b| b.role == role).collect();
    let already = match current.as_slice() {
        [] => members.is_empty(),
        [only] => {
            only.condition.is_none()
                && only.members.iter().cloned().collect::<BTreeSet<_>>() == *members
        }
        _ => false,
    };
    if already {
        return None;
    }
    let mut out = policy.clone();
    out.version = POLICY_VERSION;
    out.bindings.retain(|b| b.role != role);
    if !members.is_empty() {
        out.bindings.push(
            Binding::new()
                .set_role(role)
                .set_members(members.iter().cloned()),
        );
    }
    Some(out)
}

/// Whether `member` holds `role` through an unconditional binding.
pub fn has_member(policy: &Policy, role: &str, member: &str) -> bool {
    policy
        .bindings
        .iter()
        .any(|b| b.role == role && b.condition.is_none() && b.members.iter().any(|m| m == member))
}

/// `policy` with `member` added to the unconditional binding of `role`; `None` when it is there.
pub fn with_member(policy: &Policy, role: &str, member: &str) -> Option<Policy> {
    if has_member(policy, role, member) {
        return None;
    }
    let mut out = policy.clone();
    out.version = POLICY_VERSION;
    match out
        .bindings
        .iter_mut()
        .find(|b| b.role == role && b.condition.is_none())
    {
        Some(binding) => binding.members.push(member.to_owned()),
        None => out
            .bindings
            .push(Binding::new().set_role(role).set_members([member])),
    }
    Some(out)
}

/// `policy` without `member` in the unconditional binding of `role` (dropping the binding if it
/// empties); `None` when it is not there.
pub fn without_member(policy: &Policy, role: &str, member: &str) -> Option<Policy> {
    if !has_member(policy, role, member) {
        return None;
    }
    let mut out = policy.clone();
    out.version = POLICY_VERSION;
    for b in out
        .bindings
        .iter_mut()
        .filter(|b| b.role == role && b.condition.is_none())
    {
        b.members.retain(|m| m != member);
    }
    out.bindings.retain(|b| !b.members.is_empty());
    Some(out)
}

/// Writes `next` (an edit of a policy already read, carrying its etag); when someone else
/// changed the policy in between (`ABORTED`), reads it again and re-applies `edit`, with
/// jittered backoff, up to [`MAX_ATTEMPTS`] writes. Returns whether a write happened (the
/// policy may meanwhile already be as `edit` wants it).
pub async fn write_or_retry(
    api: &dyn IamPolicyApi,
    resource: &str,
    next: Policy,
    edit: impl Fn(&Policy) -> Option<Policy> + Send,
) -> GcpResult<bool> {
    let mut next = next;
    let mut attempt = 0;
    loop {
        match api.set_iam_policy(resource, next).await {
            Ok(_) => return Ok(true),
            Err(e) if e.code == Code::Aborted && attempt + 1 < MAX_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(jittered(Duration::from_millis(100) * 2u32.pow(attempt))).await;
            }
            Err(e) => return Err(e),
        }
        let current = api.get_iam_policy(resource).await?;
        match edit(&current) {
            Some(edited) => next = edited,
            None => return Ok(false),
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5).
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_type::model::Expr;

    fn policy(bindings: Vec<Binding>) -> Policy {
        Policy::new()
            .set_bindings(bindings)
            .set_etag(bytes::Bytes::from_static(b"e1"))
    }

    fn set(members: &[&str]) -> BTreeSet<String> {
        members.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn invokers_replace_the_role_and_keep_every_other_role() {
        let p = policy(vec![
            Binding::new()
                .set_role("roles/run.developer")
                .set_members(["user:dev@example.com"]),
            Binding::new()
                .set_role(INVOKER_ROLE)
                .set_members(["user:old@example.com"]),
        ]);
        let out = with_exact_members(&p, INVOKER_ROLE, &set(&["group:team@example.com"]))
            .expect("a change");
        assert_eq!(out.bindings.len(), 2);
        assert_eq!(out.bindings[0].members, vec!["user:dev@example.com"]);
        assert_eq!(out.bindings[1].members, vec!["group:team@example.com"]);
        assert_eq!(
            out.etag, p.etag,
            "the write must carry the etag that was read"
        );
        assert_eq!(out.version, 3);
    }

    #[test]
    fn same_invokers_in_another_order_need_no_write() {
        let p = policy(vec![
            Binding::new()
                .set_role(INVOKER_ROLE)
                .set_members(["user:b@x.com", "user:a@x.com"]),
        ]);
        assert!(
            with_exact_members(&p, INVOKER_ROLE, &set(&["user:a@x.com", "user:b@x.com"])).is_none()
        );
        assert!(with_exact_members(&policy(vec![]), INVOKER_ROLE, &BTreeSet::new()).is_none());
    }

    #[test]
    fn no_invokers_removes_the_binding() {
        let p = policy(vec![
            Binding::new()
                .set_role(INVOKER_ROLE)
                .set_members([ALL_USERS]),
        ]);
        let out = with_exact_members(&p, INVOKER_ROLE, &BTreeSet::new()).expect("a change");
        assert!(out.bindings.is_empty());
    }

    #[test]
    fn adding_a_member_keeps_conditional_bindings_of_the_same_role() {
        let role = "roles/cloudkms.cryptoKeyEncrypterDecrypter";
        let conditional = Binding::new()
            .set_role(role)
            .set_members(["user:temp@x.com"])
            .set_condition(
                Expr::new().set_expression("request.time < timestamp('2030-01-01T00:00:00Z')"),
            );
        let p = policy(vec![conditional.clone()]);
        let out = with_member(&p, role, "serviceAccount:agent@x.com").expect("a change");
        assert_eq!(out.bindings[0], conditional);
        assert!(has_member(&out, role, "serviceAccount:agent@x.com"));
        assert!(with_member(&out, role, "serviceAccount:agent@x.com").is_none());
        let back = without_member(&out, role, "serviceAccount:agent@x.com").expect("a change");
        assert_eq!(back.bindings, vec![conditional]);
    }
}

//! The IAM policy of a Cloud Run service or job: `getIamPolicy`, `setIamPolicy`,
//! `testIamPermissions` (the collection in the path says which).

use serde_json::{Value, json};

use super::resource::{JOB, Kind, SERVICE, not_found, resource_name};
use crate::error::GResult;
use crate::iam::Policy;
use crate::request::Req;
use crate::state::{Project, State};

/// The kind of resource the path names (`.../services/{s}` or `.../jobs/{j}`).
fn kind_of(req: &Req) -> &'static Kind {
    if req.seg(4) == "jobs" { &JOB } else { &SERVICE }
}

/// The resource's policy (NOT_FOUND when it does not exist), its name and project.
fn policy_mut<'a>(st: &'a mut State, req: &Req) -> GResult<(&'a mut Policy, Project)> {
    let kind = kind_of(req);
    let (name, p) = resource_name(st, req, kind)?;
    let policy = if kind.collection == "jobs" {
        st.jobs.get_mut(&name).map(|r| &mut r.policy)
    } else {
        st.services.get_mut(&name).map(|r| &mut r.policy)
    };
    match policy {
        Some(policy) => Ok((policy, p)),
        None => Err(not_found(kind, &name)),
    }
}

/// `run.services.getIamPolicy`, `run.jobs.getIamPolicy`.
pub(crate) fn get_policy(st: &mut State, req: &Req) -> GResult<Value> {
    Ok(policy_mut(st, req)?.0.render())
}

/// `run.services.setIamPolicy`, `run.jobs.setIamPolicy` (etag: ABORTED when stale; members
/// the project's domain restricted sharing refuses: FAILED_PRECONDITION).
pub(crate) fn set_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let mut seq = st.etag_seq;
    let body = req.object_body()?;
    let (policy, project) = policy_mut(st, req)?;
    let before = policy.members();
    let sent = body
        .get("policy")
        .and_then(|p| p.get("bindings"))
        .and_then(Value::as_array)
        .map(|b| crate::iam::members_of(b))
        .unwrap_or_default();
    crate::orgpolicy::check_members(st, &project, &before, sent)?;
    let out = policy_mut(st, req)?.0.set(&body, &mut seq)?;
    st.etag_seq = seq;
    Ok(out)
}

/// `testIamPermissions`: the permissions asked that the caller holds on the resource (all of
/// them for an anonymous caller).
pub(crate) fn test_permissions(st: &mut State, req: &Req) -> GResult<Value> {
    let (_, p) = policy_mut(st, req)?;
    let asked: Vec<String> = crate::util::strs_of(&req.body, "permissions")
        .into_iter()
        .map(String::from)
        .collect();
    let held = crate::authz::permitted(st, req, &p.id, &asked);
    Ok(if held.is_empty() {
        json!({})
    } else {
        json!({"permissions": held})
    })
}

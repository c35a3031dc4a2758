//! A Cloud Run service's IAM policy: `getIamPolicy`, `setIamPolicy`, `testIamPermissions`.

use serde_json::{Value, json};

use super::resource::{not_found, service_name};
use crate::error::GResult;
use crate::request::Req;
use crate::state::State;

/// `run.services.getIamPolicy`.
pub(crate) fn get_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = service_name(st, req)?;
    let rec = st.services.get(&name).ok_or_else(|| not_found(&name))?;
    Ok(rec.policy.render())
}

/// `run.services.setIamPolicy`.
pub(crate) fn set_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = service_name(st, req)?;
    let mut seq = st.etag_seq;
    let rec = st.services.get_mut(&name).ok_or_else(|| not_found(&name))?;
    let body = req.object_body()?;
    let out = rec.policy.set(&body, &mut seq)?;
    st.etag_seq = seq;
    Ok(out)
}

/// `run.services.testIamPermissions`: the permissions asked that the caller holds on the service
/// (all of them for an anonymous caller).
pub(crate) fn test_permissions(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, p) = service_name(st, req)?;
    st.services.get(&name).ok_or_else(|| not_found(&name))?;
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

//! Resource Manager v3: `projects.get`, `projects.getIamPolicy`, `projects.setIamPolicy`.

use serde_json::{Value, json};

use crate::error::{GError, GResult};
use crate::request::Req;
use crate::state::State;
use crate::{enums, iam};

/// Resource Manager answers 403 for a project that does not exist or that the caller cannot see.
pub(crate) fn not_found_or_denied(project: &str) -> GError {
    denied("resourcemanager.projects.get", project)
}

/// Resource Manager's PERMISSION_DENIED for a permission on a project.
pub(crate) fn denied(permission: &str, project: &str) -> GError {
    let resource = format!("//cloudresourcemanager.googleapis.com/projects/{project}");
    GError::permission_on(
        permission,
        &resource,
        format!("Permission '{permission}' denied on resource '{resource}' (or it may not exist)."),
    )
}

/// `resourcemanager.projects.getIamPolicy`.
pub(crate) fn get_project_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let p = st.project(req.seg(1))?;
    Ok(iam::render_in(&st.project_policies, &p.id))
}

/// `resourcemanager.projects.setIamPolicy`.
pub(crate) fn set_project_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let p = st.project(req.seg(1))?;
    let body = req.object_body()?;
    iam::set_in(&mut st.project_policies, &p.id, &body, &mut st.etag_seq)
}

/// `resourcemanager.projects.get`.
pub(crate) fn get_project(st: &mut State, req: &Req) -> GResult<Value> {
    let seg = req.seg(1);
    let p = st.project(seg)?;
    if p.id.bytes().all(|b| b.is_ascii_digit()) {
        // A number the emulator has never seen as an id: it cannot name the project.
        return Err(not_found_or_denied(seg));
    }
    let mut v = json!({
        "name": format!("projects/{}", p.number),
        "projectId": p.id,
        "state": "ACTIVE",
        "displayName": p.id,
        "createTime": "2024-01-01T00:00:00.000000Z",
        "updateTime": "2024-01-01T00:00:00.000000Z",
        "etag": format!("W/\"{}\"", crate::util::base64(p.number.to_string().as_bytes())),
    });
    enums::encode(&mut v, enums::PROJECT, req.int);
    Ok(v)
}

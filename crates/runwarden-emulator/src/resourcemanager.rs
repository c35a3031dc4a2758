//! Resource Manager v3: `projects.get`.

use serde_json::{Value, json};

use crate::enums;
use crate::error::{GError, GResult};
use crate::request::Req;
use crate::state::State;

/// Resource Manager answers 403 for a project that does not exist or that the caller cannot see.
pub(crate) fn not_found_or_denied(project: &str) -> GError {
    GError::permission(
        "resourcemanager.projects.get",
        format!(
            "Permission 'resourcemanager.projects.get' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
        ),
    )
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

//! The Cloud Run Service resource as the other `run` modules share it: its name and region from
//! the request path, its NOT_FOUND wording, the user-settable fields, etags, generations, and how
//! it is rendered on the wire.

use serde_json::{Map, Value};

use super::validation::valid_region;
use crate::enums;
use crate::error::{GError, GResult};
use crate::request::Req;
use crate::state::{Project, State};
use crate::util::{self, str_of};

/// Fields a caller sets; everything else on a Service is output only.
pub(super) const USER_FIELDS: [&str; 17] = [
    "description",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "ingress",
    "launchStage",
    "binaryAuthorization",
    "template",
    "traffic",
    "scaling",
    "invokerIamDisabled",
    "defaultUriDisabled",
    "customAudiences",
    "iapEnabled",
    "multiRegionSettings",
    "buildConfig",
];

/// Who the emulator records as `creator` / `lastModifier` (callers are anonymous).
pub(super) const CALLER: &str = "emulator@runwarden.dev";

/// Canonical service name (project id form) from the request path.
pub(super) fn service_name(st: &mut State, req: &Req) -> GResult<(String, Project)> {
    let p = st.project(req.seg(1))?;
    let l = req.seg(3);
    Ok((
        format!("projects/{}/locations/{l}/services/{}", p.id, req.seg(5)),
        p,
    ))
}

pub(super) fn location(req: &Req) -> GResult<String> {
    let l = req.seg(3);
    if !valid_region(l) {
        return Err(GError::invalid_field(
            "parent",
            format!("Location '{l}' is not a valid Cloud Run region."),
        ));
    }
    Ok(l.to_string())
}

/// Google's NOT_FOUND wording for a Cloud Run service.
pub(super) fn not_found(name: &str) -> GError {
    let parts: Vec<&str> = name.split('/').collect();
    GError::not_found(format!(
        "Resource '{}' of kind 'SERVICE' in region '{}' in project '{}' does not exist.",
        parts.get(5).unwrap_or(&""),
        parts.get(3).unwrap_or(&""),
        parts.get(1).unwrap_or(&"")
    ))
}

/// A stored service as returned on the wire (enums as names or numbers).
pub(super) fn render(svc: &Value, int: bool) -> Value {
    let mut v = svc.clone();
    enums::encode(&mut v, enums::SERVICE, int);
    v
}

pub(super) fn generation(svc: &Value) -> i64 {
    str_of(svc, "generation").parse().unwrap_or(0)
}

pub(super) fn service_etag(st: &mut State, name: &str, generation: i64) -> String {
    let seq = st.next_etag();
    format!(
        "\"{}/{}\"",
        util::base64(format!("{generation}:{seq}").as_bytes()).trim_end_matches('='),
        util::base64(name.as_bytes()).trim_end_matches('=')
    )
}

/// A request's Service body: enums normalized (Google's wording names `service.<field>`),
/// proto3 defaults dropped.
pub(super) fn input_service(req: &Req) -> GResult<Value> {
    let mut body = req.object_body()?;
    enums::decode(&mut body, enums::SERVICE, "service")?;
    util::prune(&mut body);
    Ok(body)
}

pub(super) fn spec_of(svc: &Value) -> Value {
    let mut m = Map::new();
    for f in USER_FIELDS {
        if let Some(v) = svc.get(f) {
            m.insert(f.to_string(), v.clone());
        }
    }
    Value::Object(m)
}

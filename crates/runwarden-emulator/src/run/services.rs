//! Cloud Run services: create, get, list, patch, delete. Create, patch and delete validate and
//! store synchronously and start a long-running operation; the rollout itself happens when the
//! operation completes (`rollout`). Create and patch refuse a service that violates its
//! project's organization policy (`orgpolicy`).

use serde_json::{Value, json};

use super::defaults::apply_defaults;
use super::resource::{
    self, SERVICE, check_etag, check_region_limit, generation, input, list_regional, location,
    new_id, next_generation, not_found, render, resource_etag, resource_name, set_creation_fields,
    spec_of, submitted, validated,
};
use super::validation::{Rt, valid_id, validate};
use crate::error::{Code, GError, GResult};
use crate::iam::Policy;
use crate::operations::{self, service_any};
use crate::orgpolicy;
use crate::request::Req;
use crate::state::{Api, OpKind, Project, ServiceRec, State};
use crate::util::{self, get_path, str_of};

/// The service a create (or a patch with `allowMissing`) makes.
struct NewService<'a> {
    /// Request type named in validation messages.
    request_type: &'a str,
    /// `projects/{id}/locations/{region}/services/{id}`.
    name: &'a str,
    project: &'a Project,
    region: &'a str,
    /// The service id.
    id: &'a str,
}

/// `run.services.get`.
pub(crate) fn get(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, _) = resource_name(st, req, &SERVICE)?;
    let rec = st
        .services
        .get(&name)
        .ok_or_else(|| not_found(&SERVICE, &name))?;
    Ok(render(&SERVICE, &rec.svc, req.int))
}

/// `run.services.list`: one region, or every region with `locations/-`.
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let project = st.project(req.seg(1))?;
    list_regional(&st.services, &SERVICE, &project.id, req)
}

/// `run.services.create`.
pub(crate) fn create(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "CreateServiceRequest";
    let project = st.project(req.seg(1))?;
    let region = location(req)?;
    let sid = new_id(req, &SERVICE, RT)?;
    let body = input(&SERVICE, req)?;
    let name = format!("projects/{}/locations/{region}/services/{sid}", project.id);
    let target = NewService {
        request_type: RT,
        name: &name,
        project: &project,
        region: &region,
        id: &sid,
    };
    create_new(st, req, body, &target)
}

/// Validates, stores and starts the first rollout of a new service.
fn create_new(st: &mut State, req: &Req, body: Value, target: &NewService) -> GResult<Value> {
    let (name, region, sid) = (target.name, target.region, target.id);
    let mut svc = spec_of(&SERVICE, &body);
    validate(st, &Rt::service(target.request_type), &svc, region)?;
    orgpolicy::check_service(st, target.project, &svc)?;
    if st.services.contains_key(name) {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("Resource '{sid}' already exists."),
        ));
    }
    let parent = format!("projects/{}/locations/{region}", target.project.id);
    check_region_limit(&st.services, &parent, &SERVICE)?;
    apply_defaults(&mut svc, target.project);
    let etag = resource_etag(st, name, 1);
    let o = svc
        .as_object_mut()
        .ok_or_else(|| GError::invalid("bad service"))?;
    set_creation_fields(o, name, &etag);
    if req.q_bool("validateOnly") {
        return validated(st, req, &parent, service_any(&svc));
    }
    o.insert("reconciling".into(), json!(true));
    o.insert(
        "terminalCondition".into(),
        json!({"type": "Ready", "state": "CONDITION_RECONCILING"}),
    );
    let revision = format!("{sid}-00001-{}", util::random_alnum(3));
    let mut metadata = service_any(&svc);
    metadata["terminalCondition"] = json!({"state": "CONDITION_PENDING"});
    st.services.insert(
        name.to_string(),
        ServiceRec {
            svc,
            revisions: 1,
            revision_ids: Vec::new(),
            policy: Policy::default(),
            deleting: false,
            last_failed: false,
        },
    );
    let kind = OpKind::RunDeploy {
        service: name.to_string(),
        generation: 1,
        revision: Some(revision),
    };
    let op = operations::start(st, Api::Run, &parent, req.delay, kind, metadata);
    submitted(st, &op, req)
}

/// `run.services.patch` (`updateMask`, `allowMissing`, `validateOnly`, body `etag`).
pub(crate) fn patch(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "UpdateServiceRequest";
    let (name, project) = resource_name(st, req, &SERVICE)?;
    let region = location(req)?;
    let sid = req.seg(5).to_string();
    let body = input(&SERVICE, req)?;
    let exists = st.services.get(&name).is_some_and(|r| !r.deleting);
    if !exists {
        if req.q_bool("allowMissing") && !st.services.contains_key(&name) {
            if !valid_id(&sid, SERVICE.max_id) {
                return Err(GError::invalid_field(
                    "service.name",
                    format!("Invalid ID '{sid}'."),
                ));
            }
            let target = NewService {
                request_type: RT,
                name: &name,
                project: &project,
                region: &region,
                id: &sid,
            };
            return create_new(st, req, body, &target);
        }
        return Err(not_found(&SERVICE, &name));
    }
    let Some(rec) = st.services.get(&name).cloned() else {
        return Err(not_found(&SERVICE, &name));
    };
    check_etag(&SERVICE, str_of(&body, "etag"), &rec.svc, &name)?;
    let mut new = updated_spec(&rec.svc, &body, &req.query)?;
    util::prune(&mut new);
    validate(st, &Rt::service(RT), &spec_of(&SERVICE, &new), &region)?;
    orgpolicy::check_service(st, &project, &new)?;
    apply_defaults(&mut new, &project);
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        return validated(st, req, &parent, service_any(&new));
    }
    // An identical spec keeps the generation, except after a failed rollout (retry heals).
    let rolls_out = spec_of(&SERVICE, &new) != spec_of(&SERVICE, &rec.svc) || rec.last_failed;
    let mut rollout = (generation(&rec.svc), None, rec.revisions);
    check_pinned_revision(&rec, &new)?;
    if rolls_out {
        rollout = start_generation(st, &name, &sid, &rec, &mut new);
    }
    let (target_generation, revision, revisions) = rollout;
    let mut metadata = service_any(&new);
    if rolls_out {
        metadata["terminalCondition"]["state"] = json!("CONDITION_PENDING");
    }
    if let Some(r) = st.services.get_mut(&name) {
        r.svc = new;
        r.revisions = revisions;
    }
    let kind = OpKind::RunDeploy {
        service: name.clone(),
        generation: target_generation,
        revision,
    };
    let op = operations::start(st, Api::Run, &parent, req.delay, kind, metadata);
    submitted(st, &op, req)
}

/// The stored service with the patch body applied: the `updateMask` paths (camelCase or
/// snake_case), or every user-settable field when there is no mask.
fn updated_spec(current: &Value, body: &Value, query: &[(String, String)]) -> GResult<Value> {
    let mut new = current.clone();
    match util::query_mask(query, "updateMask") {
        Some(paths) if !paths.is_empty() => {
            for p in paths {
                let p: String = p.split('.').map(util::camel).collect::<Vec<_>>().join(".");
                let top = p.split('.').next().unwrap_or("");
                if !SERVICE.fields.contains(&top) {
                    return Err(GError::invalid_field(
                        "update_mask",
                        format!(
                            "Invalid field mask path '{p}': the field does not exist or cannot be updated."
                        ),
                    ));
                }
                util::set_path(&mut new, &p, get_path(body, &p).cloned());
            }
        }
        _ => {
            if let Some(o) = new.as_object_mut() {
                for f in SERVICE.fields.iter().copied() {
                    match body.get(f) {
                        Some(v) => o.insert(f.to_string(), v.clone()),
                        None => o.remove(f),
                    };
                }
            }
        }
    }
    Ok(new)
}

/// Bumps the generation of `new` (with a new revision when the template changed or the last
/// rollout failed) and marks it reconciling. Returns (generation, revision, revision count).
fn start_generation(
    st: &mut State,
    name: &str,
    sid: &str,
    rec: &ServiceRec,
    new: &mut Value,
) -> (i64, Option<String>, u32) {
    let next = generation(&rec.svc) + 1;
    let mut revision = None;
    let mut revisions = rec.revisions;
    if new.get("template") != rec.svc.get("template") || revision_failed(&rec.svc) {
        revisions += 1;
        let custom = get_path(new, "template.revision")
            .and_then(Value::as_str)
            .unwrap_or("");
        revision = Some(if custom.is_empty() {
            format!("{sid}-{revisions:05}-{}", util::random_alnum(3))
        } else {
            custom.to_string()
        });
    }
    next_generation(st, name, &rec.svc, new);
    (next, revision, revisions)
}

/// Whether the last rollout failed to make its revision ready (the CMEK check): an identical
/// update then makes a new revision. A rollout that failed on traffic made its revision.
fn revision_failed(svc: &Value) -> bool {
    svc.get("conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                str_of(c, "type") == "ConfigurationsReady"
                    && str_of(c, "state") == "CONDITION_FAILED"
            })
        })
}

/// A `template.revision` name already used by an earlier revision may not name a changed
/// template: 409 with the recorded wording.
fn check_pinned_revision(rec: &ServiceRec, new: &Value) -> GResult<()> {
    let pinned = get_path(new, "template.revision")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !pinned.is_empty()
        && rec.revision_ids.iter().any(|r| r == pinned)
        && new.get("template") != rec.svc.get("template")
    {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("Revision named '{pinned}' with different configuration already exists."),
        ));
    }
    Ok(())
}

/// `run.services.delete` (`etag`, `validateOnly`): the service stays readable, marked deleting,
/// until the operation completes.
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    resource::delete(
        st,
        req,
        &SERVICE,
        |st| &mut st.services,
        |service| OpKind::RunDelete { service },
    )
}

//! Cloud Run services: create, get, list, patch, delete. Create, patch and delete validate and
//! store synchronously and start a long-running operation; the rollout itself happens when the
//! operation completes (`rollout`). Create and patch refuse a service that violates its
//! project's organization policy (`orgpolicy`).

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::defaults::apply_defaults;
use super::resource::{
    CALLER, USER_FIELDS, generation, input_service, location, not_found, render, service_etag,
    service_name, spec_of,
};
use super::validation::{valid_service_id, validate};
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
    let (name, _) = service_name(st, req)?;
    let rec = st.services.get(&name).ok_or_else(|| not_found(&name))?;
    Ok(render(&rec.svc, req.int))
}

/// `run.services.list`: one region, or every region with `locations/-`.
pub(crate) fn list(st: &mut State, req: &Req) -> GResult<Value> {
    let project = st.project(req.seg(1))?;
    let l = req.seg(3);
    if l != "-" {
        location(req)?;
    }
    let prefix = format!("projects/{}/locations/", project.id);
    let items: Vec<Value> = st
        .services
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && (l == "-" || k.split('/').nth(3) == Some(l)))
        .filter(|(_, r)| !r.deleting || req.q_bool("showDeleted"))
        .map(|(_, r)| render(&r.svc, req.int))
        .collect();
    util::list_page("services", &items, &req.query, 100)
}

/// `run.services.create`.
pub(crate) fn create(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "CreateServiceRequest";
    let project = st.project(req.seg(1))?;
    let region = location(req)?;
    let sid = req.q("serviceId").unwrap_or("").to_string();
    if sid.is_empty() {
        return Err(GError::invalid_field(
            "service_id",
            format!("Violation in {RT}.service_id: must be set."),
        ));
    }
    if !valid_service_id(&sid) {
        return Err(GError::invalid_field(
            "service_id",
            format!(
                "Invalid ID '{sid}': a service ID must start with a lowercase letter, contain only lowercase letters, digits and hyphens, not end with a hyphen, and be at most 49 characters long."
            ),
        ));
    }
    let body = input_service(req)?;
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
    let mut svc = spec_of(&body);
    validate(st, target.request_type, &svc, region)?;
    orgpolicy::check_service(st, target.project, &svc)?;
    if st.services.contains_key(name) {
        return Err(GError::new(
            Code::AlreadyExists,
            format!("Resource '{sid}' already exists."),
        ));
    }
    let parent = format!("projects/{}/locations/{region}", target.project.id);
    check_service_limit(st, &parent)?;
    apply_defaults(&mut svc, target.project);
    let etag = service_etag(st, name, 1);
    let o = svc
        .as_object_mut()
        .ok_or_else(|| GError::invalid("bad service"))?;
    set_creation_fields(o, name, &etag);
    if req.q_bool("validateOnly") {
        let v = service_any(&svc);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return operations::get(st, Api::Run, &op, req.int);
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

/// Services per project and region (Cloud Run's limit; it cannot be raised).
const SERVICES_PER_REGION: usize = 1000;

/// RESOURCE_EXHAUSTED when `parent` (`projects/{id}/locations/{region}`) already has
/// [`SERVICES_PER_REGION`] services (being deleted ones count until the delete completes). The
/// wording is the emulator's own, after Cloud Run's recorded GPU count quota message.
fn check_service_limit(st: &State, parent: &str) -> GResult<()> {
    let prefix = format!("{parent}/services/");
    let count = st
        .services
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .count();
    if count < SERVICES_PER_REGION {
        return Ok(());
    }
    let region = parent.rsplit('/').next().unwrap_or("");
    Err(GError::new(
        Code::ResourceExhausted,
        format!(
            "Quota exceeded for total allowable count of services per project per region: {parent} already has {SERVICES_PER_REGION} services, the maximum in region {region}. Delete a service or use another region or project."
        ),
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{
            "subject": parent,
            "description": format!("Maximum number of services per project and region: {SERVICES_PER_REGION}."),
            "apiService": "run.googleapis.com",
            "quotaDimensions": {"region": region},
            "quotaValue": SERVICES_PER_REGION.to_string(),
        }]
    })))
}

/// The output fields a new service gets: name, uid, generation 1, times, creator, etag.
fn set_creation_fields(o: &mut Map<String, Value>, name: &str, etag: &str) {
    let now = util::now();
    o.insert("name".into(), json!(name));
    o.insert("uid".into(), json!(util::uuid()));
    o.insert("generation".into(), json!("1"));
    o.insert("createTime".into(), json!(now));
    o.insert("updateTime".into(), json!(now));
    o.insert("creator".into(), json!(CALLER));
    o.insert("lastModifier".into(), json!(CALLER));
    o.insert("etag".into(), json!(etag));
}

/// `run.services.patch` (`updateMask`, `allowMissing`, `validateOnly`, body `etag`).
pub(crate) fn patch(st: &mut State, req: &Req) -> GResult<Value> {
    const RT: &str = "UpdateServiceRequest";
    let (name, project) = service_name(st, req)?;
    let region = location(req)?;
    let sid = req.seg(5).to_string();
    let body = input_service(req)?;
    let exists = st.services.get(&name).is_some_and(|r| !r.deleting);
    if !exists {
        if req.q_bool("allowMissing") && !st.services.contains_key(&name) {
            if !valid_service_id(&sid) {
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
        return Err(not_found(&name));
    }
    let Some(rec) = st.services.get(&name).cloned() else {
        return Err(not_found(&name));
    };
    check_etag(str_of(&body, "etag"), &rec.svc, &name)?;
    let mut new = updated_spec(&rec.svc, &body, &req.query)?;
    util::prune(&mut new);
    validate(st, RT, &spec_of(&new), &region)?;
    orgpolicy::check_service(st, &project, &new)?;
    apply_defaults(&mut new, &project);
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        let v = service_any(&new);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return operations::get(st, Api::Run, &op, req.int);
    }
    // An identical spec keeps the generation, except after a failed rollout (retry heals).
    let rolls_out = spec_of(&new) != spec_of(&rec.svc) || rec.last_failed;
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
                if !USER_FIELDS.contains(&top) {
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
                for f in USER_FIELDS {
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
    let etag = service_etag(st, name, next);
    if let Some(o) = new.as_object_mut() {
        o.insert("generation".into(), json!(next.to_string()));
        o.insert("updateTime".into(), json!(util::now()));
        o.insert("lastModifier".into(), json!(CALLER));
        o.insert("etag".into(), json!(etag));
        o.insert("reconciling".into(), json!(true));
        o.insert(
            "terminalCondition".into(),
            pending_condition(&rec.svc, "CONDITION_RECONCILING"),
        );
    }
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

/// A Ready terminal condition in `state`, keeping the previous transition time.
fn pending_condition(previous: &Value, state: &str) -> Value {
    let mut tc = json!({"type": "Ready", "state": state});
    if let Some(t) = get_path(previous, "terminalCondition.lastTransitionTime") {
        tc["lastTransitionTime"] = t.clone();
    }
    tc
}

/// `run.services.delete` (`etag`, `validateOnly`): the service stays readable, marked deleting,
/// until the operation completes.
pub(crate) fn delete(st: &mut State, req: &Req) -> GResult<Value> {
    let (name, project) = service_name(st, req)?;
    let region = location(req)?;
    let rec = st
        .services
        .get(&name)
        .filter(|r| !r.deleting)
        .cloned()
        .ok_or_else(|| not_found(&name))?;
    check_etag(req.q("etag").unwrap_or(""), &rec.svc, &name)?;
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        let v = service_any(&rec.svc);
        let op = operations::start_done(st, Api::Run, &parent, v.clone(), Ok(v));
        return operations::get(st, Api::Run, &op, req.int);
    }
    let next = generation(&rec.svc) + 1;
    let etag = service_etag(st, &name, next);
    let now = SystemTime::now();
    let mut svc = rec.svc.clone();
    if let Some(o) = svc.as_object_mut() {
        o.insert("generation".into(), json!(next.to_string()));
        o.insert("updateTime".into(), json!(util::timestamp(now)));
        o.insert("deleteTime".into(), json!(util::timestamp(now)));
        o.insert(
            "expireTime".into(),
            json!(util::timestamp(now + Duration::from_secs(30 * 86_400))),
        );
        o.insert("etag".into(), json!(etag));
        o.insert("reconciling".into(), json!(true));
        o.insert(
            "terminalCondition".into(),
            pending_condition(&rec.svc, "CONDITION_PENDING"),
        );
    }
    let metadata = service_any(&svc);
    if let Some(r) = st.services.get_mut(&name) {
        r.svc = svc;
        r.deleting = true;
    }
    let kind = OpKind::RunDelete { service: name };
    let op = operations::start(st, Api::Run, &parent, req.delay, kind, metadata);
    submitted(st, &op, req)
}

/// ABORTED when the caller sent an etag that is not the service's current one.
fn check_etag(sent: &str, svc: &Value, name: &str) -> GResult<()> {
    if sent.is_empty() || sent == str_of(svc, "etag") {
        return Ok(());
    }
    Err(GError::new(
        Code::Aborted,
        format!(
            "The etag '{sent}' does not match the current etag of service '{name}'; the service was modified concurrently. Read it again and retry."
        ),
    ))
}

/// The response to the mutating call itself: not done yet, metadata as recorded at submission.
fn submitted(st: &State, op: &str, req: &Req) -> GResult<Value> {
    let op = st
        .operations
        .get(op)
        .ok_or_else(|| GError::new(Code::Internal, "operation vanished"))?;
    let mut v = json!({"name": op.name, "metadata": op.metadata});
    operations::encode(&mut v, req.int);
    Ok(v)
}

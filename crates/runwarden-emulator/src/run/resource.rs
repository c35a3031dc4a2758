//! Cloud Run resources (services, jobs, executions) as the other `run` modules share them: their
//! names and region from the request path, NOT_FOUND and ABORTED wording, the user-settable
//! fields, etags, generations, the per-region count limit, how they are rendered on the wire, and
//! the response to a mutating call (its operation as submitted).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::validation::{valid_id, valid_region};
use crate::enums::{self, Schema};
use crate::error::{Code, GError, GResult};
use crate::operations;
use crate::request::Req;
use crate::state::{Api, JobRec, OpKind, Project, ServiceRec, State};
use crate::util::{self, str_of};

/// A kind of Cloud Run resource.
pub(super) struct Kind {
    /// The collection in paths: `services`, `jobs`, `executions`.
    pub(super) collection: &'static str,
    /// The kind Cloud Run's NOT_FOUND names: `SERVICE`, `JOB`, `EXECUTION`.
    pub(super) word: &'static str,
    /// The request field holding the resource (`service`, `job`), as Google's wording names it.
    pub(super) noun: &'static str,
    /// Fields a caller sets; everything else is output only.
    pub(super) fields: &'static [&'static str],
    /// Its enum fields.
    pub(super) schema: Schema,
    /// Its `@type` in operations.
    pub(super) any_type: &'static str,
    /// The longest id.
    pub(super) max_id: usize,
}

/// `google.cloud.run.v2.Service`.
pub(super) const SERVICE: Kind = Kind {
    collection: "services",
    word: "SERVICE",
    noun: "service",
    fields: &[
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
    ],
    schema: enums::SERVICE,
    any_type: operations::RUN_SERVICE_TYPE,
    max_id: 49,
};

/// `google.cloud.run.v2.Job`. The execution tokens (a oneof) are set by the caller and echoed.
pub(super) const JOB: Kind = Kind {
    collection: "jobs",
    word: "JOB",
    noun: "job",
    fields: &[
        "labels",
        "annotations",
        "client",
        "clientVersion",
        "launchStage",
        "binaryAuthorization",
        "template",
        "startExecutionToken",
        "runExecutionToken",
    ],
    schema: enums::JOB,
    any_type: operations::RUN_JOB_TYPE,
    max_id: 63,
};

/// `google.cloud.run.v2.Execution` (output only: created by runs).
pub(super) const EXECUTION: Kind = Kind {
    collection: "executions",
    word: "EXECUTION",
    noun: "execution",
    fields: &[],
    schema: enums::EXECUTION,
    any_type: operations::RUN_EXECUTION_TYPE,
    max_id: 63,
};

/// Who the emulator records as `creator` / `lastModifier` (callers are anonymous).
pub(super) const CALLER: &str = "emulator@runwarden.dev";

/// Canonical name (project id form) of the resource of `kind` the request path names at
/// segment 5, and its project.
pub(super) fn resource_name(st: &mut State, req: &Req, kind: &Kind) -> GResult<(String, Project)> {
    let p = st.project(req.seg(1))?;
    let l = req.seg(3);
    Ok((
        format!(
            "projects/{}/locations/{l}/{}/{}",
            p.id,
            kind.collection,
            req.seg(5)
        ),
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

/// Cloud Run's NOT_FOUND wording (recorded for services and jobs): the resource's own id, its
/// kind, region and project.
pub(super) fn not_found(kind: &Kind, name: &str) -> GError {
    let parts: Vec<&str> = name.split('/').collect();
    GError::not_found(format!(
        "Resource '{}' of kind '{}' in region '{}' in project '{}' does not exist.",
        parts.last().unwrap_or(&""),
        kind.word,
        parts.get(3).unwrap_or(&""),
        parts.get(1).unwrap_or(&"")
    ))
}

/// What the emulator stores for a service or a job: the resource and whether a delete is in
/// progress.
pub(super) trait Record: Clone {
    fn value(&self) -> &Value;
    fn value_mut(&mut self) -> &mut Value;
    fn is_deleting(&self) -> bool;
    fn mark_deleting(&mut self);
}

impl Record for ServiceRec {
    fn value(&self) -> &Value {
        &self.svc
    }
    fn value_mut(&mut self) -> &mut Value {
        &mut self.svc
    }
    fn is_deleting(&self) -> bool {
        self.deleting
    }
    fn mark_deleting(&mut self) {
        self.deleting = true;
    }
}

impl Record for JobRec {
    fn value(&self) -> &Value {
        &self.job
    }
    fn value_mut(&mut self) -> &mut Value {
        &mut self.job
    }
    fn is_deleting(&self) -> bool {
        self.deleting
    }
    fn mark_deleting(&mut self) {
        self.deleting = true;
    }
}

/// The id of a new resource: the create's `{noun}Id` query parameter, which must be set.
pub(super) fn new_id(req: &Req, kind: &Kind, rt: &str) -> GResult<String> {
    let field = format!("{}_id", kind.noun);
    let id = req.q(&util::camel(&field)).unwrap_or("").to_string();
    if id.is_empty() {
        return Err(GError::invalid_field(
            &field,
            format!("Violation in {rt}.{field}: must be set."),
        ));
    }
    check_id(kind, &id)?;
    Ok(id)
}

/// INVALID_ARGUMENT unless `id` is a valid id of the kind (lowercase letters, digits and
/// hyphens, starting with a letter, not ending with a hyphen, at most `max_id` characters).
pub(super) fn check_id(kind: &Kind, id: &str) -> GResult<()> {
    if valid_id(id, kind.max_id) {
        return Ok(());
    }
    Err(GError::invalid_field(
        &format!("{}_id", kind.noun),
        format!(
            "Invalid ID '{id}': a {} ID must start with a lowercase letter, contain only lowercase letters, digits and hyphens, not end with a hyphen, and be at most {} characters long.",
            kind.noun, kind.max_id
        ),
    ))
}

/// `{collection}.list` in `project`: one region, or every region with `locations/-`; resources
/// being deleted only with `showDeleted`.
pub(super) fn list_regional<T: Record>(
    map: &BTreeMap<String, T>,
    kind: &Kind,
    project: &str,
    req: &Req,
) -> GResult<Value> {
    let l = req.seg(3);
    if l != "-" {
        location(req)?;
    }
    let prefix = format!("projects/{project}/locations/");
    let items: Vec<Value> = map
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && (l == "-" || k.split('/').nth(3) == Some(l)))
        .filter(|(_, r)| !r.is_deleting() || req.q_bool("showDeleted"))
        .map(|(_, r)| render(kind, r.value(), req.int))
        .collect();
    util::list_page(kind.collection, &items, &req.query, 100)
}

/// A stored resource as returned on the wire (enums as names or numbers).
pub(super) fn render(kind: &Kind, v: &Value, int: bool) -> Value {
    let mut v = v.clone();
    enums::encode(&mut v, kind.schema, int);
    v
}

pub(super) fn generation(v: &Value) -> i64 {
    str_of(v, "generation").parse().unwrap_or(0)
}

pub(super) fn resource_etag(st: &mut State, name: &str, generation: i64) -> String {
    let seq = st.next_etag();
    format!(
        "\"{}/{}\"",
        util::base64(format!("{generation}:{seq}").as_bytes()).trim_end_matches('='),
        util::base64(name.as_bytes()).trim_end_matches('=')
    )
}

/// A request's resource body: enums normalized (Google's wording names `{noun}.<field>`), proto3
/// defaults dropped.
pub(super) fn input(kind: &Kind, req: &Req) -> GResult<Value> {
    let mut body = req.object_body()?;
    enums::decode(&mut body, kind.schema, kind.noun)?;
    util::prune(&mut body);
    Ok(body)
}

/// The user-settable fields of `v`.
pub(super) fn spec_of(kind: &Kind, v: &Value) -> Value {
    let mut m = Map::new();
    for f in kind.fields {
        if let Some(x) = v.get(*f) {
            m.insert(f.to_string(), x.clone());
        }
    }
    Value::Object(m)
}

/// The output fields a new resource gets: name, uid, generation 1, times, creator, etag.
pub(super) fn set_creation_fields(o: &mut Map<String, Value>, name: &str, etag: &str) {
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

/// ABORTED when the caller sent an etag that is not the resource's current one.
pub(super) fn check_etag(kind: &Kind, sent: &str, current: &Value, name: &str) -> GResult<()> {
    if sent.is_empty() || sent == str_of(current, "etag") {
        return Ok(());
    }
    Err(GError::new(
        Code::Aborted,
        format!(
            "The etag '{sent}' does not match the current etag of {} '{name}'; the {} was modified concurrently. Read it again and retry.",
            kind.noun, kind.noun
        ),
    ))
}

/// Services, and jobs, per project and region (Cloud Run's limits; they cannot be raised).
pub(super) const PER_REGION: usize = 1000;

/// RESOURCE_EXHAUSTED when `parent` (`projects/{id}/locations/{region}`) already has
/// [`PER_REGION`] resources of `kind` in `map` (being deleted ones count until the delete
/// completes). The wording is the emulator's own, after Cloud Run's recorded GPU count quota
/// message.
pub(super) fn check_region_limit<T>(
    map: &BTreeMap<String, T>,
    parent: &str,
    kind: &Kind,
) -> GResult<()> {
    let what = kind.collection;
    let prefix = format!("{parent}/{what}/");
    let count = map
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .count();
    if count < PER_REGION {
        return Ok(());
    }
    let region = parent.rsplit('/').next().unwrap_or("");
    Err(GError::new(
        Code::ResourceExhausted,
        format!(
            "Quota exceeded for total allowable count of {what} per project per region: {parent} already has {PER_REGION} {what}, the maximum in region {region}. Delete a {} or use another region or project.",
            kind.noun
        ),
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{
            "subject": parent,
            "description": format!("Maximum number of {what} per project and region: {PER_REGION}."),
            "apiService": "run.googleapis.com",
            "quotaDimensions": {"region": region},
            "quotaValue": PER_REGION.to_string(),
        }]
    })))
}

/// A Ready terminal condition in `state`, keeping the previous transition time.
pub(super) fn pending_condition(previous: &Value, state: &str) -> Value {
    let mut tc = json!({"type": "Ready", "state": state});
    if let Some(t) = util::get_path(previous, "terminalCondition.lastTransitionTime") {
        tc["lastTransitionTime"] = t.clone();
    }
    tc
}

/// Marks `new` as the next generation after `previous`'s: generation, `updateTime`,
/// `lastModifier`, etag, reconciling, Ready reconciling. Returns the generation.
pub(super) fn next_generation(
    st: &mut State,
    name: &str,
    previous: &Value,
    new: &mut Value,
) -> i64 {
    let next = generation(previous) + 1;
    let etag = resource_etag(st, name, next);
    if let Some(o) = new.as_object_mut() {
        o.insert("generation".into(), json!(next.to_string()));
        o.insert("updateTime".into(), json!(util::now()));
        o.insert("lastModifier".into(), json!(CALLER));
        o.insert("etag".into(), json!(etag));
        o.insert("reconciling".into(), json!(true));
        o.insert(
            "terminalCondition".into(),
            pending_condition(previous, "CONDITION_RECONCILING"),
        );
    }
    next
}

/// The resource as a delete leaves it until its operation completes: a new generation and etag,
/// `deleteTime`, `expireTime` 30 days on (recorded), reconciling, Ready pending.
fn deleting(st: &mut State, name: &str, current: &Value) -> Value {
    let next = generation(current) + 1;
    let etag = resource_etag(st, name, next);
    let now = SystemTime::now();
    let mut v = current.clone();
    if let Some(o) = v.as_object_mut() {
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
            pending_condition(current, "CONDITION_PENDING"),
        );
    }
    v
}

/// `{collection}.delete` (`etag`, `validateOnly`) of the resource in `map`: it stays readable,
/// marked deleting, until the operation (`op`) completes.
pub(super) fn delete<T: Record>(
    st: &mut State,
    req: &Req,
    kind: &Kind,
    map: fn(&mut State) -> &mut BTreeMap<String, T>,
    op: fn(String) -> OpKind,
) -> GResult<Value> {
    let (name, project) = resource_name(st, req, kind)?;
    let region = location(req)?;
    let rec = map(st)
        .get(&name)
        .filter(|r| !r.is_deleting())
        .cloned()
        .ok_or_else(|| not_found(kind, &name))?;
    check_etag(kind, req.q("etag").unwrap_or(""), rec.value(), &name)?;
    let parent = format!("projects/{}/locations/{region}", project.id);
    if req.q_bool("validateOnly") {
        return validated(
            st,
            req,
            &parent,
            operations::typed(rec.value(), kind.any_type),
        );
    }
    let v = deleting(st, &name, rec.value());
    let metadata = operations::typed(&v, kind.any_type);
    if let Some(r) = map(st).get_mut(&name) {
        *r.value_mut() = v;
        r.mark_deleting();
    }
    let op = operations::start(st, Api::Run, &parent, req.delay, op(name), metadata);
    submitted(st, &op, req)
}

/// The response to the mutating call itself: not done yet, metadata as recorded at submission.
pub(super) fn submitted(st: &State, op: &str, req: &Req) -> GResult<Value> {
    let op = st
        .operations
        .get(op)
        .ok_or_else(|| GError::new(Code::Internal, "operation vanished"))?;
    let mut v = json!({"name": op.name, "metadata": op.metadata});
    operations::encode(&mut v, req.int);
    Ok(v)
}

/// A validate-only request: an operation already done, its metadata and response `v`.
pub(super) fn validated(st: &mut State, req: &Req, parent: &str, v: Value) -> GResult<Value> {
    let op = operations::start_done(st, Api::Run, parent, v.clone(), Ok(v));
    operations::get(st, Api::Run, &op, req.int)
}

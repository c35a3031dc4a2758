//! Long-running operations (`google.longrunning.Operation`) as the emulator stores and renders
//! them: start, record an already-done one, get, list. What completing an operation *does* is
//! up to its API (see `completion`), so this module depends on no API module.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::enums;
use crate::error::{GError, GResult};
use crate::request::Req;
use crate::state::{Api, OpKind, Operation, State};
use crate::util;

/// `@type` of a Cloud Run Service carried in an operation's `metadata` / `response`.
pub(crate) const RUN_SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";
/// `@type` of a Cloud Run Job carried in an operation's `metadata` / `response`.
pub(crate) const RUN_JOB_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Job";
/// `@type` of a Cloud Run Execution carried in a run or cancel operation.
pub(crate) const RUN_EXECUTION_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Execution";
/// `@type` of a VPC Access connector carried in an operation's `response`.
pub(crate) const CONNECTOR_TYPE: &str = "type.googleapis.com/google.cloud.vpcaccess.v1.Connector";

/// A Cloud Run Service with its `@type`, as operations carry it.
pub(crate) fn service_any(svc: &Value) -> Value {
    typed(svc, RUN_SERVICE_TYPE)
}

/// A resource with its `@type` (a `google.protobuf.Any`), as operations carry it.
pub(crate) fn typed(v: &Value, any_type: &str) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("@type".into(), json!(any_type));
    }
    v
}

/// Starts an operation that completes once `delay` has elapsed; returns its name.
pub(crate) fn start(
    st: &mut State,
    api: Api,
    parent: &str,
    delay: Duration,
    kind: OpKind,
    metadata: Value,
) -> String {
    st.op_seq += 1;
    let name = format!("{parent}/operations/{}", util::uuid());
    st.operations.insert(
        name.clone(),
        Operation {
            name: name.clone(),
            api,
            seq: st.op_seq,
            started: Instant::now(),
            delay,
            kind,
            metadata,
            done: false,
            result: None,
        },
    );
    name
}

/// Records an operation that is already done (validate-only requests); returns its name.
pub(crate) fn start_done(
    st: &mut State,
    api: Api,
    parent: &str,
    metadata: Value,
    result: Result<Value, GError>,
) -> String {
    let name = start(st, api, parent, Duration::ZERO, OpKind::Fixed, metadata);
    if let Some(op) = st.operations.get_mut(&name) {
        op.done = true;
        op.result = Some(result);
    }
    name
}

/// The operation as JSON (enums as names). A Cloud Run operation still running shows the
/// current state of its service, job or execution as its metadata.
pub(crate) fn render(st: &State, op: &Operation) -> Value {
    let mut metadata = op.metadata.clone();
    if !op.done {
        let current = match &op.kind {
            OpKind::RunDeploy { service, .. } | OpKind::RunDelete { service } => {
                st.services.get(service).map(|r| service_any(&r.svc))
            }
            OpKind::JobDeploy { job, .. } | OpKind::JobDelete { job } => {
                st.jobs.get(job).map(|r| typed(&r.job, RUN_JOB_TYPE))
            }
            OpKind::ExecutionRun { execution }
            | OpKind::ExecutionCancel { execution }
            | OpKind::ExecutionDelete { execution } => st
                .executions
                .get(execution)
                .map(|r| typed(&r.exec, RUN_EXECUTION_TYPE)),
            _ => None,
        };
        if let Some(m) = current {
            metadata = m;
        }
    }
    let mut out = json!({"name": op.name, "metadata": metadata});
    if op.done {
        out["done"] = json!(true);
        match &op.result {
            Some(Ok(r)) if !r.is_null() => out["response"] = r.clone(),
            Some(Err(e)) => out["error"] = e.rpc_status(),
            _ => {}
        }
    }
    out
}

/// Encodes enums inside an operation's `metadata` and `response` by their `@type`.
pub(crate) fn encode(op: &mut Value, int: bool) {
    for key in ["metadata", "response"] {
        if let Some(v) = op.get_mut(key) {
            let schema = match util::str_of(v, "@type") {
                RUN_SERVICE_TYPE => enums::SERVICE,
                RUN_JOB_TYPE => enums::JOB,
                RUN_EXECUTION_TYPE => enums::EXECUTION,
                CONNECTOR_TYPE => enums::CONNECTOR,
                _ => enums::NONE,
            };
            enums::encode(v, schema, int);
        }
    }
}

/// Google's NOT_FOUND for an operation.
pub(crate) fn not_found(name: &str) -> GError {
    GError::not_found(format!("Operation '{name}' not found."))
}

/// `operations.get`: the named operation of `api`, rendered for the wire.
pub(crate) fn get(st: &State, api: Api, name: &str, int: bool) -> GResult<Value> {
    let op = st
        .operations
        .get(name)
        .filter(|o| o.api == api)
        .ok_or_else(|| not_found(name))?;
    let mut v = render(st, op);
    encode(&mut v, int);
    Ok(v)
}

/// `operations.list`: the operations of `api` under `parent`, oldest first, paginated.
pub(crate) fn list(st: &State, api: Api, parent: &str, req: &Req) -> GResult<Value> {
    let prefix = format!("{parent}/operations/");
    let mut ops: Vec<&Operation> = st
        .operations
        .values()
        .filter(|o| o.api == api && o.name.starts_with(&prefix))
        .collect();
    ops.sort_by_key(|o| o.seq);
    let rendered: Vec<Value> = ops
        .iter()
        .map(|o| {
            let mut v = render(st, o);
            encode(&mut v, req.int);
            v
        })
        .collect();
    util::list_page("operations", &rendered, &req.query, 100)
}

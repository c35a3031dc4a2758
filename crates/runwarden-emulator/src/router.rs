//! One axum handler for every request: `/emulator/v1/` goes to the controls; anything else is
//! looked up in the route table (`routes`), counted, checked for injected faults, then (with the
//! state locked) for the caller's token, the rate quota, the forbidden-project rule and the
//! caller's IAM permissions (`authz`), and handed to the route's handler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::authz;
use crate::error::{Code, GError, GResult};
use crate::request::{Caller, Req};
use crate::routes::{self, Handler, HandlerFn, Route};
use crate::shared::{Shared, lock};
use crate::util;

/// The router: every path goes to [`handle`].
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

fn error_response(e: &GError) -> Response {
    json_response(e.code.http(), &e.body())
}

/// Google's default message for an injected fault.
fn fault_message(code: Code, api: &str, perm: &str, project: &str) -> String {
    match code {
        Code::Unavailable => "The service is currently unavailable.".into(),
        Code::PermissionDenied => {
            format!(
                "Permission '{perm}' denied on resource 'projects/{project}' (or it may not exist)."
            )
        }
        Code::ResourceExhausted => format!(
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service '{}' for consumer 'project_number:{}'.",
            routes::service(api),
            crate::state::project_number(project)
        ),
        Code::Aborted => "The operation was aborted.".into(),
        Code::Internal => "Internal error encountered.".into(),
        Code::DeadlineExceeded => "Deadline expired before operation could complete.".into(),
        Code::Unauthenticated => "Request had invalid authentication credentials.".into(),
        c => format!("Injected fault: {}.", c.name()),
    }
}

async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let resp = dispatch(&shared, req).await;
    tracing::info!(
        method = %method,
        path = %raw_path,
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

async fn dispatch(shared: &Arc<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = util::percent_decode(req.uri().path());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let query: Vec<(String, String)> = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 32 * 1024 * 1024).await else {
        return error_response(&GError::invalid("Could not read the request body."));
    };
    if let Some(rest) = path.strip_prefix("/emulator/v1/") {
        let (status, body) = crate::controls::handle(shared, &method, rest, &bytes);
        return json_response(status, &body);
    }
    let split = routes::split_path(&path);
    let Some(route) = routes::find(method.as_str(), &split) else {
        return error_response(&unimplemented(&method, &path));
    };
    let project = match crate::serviceaccounts::path_project(&split.segs, route.api, &shared.state)
    {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            shared.count(&route.key());
            return error_response(&e);
        }
        None => split.segs.get(1).cloned().unwrap_or_default(),
    };
    shared.count(&route.key());
    if let Some(e) = injected_fault(shared, route, &project) {
        return error_response(&e);
    }
    let body = match parse_body(&bytes) {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let mut req = Req {
        segs: split.segs,
        int: util::wants_int_enums(&query),
        query,
        body,
        delay: *lock(&shared.delay),
        task_duration: *lock(&shared.task_duration),
        caller: Caller::Anonymous,
        now: shared.now(),
    };
    let handler = match route.handler {
        Handler::Now(f) => f,
        Handler::AfterOperationDue(f) => {
            wait_until_operation_due(shared, &req).await;
            f
        }
    };
    let call = Call {
        route,
        project: &project,
        authorization: authorization.as_deref(),
        handler,
    };
    match call.run(shared, &mut req) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}

/// 501 for a method and path the table does not serve.
fn unimplemented(method: &Method, path: &str) -> GError {
    GError::new(
        Code::Unimplemented,
        format!(
            "The runwarden emulator does not implement {method} {path}. See crates/runwarden-emulator/README.md for the methods served."
        ),
    )
}

/// The error of an injected fault matching this call, if any.
fn injected_fault(shared: &Shared, route: &Route, project: &str) -> Option<GError> {
    let (code, message) = shared.take_fault(route.api, &route.key())?;
    let message =
        message.unwrap_or_else(|| fault_message(code, route.api, route.permission, project));
    Some(if code == Code::PermissionDenied {
        GError::permission(route.permission, message)
    } else {
        GError::new(code, message)
    })
}

/// The JSON body (`null` when empty), or INVALID_ARGUMENT.
fn parse_body(bytes: &[u8]) -> GResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes)
        .map_err(|e| GError::invalid(format!("Invalid JSON payload received. {e}")))
}

/// `operations.wait`: sleeps (without the lock) until the operation is due, at most the body's
/// `timeout` (default 60s).
async fn wait_until_operation_due(shared: &Shared, req: &Req) {
    let wait_for = {
        let st = lock(&shared.state);
        let name = req.segs.join("/");
        st.operations
            .get(&name)
            .map(|op| (op.started + op.delay).saturating_duration_since(Instant::now()))
    };
    if let Some(d) = wait_for {
        let timeout = req
            .body
            .get("timeout")
            .and_then(Value::as_str)
            .and_then(util::parse_duration)
            .unwrap_or(Duration::from_secs(60));
        tokio::time::sleep(d.min(timeout)).await;
    }
}

/// A routed call, ready to run.
struct Call<'a> {
    route: &'static Route,
    /// The project segment (id or number), or a service account's project.
    project: &'a str,
    authorization: Option<&'a str>,
    handler: HandlerFn,
}

impl Call<'_> {
    /// With the state locked: the project must be valid; due operations complete; the caller's
    /// token is resolved (401); Cloud Run calls spend their rate quota (429); `denied-` projects
    /// and the caller's IAM permissions are checked (403); then the handler runs.
    fn run(&self, shared: &Shared, req: &mut Req) -> GResult<Value> {
        let route = self.route;
        let mut st = lock(&shared.state);
        let p = match st.project(self.project) {
            Err(_) if route.api == "resourcemanager" => {
                return Err(crate::resourcemanager::not_found_or_denied(self.project));
            }
            r => r?,
        };
        crate::completion::catch_up(&mut st, req);
        req.caller = authz::caller(&st, self.authorization, route, req.now)?;
        if route.api == "run" {
            lock(&shared.quotas).take(route.quota_kind(), p.number, req.seg(3), req.now)?;
        }
        if !route.permission.is_empty() {
            if p.denied() {
                return Err(authz::denied(route, req, &p.id));
            }
            authz::check(&st, route, req, &p.id)?;
        }
        (self.handler)(&mut st, req)
    }
}

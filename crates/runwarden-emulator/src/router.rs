//! One handler for every request: resolve the method key from the path, count it, apply faults and
//! the forbidden-project rule, then dispatch to the API module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::error::{Code, GError, GResult};
use crate::request::Req;
use crate::shared::{Shared, lock};
use crate::util;

/// The router: every path goes to [`handle`].
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Where a path leads: the API, the method key and the project segment.
pub(crate) struct Resolved {
    pub(crate) api: &'static str,
    pub(crate) key: &'static str,
    pub(crate) project: String,
    /// The IAM permission Google would check (used in PERMISSION_DENIED wording).
    pub(crate) permission: &'static str,
}

fn resolve(
    method: &Method,
    version: &str,
    segs: &[String],
    verb: Option<&str>,
) -> Option<Resolved> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let r = |api, key, permission| {
        Some(Resolved {
            api,
            key,
            project: s.get(1).map(|x| x.to_string()).unwrap_or_default(),
            permission,
        })
    };
    if s.first() != Some(&"projects") {
        return None;
    }
    if version == "v3" {
        return match (s.len(), m, verb) {
            (2, "GET", None) => r(
                "resourcemanager",
                "resourcemanager.projects.get",
                "resourcemanager.projects.get",
            ),
            _ => None,
        };
    }
    if s.len() < 5 || s[2] != "locations" {
        return None;
    }
    let coll = s[4];
    let n = s.len();
    match (version, coll, n, m, verb) {
        ("v2", "services", 5, "POST", None) => {
            r("run", "run.services.create", "run.services.create")
        }
        ("v2", "services", 5, "GET", None) => r("run", "run.services.list", "run.services.list"),
        ("v2", "services", 6, "GET", None) => r("run", "run.services.get", "run.services.get"),
        ("v2", "services", 6, "PATCH", None) => {
            r("run", "run.services.patch", "run.services.update")
        }
        ("v2", "services", 6, "DELETE", None) => {
            r("run", "run.services.delete", "run.services.delete")
        }
        ("v2", "services", 6, "GET", Some("getIamPolicy")) => r(
            "run",
            "run.services.getIamPolicy",
            "run.services.getIamPolicy",
        ),
        ("v2", "services", 6, "POST", Some("setIamPolicy")) => r(
            "run",
            "run.services.setIamPolicy",
            "run.services.setIamPolicy",
        ),
        ("v2", "services", 6, "POST", Some("testIamPermissions")) => {
            r("run", "run.services.testIamPermissions", "run.services.get")
        }
        ("v2", "operations", 5, "GET", None) => {
            r("run", "run.operations.list", "run.operations.list")
        }
        ("v2", "operations", 6, "GET", None) => {
            r("run", "run.operations.get", "run.operations.get")
        }
        ("v2", "operations", 6, "DELETE", None) => {
            r("run", "run.operations.delete", "run.operations.delete")
        }
        ("v2", "operations", 6, "POST", Some("wait")) => {
            r("run", "run.operations.wait", "run.operations.get")
        }
        ("v1", "connectors", 5, "POST", None) => r(
            "vpcaccess",
            "vpcaccess.connectors.create",
            "vpcaccess.connectors.create",
        ),
        ("v1", "connectors", 5, "GET", None) => r(
            "vpcaccess",
            "vpcaccess.connectors.list",
            "vpcaccess.connectors.list",
        ),
        ("v1", "connectors", 6, "GET", None) => r(
            "vpcaccess",
            "vpcaccess.connectors.get",
            "vpcaccess.connectors.get",
        ),
        ("v1", "connectors", 6, "DELETE", None) => r(
            "vpcaccess",
            "vpcaccess.connectors.delete",
            "vpcaccess.connectors.delete",
        ),
        ("v1", "operations", 5, "GET", None) => r(
            "vpcaccess",
            "vpcaccess.operations.list",
            "vpcaccess.operations.list",
        ),
        ("v1", "operations", 6, "GET", None) => r(
            "vpcaccess",
            "vpcaccess.operations.get",
            "vpcaccess.operations.get",
        ),
        ("v1", "keyRings", 5, "POST", None) => {
            r("kms", "kms.keyRings.create", "cloudkms.keyRings.create")
        }
        ("v1", "keyRings", 5, "GET", None) => {
            r("kms", "kms.keyRings.list", "cloudkms.keyRings.list")
        }
        ("v1", "keyRings", 6, "GET", None) => r("kms", "kms.keyRings.get", "cloudkms.keyRings.get"),
        ("v1", "keyRings", 7, "POST", None) if s[6] == "cryptoKeys" => {
            r("kms", "kms.cryptoKeys.create", "cloudkms.cryptoKeys.create")
        }
        ("v1", "keyRings", 7, "GET", None) if s[6] == "cryptoKeys" => {
            r("kms", "kms.cryptoKeys.list", "cloudkms.cryptoKeys.list")
        }
        ("v1", "keyRings", 8, _, _) if s[6] == "cryptoKeys" => match (m, verb) {
            ("GET", None) => r("kms", "kms.cryptoKeys.get", "cloudkms.cryptoKeys.get"),
            ("PATCH", None) => r("kms", "kms.cryptoKeys.patch", "cloudkms.cryptoKeys.update"),
            ("GET", Some("getIamPolicy")) => r(
                "kms",
                "kms.cryptoKeys.getIamPolicy",
                "cloudkms.cryptoKeys.getIamPolicy",
            ),
            ("POST", Some("setIamPolicy")) => r(
                "kms",
                "kms.cryptoKeys.setIamPolicy",
                "cloudkms.cryptoKeys.setIamPolicy",
            ),
            ("POST", Some("updatePrimaryVersion")) => r(
                "kms",
                "kms.cryptoKeys.updatePrimaryVersion",
                "cloudkms.cryptoKeys.update",
            ),
            _ => None,
        },
        ("v1", "keyRings", 9, "POST", None)
            if s[6] == "cryptoKeys" && s[8] == "cryptoKeyVersions" =>
        {
            r(
                "kms",
                "kms.cryptoKeyVersions.create",
                "cloudkms.cryptoKeyVersions.create",
            )
        }
        ("v1", "keyRings", 9, "GET", None)
            if s[6] == "cryptoKeys" && s[8] == "cryptoKeyVersions" =>
        {
            r(
                "kms",
                "kms.cryptoKeyVersions.list",
                "cloudkms.cryptoKeyVersions.list",
            )
        }
        ("v1", "keyRings", 10, _, _) if s[6] == "cryptoKeys" && s[8] == "cryptoKeyVersions" => {
            match (m, verb) {
                ("GET", None) => r(
                    "kms",
                    "kms.cryptoKeyVersions.get",
                    "cloudkms.cryptoKeyVersions.get",
                ),
                ("PATCH", None) => r(
                    "kms",
                    "kms.cryptoKeyVersions.patch",
                    "cloudkms.cryptoKeyVersions.update",
                ),
                ("POST", Some("destroy")) => r(
                    "kms",
                    "kms.cryptoKeyVersions.destroy",
                    "cloudkms.cryptoKeyVersions.destroy",
                ),
                ("POST", Some("restore")) => r(
                    "kms",
                    "kms.cryptoKeyVersions.restore",
                    "cloudkms.cryptoKeyVersions.restore",
                ),
                _ => None,
            }
        }
        _ => None,
    }
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
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service '{api}.googleapis.com' for consumer 'project_number:{}'.",
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
    let query: Vec<(String, String)> = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let bytes = match axum::body::to_bytes(req.into_body(), 32 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&GError::invalid("Could not read the request body."));
        }
    };

    if let Some(rest) = path.strip_prefix("/emulator/v1/") {
        let (status, body) = crate::controls::handle(shared, &method, rest, &bytes);
        return json_response(status, &body);
    }

    let trimmed = path.trim_start_matches('/');
    let (version, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let (rest, verb) = match rest.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((l, v)) => (format!("{head}/{l}"), Some(v.to_string())),
            None => (rest.to_string(), None),
        },
        None => match rest.split_once(':') {
            Some((l, v)) => (l.to_string(), Some(v.to_string())),
            None => (rest.to_string(), None),
        },
    };
    let segs: Vec<String> = rest.split('/').map(String::from).collect();
    let Some(resolved) = resolve(&method, version, &segs, verb.as_deref()) else {
        return error_response(&GError::new(
            Code::Unimplemented,
            format!(
                "The runwarden emulator does not implement {method} {path}. See crates/runwarden-emulator/README.md for the methods served."
            ),
        ));
    };
    shared.count(resolved.key);
    if let Some((code, message)) = shared.take_fault(resolved.api, resolved.key) {
        let message = message.unwrap_or_else(|| {
            fault_message(code, resolved.api, resolved.permission, &resolved.project)
        });
        let mut e = GError::new(code, message);
        if code == Code::PermissionDenied {
            e = GError::permission(resolved.permission, e.message);
        }
        return error_response(&e);
    }

    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return error_response(&GError::invalid(format!(
                    "Invalid JSON payload received. {e}"
                )));
            }
        }
    };
    let int = util::wants_int_enums(&query);
    let delay = *lock(&shared.delay);
    let req = Req {
        segs,
        query,
        body,
        int,
        delay,
    };

    // operations.wait sleeps (without the lock) until the operation is due.
    if resolved.key == "run.operations.wait" {
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

    let result: GResult<Value> = {
        let mut st = lock(&shared.state);
        match st.project(&resolved.project) {
            Err(e) => {
                if resolved.api == "resourcemanager" {
                    Err(crate::resourcemanager::not_found_or_denied(
                        &resolved.project,
                    ))
                } else {
                    Err(e)
                }
            }
            Ok(p) if p.denied() => Err(denied(&resolved, &req)),
            Ok(_) => {
                crate::completion::complete_due_operations(&mut st);
                match resolved.api {
                    "run" => crate::run::handle(&mut st, resolved.key, &req),
                    "vpcaccess" => crate::vpcaccess::handle(&mut st, resolved.key, &req),
                    "kms" => crate::kms::handle(&mut st, resolved.key, &req),
                    _ => crate::resourcemanager::handle(&mut st, &req),
                }
            }
        }
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}

fn denied(resolved: &Resolved, req: &Req) -> GError {
    let resource = match resolved.api {
        "resourcemanager" => {
            return crate::resourcemanager::not_found_or_denied(&resolved.project);
        }
        _ => req.segs.join("/"),
    };
    let tail = if resolved.api == "run" {
        "(or resource may not exist)"
    } else {
        "(or it may not exist)"
    };
    GError::permission(
        resolved.permission,
        format!(
            "Permission '{}' denied on resource '{resource}' {tail}.",
            resolved.permission
        ),
    )
}

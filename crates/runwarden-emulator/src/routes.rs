//! Every API method the emulator serves, as one table: HTTP method, path pattern, API, method
//! name, the IAM permission Google checks for it, and the handler. The router matches requests
//! against it; the request counters and faults use its `{api}.{method}` keys; a request that
//! matches no row is 501 UNIMPLEMENTED. Serving a new method is adding a row.

use serde_json::Value;

use crate::error::GResult;
use crate::quota::Kind;
use crate::request::Req;
use crate::state::State;
use crate::{kms, resourcemanager, run, scheduler, serviceaccounts, vpcaccess};
use Handler::{AfterOperationDue as Wait, Now};

/// An API method's implementation, called with the state locked and due operations completed.
pub(crate) type HandlerFn = fn(&mut State, &Req) -> GResult<Value>;

/// How the router calls a handler.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// Call it right away.
    Now(HandlerFn),
    /// First sleep (without the lock) until the operation the path names is due, bounded by the
    /// body's `timeout` (default 60s): `operations.wait`.
    AfterOperationDue(HandlerFn),
}

/// One row of the table.
pub(crate) struct Route {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub(crate) http: &'static str,
    /// The path without the leading `/`: literal segments, `{name}` for any one segment, and an
    /// optional `:verb` on the last one.
    pub(crate) pattern: &'static str,
    /// `run`, `vpcaccess`, `kms`, `cloudscheduler`, `resourcemanager`, `iam` or
    /// `iamcredentials`, as counters and faults name it.
    pub(crate) api: &'static str,
    /// `{collection}.{verb}`, e.g. `services.create`.
    pub(crate) method: &'static str,
    /// The IAM permission Google checks: enforced for callers with a token (`authz`) and named
    /// in PERMISSION_DENIED. Empty for `testIamPermissions`, which Google serves to anyone.
    pub(crate) permission: &'static str,
    pub(crate) handler: Handler,
}

impl Route {
    /// The counter and fault key: `{api}.{method}`.
    pub(crate) fn key(&self) -> String {
        format!("{}.{}", self.api, self.method)
    }

    /// Which rate quota the call spends: reads are GETs, `operations.wait` and
    /// `testIamPermissions`; everything else writes.
    pub(crate) fn quota_kind(&self) -> Kind {
        if self.http == "GET"
            || matches!(
                self.method,
                "operations.wait" | "services.testIamPermissions" | "jobs.testIamPermissions"
            )
        {
            Kind::Read
        } else {
            Kind::Write
        }
    }

    /// Whether a request (already split by [`split_path`]) is this method.
    fn matches(&self, http: &str, path: &SplitPath) -> bool {
        let pattern = split_path(self.pattern);
        self.http == http
            && pattern.version == path.version
            && pattern.verb == path.verb
            && pattern.segs.len() == path.segs.len()
            && pattern
                .segs
                .iter()
                .zip(&path.segs)
                .all(|(p, s)| segment_matches(p, s))
    }
}

/// Whether a path segment fits a pattern segment: a literal, `{name}` (any one segment), or
/// `prefix{name}` (a segment starting with `prefix`).
fn segment_matches(pattern: &str, seg: &str) -> bool {
    match pattern.find('{') {
        Some(0) => true,
        Some(i) => seg.starts_with(&pattern[..i]) && seg.len() > i,
        None => pattern == seg,
    }
}

/// A path split as Google's REST mapping reads it: `v2` / `projects/p/.../services/s` / `verb`.
pub(crate) struct SplitPath {
    pub(crate) version: String,
    /// Segments after the version, the verb removed from the last one.
    pub(crate) segs: Vec<String>,
    /// What follows `:` in the last segment (`getIamPolicy`, `wait`, ...).
    pub(crate) verb: Option<String>,
}

/// Splits a path (leading `/` optional) into version, segments and verb.
pub(crate) fn split_path(path: &str) -> SplitPath {
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
    SplitPath {
        version: version.to_string(),
        segs: rest.split('/').map(String::from).collect(),
        verb,
    }
}

/// The route a request takes, if the emulator serves it.
pub(crate) fn find(http: &str, path: &SplitPath) -> Option<&'static Route> {
    // A row with a prefixed segment (`build-{o}`) wins over a plain one matching the same path.
    let mut found = ROUTES.iter().filter(|r| r.matches(http, path));
    let first = found.next()?;
    Some(
        found
            .find(|r| r.pattern.contains("-{"))
            .filter(|_| !first.pattern.contains("-{"))
            .unwrap_or(first),
    )
}

/// The APIs in the table, in table order (what a fault's `api` may name).
pub(crate) fn apis() -> Vec<&'static str> {
    let mut apis: Vec<&'static str> = Vec::new();
    for r in ROUTES {
        if !apis.contains(&r.api) {
            apis.push(r.api);
        }
    }
    apis
}

/// The Google service name of an API (`ErrorInfo.metadata.service`, quota messages).
pub(crate) fn service(api: &str) -> &'static str {
    match api {
        RUN => "run.googleapis.com",
        VPC => "vpcaccess.googleapis.com",
        CB => "cloudbuild.googleapis.com",
        KMS => "cloudkms.googleapis.com",
        RM => "cloudresourcemanager.googleapis.com",
        IAM => "iam.googleapis.com",
        SCHED => "cloudscheduler.googleapis.com",
        _ => "iamcredentials.googleapis.com",
    }
}

const fn route(
    http: &'static str,
    pattern: &'static str,
    api: &'static str,
    method: &'static str,
    permission: &'static str,
    handler: Handler,
) -> Route {
    Route {
        http,
        pattern,
        api,
        method,
        permission,
        handler,
    }
}

const RUN: &str = "run";
const VPC: &str = "vpcaccess";
const KMS: &str = "kms";
const RM: &str = "resourcemanager";
const IAM: &str = "iam";
const CRED: &str = "iamcredentials";
const SCHED: &str = "cloudscheduler";
const CB: &str = "cloudbuild";

/// The table. Paths use `{p}` project (id or number), `{l}` location, then the resource ids.
#[rustfmt::skip]
pub(crate) static ROUTES: &[Route] = &[
    // Cloud Run Admin v2
    route("POST",   "v2/projects/{p}/locations/{l}/services",                       RUN, "services.create",             "run.services.create",             Now(run::services::create)),
    route("GET",    "v2/projects/{p}/locations/{l}/services",                       RUN, "services.list",               "run.services.list",               Now(run::services::list)),
    route("GET",    "v2/projects/{p}/locations/{l}/services/{s}",                   RUN, "services.get",                "run.services.get",                Now(run::services::get)),
    route("PATCH",  "v2/projects/{p}/locations/{l}/services/{s}",                   RUN, "services.patch",              "run.services.update",             Now(run::services::patch)),
    route("DELETE", "v2/projects/{p}/locations/{l}/services/{s}",                   RUN, "services.delete",             "run.services.delete",             Now(run::services::delete)),
    route("GET",    "v2/projects/{p}/locations/{l}/services/{s}:getIamPolicy",      RUN, "services.getIamPolicy",       "run.services.getIamPolicy",       Now(run::iam::get_policy)),
    route("POST",   "v2/projects/{p}/locations/{l}/services/{s}:setIamPolicy",      RUN, "services.setIamPolicy",       "run.services.setIamPolicy",       Now(run::iam::set_policy)),
    route("POST",   "v2/projects/{p}/locations/{l}/services/{s}:testIamPermissions",RUN, "services.testIamPermissions", "",                                Now(run::iam::test_permissions)),
    route("POST",   "v2/projects/{p}/locations/{l}/jobs",                           RUN, "jobs.create",                 "run.jobs.create",                 Now(run::jobs::create)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs",                           RUN, "jobs.list",                   "run.jobs.list",                   Now(run::jobs::list)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs/{j}",                       RUN, "jobs.get",                    "run.jobs.get",                    Now(run::jobs::get)),
    route("PATCH",  "v2/projects/{p}/locations/{l}/jobs/{j}",                       RUN, "jobs.patch",                  "run.jobs.update",                 Now(run::jobs::patch)),
    route("DELETE", "v2/projects/{p}/locations/{l}/jobs/{j}",                       RUN, "jobs.delete",                 "run.jobs.delete",                 Now(run::jobs::delete)),
    route("POST",   "v2/projects/{p}/locations/{l}/jobs/{j}:run",                   RUN, "jobs.run",                    "run.jobs.run",                    Now(run::jobs::run)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs/{j}:getIamPolicy",          RUN, "jobs.getIamPolicy",           "run.jobs.getIamPolicy",           Now(run::iam::get_policy)),
    route("POST",   "v2/projects/{p}/locations/{l}/jobs/{j}:setIamPolicy",          RUN, "jobs.setIamPolicy",           "run.jobs.setIamPolicy",           Now(run::iam::set_policy)),
    route("POST",   "v2/projects/{p}/locations/{l}/jobs/{j}:testIamPermissions",    RUN, "jobs.testIamPermissions",     "",                                Now(run::iam::test_permissions)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs/{j}/executions",            RUN, "executions.list",             "run.executions.list",             Now(run::executions::list)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs/{j}/executions/{e}",        RUN, "executions.get",              "run.executions.get",              Now(run::executions::get)),
    route("DELETE", "v2/projects/{p}/locations/{l}/jobs/{j}/executions/{e}",        RUN, "executions.delete",           "run.executions.delete",           Now(run::executions::delete)),
    route("POST",   "v2/projects/{p}/locations/{l}/jobs/{j}/executions/{e}:cancel", RUN, "executions.cancel",           "run.executions.cancel",           Now(run::executions::cancel)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs/{j}/executions/{e}/tasks",  RUN, "tasks.list",                  "run.tasks.list",                  Now(run::executions::list_tasks)),
    route("GET",    "v2/projects/{p}/locations/{l}/jobs/{j}/executions/{e}/tasks/{t}", RUN, "tasks.get",                "run.tasks.get",                   Now(run::executions::get_task)),
    route("GET",    "v2/projects/{p}/locations/{l}/operations",                     RUN, "operations.list",             "run.operations.list",             Now(run::operations::list)),
    route("GET",    "v2/projects/{p}/locations/{l}/operations/{o}",                 RUN, "operations.get",              "run.operations.get",              Now(run::operations::get)),
    route("DELETE", "v2/projects/{p}/locations/{l}/operations/{o}",                 RUN, "operations.delete",           "run.operations.delete",           Now(run::operations::delete)),
    route("POST",   "v2/projects/{p}/locations/{l}/operations/{o}:wait",            RUN, "operations.wait",             "run.operations.get",              Wait(run::operations::get)),
    route("POST",   "v2/projects/{p}/locations/{l}/builds:submit",                  RUN, "builds.submit",               "run.builds.create",               Now(run::builds::submit)),
    // Serverless VPC Access v1
    route("POST",   "v1/projects/{p}/locations/{l}/connectors",                     VPC, "connectors.create",           "vpcaccess.connectors.create",     Now(vpcaccess::create)),
    route("GET",    "v1/projects/{p}/locations/{l}/connectors",                     VPC, "connectors.list",             "vpcaccess.connectors.list",       Now(vpcaccess::list)),
    route("GET",    "v1/projects/{p}/locations/{l}/connectors/{c}",                 VPC, "connectors.get",              "vpcaccess.connectors.get",        Now(vpcaccess::get)),
    route("DELETE", "v1/projects/{p}/locations/{l}/connectors/{c}",                 VPC, "connectors.delete",           "vpcaccess.connectors.delete",     Now(vpcaccess::delete)),
    route("GET",    "v1/projects/{p}/locations/{l}/operations",                     VPC, "operations.list",             "vpcaccess.operations.list",       Now(vpcaccess::list_operations)),
    route("GET",    "v1/projects/{p}/locations/{l}/operations/{o}",                 VPC, "operations.get",              "vpcaccess.operations.get",        Now(vpcaccess::get_operation)),
    // Cloud KMS v1
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings",                       KMS, "keyRings.create",             "cloudkms.keyRings.create",        Now(kms::create_key_ring)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings",                       KMS, "keyRings.list",               "cloudkms.keyRings.list",          Now(kms::list_key_rings)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings/{r}",                   KMS, "keyRings.get",                "cloudkms.keyRings.get",           Now(kms::get_key_ring)),
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys",        KMS, "cryptoKeys.create",           "cloudkms.cryptoKeys.create",      Now(kms::create_key)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys",        KMS, "cryptoKeys.list",             "cloudkms.cryptoKeys.list",        Now(kms::list_keys)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}",    KMS, "cryptoKeys.get",              "cloudkms.cryptoKeys.get",         Now(kms::get_key)),
    route("PATCH",  "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}",    KMS, "cryptoKeys.patch",            "cloudkms.cryptoKeys.update",      Now(kms::patch_key)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}:getIamPolicy",         KMS, "cryptoKeys.getIamPolicy",         "cloudkms.cryptoKeys.getIamPolicy",  Now(kms::get_key_policy)),
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}:setIamPolicy",         KMS, "cryptoKeys.setIamPolicy",         "cloudkms.cryptoKeys.setIamPolicy",  Now(kms::set_key_policy)),
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}:updatePrimaryVersion", KMS, "cryptoKeys.updatePrimaryVersion", "cloudkms.cryptoKeys.update",        Now(kms::update_primary_version)),
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}/cryptoKeyVersions",             KMS, "cryptoKeyVersions.create",  "cloudkms.cryptoKeyVersions.create",  Now(kms::create_version)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}/cryptoKeyVersions",             KMS, "cryptoKeyVersions.list",    "cloudkms.cryptoKeyVersions.list",    Now(kms::list_versions)),
    route("GET",    "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}/cryptoKeyVersions/{v}",         KMS, "cryptoKeyVersions.get",     "cloudkms.cryptoKeyVersions.get",     Now(kms::get_version)),
    route("PATCH",  "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}/cryptoKeyVersions/{v}",         KMS, "cryptoKeyVersions.patch",   "cloudkms.cryptoKeyVersions.update",  Now(kms::patch_version)),
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}/cryptoKeyVersions/{v}:destroy", KMS, "cryptoKeyVersions.destroy", "cloudkms.cryptoKeyVersions.destroy", Now(kms::destroy_version)),
    route("POST",   "v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}/cryptoKeyVersions/{v}:restore", KMS, "cryptoKeyVersions.restore", "cloudkms.cryptoKeyVersions.restore", Now(kms::restore_version)),
    // Cloud Scheduler v1
    route("POST",   "v1/projects/{p}/locations/{l}/jobs",                           SCHED, "jobs.create",               "cloudscheduler.jobs.create",      Now(scheduler::create)),
    route("GET",    "v1/projects/{p}/locations/{l}/jobs",                           SCHED, "jobs.list",                 "cloudscheduler.jobs.list",        Now(scheduler::list)),
    route("GET",    "v1/projects/{p}/locations/{l}/jobs/{j}",                       SCHED, "jobs.get",                  "cloudscheduler.jobs.get",         Now(scheduler::get)),
    route("PATCH",  "v1/projects/{p}/locations/{l}/jobs/{j}",                       SCHED, "jobs.patch",                "cloudscheduler.jobs.update",      Now(scheduler::patch)),
    route("DELETE", "v1/projects/{p}/locations/{l}/jobs/{j}",                       SCHED, "jobs.delete",               "cloudscheduler.jobs.delete",      Now(scheduler::delete)),
    route("POST",   "v1/projects/{p}/locations/{l}/jobs/{j}:pause",                 SCHED, "jobs.pause",                "cloudscheduler.jobs.pause",       Now(scheduler::pause)),
    route("POST",   "v1/projects/{p}/locations/{l}/jobs/{j}:resume",                SCHED, "jobs.resume",               "cloudscheduler.jobs.enable",      Now(scheduler::resume)),
    route("POST",   "v1/projects/{p}/locations/{l}/jobs/{j}:run",                   SCHED, "jobs.run",                  "cloudscheduler.jobs.run",         Now(scheduler::run)),
    // Resource Manager v3
    route("GET",    "v3/projects/{p}",                                              RM,  "projects.get",                "resourcemanager.projects.get",    Now(resourcemanager::get_project)),
    route("POST",   "v3/projects/{p}:getIamPolicy",                                 RM,  "projects.getIamPolicy",       "resourcemanager.projects.getIamPolicy", Now(resourcemanager::get_project_policy)),
    route("POST",   "v3/projects/{p}:setIamPolicy",                                 RM,  "projects.setIamPolicy",       "resourcemanager.projects.setIamPolicy", Now(resourcemanager::set_project_policy)),
    // IAM v1 (service accounts' own policies; `{p}` is usually `-`, the e-mail names the project)
    route("POST",   "v1/projects/{p}/serviceAccounts/{sa}:getIamPolicy",            IAM, "serviceAccounts.getIamPolicy", "iam.serviceAccounts.getIamPolicy", Now(serviceaccounts::get_policy)),
    route("POST",   "v1/projects/{p}/serviceAccounts/{sa}:setIamPolicy",            IAM, "serviceAccounts.setIamPolicy", "iam.serviceAccounts.setIamPolicy", Now(serviceaccounts::set_policy)),
    // IAM Credentials v1
    route("POST",   "v1/projects/{p}/serviceAccounts/{sa}:generateAccessToken",     CRED, "serviceAccounts.generateAccessToken", "iam.serviceAccounts.getAccessToken", Now(serviceaccounts::generate_access_token)),
    // Cloud Build v1: the operations of Cloud Run builds. Another host than VPC Access's in
    // Google, the same path here: their ids start with `build-`, and this refined row wins.
    route("GET",    "v1/projects/{p}/locations/{l}/operations/build-{o}",           CB,  "operations.get",              "cloudbuild.builds.get",           Now(run::builds::get_operation)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_unique_key_and_request_shape() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert_eq!(
                split_path(a.pattern).segs[1],
                "{p}",
                "{}: project at [1]",
                a.key()
            );
            for b in &ROUTES[i + 1..] {
                // Same API and method on another host in Google (Cloud Build and VPC Access
                // operations): told apart by the operation id's prefix, the refined row first.
                let refined = (a.pattern.contains("-{")
                    && b.matches(a.http, &split_path(a.pattern)))
                    || (b.pattern.contains("-{") && a.matches(b.http, &split_path(b.pattern)));
                if refined {
                    continue;
                }
                assert_ne!(a.key(), b.key());
                let overlap = a.matches(b.http, &split_path(b.pattern))
                    || b.matches(a.http, &split_path(a.pattern));
                assert!(!overlap, "{} and {} overlap", a.key(), b.key());
            }
        }
    }

    #[test]
    fn paths_resolve_to_their_method() {
        let key = |http: &str, path: &str| find(http, &split_path(path)).map(Route::key);
        let svc = "/v2/projects/p/locations/l/services/s";
        assert_eq!(key("GET", svc).as_deref(), Some("run.services.get"));
        assert_eq!(
            key("GET", &format!("{svc}:getIamPolicy")).as_deref(),
            Some("run.services.getIamPolicy")
        );
        assert_eq!(key("POST", svc), None);
        assert_eq!(key("GET", &format!("{svc}:nope")), None);
        assert_eq!(
            key("GET", "/v3/projects/p").as_deref(),
            Some("resourcemanager.projects.get")
        );
        assert_eq!(key("GET", "/v2/projects/x/unknown"), None);
        let ops = "/v1/projects/p/locations/l/operations";
        assert_eq!(
            key("GET", &format!("{ops}/build-1")).as_deref(),
            Some("cloudbuild.operations.get")
        );
        assert_eq!(
            key("GET", &format!("{ops}/1")).as_deref(),
            Some("vpcaccess.operations.get")
        );
        assert_eq!(
            key("POST", "/v2/projects/p/locations/l/builds:submit").as_deref(),
            Some("run.builds.submit")
        );
        assert_eq!(
            key(
                "POST",
                "/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken"
            )
            .as_deref(),
            Some("iamcredentials.serviceAccounts.generateAccessToken")
        );
        assert_eq!(
            key("POST", "/v3/projects/p:setIamPolicy").as_deref(),
            Some("resourcemanager.projects.setIamPolicy")
        );
        assert_eq!(
            apis(),
            [
                "run",
                "vpcaccess",
                "kms",
                "cloudscheduler",
                "resourcemanager",
                "iam",
                "iamcredentials",
                "cloudbuild"
            ]
        );
    }
}

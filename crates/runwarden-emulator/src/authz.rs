//! IAM enforcement. A call without an `Authorization` header is anonymous and may do anything. A
//! call with `Bearer <token>` from `generateAccessToken` is made as that service account: the
//! route's permission must be granted to `serviceAccount:{email}` (or `allAuthenticatedUsers` /
//! `allUsers`) by a role (`roles`) in an unconditioned binding of the project's policy or of the
//! resource's own policy (Cloud Run service, KMS crypto key — also for its versions — or service
//! account). Cloud Run create/patch of a template also needs `iam.serviceAccounts.actAs` on the
//! account it runs as (its `serviceAccount`, else the project's default compute account), as do
//! Cloud Run job create/patch and Cloud Scheduler create/patch on the account of an HTTP
//! target's token; a run with overrides also needs `run.jobs.runWithOverrides`;
//! `generateAccessToken` checks the delegation chain.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::error::{Code, GError, GResult};
use crate::iam::Policy;
use crate::request::{Caller, Req};
use crate::routes::{self, Route};
use crate::state::State;
use crate::{resourcemanager, roles, serviceaccounts, util};

const GET_ACCESS_TOKEN: &str = "iam.serviceAccounts.getAccessToken";
const IMPLICIT_DELEGATION: &str = "iam.serviceAccounts.implicitDelegation";
const ACT_AS: &str = "iam.serviceAccounts.actAs";
const RUN_WITH_OVERRIDES: &str = "run.jobs.runWithOverrides";

/// Who calls: anonymous without an `Authorization` header, the token's service account for a
/// live token, UNAUTHENTICATED for anything else (unknown, expired or not a bearer token).
pub(crate) fn caller(
    st: &State,
    authorization: Option<&str>,
    route: &Route,
    now: SystemTime,
) -> GResult<Caller> {
    let Some(value) = authorization else {
        return Ok(Caller::Anonymous);
    };
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match token.and_then(|t| st.tokens.get(t)) {
        Some(t) if t.expires > now => Ok(Caller::ServiceAccount(t.email.clone())),
        Some(_) => Err(unauthenticated(route, "ACCESS_TOKEN_EXPIRED")),
        None => Err(unauthenticated(route, "ACCESS_TOKEN_TYPE_UNSUPPORTED")),
    }
}

/// Google's 401.
fn unauthenticated(route: &Route, reason: &str) -> GError {
    GError::new(
        Code::Unauthenticated,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": routes::service(route.api)}
    }))
}

/// Checks the caller's permissions for a call in `project` (an id); PERMISSION_DENIED otherwise.
pub(crate) fn check(st: &State, route: &Route, req: &Req, project: &str) -> GResult<()> {
    if route.api == "iamcredentials" {
        return check_chain(st, &req.caller, req);
    }
    let Caller::ServiceAccount(email) = &req.caller else {
        return Ok(());
    };
    if !holds(st, email, route.permission, &req.segs, project) {
        return Err(denied(route, req, project));
    }
    if route.api == "run"
        && route.method == "jobs.run"
        && req
            .body
            .get("overrides")
            .is_some_and(|o| o.as_object().is_some_and(|o| !o.is_empty()))
        && !holds(st, email, RUN_WITH_OVERRIDES, &req.segs, project)
    {
        let resource = req.segs.join("/");
        return Err(GError::permission_on(
            RUN_WITH_OVERRIDES,
            &resource,
            format!(
                "Permission '{RUN_WITH_OVERRIDES}' denied on resource '{resource}' (or resource may not exist)."
            ),
        ));
    }
    match acts_as(route, req, project) {
        Some(sa) if !on_account(st, email, ACT_AS, &sa, project) => Err(GError::permission_on(
            ACT_AS,
            &format!("projects/-/serviceAccounts/{sa}"),
            format!(
                "Permission 'iam.serviceaccounts.actAs' denied on service account {sa} (or it may not exist)."
            ),
        )),
        _ => Ok(()),
    }
}

/// The service account a call makes Google act as, which the caller needs `actAs` on: the
/// account a Cloud Run service or job template runs as (its `serviceAccount`, else the
/// project's default compute account), or the account a Cloud Scheduler job's HTTP target
/// gets its token for.
fn acts_as(route: &Route, req: &Req, project: &str) -> Option<String> {
    let template = match (route.api, route.method) {
        ("run", "services.create" | "services.patch") => req.body.get("template"),
        ("run", "jobs.create" | "jobs.patch") => {
            req.body.get("template").and_then(|t| t.get("template"))
        }
        ("cloudscheduler", "jobs.create" | "jobs.patch") => {
            let h = req.body.get("httpTarget")?;
            let token = h.get("oauthToken").or_else(|| h.get("oidcToken"))?;
            return util::get_path(token, "serviceAccountEmail")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
        }
        _ => None,
    }?;
    Some(
        template
            .get("serviceAccount")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(
                || serviceaccounts::default_compute_account(crate::state::project_number(project)),
                str::to_owned,
            ),
    )
}

/// The permissions among `asked` the caller holds on the resource of the request path.
pub(crate) fn permitted(st: &State, req: &Req, project: &str, asked: &[String]) -> Vec<String> {
    asked
        .iter()
        .filter(|p| match &req.caller {
            Caller::Anonymous => true,
            Caller::ServiceAccount(email) => holds(st, email, p, &req.segs, project),
        })
        .cloned()
        .collect()
}

/// `generateAccessToken`: caller → delegates... → target; each hop needs
/// `implicitDelegation` on the next account, the last one `getAccessToken` on the target. An
/// anonymous caller skips only its own hop.
fn check_chain(st: &State, caller: &Caller, req: &Req) -> GResult<()> {
    let mut hops: Vec<&str> = util::strs_of(&req.body, "delegates")
        .into_iter()
        .map(serviceaccounts::email_in)
        .collect();
    hops.push(req.seg(3));
    let mut from = match caller {
        Caller::Anonymous => None,
        Caller::ServiceAccount(email) => Some(email.as_str()),
    };
    for (i, to) in hops.iter().enumerate() {
        let project = serviceaccounts::project_of(to, &st.projects)
            .ok_or_else(|| serviceaccounts::not_found("iamcredentials", to))?;
        let permission = if i + 1 == hops.len() {
            GET_ACCESS_TOKEN
        } else {
            IMPLICIT_DELEGATION
        };
        if from.is_some_and(|f| !on_account(st, f, permission, to, &project)) {
            return Err(GError::permission(
                permission,
                format!("Permission '{permission}' denied on resource (or it may not exist)."),
            ));
        }
        from = Some(to);
    }
    Ok(())
}

/// Whether `email` holds `permission` on service account `target` (its own policy, or its
/// project's; `fallback_project` for accounts whose e-mail names no project).
fn on_account(
    st: &State,
    email: &str,
    permission: &str,
    target: &str,
    fallback_project: &str,
) -> bool {
    let project = serviceaccounts::project_of(target, &st.projects);
    let project = project.as_deref().unwrap_or(fallback_project);
    granted(st, email, permission, project, st.sa_policies.get(target))
}

/// Whether `email` holds `permission` on the resource of the path `segs` in `project`.
pub(crate) fn holds(
    st: &State,
    email: &str,
    permission: &str,
    segs: &[String],
    project: &str,
) -> bool {
    granted(
        st,
        email,
        permission,
        project,
        own_policy(st, segs, project, permission),
    )
}

/// Whether the project's policy or `own` grants `permission` to `email`.
fn granted(st: &State, email: &str, permission: &str, project: &str, own: Option<&Policy>) -> bool {
    let members = [
        format!("serviceAccount:{email}"),
        "allAuthenticatedUsers".to_string(),
        "allUsers".to_string(),
    ];
    st.project_policies
        .get(project)
        .into_iter()
        .chain(own)
        .any(|p| p.roles_of(&members).any(|r| roles::grants(r, permission)))
}

/// The resource's own IAM policy, if it has one: a Cloud Run service or job (also for the
/// executions and tasks under it), a KMS crypto key (also for paths under it), a service account.
/// `permission` tells the APIs apart (a Cloud Scheduler job's path looks like a Cloud Run job's).
fn own_policy<'a>(
    st: &'a State,
    segs: &[String],
    project: &str,
    permission: &str,
) -> Option<&'a Policy> {
    let is = |i: usize, kind: &str| segs.len() > i + 1 && segs[i] == kind;
    let name = |n: usize| format!("projects/{project}/{}", segs[2..n].join("/"));
    let run = permission.starts_with("run.");
    if is(2, "serviceAccounts") {
        st.sa_policies.get(&segs[3])
    } else if run && is(4, "jobs") {
        st.jobs.get(&name(6)).map(|r| &r.policy)
    } else if run && is(4, "services") {
        st.services.get(&name(6)).map(|r| &r.policy)
    } else if is(6, "cryptoKeys") {
        st.crypto_keys.get(&name(8)).map(|r| &r.policy)
    } else {
        None
    }
}

/// PERMISSION_DENIED for the route's permission, in the API's wording. The resource a create
/// names includes the new id (`.../services/{serviceId}`).
pub(crate) fn denied(route: &Route, req: &Req, project: &str) -> GError {
    let permission = route.permission;
    let mut resource = req.segs.join("/");
    match route.api {
        "resourcemanager" => return resourcemanager::denied(permission, project),
        "iam" | "iamcredentials" => {
            return GError::permission(
                permission,
                format!("Permission '{permission}' denied on resource (or it may not exist)."),
            );
        }
        _ => {}
    }
    if route.method.ends_with(".create")
        && let Some((_, id)) = req.query.iter().find(|(k, _)| k.ends_with("Id"))
    {
        resource = format!("{resource}/{id}");
    }
    let tail = if route.api == "run" {
        "(or resource may not exist)"
    } else {
        "(or it may not exist)"
    };
    GError::permission_on(
        permission,
        &resource,
        format!("Permission '{permission}' denied on resource '{resource}' {tail}."),
    )
}

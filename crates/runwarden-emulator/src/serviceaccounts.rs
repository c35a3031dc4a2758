//! Service accounts: IAM Credentials v1 `generateAccessToken` and IAM v1 `getIamPolicy` /
//! `setIamPolicy` on a service account. Every well-formed `NAME@PROJECT.iam.gserviceaccount.com`
//! exists (no create/delete); its project is the one in the e-mail, whatever the path names
//! (`projects/-/serviceAccounts/...` is the usual form). So does each seen project's default
//! compute account, `NUMBER-compute@developer.gserviceaccount.com`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{GError, GResult};
use crate::iam;
use crate::request::Req;
use crate::shared::lock;
use crate::state::{State, Token, valid_project_id};
use crate::util;

const DOMAIN: &str = ".iam.gserviceaccount.com";
const COMPUTE_SUFFIX: &str = "-compute@developer.gserviceaccount.com";
/// The longest lifetime Google grants without the org policy that extends it to 12 hours.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The project of a service account: a user-managed `NAME@PROJECT.iam.gserviceaccount.com`
/// (NAME 6–30 characters, lowercase letters, digits and hyphens), or a project's default compute
/// account `NUMBER-compute@developer.gserviceaccount.com` of a project seen before (`projects`:
/// numbers to ids). `None` otherwise.
pub(crate) fn project_of(email: &str, projects: &BTreeMap<u64, String>) -> Option<String> {
    if let Some(number) = email.strip_suffix(COMPUTE_SUFFIX) {
        return projects.get(&number.parse().ok()?).cloned();
    }
    let (name, host) = email.split_once('@')?;
    let project = host.strip_suffix(DOMAIN)?;
    let n = name.as_bytes();
    let name_ok = (6..=30).contains(&n.len())
        && n[0].is_ascii_lowercase()
        && n.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && n[n.len() - 1] != b'-';
    (name_ok && valid_project_id(project)).then(|| project.to_owned())
}

/// The default compute account of the project numbered `number`: what a Cloud Run revision
/// runs as when its template names no account.
pub(crate) fn default_compute_account(number: u64) -> String {
    format!("{number}{COMPUTE_SUFFIX}")
}

/// For a path `projects/{p}/serviceAccounts/{email}...`: the account's project, or the API's
/// NOT_FOUND when the e-mail is not a service account. `None` for any other path (without
/// taking the state's lock: it is only needed for a default compute account's project).
pub(crate) fn path_project(
    segs: &[String],
    api: &str,
    state: &Mutex<State>,
) -> Option<GResult<String>> {
    if segs.get(2).map(String::as_str) != Some("serviceAccounts") {
        return None;
    }
    let email = segs.get(3).map(String::as_str).unwrap_or("");
    let project = project_of(email, &lock(state).projects);
    Some(project.ok_or_else(|| not_found(api, email)))
}

/// NOT_FOUND for an e-mail that is no service account, in each API's recorded wording.
pub(crate) fn not_found(api: &str, email: &str) -> GError {
    if api == "iamcredentials" {
        GError::not_found(format!("Not found; Gaia id not found for email {email}"))
    } else {
        GError::not_found("Unknown service account")
    }
}

/// The e-mail of `projects/-/serviceAccounts/{email}` (or a bare e-mail, as delegates may be).
pub(crate) fn email_in(name: &str) -> &str {
    name.rsplit_once("/serviceAccounts/")
        .map(|(_, e)| e)
        .unwrap_or(name)
}

/// `iamcredentials.serviceAccounts.generateAccessToken`: `{scope, lifetime, delegates}` →
/// `{accessToken, expireTime}`. The permission checks along the delegation chain are `authz`'s.
pub(crate) fn generate_access_token(st: &mut State, req: &Req) -> GResult<Value> {
    let email = req.seg(3).to_string();
    let body = req.object_body()?;
    let scopes = body.get("scope").and_then(Value::as_array);
    if scopes.is_none_or(|s| s.is_empty()) {
        return Err(GError::invalid_field("scope", "Scope required."));
    }
    let lifetime = match body.get("lifetime") {
        None | Some(Value::Null) => MAX_LIFETIME,
        Some(Value::String(s)) => util::parse_duration(s)
            .filter(|d| !d.is_zero() && *d <= MAX_LIFETIME)
            .ok_or_else(|| {
                GError::invalid_field(
                    "lifetime",
                    format!("The lifetime must be between 1s and 3600s, got '{s}'."),
                )
            })?,
        Some(other) => {
            return Err(util::bad_value(
                "lifetime",
                "type.googleapis.com/google.protobuf.Duration",
                other,
            ));
        }
    };
    let token = format!("ya29.emu-{}", util::random_alnum(40));
    let expires = req.now + lifetime;
    st.tokens.insert(token.clone(), Token { email, expires });
    Ok(json!({"accessToken": token, "expireTime": util::timestamp(expires)}))
}

/// `iam.serviceAccounts.getIamPolicy`.
pub(crate) fn get_policy(st: &mut State, req: &Req) -> GResult<Value> {
    Ok(iam::render_in(&st.sa_policies, req.seg(3)))
}

/// `iam.serviceAccounts.setIamPolicy`.
pub(crate) fn set_policy(st: &mut State, req: &Req) -> GResult<Value> {
    let body = req.object_body()?;
    iam::set_in(&mut st.sa_policies, req.seg(3), &body, &mut st.etag_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_emails() {
        let none = BTreeMap::new();
        assert_eq!(
            project_of("deployer@my-project.iam.gserviceaccount.com", &none).as_deref(),
            Some("my-project")
        );
        let seen = BTreeMap::from([(123456789012, "my-project".to_owned())]);
        assert_eq!(
            project_of("123456789012-compute@developer.gserviceaccount.com", &seen).as_deref(),
            Some("my-project")
        );
        assert_eq!(
            project_of("123456789012-compute@developer.gserviceaccount.com", &none),
            None,
            "a project never seen"
        );
        for bad in [
            "short@my-project.iam.gserviceaccount.com",
            "deployer@my-project.example.com",
            "deployer@P.iam.gserviceaccount.com",
            "no-at-sign",
            "123-other@developer.gserviceaccount.com",
        ] {
            assert_eq!(project_of(bad, &seen), None, "{bad}");
        }
        assert_eq!(email_in("projects/-/serviceAccounts/a@b.c"), "a@b.c");
    }
}

//! IAM policies shared by Cloud Run services, KMS keys, projects and service accounts: `getIamPolicy` / `setIamPolicy` with
//! base64 etags, ABORTED on a stale etag, member validation, conditions kept verbatim.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::{Code, GError, GResult};
use crate::util;

/// The etag real Google APIs give a policy that was never set.
pub const EMPTY_ETAG: &str = "ACAB";

/// Google's wording when `setIamPolicy` carries a stale etag (HTTP 409, ABORTED).
pub const CONCURRENT_CHANGE: &str = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.";

/// A resource's IAM policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    bindings: Vec<Value>,
    audit_configs: Vec<Value>,
    /// `None` until the first `setIamPolicy`.
    etag: Option<String>,
}

impl Policy {
    /// The current etag.
    pub fn etag(&self) -> &str {
        self.etag.as_deref().unwrap_or(EMPTY_ETAG)
    }

    fn version(&self) -> i64 {
        if self.bindings.iter().any(|b| b.get("condition").is_some()) {
            3
        } else {
            1
        }
    }

    /// The policy as `getIamPolicy` returns it. A never-set policy is just `{"etag":"ACAB"}`.
    pub fn render(&self) -> Value {
        let mut out = serde_json::Map::new();
        if self.etag.is_some() {
            out.insert("version".into(), json!(self.version()));
        }
        out.insert("etag".into(), json!(self.etag()));
        if !self.bindings.is_empty() {
            out.insert("bindings".into(), Value::Array(self.bindings.clone()));
        }
        if !self.audit_configs.is_empty() {
            out.insert(
                "auditConfigs".into(),
                Value::Array(self.audit_configs.clone()),
            );
        }
        Value::Object(out)
    }

    /// Whether `member` holds one of `roles` in a binding without a condition.
    pub fn grants(&self, member: &str, roles: &[&str]) -> bool {
        self.bindings.iter().any(|b| {
            b.get("condition").is_none()
                && roles.contains(&util::str_of(b, "role"))
                && b.get("members")
                    .and_then(Value::as_array)
                    .is_some_and(|m| m.iter().any(|x| x.as_str() == Some(member)))
        })
    }

    /// The roles any of `members` holds in bindings without a condition (conditions are not
    /// evaluated, so a conditional binding grants nothing).
    pub fn roles_of<'a>(&'a self, members: &'a [String]) -> impl Iterator<Item = &'a str> + 'a {
        self.bindings
            .iter()
            .filter(|b| b.get("condition").is_none())
            .filter(|b| {
                b.get("members")
                    .and_then(Value::as_array)
                    .is_some_and(|m| m.iter().any(|x| members.iter().any(|w| x == w.as_str())))
            })
            .map(|b| util::str_of(b, "role"))
    }

    /// Every member of every binding.
    pub fn members(&self) -> std::collections::BTreeSet<String> {
        members_of(&self.bindings)
    }

    /// Applies a `SetIamPolicyRequest` body (`{policy, updateMask}`); `seq` feeds new etags.
    pub fn set(&mut self, body: &Value, seq: &mut u64) -> GResult<Value> {
        let Some(policy) = body.get("policy").filter(|p| p.is_object()) else {
            return Err(GError::invalid_field(
                "policy",
                "Request contains an invalid argument: policy must be set.",
            ));
        };
        let mask = update_mask(body)?;
        let sent_etag = util::str_of(policy, "etag");
        if !sent_etag.is_empty() && sent_etag != self.etag() {
            return Err(GError::new(Code::Aborted, CONCURRENT_CHANGE));
        }
        let version = util::int_at(policy, "version", "policy.version", "TYPE_INT32")?.unwrap_or(0);
        if mask.iter().any(|p| p == "bindings") {
            self.bindings = merged_bindings(policy, version)?;
        }
        if mask.iter().any(|p| p == "auditConfigs") {
            self.audit_configs = policy
                .get("auditConfigs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
        }
        *seq += 1;
        self.etag = Some(util::base64(&seq.to_be_bytes()));
        Ok(self.render())
    }
}

/// The members of `bindings` (a policy's `bindings` as JSON).
pub fn members_of(bindings: &[Value]) -> std::collections::BTreeSet<String> {
    bindings
        .iter()
        .flat_map(|b| util::strs_of(b, "members"))
        .map(String::from)
        .collect()
}

/// `getIamPolicy` of a policy kept by key (projects, service accounts): never set = empty.
pub fn render_in(policies: &BTreeMap<String, Policy>, key: &str) -> Value {
    policies
        .get(key)
        .map_or_else(|| Policy::default().render(), Policy::render)
}

/// `setIamPolicy` of a policy kept by key (created on first set).
pub fn set_in(
    policies: &mut BTreeMap<String, Policy>,
    key: &str,
    body: &Value,
    seq: &mut u64,
) -> GResult<Value> {
    policies.entry(key.to_string()).or_default().set(body, seq)
}

/// The request's `updateMask` paths (camelCase), `bindings,etag` when absent.
fn update_mask(body: &Value) -> GResult<Vec<String>> {
    let mask: Vec<String> = match body.get("updateMask") {
        Some(Value::String(s)) => s
            .split(',')
            .map(|p| util::camel(p.trim()))
            .filter(|p| !p.is_empty())
            .collect(),
        Some(o @ Value::Object(_)) => util::strs_of(o, "paths")
            .into_iter()
            .map(util::camel)
            .collect(),
        _ => Vec::new(),
    };
    let mask = if mask.is_empty() {
        vec!["bindings".to_string(), "etag".to_string()]
    } else {
        mask
    };
    for p in &mask {
        if !matches!(p.as_str(), "bindings" | "etag" | "auditConfigs" | "version") {
            return Err(GError::invalid_field(
                "update_mask",
                format!("Invalid update_mask path: '{p}'."),
            ));
        }
    }
    Ok(mask)
}

/// The policy's bindings checked, merged by role and condition, members sorted and deduplicated,
/// empty bindings dropped.
fn merged_bindings(policy: &Value, version: i64) -> GResult<Vec<Value>> {
    let raw = match policy.get("bindings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(util::bad_value(
                "policy.bindings",
                "type.googleapis.com/google.iam.v1.Binding",
                other,
            ));
        }
    };
    let mut bindings: Vec<Value> = Vec::new();
    for b in raw {
        let (role, members, condition) = parse_binding(&b, version)?;
        if members.is_empty() {
            continue;
        }
        match bindings
            .iter_mut()
            .find(|x| util::str_of(x, "role") == role && x.get("condition") == condition.as_ref())
        {
            Some(existing) => {
                if let Some(arr) = existing.get_mut("members").and_then(Value::as_array_mut) {
                    arr.extend(members.into_iter().map(Value::String));
                }
            }
            None => {
                let mut nb = json!({"role": role, "members": members});
                if let Some(c) = condition {
                    nb["condition"] = c;
                }
                bindings.push(nb);
            }
        }
    }
    for b in &mut bindings {
        if let Some(arr) = b.get_mut("members").and_then(Value::as_array_mut) {
            let mut ms: Vec<String> = arr
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect();
            ms.sort();
            ms.dedup();
            *arr = ms.into_iter().map(Value::String).collect();
        }
    }
    Ok(bindings)
}

/// One binding's role, members and condition, each checked.
fn parse_binding(b: &Value, version: i64) -> GResult<(String, Vec<String>, Option<Value>)> {
    let role = util::str_of(b, "role").to_string();
    if !valid_role(&role) {
        return Err(GError::invalid_field(
            "policy.bindings.role",
            format!("Role ({role}) does not exist in the resource's hierarchy."),
        ));
    }
    let members: Vec<String> = match b.get("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad_member(&m.to_string()))
            })
            .collect::<GResult<_>>()?,
        Some(other) => return Err(bad_member(&other.to_string())),
    };
    for m in &members {
        if !valid_member(m) {
            return Err(bad_member(m));
        }
    }
    let condition = b.get("condition").filter(|c| !c.is_null()).cloned();
    if let Some(c) = &condition {
        if util::str_of(c, "expression").is_empty() {
            return Err(GError::invalid_field(
                "policy.bindings.condition.expression",
                "Condition expression must not be empty.",
            ));
        }
        if version < 3 && version != 0 {
            return Err(GError::invalid_field(
                "policy.version",
                format!(
                    "Invalid policy version {version}: policies with conditional role bindings must specify version 3."
                ),
            ));
        }
    }
    Ok((role, members, condition))
}

fn bad_member(m: &str) -> GError {
    GError::invalid_field(
        "policy.bindings.members",
        format!(
            "Invalid member '{m}'. Policy members must be of the form \"<type>:<value>\", e.g. \"user:alice@example.com\"."
        ),
    )
}

fn valid_role(role: &str) -> bool {
    let custom = |prefix: &str| {
        role.strip_prefix(prefix)
            .and_then(|r| r.split_once("/roles/"))
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
    };
    role.strip_prefix("roles/").is_some_and(|r| !r.is_empty())
        || custom("projects/")
        || custom("organizations/")
}

/// Whether an IAM member string has a known type prefix and a plausible value.
pub fn valid_member(m: &str) -> bool {
    if matches!(m, "allUsers" | "allAuthenticatedUsers") {
        return true;
    }
    let m = m.strip_prefix("deleted:").unwrap_or(m);
    if let Some(rest) = m
        .strip_prefix("principal://")
        .or_else(|| m.strip_prefix("principalSet://"))
    {
        return !rest.is_empty() && !rest.contains(char::is_whitespace);
    }
    let Some((kind, value)) = m.split_once(':') else {
        return false;
    };
    let value = value.split("?uid=").next().unwrap_or(value);
    let email = |v: &str| {
        v.split_once('@').is_some_and(|(a, b)| {
            !a.is_empty() && b.contains('.') && !v.contains(char::is_whitespace)
        })
    };
    match kind {
        "user" | "group" | "serviceAccount" => email(value),
        "domain" => value.contains('.') && !value.contains(char::is_whitespace),
        "projectOwner" | "projectEditor" | "projectViewer" => !value.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members() {
        for ok in [
            "allUsers",
            "user:a@b.com",
            "serviceAccount:x@p.iam.gserviceaccount.com",
            "domain:example.com",
            "principal://iam.googleapis.com/x",
            "deleted:user:a@b.com?uid=123",
        ] {
            assert!(valid_member(ok), "{ok}");
        }
        for bad in ["alice@example.com", "user:", "robot:x@y.z", "user:nobody"] {
            assert!(!valid_member(bad), "{bad}");
        }
    }

    #[test]
    fn etag_check_and_merge() {
        let mut p = Policy::default();
        assert_eq!(p.render(), json!({"etag": "ACAB"}));
        let mut seq = 0;
        let out = p
            .set(
                &json!({"policy": {"etag": "ACAB", "bindings": [
                    {"role": "roles/run.invoker", "members": ["user:b@x.com", "user:a@x.com"]},
                    {"role": "roles/run.invoker", "members": ["user:a@x.com"]}]}}),
                &mut seq,
            )
            .unwrap();
        assert_eq!(
            out["bindings"][0]["members"],
            json!(["user:a@x.com", "user:b@x.com"])
        );
        assert_eq!(out["version"], 1);
        let err = p
            .set(&json!({"policy": {"etag": "ACAB"}}), &mut seq)
            .unwrap_err();
        assert_eq!(err.code, Code::Aborted);
    }
}

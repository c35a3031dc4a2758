//! Organization policies: list constraints with allowed values per project, set through the
//! `config` control, and the check Cloud Run's create and patch run against them.
//!
//! The control's shape (`PUT /emulator/v1/config`), constraint names with or without the
//! `constraints/` prefix; a project or constraint left out has no policy, `{}` or `null` removes
//! every policy, and `reset` does too:
//!
//! ```json
//! {"orgPolicies": {"my-project": {
//!     "run.allowedIngress": ["internal", "internal-and-cloud-load-balancing"],
//!     "run.allowedVPCEgress": ["private-ranges-only"],
//!     "run.allowedBinaryAuthorizationPolicies": ["default"],
//!     "iam.allowedPolicyMemberDomains": ["example.com"]}}}
//! ```
//!
//! Values are the ones gcloud uses: ingress `all`, `internal`,
//! `internal-and-cloud-load-balancing`; VPC egress `all-traffic`, `private-ranges-only` (checked
//! only for a service with `template.vpcAccess`); Binary Authorization `default` for
//! `useDefault`, else the policy name (a service without Binary Authorization violates the
//! constraint whenever it exists). A violating service is refused like Cloud Run refuses it:
//! `FAILED_PRECONDITION`, `Precondition check failed.`, and a `google.rpc.PreconditionFailure`
//! detail with one violation per violated constraint.
//!
//! `iam.allowedPolicyMemberDomains` (domain restricted sharing) is checked by Cloud Run's
//! `setIamPolicy` instead ([`check_members`]): Google's values are Workspace customer ids
//! (`C0abc123`, `is:C0abc123`); the emulator has no organizations, so it takes the customers'
//! domains (`example.com`; `is:` is ignored).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{Code, GError, GResult};
use crate::state::{Project, State};
use crate::util::{get_path, str_of};

/// Allowed values by constraint (without the `constraints/` prefix), by project id.
pub type OrgPolicies = BTreeMap<String, BTreeMap<String, Vec<String>>>;

const INGRESS: &str = "run.allowedIngress";
const VPC_EGRESS: &str = "run.allowedVPCEgress";
const BINARY_AUTHORIZATION: &str = "run.allowedBinaryAuthorizationPolicies";
const MEMBER_DOMAINS: &str = "iam.allowedPolicyMemberDomains";
/// The constraints the emulator enforces.
const CONSTRAINTS: [&str; 4] = [INGRESS, VPC_EGRESS, BINARY_AUTHORIZATION, MEMBER_DOMAINS];

/// Google's message when domain restricted sharing refuses a `setIamPolicy` (recorded; see
/// `shared/fixtures/gcp-recorded/README.md`).
pub const MEMBER_DOMAINS_REFUSED: &str = "One or more users named in the policy do not belong to a permitted customer, perhaps due to an organization policy.";

/// Parses the `orgPolicies` field of the `config` control (INVALID_ARGUMENT naming what is wrong).
pub(crate) fn parse(v: &Value) -> GResult<OrgPolicies> {
    let mut out = OrgPolicies::new();
    let projects = match v {
        Value::Null => return Ok(out),
        Value::Object(m) => m,
        _ => return Err(invalid("orgPolicies", "an object keyed by project id")),
    };
    for (project, constraints) in projects {
        let field = format!("orgPolicies.{project}");
        let constraints = match constraints {
            Value::Null => continue,
            Value::Object(m) => m,
            _ => return Err(invalid(&field, "an object keyed by constraint")),
        };
        let mut policy = BTreeMap::new();
        for (constraint, allowed) in constraints {
            let field = format!("{field}.{constraint}");
            let name = constraint
                .strip_prefix("constraints/")
                .unwrap_or(constraint);
            if !CONSTRAINTS.contains(&name) {
                return Err(GError::invalid_field(
                    &field,
                    format!(
                        "Unknown constraint '{constraint}': the emulator enforces {}.",
                        CONSTRAINTS.join(", ")
                    ),
                ));
            }
            let values = allowed
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| invalid(&field, "a list of allowed values"))?;
            policy.insert(name.to_string(), values);
        }
        out.insert(project.clone(), policy);
    }
    Ok(out)
}

fn invalid(field: &str, expected: &str) -> GError {
    GError::invalid_field(field, format!("Invalid {field}: use {expected}."))
}

/// The policies as the `config` control shows them (constraint names without the prefix).
pub(crate) fn to_json(policies: &OrgPolicies) -> Value {
    let projects: Map<String, Value> = policies
        .iter()
        .map(|(project, policy)| (project.clone(), json!(policy)))
        .collect();
    Value::Object(projects)
}

/// Refuses a Cloud Run service spec that violates its project's organization policy, with the
/// error Cloud Run answers: nothing is stored or started.
pub(crate) fn check_service(st: &State, project: &Project, svc: &Value) -> GResult<()> {
    let Some(policy) = st
        .org_policies
        .get(&project.id)
        .or_else(|| st.org_policies.get(&project.number.to_string()))
    else {
        return Ok(());
    };
    let scope = format!("projects/{}", project.id);
    let mut violations = Vec::new();
    let mut check = |constraint: &str, what: &str, value: Option<String>| {
        let Some(allowed) = policy.get(constraint) else {
            return;
        };
        let description = match value {
            Some(v) if allowed.contains(&v) => return,
            Some(v) => format!(
                "{what} '{v}' is not allowed by the organization policy constraint constraints/{constraint} on {scope}; allowed: {}.",
                allowed_list(allowed)
            ),
            None => format!(
                "{what} is not set, but the organization policy constraint constraints/{constraint} on {scope} requires one of: {}.",
                allowed_list(allowed)
            ),
        };
        violations.push(json!({
            "type": format!("constraints/{constraint}"),
            "subject": format!("orgpolicy:{scope}"),
            "description": description,
        }));
    };
    check(INGRESS, "Ingress", Some(ingress(svc).to_string()));
    if let Some(vpc) = get_path(svc, "template.vpcAccess").filter(|v| v.is_object()) {
        check(VPC_EGRESS, "VPC egress", Some(egress(vpc).to_string()));
    }
    check(
        BINARY_AUTHORIZATION,
        "Binary Authorization policy",
        binary_authorization(svc),
    );
    if violations.is_empty() {
        return Ok(());
    }
    Err(
        GError::new(Code::FailedPrecondition, "Precondition check failed.").with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": violations,
        })),
    )
}

/// Refuses a Cloud Run `setIamPolicy` that adds a member outside the project's
/// `iam.allowedPolicyMemberDomains`, as Google does: FAILED_PRECONDITION with Google's message and
/// a `google.rpc.PreconditionFailure` violation per refused member. Members the policy already
/// had are not judged again (Google keeps them when the constraint is set later).
///
/// Ours, as the emulator has no organizations: a member is in a domain when its e-mail's domain
/// (or `domain:`'s value) is an allowed one or below it; `allUsers` and `allAuthenticatedUsers`
/// never are; service accounts (`*.gserviceaccount.com`) and `principal://` / `principalSet://`
/// identities count as the organization's.
pub(crate) fn check_members(
    st: &State,
    project: &Project,
    before: &std::collections::BTreeSet<String>,
    added: impl IntoIterator<Item = String>,
) -> GResult<()> {
    let Some(allowed) = st
        .org_policies
        .get(&project.id)
        .or_else(|| st.org_policies.get(&project.number.to_string()))
        .and_then(|p| p.get(MEMBER_DOMAINS))
    else {
        return Ok(());
    };
    let violations: Vec<Value> = added
        .into_iter()
        .filter(|m| !before.contains(m) && !in_domains(m, allowed))
        .map(|m| {
            let user = m.split_once(':').map_or(m.as_str(), |(_, v)| v);
            json!({
                "type": format!("constraints/{MEMBER_DOMAINS}"),
                "subject": format!("orgpolicy:projects/{}?configvalue={user}", project.id),
                "description": format!("User {user} is not in permitted organization."),
            })
        })
        .collect();
    if violations.is_empty() {
        return Ok(());
    }
    Err(
        GError::new(Code::FailedPrecondition, MEMBER_DOMAINS_REFUSED).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": violations,
        })),
    )
}

/// Whether `member` belongs to one of the `allowed` domains (see [`check_members`]).
fn in_domains(member: &str, allowed: &[String]) -> bool {
    if member.starts_with("principal://") || member.starts_with("principalSet://") {
        return true;
    }
    let domain = match member.split_once(':') {
        Some(("domain", d)) => d,
        Some((_, email)) => match email.rsplit_once('@') {
            Some((_, d)) => d,
            None => return false,
        },
        None => return false,
    };
    let domain = domain.to_ascii_lowercase();
    if domain.ends_with(".gserviceaccount.com") {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.strip_prefix("is:").unwrap_or(a).to_ascii_lowercase();
        domain == a || domain.ends_with(&format!(".{a}"))
    })
}

fn allowed_list(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "none".into()
    } else {
        allowed.join(", ")
    }
}

/// The service's ingress as gcloud names it (Cloud Run's default is `all`).
fn ingress(svc: &Value) -> &'static str {
    match str_of(svc, "ingress") {
        "INGRESS_TRAFFIC_INTERNAL_ONLY" => "internal",
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" => "internal-and-cloud-load-balancing",
        "INGRESS_TRAFFIC_NONE" => "none",
        _ => "all",
    }
}

/// The VPC egress as gcloud names it (Cloud Run's default is `private-ranges-only`).
fn egress(vpc: &Value) -> &'static str {
    match str_of(vpc, "egress") {
        "ALL_TRAFFIC" => "all-traffic",
        _ => "private-ranges-only",
    }
}

/// `default` for `useDefault`, else the policy name; `None` without Binary Authorization.
fn binary_authorization(svc: &Value) -> Option<String> {
    let ba = svc.get("binaryAuthorization")?;
    if ba.get("useDefault") == Some(&json!(true)) {
        return Some("default".into());
    }
    Some(str_of(ba, "policy"))
        .filter(|p| !p.is_empty())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(policies: Value) -> State {
        State {
            org_policies: parse(&json!({ "demo-project": policies })).expect("valid policies"),
            ..State::default()
        }
    }

    fn project() -> Project {
        Project {
            id: "demo-project".into(),
            number: crate::state::project_number("demo-project"),
        }
    }

    fn violated(st: &State, svc: Value) -> Vec<String> {
        match check_service(st, &project(), &svc) {
            Ok(()) => vec![],
            Err(e) => {
                assert_eq!(e.code, Code::FailedPrecondition);
                assert_eq!(e.message, "Precondition check failed.");
                e.details[0]["violations"]
                    .as_array()
                    .expect("violations")
                    .iter()
                    .map(|v| str_of(v, "type").to_string())
                    .collect()
            }
        }
    }

    #[test]
    fn each_violated_constraint_is_one_violation_and_defaults_count() {
        let st = state(json!({
            "constraints/run.allowedIngress": ["internal"],
            "run.allowedVPCEgress": ["private-ranges-only"],
            "run.allowedBinaryAuthorizationPolicies": ["default"],
        }));
        assert_eq!(
            violated(&st, json!({"template": {}})),
            [
                "constraints/run.allowedIngress",
                "constraints/run.allowedBinaryAuthorizationPolicies"
            ],
            "ingress defaults to all; no Binary Authorization"
        );
        let ok = json!({
            "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY",
            "binaryAuthorization": {"useDefault": true},
            "template": {"vpcAccess": {"connector": "c"}},
        });
        assert_eq!(violated(&st, ok.clone()), Vec::<String>::new());
        let mut egress = ok.clone();
        egress["template"]["vpcAccess"]["egress"] = json!("ALL_TRAFFIC");
        egress["binaryAuthorization"] =
            json!({"policy": "projects/p/platforms/cloudRun/policies/x"});
        assert_eq!(
            violated(&st, egress),
            [
                "constraints/run.allowedVPCEgress",
                "constraints/run.allowedBinaryAuthorizationPolicies"
            ]
        );
        assert!(check_service(&State::default(), &project(), &json!({})).is_ok());
    }

    #[test]
    fn the_description_names_value_constraint_project_and_what_is_allowed() {
        let st =
            state(json!({"run.allowedIngress": ["internal", "internal-and-cloud-load-balancing"]}));
        let e =
            check_service(&st, &project(), &json!({"ingress": "INGRESS_TRAFFIC_ALL"})).unwrap_err();
        assert_eq!(
            e.details[0],
            json!({
                "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [{
                    "type": "constraints/run.allowedIngress",
                    "subject": "orgpolicy:projects/demo-project",
                    "description": "Ingress 'all' is not allowed by the organization policy constraint constraints/run.allowedIngress on projects/demo-project; allowed: internal, internal-and-cloud-load-balancing.",
                }]
            })
        );
    }

    #[test]
    fn unknown_constraints_and_malformed_values_are_refused() {
        for bad in [
            json!({"p": {"run.allowedRegions": ["x"]}}),
            json!({"p": {"run.allowedIngress": "internal"}}),
            json!({"p": {"run.allowedIngress": [1]}}),
            json!({"p": []}),
            json!([]),
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{bad}");
        }
        assert!(parse(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn domain_restricted_sharing_refuses_new_outside_members_as_google_does() {
        let st = state(json!({"iam.allowedPolicyMemberDomains": ["example.com"]}));
        let before: std::collections::BTreeSet<String> =
            ["user:old@elsewhere.org".to_string()].into();
        let ok = [
            "user:a@example.com",
            "group:g@eu.example.com",
            "domain:example.com",
            "serviceAccount:x@demo-project.iam.gserviceaccount.com",
            "principal://iam.googleapis.com/locations/global/workforcePools/p/subject/s",
            "user:old@elsewhere.org",
        ];
        assert!(check_members(&st, &project(), &before, ok.map(String::from)).is_ok());
        let e = check_members(
            &st,
            &project(),
            &before,
            ["allUsers", "user:eve@badexample.com", "user:a@example.com"].map(String::from),
        )
        .expect_err("refused");
        assert_eq!(e.code, Code::FailedPrecondition);
        assert_eq!(e.message, MEMBER_DOMAINS_REFUSED);
        let violations = e.details[0]["violations"].as_array().expect("violations");
        assert_eq!(violations.len(), 2);
        assert_eq!(
            violations[0],
            json!({
                "type": "constraints/iam.allowedPolicyMemberDomains",
                "subject": "orgpolicy:projects/demo-project?configvalue=allUsers",
                "description": "User allUsers is not in permitted organization.",
            })
        );
        assert_eq!(
            str_of(&violations[1], "subject"),
            "orgpolicy:projects/demo-project?configvalue=eve@badexample.com"
        );
        assert!(
            check_members(&State::default(), &project(), &before, ["allUsers".into()]).is_ok(),
            "no policy, no restriction"
        );
    }
}

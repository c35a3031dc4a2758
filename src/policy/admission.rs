//! The guardrails at admission: ValidatingAdmissionPolicies generated from [`super::rules::RULES`]
//! (`runwarden crd` prints them after the CRDs; committed as `crds/admission.yaml`).
//!
//! Layout, which works on any Kubernetes 1.30+ API server without a webhook:
//!
//! - Two `ValidatingAdmissionPolicy` objects, [`ENFORCE`] and [`AUDIT`], each with
//!   `paramKind: runwarden.dev/v1alpha1 RunSecurityPolicy`, matching CREATE and UPDATE of
//!   `cloudrunservices` and `cloudrunjobs` (not their `status` subresource, not DELETE), `failurePolicy: Fail`, and a
//!   match condition that skips UPDATEs leaving `spec` unchanged (labels, annotations, finalizers).
//! - One binding each, with `paramRef: {selector: {}, parameterNotFoundAction: Allow}`: the API
//!   server evaluates the policy once per RunSecurityPolicy, as `params`, and allows everything
//!   when there is none. The binding's `validationActions` are fixed, so the `Enforce` policy's
//!   validation holds for `params` with `enforcement: Audit` and the other way round: [`ENFORCE`]
//!   is bound with `[Deny]`, [`AUDIT`] with `[Warn, Audit]`.
//! - CEL variables: `project` (resolved from `spec.projectId`, then the namespace annotation),
//!   `selectorValid` and `selected` (the `namespaceSelector` over `namespaceObject`'s labels, see
//!   [`super::selector`]), one string per rule (`''` when satisfied) and `violations`, the list of
//!   `rule: why`. The message is `RunSecurityPolicy NAME: ` and the violations joined by `; `,
//!   as [`super::PolicyViolation::message`].

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{PROJECT_ANNOTATION, SELECTOR_INVALID, rules::RULES, selector};

/// The policy (and binding) that refuses requests violating `Enforce` RunSecurityPolicies.
pub const ENFORCE: &str = "runwarden-guardrails-enforce";
/// The policy (and binding) that warns about requests violating `Audit` RunSecurityPolicies.
pub const AUDIT: &str = "runwarden-guardrails-audit";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/part-of".to_owned(),
            "runwarden".to_owned(),
        )])),
        ..Default::default()
    }
}

fn var(name: &str, expression: String) -> Variable {
    Variable {
        name: name.to_owned(),
        expression,
    }
}

/// The CEL variables shared by both policies, in evaluation order.
pub fn variables() -> Vec<Variable> {
    let annotations = "namespaceObject.metadata.annotations";
    let mut vars = vec![
        var(
            "project",
            format!(
                "has(object.spec.projectId) && type(object.spec.projectId) == string ? object.spec.projectId : (has({annotations}) && '{PROJECT_ANNOTATION}' in {annotations} ? {annotations}['{PROJECT_ANNOTATION}'] : '')"
            ),
        ),
        var("selectorValid", selector::cel_valid()),
        var(
            "selected",
            format!("!variables.selectorValid || ({})", selector::cel_selected()),
        ),
    ];
    vars.extend(RULES.iter().map(|r| var(r.name, (r.cel)())));
    let each: Vec<String> = RULES
        .iter()
        .map(|r| {
            format!(
                "(variables.{n} == '' ? [] : ['{n}: ' + variables.{n}])",
                n = r.name
            )
        })
        .collect();
    vars.push(var(
        "violations",
        format!(
            "!variables.selectorValid ? ['namespaceSelector: {SELECTOR_INVALID}'] : {}",
            each.join(" + ")
        ),
    ));
    vars
}

/// The message of a denial or warning: the text of [`super::PolicyViolation::message`].
pub const MESSAGE_EXPRESSION: &str =
    "'RunSecurityPolicy ' + params.metadata.name + ': ' + variables.violations.join('; ')";

fn policy(name: &str, applies: &str) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta(name),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            param_kind: Some(ParamKind {
                api_version: Some("runwarden.dev/v1alpha1".into()),
                kind: Some("RunSecurityPolicy".into()),
            }),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec!["runwarden.dev".into()]),
                    api_versions: Some(vec!["*".into()]),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec!["cloudrunservices".into(), "cloudrunjobs".into()]),
                    scope: Some("Namespaced".into()),
                    ..Default::default()
                }]),
                match_policy: Some("Equivalent".into()),
                ..Default::default()
            }),
            match_conditions: Some(vec![MatchCondition {
                name: "create-or-spec-change".into(),
                expression: "request.operation == 'CREATE' || object.spec != oldObject.spec".into(),
            }]),
            variables: Some(variables()),
            validations: Some(vec![Validation {
                expression: format!(
                    "!({applies}) || !variables.selected || size(variables.violations) == 0"
                ),
                message_expression: Some(MESSAGE_EXPRESSION.into()),
                message: Some("a RunSecurityPolicy is violated".into()),
                reason: Some("Forbidden".into()),
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn binding(name: &str, actions: &[&str]) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(name),
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(name.to_owned()),
            param_ref: Some(ParamRef {
                selector: Some(LabelSelector::default()),
                parameter_not_found_action: Some("Allow".into()),
                ..Default::default()
            }),
            validation_actions: Some(actions.iter().map(|a| a.to_string()).collect()),
            ..Default::default()
        }),
    }
}

/// The two policies: [`ENFORCE`] judges `Enforce` (the default) RunSecurityPolicies, [`AUDIT`]
/// the `Audit` ones.
pub fn policies() -> Vec<ValidatingAdmissionPolicy> {
    vec![
        policy(
            ENFORCE,
            "!has(params.spec.enforcement) || params.spec.enforcement != 'Audit'",
        ),
        policy(
            AUDIT,
            "has(params.spec.enforcement) && params.spec.enforcement == 'Audit'",
        ),
    ]
}

/// Their bindings: [`ENFORCE`] denies, [`AUDIT`] warns and records an audit annotation.
pub fn bindings() -> Vec<ValidatingAdmissionPolicyBinding> {
    vec![
        binding(ENFORCE, &["Deny"]),
        binding(AUDIT, &["Warn", "Audit"]),
    ]
}

/// The policies then their bindings, as one multi-document YAML (`crds/admission.yaml`).
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for p in policies() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&p)?);
    }
    for b in bindings() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&b)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_a_variable_and_a_violation() {
        let vars = variables();
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        for rule in RULES {
            assert!(names.contains(&rule.name), "{}", rule.name);
        }
        let violations = &vars.last().unwrap().expression;
        for rule in RULES {
            assert!(
                violations.contains(&format!("['{}: ' + variables.{}]", rule.name, rule.name)),
                "{}",
                rule.name
            );
        }
        // Variables only refer to variables defined before them.
        for (i, v) in vars.iter().enumerate() {
            for later in &vars[i..] {
                assert!(
                    !v.expression.contains(&format!("variables.{} ", later.name))
                        && !v.expression.contains(&format!("variables.{})", later.name)),
                    "{} uses {} before it is defined",
                    v.name,
                    later.name
                );
            }
        }
    }

    #[test]
    fn enforce_denies_audit_warns_and_neither_fires_without_a_spec_change() {
        let yaml = to_yaml().unwrap();
        let docs: Vec<serde_json::Value> = yaml
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 4);
        for doc in &docs[..2] {
            assert_eq!(doc["kind"], "ValidatingAdmissionPolicy");
            assert_eq!(doc["apiVersion"], "admissionregistration.k8s.io/v1");
            assert_eq!(doc["spec"]["failurePolicy"], "Fail");
            assert_eq!(doc["spec"]["paramKind"]["kind"], "RunSecurityPolicy");
            let ops = &doc["spec"]["matchConstraints"]["resourceRules"][0]["operations"];
            assert_eq!(ops, &serde_json::json!(["CREATE", "UPDATE"]));
            assert!(
                doc["spec"]["matchConditions"][0]["expression"]
                    .as_str()
                    .unwrap()
                    .contains("object.spec != oldObject.spec")
            );
        }
        assert_eq!(docs[2]["spec"]["policyName"], ENFORCE);
        assert_eq!(
            docs[2]["spec"]["validationActions"],
            serde_json::json!(["Deny"])
        );
        assert_eq!(docs[3]["spec"]["policyName"], AUDIT);
        assert_eq!(
            docs[3]["spec"]["validationActions"],
            serde_json::json!(["Warn", "Audit"])
        );
        for b in &docs[2..] {
            assert_eq!(b["spec"]["paramRef"]["parameterNotFoundAction"], "Allow");
            assert_eq!(b["spec"]["paramRef"]["selector"], serde_json::json!({}));
        }
    }
}

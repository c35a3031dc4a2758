//! Kubernetes label selectors (`matchLabels`, `matchExpressions` with `In`, `NotIn`, `Exists`,
//! `DoesNotExist`) over a namespace's labels, with the API server's semantics: every term must hold,
//! and an absent or empty selector selects every namespace.
//!
//! The admission CEL in [`super::admission`] encodes the same judgement
//! ([`cel_valid`], [`cel_selected`]); the shared case table runs both.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`.
///
/// `Err` names what makes the selector invalid (as `kubectl` would refuse it): an unknown
/// operator, `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values, an empty key.
/// The whole selector is checked before matching, so an invalid selector is an error whatever the
/// labels are.
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let Some(selector) = selector else {
        return Ok(true);
    };
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    for (i, e) in expressions.iter().enumerate() {
        let values = e.values.as_deref().unwrap_or_default();
        if e.key.is_empty() {
            return Err(format!("matchExpressions[{i}]: key must not be empty"));
        }
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}] ({}): {} needs at least one value",
                    e.key, e.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}] ({}): {} takes no values",
                    e.key, e.operator
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "matchExpressions[{i}] ({}): unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)",
                    e.key
                ));
            }
        }
    }
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = expressions.iter().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            _ => value.is_none(), // DoesNotExist; others were refused above
        }
    });
    Ok(labels_match && expressions_match)
}

/// `params.spec.namespaceSelector` as it appears to CEL, guarded against absence and `null`.
const SEL: &str = "params.spec.namespaceSelector";

fn sel_present() -> String {
    format!("(has({SEL}) && type({SEL}) != null_type)")
}

/// CEL (bool) over `params`: the policy's selector is valid in the sense of [`matches`].
pub fn cel_valid() -> String {
    format!(
        "!{present} || !has({SEL}.matchExpressions) || {SEL}.matchExpressions.all(e, size(e.key) > 0 && (e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (e.operator in ['Exists', 'DoesNotExist'] && (!has(e.values) || size(e.values) == 0))))",
        present = sel_present()
    )
}

/// CEL (bool) over `params` and `namespaceObject`: the selector selects the request's namespace.
/// Only meaningful when [`cel_valid`] holds.
pub fn cel_selected() -> String {
    let labels = "namespaceObject.metadata.labels";
    let has = |key: &str| format!("(has({labels}) && {key} in {labels})");
    format!(
        "!{present} || ((!has({SEL}.matchLabels) || {SEL}.matchLabels.all(k, {has_k} && {labels}[k] == {SEL}.matchLabels[k])) && (!has({SEL}.matchExpressions) || {SEL}.matchExpressions.all(e, e.operator == 'In' ? ({has_e} && has(e.values) && {labels}[e.key] in e.values) : e.operator == 'NotIn' ? !({has_e} && has(e.values) && {labels}[e.key] in e.values) : e.operator == 'Exists' ? {has_e} : !{has_e})))",
        present = sel_present(),
        has_k = has("k"),
        has_e = has("e.key"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
            }]),
        }
    }

    #[test]
    fn absent_or_empty_selects_everything() {
        let l = labels(&[]);
        assert_eq!(matches(None, &l), Ok(true));
        assert_eq!(matches(Some(&LabelSelector::default()), &l), Ok(true));
        let empty = LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        };
        assert_eq!(matches(Some(&empty), &labels(&[("a", "b")])), Ok(true));
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("env", "prod"), ("team", "pay")])),
            match_expressions: None,
        };
        assert_eq!(
            matches(
                Some(&s),
                &labels(&[("env", "prod"), ("team", "pay"), ("x", "y")])
            ),
            Ok(true)
        );
        assert_eq!(matches(Some(&s), &labels(&[("env", "prod")])), Ok(false));
        assert_eq!(
            matches(Some(&s), &labels(&[("env", "prod"), ("team", "web")])),
            Ok(false)
        );
    }

    #[test]
    fn in_selects_listed_values_only() {
        let s = expr("env", "In", Some(&["prod", "staging"]));
        assert_eq!(matches(Some(&s), &labels(&[("env", "prod")])), Ok(true));
        assert_eq!(matches(Some(&s), &labels(&[("env", "dev")])), Ok(false));
        assert_eq!(matches(Some(&s), &labels(&[])), Ok(false), "missing key");
    }

    #[test]
    fn not_in_selects_other_values_and_missing_keys() {
        let s = expr("env", "NotIn", Some(&["dev"]));
        assert_eq!(matches(Some(&s), &labels(&[("env", "prod")])), Ok(true));
        assert_eq!(matches(Some(&s), &labels(&[("env", "dev")])), Ok(false));
        assert_eq!(matches(Some(&s), &labels(&[])), Ok(true), "missing key");
    }

    #[test]
    fn exists_and_does_not_exist_look_at_the_key_only() {
        let exists = expr("pci", "Exists", None);
        let absent = expr("pci", "DoesNotExist", Some(&[]));
        let with = labels(&[("pci", "")]);
        let without = labels(&[("other", "x")]);
        assert_eq!(matches(Some(&exists), &with), Ok(true));
        assert_eq!(matches(Some(&exists), &without), Ok(false));
        assert_eq!(matches(Some(&absent), &with), Ok(false));
        assert_eq!(matches(Some(&absent), &without), Ok(true));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let mut s = expr("tier", "Exists", None);
        s.match_labels = Some(labels(&[("env", "prod")]));
        assert_eq!(
            matches(Some(&s), &labels(&[("env", "prod"), ("tier", "1")])),
            Ok(true)
        );
        assert_eq!(matches(Some(&s), &labels(&[("env", "prod")])), Ok(false));
        assert_eq!(matches(Some(&s), &labels(&[("tier", "1")])), Ok(false));
    }

    #[test]
    fn invalid_selectors_are_errors_whatever_the_labels() {
        let l = labels(&[("env", "prod")]);
        for s in [
            expr("env", "In", None),
            expr("env", "In", Some(&[])),
            expr("env", "NotIn", None),
            expr("env", "Exists", Some(&["prod"])),
            expr("env", "DoesNotExist", Some(&["x"])),
            expr("env", "Equals", Some(&["prod"])),
            expr("", "Exists", None),
        ] {
            let err = matches(Some(&s), &l).expect_err("invalid selector");
            assert!(err.contains("matchExpressions[0]"), "{err}");
        }
        // Even when matchLabels alone would already fail.
        let mut s = expr("env", "Gt", Some(&["1"]));
        s.match_labels = Some(labels(&[("team", "nobody")]));
        assert!(
            matches(Some(&s), &l)
                .unwrap_err()
                .contains("unknown operator")
        );
    }
}

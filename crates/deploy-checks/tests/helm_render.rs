//! The chart rendered and linted by Helm itself (Helm's Go SDK through helm-python-sdk, see
//! `helm_sdk.py`): the CRDs come with the release and are kept on uninstall, the values schema
//! refuses the durations the binary refuses, and the alerts name the release's objects.
//! Without helm-python-sdk these tests skip loudly (and `.ci/run` lists them in its summary).

mod common;

use serde_yaml::Value;

const CHART: &str = "helm/runwarden";

fn chart() -> String {
    common::repo_path(CHART).display().to_string()
}

/// The chart rendered as release `name` in `namespace` with `values`; `None` after a skip.
fn render(
    check: &str,
    name: &str,
    namespace: &str,
    values: serde_json::Value,
) -> Option<Vec<Value>> {
    let Some((ok, stdout, stderr)) =
        common::helm(&["render", &chart(), name, namespace, &values.to_string()])
    else {
        common::skip("chart", check, common::NO_HELM);
        return None;
    };
    assert!(ok, "rendering the chart failed: {stderr}");
    Some(common::yaml_docs(&stdout))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

/// The path of the first difference between two documents, numbers compared by value.
fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then_some(path),
        (Value::Mapping(x), Value::Mapping(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path} (keys differ)"));
            }
            x.iter().find_map(|(k, v)| match y.get(k) {
                Some(w) => first_difference(v, w, format!("{path}.{}", k.as_str().unwrap_or("?"))),
                None => Some(format!("{path}.{k:?} (missing)")),
            })
        }
        (Value::Sequence(x), Value::Sequence(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path} (lengths differ)"));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]")))
        }
        _ => (a != b).then_some(path),
    }
}

#[test]
fn first_difference_sees_a_changed_field_but_not_a_float_written_as_an_integer() {
    let a: Value = serde_yaml::from_str("{x: {maximum: 1000.0, l: [a, b]}}").unwrap();
    let b: Value = serde_yaml::from_str("{x: {maximum: 1000, l: [a, b]}}").unwrap();
    let c: Value = serde_yaml::from_str("{x: {maximum: 1000, l: [a, c]}}").unwrap();
    assert_eq!(first_difference(&a, &b, "s".into()), None);
    assert_eq!(
        first_difference(&a, &c, "s".into()),
        Some("s.x.l[1]".into())
    );
}

#[test]
fn helm_lint_strict_passes() {
    let Some((ok, stdout, stderr)) = common::helm(&["lint", &chart()]) else {
        common::skip("chart", "helm lint --strict", common::NO_HELM);
        return;
    };
    assert!(ok, "helm lint --strict: {stdout}{stderr}");
}

/// `helm upgrade` updates templates, never `crds/`: the CRDs are templates, equal to the
/// committed `crds/runwarden.dev.yaml`, and carry `helm.sh/resource-policy: keep`.
#[test]
fn the_release_carries_the_committed_crds_and_keeps_them() {
    let Some(docs) = render(
        "chart CRDs",
        "runwarden",
        "runwarden-system",
        serde_json::json!({}),
    ) else {
        return;
    };
    let crds_dir = common::repo_path(&format!("{CHART}/crds"));
    assert!(
        std::fs::read_dir(&crds_dir).map_or(true, |mut d| d.next().is_none()),
        "{CHART}/crds/ is never upgraded by Helm: ship CRDs as templates"
    );
    let committed = common::yaml_docs(&common::read("crds/runwarden.dev.yaml"));
    let rendered = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(rendered.len(), 4, "the chart renders every CRD");
    for want in committed
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        let name = want["metadata"]["name"].as_str().unwrap();
        let got = rendered
            .iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not rendered"));
        // Helm reads the file as YAML and writes it back: the same document, though numbers
        // such as `maximum: 1000.0` may come back as `1000`.
        if let Some(path) = first_difference(&got["spec"], &want["spec"], "spec".into()) {
            panic!("{name}: the rendered CRD differs from crds/ at {path}");
        }
        assert_eq!(
            got["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
            Some("keep"),
            "{name}: helm uninstall would delete the CRD and every object of its kind"
        );
        assert_eq!(
            got["metadata"]["labels"]["app.kubernetes.io/managed-by"].as_str(),
            Some("Helm")
        );
    }
    // Everything else `runwarden crd` prints (e.g. admission policies) comes along too.
    let kinds = |d: &[&Value]| {
        let mut k: Vec<String> = d
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        k.sort();
        k
    };
    let from_file = common::yaml_docs(&common::read(&format!("{CHART}/files/crds.yaml")));
    let file_refs: Vec<&Value> = from_file.iter().collect();
    let all_rendered: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            file_refs
                .iter()
                .any(|f| f["kind"] == d["kind"] && f["metadata"]["name"] == d["metadata"]["name"])
        })
        .collect();
    assert_eq!(kinds(&all_rendered), kinds(&file_refs));

    // crds.install=false leaves them to whoever manages them; crds.keep=false drops the policy.
    let Some(none) = render(
        "chart CRDs",
        "runwarden",
        "runwarden-system",
        serde_json::json!({"crds": {"install": false}}),
    ) else {
        return;
    };
    assert!(of_kind(&none, "CustomResourceDefinition").is_empty());
    let Some(unkept) = render(
        "chart CRDs",
        "runwarden",
        "runwarden-system",
        serde_json::json!({"crds": {"keep": false}}),
    ) else {
        return;
    };
    for crd in of_kind(&unkept, "CustomResourceDefinition") {
        assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());
    }
}

/// The schema and the binary share one duration grammar (src/duration.rs): Helm refuses what
/// the binary would refuse, before a pod crash-loops on it.
#[test]
fn helm_validates_resync_with_the_binary_grammar() {
    let validate = |resync: &str| {
        common::helm(&[
            "validate",
            &chart(),
            &serde_json::json!({"controller": {"resync": resync}}).to_string(),
        ])
    };
    let Some(_) = validate("10m") else {
        common::skip("chart", "values.schema.json through Helm", common::NO_HELM);
        return;
    };
    for good in ["10m", "1m30s", "1h30m", "500ms", "90", ""] {
        let (ok, out, _) = validate(good).unwrap();
        assert!(ok, "Helm refuses resync {good:?}: {out}");
    }
    for bad in ["1m30", "10x", "1d", "-1s", "ten minutes"] {
        let (ok, _, _) = validate(bad).unwrap();
        assert!(!ok, "Helm accepts resync {bad:?}, which the binary refuses");
    }
}

/// The alerts name the release's namespace, Deployment and Lease, not deploy/'s defaults.
#[test]
fn alerts_name_the_release_objects() {
    let Some(docs) = render(
        "chart PrometheusRule",
        "ops",
        "platform",
        serde_json::json!({
            "metrics": {"prometheusRule": {"enabled": true}},
            "controller": {"leaderElection": {"leaseName": "ops-lease"}}
        }),
    ) else {
        return;
    };
    let rule = of_kind(&docs, "PrometheusRule");
    assert_eq!(rule.len(), 1);
    let text = serde_yaml::to_string(&rule[0]["spec"]).unwrap();
    for default in [
        "runwarden-system",
        "deploy/runwarden ",
        "runwarden-controller",
    ] {
        assert!(
            !text.contains(default),
            "the rendered alerts still say {default:?}:\n{text}"
        );
    }
    for mine in [
        "platform",
        "deploy/ops-runwarden",
        "ops-lease",
        "runbook_url",
    ] {
        assert!(
            text.contains(mine),
            "the rendered alerts lack {mine:?}:\n{text}"
        );
    }
}

//! The Helm chart: every value is described in values.schema.json, templates only read values
//! that exist, and the defaults are the production ones the issue asks for.

mod common;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const CHART: &str = "helm/runwarden";

fn values() -> Yaml {
    common::yaml(&format!("{CHART}/values.yaml"))
}

fn schema() -> Json {
    serde_json::from_str(&common::read(&format!("{CHART}/values.schema.json")))
        .expect("values.schema.json is JSON")
}

fn types_of(schema: &Json) -> Vec<&str> {
    match &schema["type"] {
        Json::String(s) => vec![s.as_str()],
        Json::Array(a) => a.iter().filter_map(|t| t.as_str()).collect(),
        _ => vec![],
    }
}

fn yaml_type(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "boolean",
        Yaml::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Yaml::Number(_) => "number",
        Yaml::String(_) => "string",
        Yaml::Sequence(_) => "array",
        Yaml::Mapping(_) => "object",
        Yaml::Tagged(_) => "tagged",
    }
}

/// Walks values.yaml alongside the schema; returns the problems found.
fn check(path: &str, value: &Yaml, schema: &Json, problems: &mut Vec<String>) {
    let types = types_of(schema);
    let vt = yaml_type(value);
    if !(types.contains(&vt) || (vt == "integer" && types.contains(&"number"))) {
        problems.push(format!("{path}: value is {vt}, schema says {types:?}"));
    }
    if schema["description"]
        .as_str()
        .is_none_or(|d| d.trim().is_empty())
    {
        problems.push(format!("{path}: no description in the schema"));
    }
    if let (Yaml::Mapping(m), Some(props)) = (value, schema["properties"].as_object()) {
        for (k, v) in m {
            let k = k.as_str().expect("string keys");
            let p = if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            };
            match props.get(k) {
                Some(s) => check(&p, v, s, problems),
                None if schema["additionalProperties"] == Json::Bool(false) => {
                    problems.push(format!("{p}: not described in values.schema.json"))
                }
                None => {}
            }
        }
        // Described objects that forbid other keys should also show all their keys in values.yaml.
        if schema["additionalProperties"] == Json::Bool(false) {
            for k in props.keys() {
                if !m.contains_key(k.as_str()) {
                    problems.push(format!(
                        "{path}.{k}: described in the schema but missing from values.yaml"
                    ));
                }
            }
        }
    }
}

#[test]
fn every_value_is_described_in_the_schema() {
    let schema = schema();
    assert_eq!(
        schema["additionalProperties"],
        Json::Bool(false),
        "top level must set additionalProperties: false"
    );
    let mut problems = Vec::new();
    // The top level has no description of its own; check its properties.
    let Yaml::Mapping(top) = values() else {
        panic!("values.yaml is a mapping")
    };
    let props = schema["properties"].as_object().unwrap();
    for (k, v) in &top {
        let k = k.as_str().unwrap();
        match props.get(k) {
            Some(s) => check(k, v, s, &mut problems),
            None => problems.push(format!("{k}: not described in values.schema.json")),
        }
    }
    for k in props.keys() {
        if !top.contains_key(k.as_str()) {
            problems.push(format!(
                "{k}: described in the schema but missing from values.yaml"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "values.yaml vs values.schema.json:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn schema_check_notices_an_undescribed_value() {
    let schema = schema();
    let mut v = values();
    v["controller"]
        .as_mapping_mut()
        .unwrap()
        .insert("leaderElect".into(), Yaml::Bool(true));
    let mut problems = Vec::new();
    check(
        "controller",
        &v["controller"],
        &schema["properties"]["controller"],
        &mut problems,
    );
    assert_eq!(
        problems,
        vec!["controller.leaderElect: not described in values.schema.json"]
    );
}

/// `.Values.a.b.c` references in the templates, as key paths.
fn value_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(".Values.") {
        let after = &rest[pos + ".Values.".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        out.push(after[..end].trim_end_matches('.').to_string());
        rest = &after[end..];
    }
    out
}

#[test]
fn templates_only_read_values_that_exist() {
    let values = values();
    let dir = common::repo_path(&format!("{CHART}/templates"));
    let mut refs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for r in value_refs(&text) {
            refs += 1;
            let found = r.split('.').try_fold(&values, |v, k| v.get(k));
            assert!(
                found.is_some(),
                "{} reads .Values.{r}, which values.yaml lacks",
                path.display()
            );
        }
    }
    assert!(
        refs > 40,
        "only {refs} value references found: is the scanner broken?"
    );
}

#[test]
fn every_controller_flag_is_settable_from_values() {
    let deployment = common::read(&format!("{CHART}/templates/deployment.yaml"));
    for env in [
        "RUNWARDEN_GCP_ENDPOINT",
        "RUNWARDEN_DEFAULT_PROJECT",
        "RUNWARDEN_METRICS_ADDR",
        "RUNWARDEN_RESYNC",
        "RUNWARDEN_CONCURRENCY",
        "RUNWARDEN_LEADER_ELECTION",
        "RUNWARDEN_LEASE_NAME",
        "RUNWARDEN_LEASE_NAMESPACE",
        "RUNWARDEN_WATCH_NAMESPACE",
        "RUNWARDEN_WATCH_SELECTOR",
        "RUNWARDEN_REQUIRE_NAMESPACE_IDENTITY",
        "RUNWARDEN_QUOTA_RUN_READS_PER_MINUTE",
        "RUNWARDEN_QUOTA_RUN_WRITES_PER_MINUTE",
        "RUNWARDEN_GCP_CALL_TIMEOUT",
        "RUNWARDEN_LOG_FORMAT",
        "RUNWARDEN_LOG_LEVEL",
    ] {
        assert!(
            deployment.contains(&format!("- name: {env}\n")),
            "deployment.yaml does not set {env}"
        );
    }
    for downward in [
        "- name: POD_NAME",
        "- name: POD_NAMESPACE",
        "fieldPath: metadata.name",
        "fieldPath: metadata.namespace",
    ] {
        assert!(
            deployment.contains(downward),
            "deployment.yaml lacks `{downward}`"
        );
    }
}

#[test]
fn defaults_are_production_defaults() {
    let v = values();
    assert_eq!(v["replicaCount"].as_u64(), Some(2));
    assert_eq!(
        v["controller"]["leaderElection"]["enabled"],
        Yaml::Bool(true)
    );
    assert_eq!(
        v["controller"]["leaderElection"]["leaseName"].as_str(),
        Some("runwarden-controller")
    );
    assert_eq!(
        v["controller"]["gcpEndpoint"].as_str(),
        Some(""),
        "default is real Google via Workload Identity"
    );
    assert!(v["terminationGracePeriodSeconds"].as_u64().unwrap() >= 30);
    assert_eq!(
        v["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        v["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let sc = &v["securityContext"];
    assert_eq!(sc["runAsNonRoot"], Yaml::Bool(true));
    assert_eq!(sc["runAsUser"].as_u64(), Some(65532));
    assert_eq!(sc["readOnlyRootFilesystem"], Yaml::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Yaml::Bool(false));
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_yaml::from_str::<Yaml>("[ALL]").unwrap()
    );
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    assert_eq!(v["podSecurityContext"]["runAsNonRoot"], Yaml::Bool(true));
    assert_eq!(v["podDisruptionBudget"]["minAvailable"].as_u64(), Some(1));
    assert_eq!(v["networkPolicy"]["enabled"], Yaml::Bool(true));
    assert_eq!(v["metrics"]["serviceMonitor"]["enabled"], Yaml::Bool(false));
    assert_eq!(v["metrics"]["prometheusRule"]["enabled"], Yaml::Bool(false));
    assert!(
        v["topologySpreadConstraints"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|c| c["topologyKey"].as_str() == Some("kubernetes.io/hostname")),
        "replicas must spread across nodes"
    );
    let sa = common::read(&format!("{CHART}/templates/serviceaccount.yaml"));
    assert!(sa.contains("iam.gke.io/gcp-service-account: {{ . | quote }}"));
}

#[test]
fn chart_app_version_matches_the_crate_and_the_plain_manifests() {
    let chart = common::yaml(&format!("{CHART}/Chart.yaml"));
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    let app_version = chart["appVersion"].as_str().expect("appVersion");
    let cargo = common::read("Cargo.toml");
    let pkg = cargo
        .split("[package]")
        .nth(1)
        .expect("[package] in Cargo.toml");
    let version = pkg
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"'))
        .expect("package version");
    assert_eq!(
        app_version, version,
        "Chart appVersion vs runwarden crate version"
    );
    let kust = common::yaml("deploy/base/kustomization.yaml");
    assert_eq!(
        kust["images"][0]["newTag"].as_str(),
        Some(version),
        "deploy/base image tag"
    );
    let dockerfile = common::read("Dockerfile");
    for needle in [
        "FROM rust:1.95-bookworm AS builder",
        "cargo build --release --locked -p runwarden --no-default-features",
        "FROM gcr.io/distroless/cc-debian12:nonroot",
        "USER 65532",
        r#"ENTRYPOINT ["/runwarden"]"#,
        r#"CMD ["controller"]"#,
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks `{needle}`");
    }
}

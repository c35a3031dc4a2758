use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use super::*;
use crate::api::v1alpha1::{DeletionPolicy, Ingress};

const SERVICE: &str = "apiVersion: runwarden.dev/v1alpha1
kind: CloudRunService
metadata: {name: api}
spec:
  region: europe-west1
  containers: [{image: europe-docker.pkg.dev/p/r/i:v1}]
";

fn load_str(text: &str) -> Result<Manifests, Vec<Problem>> {
    load_reader("t.yaml", text.as_bytes(), "default")
}

/// The problems of `text`, displayed; panics if it loads.
fn problems(text: &str) -> Vec<String> {
    match load_str(text) {
        Ok(m) => panic!("expected problems, loaded {m:?}"),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

/// The problems of SERVICE with `extra` appended under `spec:` (indented by the caller).
fn spec_problems(extra: &str) -> Vec<String> {
    problems(&format!("{SERVICE}{extra}"))
}

fn ok(text: &str) -> Manifests {
    match load_str(text) {
        Ok(m) => m,
        Err(p) => panic!(
            "expected no problems, got:\n{}",
            p.iter().map(|p| format!("  {p}\n")).collect::<String>()
        ),
    }
}

fn contains(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[track_caller]
fn assert_problem(problems: &[String], needle: &str) {
    assert!(
        contains(problems, needle),
        "no problem contains {needle:?}; got {problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// What a loaded object looks like

#[test]
fn minimal_service_gets_namespace_uid_generation_and_defaults() {
    let m = ok(SERVICE);
    assert_eq!(m.services.len(), 1);
    let s = &m.services[0];
    assert_eq!(s.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(s.metadata.uid.as_deref(), Some("plan-default-api"));
    assert_eq!(s.metadata.generation, Some(1));
    assert_eq!(s.spec.ingress, Ingress::Internal);
    assert_eq!(s.spec.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(s.spec.containers[0].image, "europe-docker.pkg.dev/p/r/i:v1");
}

#[test]
fn given_namespace_uid_and_generation_are_kept() {
    let text = SERVICE.replace(
        "metadata: {name: api}",
        "metadata: {name: api, namespace: shop, uid: 1234-abcd, generation: 7}",
    );
    let s = &ok(&text).services[0];
    assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(s.metadata.uid.as_deref(), Some("1234-abcd"));
    assert_eq!(s.metadata.generation, Some(7));
}

#[test]
fn default_namespace_is_the_callers() {
    let m = load_reader("t.yaml", SERVICE.as_bytes(), "team-a").unwrap();
    assert_eq!(m.services[0].metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(
        m.services[0].metadata.uid.as_deref(),
        Some("plan-team-a-api")
    );
}

#[test]
fn cluster_scoped_policy_has_no_namespace() {
    let m = ok("apiVersion: runwarden.dev/v1alpha1
kind: RunSecurityPolicy
metadata: {name: baseline, namespace: ignored}
spec:
  enforcement: Enforce
  namespaceSelector: {matchLabels: {env: production}}
  requireCmek: true
  allowedRegions: [europe-west1]
  allowedIngress: [Internal, InternalAndCloudLoadBalancing]
");
    let p = &m.policies[0];
    assert_eq!(p.metadata.namespace, None);
    assert_eq!(p.metadata.uid.as_deref(), Some("plan-baseline"));
    assert!(p.spec.require_cmek);
    assert_eq!(p.spec.allowed_ingress.len(), 2);
}

#[test]
fn status_is_ignored_whatever_it_holds() {
    let m = ok(&format!("{SERVICE}status: {{conditions: 3, bogus: [x]}}\n"));
    assert_eq!(m.services[0].status, None);
}

#[test]
fn plan_uid_is_readable_when_it_can_be_a_label_value_else_a_stable_hash() {
    assert_eq!(plan_uid(Some("payments"), "api"), "plan-payments-api");
    assert_eq!(plan_uid(None, "baseline"), "plan-baseline");
    let dotted = plan_uid(Some("payments"), "api.v2");
    let long = plan_uid(Some("payments"), &"a".repeat(60));
    for uid in [&dotted, &long] {
        assert!(uid.starts_with("plan-") && uid.len() == 21, "{uid}");
        assert!(
            uid.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }
    assert_ne!(dotted, long);
    assert_eq!(dotted, plan_uid(Some("payments"), "api.v2"));
    // FNV-1a of "payments/api.v2": a change of algorithm would change every owner label.
    assert_eq!(dotted, "plan-8a20cc16ff4e0fd1");
}

// ---------------------------------------------------------------------------------------------
// Problem and Note formatting

#[test]
fn problem_display_names_file_document_and_path() {
    let p = Problem::new(
        "examples/x.yaml",
        2,
        "spec.containers[0].image",
        "must not be empty",
    );
    assert_eq!(
        p.to_string(),
        "examples/x.yaml#2: spec.containers[0].image: must not be empty"
    );
    let whole_file = Problem::new("x.yaml", 0, "", "not UTF-8 text");
    assert_eq!(whole_file.to_string(), "x.yaml: not UTF-8 text");
    let whole_doc = Problem::new("x.yaml", 3, "", "invalid YAML");
    assert_eq!(whole_doc.to_string(), "x.yaml#3: invalid YAML");
}

#[test]
fn an_empty_image_is_reported_with_file_document_and_path() {
    let text = format!("kind: ConfigMap\napiVersion: v1\n---\n{SERVICE}")
        .replace("{image: europe-docker.pkg.dev/p/r/i:v1}", "{image: ''}");
    let p = load_reader("examples/x.yaml", text.as_bytes(), "default").unwrap_err();
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["examples/x.yaml#2: spec.containers[0].image: must not be empty"]
    );
    assert_eq!(p[0].document, 2);
    assert_eq!(p[0].path, "spec.containers[0].image");
}

// ---------------------------------------------------------------------------------------------
// Schema rules, one each

#[test]
fn type_mismatch() {
    let p = spec_problems("  timeoutSeconds: \"30\"\n");
    assert_eq!(
        p,
        ["t.yaml#1: spec.timeoutSeconds: must be an integer, got string \"30\""]
    );
    let p = spec_problems("  access: {allowUnauthenticated: \"no\"}\n");
    assert_problem(&p, "spec.access.allowUnauthenticated: must be a boolean");
    let p = spec_problems("  labels: [a, b]\n");
    assert_problem(
        &p,
        "spec.labels: must be an object, got a list of 2 item(s)",
    );
    let p = problems(&SERVICE.replace(
        "containers: [{image: europe-docker.pkg.dev/p/r/i:v1}]",
        "containers: {image: x}",
    ));
    assert_problem(&p, "spec.containers: must be a list, got an object");
}

#[test]
fn enum_with_a_suggestion() {
    let p = spec_problems("  ingress: internal\n");
    assert_problem(&p, "spec.ingress: unsupported value string \"internal\"");
    assert_problem(&p, "did you mean \"Internal\"?");
    let p = spec_problems("  executionEnvironment: Gen3\n");
    assert_problem(&p, "must be one of \"Gen2\", \"Gen1\"");
}

#[test]
fn required_fields() {
    let p = problems(
        "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {name: api}\n",
    );
    assert_eq!(p, ["t.yaml#1: spec: required field is missing"]);
    let p = problems(&SERVICE.replace(
        "  containers: [{image: europe-docker.pkg.dev/p/r/i:v1}]\n",
        "",
    ));
    assert_eq!(p, ["t.yaml#1: spec.containers: required field is missing"]);
    let p = problems(&SERVICE.replace("{image: europe-docker.pkg.dev/p/r/i:v1}", "{name: web}"));
    assert_eq!(
        p,
        ["t.yaml#1: spec.containers[0].image: required field is missing"]
    );
}

#[test]
fn min_and_max_length() {
    let p = spec_problems(&format!(
        "  serviceAccount: {}@example.com\n",
        "a".repeat(250)
    ));
    assert_problem(
        &p,
        "spec.serviceAccount: must be at most 254 characters long, is 262",
    );
    let p = spec_problems("  projectId: abc\n");
    assert_problem(
        &p,
        "spec.projectId: must be at least 6 characters long, is 3",
    );
}

#[test]
fn min_and_max_items() {
    let p = problems(&SERVICE.replace("[{image: europe-docker.pkg.dev/p/r/i:v1}]", "[]"));
    assert_eq!(
        p,
        ["t.yaml#1: spec.containers: must have at least 1 item(s), has 0"]
    );
    let p = problems(&SERVICE.replace(
        "{image: europe-docker.pkg.dev/p/r/i:v1}",
        "{image: i, ports: [{containerPort: 8080}, {containerPort: 9090}]}",
    ));
    assert_eq!(
        p,
        ["t.yaml#1: spec.containers[0].ports: must have at most 1 items, has 2"]
    );
}

#[test]
fn minimum_and_maximum() {
    let p = spec_problems("  timeoutSeconds: 0\n  maxRequestsPerInstance: 1001\n");
    assert_problem(&p, "spec.timeoutSeconds: must be at least 1, got 0");
    assert_problem(
        &p,
        "spec.maxRequestsPerInstance: must be at most 1000, got 1001",
    );
    let p = spec_problems("  timeoutSeconds: 99999999999\n");
    assert_problem(
        &p,
        "spec.timeoutSeconds: 99999999999 does not fit in a 32-bit integer",
    );
}

#[test]
fn max_properties() {
    let labels: String = (0..61).map(|i| format!("    k{i}: v\n")).collect();
    let p = spec_problems(&format!("  labels:\n{labels}"));
    assert_eq!(
        p,
        ["t.yaml#1: spec.labels: must have at most 60 entries, has 61"]
    );
}

#[test]
fn pattern() {
    let p = problems(&SERVICE.replace("region: europe-west1", "region: Europe-West1"));
    assert_eq!(
        p,
        ["t.yaml#1: spec.region: \"Europe-West1\" does not match ^[a-z]+(-[a-z]+)+[0-9]+$"]
    );
    let p = spec_problems("  access: {invokers: [\"alice@example.com\"]}\n");
    assert_problem(
        &p,
        "spec.access.invokers[0]: \"alice@example.com\" does not match",
    );
}

#[test]
fn additional_properties_schema_checks_map_values() {
    let p = spec_problems("  labels: {team: 3}\n");
    assert_eq!(
        p,
        ["t.yaml#1: spec.labels[team]: must be a string, got number 3"]
    );
    let p = problems(&format!(
        "apiVersion: runwarden.dev/v1alpha1\nkind: RunSecurityPolicy\nmetadata: {{name: p}}\nspec:\n  namespaceSelector: {{matchLabels: {{env: {}}}}}\n",
        "x".repeat(64)
    ));
    assert_problem(
        &p,
        "spec.namespaceSelector.matchLabels[env]: must be at most 63 characters long, is 64",
    );
}

#[test]
fn unknown_fields_are_reported_with_their_path() {
    let p = problems(&SERVICE.replace(
        "{image: europe-docker.pkg.dev/p/r/i:v1}",
        "{image: i, imagee: j}",
    ));
    assert_eq!(
        p,
        [
            "t.yaml#1: spec.containers[0].imagee: unknown field (the API server would refuse or drop it); did you mean \"image\"?"
        ]
    );
    let p = spec_problems("  service_account: sa@p.iam.gserviceaccount.com\n");
    assert_problem(&p, "spec.service_account: unknown field");
    assert_problem(&p, "did you mean \"serviceAccount\"?");
    let p = spec_problems("  trafficSplit: [{percent: 100}]\n");
    assert_eq!(
        p,
        ["t.yaml#1: spec.trafficSplit: unknown field (the API server would refuse or drop it)"]
    );
    let p = problems(&format!("{SERVICE}specs: {{}}\n"));
    assert_problem(&p, "t.yaml#1: specs: unknown field");
    let p = spec_problems("  egress: {directVpc: {network: n, vpc: v}}\n");
    assert_problem(&p, "spec.egress.directVpc.vpc: unknown field");
}

#[test]
fn null_in_a_non_nullable_field_counts_as_absent() {
    // Nullable: fine. Non-nullable with a default: the default applies.
    let m = ok(&format!(
        "{SERVICE}  scaling: null\n  deletionPolicy: null\n  access: ~\n"
    ));
    assert_eq!(m.services[0].spec.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(m.services[0].spec.scaling, None);
    // Required and null: missing.
    let p = problems(&SERVICE.replace("[{image: europe-docker.pkg.dev/p/r/i:v1}]", "null"));
    assert_eq!(p, ["t.yaml#1: spec.containers: required field is missing"]);
}

#[test]
fn whole_floats_are_integers_and_fractions_are_not() {
    let m = ok(&format!("{SERVICE}  timeoutSeconds: 30.0\n"));
    assert_eq!(m.services[0].spec.timeout_seconds, Some(30));
    let p = spec_problems("  timeoutSeconds: 30.5\n");
    assert_eq!(
        p,
        ["t.yaml#1: spec.timeoutSeconds: must be a whole number, got 30.5"]
    );
}

#[test]
fn cel_rules_are_not_evaluated_here() {
    // Both useDefault and policy: the CRD's CEL rule (and the controller's validate) refuse it;
    // the structural schema does not, so the loader accepts it and leaves it to the controller.
    let m = ok(&format!(
        "{SERVICE}  binaryAuthorization: {{useDefault: true, policy: projects/p/platforms/cloudRun/policies/x}}\n"
    ));
    assert_eq!(m.services.len(), 1);
}

#[test]
fn all_problems_of_a_document_are_reported_in_order() {
    let p = spec_problems("  ingress: Everywhere\n  timeoutSeconds: 0\n  unknown: 1\n");
    assert_eq!(p.len(), 3, "{p:#?}");
}

#[test]
fn problems_per_document_are_capped() {
    let fields: String = (0..80).map(|i| format!("  bogus{i}: 1\n")).collect();
    let p = spec_problems(&fields);
    assert_eq!(p.len(), MAX_PROBLEMS_PER_DOCUMENT + 1);
    assert_problem(&p, "30 more problems in this document not shown");
}

// ---------------------------------------------------------------------------------------------
// apiVersion, kind, metadata

#[test]
fn wrong_api_version_of_a_runwarden_kind_is_a_problem() {
    let p = problems(&SERVICE.replace("runwarden.dev/v1alpha1", "runwarden.dev/v1"));
    assert_eq!(
        p,
        [
            "t.yaml#1: apiVersion: \"runwarden.dev/v1\" is not served for CloudRunService; use runwarden.dev/v1alpha1"
        ]
    );
    let p = problems(&SERVICE.replace("runwarden.dev/v1alpha1", "run.googleapis.com/v1"));
    assert_problem(&p, "is not served for CloudRunService");
}

#[test]
fn unknown_kind_of_our_group_is_a_problem() {
    let p = problems(&SERVICE.replace("kind: CloudRunService", "kind: CloudRunSevice"));
    assert_eq!(
        p,
        [
            "t.yaml#1: kind: \"CloudRunSevice\" is not a kind of runwarden.dev; it serves CloudRunService, CloudRunJob, VpcAccessConnector, RunSecurityPolicy"
        ]
    );
}

#[test]
fn api_version_and_kind_are_required_strings() {
    let p = problems("metadata: {name: x}\n");
    assert_eq!(
        p,
        [
            "t.yaml#1: apiVersion: required field is missing",
            "t.yaml#1: kind: required field is missing"
        ]
    );
    let p = problems("apiVersion: 5\nkind: [a]\n");
    assert_problem(&p, "apiVersion: must be a string, got number 5");
    assert_problem(&p, "kind: must be a string, got a list of 1 item(s)");
}

#[test]
fn metadata_name_and_namespace_are_checked() {
    let p = problems(&SERVICE.replace("metadata: {name: api}", "metadata: {}"));
    assert_eq!(p, ["t.yaml#1: metadata.name: required field is missing"]);
    let p = problems(&SERVICE.replace("metadata: {name: api}", "metadata: {name: My_Api}"));
    assert_problem(
        &p,
        "metadata.name: \"My_Api\" must be a lowercase RFC 1123 subdomain",
    );
    let p = problems(&SERVICE.replace(
        "metadata: {name: api}",
        "metadata: {name: api, namespace: Team.A}",
    ));
    assert_problem(&p, "metadata.namespace: must be a lowercase RFC 1123 label");
    let p = problems(&SERVICE.replace(
        "metadata: {name: api}",
        "metadata: {name: api, labels: {replicas: 3}}",
    ));
    assert_problem(
        &p,
        "metadata.labels[replicas]: must be a string, got number 3 (quote it: \"3\")",
    );
    let p = problems(&SERVICE.replace("metadata: {name: api}", "metadata: api"));
    assert_problem(&p, "metadata: must be an object, got string \"api\"");
}

#[test]
fn duplicate_objects_are_a_problem_naming_the_first() {
    let p = problems(&format!("{SERVICE}---\n{SERVICE}"));
    assert_eq!(
        p,
        ["t.yaml#2: metadata.name: CloudRunService default/api is also defined in t.yaml#1"]
    );
    // Same name, other kind or other namespace: fine.
    let other_ns = SERVICE.replace("{name: api}", "{name: api, namespace: other}");
    let m = ok(&format!("{SERVICE}---\n{other_ns}"));
    assert_eq!(m.services.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Documents, Lists, Namespaces, skipped kinds

#[test]
fn unknown_kinds_are_skipped_with_a_note() {
    let m = ok(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{SERVICE}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n"
    ));
    assert_eq!(m.services.len(), 1);
    let notes: Vec<(usize, &str, &str)> = m
        .skipped
        .iter()
        .map(|n| (n.document, n.api_version.as_str(), n.kind.as_str()))
        .collect();
    assert_eq!(
        notes,
        [(1, "v1", "ConfigMap"), (3, "apps/v1", "Deployment")]
    );
    assert!(
        m.skipped[1]
            .to_string()
            .starts_with("t.yaml#3: skipped apps/v1 Deployment"),
        "{}",
        m.skipped[1]
    );
}

#[test]
fn empty_documents_are_skipped_but_counted() {
    let text = format!("---\n# only a comment\n---\n{SERVICE}---\n---\n");
    let m = ok(&text);
    assert_eq!(m.services.len(), 1);
    // A leading `---` opens the first document; each further one opens the next.
    let bad = format!("---\n---\n---\n{}", SERVICE.replace("europe-west1", "EU"));
    let p = load_str(&bad).unwrap_err();
    assert_eq!(p[0].document, 3, "{p:?}");
    assert!(ok("").services.is_empty());
    assert!(ok("# nothing\n").services.is_empty());
}

#[test]
fn list_items_are_read_with_their_path() {
    let text = "apiVersion: v1
kind: List
items:
- apiVersion: runwarden.dev/v1alpha1
  kind: CloudRunService
  metadata: {name: a}
  spec: {region: europe-west1, containers: [{image: i}]}
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, labels: {env: dev}}
- apiVersion: v1
  kind: Secret
  metadata: {name: s}
";
    let m = ok(text);
    assert_eq!(m.services.len(), 1);
    assert_eq!(m.namespaces["shop"].labels["env"], "dev");
    assert_eq!(m.skipped.len(), 1);
    assert_eq!(m.skipped[0].path, "items[2]");
    assert!(
        m.skipped[0]
            .to_string()
            .starts_with("t.yaml#1: items[2]: skipped v1 Secret")
    );

    let bad = text.replace(
        "containers: [{image: i}]",
        "containers: [{image: i, cpu: 1}]",
    );
    assert_eq!(
        problems(&bad),
        [
            "t.yaml#1: items[0].spec.containers[0].cpu: unknown field (the API server would refuse or drop it)"
        ]
    );
    let p = problems("apiVersion: v1\nkind: List\nitems: {a: 1}\n");
    assert_eq!(p, ["t.yaml#1: items: must be a list, got an object"]);
    let p =
        problems("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: List, items: []}]\n");
    assert_problem(&p, "items[0]: a List inside a List is not supported");
}

#[test]
fn typed_lists_as_kubectl_get_writes_them() {
    let text = "apiVersion: runwarden.dev/v1alpha1
kind: CloudRunServiceList
metadata: {resourceVersion: \"1\"}
items:
- apiVersion: runwarden.dev/v1alpha1
  kind: CloudRunService
  metadata: {name: a, namespace: x, uid: 0b1c, creationTimestamp: \"2024-01-01T00:00:00Z\", managedFields: []}
  spec: {region: europe-west1, containers: [{image: i}]}
  status: {conditions: []}
";
    let m = ok(text);
    assert_eq!(m.services[0].metadata.uid.as_deref(), Some("0b1c"));
}

#[test]
fn namespaces_contribute_labels_and_annotations() {
    let m = ok("apiVersion: v1
kind: Namespace
metadata:
  name: payments
  labels: {env: production}
  annotations: {runwarden.dev/project-id: acme-payments-prod}
---
apiVersion: v1
kind: Namespace
metadata: {name: bare}
");
    assert_eq!(m.namespaces.len(), 2);
    assert_eq!(m.namespaces["payments"].labels["env"], "production");
    assert_eq!(
        m.namespaces["payments"].annotations["runwarden.dev/project-id"],
        "acme-payments-prod"
    );
    assert_eq!(m.namespaces["bare"], NamespaceMeta::default());
}

#[test]
fn namespaces_defined_twice_must_agree() {
    let a = "apiVersion: v1\nkind: Namespace\nmetadata: {name: p, labels: {env: prod}}\n";
    assert_eq!(ok(&format!("{a}---\n{a}")).namespaces.len(), 1);
    let b = a.replace("prod", "dev");
    let p = problems(&format!("{a}---\n{b}"));
    assert_eq!(
        p,
        [
            "t.yaml#2: metadata.name: Namespace p is also defined in t.yaml#1, with different labels or annotations"
        ]
    );
    let p =
        problems("apiVersion: v1\nkind: Namespace\nmetadata: {name: p.q, labels: {env: true}}\n");
    assert_problem(
        &p,
        "metadata.name: \"p.q\" must be a lowercase RFC 1123 label",
    );
    assert_problem(
        &p,
        "metadata.labels[env]: must be a string, got boolean true",
    );
}

#[test]
fn non_mapping_documents_are_a_problem() {
    assert_eq!(
        problems("- a\n- b\n"),
        [
            "t.yaml#1: expected a Kubernetes object (a mapping with apiVersion and kind), got a list of 2 item(s)"
        ]
    );
    assert_problem(&problems("just a string\n"), "got string \"just a string\"");
}

#[test]
fn malformed_yaml_reports_line_and_column() {
    let text = format!("{SERVICE}---\nkind: Namespace\nmetadata:\n  name: x\n labels: {{\n");
    let p = load_str(&text).unwrap_err();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].document, 2);
    assert!(p[0].message.starts_with("invalid YAML: "), "{}", p[0]);
    assert!(p[0].message.contains("line 11 column 2"), "{}", p[0]);
}

#[test]
fn duplicate_yaml_keys_are_a_problem() {
    let p = problems(&format!("{SERVICE}  region: europe-west4\n"));
    assert_problem(&p, "duplicate");
}

#[test]
fn yaml_anchors_and_merge_keys_work() {
    let m = ok("apiVersion: runwarden.dev/v1alpha1
kind: CloudRunService
metadata: {name: api}
spec:
  region: europe-west1
  containers:
  - &c {image: i, env: [{name: A, value: a}]}
  - <<: *c
    name: sidecar
    image: j
");
    let c = &m.services[0].spec.containers;
    assert_eq!(c[1].image, "j");
    assert_eq!(c[1].env[0].name, "A");
}

#[test]
fn json_streams_are_read() {
    let one = r#"{"apiVersion":"runwarden.dev/v1alpha1","kind":"CloudRunService","metadata":{"name":"a"},"spec":{"region":"europe-west1","containers":[{"image":"i"}]}}"#;
    let text = format!("{one}\n{}", one.replace("\"a\"", "\"b\""));
    let m = load_reader("in.json", text.as_bytes(), "default").unwrap();
    assert_eq!(m.services.len(), 2);
    let p = load_reader("in.json", b"{\"kind\": }".as_slice(), "default").unwrap_err();
    assert!(
        p[0].to_string().starts_with("in.json#1: invalid JSON: "),
        "{}",
        p[0]
    );
    assert!(p[0].message.contains("line 1 column"), "{}", p[0]);
}

// ---------------------------------------------------------------------------------------------
// Files and directories

#[test]
fn directories_are_read_recursively_in_name_order_skipping_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let svc = |name: &str| SERVICE.replace("{name: api}", &format!("{{name: {name}}}"));
    std::fs::create_dir_all(root.join("b-sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join("c.yml"), svc("c")).unwrap();
    std::fs::write(root.join("a.yaml"), svc("a")).unwrap();
    std::fs::write(root.join("b-sub/deeper/b.json"), r#"{"apiVersion":"runwarden.dev/v1alpha1","kind":"CloudRunService","metadata":{"name":"b"},"spec":{"region":"europe-west1","containers":[{"image":"i"}]}}"#).unwrap();
    std::fs::write(root.join(".hidden.yaml"), "garbage: [").unwrap();
    std::fs::write(root.join(".git/config.yaml"), "garbage: [").unwrap();
    std::fs::write(root.join("README.md"), "# not a manifest: [").unwrap();
    std::fs::write(root.join("Chart.lock"), "garbage: [").unwrap();

    let m = load(&[root.to_path_buf()], "default").unwrap();
    let names: Vec<_> = m
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);

    // A problem names the file as found under the directory given.
    std::fs::write(
        root.join("b-sub/bad.yaml"),
        svc("x").replace("europe-west1", "EU"),
    )
    .unwrap();
    let p = load(&[root.to_path_buf()], "default").unwrap_err();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].file, root.join("b-sub/bad.yaml").display().to_string());
    assert_eq!(p[0].path, "spec.region");
}

#[test]
fn a_file_named_explicitly_is_read_whatever_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("service.txt");
    std::fs::write(&f, SERVICE).unwrap();
    let m = load(&[f], "default").unwrap();
    assert_eq!(m.services.len(), 1);
}

#[test]
fn paths_are_read_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("z.yaml");
    let b = dir.path().join("a.yaml");
    std::fs::write(&a, SERVICE.replace("{name: api}", "{name: first}")).unwrap();
    std::fs::write(&b, SERVICE.replace("{name: api}", "{name: second}")).unwrap();
    let m = load(&[a, b], "default").unwrap();
    assert_eq!(m.services[0].metadata.name.as_deref(), Some("first"));
}

#[test]
fn a_missing_path_is_a_whole_file_problem() {
    let p = load(&[PathBuf::from("/nonexistent/runwarden.yaml")], "default").unwrap_err();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].document, 0);
    assert!(
        p[0].to_string()
            .starts_with("/nonexistent/runwarden.yaml: "),
        "{}",
        p[0]
    );
}

#[test]
fn problems_from_every_file_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "x: [").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "- 1").unwrap();
    std::fs::write(dir.path().join("c.yaml"), SERVICE).unwrap();
    let p = load(&[dir.path().to_path_buf()], "default").unwrap_err();
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn the_reader_is_what_stdin_goes_through() {
    let m = load_reader(STDIN_NAME, SERVICE.as_bytes(), "default").unwrap();
    assert_eq!(m.services.len(), 1);
    let p = load_reader(STDIN_NAME, b"x: [".as_slice(), "default").unwrap_err();
    assert!(
        p[0].to_string().starts_with("<stdin>#1: invalid YAML"),
        "{}",
        p[0]
    );
}

#[test]
fn examples_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let m = load(&[dir], "default").unwrap_or_else(|p| {
        panic!(
            "examples/ has problems:\n{}",
            p.iter().map(|p| format!("  {p}\n")).collect::<String>()
        )
    });
    assert!(m.skipped.is_empty(), "{:?}", m.skipped);
    let names: Vec<_> = m
        .services
        .iter()
        .map(|s| s.metadata.name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "checkout",
            "expenses-portal",
            "ledger-worker",
            "llm-inference",
            "payments-api",
            "refunds-api",
            "storefront",
            "thumbnail"
        ]
    );
    assert_eq!(m.connectors.len(), 1);
    assert_eq!(m.policies.len(), 2);
    for s in &m.services {
        // Production images are pinned by digest; the staging storefront shows an audit finding.
        if s.metadata.namespace.as_deref() == Some("payments") {
            assert!(
                s.spec.containers[0].image.contains("@sha256:"),
                "{}",
                s.service_id()
            );
        }
        if let Some(encryption) = &s.spec.encryption {
            let key = &encryption.kms_key;
            assert!(
                key.contains(&format!("/locations/{}/", s.spec.region)),
                "{key}"
            );
        }
        // The controller's own validation (the CRD's CEL rules) passes too.
        assert!(
            crate::controller::cloudrunservice::validate::validate(s).is_ok(),
            "{}",
            s.service_id()
        );
    }
    let ns = &m.namespaces["payments"];
    assert_eq!(ns.labels["env"], "production");
    assert_eq!(
        ns.annotations[crate::api::PROJECT_ANNOTATION],
        "acme-payments-prod"
    );
    let worker = m
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("ledger-worker"))
        .unwrap();
    let connector = &m.connectors[0];
    assert_eq!(
        worker
            .spec
            .egress
            .as_ref()
            .unwrap()
            .connector_ref
            .as_ref()
            .unwrap()
            .name,
        connector.metadata.name.clone().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Never a panic

/// Load `input`, turning a panic into a test failure that shows the input.
fn load_bytes(what: &str, input: &[u8]) -> Result<Manifests, Vec<Problem>> {
    catch_unwind(AssertUnwindSafe(|| {
        load_reader("fuzz.yaml", input, "default")
    }))
    .unwrap_or_else(|_| {
        panic!(
            "load panicked on {what}: {:?}",
            String::from_utf8_lossy(&input[..input.len().min(300)])
        )
    })
}

#[test]
fn hand_written_nasty_inputs_are_problems_not_panics() {
    let deep_yaml = "[".repeat(100_000);
    let deep_flow = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let deep_json = "{\"a\":".repeat(10_000);
    let deep_block: String = (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    let deep_spec = format!(
        "{SERVICE}  labels: {}1{}\n",
        "{a: ".repeat(100),
        "}".repeat(100)
    );
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
";
    let long_line = format!("apiVersion: {}\n", "x".repeat(1 << 20));
    let huge = vec![b' '; (MAX_FILE_BYTES + 1) as usize];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("NUL", b"\0".to_vec()),
        ("invalid UTF-8", b"\xff\xfe\xfd".to_vec()),
        ("BOM then garbage", "\u{feff}{{{".as_bytes().to_vec()),
        ("unclosed flow", b"key: [".to_vec()),
        ("unknown alias", b"*unknown".to_vec()),
        ("tab indentation", b"a:\n\tb: 1".to_vec()),
        ("nested dashes", b"- - - - -".to_vec()),
        ("binary tag", b"!!binary xyz".to_vec()),
        ("NaN", b".nan".to_vec()),
        ("NaN value in object", b"apiVersion: v1\nkind: Namespace\nmetadata: {name: .nan}".to_vec()),
        ("complex key", b"? [a, b]\n: c".to_vec()),
        ("deep flow", deep_yaml.into_bytes()),
        ("deep balanced flow", deep_flow.into_bytes()),
        ("deep block", deep_block.into_bytes()),
        ("deep spec", deep_spec.into_bytes()),
        ("deep json in yaml", deep_json.clone().into_bytes()),
        ("billion laughs", laughs.as_bytes().to_vec()),
        ("1 MiB line", long_line.into_bytes()),
        ("too large", huge),
        ("control characters", b"\x01\x02\x03".to_vec()),
        ("lone document end", b"...".to_vec()),
        ("directive garbage", b"%YAML 9.9\n---\nx".to_vec()),
        ("only a number", b"42".to_vec()),
        ("only true", b"true".to_vec()),
        ("kind without apiVersion", b"kind: CloudRunService".to_vec()),
        ("spec is a string", format!("{}spec: x\n", &SERVICE[..SERVICE.find("spec:").unwrap()]).into_bytes()),
        ("metadata is a list", b"apiVersion: runwarden.dev/v1alpha1\nkind: VpcAccessConnector\nmetadata: [1]\nspec: {region: europe-west1}".to_vec()),
        ("huge integer", format!("{SERVICE}  timeoutSeconds: 1{}\n", "0".repeat(400)).into_bytes()),
        ("negative huge", format!("{SERVICE}  timeoutSeconds: -1e308\n").into_bytes()),
        ("infinity", format!("{SERVICE}  timeoutSeconds: .inf\n").into_bytes()),
        ("List of garbage", b"apiVersion: v1\nkind: List\nitems: [1, null, [], {}]".to_vec()),
    ];
    for (what, input) in cases {
        match load_bytes(what, &input) {
            Err(p) => {
                assert!(!p.is_empty(), "{what}");
                for problem in &p {
                    assert!(!problem.message.is_empty(), "{what}");
                    assert!(problem.to_string().len() < 2_000, "{what}: {problem}");
                }
            }
            Ok(m) => panic!("{what}: expected a problem, loaded {m:?}"),
        }
    }
    let p = load_reader("deep.json", deep_json.as_bytes(), "default").unwrap_err();
    assert!(p[0].message.contains("recursion limit"), "{}", p[0]);
}

#[test]
fn random_garbage_is_a_problem_not_a_panic() {
    let mut rng = fastrand::Rng::with_seed(0x005e_ed13);
    for i in 0..500 {
        let len = rng.usize(1..512);
        let input: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let result = load_bytes(&format!("random input {i}"), &input);
        assert!(result.is_err(), "random input {i} loaded: {input:?}");
    }
}

#[test]
fn yaml_token_soup_and_mutated_manifests_never_panic() {
    const TOKENS: [&str; 32] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ": ",
        ",",
        "- ",
        "---\n",
        "...\n",
        "\n",
        "  ",
        "&a ",
        "*a",
        "!!str ",
        "!tag ",
        "'",
        "\"",
        "#",
        "? ",
        "|\n",
        ">-\n",
        "<<: ",
        "apiVersion: runwarden.dev/v1alpha1\n",
        "kind: CloudRunService\n",
        "kind: List\nitems:\n",
        "spec:\n",
        "metadata: {name: x}\n",
        "containers: ",
        "~",
        "1e9999",
        "\t",
    ];
    let mut rng = fastrand::Rng::with_seed(0xbad_5eed);
    let mut loaded = 0;
    for i in 0..500 {
        let n = rng.usize(1..40);
        let input: String = (0..n).map(|_| TOKENS[rng.usize(..TOKENS.len())]).collect();
        if load_bytes(&format!("soup {i}"), input.as_bytes()).is_ok() {
            loaded += 1;
        }
    }
    // Almost all soups are invalid; a few may be empty or comment-only.
    assert!(loaded < 100, "{loaded} of 500 token soups loaded");

    let example = include_str!("../../examples/payments-api.yaml").as_bytes();
    let mut problems = 0;
    for i in 0..300 {
        let mut input = example.to_vec();
        for _ in 0..rng.usize(1..8) {
            let at = rng.usize(..input.len());
            match rng.u8(..3) {
                0 => input[at] = rng.u8(..),
                1 => {
                    input.remove(at);
                }
                _ => input.insert(
                    at,
                    *TOKENS[rng.usize(..TOKENS.len())]
                        .as_bytes()
                        .first()
                        .unwrap_or(&b'x'),
                ),
            }
        }
        if load_bytes(&format!("mutation {i}"), &input).is_err() {
            problems += 1;
        }
    }
    // Mutations in comments or free text still load; most others do not.
    assert!(
        problems > 100,
        "only {problems} of 300 mutations were problems"
    );
}

#[test]
fn unknown_metadata_fields_are_reported() {
    let p = problems(&SERVICE.replace(
        "metadata: {name: api}",
        "metadata: {name: api, lables: {team: a}}",
    ));
    assert_eq!(
        p,
        [
            "t.yaml#1: metadata.lables: unknown field (the API server would refuse or drop it); did you mean \"labels\"?"
        ]
    );
    let p = problems("apiVersion: v1\nkind: Namespace\nmetadata: {name: p, annotation: {a: b}}\n");
    assert_problem(&p, "metadata.annotation: unknown field");
    assert_problem(&p, "did you mean \"annotations\"?");
}

#[test]
fn sources_say_where_each_object_was_read() {
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: payments}}\n---\n{SERVICE}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: runwarden.dev/v1alpha1\n  kind: RunSecurityPolicy\n  metadata: {{name: baseline}}\n  spec: {{}}\n"
    );
    let m = load_reader("all.yaml", text.as_bytes(), "payments").unwrap();
    let svc = m
        .source("CloudRunService", Some("payments"), "api")
        .unwrap();
    assert_eq!(svc.to_string(), "all.yaml#2");
    assert_eq!(
        svc.problem("spec.encryption.kmsKey", "wrong location")
            .to_string(),
        "all.yaml#2: spec.encryption.kmsKey: wrong location"
    );
    let pol = m.source("RunSecurityPolicy", None, "baseline").unwrap();
    assert_eq!(pol.to_string(), "all.yaml#3 items[0]");
    assert_eq!(
        pol.problem("spec", "x").to_string(),
        "all.yaml#3: items[0].spec: x"
    );
    assert_eq!(pol.problem("", "x").to_string(), "all.yaml#3: items[0]: x");
    assert_eq!(m.source("Namespace", None, "payments").unwrap().document, 1);
    assert!(m.source("CloudRunService", None, "api").is_none());
    assert_eq!(m.sources.len(), 3);
}

#[cfg(unix)]
#[test]
fn symlink_loops_in_directories_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/a.yaml"), SERVICE).unwrap();
    // Two loops: without a guard, 2^32 walks.
    std::os::unix::fs::symlink(root, root.join("sub/loop1")).unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("sub/loop2")).unwrap();
    let m = load(&[root.to_path_buf()], "default").unwrap();
    assert_eq!(m.services.len(), 1);
}

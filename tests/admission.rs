//! Guardrails: one case table (`tests/fixtures/guardrails-cases.yaml`) judged by the controller's
//! evaluator and by a real kube-apiserver running the committed ValidatingAdmissionPolicies
//! (`crds/admission.yaml`), which must agree word for word; plus what admission must never block.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use runwarden::api::v1alpha1::{
    CloudRunJobSpec, CloudRunServiceSpec, Enforcement, RunSecurityPolicy,
};
use runwarden::policy::{self, Subject, Verdict};
use serde::Deserialize;

#[derive(Deserialize)]
struct Table {
    base: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    namespace: Ns,
    #[serde(default)]
    policies: Vec<PolicyFixture>,
    #[serde(default)]
    service: serde_json::Map<String, serde_json::Value>,
    /// Keys the case's CloudRunJob adds (what only a job has: executors, a schedule).
    #[serde(default)]
    job: serde_json::Map<String, serde_json::Value>,
    expect: Expect,
}

#[derive(Default, Deserialize)]
struct Ns {
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PolicyFixture {
    name: String,
    spec: serde_json::Value,
}

#[derive(Deserialize)]
struct Expect {
    verdict: String,
    #[serde(default)]
    violations: BTreeMap<String, Vec<String>>,
}

fn table() -> Table {
    let text = include_str!("fixtures/guardrails-cases.yaml");
    serde_yaml::from_str(text).expect("tests/fixtures/guardrails-cases.yaml parses")
}

impl Case {
    fn namespace_name(&self, index: usize) -> String {
        self.namespace.name.clone().unwrap_or_else(|| {
            format!("gr-{index}-{}", self.name)
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_owned()
        })
    }

    /// The object's project as admission resolves it: `spec.projectId`, else the namespace's
    /// annotation; no controller default project.
    fn project(&self, spec_project: Option<&str>) -> Option<String> {
        runwarden::controller::context::resolve_project(
            spec_project,
            self.namespace
                .annotations
                .get(runwarden::api::PROJECT_ANNOTATION)
                .filter(|p| !p.is_empty())
                .cloned(),
            None,
        )
    }

    fn service(&self, base: &serde_json::Value) -> serde_json::Value {
        let mut spec = base.clone();
        spec.as_object_mut().unwrap().extend(self.service.clone());
        spec
    }

    /// The case as a CloudRunJob: the service's spec without what only a service has.
    fn job(&self, base: &serde_json::Value) -> serde_json::Value {
        let mut spec = self.service(base);
        let map = spec.as_object_mut().unwrap();
        map.retain(|k, _| !SERVICE_ONLY.contains(&k.as_str()));
        if let Some(containers) = map.get_mut("containers").and_then(|c| c.as_array_mut()) {
            for c in containers.iter_mut().filter_map(|c| c.as_object_mut()) {
                for k in ["ports", "startupProbe", "livenessProbe", "readinessProbe"] {
                    c.remove(k);
                }
            }
        }
        map.extend(self.job.clone());
        spec
    }

    /// Whether the case judges only what a job has too (then a job must be judged alike). A
    /// case with ports picks a service's serving container, which a job (no ports) has not.
    fn applies_to_jobs(&self) -> bool {
        let ports = self
            .service
            .get("containers")
            .and_then(|c| c.as_array())
            .is_some_and(|cs| cs.iter().any(|c| c.get("ports").is_some()));
        self.job.is_empty()
            && !ports
            && !self
                .service
                .keys()
                .any(|k| SERVICE_ONLY.contains(&k.as_str()))
            && !self
                .policies
                .iter()
                .any(|p| p.spec.get("allowedIngress").is_some())
    }

    fn policies(&self) -> Vec<RunSecurityPolicy> {
        self.policies
            .iter()
            .map(|p| {
                serde_json::from_value(policy_manifest(&p.name, &p.spec))
                    .unwrap_or_else(|e| panic!("case {}: policy {}: {e}", self.name, p.name))
            })
            .collect()
    }
}

/// Spec fields a CloudRunService has and a CloudRunJob does not.
const SERVICE_ONLY: [&str; 12] = [
    "ingress",
    "access",
    "traffic",
    "iapEnabled",
    "defaultUriDisabled",
    "customAudiences",
    "sessionAffinity",
    "scaling",
    "maxRequestsPerInstance",
    "timeoutSeconds",
    "ignoreDrift",
    "build",
];

fn policy_manifest(name: &str, spec: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "RunSecurityPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The evaluator's judgement of case `index`.
fn evaluate(case: &Case, index: usize, base: &serde_json::Value) -> policy::Evaluation {
    let spec: CloudRunServiceSpec = serde_json::from_value(case.service(base))
        .unwrap_or_else(|e| panic!("case {}: service: {e}", case.name));
    let ns = case.namespace_name(index);
    let project = case.project(spec.project_id.as_deref());
    let subject = Subject {
        spec: &spec,
        namespace: &ns,
        namespace_labels: &case.namespace.labels,
        project: project.as_deref(),
    };
    policy::evaluate(&subject, &case.policies())
}

/// The evaluator's judgement of case `index` as a CloudRunJob.
fn evaluate_job(case: &Case, index: usize, base: &serde_json::Value) -> policy::Evaluation {
    let spec: CloudRunJobSpec = serde_json::from_value(case.job(base))
        .unwrap_or_else(|e| panic!("case {}: job: {e}", case.name));
    let ns = case.namespace_name(index);
    let project = case.project(spec.project_id.as_deref());
    let subject = Subject::job(&spec, &ns, &case.namespace.labels, project.as_deref());
    policy::evaluate(&subject, &case.policies())
}

#[test]
fn a_job_is_judged_as_a_service_by_every_rule_it_shares() {
    let table = table();
    let mut shared = 0;
    for (i, case) in table.cases.iter().enumerate() {
        if !case.applies_to_jobs() {
            continue;
        }
        shared += 1;
        let service = evaluate(case, i, &table.base);
        let job = evaluate_job(case, i, &table.base);
        assert_eq!(job.verdict(), service.verdict(), "case {}", case.name);
    }
    assert!(shared >= 15, "only {shared} cases judge what jobs share");
    // A job has no ingress: allowedIngress never refuses it.
    let case = table
        .cases
        .iter()
        .position(|c| {
            c.policies
                .iter()
                .any(|p| p.spec.get("allowedIngress").is_some())
        })
        .expect("an allowedIngress case");
    let eval = evaluate_job(&table.cases[case], case, &table.base);
    assert!(
        eval.violations
            .iter()
            .all(|v| v.rules.iter().all(|(r, _)| *r != "allowedIngress")),
        "{:?}",
        eval.violations
    );
}

#[test]
fn the_evaluator_judges_every_case_as_the_table_says() {
    let table = table();
    assert!(table.cases.len() >= 25, "the table lost cases");
    let mut names = BTreeSet::new();
    for (i, case) in table.cases.iter().enumerate() {
        assert!(names.insert(&case.name), "duplicate case {}", case.name);
        let eval = evaluate(case, i, &table.base);
        let verdict = eval.verdict();
        assert_eq!(
            verdict.reason(),
            case.expect.verdict,
            "case {}: {verdict:?}",
            case.name
        );
        let got: BTreeMap<String, Vec<String>> = eval
            .violations
            .iter()
            .map(|v| {
                (
                    v.policy.clone(),
                    v.rules.iter().map(|(r, _)| r.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(got, case.expect.violations, "case {}", case.name);
        if let Verdict::Violation { message } | Verdict::AuditViolation { message } = &verdict {
            for v in &eval.violations {
                assert!(message.contains(&v.message()), "case {}", case.name);
            }
        }
    }
}

/// The documented baseline parses and admits a service built the way it asks.
#[test]
fn the_example_production_baseline_admits_a_well_built_service() {
    let text = include_str!("../examples/policies/production-baseline.yaml");
    let policies: Vec<RunSecurityPolicy> = serde_yaml::Deserializer::from_str(text)
        .map(|d| RunSecurityPolicy::deserialize(d).expect("a RunSecurityPolicy"))
        .collect();
    assert_eq!(policies.len(), 2);
    let spec: CloudRunServiceSpec = serde_json::from_value(serde_json::json!({
        "projectId": "acme-shop-prod",
        "region": "europe-west1",
        "ingress": "InternalAndCloudLoadBalancing",
        "serviceAccount": "shop-api@acme-shop-prod.iam.gserviceaccount.com",
        "binaryAuthorization": {"useDefault": true},
        "egress": {"directVpc": {"network": "prod"}},
        "encryption": {"kmsKey": "projects/acme-security/locations/europe-west1/keyRings/run/cryptoKeys/shop"},
        "containers": [{"image": "europe-docker.pkg.dev/acme-shop-prod/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
    }))
    .unwrap();
    let prod = BTreeMap::from([("env".to_owned(), "production".to_owned())]);
    let subject = Subject {
        spec: &spec,
        namespace: "shop",
        namespace_labels: &prod,
        project: spec.project_id.as_deref(),
    };
    let eval = policy::evaluate(&subject, &policies);
    assert_eq!(eval.matched, ["production-baseline"]);
    assert_eq!(eval.verdict(), Verdict::Compliant);
    let mut public = spec.clone();
    public.access.allow_unauthenticated = true;
    let subject = Subject {
        spec: &public,
        ..subject
    };
    assert_eq!(
        policy::evaluate(&subject, &policies).verdict().reason(),
        "Violation"
    );
    // An exempt namespace is not matched.
    let exempt = BTreeMap::from([
        ("env".to_owned(), "prod".to_owned()),
        (
            "runwarden.dev/guardrails-exempt".to_owned(),
            "migration".to_owned(),
        ),
    ]);
    let subject = Subject {
        namespace_labels: &exempt,
        ..subject
    };
    assert_eq!(
        policy::evaluate(&subject, &policies).verdict(),
        Verdict::NoPolicy
    );
}

// ---- the real API server -------------------------------------------------------------------

/// Tests in this binary share one API server and cluster-scoped policies: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Outcome of a kubectl call: success, stdout, stderr.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn kubectl(plane: &common::envtest::ControlPlane, args: &[&str], stdin: Option<&str>) -> Run {
    let (ok, stdout, stderr) = plane.run_kubectl(args, stdin);
    Run { ok, stdout, stderr }
}

fn must(plane: &common::envtest::ControlPlane, args: &[&str], stdin: Option<&str>) -> String {
    let run = kubectl(plane, args, stdin);
    assert!(run.ok, "kubectl {} failed: {}", args.join(" "), run.stderr);
    run.stdout
}

/// The API server with the CRDs (envtest applies them) and the committed admission policies.
fn plane_with_admission(test: &str) -> Option<&'static common::envtest::ControlPlane> {
    let Some(plane) = common::envtest::shared() else {
        common::envtest::skip(test);
        return None;
    };
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        must(
            plane,
            &[
                "apply",
                "--server-side",
                "-f",
                concat!(env!("CARGO_MANIFEST_DIR"), "/crds/admission.yaml"),
            ],
            None,
        );
    });
    Some(plane)
}

/// The messages of runwarden's admission warnings (`Warning: Validation failed ... : MESSAGE`).
fn warnings(stderr: &str) -> BTreeSet<String> {
    let prefix = format!(
        "Warning: Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': ",
        policy::admission::AUDIT,
        policy::admission::AUDIT
    );
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The message of a denial by runwarden's Enforce policy, if any.
fn denial(stderr: &str) -> Option<String> {
    let marker = format!(
        "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: ",
        policy::admission::ENFORCE,
        policy::admission::ENFORCE
    );
    stderr
        .lines()
        .find_map(|l| l.split_once(&marker).map(|(_, m)| m.to_owned()))
}

fn service_manifest(name: &str, ns: &str, spec: &serde_json::Value) -> String {
    manifest_of("CloudRunService", name, ns, spec)
}

fn manifest_of(kind: &str, name: &str, ns: &str, spec: &serde_json::Value) -> String {
    serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
    .to_string()
}

fn create_namespace(plane: &common::envtest::ControlPlane, name: &str, ns: &Ns) {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": ns.labels, "annotations": ns.annotations},
    });
    must(plane, &["create", "-f", "-"], Some(&manifest.to_string()));
}

/// An Audit policy that every service in `ns` violates (`allowedRegions: [nowhere1]`), created
/// after everything else a step needs: once a request in `ns` is warned by it, the API server's
/// RunSecurityPolicy cache (one watch, in order) holds every earlier change too.
struct Probe {
    name: String,
}

impl Probe {
    fn create(plane: &common::envtest::ControlPlane, ns: &str) -> Probe {
        let name = format!("probe-{ns}");
        let spec = serde_json::json!({
            "enforcement": "Audit",
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}]},
            "allowedRegions": ["nowhere1"],
        });
        must(
            plane,
            &["create", "-f", "-"],
            Some(&policy_manifest(&name, &spec).to_string()),
        );
        Probe { name }
    }

    fn prefix(&self) -> String {
        format!("RunSecurityPolicy {}: ", self.name)
    }

    /// Runs `args` (a request in the probe's namespace) until the probe's warning shows, at most
    /// ~10 s; returns that run with the probe's warning removed from the warnings it reports.
    fn settled(
        &self,
        plane: &common::envtest::ControlPlane,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (Run, BTreeSet<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = kubectl(plane, args, stdin);
            let mut warned = warnings(&run.stderr);
            let seen = warned.iter().any(|w| w.starts_with(&self.prefix()));
            if seen {
                warned.retain(|w| !w.starts_with(&self.prefix()));
                return (run, warned);
            }
            assert!(
                Instant::now() < deadline,
                "the API server did not apply RunSecurityPolicy {} within 10s; last answer: {}",
                self.name,
                run.stderr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn delete(self, plane: &common::envtest::ControlPlane) {
        must(
            plane,
            &["delete", "runsecuritypolicy", &self.name, "--wait=false"],
            None,
        );
    }
}

#[test]
fn the_api_server_judges_every_case_as_the_evaluator_does() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(plane) =
        plane_with_admission("the_api_server_judges_every_case_as_the_evaluator_does")
    else {
        return;
    };
    let table = table();
    let mut failures = Vec::new();
    for (i, case) in table.cases.iter().enumerate() {
        let ns = case.namespace_name(i);
        create_namespace(plane, &ns, &case.namespace);
        for p in &case.policies {
            must(
                plane,
                &["create", "-f", "-"],
                Some(&policy_manifest(&p.name, &p.spec).to_string()),
            );
        }
        let probe = Probe::create(plane, &ns);
        let manifest = service_manifest("svc", &ns, &case.service(&table.base));
        let job_manifest = manifest_of("CloudRunJob", "job", &ns, &case.job(&table.base));
        for (what, manifest, eval) in [
            ("service", manifest, evaluate(case, i, &table.base)),
            ("job", job_manifest, evaluate_job(case, i, &table.base)),
        ] {
            let (run, warned) = probe.settled(
                plane,
                &["create", "--dry-run=server", "-f", "-"],
                Some(&manifest),
            );

            let enforced: BTreeSet<String> = eval
                .violations
                .iter()
                .filter(|v| v.enforcement == Enforcement::Enforce)
                .map(|v| v.message())
                .collect();
            let audited: BTreeSet<String> = eval
                .violations
                .iter()
                .filter(|v| v.enforcement == Enforcement::Audit)
                .map(|v| v.message())
                .collect();
            let denied = denial(&run.stderr);
            let problem = match (&denied, enforced.is_empty()) {
                (None, true) if !run.ok => Some(format!("refused otherwise: {}", run.stderr)),
                (None, true) => None,
                (None, false) => Some(format!("admitted, but the evaluator says {enforced:?}")),
                // The API server names the first violated Enforce policy it evaluated.
                (Some(m), false) if enforced.contains(m) => None,
                (Some(m), _) => Some(format!(
                    "refused with {m:?}, the evaluator says {enforced:?}"
                )),
            };
            if let Some(p) = problem {
                failures.push(format!("case {} ({what}): {p}", case.name));
            }
            if warned != audited {
                failures.push(format!(
                    "case {} ({what}): warnings {warned:?}, the evaluator says {audited:?}",
                    case.name
                ));
            }
        }
        for p in &case.policies {
            must(
                plane,
                &["delete", "runsecuritypolicy", &p.name, "--wait=false"],
                None,
            );
        }
        probe.delete(plane);
    }
    assert!(
        failures.is_empty(),
        "admission and the evaluator disagree:\n{}",
        failures.join("\n")
    );
}

#[test]
fn admission_never_blocks_cleanup_of_an_object_that_predates_a_policy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(plane) =
        plane_with_admission("admission_never_blocks_cleanup_of_an_object_that_predates_a_policy")
    else {
        return;
    };
    let ns = "gr-lifecycle";
    create_namespace(plane, ns, &Ns::default());
    let tagged = serde_json::json!({"region": "europe-west1", "containers": [{"image": "europe-docker.pkg.dev/p/app:1"}]});
    let existing = serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "CloudRunService",
        "metadata": {"name": "old", "namespace": ns, "finalizers": ["runwarden.dev/cleanup"]},
        "spec": tagged,
    });
    must(plane, &["create", "-f", "-"], Some(&existing.to_string()));

    // Tighten: digests now required in this namespace.
    let tighten = serde_json::json!({
        "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}]},
        "requireImageDigest": true,
    });
    must(
        plane,
        &["create", "-f", "-"],
        Some(&policy_manifest("tighten", &tighten).to_string()),
    );
    let probe = Probe::create(plane, ns);
    let (run, _) = probe.settled(
        plane,
        &["create", "--dry-run=server", "-f", "-"],
        Some(&service_manifest("new", ns, &tagged)),
    );
    let expected = "RunSecurityPolicy tighten: requireImageDigest: spec.containers[0].image must be pinned by digest (@sha256:)";
    assert_eq!(
        denial(&run.stderr).as_deref(),
        Some(expected),
        "{}",
        run.stderr
    );

    // Metadata edits and status writes of the old object pass.
    must(
        plane,
        &["label", "-n", ns, "crsvc", "old", "team=shop"],
        None,
    );
    must(
        plane,
        &["annotate", "-n", ns, "crsvc", "old", "note=grandfathered"],
        None,
    );
    must(
        plane,
        &[
            "patch",
            "-n",
            ns,
            "crsvc",
            "old",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"observedGeneration":1}}"#,
        ],
        None,
    );
    // A spec change is judged: still violating is refused, fixing it passes.
    let run = kubectl(
        plane,
        &[
            "patch",
            "-n",
            ns,
            "crsvc",
            "old",
            "--type=merge",
            "-p",
            r#"{"spec":{"timeoutSeconds":60}}"#,
        ],
        None,
    );
    assert!(!run.ok, "a violating spec change must be refused");
    assert_eq!(
        denial(&run.stderr).as_deref(),
        Some(expected),
        "{}",
        run.stderr
    );
    // Deletion and finalizer removal pass.
    must(
        plane,
        &["delete", "-n", ns, "crsvc", "old", "--wait=false"],
        None,
    );
    must(
        plane,
        &[
            "patch",
            "-n",
            ns,
            "crsvc",
            "old",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    let gone = kubectl(plane, &["get", "-n", ns, "crsvc", "old"], None);
    assert!(
        !gone.ok && gone.stderr.contains("NotFound"),
        "the object must be gone: {} {}",
        gone.stdout,
        gone.stderr
    );
    must(
        plane,
        &["delete", "runsecuritypolicy", "tighten", "--wait=false"],
        None,
    );
    probe.delete(plane);
}

#[test]
fn a_fixed_spec_passes_and_bad_policies_are_refused_by_the_schema() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(plane) =
        plane_with_admission("a_fixed_spec_passes_and_bad_policies_are_refused_by_the_schema")
    else {
        return;
    };
    let bad = [
        (
            serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In"}]}}),
            "In and NotIn need values",
        ),
        (
            serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["x"]}]}}),
            "Exists and DoesNotExist take none",
        ),
        (
            serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Equals", "values": ["x"]}]}}),
            "Unsupported value",
        ),
        (
            serde_json::json!({"enforcement": "Block"}),
            "Unsupported value",
        ),
        (
            serde_json::json!({"allowedIngress": ["Public"]}),
            "Unsupported value",
        ),
    ];
    for (spec, expected) in bad {
        let run = kubectl(
            plane,
            &["create", "--dry-run=server", "-f", "-"],
            Some(&policy_manifest("bad", &spec).to_string()),
        );
        assert!(
            !run.ok && run.stderr.contains(expected),
            "{spec} must be refused with {expected:?}: {}",
            run.stderr
        );
    }

    // The documented examples are valid policies.
    must(
        plane,
        &[
            "create",
            "--dry-run=server",
            "-f",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/policies/production-baseline.yaml"
            ),
        ],
        None,
    );

    // A violating service becomes admissible once fixed.
    let ns = "gr-fix";
    create_namespace(plane, ns, &Ns::default());
    let strict = serde_json::json!({"requireDedicatedServiceAccount": true, "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    must(
        plane,
        &["create", "-f", "-"],
        Some(&policy_manifest("strict", &strict).to_string()),
    );
    let probe = Probe::create(plane, ns);
    let mut spec = serde_json::json!({"region": "europe-west1", "containers": [{"image": "i"}], "serviceAccount": "1-compute@developer.gserviceaccount.com"});
    let (run, _) = probe.settled(
        plane,
        &["create", "-f", "-"],
        Some(&service_manifest("svc", ns, &spec)),
    );
    assert!(!run.ok, "the default compute account must be refused");
    spec["serviceAccount"] = "api@shop.iam.gserviceaccount.com".into();
    must(
        plane,
        &["create", "-f", "-"],
        Some(&service_manifest("svc", ns, &spec)),
    );
    must(
        plane,
        &["delete", "runsecuritypolicy", "strict", "--wait=false"],
        None,
    );
    probe.delete(plane);
}

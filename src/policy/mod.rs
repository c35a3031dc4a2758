//! Guardrails: `RunSecurityPolicy` evaluation, one rule table for the controller and the API server.
//!
//! A `RunSecurityPolicy` (cluster-scoped) applies to every CloudRunService in the namespaces its
//! `namespaceSelector` selects (absent or empty: every namespace; `matchLabels` and
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, as in Kubernetes). Every
//! matching policy applies; a namespace matched by none is unrestricted. Rules left empty or false
//! are not checked. The rules, in the order messages list them, are in [`rules::RULES`]:
//!
//! | rule | a CloudRunService violates it when |
//! |---|---|
//! | `allowedProjects` | its resolved project (`spec.projectId`, else the namespace annotation `runwarden.dev/project-id`, else the controller's `--default-project`) is not listed |
//! | `allowedRegions` | `spec.region` is not listed (exact match) |
//! | `allowedIngress` | `spec.ingress` (default `Internal`) is not listed |
//! | `forbidUnauthenticated` | `spec.access.allowUnauthenticated` is true |
//! | `requireCmek` | `spec.encryption` is absent |
//! | `requireBinaryAuthorization` | `spec.binaryAuthorization` is absent or `useDefault: false` without `policy` (a break-glass justification is allowed: Google audits it) |
//! | `requireEgressRouting` | `spec.egress` is absent, or its `routing` (default `AllTraffic`) differs |
//! | `requireDedicatedServiceAccount` | `spec.serviceAccount` is absent, empty or `*-compute@developer.gserviceaccount.com` |
//! | `allowedImageRegistries` | a container's image starts with none of the prefixes |
//! | `requireImageDigest` | a container's image does not end with `@sha256:` and 64 hex digits |
//! | `requireAutomaticBaseImageUpdates` | a serving container (one with a port, else the first) has no `baseImageUri`, unless it is the first and built with `spec.build.automaticUpdates` |
//! | `allowedKmsKeyProjects` | `spec.encryption.kmsKey` names a key of a project not listed |
//!
//! Two places enforce the same table:
//!
//! - **Admission** ([`admission`]): two ValidatingAdmissionPolicies (`admissionregistration.k8s.io/v1`,
//!   Kubernetes 1.30+, no webhook) with `RunSecurityPolicy` as their `paramKind`, generated from
//!   the table's CEL and committed in `crds/admission.yaml`. The API server judges every
//!   RunSecurityPolicy as `params` on CREATE and on UPDATEs that change `spec`: `Enforce`
//!   policies refuse the request (403 Forbidden), `Audit` ones answer with a warning. Label and
//!   annotation edits, finalizer removal, status writes and deletion are never checked, so an
//!   object that predates a tightened policy can still be cleaned up. The API server cannot know
//!   the controller's `--default-project`: with no `spec.projectId` and no namespace annotation,
//!   `allowedProjects` is judged by the controller alone. A denial names the first policy the API
//!   server found violated (with all its rules); the controller's condition names them all.
//! - **Controller** ([`evaluate`]): on every pass, before any Google call, giving the
//!   `PolicyCompliant` condition ([`Verdict`]), and [`summarize`] for the policy's status counts.
//!
//! Messages are the same text in both places: `RunSecurityPolicy NAME: rule: why; rule: why`
//! ([`PolicyViolation::message`]); several policies are joined with ` | `.
//!
//! **Fail closed.** A policy whose `namespaceSelector` cannot be evaluated (an operator other than
//! the four, `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values; the CRD schema refuses
//! these, so only objects stored before that rule or files given to `runwarden plan` can carry them)
//! is treated as selecting every namespace and as violated, with the single rule
//! `namespaceSelector` ([`SELECTOR_INVALID`]); its `enforcement` still decides between refusal and
//! warning. The admission policies use `failurePolicy: Fail`: a CEL error refuses the request.

pub mod admission;
pub mod rules;
pub mod selector;

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::v1alpha1::{
    CloudRunJobSpec, CloudRunServiceSpec, Enforcement, Ingress, RunSecurityPolicy, Workload,
};

/// The namespace annotation naming the default Google Cloud project of its CloudRunServices.
pub const PROJECT_ANNOTATION: &str = "runwarden.dev/project-id";

/// The label the API server puts on every namespace, with the namespace's name as value.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Why a policy with an unusable `namespaceSelector` is reported as violated (rule `namespaceSelector`).
pub const SELECTOR_INVALID: &str = "invalid selector (In and NotIn need values, Exists and DoesNotExist take none): the policy cannot be evaluated, so it fails closed";

/// A spec the guardrails judge: a CloudRunService's or a CloudRunJob's.
pub trait Judged: std::fmt::Debug + Sync {
    /// What every workload declares (region, containers, identity, egress, key...).
    fn workload(&self) -> Workload<'_>;
    /// Where requests may come from; `None` for a kind without ingress (a job).
    fn ingress(&self) -> Option<Ingress>;
    /// Why the object is open to unauthenticated callers (`forbidUnauthenticated`), if it is.
    fn public(&self) -> Vec<&'static str>;
    /// The IAM members the object grants, by the spec field that names them
    /// (`allowedMemberDomains`).
    fn members(&self) -> Vec<(&'static str, Vec<String>)>;
    /// Whether the first container is built from source with automatic base image updates.
    fn built_with_automatic_updates(&self) -> bool {
        false
    }
    /// With `spec.build`: the repository the built image is pushed to (`build.imageRepository`),
    /// `Some(None)` when it is the project's default one.
    fn build_repository(&self) -> Option<Option<&str>> {
        None
    }
}

impl Judged for CloudRunServiceSpec {
    fn workload(&self) -> Workload<'_> {
        CloudRunServiceSpec::workload(self)
    }

    fn ingress(&self) -> Option<Ingress> {
        Some(self.ingress)
    }

    fn built_with_automatic_updates(&self) -> bool {
        self.build.as_ref().is_some_and(|b| b.automatic_updates)
    }

    fn build_repository(&self) -> Option<Option<&str>> {
        self.build.as_ref().map(|b| b.image_repository.as_deref())
    }

    fn public(&self) -> Vec<&'static str> {
        [
            (
                self.access.allow_unauthenticated,
                rules::ALLOW_UNAUTHENTICATED_WHY,
            ),
            (
                self.access.invoker_iam_disabled,
                rules::INVOKER_IAM_DISABLED_WHY,
            ),
        ]
        .into_iter()
        .filter_map(|(on, why)| on.then_some(why))
        .collect()
    }

    fn members(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = vec![("spec.access.invokers", self.access.invokers.clone())];
        if self.access.allow_unauthenticated {
            out.push(("spec.access.allowUnauthenticated", vec!["allUsers".into()]));
        }
        out
    }
}

impl Judged for CloudRunJobSpec {
    fn workload(&self) -> Workload<'_> {
        CloudRunJobSpec::workload(self)
    }

    fn ingress(&self) -> Option<Ingress> {
        None
    }

    fn public(&self) -> Vec<&'static str> {
        let everyone = self
            .access
            .executors
            .iter()
            .any(|m| m == "allUsers" || m == "allAuthenticatedUsers");
        if everyone {
            vec![rules::PUBLIC_EXECUTORS_WHY]
        } else {
            vec![]
        }
    }

    fn members(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = vec![("spec.access.executors", self.access.executors.clone())];
        if let Some(s) = &self.schedule {
            out.push((
                "spec.schedule.serviceAccount",
                vec![format!("serviceAccount:{}", s.service_account)],
            ));
        }
        out
    }
}

/// What a policy is judged against: one CloudRunService or CloudRunJob in its namespace.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The object's spec.
    pub spec: &'a dyn Judged,
    /// Its namespace.
    pub namespace: &'a str,
    /// The namespace's labels. `kubernetes.io/metadata.name` is added when missing, as the API
    /// server does.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The resolved Google Cloud project ([`crate::controller::context::resolve_project`]); `None` leaves `allowedProjects`
    /// unjudged, as at admission.
    pub project: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// A CloudRunJob in `namespace`.
    pub fn job(
        spec: &'a CloudRunJobSpec,
        namespace: &'a str,
        namespace_labels: &'a BTreeMap<String, String>,
        project: Option<&'a str>,
    ) -> Self {
        Subject {
            spec,
            namespace,
            namespace_labels,
            project,
        }
    }
}

/// The violated rules of one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyViolation {
    /// The policy's name.
    pub policy: String,
    /// Its enforcement: `Enforce` blocks, `Audit` reports.
    pub enforcement: Enforcement,
    /// `(rule, why)` in the order of [`rules::RULES`]; `("namespaceSelector", SELECTOR_INVALID)`
    /// alone when the policy could not be evaluated.
    pub rules: Vec<(&'static str, String)>,
}

impl PolicyViolation {
    /// `RunSecurityPolicy NAME: rule: why; rule: why`, the text admission also produces.
    pub fn message(&self) -> String {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|(rule, why)| format!("{rule}: {why}"))
            .collect();
        format!("RunSecurityPolicy {}: {}", self.policy, rules.join("; "))
    }
}

/// The outcome of every policy for one subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Names of the policies that apply to the subject's namespace (sorted), including those that
    /// could not be evaluated.
    pub matched: Vec<String>,
    /// The policies violated, sorted by name.
    pub violations: Vec<PolicyViolation>,
    /// Policies that could not be evaluated: `(name, what is wrong with the selector)`. They are
    /// also in `matched` and `violations` (fail closed).
    pub errors: Vec<(String, String)>,
}

/// The `PolicyCompliant` judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No policy selects the namespace (`PolicyCompliant=True`, reason `NoPolicy`).
    NoPolicy,
    /// Every matching policy passes (`True`, `Compliant`).
    Compliant,
    /// An `Enforce` policy is violated: nothing may be created or changed in Google (`False`,
    /// `Violation`). The message also lists violated `Audit` policies.
    Violation {
        /// Each violated policy and rule, Enforce policies first.
        message: String,
    },
    /// Only `Audit` policies are violated: deploy anyway, report (`False`, `AuditViolation`).
    AuditViolation {
        /// Each violated policy and rule.
        message: String,
    },
}

impl Verdict {
    /// The condition reason: `NoPolicy`, `Compliant`, `Violation` or `AuditViolation`.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::NoPolicy => "NoPolicy",
            Verdict::Compliant => "Compliant",
            Verdict::Violation { .. } => "Violation",
            Verdict::AuditViolation { .. } => "AuditViolation",
        }
    }

    /// Whether the service must not be created or changed in Google.
    pub fn blocks(&self) -> bool {
        matches!(self, Verdict::Violation { .. })
    }
}

impl Evaluation {
    /// `Violation` wins over `AuditViolation`, which wins over `Compliant`; `NoPolicy` when nothing
    /// matched.
    pub fn verdict(&self) -> Verdict {
        if self.matched.is_empty() {
            return Verdict::NoPolicy;
        }
        let (enforced, audited): (Vec<_>, Vec<_>) = self
            .violations
            .iter()
            .partition(|v| v.enforcement == Enforcement::Enforce);
        let message = || {
            enforced
                .iter()
                .chain(&audited)
                .map(|v| v.message())
                .collect::<Vec<_>>()
                .join(" | ")
        };
        if !enforced.is_empty() {
            Verdict::Violation { message: message() }
        } else if !audited.is_empty() {
            Verdict::AuditViolation { message: message() }
        } else {
            Verdict::Compliant
        }
    }
}

/// What one policy says about one subject: `None` when it does not apply.
enum Outcome {
    Passes,
    Violated(PolicyViolation),
    Invalid(PolicyViolation, String),
}

fn judge(policy: &RunSecurityPolicy, subject: &Subject<'_>) -> Option<Outcome> {
    let mut labels = subject.namespace_labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| subject.namespace.to_owned());
    let violation = |rules| PolicyViolation {
        policy: policy.name_any(),
        enforcement: policy.spec.enforcement,
        rules,
    };
    match selector::matches(policy.spec.namespace_selector.as_ref(), &labels) {
        Ok(false) => None,
        Err(error) => Some(Outcome::Invalid(
            violation(vec![("namespaceSelector", SELECTOR_INVALID.to_owned())]),
            error,
        )),
        Ok(true) => {
            let broken: Vec<_> = rules::RULES
                .iter()
                .filter_map(|r| (r.check)(&policy.spec, subject).map(|why| (r.name, why)))
                .collect();
            Some(if broken.is_empty() {
                Outcome::Passes
            } else {
                Outcome::Violated(violation(broken))
            })
        }
    }
}

/// Judges `subject` against every policy.
pub fn evaluate(subject: &Subject<'_>, policies: &[RunSecurityPolicy]) -> Evaluation {
    let mut sorted: Vec<&RunSecurityPolicy> = policies.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    let mut eval = Evaluation::default();
    for policy in sorted {
        let Some(outcome) = judge(policy, subject) else {
            continue;
        };
        eval.matched.push(policy.name_any());
        match outcome {
            Outcome::Passes => {}
            Outcome::Violated(v) => eval.violations.push(v),
            Outcome::Invalid(v, error) => {
                eval.errors.push((policy.name_any(), error));
                eval.violations.push(v);
            }
        }
    }
    eval
}

/// `(matchedServices, violatingServices)` of `policy` over `services`, for its status.
pub fn summarize(policy: &RunSecurityPolicy, services: &[Subject<'_>]) -> (i64, i64) {
    services.iter().filter_map(|s| judge(policy, s)).fold(
        (0, 0),
        |(matched, violating), outcome| match outcome {
            Outcome::Passes => (matched + 1, violating),
            Outcome::Violated(_) | Outcome::Invalid(..) => (matched + 1, violating + 1),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, spec: serde_json::Value) -> RunSecurityPolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "runwarden.dev/v1alpha1",
            "kind": "RunSecurityPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    fn service(json: serde_json::Value) -> CloudRunServiceSpec {
        let mut base = serde_json::json!({"region": "europe-west1", "containers": [{"image": "europe-docker.pkg.dev/p/app:1"}]});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_matching_policy_is_no_policy() {
        let spec = service(serde_json::json!({"access": {"allowUnauthenticated": true}}));
        let l = labels(&[("env", "dev")]);
        let s = Subject {
            spec: &spec,
            namespace: "dev",
            namespace_labels: &l,
            project: None,
        };
        let p = policy(
            "prod",
            serde_json::json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}, "forbidUnauthenticated": true}),
        );
        let e = evaluate(&s, &[p]);
        assert_eq!(e.verdict(), Verdict::NoPolicy);
        assert_eq!(evaluate(&s, &[]).verdict(), Verdict::NoPolicy);
    }

    #[test]
    fn matching_and_passing_is_compliant() {
        let spec = service(serde_json::json!({}));
        let l = labels(&[]);
        let s = Subject {
            spec: &spec,
            namespace: "a",
            namespace_labels: &l,
            project: Some("p1"),
        };
        let p = policy(
            "base",
            serde_json::json!({"forbidUnauthenticated": true, "allowedProjects": ["p1"]}),
        );
        let e = evaluate(&s, &[p]);
        assert_eq!(e.matched, ["base"]);
        assert_eq!(e.verdict(), Verdict::Compliant);
        assert_eq!(e.verdict().reason(), "Compliant");
    }

    #[test]
    fn the_message_names_each_policy_and_rule_enforce_first() {
        let spec = service(serde_json::json!({"access": {"allowUnauthenticated": true}}));
        let l = labels(&[("env", "prod")]);
        let s = Subject {
            spec: &spec,
            namespace: "shop",
            namespace_labels: &l,
            project: Some("sandbox"),
        };
        let enforce = policy(
            "prod-baseline",
            serde_json::json!({"forbidUnauthenticated": true, "requireImageDigest": true}),
        );
        let audit = policy(
            "a-audit",
            serde_json::json!({"enforcement": "Audit", "allowedProjects": ["prod"]}),
        );
        let passing = policy(
            "z-ok",
            serde_json::json!({"allowedRegions": ["europe-west1"]}),
        );
        let e = evaluate(&s, &[enforce, passing, audit]);
        assert_eq!(e.matched, ["a-audit", "prod-baseline", "z-ok"]);
        let v = e.verdict();
        assert!(v.blocks());
        assert_eq!(
            v,
            Verdict::Violation {
                message: "RunSecurityPolicy prod-baseline: forbidUnauthenticated: spec.access.allowUnauthenticated must be false; requireImageDigest: spec.containers[0].image must be pinned by digest (@sha256:) | RunSecurityPolicy a-audit: allowedProjects: project sandbox is not in allowedProjects".into()
            }
        );
    }

    #[test]
    fn audit_only_violations_do_not_block() {
        let spec = service(serde_json::json!({"ingress": "All"}));
        let l = labels(&[]);
        let s = Subject {
            spec: &spec,
            namespace: "a",
            namespace_labels: &l,
            project: None,
        };
        let audit = policy(
            "ingress-audit",
            serde_json::json!({"enforcement": "Audit", "allowedIngress": ["Internal"]}),
        );
        let v = evaluate(&s, &[audit]).verdict();
        assert!(!v.blocks());
        assert_eq!(
            v,
            Verdict::AuditViolation {
                message: "RunSecurityPolicy ingress-audit: allowedIngress: spec.ingress All is not in allowedIngress".into()
            }
        );
    }

    #[test]
    fn an_invalid_selector_fails_closed_with_its_enforcement() {
        let spec = service(serde_json::json!({}));
        let l = labels(&[("env", "dev")]);
        let s = Subject {
            spec: &spec,
            namespace: "a",
            namespace_labels: &l,
            project: None,
        };
        let broken = policy(
            "broken",
            serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In"}]}}),
        );
        let e = evaluate(&s, std::slice::from_ref(&broken));
        assert_eq!(e.matched, ["broken"]);
        assert_eq!(e.errors.len(), 1);
        assert!(
            e.errors[0].1.contains("In needs at least one value"),
            "{:?}",
            e.errors
        );
        assert_eq!(
            e.verdict(),
            Verdict::Violation {
                message: format!("RunSecurityPolicy broken: namespaceSelector: {SELECTOR_INVALID}")
            }
        );
        let mut audit = broken.clone();
        audit.spec.enforcement = Enforcement::Audit;
        assert_eq!(evaluate(&s, &[audit]).verdict().reason(), "AuditViolation");
        assert_eq!(summarize(&broken, &[s]), (1, 1));
    }

    #[test]
    fn namespaces_are_selectable_by_name() {
        let spec = service(serde_json::json!({}));
        let l = labels(&[]);
        let p = policy(
            "payments-only",
            serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["payments"]}]}, "requireCmek": true}),
        );
        let pay = Subject {
            spec: &spec,
            namespace: "payments",
            namespace_labels: &l,
            project: None,
        };
        let web = Subject {
            spec: &spec,
            namespace: "web",
            namespace_labels: &l,
            project: None,
        };
        assert_eq!(
            evaluate(&pay, std::slice::from_ref(&p)).verdict().reason(),
            "Violation"
        );
        assert_eq!(
            evaluate(&web, std::slice::from_ref(&p)).verdict(),
            Verdict::NoPolicy
        );
        assert_eq!(summarize(&p, &[pay, web, pay]), (2, 2));
    }

    #[test]
    fn summarize_counts_matched_and_violating() {
        let good = service(serde_json::json!({}));
        let bad = service(serde_json::json!({"ingress": "All"}));
        let prod = labels(&[("env", "prod")]);
        let dev = labels(&[("env", "dev")]);
        let p = policy(
            "prod",
            serde_json::json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}, "allowedIngress": ["Internal"]}),
        );
        let subjects = [
            Subject {
                spec: &good,
                namespace: "p1",
                namespace_labels: &prod,
                project: None,
            },
            Subject {
                spec: &bad,
                namespace: "p1",
                namespace_labels: &prod,
                project: None,
            },
            Subject {
                spec: &bad,
                namespace: "d1",
                namespace_labels: &dev,
                project: None,
            },
        ];
        assert_eq!(summarize(&p, &subjects), (2, 1));
        assert_eq!(summarize(&p, &[]), (0, 0));
    }
}

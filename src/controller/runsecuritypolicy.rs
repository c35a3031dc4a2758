//! The `RunSecurityPolicy` controller: the policy's status, so `kubectl get runpol` shows how
//! many services it matches and how many violate it, and whether it can be evaluated at all.
//!
//! Enforcement itself happens elsewhere: in each CloudRunService pass (the `PolicyCompliant`
//! condition, before any Google call) and at admission (the ValidatingAdmissionPolicies of
//! `runwarden crd`). A policy change re-evaluates the services it concerns through the services
//! controller's watch of policies (see [`affected_services`]). The counts here are refreshed on
//! every change of the policy and every [`REFRESH`] (they depend on every service).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::instrument;

use super::Context;
use super::conditions::{self, Cond};
use crate::api::FIELD_MANAGER;
use crate::api::v1alpha1::{
    CloudRunJob, CloudRunService, RunSecurityPolicy, RunSecurityPolicyStatus,
};
use crate::error::{Error, Result};
use crate::policy::{Judged, Subject, selector, summarize};

/// The kind, for metrics and logs.
pub const KIND: &str = "RunSecurityPolicy";
/// How often the counts are refreshed without a change of the policy.
pub const REFRESH: Duration = Duration::from_secs(15);

/// Reconciles one RunSecurityPolicy: its status only.
#[instrument(skip(guard, ctx), fields(kind = KIND, name = guard.name_any()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<RunSecurityPolicy>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let start = std::time::Instant::now();
    let policy = match &guard.0 {
        Ok(p) => p,
        Err(invalid) => return Err(Error::InvalidObject(invalid.error.clone())),
    };
    let services: Vec<CloudRunService> = ctx
        .caches
        .services
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect();
    let jobs: Vec<CloudRunJob> = ctx
        .caches
        .jobs
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect();
    let services = judged_in(
        services
            .iter()
            .map(|s| {
                (
                    s.namespace().unwrap_or_default(),
                    s.spec.project_id.as_deref(),
                    &s.spec as &dyn Judged,
                )
            })
            .collect(),
        &ctx,
    );
    let jobs = judged_in(
        jobs.iter()
            .map(|j| {
                (
                    j.namespace().unwrap_or_default(),
                    j.spec.project_id.as_deref(),
                    &j.spec as &dyn Judged,
                )
            })
            .collect(),
        &ctx,
    );
    let status = compute(
        policy,
        &services.subjects(),
        &jobs.subjects(),
        &super::now(),
    );
    if policy.status.as_ref() != Some(&status) {
        let api: Api<RunSecurityPolicy> = Api::all(ctx.client.clone());
        let patch = serde_json::json!({
            "apiVersion": "runwarden.dev/v1alpha1",
            "kind": KIND,
            "status": status,
        });
        api.patch_status(
            &policy.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    ctx.metrics.reconciled(KIND, start.elapsed());
    Ok(Action::requeue(REFRESH))
}

impl super::frame::Reconciled for RunSecurityPolicy {
    const KIND: &'static str = KIND;
}

/// Objects of one kind with what a policy judges them by: namespace labels, resolved project.
struct Judgements<'a> {
    objects: Vec<(String, Option<&'a str>, &'a dyn Judged)>,
    labels: BTreeMap<String, BTreeMap<String, String>>,
    projects: Vec<Option<String>>,
}

impl Judgements<'_> {
    fn subjects(&self) -> Vec<Subject<'_>> {
        self.objects
            .iter()
            .zip(&self.projects)
            .map(|((ns, _, spec), project)| Subject {
                spec: *spec,
                namespace: ns,
                namespace_labels: &self.labels[ns],
                project: project.as_deref(),
            })
            .collect()
    }
}

/// What the caches say of the namespaces and projects of `objects` (pure but for the caches).
fn judged_in<'a>(
    objects: Vec<(String, Option<&'a str>, &'a dyn Judged)>,
    ctx: &Context,
) -> Judgements<'a> {
    let labels = objects
        .iter()
        .map(|(ns, _, _)| (ns.clone(), ctx.caches.namespace_labels(ns)))
        .collect();
    let projects = objects
        .iter()
        .map(|(ns, project_id, _)| {
            super::context::resolve_project(
                *project_id,
                ctx.caches
                    .namespace_annotation(ns, crate::api::PROJECT_ANNOTATION),
                ctx.config.default_project.as_deref(),
            )
        })
        .collect();
    Judgements {
        objects,
        labels,
        projects,
    }
}

/// The status from the services and jobs judged (pure).
pub fn compute(
    policy: &RunSecurityPolicy,
    services: &[Subject],
    jobs: &[Subject],
    now: &str,
) -> RunSecurityPolicyStatus {
    let (matched, violating) = summarize(policy, services);
    let (matched_jobs, violating_jobs) = summarize(policy, jobs);
    let ready = match selector::matches(policy.spec.namespace_selector.as_ref(), &BTreeMap::new()) {
        Err(why) => Cond::fail(
            "Ready",
            "InvalidSelector",
            format!(
                "spec.namespaceSelector cannot be evaluated ({why}): every namespace counts as matched and violating until it is fixed"
            ),
        ),
        Ok(_) => Cond::ok(
            "Ready",
            "Evaluated",
            format!(
                "{matched} CloudRunService(s) matched, {violating} violating; {matched_jobs} CloudRunJob(s) matched, {violating_jobs} violating"
            ),
        ),
    };
    let old = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    RunSecurityPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: conditions::merge(old, &[ready], policy.metadata.generation, now),
        matched_services: Some(matched),
        violating_services: Some(violating),
        matched_jobs: Some(matched_jobs),
        violating_jobs: Some(violating_jobs),
    }
}

/// The CloudRunServices a change of `policy` may concern: those in namespaces its selector
/// matches now, and those a policy already judged (their `PolicyCompliant` is not `NoPolicy`),
/// so that narrowing or deleting a policy releases the services it blocked.
pub fn affected_services(
    policy: &RunSecurityPolicy,
    services: &[Arc<DeserializeGuard<CloudRunService>>],
    labels_of: impl Fn(&str) -> BTreeMap<String, String>,
) -> Vec<ObjectRef<DeserializeGuard<CloudRunService>>> {
    affected(policy, services, labels_of, |s| {
        s.status.as_ref().map(|st| st.conditions.as_slice())
    })
}

/// The CloudRunJobs a change of `policy` may concern, by the same rule as
/// [`affected_services`].
pub fn affected_jobs(
    policy: &RunSecurityPolicy,
    jobs: &[Arc<DeserializeGuard<crate::api::v1alpha1::CloudRunJob>>],
    labels_of: impl Fn(&str) -> BTreeMap<String, String>,
) -> Vec<ObjectRef<DeserializeGuard<crate::api::v1alpha1::CloudRunJob>>> {
    affected(policy, jobs, labels_of, |j| {
        j.status.as_ref().map(|st| st.conditions.as_slice())
    })
}

fn affected<K>(
    policy: &RunSecurityPolicy,
    objects: &[Arc<DeserializeGuard<K>>],
    labels_of: impl Fn(&str) -> BTreeMap<String, String>,
    conditions_of: impl Fn(&K) -> Option<&[crate::api::v1alpha1::Condition]>,
) -> Vec<ObjectRef<DeserializeGuard<K>>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned,
{
    objects
        .iter()
        .filter(|g| {
            let Ok(s) = &g.0 else { return false };
            let judged = conditions_of(s).is_some_and(|c| {
                conditions::find(c, super::cloudrunservice::POLICY_COMPLIANT)
                    .is_some_and(|c| c.reason != super::reasons::NO_POLICY)
            });
            let ns = s.namespace().unwrap_or_default();
            judged
                || selector::matches(policy.spec.namespace_selector.as_ref(), &labels_of(&ns))
                    .unwrap_or(true)
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: serde_json::Value) -> RunSecurityPolicy {
        let mut p = RunSecurityPolicy::new("prod", serde_json::from_value(spec).unwrap());
        p.metadata.generation = Some(3);
        p
    }

    fn service(spec: serde_json::Value) -> CloudRunService {
        CloudRunService::new("api", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn the_status_counts_matched_and_violating_services() {
        let p = policy(
            serde_json::json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}, "requireCmek": true}),
        );
        let plain =
            service(serde_json::json!({"region": "europe-west1", "containers": [{"image": "i"}]}));
        let prod: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        let dev: BTreeMap<String, String> = [("env".to_owned(), "dev".to_owned())].into();
        let subjects = [
            Subject {
                spec: &plain.spec,
                namespace: "a",
                namespace_labels: &prod,
                project: Some("p"),
            },
            Subject {
                spec: &plain.spec,
                namespace: "b",
                namespace_labels: &dev,
                project: Some("p"),
            },
        ];
        let s = compute(&p, &subjects, &[], "t");
        assert_eq!(
            (s.matched_services, s.violating_services),
            (Some(1), Some(1))
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.conditions[0].status, "True");
    }

    #[test]
    fn an_unevaluable_selector_makes_the_policy_not_ready() {
        let p = policy(
            serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In"}]}}),
        );
        let s = compute(&p, &[], &[], "t");
        assert_eq!(
            (
                s.conditions[0].status.as_ref(),
                s.conditions[0].reason.as_ref()
            ),
            ("False", "InvalidSelector")
        );
    }
}

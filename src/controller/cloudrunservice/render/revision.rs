//! Revision-level scalars: the identity and execution environment every Cloud Run template has
//! ([`IDENTITY`], shared with jobs), and a revision's concurrency, timeout, instance scaling and
//! session affinity ([`ASPECT`]).

use google_cloud_run_v2::model::{ExecutionEnvironment, RevisionScaling, Service};
use google_cloud_wkt::Duration;

use super::{Aspect, Resolved, Shape, TemplateAspect, UNMANAGED, template, template_mut};
use crate::api::v1alpha1::{self as api, CloudRunService, Workload};

/// Cloud Run's default request concurrency.
pub const DEFAULT_CONCURRENCY: i32 = 80;
/// Cloud Run's default request timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 300;

pub(super) const ASPECT: Aspect = Aspect {
    name: "revision",
    render,
    shape,
    update,
};

pub(super) const IDENTITY: TemplateAspect = TemplateAspect {
    name: "identity",
    render: render_identity,
    shape: shape_identity,
    update: update_identity,
};

fn render_identity(w: &Workload, _: &Resolved, svc: &mut Service) {
    let t = template_mut(svc);
    t.service_account = w.service_account.unwrap_or_default().to_owned();
    t.execution_environment = match w.execution_environment {
        api::ExecutionEnvironment::Gen2 => ExecutionEnvironment::Gen2,
        api::ExecutionEnvironment::Gen1 => ExecutionEnvironment::Gen1,
    };
}

fn shape_identity(svc: &Service, s: &mut Shape) {
    let t = template(svc);
    s.insert(
        "template.serviceAccount".into(),
        service_account_shape(&t.service_account),
    );
    let env = match t.execution_environment {
        ExecutionEnvironment::Unspecified => ExecutionEnvironment::Gen2,
        ref other => other.clone(),
    };
    s.insert("template.executionEnvironment".into(), format!("{env:?}"));
}

fn update_identity(out: &mut Service, desired: &Service) {
    let want = template(desired);
    let (account, environment) = (
        want.service_account.clone(),
        want.execution_environment.clone(),
    );
    let t = template_mut(out);
    t.service_account = account;
    t.execution_environment = environment;
}

fn render(obj: &CloudRunService, _: &Resolved, svc: &mut Service) {
    let spec = &obj.spec;
    let t = template_mut(svc);
    t.max_instance_request_concurrency = spec
        .max_requests_per_instance
        .unwrap_or(DEFAULT_CONCURRENCY);
    t.timeout = Some(Duration::clamp(
        spec.timeout_seconds
            .map_or(DEFAULT_TIMEOUT_SECONDS, i64::from),
        0,
    ));
    t.scaling = spec.scaling.as_ref().map(|s| {
        RevisionScaling::new()
            .set_min_instance_count(s.min_instances.unwrap_or(0))
            .set_max_instance_count(s.max_instances.unwrap_or(0))
    });
    t.session_affinity = spec.session_affinity;
}

fn shape(svc: &Service, s: &mut Shape) {
    let t = template(svc);
    let concurrency = match t.max_instance_request_concurrency {
        0 => DEFAULT_CONCURRENCY,
        n => n,
    };
    s.insert(
        "template.maxInstanceRequestConcurrency".into(),
        concurrency.to_string(),
    );
    s.insert(
        "template.timeout".into(),
        t.timeout
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_SECONDS, Duration::seconds)
            .to_string(),
    );
    let scaling = t.scaling.clone().unwrap_or_default();
    s.insert(
        "template.scaling.minInstanceCount".into(),
        scaling.min_instance_count.to_string(),
    );
    s.insert(
        "template.scaling.maxInstanceCount".into(),
        match scaling.max_instance_count {
            0 => UNMANAGED.to_owned(),
            n => n.to_string(),
        },
    );
    s.insert(
        "template.sessionAffinity".into(),
        t.session_affinity.to_string(),
    );
}

fn update(out: &mut Service, desired: &Service) {
    let want = template(desired).into_owned();
    let t = template_mut(out);
    t.max_instance_request_concurrency = want.max_instance_request_concurrency;
    t.timeout = want.timeout;
    t.scaling = want.scaling;
    t.session_affinity = want.session_affinity;
}

/// The Compute Engine default account is what Cloud Run uses when none is set.
fn service_account_shape(sa: &str) -> String {
    if sa.ends_with("-compute@developer.gserviceaccount.com") {
        String::new()
    } else {
        sa.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_run_defaults_shape_like_an_unset_spec() {
        let mut unset = Shape::new();
        shape(&Service::new(), &mut unset);
        shape_identity(&Service::new(), &mut unset);
        let filled = Service::new().set_template(
            google_cloud_run_v2::model::RevisionTemplate::new()
                .set_service_account("123-compute@developer.gserviceaccount.com")
                .set_execution_environment(ExecutionEnvironment::Gen2)
                .set_max_instance_request_concurrency(80)
                .set_timeout(Duration::clamp(300, 0)),
        );
        let mut google = Shape::new();
        shape(&filled, &mut google);
        shape_identity(&filled, &mut google);
        assert_eq!(unset, google);
    }
}

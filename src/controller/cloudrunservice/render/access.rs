//! Who gets through to the service besides `roles/run.invoker`: Identity-Aware Proxy, the
//! invoker IAM check itself, and the extra audiences ID tokens may carry.

use std::collections::BTreeSet;

use google_cloud_run_v2::model::Service;

use super::{Aspect, Resolved, Shape};
use crate::api::v1alpha1::CloudRunService;

pub(super) const ASPECT: Aspect = Aspect {
    name: "access",
    render,
    shape,
    update,
};

fn render(obj: &CloudRunService, _: &Resolved, svc: &mut Service) {
    let spec = &obj.spec;
    svc.iap_enabled = spec.iap_enabled;
    svc.invoker_iam_disabled = spec.access.invoker_iam_disabled;
    svc.custom_audiences = spec.custom_audiences.clone();
}

fn shape(svc: &Service, s: &mut Shape) {
    s.insert("iapEnabled".into(), svc.iap_enabled.to_string());
    s.insert(
        "invokerIamDisabled".into(),
        svc.invoker_iam_disabled.to_string(),
    );
    // A set: Cloud Run neither orders nor repeats audiences meaningfully.
    let audiences: BTreeSet<&String> = svc.custom_audiences.iter().collect();
    s.insert("customAudiences".into(), format!("{audiences:?}"));
}

fn update(out: &mut Service, desired: &Service) {
    out.iap_enabled = desired.iap_enabled;
    out.invoker_iam_disabled = desired.invoker_iam_disabled;
    out.custom_audiences = desired.custom_audiences.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_compare_as_a_set() {
        let shaped = |a: &[&str]| {
            let mut s = Shape::new();
            shape(&Service::new().set_custom_audiences(a.to_vec()), &mut s);
            s["customAudiences"].clone()
        };
        assert_eq!(shaped(&["b", "a"]), shaped(&["a", "b"]));
        assert_ne!(shaped(&["a"]), shaped(&["a", "b"]));
    }

    #[test]
    fn an_update_sets_iap_and_the_invoker_check() {
        let mut out = Service::new().set_iap_enabled(true);
        let desired = Service::new().set_invoker_iam_disabled(true);
        update(&mut out, &desired);
        assert!(!out.iap_enabled);
        assert!(out.invoker_iam_disabled);
    }
}

//! Service-level fields: labels, ingress, the default URL, Binary Authorization.

use std::collections::{BTreeMap, HashMap};

use google_cloud_run_v2::model::{
    BinaryAuthorization, IngressTraffic, Service, binary_authorization::BinauthzMethod,
};

use super::{Aspect, Resolved, Shape};
use crate::api::v1alpha1::{self as api, CloudRunService, Ingress};
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_LABEL};

/// Label key prefixes Google reserves (and may set itself); never compared, never written.
pub const RESERVED_LABEL_PREFIXES: [&str; 5] = [
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
    "goog",
];

pub(super) const ASPECT: Aspect = Aspect {
    name: "service",
    render,
    shape,
    update,
};

fn reserved(key: &str) -> bool {
    RESERVED_LABEL_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The labels of a Google resource runwarden manages for the object with `uid`: the spec's,
/// with runwarden's `managed-by` and `runwarden-owner`.
pub fn owned_labels(spec: &BTreeMap<String, String>, uid: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> =
        spec.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    labels.insert(OWNER_LABEL.to_owned(), uid.to_owned());
    labels
}

/// Cloud Run's Binary Authorization settings for the spec's.
pub fn binary_authorization(b: Option<&api::BinaryAuthorization>) -> Option<BinaryAuthorization> {
    b.map(|b| {
        let method = match (&b.policy, b.use_default) {
            (Some(policy), _) => BinauthzMethod::Policy(policy.clone()),
            (None, use_default) => BinauthzMethod::UseDefault(use_default.unwrap_or(true)),
        };
        BinaryAuthorization::new()
            .set_binauthz_method(Some(method))
            .set_breakglass_justification(b.breakglass_justification.clone().unwrap_or_default())
    })
}

/// The labels as compared: Google's reserved ones left out.
pub fn labels_shape(labels: &HashMap<String, String>) -> String {
    let labels: BTreeMap<_, _> = labels.iter().filter(|(k, _)| !reserved(k)).collect();
    format!("{labels:?}")
}

/// Google's reserved labels of `actual` with the desired ones.
pub fn merged_labels(
    actual: &HashMap<String, String>,
    desired: &HashMap<String, String>,
) -> HashMap<String, String> {
    actual
        .iter()
        .filter(|(k, _)| reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(desired.clone())
        .collect()
}

fn render(obj: &CloudRunService, resolved: &Resolved, svc: &mut Service) {
    let spec = &obj.spec;
    // Built from source: Google's metadata of how (it starts no build).
    svc.build_config = spec.build.as_deref().map(|b| {
        google_cloud_run_v2::model::BuildConfig::new()
            .set_source_location(crate::controller::cloudrunservice::build::source_location(
                b,
            ))
            .set_function_target(b.function_target.clone().unwrap_or_default())
            .set_image_uri(crate::controller::cloudrunservice::build::image_uri(
                obj,
                b,
                &resolved.project,
            ))
            .set_base_image(b.base_image.clone().unwrap_or_default())
            .set_enable_automatic_updates(b.automatic_updates)
            .set_worker_pool(b.worker_pool.clone().unwrap_or_default())
            .set_environment_variables(b.environment_variables.clone())
            .set_service_account(b.service_account.clone().unwrap_or_default())
    });
    svc.labels = owned_labels(
        &spec.labels,
        obj.metadata.uid.as_deref().unwrap_or_default(),
    );
    svc.ingress = match spec.ingress {
        Ingress::Internal => IngressTraffic::InternalOnly,
        Ingress::InternalAndCloudLoadBalancing => IngressTraffic::InternalLoadBalancer,
        Ingress::All => IngressTraffic::All,
    };
    svc.default_uri_disabled = spec.default_uri_disabled;
    svc.binary_authorization = binary_authorization(spec.binary_authorization.as_deref());
}

fn shape(svc: &Service, s: &mut Shape) {
    s.insert("labels".into(), labels_shape(&svc.labels));
    let ingress = match svc.ingress {
        IngressTraffic::Unspecified => IngressTraffic::All,
        ref other => other.clone(),
    };
    s.insert("ingress".into(), format!("{ingress:?}"));
    s.insert(
        "defaultUriDisabled".into(),
        svc.default_uri_disabled.to_string(),
    );
    s.insert(
        "binaryAuthorization".into(),
        binauthz_shape(svc.binary_authorization.as_ref()),
    );
    // Its input fields only (`name` is output only).
    s.insert(
        "buildConfig".into(),
        svc.build_config.as_ref().map_or_else(String::new, |b| {
            let mut env: Vec<_> = b.environment_variables.iter().collect();
            env.sort();
            format!(
                "{}|{}|{}|{}|{}|{}|{}|{env:?}",
                b.source_location,
                b.function_target,
                b.image_uri,
                b.base_image,
                b.enable_automatic_updates,
                b.worker_pool,
                b.service_account
            )
        }),
    );
}

fn update(out: &mut Service, desired: &Service) {
    out.labels = merged_labels(&out.labels, &desired.labels);
    out.ingress = desired.ingress.clone();
    out.default_uri_disabled = desired.default_uri_disabled;
    out.binary_authorization = desired.binary_authorization.clone();
    out.build_config = desired.build_config.clone();
}

/// Binary Authorization as compared: off and absent alike.
pub fn binauthz_shape(b: Option<&BinaryAuthorization>) -> String {
    let Some(b) = b else { return "none".into() };
    let method = match &b.binauthz_method {
        None | Some(BinauthzMethod::UseDefault(false)) => "none".to_owned(),
        Some(BinauthzMethod::UseDefault(true)) => "default".to_owned(),
        Some(BinauthzMethod::Policy(p)) => format!("policy:{p}"),
        Some(other) => format!("{other:?}"),
    };
    if b.breakglass_justification.is_empty() {
        method
    } else {
        format!("{method}|breakglass:{}", b.breakglass_justification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_authorization_off_and_absent_are_the_same_shape() {
        let off =
            BinaryAuthorization::new().set_binauthz_method(Some(BinauthzMethod::UseDefault(false)));
        assert_eq!(binauthz_shape(None), binauthz_shape(Some(&off)));
        let on = BinaryAuthorization::new()
            .set_binauthz_method(Some(BinauthzMethod::UseDefault(true)))
            .set_breakglass_justification("incident-42");
        assert_eq!(binauthz_shape(Some(&on)), "default|breakglass:incident-42");
    }

    #[test]
    fn google_labels_are_neither_compared_nor_dropped() {
        let mut actual = Service::new()
            .set_labels([("run.googleapis.com/satisfiesPzs", "true"), ("team", "old")]);
        let desired = Service::new().set_labels([("team", "payments")]);
        let mut a = Shape::new();
        shape(&actual, &mut a);
        assert_eq!(a["labels"], r#"{"team": "old"}"#);
        update(&mut actual, &desired);
        assert_eq!(actual.labels.len(), 2);
        assert_eq!(actual.labels["team"], "payments");
        assert_eq!(actual.labels["run.googleapis.com/satisfiesPzs"], "true");
    }
}

//! The CustomResourceDefinitions, generated from the Rust types, and the admission policies
//! generated from the guardrails' rule table (`runwarden crd`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::v1alpha1::{CloudRunJob, CloudRunService, RunSecurityPolicy, VpcAccessConnector};

/// Every CRD runwarden serves.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        CloudRunService::crd(),
        CloudRunJob::crd(),
        VpcAccessConnector::crd(),
        RunSecurityPolicy::crd(),
    ]
}

/// What `runwarden crd` prints: [`crds_yaml`] then [`admission_yaml`], i.e. `crds/runwarden.dev.yaml`
/// followed by `crds/admission.yaml` (so `kubectl apply --server-side -f crds/` installs both).
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    Ok(crds_yaml()? + &admission_yaml()?)
}

/// The guardrails' ValidatingAdmissionPolicies and bindings (see [`crate::policy::admission`]),
/// exactly as committed in `crds/admission.yaml`.
pub fn admission_yaml() -> Result<String, serde_yaml::Error> {
    crate::policy::admission::to_yaml()
}

/// All CRDs as one multi-document YAML, exactly as committed in `crds/runwarden.dev.yaml`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

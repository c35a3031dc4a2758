//! The CustomResourceDefinitions, generated from the Rust types (`runwarden crd`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::v1alpha1::{CloudRunService, RunSecurityPolicy, VpcAccessConnector};

/// Every CRD runwarden serves.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        CloudRunService::crd(),
        VpcAccessConnector::crd(),
        RunSecurityPolicy::crd(),
    ]
}

/// All CRDs as one multi-document YAML, exactly as committed in `crds/`.
pub fn to_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

//! Pure validation of a CloudRunService.
//!
//! The CRD's CEL rules reject these cases at admission on clusters that evaluate them; this is
//! the same check for objects admitted without them (Kubernetes 1.24 has CEL off by default, or
//! objects stored before a rule existed), reported as a condition instead of a log line.

use super::{ENCRYPTION_READY, SERVICE_READY, render::RESERVED_LABEL_PREFIXES};
use crate::api::v1alpha1::{CloudRunService, RevocationAction};
use crate::api::{MANAGED_BY_LABEL, OWNER_LABEL};
use crate::controller::conditions::Cond;
use crate::error::Error;

/// Member prefixes Cloud Run accepts in `roles/run.invoker` from a spec.
const MEMBER_PREFIXES: [&str; 6] = [
    "user:",
    "group:",
    "serviceAccount:",
    "domain:",
    "principal://",
    "principalSet://",
];

/// `Ok` when the spec can be deployed; else the failing condition and the error to return.
pub fn validate(obj: &CloudRunService) -> Result<(), Box<(Cond, Error)>> {
    let spec = &obj.spec;
    if let Some(enc) = &spec.encryption {
        let location = enc.kms_key.split('/').nth(3).unwrap_or_default();
        if location != spec.region {
            let message = format!(
                "spec.encryption.kmsKey is in location {location:?} but the service is in {:?}: Cloud Run needs a key in the service's region",
                spec.region
            );
            return Err(Box::new((
                Cond::fail(ENCRYPTION_READY, "LocationMismatch", &message),
                Error::Spec {
                    reason: "LocationMismatch",
                    message,
                },
            )));
        }
    }
    let problems = problems(obj);
    if problems.is_empty() {
        return Ok(());
    }
    let message = problems.join("; ");
    Err(Box::new((
        Cond::fail(SERVICE_READY, "InvalidSpec", &message),
        Error::Spec {
            reason: "InvalidSpec",
            message,
        },
    )))
}

fn problems(obj: &CloudRunService) -> Vec<String> {
    let spec = &obj.spec;
    let mut out = vec![];
    let id = obj.service_id();
    if !valid_service_id(&id) {
        out.push(format!("service name {id:?} must match ^[a-z]([-a-z0-9]{{0,47}}[a-z0-9])?$ (set spec.serviceName)"));
    }
    if spec.containers.is_empty() {
        out.push("spec.containers: at least one container is required".into());
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if c.image.trim().is_empty() {
            out.push(format!("spec.containers[{i}].image must not be empty"));
        }
        for e in &c.env {
            if e.value.is_some() && e.secret_ref.is_some() {
                out.push(format!(
                    "spec.containers[{i}].env[{}]: set value or secretRef, not both",
                    e.name
                ));
            }
        }
    }
    if let Some(egress) = &spec.egress {
        let set = [
            egress.direct_vpc.is_some(),
            egress.connector_ref.is_some(),
            egress.connector.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            out.push("spec.egress: set exactly one of directVpc, connectorRef or connector".into());
        }
        if let Some(d) = &egress.direct_vpc
            && d.network.is_none()
            && d.subnetwork.is_none()
        {
            out.push("spec.egress.directVpc: set network, subnetwork or both".into());
        }
    }
    if let Some(b) = &spec.binary_authorization
        && b.use_default.is_some() == b.policy.is_some()
    {
        out.push("spec.binaryAuthorization: set exactly one of useDefault or policy".into());
    }
    if let Some(enc) = &spec.encryption
        && enc.shutdown_hours.is_some()
        && enc.revocation_action != RevocationAction::Shutdown
    {
        out.push(
            "spec.encryption.shutdownHours is only allowed with revocationAction: Shutdown".into(),
        );
    }
    if let Some(s) = &spec.scaling
        && let (Some(min), Some(max)) = (s.min_instances, s.max_instances)
        && min > max
    {
        out.push(format!(
            "spec.scaling: minInstances ({min}) must not exceed maxInstances ({max})"
        ));
    }
    for key in spec.labels.keys() {
        if RESERVED_LABEL_PREFIXES.iter().any(|p| key.starts_with(p))
            || key == MANAGED_BY_LABEL
            || key == OWNER_LABEL
        {
            out.push(format!("spec.labels: key {key:?} is reserved"));
        }
    }
    for member in &spec.access.invokers {
        if !MEMBER_PREFIXES.iter().any(|p| member.starts_with(p))
            || member.len() <= member.find([':', '/']).unwrap_or(0) + 1
        {
            out.push(format!(
                "spec.access.invokers: {member:?} is not an IAM member (user:, group:, serviceAccount:, domain:, principal://, principalSet://); use allowUnauthenticated for allUsers"
            ));
        }
    }
    out
}

fn valid_service_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 49
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !id.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{
        CloudRunServiceSpec, Container, Egress, Encryption, LocalObjectReference,
    };

    fn obj(spec: serde_json::Value) -> CloudRunService {
        let mut base = serde_json::json!({"region": "europe-west1", "containers": [{"image": "europe-docker.pkg.dev/p/r/app@sha256:abc"}]});
        base.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let spec: CloudRunServiceSpec = serde_json::from_value(base).unwrap();
        CloudRunService::new("payments", spec)
    }

    #[test]
    fn a_minimal_spec_is_valid() {
        assert!(validate(&obj(serde_json::json!({}))).is_ok());
    }

    #[test]
    fn a_key_in_another_region_is_a_location_mismatch_on_encryption() {
        let mut o = obj(serde_json::json!({}));
        o.spec.encryption = Some(Encryption {
            kms_key: "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k".into(),
            revocation_action: RevocationAction::PreventNew,
            shutdown_hours: None,
            grant_service_agent: true,
        });
        let (cond, err) = *validate(&o).unwrap_err();
        assert_eq!(
            (cond.type_, cond.reason.as_str()),
            (ENCRYPTION_READY, "LocationMismatch")
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn every_problem_is_named_in_one_message() {
        let mut o = obj(
            serde_json::json!({"labels": {"goog-x": "1"}, "access": {"invokers": ["allUsers"]}}),
        );
        o.spec.egress = Some(Egress {
            connector: Some("projects/p/locations/europe-west1/connectors/c".into()),
            connector_ref: Some(LocalObjectReference { name: "c".into() }),
            ..Egress::default()
        });
        o.spec.containers.push(Container {
            image: " ".into(),
            ..Container::default()
        });
        let (cond, _) = *validate(&o).unwrap_err();
        assert_eq!(cond.reason, "InvalidSpec");
        for needle in [
            "spec.egress",
            "spec.containers[1].image",
            "goog-x",
            "allUsers",
        ] {
            assert!(
                cond.message.contains(needle),
                "{needle} missing from {}",
                cond.message
            );
        }
    }

    #[test]
    fn service_ids_follow_cloud_run_rules() {
        assert!(valid_service_id("a"));
        assert!(valid_service_id("payments-api-2"));
        assert!(!valid_service_id("Payments"));
        assert!(!valid_service_id("2fa"));
        assert!(!valid_service_id("ends-"));
        assert!(!valid_service_id(&"a".repeat(50)));
    }
}

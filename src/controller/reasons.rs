//! Condition reasons, as users, alerts and the Argo CD health scripts see them.
//!
//! A reason either says runwarden is still working towards Ready by itself ([`PROGRESSING`]),
//! or that something needs attention: a spec change, or a fix outside the spec (a grant, a key).

/// The spec cannot work as written.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// A Google resource of that name exists and is not this object's.
pub const ALREADY_EXISTS: &str = "AlreadyExists";
/// `Adopt` names a Google resource that another live object owns.
pub const ALREADY_OWNED: &str = "AlreadyOwned";
/// `--require-namespace-identity` and the namespace names no Google service account.
pub const IDENTITY_NOT_CONFIGURED: &str = "IdentityNotConfigured";
/// The project now resolves elsewhere than where the object's Google resource lives.
pub const PROJECT_CHANGED: &str = "ProjectChanged";
/// The key is not in the service's region.
pub const LOCATION_MISMATCH: &str = "LocationMismatch";
/// The connector is not in the service's region.
pub const REGION_MISMATCH: &str = "RegionMismatch";
/// Google refused an invoker member.
pub const INVALID_MEMBER: &str = "InvalidMember";
/// A Google identity lacks a permission.
pub const PERMISSION_DENIED: &str = "PermissionDenied";
/// Google's quota was exhausted.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// Google could not be reached or failed internally.
pub const UNAVAILABLE: &str = "Unavailable";
/// A concurrent change (IAM etag) won.
pub const CONFLICT: &str = "Conflict";
/// A deploy is running.
pub const RECONCILING: &str = "Reconciling";
/// Cloud Run could not deploy the service.
pub const DEPLOY_FAILED: &str = "DeployFailed";
/// Google's delete operation failed: the resource is still there (retried with backoff).
pub const DELETE_FAILED: &str = "DeleteFailed";
/// The latest revision failed.
pub const REVISION_FAILED: &str = "RevisionFailed";
/// The Google resource is being created.
pub const CREATING: &str = "Creating";
/// The Google resource is being deleted.
pub const DELETING: &str = "Deleting";
/// Not evaluated yet.
pub const PENDING: &str = "Pending";
/// The referenced connector does not exist.
pub const CONNECTOR_NOT_FOUND: &str = "ConnectorNotFound";
/// The referenced connector is not Ready.
pub const CONNECTOR_NOT_READY: &str = "ConnectorNotReady";
/// The key's primary version is not enabled.
pub const KEY_DISABLED: &str = "KeyDisabled";
/// The key's primary version is destroyed or scheduled for destruction.
pub const KEY_DESTROYED: &str = "KeyDestroyed";
/// The key does not exist.
pub const KEY_NOT_FOUND: &str = "KeyNotFound";
/// No RunSecurityPolicy applies.
pub const NO_POLICY: &str = "NoPolicy";
/// Every applicable RunSecurityPolicy passes.
pub const COMPLIANT: &str = "Compliant";
/// An `Enforce` RunSecurityPolicy is violated: nothing is changed in Google.
pub const VIOLATION: &str = "Violation";
/// An `Audit` RunSecurityPolicy is violated: deployed anyway.
pub const AUDIT_VIOLATION: &str = "AuditViolation";
/// A connector's deletion waits for the services using it.
pub const IN_USE: &str = "InUse";
/// A connector differs from its spec and Google cannot update connectors.
pub const SPEC_MISMATCH: &str = "SpecMismatch";
/// Google reports the connector broken.
pub const CONNECTOR_ERROR: &str = "ConnectorError";
/// Google differs from the spec and runwarden does not write (`managementPolicy: Observe`).
pub const DRIFTED: &str = "Drifted";
/// The thing is not configured (counts as True).
pub const NOT_CONFIGURED: &str = "NotConfigured";
/// A CloudRunJob's `runToken` execution is running (`JobReady` Unknown).
pub const EXECUTION_RUNNING: &str = "ExecutionRunning";
/// A CloudRunJob's `runToken` execution failed: a new token or generation is needed.
pub const EXECUTION_FAILED: &str = "ExecutionFailed";
/// A build from source is running (`spec.build`).
pub const BUILDING: &str = "Building";
/// A build from source failed: the running revision keeps serving until the spec changes.
pub const BUILD_FAILED: &str = "BuildFailed";

/// Reasons under which runwarden keeps working towards Ready by itself (Argo CD:
/// `Progressing`). Every other `Ready=False` reason needs someone to act (`Degraded`).
pub const PROGRESSING: [&str; 9] = [
    RECONCILING,
    CREATING,
    DELETING,
    CONNECTOR_NOT_READY,
    CONNECTOR_NOT_FOUND,
    QUOTA_EXCEEDED,
    UNAVAILABLE,
    CONFLICT,
    IN_USE,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons a health script treats as progressing (its `progressing` table).
    fn lua_progressing(script: &str) -> Vec<String> {
        let start = script
            .find("local progressing = {")
            .expect("a progressing table");
        let body = &script[start..];
        let end = body.find('}').expect("the table ends");
        body[..end]
            .lines()
            .filter_map(|l| l.trim().strip_suffix("= true,"))
            .map(|r| r.trim().to_owned())
            .collect()
    }

    #[test]
    fn the_argo_cd_health_scripts_use_the_same_progressing_reasons() {
        let services = lua_progressing(include_str!(
            "../../deploy/argocd/runwarden.dev/CloudRunService/health.lua"
        ));
        let connectors = lua_progressing(include_str!(
            "../../deploy/argocd/runwarden.dev/VpcAccessConnector/health.lua"
        ));
        for reason in services.iter().chain(&connectors) {
            assert!(
                PROGRESSING.contains(&reason.as_str()),
                "{reason} is progressing for Argo CD but not for runwarden"
            );
        }
        // Every progressing reason a service can show is in its script; a connector shows
        // only its own (no connector or egress reasons of a service).
        for reason in PROGRESSING.iter().filter(|r| **r != IN_USE) {
            assert!(
                services.iter().any(|s| s == reason),
                "{reason} missing from the CloudRunService script"
            );
        }
        for reason in [
            CREATING,
            DELETING,
            QUOTA_EXCEEDED,
            UNAVAILABLE,
            CONFLICT,
            IN_USE,
        ] {
            assert!(
                connectors.iter().any(|s| s == reason),
                "{reason} missing from the VpcAccessConnector script"
            );
        }
    }

    #[test]
    fn the_job_script_is_the_services_plus_a_running_execution() {
        let jobs = lua_progressing(include_str!(
            "../../deploy/argocd/runwarden.dev/CloudRunJob/health.lua"
        ));
        for reason in &jobs {
            assert!(
                crate::controller::cloudrunjob::progressing(reason),
                "{reason} is progressing for Argo CD but not for runwarden's jobs"
            );
        }
        for reason in PROGRESSING
            .iter()
            .filter(|r| **r != IN_USE)
            .chain([&EXECUTION_RUNNING])
        {
            assert!(
                jobs.iter().any(|s| s == reason),
                "{reason} missing from the CloudRunJob script"
            );
        }
        assert!(!crate::controller::cloudrunjob::progressing(
            EXECUTION_FAILED
        ));
    }
}

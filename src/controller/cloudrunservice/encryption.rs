//! CMEK: `EncryptionReady`, the Cloud Run service agent's grant on the key, and the key's health.
//!
//! Every pass of a service with `spec.encryption` (so every resync too):
//!
//! 1. the project's Cloud Run service agent, `service-{number}@serverless-robot-prod.iam.gserviceaccount.com`,
//!    from the project number (Resource Manager, cached for the life of the process);
//! 2. `cryptoKeys.get`: the key exists (`KeyNotFound`) and its primary version is `ENABLED`
//!    (`KeyDisabled`; `KeyDestroyed` when destroyed or scheduled for destruction);
//! 3. the key's IAM policy: with `grantServiceAgent: true` (the default) a read-modify-write that
//!    adds the agent to the unconditioned binding of [`KMS_ROLE`] (policy version 3, etag, every
//!    other binding and condition kept, retried on `ABORTED`; no write when it is already bound);
//!    with `false` only a read, and `PermissionDenied` naming the member and role when missing.
//!
//! Every failure stops the pass before anything is deployed and is transient (backoff): a key is
//! re-enabled, restored or granted outside the spec. `LocationMismatch` is found earlier, by
//! validation, and waits for a spec change.
//!
//! # Grants are never removed
//!
//! runwarden adds the agent's binding but never removes it, not even when the last
//! CloudRunService using the key is deleted. The binding belongs to a project-wide identity that
//! every Cloud Run service of the project shares: services deployed by other tools, other
//! clusters or other runwarden installations may use the same key, and an IAM policy has no
//! labels to record who added a member. Removing it wrongly revokes the key for running services
//! (with `revocationAction: Shutdown`, Cloud Run stops them); keeping it lets one Google-managed
//! agent keep a role it only uses for this project's Cloud Run. Revoke it by hand when the key
//! is retired; the `KeyGranted` event says when runwarden added it.

use google_cloud_kms_v1::model::CryptoKey;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_run_v2::model::Service;
use kube::runtime::events::EventType;

use super::{Draft, ENCRYPTION_READY};
use crate::api::v1alpha1::CloudRunService;
use crate::controller::Context;
use crate::controller::conditions::Cond;
use crate::controller::iam;
use crate::error::{Error, Result, reason_of};
use crate::gcp::{Code, GcpError, run_service_agent};

/// The role Cloud Run's service agent needs on the key.
pub const KMS_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// Sets `EncryptionReady` (and `status.serviceAgent`); an error stops the pass before anything
/// is deployed.
pub(super) async fn ensure(
    obj: &CloudRunService,
    ctx: &Context,
    project: &str,
    d: &mut Draft,
) -> Result<()> {
    let Some(enc) = &obj.spec.encryption else {
        d.service_agent = None;
        d.set(Cond::ok(
            ENCRYPTION_READY,
            "NotConfigured",
            "no customer-managed encryption key",
        ));
        return Ok(());
    };
    let key = enc.kms_key.as_str();

    let number = ctx
        .project_number(project)
        .await
        .map_err(|e| google_failed(d, e))?;
    let agent = run_service_agent(&number);
    let member = format!("serviceAccount:{agent}");
    d.service_agent = Some(agent);

    let found = ctx
        .gcp
        .kms
        .get_crypto_key(key)
        .await
        .map_err(|e| google_failed(d, e))?;
    let primary = match usable(key, found.as_ref()) {
        Ok(primary) => primary,
        Err((reason, message)) => return Err(blocked(d, reason, message)),
    };

    if enc.grant_service_agent {
        let written = iam::read_modify_write(ctx.gcp.kms.as_ref(), key, |p| {
            iam::with_member(p, KMS_ROLE, &member)
        })
        .await
        .map_err(|e| match e.code {
            Code::PermissionDenied => {
                let message = format!(
                    "runwarden may not change the IAM policy of {key} ({}): give it cloudkms.cryptoKeys.setIamPolicy on the key, or set spec.encryption.grantServiceAgent: false and grant {KMS_ROLE} to {member} yourself",
                    e.message
                );
                blocked(d, "PermissionDenied", message)
            }
            _ => google_failed(d, e),
        })?;
        if written {
            ctx.event(
                obj,
                EventType::Normal,
                "KeyGranted",
                "SetIamPolicy",
                format!("granted {KMS_ROLE} on {key} to {member}"),
            )
            .await;
        }
    } else {
        let policy = ctx
            .gcp
            .kms
            .get_iam_policy(key)
            .await
            .map_err(|e| google_failed(d, e))?;
        if !iam::has_member(&policy, KMS_ROLE, &member) {
            return Err(blocked(d, "PermissionDenied", missing_grant(key, &member)));
        }
    }
    d.set(Cond::ok(
        ENCRYPTION_READY,
        "KeyUsable",
        format!(
            "key {key} is usable: primary version {primary} is ENABLED and {member} holds {KMS_ROLE}"
        ),
    ));
    Ok(())
}

/// The id of the key's primary version when it can encrypt, else the reason and message.
fn usable(key: &str, found: Option<&CryptoKey>) -> Result<String, (&'static str, String)> {
    let Some(found) = found else {
        return Err((
            "KeyNotFound",
            format!("Cloud KMS key {key} does not exist (or runwarden may not read it)"),
        ));
    };
    let Some(primary) = &found.primary else {
        return Err((
            "KeyDisabled",
            format!("Cloud KMS key {key} has no primary version to encrypt with"),
        ));
    };
    let version = primary
        .name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let state = primary.state.name().unwrap_or("UNKNOWN");
    match primary.state {
        CryptoKeyVersionState::Enabled => Ok(version),
        CryptoKeyVersionState::Destroyed
        | CryptoKeyVersionState::DestroyScheduled
        | CryptoKeyVersionState::PendingExternalDestruction => Err((
            "KeyDestroyed",
            format!(
                "primary version {version} of Cloud KMS key {key} is {state}: restore it, or make an enabled version primary"
            ),
        )),
        _ => Err((
            "KeyDisabled",
            format!(
                "primary version {version} of Cloud KMS key {key} is {state}, not ENABLED: enable it to deploy"
            ),
        )),
    }
}

/// What to tell a team that manages the key's IAM itself.
fn missing_grant(key: &str, member: &str) -> String {
    format!(
        "{member} does not hold {KMS_ROLE} on {key} and spec.encryption.grantServiceAgent is false: grant it, e.g. `gcloud kms keys add-iam-policy-binding {key} --member={member} --role={KMS_ROLE}`"
    )
}

/// Whether Cloud Run's last rollout of the service's current generation failed because of the
/// encryption key (terminal condition `ENCRYPTION_KEY_PERMISSION_DENIED` or
/// `ENCRYPTION_KEY_CHECK_FAILED`). Cloud Run does not retry such a rollout by itself.
pub(super) fn failed_on_key(actual: &Service) -> bool {
    use google_cloud_run_v2::model::condition::{CommonReason, Reasons, State};
    let Some(terminal) = &actual.terminal_condition else {
        return false;
    };
    !actual.reconciling
        && actual.observed_generation == actual.generation
        && terminal.state == State::ConditionFailed
        && matches!(
            terminal.reasons,
            Some(Reasons::Reason(
                CommonReason::EncryptionKeyPermissionDenied
                    | CommonReason::EncryptionKeyCheckFailed
            ))
        )
}

/// Records a key that cannot be used (yet) and returns the transient error.
fn blocked(d: &mut Draft, reason: &'static str, message: String) -> Error {
    d.set(Cond::fail(ENCRYPTION_READY, reason, &message));
    Error::Blocked { reason, message }
}

/// Records a failed Google call (Resource Manager or KMS) on `EncryptionReady`.
fn google_failed(d: &mut Draft, e: GcpError) -> Error {
    d.set(Cond::fail(
        ENCRYPTION_READY,
        reason_of(e.code),
        e.message.clone(),
    ));
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_kms_v1::model::CryptoKeyVersion;
    use google_cloud_run_v2::model::{Condition, condition};

    const KEY: &str = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k";

    fn key(state: CryptoKeyVersionState) -> CryptoKey {
        CryptoKey::new().set_name(KEY).set_primary(
            CryptoKeyVersion::new()
                .set_name(format!("{KEY}/cryptoKeyVersions/3"))
                .set_state(state),
        )
    }

    #[test]
    fn only_an_enabled_primary_version_is_usable() {
        assert_eq!(
            usable(KEY, Some(&key(CryptoKeyVersionState::Enabled))),
            Ok("3".to_owned())
        );
        let reason = |k: Option<&CryptoKey>| usable(KEY, k).unwrap_err().0;
        assert_eq!(reason(None), "KeyNotFound");
        assert_eq!(
            reason(Some(&key(CryptoKeyVersionState::Disabled))),
            "KeyDisabled"
        );
        assert_eq!(
            reason(Some(&key(CryptoKeyVersionState::DestroyScheduled))),
            "KeyDestroyed"
        );
        assert_eq!(
            reason(Some(&key(CryptoKeyVersionState::Destroyed))),
            "KeyDestroyed"
        );
        assert_eq!(reason(Some(&CryptoKey::new().set_name(KEY))), "KeyDisabled");
        let (_, message) = usable(KEY, Some(&key(CryptoKeyVersionState::Disabled))).unwrap_err();
        assert!(
            message.contains("DISABLED") && message.contains(KEY),
            "{message}"
        );
    }

    #[test]
    fn the_missing_grant_message_names_member_role_and_key() {
        let m = missing_grant(KEY, "serviceAccount:service-1@x");
        for part in [
            KEY,
            "serviceAccount:service-1@x",
            KMS_ROLE,
            "grantServiceAgent",
        ] {
            assert!(m.contains(part), "{m} lacks {part}");
        }
    }

    #[test]
    fn only_a_key_failure_of_the_current_generation_is_retried() {
        let failed = |reason: condition::CommonReason| {
            Service::new()
                .set_generation(2)
                .set_observed_generation(2)
                .set_terminal_condition(
                    Condition::new()
                        .set_state(condition::State::ConditionFailed)
                        .set_reason(reason),
                )
        };
        assert!(failed_on_key(&failed(
            condition::CommonReason::EncryptionKeyCheckFailed
        )));
        assert!(failed_on_key(&failed(
            condition::CommonReason::EncryptionKeyPermissionDenied
        )));
        assert!(!failed_on_key(&failed(
            condition::CommonReason::ContainerMissing
        )));
        assert!(!failed_on_key(
            &failed(condition::CommonReason::EncryptionKeyCheckFailed).set_observed_generation(1)
        ));
        assert!(!failed_on_key(
            &failed(condition::CommonReason::EncryptionKeyCheckFailed).set_reconciling(true)
        ));
        assert!(!failed_on_key(&Service::new()));
    }
}

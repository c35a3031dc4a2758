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

use super::ENCRYPTION_READY;
use super::observe::{Observed, Read, need};
use super::plan::Change;
use crate::api::v1alpha1::Workload;
use crate::controller::conditions::Cond;
use crate::controller::iam;
use crate::controller::reasons::{KEY_DESTROYED, KEY_DISABLED, KEY_NOT_FOUND, PERMISSION_DENIED};
use crate::error::{Error, reason_of};
use crate::gcp::{Code, GcpError, run_service_agent};

/// The role Cloud Run's service agent needs on the key.
pub const KMS_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// What the encryption step decided.
pub struct Decision {
    /// The project's Cloud Run service agent, once known.
    pub agent: Option<String>,
    /// `EncryptionReady` and the grant to make, or what stops the pass.
    pub result: Result<(Cond, Option<Change>), (Cond, Error)>,
}

/// `EncryptionReady`, `status.serviceAgent` and the key grant; a failure stops the pass before
/// anything is deployed.
pub fn plan(workload: &Workload, project: &str, obs: &Observed) -> Result<Decision, Read> {
    let Some(key) = workload.kms_key else {
        return Ok(Decision {
            agent: None,
            result: Ok((
                Cond::ok(
                    ENCRYPTION_READY,
                    "NotConfigured",
                    "no customer-managed encryption key",
                ),
                None,
            )),
        });
    };
    let stop = |agent: Option<String>, failure: (Cond, Error)| Decision {
        agent,
        result: Err(failure),
    };
    let number = match need(&obs.project_number, || {
        Read::ProjectNumber(project.to_owned())
    })? {
        Ok(number) => number,
        Err(e) => return Ok(stop(None, google_failed(e))),
    };
    let agent = run_service_agent(number);
    let member = format!("serviceAccount:{agent}");
    let found = match need(&obs.key, || Read::Key(key.to_owned()))? {
        Ok(found) => found,
        Err(e) => return Ok(stop(Some(agent), google_failed(e))),
    };
    let primary = match usable(key, found.as_ref()) {
        Ok(primary) => primary,
        Err((reason, message)) => return Ok(stop(Some(agent), blocked(reason, message))),
    };
    let policy = match need(&obs.key_policy, || Read::KeyPolicy(key.to_owned()))? {
        Ok(policy) => policy,
        Err(e) if workload.grant_service_agent && e.code == Code::PermissionDenied => {
            return Ok(stop(Some(agent), grant_denied(key, &member, e)));
        }
        Err(e) => return Ok(stop(Some(agent), google_failed(e))),
    };
    let grant = if workload.grant_service_agent {
        iam::with_member(policy, KMS_ROLE, &member).map(|policy| Change::GrantKey {
            key: key.to_owned(),
            member: member.clone(),
            policy,
        })
    } else if !iam::has_member(policy, KMS_ROLE, &member) {
        return Ok(stop(
            Some(agent),
            blocked(PERMISSION_DENIED, missing_grant(key, &member)),
        ));
    } else {
        None
    };
    let ready = Cond::ok(
        ENCRYPTION_READY,
        "KeyUsable",
        format!(
            "key {key} is usable: primary version {primary} is ENABLED and {member} holds {KMS_ROLE}"
        ),
    );
    Ok(Decision {
        agent: Some(agent),
        result: Ok((ready, grant)),
    })
}

/// Why runwarden could not change the key's IAM policy, and what to do about it.
pub(super) fn grant_denied(key: &str, member: &str, e: &GcpError) -> (Cond, Error) {
    blocked(
        PERMISSION_DENIED,
        format!(
            "runwarden may not change the IAM policy of {key} ({}): give it cloudkms.cryptoKeys.setIamPolicy on the key, or set spec.encryption.grantServiceAgent: false and grant {KMS_ROLE} to {member} yourself",
            e.message
        ),
    )
}

/// The id of the key's primary version when it can encrypt, else the reason and message.
fn usable(key: &str, found: Option<&CryptoKey>) -> Result<String, (&'static str, String)> {
    let Some(found) = found else {
        return Err((
            KEY_NOT_FOUND,
            format!("Cloud KMS key {key} does not exist (or runwarden may not read it)"),
        ));
    };
    let Some(primary) = &found.primary else {
        return Err((
            KEY_DISABLED,
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
            KEY_DESTROYED,
            format!(
                "primary version {version} of Cloud KMS key {key} is {state}: restore it, or make an enabled version primary"
            ),
        )),
        _ => Err((
            KEY_DISABLED,
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

/// A key that cannot be used (yet): the condition and the transient error.
fn blocked(reason: &'static str, message: String) -> (Cond, Error) {
    (
        Cond::fail(ENCRYPTION_READY, reason, &message),
        Error::Blocked { reason, message },
    )
}

/// A failed Google call (Resource Manager or KMS) on `EncryptionReady`.
pub(super) fn google_failed(e: &GcpError) -> (Cond, Error) {
    (
        Cond::fail(ENCRYPTION_READY, reason_of(e.code), e.message.clone()),
        e.clone().into(),
    )
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

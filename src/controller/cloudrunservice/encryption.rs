//! CMEK: `EncryptionReady`.

use super::{Draft, ENCRYPTION_READY};
use crate::api::v1alpha1::CloudRunService;
use crate::controller::Context;
use crate::controller::conditions::Cond;
use crate::error::Result;

/// Sets `EncryptionReady`; an error stops the pass before anything is deployed.
pub(super) async fn ensure(
    obj: &CloudRunService,
    _ctx: &Context,
    _project: &str,
    d: &mut Draft,
) -> Result<()> {
    d.set(match &obj.spec.encryption {
        None => Cond::ok(
            ENCRYPTION_READY,
            "NotConfigured",
            "no customer-managed encryption key",
        ),
        Some(enc) => Cond::ok(
            ENCRYPTION_READY,
            "Configured",
            format!("deploying with key {}", enc.kms_key),
        ),
    });
    Ok(())
}

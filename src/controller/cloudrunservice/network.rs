//! Egress: `NetworkReady`, and the connector name the template needs.

use super::{Draft, NETWORK_READY};
use crate::api::v1alpha1::CloudRunService;
use crate::controller::Context;
use crate::controller::conditions::Cond;
use crate::error::{Error, Result};

/// Sets `NetworkReady` and returns the full name of the connector of `egress.connectorRef`
/// once it can be used; an error stops the pass before anything is deployed.
pub(super) async fn resolve(
    obj: &CloudRunService,
    _ctx: &Context,
    _project: &str,
    d: &mut Draft,
) -> Result<Option<String>> {
    let Some(egress) = &obj.spec.egress else {
        d.set(Cond::ok(NETWORK_READY, "NotConfigured", "no VPC egress"));
        return Ok(None);
    };
    if let Some(direct) = &egress.direct_vpc {
        let target = direct
            .subnetwork
            .as_deref()
            .or(direct.network.as_deref())
            .unwrap_or_default();
        d.set(Cond::ok(
            NETWORK_READY,
            "DirectVpc",
            format!("Direct VPC egress through {target}"),
        ));
        return Ok(None);
    }
    if let Some(connector) = &egress.connector {
        d.set(Cond::ok(
            NETWORK_READY,
            "Connector",
            format!("egress through connector {connector}"),
        ));
        return Ok(None);
    }
    let name = egress
        .connector_ref
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let message = format!(
        "VpcAccessConnector {name}: connector references are not supported by this controller version yet"
    );
    d.set(Cond::fail(NETWORK_READY, "ConnectorNotFound", &message));
    Err(Error::Spec {
        reason: "ConnectorNotFound",
        message,
    })
}

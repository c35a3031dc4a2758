//! Egress: `NetworkReady`, and the connector name the template needs.
//!
//! - `egress.directVpc`: nothing to look up; the template names the network and subnetwork (see
//!   `render`).
//! - `egress.connectorRef`: the `VpcAccessConnector` of the same namespace must exist
//!   (`ConnectorNotFound`), be in the service's region (`RegionMismatch`, a spec change is
//!   needed) and be Ready (`ConnectorNotReady`); its `status.resourceName` is the full name.
//! - `egress.connector`: a connector not managed here, read from Google with the same checks.
//!
//! Missing and not-ready connectors are transient (`Error::Blocked`): the connector may be on
//! its way, and the controller reconciles the service again as soon as the connector changes.
//! Pure: the VpcAccessConnector comes from the controller's cache, an external connector from
//! [`Observed`].

use kube::{Resource, ResourceExt};

use super::NETWORK_READY;
use super::observe::{Observed, Read, need};
use crate::api::v1alpha1::{VpcAccessConnector, Workload};
use crate::controller::conditions::Cond;
use crate::controller::reasons::{CONNECTOR_NOT_FOUND, CONNECTOR_NOT_READY, REGION_MISMATCH};
use crate::controller::vpcaccessconnector;
use crate::error::{Error, reason_of};

/// `NetworkReady` and the full name of the connector of `egress.connectorRef` once it can be
/// used, or the condition and error that stop the pass before anything is deployed.
/// `connector` is the VpcAccessConnector `egress.connectorRef` names (from the cache of
/// `namespace`). The same for a service and a job.
pub fn plan(
    workload: &Workload,
    namespace: &str,
    connector: Option<&VpcAccessConnector>,
    obs: &Observed,
) -> Result<Decision, Read> {
    let Some(egress) = workload.egress else {
        return Ok(Ok((
            Cond::ok(NETWORK_READY, "NotConfigured", "no VPC egress"),
            None,
        )));
    };
    let region = workload.region;
    if let Some(direct) = &egress.direct_vpc {
        let target = direct
            .subnetwork
            .as_deref()
            .or(direct.network.as_deref())
            .unwrap_or_default();
        return Ok(Ok((
            Cond::ok(
                NETWORK_READY,
                "DirectVpc",
                format!("Direct VPC egress through {target}"),
            ),
            None,
        )));
    }
    if let Some(name) = &egress.connector {
        if let Some(location) = location_of(name)
            && location != region
        {
            return Ok(Err(region_mismatch(name, location, region)));
        }
        let actual = match need(&obs.connector, || Read::Connector(name.clone()))? {
            Ok(actual) => actual,
            Err(e) => {
                return Ok(Err((
                    Cond::fail(
                        NETWORK_READY,
                        reason_of(e.code),
                        format!("cannot read connector {name}: {}", e.message),
                    ),
                    e.clone().into(),
                )));
            }
        };
        let Some(actual) = actual else {
            return Ok(Err(blocked(
                CONNECTOR_NOT_FOUND,
                format!("connector {name} does not exist in Google"),
            )));
        };
        let (state, _) = vpcaccessconnector::state_condition(actual, name);
        if state != vpcaccessconnector::state::READY {
            return Ok(Err(blocked(
                CONNECTOR_NOT_READY,
                format!("connector {name} is {state}, not Ready"),
            )));
        }
        return Ok(Ok((
            Cond::ok(
                NETWORK_READY,
                "Connector",
                format!("egress through connector {name}"),
            ),
            None,
        )));
    }
    let Some(reference) = &egress.connector_ref else {
        // Validation refuses an egress with none of the three.
        return Ok(Ok((
            Cond::ok(NETWORK_READY, "NotConfigured", "no VPC egress"),
            None,
        )));
    };
    let Some(connector) = connector else {
        return Ok(Err(blocked(
            CONNECTOR_NOT_FOUND,
            format!(
                "VpcAccessConnector {} does not exist in namespace {}",
                reference.name, namespace
            ),
        )));
    };
    Ok(from_connector_object(connector, region).map(|(c, name)| (c, Some(name))))
}

/// `NetworkReady` with the connector to use, or what stops the pass.
pub type Decision = Result<(Cond, Option<String>), (Cond, Error)>;

/// The usable full name of a `VpcAccessConnector` for a service in `region`, or why not (pure,
/// apart from recording `NetworkReady`).
#[allow(clippy::result_large_err)] // Error's size is kube::Error's; this is not a hot path.
fn from_connector_object(
    connector: &VpcAccessConnector,
    region: &str,
) -> Result<(Cond, String), (Cond, Error)> {
    let name = connector.name_any();
    if connector.spec.region != region {
        return Err(region_mismatch(
            &format!("VpcAccessConnector {name}"),
            &connector.spec.region,
            region,
        ));
    }
    let status = connector.status.clone().unwrap_or_default();
    let full_name = status.resource_name.clone().unwrap_or_default();
    // A connector whose deletion waits for its services (this one among them) still serves them.
    let in_use = connector.meta().deletion_timestamp.is_some()
        && status.state.as_deref() == Some(vpcaccessconnector::state::READY)
        && crate::controller::conditions::find(&status.conditions, "Ready")
            .is_some_and(|c| c.reason == "InUse");
    if !(vpcaccessconnector::is_ready(connector) == Some(true) || in_use) || full_name.is_empty() {
        let why = crate::controller::conditions::find(&status.conditions, "Ready")
            .filter(|c| !c.message.is_empty())
            .map(|c| format!(" ({}: {})", c.reason, c.message))
            .unwrap_or_default();
        let state = status.state.as_deref().unwrap_or("not reconciled yet");
        let state = if connector.meta().deletion_timestamp.is_some() {
            "being deleted"
        } else {
            state
        };
        return Err(blocked(
            CONNECTOR_NOT_READY,
            format!("VpcAccessConnector {name} is {state}{why}"),
        ));
    }
    Ok((
        Cond::ok(
            NETWORK_READY,
            "Connector",
            format!("egress through connector {full_name} (VpcAccessConnector {name})"),
        ),
        full_name,
    ))
}

/// The `{location}` of `projects/{p}/locations/{location}/connectors/{c}`.
fn location_of(connector: &str) -> Option<&str> {
    let mut parts = connector.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("projects"), Some(_), Some("locations"), Some(location)) => Some(location),
        _ => None,
    }
}

fn blocked(reason: &'static str, message: String) -> (Cond, Error) {
    (
        Cond::fail(NETWORK_READY, reason, &message),
        Error::Blocked { reason, message },
    )
}

fn region_mismatch(what: &str, location: &str, region: &str) -> (Cond, Error) {
    let message = format!(
        "{what} is in region {location} but the service is in {region}: Cloud Run needs a connector in the service's region; reference one in {region}"
    );
    (
        Cond::fail(NETWORK_READY, REGION_MISMATCH, &message),
        Error::Spec {
            reason: REGION_MISMATCH,
            message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{Condition, VpcAccessConnectorStatus};

    fn connector(region: &str, ready: Option<&str>) -> VpcAccessConnector {
        let spec = serde_json::from_value(serde_json::json!({
            "region": region, "network": "default", "ipCidrRange": "10.8.0.0/28"
        }))
        .unwrap();
        let mut c = VpcAccessConnector::new("egress", spec);
        c.metadata.generation = Some(1);
        c.status = ready.map(|s| VpcAccessConnectorStatus {
            state: Some(if s == "True" { "Ready" } else { "Creating" }.into()),
            resource_name: Some("projects/p1/locations/europe-west1/connectors/egress".into()),
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: s.to_owned().into(),
                reason: if s == "True" { "Ready" } else { "Creating" }.into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        c
    }

    #[test]
    fn a_ready_connector_in_the_region_gives_its_full_name() {
        let (c, name) =
            from_connector_object(&connector("europe-west1", Some("True")), "europe-west1")
                .unwrap();
        assert_eq!(name, "projects/p1/locations/europe-west1/connectors/egress");
        assert_eq!(c.reason, "Connector");
    }

    #[test]
    fn not_ready_is_transient_and_another_region_needs_a_spec_change() {
        let (c, e) =
            from_connector_object(&connector("europe-west1", Some("Unknown")), "europe-west1")
                .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(c.reason, "ConnectorNotReady");
        let (c, e) =
            from_connector_object(&connector("europe-west1", None), "europe-west1").unwrap_err();
        assert!(e.is_transient());
        assert_eq!(c.reason, "ConnectorNotReady");
        let (c, e) = from_connector_object(&connector("us-central1", Some("True")), "europe-west1")
            .unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(c.reason, "RegionMismatch");
    }

    #[test]
    fn a_connector_whose_deletion_waits_for_its_services_still_serves_them() {
        let mut c = connector("europe-west1", Some("False"));
        let status = c.status.as_mut().unwrap();
        status.state = Some("Ready".into());
        status.conditions[0].reason = "InUse".into();
        assert!(
            from_connector_object(&c, "europe-west1").is_err(),
            "not deleted: not usable"
        );
        c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        assert_eq!(
            from_connector_object(&c, "europe-west1").unwrap().1,
            "projects/p1/locations/europe-west1/connectors/egress"
        );
    }

    #[test]
    fn the_location_of_a_connector_name() {
        assert_eq!(
            location_of("projects/p/locations/us-east1/connectors/c"),
            Some("us-east1")
        );
        assert_eq!(location_of("c"), None);
    }
}

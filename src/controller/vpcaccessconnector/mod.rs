//! The `VpcAccessConnector` controller.
//!
//! Each pass: input from the caches (project, services using the connector) → observe and
//! [`plan`] (pure: follow an operation in flight → read the connector → create it, or check that
//! it is ours and matches) → act (the create or delete call) → status (pure), written only when
//! it changed. Google has no update for connectors, so nothing is ever patched; the CRD's
//! CEL transition rules keep the spec immutable.
//!
//! # Ownership
//!
//! Connectors carry no labels in Google, so runwarden cannot mark the ones it creates. The
//! record of ownership is the object's own `status.resourceName`: it is set **only** when this
//! object created the connector (right after Google accepted the create) or adopted it
//! (`adoptionPolicy: Adopt`), and it pins the connector's name from then on (a later change of
//! the namespace's project annotation does not move it). A connector that exists while
//! `status.resourceName` is unset was made by someone else: it is refused with `Ready=False`,
//! reason `AlreadyExists`, until the user sets `adoptionPolicy: Adopt`. Deletion only ever
//! deletes the connector named in `status.resourceName`.
//!
//! Status is not restored by backups, and a controller that dies between Google's answer to the
//! create and the status write loses the record: both fail safe, as `AlreadyExists` (set `Adopt`
//! to take the connector back), never as deleting someone else's connector.
//!
//! # Deletion while in use
//!
//! While `CloudRunService` objects of the namespace still reference the connector with
//! `egress.connectorRef`, its deletion waits in the finalizer: `Ready=False` with reason `InUse`
//! and a Warning event name those services; it looks again every few seconds and whenever one
//! of them changes.

pub mod plan;

use std::time::Duration;

use google_cloud_vpcaccess_v1::model::{Connector, connector};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self, Cond};
use super::{Context, observe_and_plan, parent, write_status};
use crate::api::v1alpha1::{
    CloudRunService, VpcAccessConnector, VpcAccessConnectorSpec, VpcAccessConnectorStatus,
};
use crate::error::Result;
use plan::{Fields, Input};

/// The kind, for metrics and logs.
pub const KIND: &str = "VpcAccessConnector";
/// The only condition type of a connector.
pub const READY: &str = "Ready";
/// How often a deletion blocked by services using the connector looks again.
pub const IN_USE_RECHECK: Duration = Duration::from_secs(3);

/// `status.state` values.
pub mod state {
    /// The create operation runs.
    pub const CREATING: &str = "Creating";
    /// The connector serves.
    pub const READY: &str = "Ready";
    /// Google reports the connector broken; delete and recreate it.
    pub const ERROR: &str = "Error";
    /// The delete operation runs.
    pub const DELETING: &str = "Deleting";
}

impl super::frame::Reconciled for VpcAccessConnector {
    const KIND: &'static str = KIND;
}

impl super::frame::Finalized for VpcAccessConnector {
    fn apply<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>> {
        Box::pin(apply(self, ctx))
    }

    fn cleanup<'a>(&'a self, ctx: &'a Context) -> futures::future::BoxFuture<'a, Result<Action>> {
        Box::pin(cleanup(self, ctx))
    }
}

/// The connector id: `spec.connectorName`, else `metadata.name`.
pub fn connector_id(obj: &VpcAccessConnector) -> String {
    obj.spec
        .connector_name
        .clone()
        .unwrap_or_else(|| obj.name_any())
}

/// The connector's full name: the one this object owns (`status.resourceName`), else the one
/// its spec names in `project`.
pub fn connector_name(obj: &VpcAccessConnector, project: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.resource_name.clone())
        .unwrap_or_else(|| {
            format!(
                "{}/connectors/{}",
                parent(project, &obj.spec.region),
                connector_id(obj)
            )
        })
}

/// The connector to create (pure).
pub fn desired_connector(spec: &VpcAccessConnectorSpec, project: &str) -> Connector {
    let mut c = Connector::new()
        .set_network(spec.network.clone().unwrap_or_default())
        .set_ip_cidr_range(spec.ip_cidr_range.clone().unwrap_or_default())
        .set_machine_type(spec.machine_type.clone().unwrap_or_default())
        .set_min_instances(spec.min_instances.unwrap_or_default())
        .set_max_instances(spec.max_instances.unwrap_or_default());
    if let Some(subnet) = &spec.subnet {
        c = c.set_subnet(
            connector::Subnet::new()
                .set_name(&subnet.name)
                .set_project_id(subnet.project_id.as_deref().unwrap_or(project)),
        );
    }
    c
}

/// The spec fields the connector Google has does not match (pure). Only fields the spec sets are
/// compared; networks and subnets by their last path segment, as Google may answer either form.
pub fn differences(spec: &VpcAccessConnectorSpec, actual: &Connector) -> Vec<String> {
    let short = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let mut out = vec![];
    let mut check = |field: &str, want: Option<String>, have: String| {
        if let Some(want) = want
            && want != have
        {
            out.push(format!(
                "spec.{field} is {want:?} but the connector has {have:?}"
            ));
        }
    };
    check(
        "network",
        spec.network.as_deref().map(short),
        short(&actual.network),
    );
    check(
        "ipCidrRange",
        spec.ip_cidr_range.clone(),
        actual.ip_cidr_range.clone(),
    );
    check(
        "subnet.name",
        spec.subnet.as_ref().map(|s| short(&s.name)),
        actual
            .subnet
            .as_ref()
            .map(|s| short(&s.name))
            .unwrap_or_default(),
    );
    check(
        "machineType",
        spec.machine_type.clone(),
        actual.machine_type.clone(),
    );
    check(
        "minInstances",
        spec.min_instances.map(|n| n.to_string()),
        actual.min_instances.to_string(),
    );
    check(
        "maxInstances",
        spec.max_instances.map(|n| n.to_string()),
        actual.max_instances.to_string(),
    );
    out
}

/// `status.state` and the `Ready` condition for what Google reports (pure).
pub fn state_condition(actual: &Connector, name: &str) -> (&'static str, Cond) {
    use connector::State;
    match actual.state {
        State::Ready | State::Updating => (
            state::READY,
            Cond::ok(READY, "Ready", format!("connector {name} is ready")),
        ),
        State::Creating | State::Unspecified => (
            state::CREATING,
            Cond::unknown(
                READY,
                "Creating",
                format!("Google is creating connector {name}"),
            ),
        ),
        State::Deleting => (
            state::DELETING,
            Cond::fail(
                READY,
                "Deleting",
                format!("connector {name} is being deleted"),
            ),
        ),
        _ => (
            state::ERROR,
            Cond::fail(
                READY,
                "ConnectorError",
                format!(
                    "Google reports connector {name} in state ERROR: delete this object (or the connector) and create it again"
                ),
            ),
        ),
    }
}

/// The status a pass leaves (pure): `Ready` as decided, else carried over.
fn status_of(
    obj: &VpcAccessConnector,
    ready: Option<Cond>,
    fields: Fields,
    now: &str,
) -> VpcAccessConnectorStatus {
    let old = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let decided: Vec<Cond> = ready.into_iter().collect();
    let generation = obj.metadata.generation;
    VpcAccessConnectorStatus {
        state: fields.state,
        resource_name: fields.resource_name,
        connected_projects: fields.connected_projects,
        observed_generation: generation,
        conditions: conditions::merge(
            old,
            &conditions::carry_over(&decided, old, &[READY]),
            generation,
            now,
        ),
        operation: fields.operation,
    }
}

/// What a pass knows about the object without calling Google.
fn input<'a>(obj: &'a VpcAccessConnector, ctx: &Context) -> Input<'a> {
    let namespace = obj.namespace().unwrap_or_default();
    let mut users: Vec<String> = ctx
        .caches
        .services_in(&namespace)
        .iter()
        .filter(|s| references(s, &obj.name_any()))
        .map(|s| s.name_any())
        .collect();
    users.sort();
    let project = ctx.project_for(obj.spec.project_id.as_deref(), &namespace);
    let claimed_by = project.as_deref().and_then(|project| {
        let name = connector_name(obj, project);
        let uid = obj.meta().uid.clone();
        ctx.caches
            .connectors
            .state()
            .into_iter()
            .filter_map(|g| g.0.as_ref().ok().cloned())
            .find(|c| {
                c.meta().uid != uid
                    && c.status.as_ref().and_then(|s| s.resource_name.as_deref())
                        == Some(name.as_str())
            })
            .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
    });
    Input {
        obj,
        project,
        users,
        identity: ctx.identity_for(&namespace),
        claimed_by,
    }
}

async fn apply(obj: &VpcAccessConnector, ctx: &Context) -> Result<Action> {
    let input = input(obj, ctx);
    let gcp = ctx.gcp(&input.identity).await?;
    let planned = observe_and_plan(&gcp, &ctx.project_numbers, |o| plan::plan(&input, o)).await;
    if let Some(name) = planned.claim(obj.status.as_ref()) {
        // Only the name: the rest of the status tells what Google does, and Google does
        // nothing yet (a `Creating` state without its operation would say otherwise).
        let mut claim = obj.status.clone().unwrap_or_default();
        claim.resource_name = Some(name.to_owned());
        write_status(&ctx.client, obj, obj.status.as_ref(), &claim).await?;
    }
    let applied = plan::execute(planned, &gcp).await;
    ctx.publish(obj, &applied.notes).await;
    let status = status_of(obj, applied.ready, applied.fields, &super::now());
    write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    applied.outcome.into_result(ctx, &status.conditions)
}

async fn cleanup(obj: &VpcAccessConnector, ctx: &Context) -> Result<Action> {
    let input = input(obj, ctx);
    let gcp = ctx.gcp(&input.identity).await?;
    let planned = observe_and_plan(&gcp, &ctx.project_numbers, |o| {
        plan::plan_cleanup(&input, o)
    })
    .await;
    let cleaned = plan::execute_cleanup(planned, &gcp).await;
    ctx.publish(obj, &cleaned.notes).await;
    let status = status_of(obj, cleaned.ready, cleaned.fields, &super::now());
    let result = cleaned.outcome.into_result(ctx, &status.conditions);
    if result.is_err() {
        write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    }
    result
}

/// Whether a CloudRunService uses the VpcAccessConnector named `connector` (same namespace).
pub fn references(service: &DeserializeGuard<CloudRunService>, connector: &str) -> bool {
    service
        .0
        .as_ref()
        .ok()
        .and_then(|s| s.spec.egress.as_ref())
        .and_then(|e| e.connector_ref.as_ref())
        .is_some_and(|r| r.name == connector)
}

/// Whether the connector is Ready for its current generation.
pub fn is_ready(obj: &VpcAccessConnector) -> Option<bool> {
    let status = obj.status.as_ref()?;
    conditions::is_ready(
        &status.conditions,
        status.observed_generation,
        obj.meta().generation,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::status;

    fn object(spec: serde_json::Value) -> VpcAccessConnector {
        let spec: VpcAccessConnectorSpec = serde_json::from_value(spec).unwrap();
        VpcAccessConnector::new("egress", spec)
    }

    #[test]
    fn the_name_is_the_connector_name_or_metadata_name_and_then_pinned_by_status() {
        let mut obj = object(
            serde_json::json!({"region": "europe-west1", "network": "default", "ipCidrRange": "10.8.0.0/28"}),
        );
        assert_eq!(
            connector_name(&obj, "p1"),
            "projects/p1/locations/europe-west1/connectors/egress"
        );
        obj.spec.connector_name = Some("conn-a".into());
        assert_eq!(
            connector_name(&obj, "p1"),
            "projects/p1/locations/europe-west1/connectors/conn-a"
        );
        obj.status = Some(VpcAccessConnectorStatus {
            resource_name: Some("projects/p0/locations/europe-west1/connectors/conn-a".into()),
            ..Default::default()
        });
        assert_eq!(
            connector_name(&obj, "p1"),
            "projects/p0/locations/europe-west1/connectors/conn-a",
            "the owned connector does not move with the project annotation"
        );
    }

    #[test]
    fn the_spec_maps_to_the_connector_and_a_subnet_defaults_to_the_project() {
        let obj = object(
            serde_json::json!({"region": "europe-west1", "subnet": {"name": "s28"}, "machineType": "e2-standard-4", "minInstances": 3, "maxInstances": 5}),
        );
        let c = desired_connector(&obj.spec, "p1");
        let subnet = c.subnet.as_ref().unwrap();
        assert_eq!(
            (subnet.name.as_str(), subnet.project_id.as_str()),
            ("s28", "p1")
        );
        assert_eq!((c.min_instances, c.max_instances), (3, 5));
        assert_eq!(c.machine_type, "e2-standard-4");
        assert!(c.network.is_empty() && c.ip_cidr_range.is_empty());
    }

    #[test]
    fn differences_name_only_the_fields_the_spec_sets() {
        let obj = object(
            serde_json::json!({"region": "europe-west1", "network": "default", "ipCidrRange": "10.8.0.0/28"}),
        );
        let actual = Connector::new()
            .set_network("projects/p1/global/networks/default")
            .set_ip_cidr_range("10.8.0.0/28")
            .set_machine_type("e2-micro")
            .set_min_instances(2)
            .set_max_instances(10);
        assert!(differences(&obj.spec, &actual).is_empty());
        let other = actual.clone().set_ip_cidr_range("10.9.0.0/28");
        assert_eq!(
            differences(&obj.spec, &other),
            ["spec.ipCidrRange is \"10.8.0.0/28\" but the connector has \"10.9.0.0/28\""]
        );
    }

    #[test]
    fn google_states_map_to_status_state_and_ready() {
        use connector::State;
        let with = |s: State| Connector::new().set_state(s);
        let cases = [
            (State::Ready, state::READY, status::TRUE, "Ready"),
            (
                State::Creating,
                state::CREATING,
                status::UNKNOWN,
                "Creating",
            ),
            (State::Deleting, state::DELETING, status::FALSE, "Deleting"),
            (State::Error, state::ERROR, status::FALSE, "ConnectorError"),
        ];
        for (google, want_state, want_status, want_reason) in cases {
            let (state, cond) = state_condition(&with(google.clone()), "c");
            assert_eq!(
                (state, cond.status, cond.reason.as_str()),
                (want_state, want_status, want_reason),
                "{google:?}"
            );
        }
    }
}

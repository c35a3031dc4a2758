//! The `VpcAccessConnector` controller.
//!
//! Each pass: resolve the project and the connector's full name → follow an operation in flight
//! → read the connector → create it, or check that it is ours → status (pure), written only
//! when it changed. Google has no update for connectors, so nothing is ever patched; the CRD's
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

use std::sync::Arc;
use std::time::Duration;

use google_cloud_longrunning::model::operation::Result as OpResult;
use google_cloud_vpcaccess_v1::model::{Connector, connector};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument};

use super::conditions::{self, Cond};
use super::{Context, error_policy_for, reconcile_with_finalizer, write_status};
use crate::api::v1alpha1::{
    AdoptionPolicy, CloudRunService, DeletionPolicy, VpcAccessConnector, VpcAccessConnectorSpec,
    VpcAccessConnectorStatus, status,
};
use crate::error::{Error, Result, reason_of};
use crate::gcp::{Code, GcpError};

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

/// Reconciles one VpcAccessConnector.
#[instrument(skip(guard, ctx), fields(kind = KIND, namespace = guard.namespace(), name = guard.name_any()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<VpcAccessConnector>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    reconcile_with_finalizer(
        KIND,
        &guard,
        &ctx,
        |o, c| Box::pin(apply(o, c)),
        |o, c| Box::pin(cleanup(o, c)),
    )
    .await
}

/// Retry policy after a failed reconcile.
pub fn error_policy(
    guard: Arc<DeserializeGuard<VpcAccessConnector>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    error_policy_for(
        KIND,
        guard.namespace().unwrap_or_default(),
        guard.name_any(),
        err,
        &ctx,
    )
}

/// The connector id: `spec.connectorName`, else `metadata.name`.
pub fn connector_id(obj: &VpcAccessConnector) -> String {
    obj.spec
        .connector_name
        .clone()
        .unwrap_or_else(|| obj.name_any())
}

/// `projects/{project}/locations/{region}`.
pub fn parent(project: &str, region: &str) -> String {
    format!("projects/{project}/locations/{region}")
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

/// The status being computed during one pass.
#[derive(Default)]
struct Draft {
    ready: Option<Cond>,
    state: Option<String>,
    resource_name: Option<String>,
    connected_projects: Vec<String>,
    operation: Option<String>,
}

impl Draft {
    fn from_status(s: Option<&VpcAccessConnectorStatus>) -> Self {
        let Some(s) = s else {
            return Self::default();
        };
        Self {
            ready: None,
            state: s.state.clone(),
            resource_name: s.resource_name.clone(),
            connected_projects: s.connected_projects.clone(),
            operation: s.operation.clone(),
        }
    }

    fn into_status(self, obj: &VpcAccessConnector, now: &str) -> VpcAccessConnectorStatus {
        let old = obj
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let ready = self
            .ready
            .unwrap_or_else(|| match conditions::find(old, READY) {
                Some(prev) => Cond {
                    type_: READY,
                    status: match prev.status.as_str() {
                        status::TRUE => status::TRUE,
                        status::FALSE => status::FALSE,
                        _ => status::UNKNOWN,
                    },
                    reason: prev.reason.clone(),
                    message: prev.message.clone(),
                },
                None => Cond::unknown(READY, "Pending", "not evaluated yet"),
            });
        let generation = obj.metadata.generation;
        VpcAccessConnectorStatus {
            state: self.state,
            resource_name: self.resource_name,
            connected_projects: self.connected_projects,
            observed_generation: generation,
            conditions: conditions::merge(old, &[ready], generation, now),
            operation: self.operation,
        }
    }
}

async fn apply(obj: &VpcAccessConnector, ctx: &Context) -> Result<Action> {
    let mut d = Draft::from_status(obj.status.as_ref());
    let result = steps(obj, ctx, &mut d).await;
    let status = d.into_status(obj, &super::now());
    write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    result
}

/// Records a failed Google call on `Ready` and returns the error.
fn failed(d: &mut Draft, e: GcpError) -> Error {
    d.ready = Some(Cond::fail(READY, reason_of(e.code), e.message.clone()));
    e.into()
}

async fn steps(obj: &VpcAccessConnector, ctx: &Context, d: &mut Draft) -> Result<Action> {
    let spec = &obj.spec;
    let namespace = obj.namespace().unwrap_or_default();
    let Some(project) = ctx.project_for(spec.project_id.as_deref(), &namespace) else {
        let message = format!(
            "no Google Cloud project: set spec.projectId, annotate namespace {namespace} with runwarden.dev/project-id, or start the controller with --default-project"
        );
        d.ready = Some(Cond::fail(READY, "InvalidSpec", &message));
        return Err(Error::Spec {
            reason: "InvalidSpec",
            message,
        });
    };
    let name = connector_name(obj, &project);

    // An operation we started: wait for it without holding a worker.
    if let Some(op_name) = d.operation.clone() {
        match ctx.gcp.vpcaccess.get_operation(&op_name).await {
            Ok(op) if !op.done => {
                d.state = Some(state::CREATING.to_owned());
                d.ready = Some(Cond::unknown(
                    READY,
                    "Creating",
                    format!("Google is creating connector {name} (operation {op_name})"),
                ));
                return Ok(Action::requeue(ctx.config.operation_poll));
            }
            Ok(op) => {
                d.operation = None;
                if let Some(OpResult::Error(s)) = op.result {
                    // The connector may be left behind in state ERROR; the read below tells.
                    ctx.event(
                        obj,
                        EventType::Warning,
                        "CreateFailed",
                        "Create",
                        format!("Google could not create connector {name}: {}", s.message),
                    )
                    .await;
                }
            }
            Err(e) if e.code == Code::NotFound => d.operation = None,
            Err(e) => return Err(failed(d, e)),
        }
    }

    let ours = d.resource_name.is_some();
    let Some(actual) = ctx
        .gcp
        .vpcaccess
        .get_connector(&name)
        .await
        .map_err(|e| failed(d, e))?
    else {
        let (parent, id) = name
            .rsplit_once("/connectors/")
            .map(|(p, i)| (p.to_owned(), i.to_owned()))
            .unwrap_or_default();
        let op = ctx
            .gcp
            .vpcaccess
            .create_connector(&parent, &id, desired_connector(spec, &project))
            .await
            .map_err(|e| {
                d.state = None;
                failed(d, e)
            })?;
        info!(connector = %name, operation = %op.name, "creating connector");
        ctx.event(
            obj,
            EventType::Normal,
            if ours { "Recreated" } else { "Created" },
            "Create",
            if ours {
                format!("Connector {name} disappeared from Google; creating it again")
            } else {
                format!("Creating connector {name}")
            },
        )
        .await;
        // From here on the connector is this object's (see the module docs).
        d.resource_name = Some(name.clone());
        d.operation = Some(op.name.clone());
        d.state = Some(state::CREATING.to_owned());
        d.connected_projects.clear();
        d.ready = Some(Cond::unknown(
            READY,
            "Creating",
            format!(
                "Google is creating connector {name} (operation {})",
                op.name
            ),
        ));
        return Ok(Action::requeue(ctx.config.operation_poll));
    };

    if !ours {
        if spec.adoption_policy == AdoptionPolicy::Never {
            let message = format!(
                "connector {name} exists and was not created by this object (connectors carry no labels, so runwarden cannot tell who made it); set spec.adoptionPolicy: Adopt to take it over"
            );
            d.state = None;
            d.ready = Some(Cond::fail(READY, "AlreadyExists", &message));
            return Err(Error::Spec {
                reason: "AlreadyExists",
                message,
            });
        }
        ctx.event(
            obj,
            EventType::Normal,
            "Adopted",
            "Adopt",
            format!("Adopted existing connector {name} (adoptionPolicy: Adopt)"),
        )
        .await;
        d.resource_name = Some(name.clone());
    }

    let (state, ready) = state_condition(&actual, &name);
    d.state = Some(state.to_owned());
    d.connected_projects = actual.connected_projects.clone();
    let differences = differences(spec, &actual);
    if ready.is_true() && !differences.is_empty() {
        // Google has no update for connectors: the only fix is another connector.
        let message = format!(
            "connector {name} does not match the spec and Google cannot update connectors: {}; create a new VpcAccessConnector instead",
            differences.join("; ")
        );
        d.ready = Some(Cond::fail(READY, "SpecMismatch", &message));
        return Err(Error::Spec {
            reason: "SpecMismatch",
            message,
        });
    }
    d.ready = Some(ready.clone());
    match state {
        state::READY => Ok(Action::requeue(ctx.resync())),
        state::ERROR => Err(Error::Blocked {
            reason: "ConnectorError",
            message: ready.message,
        }),
        // Creating by someone else's operation, or deleting behind our back.
        _ => Ok(Action::requeue(ctx.config.operation_poll)),
    }
}

/// The CloudRunServices of `namespace` whose `egress.connectorRef` names `connector`, sorted.
pub async fn services_using(
    ctx: &Context,
    namespace: &str,
    connector: &str,
) -> Result<Vec<String>> {
    let api: Api<DeserializeGuard<CloudRunService>> =
        Api::namespaced(ctx.client.clone(), namespace);
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| references(s, connector))
        .map(|s| s.name_any())
        .collect();
    names.sort();
    Ok(names)
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

async fn cleanup(obj: &VpcAccessConnector, ctx: &Context) -> Result<Action> {
    let mut d = Draft::from_status(obj.status.as_ref());
    let result = delete_steps(obj, ctx, &mut d).await;
    if result.is_err() {
        let status = d.into_status(obj, &super::now());
        write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    }
    result
}

async fn delete_steps(obj: &VpcAccessConnector, ctx: &Context, d: &mut Draft) -> Result<Action> {
    let namespace = obj.namespace().unwrap_or_default();
    let users = services_using(ctx, &namespace, &obj.name_any()).await?;
    if !users.is_empty() {
        let message = format!(
            "deletion waits: still used by CloudRunService {} (egress.connectorRef); remove those references or delete those services first",
            users.join(", ")
        );
        let previous = obj
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, READY))
            .map(|c| c.message.as_str());
        if previous != Some(message.as_str()) {
            ctx.event(obj, EventType::Warning, "InUse", "Delete", &message)
                .await;
        }
        d.ready = Some(Cond::fail(READY, "InUse", message));
        return Err(Error::Waiting {
            what: format!("services using the connector: {}", users.join(", ")),
            after: IN_USE_RECHECK,
        });
    }
    if obj.spec.deletion_policy == DeletionPolicy::Abandon {
        ctx.event(
            obj,
            EventType::Normal,
            "Abandoned",
            "Delete",
            "left the connector in place (deletionPolicy: Abandon)",
        )
        .await;
        return Ok(Action::await_change());
    }
    let Some(name) = d.resource_name.clone() else {
        // Never created nor adopted by this object: not ours to delete.
        ctx.event(
            obj,
            EventType::Normal,
            "LeftInPlace",
            "Delete",
            "this object created no connector: nothing deleted",
        )
        .await;
        return Ok(Action::await_change());
    };
    let waiting = |what: String| Error::Waiting {
        what,
        after: ctx.config.operation_poll,
    };
    if let Some(op_name) = d.operation.clone() {
        match ctx.gcp.vpcaccess.get_operation(&op_name).await {
            Ok(op) if !op.done => {
                d.ready = Some(Cond::fail(
                    READY,
                    "Deleting",
                    format!("waiting for operation {op_name} before deleting connector {name}"),
                ));
                return Err(waiting(format!("operation {op_name}")));
            }
            Ok(_) => d.operation = None,
            Err(e) if e.code == Code::NotFound => d.operation = None,
            Err(e) => return Err(failed(d, e)),
        }
    }
    let Some(actual) = ctx
        .gcp
        .vpcaccess
        .get_connector(&name)
        .await
        .map_err(|e| failed(d, e))?
    else {
        return Ok(Action::await_change());
    };
    if actual.state == connector::State::Deleting {
        d.state = Some(state::DELETING.to_owned());
        d.ready = Some(Cond::fail(
            READY,
            "Deleting",
            format!("Google is deleting connector {name}"),
        ));
        return Err(waiting(format!("deletion of {name}")));
    }
    match ctx
        .gcp
        .vpcaccess
        .delete_connector(&name)
        .await
        .map_err(|e| failed(d, e))?
    {
        None => Ok(Action::await_change()),
        Some(op) => {
            info!(connector = %name, operation = %op.name, "deleting connector");
            ctx.event(
                obj,
                EventType::Normal,
                "Deleted",
                "Delete",
                format!("Deleting connector {name}"),
            )
            .await;
            d.operation = Some(op.name.clone());
            d.state = Some(state::DELETING.to_owned());
            d.ready = Some(Cond::fail(
                READY,
                "Deleting",
                format!(
                    "Google is deleting connector {name} (operation {})",
                    op.name
                ),
            ));
            Err(waiting(format!("deletion of {name}")))
        }
    }
}

/// Whether the connector is Ready for its current generation.
pub fn is_ready(obj: &VpcAccessConnector) -> Option<bool> {
    let status = obj.status.as_ref()?;
    let ready = conditions::find(&status.conditions, READY)?;
    match ready.status.as_str() {
        status::TRUE => Some(status.observed_generation == obj.meta().generation),
        status::FALSE => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

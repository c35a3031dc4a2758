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

/// The status a pass leaves (pure): `Ready` as decided, else carried over; never True (nor
/// Unknown) after a pass that stopped with a `failure` (see
/// [`conditions::ready_unless_failed`]).
pub fn status_of(
    obj: &VpcAccessConnector,
    ready: Option<Cond>,
    fields: Fields,
    failure: Option<&crate::Error>,
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
            &conditions::carry_over(&decided, old, &[READY])
                .into_iter()
                .map(|ready| conditions::ready_unless_failed(ready, failure))
                .collect::<Vec<_>>(),
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
    let gcp = match ctx.gcp(&input.identity).await {
        Ok(gcp) => gcp,
        // The clients could not be made (the namespace's identity refused): this pass fails
        // like any other step, with a status that says so.
        Err(e) => {
            let failed = plan::without_clients(&input, &e);
            let status = status_of(
                obj,
                failed.ready,
                failed.fields,
                failed.outcome.failure(),
                &super::now(),
            );
            write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
            return failed.outcome.into_result(ctx, &status.conditions);
        }
    };
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
    let status = status_of(
        obj,
        applied.ready,
        applied.fields,
        applied.outcome.failure(),
        &super::now(),
    );
    write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    applied.outcome.into_result(ctx, &status.conditions)
}

async fn cleanup(obj: &VpcAccessConnector, ctx: &Context) -> Result<Action> {
    let input = input(obj, ctx);
    let gcp = ctx.gcp(&input.identity).await;
    let (status, cleaned, write) = cleanup_pass(&input, &gcp, &ctx.project_numbers).await;
    ctx.publish(obj, &cleaned.notes).await;
    let result = cleaned.outcome.into_result(ctx, &status.conditions);
    if write {
        write_status(&ctx.client, obj, obj.status.as_ref(), &status).await?;
    }
    result
}

/// One pass over a connector being deleted, without Kubernetes: observe and plan the cleanup,
/// make its delete call, and the status it leaves, with whether to write it: every pass that
/// keeps the object (a wait, or a failure at any step: the clients, a read, the delete, the
/// operation) writes it, so a stuck deletion says why from its first failed pass.
pub async fn cleanup_pass(
    input: &Input<'_>,
    gcp: &crate::gcp::GcpResult<crate::gcp::Gcp>,
    numbers: &super::context::ProjectNumbers,
) -> (
    VpcAccessConnectorStatus,
    plan::Plan<super::CleanupOutcome>,
    bool,
) {
    let cleaned = match gcp {
        Ok(gcp) => {
            let planned = observe_and_plan(gcp, numbers, |o| plan::plan_cleanup(input, o)).await;
            plan::execute_cleanup(planned, gcp).await
        }
        // Without clients, only a cleanup that needs no Google (in use, Abandon, nothing
        // created) goes on.
        Err(e) => match plan::plan_cleanup(input, &plan::Observed::default()) {
            Ok(p) if p.change.is_none() => p,
            _ => plan::cleanup_without_clients(input, e),
        },
    };
    let status = status_of(
        input.obj,
        cleaned.ready.clone(),
        cleaned.fields.clone(),
        cleaned.outcome.failure(),
        &super::now(),
    );
    let write = cleaned.outcome.keeps_object();
    (status, cleaned, write)
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

    /// Issue 23: a connector's deletion that cannot go on says why on its first failed pass,
    /// whatever step failed: `Ready` False with the step's reason and Google's message (and how
    /// out of the finalizer), in a status the pass writes; the connector stays in Google.
    #[tokio::test]
    async fn every_failed_cleanup_step_says_why_in_the_status_it_writes() {
        use crate::controller::CleanupOutcome;
        use crate::controller::context::ProjectNumbers;
        use crate::gcp::Code;
        use crate::gcp::fake::{FakeGcp, OpMode};
        use crate::gcp::identity::Identity;
        const NAME: &str = "projects/p1/locations/europe-west1/connectors/egress";
        #[derive(Clone, Copy, Debug)]
        enum Fault {
            Clients,
            Identity,
            Call(&'static str),
            OperationRead,
            DeleteOperation,
        }
        let cases = [
            (Fault::Clients, "PermissionDenied", "getAccessToken"),
            (
                Fault::Identity,
                "IdentityNotConfigured",
                "google-service-account",
            ),
            (
                Fault::Call("vpcaccess.connectors.get"),
                "PermissionDenied",
                "injected PERMISSION_DENIED on vpcaccess.connectors.get",
            ),
            (
                Fault::Call("vpcaccess.connectors.delete"),
                "PermissionDenied",
                "injected PERMISSION_DENIED on vpcaccess.connectors.delete",
            ),
            (
                Fault::OperationRead,
                "PermissionDenied",
                "injected PERMISSION_DENIED on vpcaccess.operations.get",
            ),
            (Fault::DeleteOperation, "DeleteFailed", "still has routes"),
        ];
        async fn pass(
            obj: &mut VpcAccessConnector,
            clients: crate::gcp::GcpResult<crate::gcp::Gcp>,
            identity: Result<Identity, String>,
        ) -> (bool, CleanupOutcome) {
            let input = Input {
                obj: &*obj,
                project: Some("p1".into()),
                users: vec![],
                identity,
                claimed_by: None,
            };
            let numbers = ProjectNumbers::default();
            let (status, cleaned, write) = cleanup_pass(&input, &clients, &numbers).await;
            if write {
                obj.status = Some(status);
            }
            (write, cleaned.outcome)
        }
        for (fault, reason, google_said) in cases {
            let google = FakeGcp::new();
            google.put_connector(NAME, connector::State::Ready);
            let mut obj = object(
                serde_json::json!({"region": "europe-west1", "network": "default", "ipCidrRange": "10.8.0.0/28"}),
            );
            obj.metadata.namespace = Some("team".into());
            let fields = Fields {
                state: Some(state::READY.into()),
                resource_name: Some(NAME.into()),
                ..Default::default()
            };
            let ready = Cond::ok(READY, "Ready", "connector is ready");
            obj.status = Some(status_of(&obj, Some(ready), fields, None, "t0"));
            let gcp = || Ok(google.gcp());
            let ok = || Ok(Identity::Controller);
            let (write, outcome) = match fault {
                Fault::Clients => {
                    let refused = crate::gcp::GcpError::new(
                        "iamcredentials",
                        "generateAccessToken",
                        Code::PermissionDenied,
                        "Permission 'iam.serviceAccounts.getAccessToken' denied",
                    );
                    pass(&mut obj, Err(refused), ok()).await
                }
                Fault::Identity => {
                    let none = "namespace team has no runwarden.dev/google-service-account";
                    pass(&mut obj, gcp(), Err(none.into())).await
                }
                Fault::Call(method) => {
                    google.fail(method, Code::PermissionDenied, 1);
                    pass(&mut obj, gcp(), ok()).await
                }
                Fault::OperationRead | Fault::DeleteOperation => {
                    google.set_mode(OpMode::Manual);
                    if matches!(fault, Fault::DeleteOperation) {
                        google.fail_next_operation(Code::FailedPrecondition, "still has routes");
                    }
                    let (write, waiting) = pass(&mut obj, gcp(), ok()).await;
                    assert!(write && matches!(waiting, CleanupOutcome::Wait { .. }));
                    if matches!(fault, Fault::OperationRead) {
                        google.fail("vpcaccess.operations.get", Code::PermissionDenied, 1);
                    } else {
                        google.complete_all();
                    }
                    pass(&mut obj, gcp(), ok()).await
                }
            };
            assert!(write, "{fault:?}: the failed pass writes its status");
            assert!(
                matches!(outcome, CleanupOutcome::Stop(_)),
                "{fault:?}: the finalizer stays, retried"
            );
            let ready = conditions::find(&obj.status.as_ref().unwrap().conditions, READY)
                .unwrap()
                .clone();
            assert_eq!(
                (ready.status.as_ref(), ready.reason.as_ref()),
                (status::FALSE, reason),
                "{fault:?}"
            );
            assert!(
                ready.message.contains(google_said),
                "{fault:?}: {}",
                ready.message
            );
            assert!(
                ready.message.contains("Abandon"),
                "{fault:?}: says how out: {}",
                ready.message
            );
            assert!(google.connector(NAME).is_some(), "{fault:?}: kept");
        }
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

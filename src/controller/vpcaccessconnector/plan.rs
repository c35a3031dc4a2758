//! Observe, plan (pure) and act for a VpcAccessConnector pass.

use futures::future::BoxFuture;
use google_cloud_longrunning::model::Operation;
use google_cloud_vpcaccess_v1::model::{Connector, connector};
use kube::ResourceExt;
use tracing::info;

use super::{
    IN_USE_RECHECK, READY, connector_name, desired_connector, differences, state, state_condition,
};
use crate::api::v1alpha1::{
    AdoptionPolicy, DeletionPolicy, VpcAccessConnector, VpcAccessConnectorStatus,
};
use crate::controller::conditions::{self, Cond};
use crate::controller::context::ProjectNumbers;
use crate::controller::operation::{Followed, follow};
use crate::controller::reasons::*;
use crate::controller::{CleanupOutcome, Note, Observation, Outcome, no_project_message};
use crate::error::{Error, reason_of};
use crate::gcp::identity::Identity;
use crate::gcp::{Gcp, GcpError, GcpResult};

/// What a pass knows without calling Google.
pub struct Input<'a> {
    /// The object.
    pub obj: &'a VpcAccessConnector,
    /// Its project, resolved; `None` when none is set.
    pub project: Option<String>,
    /// The CloudRunServices of the namespace that use it, sorted.
    pub users: Vec<String>,
    /// Whose credentials the pass acts with; `Err`: none usable (`IdentityNotConfigured`).
    pub identity: Result<Identity, String>,
    /// Another live VpcAccessConnector (`namespace/name`) whose status owns the connector this
    /// one names.
    pub claimed_by: Option<String>,
}

/// A fact about Google a plan can ask for.
pub enum Read {
    /// A VPC Access operation.
    Operation(String),
    /// The connector.
    Connector(String),
}

/// What a pass has read; `None` = not read.
#[derive(Default)]
pub struct Observed {
    /// The operation in `status.operation`.
    pub operation: Option<GcpResult<Operation>>,
    /// The connector.
    pub connector: Option<GcpResult<Option<Connector>>>,
}

impl Observation for Observed {
    type Read = Read;

    fn read<'a>(
        &'a mut self,
        read: Read,
        gcp: &'a Gcp,
        _: &'a ProjectNumbers,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match read {
                Read::Operation(name) => {
                    self.operation = Some(gcp.vpcaccess.get_operation(&name).await);
                }
                Read::Connector(name) => {
                    self.connector = Some(gcp.vpcaccess.get_connector(&name).await);
                }
            }
        })
    }
}

/// The status fields besides conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    /// `status.state`.
    pub state: Option<String>,
    /// The connector this object owns.
    pub resource_name: Option<String>,
    /// Projects whose services use the connector.
    pub connected_projects: Vec<String>,
    /// A Google operation in flight.
    pub operation: Option<String>,
}

impl Fields {
    fn from_status(s: Option<&VpcAccessConnectorStatus>) -> Self {
        s.map_or_else(Self::default, |s| Self {
            state: s.state.clone(),
            resource_name: s.resource_name.clone(),
            connected_projects: s.connected_projects.clone(),
            operation: s.operation.clone(),
        })
    }
}

/// A write to Google.
pub enum Change {
    /// Create the connector; once Google accepts, it is this object's.
    Create {
        /// Full name.
        name: String,
        /// The connector to create.
        connector: Box<Connector>,
        /// Whether it existed once (created by this object) and disappeared.
        again: bool,
    },
    /// Delete the connector.
    Delete(String),
}

/// What one pass does (and, after [`execute`], did).
pub struct Plan<O> {
    /// `Ready`, when the pass decided it.
    pub ready: Option<Cond>,
    /// The write to make.
    pub change: Option<Change>,
    /// What happens after it.
    pub outcome: O,
    /// Status fields.
    pub fields: Fields,
    /// Events to publish.
    pub notes: Vec<Note>,
}

impl<O> Plan<O> {
    fn new(obj: &VpcAccessConnector, outcome: O) -> Self {
        Self {
            ready: None,
            change: None,
            outcome,
            fields: Fields::from_status(obj.status.as_ref()),
            notes: vec![],
        }
    }
}

impl Plan<Outcome> {
    /// The status to write *before* the create call when this object does not own the
    /// connector's name yet: the name is deterministic, so once recorded, a controller that
    /// dies between Google's answer and its next status write still finds the connector its
    /// own (instead of refusing it as someone else's).
    pub fn claim(&self, status: Option<&VpcAccessConnectorStatus>) -> Option<&str> {
        let Some(Change::Create { name, .. }) = &self.change else {
            return None;
        };
        let recorded = status.and_then(|s| s.resource_name.as_deref());
        (recorded != Some(name.as_str())).then_some(name.as_str())
    }

    fn stop(mut self, ready: Cond, error: Error) -> Self {
        self.ready = Some(ready);
        self.outcome = Outcome::Stop(error);
        self
    }
}

/// The plan of a pass over a live connector whose Google clients could not be made (the
/// controller may no longer act as the namespace's identity): nothing is read or written.
pub fn without_clients(input: &Input, e: &GcpError) -> Plan<Outcome> {
    let (c, err) = failed(e);
    Plan::new(input.obj, Outcome::Progressing).stop(c, err)
}

/// The plan of a cleanup pass whose Google clients could not be made, when the cleanup needs
/// Google: the finalizer stays, and `Ready` says why and how out.
pub fn cleanup_without_clients(input: &Input, e: &GcpError) -> Plan<CleanupOutcome> {
    let (c, err) = cleanup_failed(e);
    let mut p = Plan::new(input.obj, CleanupOutcome::Stop(err));
    p.ready = Some(c);
    p
}

/// How to get a connector object whose Google connector cannot be deleted out of its
/// finalizer.
fn stuck_deletion_help() -> &'static str {
    "the finalizer keeps this object until the connector is deleted: give the namespace's Google identity the permission (roles/vpcaccess.admin on the project), or set spec.deletionPolicy: Abandon to leave the connector in Google and let the object go"
}

/// A cleanup step's failure: Google's answer, and how to get the object out of its finalizer.
fn cleanup_failed(e: &GcpError) -> (Cond, Error) {
    let (mut c, err) = failed(e);
    c.message = format!("{}; {}", c.message, stuck_deletion_help());
    (c, err)
}

fn failed(e: &GcpError) -> (Cond, Error) {
    (
        Cond::fail(READY, reason_of(e.code), e.message.clone()),
        e.clone().into(),
    )
}

/// The plan of a pass over a live connector, or the next read it needs: the project → an
/// operation in flight ([`follow_create`]) → the connector: absent (create it), someone
/// else's ([`owned`]), or judged against the spec ([`judge`]).
pub fn plan(input: &Input, obs: &Observed) -> Result<Plan<Outcome>, Read> {
    let obj = input.obj;
    let mut p = Plan::new(obj, Outcome::Progressing);
    if let Err(message) = &input.identity {
        return Ok(p.stop(
            Cond::fail(READY, IDENTITY_NOT_CONFIGURED, message),
            Error::Spec {
                reason: IDENTITY_NOT_CONFIGURED,
                message: message.clone(),
            },
        ));
    }
    let Some(project) = input.project.as_deref() else {
        let message = no_project_message(&obj.namespace().unwrap_or_default());
        return Ok(p.stop(
            Cond::fail(READY, INVALID_SPEC, &message),
            Error::Spec {
                reason: INVALID_SPEC,
                message,
            },
        ));
    };
    let name = connector_name(obj, project);
    let Some(created) = follow_create(&name, obs, &mut p)? else {
        return Ok(p);
    };
    let ours = p.fields.resource_name.is_some();
    let read = obs
        .connector
        .as_ref()
        .ok_or_else(|| Read::Connector(name.clone()))?;
    match read {
        Err(e) => {
            let (c, e) = failed(e);
            Ok(p.stop(c, e))
        }
        Ok(None) => {
            let existed = matches!(p.fields.state.as_deref(), Some(state::READY | state::ERROR));
            p.change = Some(Change::Create {
                name: name.clone(),
                connector: Box::new(desired_connector(&obj.spec, project)),
                again: ours && existed,
            });
            // The ownership record is written before the create call (see [`Plan::claim`]).
            p.fields.resource_name = Some(name.clone());
            p.fields.state = Some(state::CREATING.to_owned());
            p.fields.connected_projects.clear();
            p.ready = Some(Cond::unknown(
                READY,
                CREATING,
                format!("Google is creating connector {name}"),
            ));
            Ok(p)
        }
        Ok(Some(actual)) => {
            if owned(input, &name, ours, &mut p) {
                judge(obj, &name, actual, created, &mut p);
            }
            Ok(p)
        }
    }
}

/// The create operation this object started: `Some(created)` to go on, `None` while it runs.
fn follow_create(name: &str, obs: &Observed, p: &mut Plan<Outcome>) -> Result<Option<bool>, Read> {
    let Some(op) = p.fields.operation.clone() else {
        return Ok(Some(false));
    };
    let read = obs
        .operation
        .as_ref()
        .ok_or_else(|| Read::Operation(op.clone()))?;
    match follow(read) {
        Ok(Followed::Pending) => {
            p.fields.state = Some(state::CREATING.to_owned());
            p.ready = Some(Cond::unknown(
                READY,
                CREATING,
                format!("Google is creating connector {name} (operation {op})"),
            ));
            Ok(None)
        }
        Ok(f) => {
            p.fields.operation = None;
            if let Some(error) = f.error() {
                // The connector may be left behind in state ERROR; the read that follows tells.
                p.notes.push(Note::warning(
                    "CreateFailed",
                    "Create",
                    format!("Google could not create connector {name}: {error}"),
                ));
            }
            Ok(Some(f == Followed::Done { error: None }))
        }
        Err(e) => {
            let (c, e) = failed(e);
            p.ready = Some(c);
            p.outcome = Outcome::Stop(e);
            Ok(None)
        }
    }
}

/// Whether the connector may be managed: ours, or adopted now; else the plan stops.
fn owned(input: &Input, name: &str, ours: bool, p: &mut Plan<Outcome>) -> bool {
    let obj = input.obj;
    if ours {
        return true;
    }
    if let Some(other) = input.claimed_by.as_deref() {
        let message = format!(
            "connector {name} is owned by VpcAccessConnector {other}; adoptionPolicy: Adopt never takes a connector another live object owns (to hand it over, delete that object with deletionPolicy: Abandon first)"
        );
        p.fields.state = None;
        p.ready = Some(Cond::fail(READY, ALREADY_OWNED, &message));
        p.outcome = Outcome::Stop(Error::Blocked {
            reason: ALREADY_OWNED,
            message,
        });
        return false;
    }
    if obj.spec.adoption_policy == AdoptionPolicy::Never {
        let message = format!(
            "connector {name} exists and was not created by this object (connectors carry no labels, so runwarden cannot tell who made it); set spec.adoptionPolicy: Adopt to take it over"
        );
        p.fields.state = None;
        p.ready = Some(Cond::fail(READY, ALREADY_EXISTS, &message));
        p.outcome = Outcome::Stop(Error::Spec {
            reason: ALREADY_EXISTS,
            message,
        });
        return false;
    }
    p.notes.push(Note::normal(
        "Adopted",
        "Adopt",
        format!("Adopted existing connector {name} (adoptionPolicy: Adopt)"),
    ));
    p.fields.resource_name = Some(name.to_owned());
    true
}

/// The connector's state, and whether it matches the spec (Google cannot update one).
fn judge(
    obj: &VpcAccessConnector,
    name: &str,
    actual: &Connector,
    created: bool,
    p: &mut Plan<Outcome>,
) {
    let (state, ready) = state_condition(actual, name);
    p.fields.state = Some(state.to_owned());
    p.fields.connected_projects = actual.connected_projects.clone();
    if created && state == state::READY {
        p.notes.push(Note::normal(
            "Created",
            "Create",
            format!("Created connector {name}"),
        ));
    }
    let differences = differences(&obj.spec, actual);
    if ready.is_true() && !differences.is_empty() {
        // Google has no update for connectors: the only fix is another connector.
        let message = format!(
            "connector {name} does not match the spec and Google cannot update connectors: {}; create a new VpcAccessConnector instead",
            differences.join("; ")
        );
        p.ready = Some(Cond::fail(READY, SPEC_MISMATCH, &message));
        p.outcome = Outcome::Stop(Error::Spec {
            reason: SPEC_MISMATCH,
            message,
        });
        return;
    }
    p.outcome = match state {
        state::READY => Outcome::InSync,
        state::ERROR => Outcome::Stop(Error::Blocked {
            reason: CONNECTOR_ERROR,
            message: ready.message.clone(),
        }),
        // Creating by someone else's operation, or deleting behind our back.
        _ => Outcome::Progressing,
    };
    p.ready = Some(ready);
}

/// The plan of a pass over a connector being deleted, or the next read it needs.
pub fn plan_cleanup(input: &Input, obs: &Observed) -> Result<Plan<CleanupOutcome>, Read> {
    let obj = input.obj;
    let mut p = Plan::new(obj, CleanupOutcome::Done);
    if !input.users.is_empty() {
        let message = format!(
            "deletion waits: still used by CloudRunService {} (egress.connectorRef); remove those references or delete those services first",
            input.users.join(", ")
        );
        let previous = obj
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, READY))
            .map(|c| c.message.as_ref());
        if previous != Some(message.as_str()) {
            p.notes.push(Note::warning(IN_USE, "Delete", &message));
        }
        p.ready = Some(Cond::fail(READY, IN_USE, message));
        p.outcome = CleanupOutcome::Wait {
            what: format!("services using the connector: {}", input.users.join(", ")),
            after: Some(IN_USE_RECHECK),
        };
        return Ok(p);
    }
    if obj.spec.deletion_policy == DeletionPolicy::Abandon {
        p.notes.push(Note::normal(
            "Abandoned",
            "Delete",
            "left the connector in place (deletionPolicy: Abandon)",
        ));
        return Ok(p);
    }
    if let Err(message) = &input.identity {
        p.ready = Some(Cond::fail(
            READY,
            IDENTITY_NOT_CONFIGURED,
            format!(
                "cannot delete the connector: {message}; or set spec.deletionPolicy: Abandon to leave it in Google and let the object go"
            ),
        ));
        p.outcome = CleanupOutcome::Stop(Error::Spec {
            reason: IDENTITY_NOT_CONFIGURED,
            message: message.clone(),
        });
        return Ok(p);
    }
    let Some(name) = p.fields.resource_name.clone() else {
        // Never created nor adopted by this object: not ours to delete.
        p.notes.push(Note::normal(
            "LeftInPlace",
            "Delete",
            "this object created no connector: nothing deleted",
        ));
        return Ok(p);
    };
    let mut deleted = false;
    if let Some(op) = p.fields.operation.clone() {
        let read = obs
            .operation
            .as_ref()
            .ok_or_else(|| Read::Operation(op.clone()))?;
        match follow(read) {
            Ok(Followed::Pending) => {
                p.ready = Some(Cond::fail(
                    READY,
                    DELETING,
                    format!("waiting for operation {op} before deleting connector {name}"),
                ));
                p.outcome = CleanupOutcome::wait(format!("operation {op}"));
                return Ok(p);
            }
            Ok(Followed::Done { error: Some(error) })
                if p.fields.state.as_deref() == Some(state::DELETING) =>
            {
                // Said, and retried with backoff (the next pass deletes again).
                let message = format!(
                    "Google could not delete connector {name} (operation {op}): {error}; {}",
                    stuck_deletion_help()
                );
                p.fields.operation = None;
                p.ready = Some(Cond::fail(READY, DELETE_FAILED, &message));
                p.outcome = CleanupOutcome::Stop(Error::Blocked {
                    reason: DELETE_FAILED,
                    message,
                });
                return Ok(p);
            }
            Ok(f) => {
                deleted = f == Followed::Done { error: None }
                    && p.fields.state.as_deref() == Some(state::DELETING);
                p.fields.operation = None;
            }
            Err(e) => {
                let (c, e) = cleanup_failed(e);
                p.ready = Some(c);
                p.outcome = CleanupOutcome::Stop(e);
                return Ok(p);
            }
        }
    }
    let read = obs
        .connector
        .as_ref()
        .ok_or_else(|| Read::Connector(name.clone()))?;
    match read {
        Err(e) => {
            let (c, e) = cleanup_failed(e);
            p.ready = Some(c);
            p.outcome = CleanupOutcome::Stop(e);
        }
        Ok(None) => {
            if deleted {
                p.notes.push(Note::normal(
                    "Deleted",
                    "Delete",
                    format!("Deleted connector {name}"),
                ));
            }
        }
        Ok(Some(actual)) if actual.state == connector::State::Deleting => {
            p.fields.state = Some(state::DELETING.to_owned());
            p.ready = Some(Cond::fail(
                READY,
                DELETING,
                format!("Google is deleting connector {name}"),
            ));
            p.outcome = CleanupOutcome::wait(format!("deletion of {name}"));
        }
        Ok(Some(_)) => p.change = Some(Change::Delete(name)),
    }
    Ok(p)
}

/// Makes the plan's create call.
pub async fn execute(mut p: Plan<Outcome>, gcp: &Gcp) -> Plan<Outcome> {
    let Some(Change::Create {
        name,
        connector,
        again,
    }) = p.change.take()
    else {
        return p;
    };
    let (parent, id) = name
        .rsplit_once("/connectors/")
        .map(|(p, i)| (p.to_owned(), i.to_owned()))
        .unwrap_or_default();
    match gcp
        .vpcaccess
        .create_connector(&parent, &id, *connector)
        .await
    {
        Ok(op) => {
            info!(connector = %name, operation = %op.name, "creating connector");
            p.notes.push(if again {
                Note::normal(
                    "Recreating",
                    "Create",
                    format!("Connector {name} disappeared from Google; creating it again"),
                )
            } else {
                Note::normal("Creating", "Create", format!("Creating connector {name}"))
            });
            // From here on the connector is this object's (see the module docs).
            p.fields.resource_name = Some(name.clone());
            p.ready = Some(Cond::unknown(
                READY,
                CREATING,
                format!(
                    "Google is creating connector {name} (operation {})",
                    op.name
                ),
            ));
            p.fields.operation = Some(op.name);
        }
        Err(e) => {
            // Nothing was created: the claim written before the call is withdrawn, so that a
            // connector someone else creates under that name later is not taken for ours.
            if !again {
                p.fields.resource_name = None;
            }
            p.fields.state = None;
            let (c, err) = failed(&e);
            p = p.stop(c, err);
        }
    }
    p
}

/// Makes the cleanup plan's delete call.
pub async fn execute_cleanup(mut p: Plan<CleanupOutcome>, gcp: &Gcp) -> Plan<CleanupOutcome> {
    let Some(Change::Delete(name)) = p.change.take() else {
        return p;
    };
    match gcp.vpcaccess.delete_connector(&name).await {
        Ok(None) => {}
        Ok(Some(op)) => {
            info!(connector = %name, operation = %op.name, "deleting connector");
            p.notes.push(Note::normal(
                "Deleting",
                "Delete",
                format!("Deleting connector {name}"),
            ));
            p.fields.state = Some(state::DELETING.to_owned());
            p.ready = Some(Cond::fail(
                READY,
                DELETING,
                format!(
                    "Google is deleting connector {name} (operation {})",
                    op.name
                ),
            ));
            p.fields.operation = Some(op.name);
            p.outcome = CleanupOutcome::wait(format!("deletion of {name}"));
        }
        Err(e) => {
            let (c, e) = cleanup_failed(&e);
            p.ready = Some(c);
            p.outcome = CleanupOutcome::Stop(e);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::VpcAccessConnectorSpec;

    const NAME: &str = "projects/p1/locations/europe-west1/connectors/egress";

    fn object(status: Option<VpcAccessConnectorStatus>, adopt: bool) -> VpcAccessConnector {
        let spec: VpcAccessConnectorSpec = serde_json::from_value(serde_json::json!({
            "region": "europe-west1", "network": "default", "ipCidrRange": "10.8.0.0/28",
            "adoptionPolicy": if adopt { "Adopt" } else { "Never" },
        }))
        .unwrap();
        let mut c = VpcAccessConnector::new("egress", spec);
        c.metadata.namespace = Some("team".into());
        c.status = status;
        c
    }

    fn input<'a>(obj: &'a VpcAccessConnector, users: &[&str]) -> Input<'a> {
        Input {
            obj,
            project: Some("p1".into()),
            users: users.iter().map(|u| u.to_string()).collect(),
            identity: Ok(Identity::Controller),
            claimed_by: None,
        }
    }

    fn ready() -> Connector {
        Connector::new()
            .set_name(NAME)
            .set_network("default")
            .set_ip_cidr_range("10.8.0.0/28")
            .set_state(connector::State::Ready)
    }

    fn observed(connector: Option<Connector>) -> Observed {
        Observed {
            connector: Some(Ok(connector)),
            ..Default::default()
        }
    }

    fn owned() -> Option<VpcAccessConnectorStatus> {
        Some(VpcAccessConnectorStatus {
            resource_name: Some(NAME.into()),
            ..Default::default()
        })
    }

    #[test]
    fn a_connector_is_claimed_before_the_create_call() {
        let obj = object(None, false);
        let p = plan(&input(&obj, &[]), &observed(None)).ok().unwrap();
        assert!(
            matches!(&p.change, Some(Change::Create { name, again: false, .. }) if name == NAME)
        );
        assert_eq!(
            p.claim(obj.status.as_ref()),
            Some(NAME),
            "the name is recorded before Google is asked, so a crash cannot lock it out"
        );
        assert_eq!(p.fields.resource_name.as_deref(), Some(NAME));
        // Once recorded, it is not written again before each create.
        let claimed = object(owned(), false);
        let p = plan(&input(&claimed, &[]), &observed(None)).ok().unwrap();
        assert!(matches!(
            &p.change,
            Some(Change::Create { again: false, .. })
        ));
        assert_eq!(p.claim(claimed.status.as_ref()), None);
        assert!(matches!(
            plan(&input(&obj, &[]), &Observed::default()),
            Err(Read::Connector(n)) if n == NAME
        ));
    }

    #[tokio::test]
    async fn a_claim_is_withdrawn_when_the_create_fails_and_kept_when_it_starts() {
        use crate::gcp::fake::FakeGcp;
        let obj = object(None, false);
        let google = FakeGcp::new();
        google.fail(
            "vpcaccess.connectors.create",
            crate::gcp::Code::PermissionDenied,
            1,
        );
        let p = plan(&input(&obj, &[]), &observed(None)).ok().unwrap();
        let p = execute(p, &google.gcp()).await;
        assert_eq!(p.fields.resource_name, None, "nothing was created");
        let p = plan(&input(&obj, &[]), &observed(None)).ok().unwrap();
        let p = execute(p, &google.gcp()).await;
        assert_eq!(p.fields.resource_name.as_deref(), Some(NAME));
        assert!(p.fields.operation.is_some());
    }

    #[test]
    fn a_connector_another_live_object_owns_is_never_adopted() {
        let obj = object(None, true);
        let mut i = input(&obj, &[]);
        i.claimed_by = Some("team-b/egress".into());
        let p = plan(&i, &observed(Some(ready()))).ok().unwrap();
        assert!(p.change.is_none());
        assert_eq!(p.fields.resource_name, None);
        let ready = p.ready.unwrap();
        assert_eq!(ready.reason, ALREADY_OWNED);
        assert!(ready.message.contains("team-b/egress"), "{}", ready.message);
    }

    #[test]
    fn without_an_identity_nothing_is_read_and_nothing_deleted() {
        let obj = object(owned(), false);
        let mut i = input(&obj, &[]);
        i.identity = Err("no identity".into());
        let p = plan(&i, &Observed::default()).ok().unwrap();
        assert_eq!(p.ready.unwrap().reason, IDENTITY_NOT_CONFIGURED);
        let p = plan_cleanup(&i, &Observed::default()).ok().unwrap();
        assert!(p.change.is_none());
        assert!(matches!(p.outcome, CleanupOutcome::Stop(_)));
        let ready = p.ready.unwrap();
        assert_eq!(ready.reason, IDENTITY_NOT_CONFIGURED);
        assert!(ready.message.contains("deletionPolicy: Abandon"));
    }

    #[test]
    fn a_connector_this_object_did_not_create_is_refused_unless_adopted() {
        let obj = object(None, false);
        let p = plan(&input(&obj, &[]), &observed(Some(ready())))
            .ok()
            .unwrap();
        assert!(p.change.is_none());
        assert!(
            matches!(&p.outcome, Outcome::Stop(e) if e.metric_label() == ALREADY_EXISTS && !e.is_transient())
        );
        let obj = object(None, true);
        let p = plan(&input(&obj, &[]), &observed(Some(ready())))
            .ok()
            .unwrap();
        assert_eq!(p.fields.resource_name.as_deref(), Some(NAME));
        assert_eq!(p.notes[0].reason, "Adopted");
        assert!(matches!(p.outcome, Outcome::InSync));
    }

    #[test]
    fn a_differing_connector_cannot_be_updated() {
        let obj = object(owned(), false);
        let other = ready().set_ip_cidr_range("10.9.0.0/28");
        let p = plan(&input(&obj, &[]), &observed(Some(other)))
            .ok()
            .unwrap();
        assert!(matches!(&p.outcome, Outcome::Stop(e) if e.metric_label() == SPEC_MISMATCH));
    }

    #[test]
    fn deletion_waits_for_the_services_using_it_and_deletes_only_its_own() {
        let obj = object(owned(), false);
        let p = plan_cleanup(&input(&obj, &["orders", "payments"]), &Observed::default())
            .ok()
            .unwrap();
        assert!(p.change.is_none());
        assert!(
            p.ready
                .as_ref()
                .unwrap()
                .message
                .contains("orders, payments")
        );
        assert!(matches!(
            p.outcome,
            CleanupOutcome::Wait {
                after: Some(IN_USE_RECHECK),
                ..
            }
        ));
        assert_eq!(p.notes[0].reason, IN_USE);

        let p = plan_cleanup(&input(&obj, &[]), &observed(Some(ready())))
            .ok()
            .unwrap();
        assert!(matches!(&p.change, Some(Change::Delete(n)) if n == NAME));

        let never_created = object(None, false);
        let p = plan_cleanup(&input(&never_created, &[]), &Observed::default())
            .ok()
            .unwrap();
        assert!(p.change.is_none());
        assert_eq!(p.notes[0].reason, "LeftInPlace");
    }
}

//! What every reconcile shares: settings, clients, caches, the event recorder and backoff state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::iam;
use crate::api::v1alpha1::{CloudRunJob, CloudRunService, RunSecurityPolicy, VpcAccessConnector};
use crate::api::{GOOGLE_SERVICE_ACCOUNT_ANNOTATION, PROJECT_ANNOTATION};
use crate::gcp::identity::{Clients, Identity, is_service_account_email};
use crate::gcp::{Gcp, GcpResult, ProjectsApi};
use crate::metrics::Metrics;

/// Settings of the controllers (from the command line).
#[derive(Clone, Debug)]
pub struct Config {
    /// Project used when neither the object nor its namespace names one.
    pub default_project: Option<String>,
    /// Period of the drift check of a healthy object (every object whose last pass was clean
    /// is visited once per period, the visits spread evenly over it).
    pub resync: Duration,
    /// How often an in-flight Google operation is polled.
    pub operation_poll: Duration,
    /// First retry delay after a transient failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Cap of the retry delay.
    pub max_backoff: Duration,
    /// Reconciles run at once per kind.
    pub concurrency: u16,
    /// Only watch this namespace (all when `None`).
    pub watch_namespace: Option<String>,
    /// Only watch the objects this label selector matches (sharding; all when `None`).
    pub watch_selector: Option<String>,
    /// Reconcile nothing in a namespace without `runwarden.dev/google-service-account`.
    pub require_namespace_identity: bool,
    /// Client-side budget of Cloud Run Admin API reads per minute, per project and region.
    pub quota_run_reads_per_minute: u32,
    /// Client-side budget of Cloud Run Admin API writes per minute, per project and region.
    pub quota_run_writes_per_minute: u32,
    /// Longest a single Google call may take before it counts as failed (`DEADLINE_EXCEEDED`).
    pub gcp_call_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_project: None,
            resync: Duration::from_secs(600),
            operation_poll: Duration::from_secs(1),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 16,
            watch_namespace: None,
            watch_selector: None,
            require_namespace_identity: false,
            quota_run_reads_per_minute: 600,
            quota_run_writes_per_minute: 60,
            gcp_call_timeout: Duration::from_secs(10),
        }
    }
}

/// The caches reconciles read instead of calling the Kubernetes API on every pass.
#[derive(Clone)]
pub struct Caches {
    /// Namespaces' metadata (project annotation, labels).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Every watched CloudRunService.
    pub services: Store<DeserializeGuard<CloudRunService>>,
    /// Every watched CloudRunJob.
    pub jobs: Store<DeserializeGuard<CloudRunJob>>,
    /// Every watched VpcAccessConnector.
    pub connectors: Store<DeserializeGuard<VpcAccessConnector>>,
    /// Every RunSecurityPolicy.
    pub policies: Store<DeserializeGuard<RunSecurityPolicy>>,
}

impl Caches {
    /// The annotations of a namespace (empty when it is not cached).
    pub fn namespace_annotation(&self, namespace: &str, key: &str) -> Option<String> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.annotations().get(key).cloned())
            .filter(|v| !v.is_empty())
    }

    /// The labels of a namespace (empty when it is not cached).
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default()
    }

    /// The well-formed RunSecurityPolicies (a malformed one is refused by its CRD schema; one
    /// that still fails to parse is reported on its own status by its controller).
    pub fn policies(&self) -> Vec<RunSecurityPolicy> {
        self.policies
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok().cloned())
            .collect()
    }

    /// A VpcAccessConnector of the cache, if it exists and is well-formed.
    pub fn connector(&self, namespace: &str, name: &str) -> Option<VpcAccessConnector> {
        self.connectors
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|g| g.0.as_ref().ok().cloned())
    }

    /// The CloudRunServices of a namespace.
    pub fn services_in(&self, namespace: &str) -> Vec<Arc<DeserializeGuard<CloudRunService>>> {
        in_namespace(&self.services, namespace)
    }

    /// The CloudRunJobs of a namespace.
    pub fn jobs_in(&self, namespace: &str) -> Vec<Arc<DeserializeGuard<CloudRunJob>>> {
        in_namespace(&self.jobs, namespace)
    }

    /// The VpcAccessConnectors of a namespace.
    pub fn connectors_in(&self, namespace: &str) -> Vec<Arc<DeserializeGuard<VpcAccessConnector>>> {
        in_namespace(&self.connectors, namespace)
    }
}

/// The objects of `store` in `namespace`.
fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .collect()
}

/// The project of an object: its own `projectId`, else its namespace's annotation, else the
/// controller's default.
pub fn resolve_project(
    spec_project: Option<&str>,
    namespace_project: Option<String>,
    default_project: Option<&str>,
) -> Option<String> {
    spec_project
        .map(str::to_owned)
        .or(namespace_project)
        .or_else(|| default_project.map(str::to_owned))
}

/// The identity of a namespace's objects: the service account its annotation names; the
/// controller's own without one, unless `required` (multi-tenant installs fail closed). `Err`
/// says what is wrong, for the `IdentityNotConfigured` condition.
pub fn identity_of(
    namespace: &str,
    annotation: Option<&str>,
    required: bool,
) -> Result<Identity, String> {
    match Identity::of(annotation) {
        Identity::Controller if required => Err(format!(
            "namespace {namespace} has no {GOOGLE_SERVICE_ACCOUNT_ANNOTATION} annotation, and this controller runs with --require-namespace-identity: a cluster admin must name the Google service account this namespace acts as (kubectl annotate namespace {namespace} {GOOGLE_SERVICE_ACCOUNT_ANNOTATION}=NAME@PROJECT.iam.gserviceaccount.com)"
        )),
        Identity::ServiceAccount(email) if !is_service_account_email(&email) => Err(format!(
            "namespace {namespace}'s {GOOGLE_SERVICE_ACCOUNT_ANNOTATION} annotation {email:?} is not a service account e-mail (NAME@PROJECT.iam.gserviceaccount.com)"
        )),
        identity => Ok(identity),
    }
}

/// Project numbers by project id: read from Resource Manager once, then cached (they never
/// change).
#[derive(Default)]
pub struct ProjectNumbers(Mutex<HashMap<String, String>>);

impl ProjectNumbers {
    /// The project number of `project_id`.
    pub async fn get(&self, api: &dyn ProjectsApi, project_id: &str) -> GcpResult<String> {
        if let Some(n) = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(project_id)
        {
            return Ok(n.clone());
        }
        let number = api.project_number(project_id).await?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(project_id.to_owned(), number.clone());
        Ok(number)
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Google API clients, one set per identity.
    pub clients: Arc<Clients>,
    /// Settings.
    pub config: Config,
    /// The event publisher.
    pub events: super::events::Events,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The watch caches.
    pub caches: Caches,
    /// Project numbers (CMEK's service agent).
    pub project_numbers: ProjectNumbers,
    /// Per-object failures (exponential backoff) and updates per generation (the patch cap).
    pub attempts: super::frame::Attempts,
}

impl Context {
    /// A context over these clients and caches.
    pub fn new(
        client: Client,
        clients: Arc<Clients>,
        config: Config,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        caches: Caches,
    ) -> Self {
        Self {
            clients,
            config,
            events: super::events::Events::new(client.clone(), reporter),
            client,
            metrics,
            caches,
            project_numbers: ProjectNumbers::default(),
            attempts: super::frame::Attempts::default(),
        }
    }

    /// The project of an object in `namespace` (see [`resolve_project`]).
    pub fn project_for(&self, spec_project: Option<&str>, namespace: &str) -> Option<String> {
        resolve_project(
            spec_project,
            self.caches
                .namespace_annotation(namespace, PROJECT_ANNOTATION),
            self.config.default_project.as_deref(),
        )
    }

    /// Whose credentials the Google calls for objects of `namespace` use (see [`identity_of`]).
    pub fn identity_for(&self, namespace: &str) -> Result<Identity, String> {
        identity_of(
            namespace,
            self.caches
                .namespace_annotation(namespace, GOOGLE_SERVICE_ACCOUNT_ANNOTATION)
                .as_deref(),
            self.config.require_namespace_identity,
        )
    }

    /// The API clients that act as `identity`.
    pub async fn gcp(&self, identity: &Result<Identity, String>) -> GcpResult<Gcp> {
        // Without an identity the plan stops before any call: the controller's clients are
        // handed over unused.
        let identity = identity.as_ref().unwrap_or(&Identity::Controller);
        self.clients.get(identity).await
    }

    /// The next delay after one more transient failure of an object.
    pub(super) fn backoff(&self, key: super::frame::Key) -> Duration {
        let (min, max) = (self.config.min_backoff, self.config.max_backoff);
        iam::jittered(super::frame::backoff_delay(
            self.attempts.failed(key),
            min,
            max,
        ))
        .min(max)
    }

    /// Forgets the failures (and updates) of an object after it reconciled cleanly.
    pub(super) fn succeeded(&self, key: &super::frame::Key) {
        self.attempts.settled(key);
    }

    /// Publishes an event; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(super::truncate(note.into(), 1024)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.events.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Publishes the events a pass decided on, in order.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, notes: &[super::Note]) {
        for n in notes {
            self.event(obj, n.type_, n.reason, n.action, n.message.clone())
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_acts_as_its_service_account_and_fails_closed_when_required() {
        let sa = "team-a@proj-a.iam.gserviceaccount.com";
        assert_eq!(identity_of("a", None, false), Ok(Identity::Controller));
        assert_eq!(
            identity_of("a", Some(sa), false),
            Ok(Identity::ServiceAccount(sa.into()))
        );
        assert_eq!(
            identity_of("a", Some(sa), true),
            Ok(Identity::ServiceAccount(sa.into()))
        );
        let missing = identity_of("a", None, true).unwrap_err();
        assert!(
            missing.contains("--require-namespace-identity"),
            "{missing}"
        );
        let bad = identity_of("a", Some("alice@example.com"), false).unwrap_err();
        assert!(bad.contains("not a service account"), "{bad}");
    }

    #[test]
    fn the_project_resolves_spec_then_annotation_then_default() {
        assert_eq!(resolve_project(None, None, None), None);
        assert_eq!(
            resolve_project(None, None, Some("dflt")),
            Some("dflt".into())
        );
        assert_eq!(
            resolve_project(None, Some("from-ns".into()), Some("dflt")),
            Some("from-ns".into())
        );
        assert_eq!(
            resolve_project(Some("from-spec"), Some("from-ns".into()), Some("dflt")),
            Some("from-spec".into())
        );
    }
}

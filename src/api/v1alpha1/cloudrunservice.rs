// kube-derive takes one `printcolumn(...)` per column; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A secure Google Cloud Run service (Cloud Run Admin API v2), kept by runwarden in the state
/// this object declares: containers, ingress, invoker IAM, Binary Authorization, egress and CMEK.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "runwarden.dev",
    version = "v1alpha1",
    kind = "CloudRunService",
    plural = "cloudrunservices",
    shortname = "crsvc",
    category = "runwarden",
    namespaced,
    status = "CloudRunServiceStatus",
    derive = "PartialEq",
    doc = "A secure Google Cloud Run service managed by runwarden.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.uri"),
    printcolumn(name = "Ingress", type_ = "string", json_path = ".spec.ingress"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.serviceName) == has(oldSelf.serviceName)").message("spec.serviceName is immutable: it can be neither added nor removed after creation"))]
#[x_kube(validation = Rule::new("!has(self.encryption) || self.encryption.kmsKey.contains('/locations/' + self.region + '/')").message("spec.encryption.kmsKey must be in the same location as spec.region"))]
pub struct CloudRunServiceSpec {
    /// Google Cloud project id. Defaults to the namespace annotation `runwarden.dev/project-id`,
    /// then to the controller's `--default-project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 6, max = 30),
        regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    )]
    pub project_id: Option<String>,

    /// Cloud Run region, e.g. `europe-west1`. Immutable.
    #[schemars(
        length(min = 2, max = 40),
        regex(pattern = r"^[a-z]+(-[a-z]+)+[0-9]+$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.region is immutable: create a new CloudRunService instead"))]
    pub region: String,

    /// Cloud Run service id. Defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 49),
        regex(pattern = r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.serviceName is immutable: create a new CloudRunService instead"))]
    pub service_name: Option<String>,

    /// What happens to the Cloud Run service when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// What to do when a Cloud Run service of this name exists but was not created by this object.
    #[serde(default)]
    pub adoption_policy: AdoptionPolicy,

    /// Where requests may come from. Internal by default.
    #[serde(default)]
    pub ingress: Ingress,

    /// Disable the default `run.app` URL, so the service is reachable only through a load balancer.
    #[serde(default)]
    pub default_uri_disabled: bool,

    /// Who may invoke the service (`roles/run.invoker`).
    #[serde(default)]
    pub access: Access,

    /// Email of the service identity the revisions run as. Use a dedicated account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub service_account: Option<String>,

    /// Execution environment of the revisions.
    #[serde(default)]
    pub execution_environment: ExecutionEnvironment,

    /// Binary Authorization settings. Absent means Binary Authorization is not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_authorization: Option<BinaryAuthorization>,

    /// Outbound network path: Direct VPC or a Serverless VPC Access connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,

    /// Customer-managed encryption key (CMEK) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,

    /// The containers of each revision. The first one serving a port receives requests.
    #[schemars(length(min = 1, max = 10))]
    pub containers: Vec<Container>,

    /// Instance autoscaling bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,

    /// Maximum concurrent requests per instance (Cloud Run's default is 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_requests_per_instance: Option<i32>,

    /// Request timeout in seconds (Cloud Run's default is 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<i32>,

    /// Labels put on the Cloud Run service, besides runwarden's own `managed-by` and
    /// `runwarden-owner`. Keys under Google-reserved prefixes are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 60))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() <= 63 && !k.startsWith('run.googleapis.com') && !k.startsWith('cloud.googleapis.com') && !k.startsWith('serving.knative.dev') && !k.startsWith('autoscaling.knative.dev') && !k.startsWith('goog') && k != 'managed-by' && k != 'runwarden-owner')").message("spec.labels: keys must be at most 63 characters and must not use Google-reserved prefixes (run.googleapis.com, cloud.googleapis.com, serving.knative.dev, autoscaling.knative.dev, goog) or runwarden's own keys (managed-by, runwarden-owner)"))]
    #[x_kube(validation = Rule::new("self.all(k, self[k].size() <= 63)").message("spec.labels: values must be at most 63 characters"))]
    pub labels: BTreeMap<String, String>,

    /// `Manage` (default): runwarden makes Google match this spec. `Observe`: runwarden only
    /// reads — no create, patch, delete or IAM write — and reports in `status.drift` and the
    /// `Ready` condition (reason `Drifted`) where Google differs. A safe first step to bring an
    /// existing service under management before switching to `Manage`.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Aspects set on create and then left to whoever changes them in Google (a CI pipeline
    /// rolling images, a progressive-delivery tool moving traffic); everything else is still
    /// enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub ignore_drift: Vec<DriftAspect>,
}

/// Whether runwarden writes to Google.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ManagementPolicy {
    /// Create, update and delete in Google to match the spec.
    #[default]
    Manage,
    /// Never write to Google; report what differs.
    Observe,
}

/// An aspect of a service whose changes made in Google are kept.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum DriftAspect {
    /// Container images (`template.containers[*].image`).
    Image,
    /// Traffic split.
    Traffic,
    /// Instance scaling bounds (`template.scaling`).
    Scaling,
}

/// What happens in Google when the custom resource is deleted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete the Google resource and wait for the deletion to finish.
    #[default]
    Delete,
    /// Leave the Google resource in place; only the custom resource goes.
    Abandon,
}

/// What to do with an existing Google resource that this object did not create.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum AdoptionPolicy {
    /// Refuse it, with reason `AlreadyExists`.
    #[default]
    Never,
    /// Take it over: label it as ours and make it match this spec.
    Adopt,
}

/// Cloud Run ingress setting.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Ingress {
    /// Only from inside the VPC networks of the project (and Shared VPC / VPC-SC perimeter).
    #[default]
    Internal,
    /// Internal traffic and traffic through a Cloud Load Balancer.
    InternalAndCloudLoadBalancing,
    /// From anywhere, including the internet.
    All,
}

/// Invoker access to the service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// Let anyone on the internet invoke the service (`allUsers`). Off by default.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// IAM members granted `roles/run.invoker`: `user:`, `group:`, `serviceAccount:`, `domain:`,
    /// `principal://` or `principalSet://`. runwarden keeps the role's members equal to this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(
            length(min = 3, max = 512),
            regex(
                pattern = r"^(user:|group:|serviceAccount:|domain:|principal://|principalSet://)\S+$"
            )
        )
    )]
    pub invokers: Vec<String>,
}

/// Execution environment of Cloud Run revisions.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ExecutionEnvironment {
    /// Second generation: full Linux compatibility, network file systems.
    #[default]
    Gen2,
    /// First generation: gVisor sandbox.
    Gen1,
}

/// Binary Authorization: exactly one of `useDefault` or `policy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.useDefault) != has(self.policy)").message("spec.binaryAuthorization: set exactly one of useDefault or policy"))]
pub struct BinaryAuthorization {
    /// Enforce the project's default Binary Authorization policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default: Option<bool>,
    /// Full name of a Binary Authorization platform policy,
    /// `projects/{project}/platforms/cloudRun/policies/{policy}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 512),
        regex(pattern = r"^projects/[^/]+/platforms/cloudRun/policies/[^/]+$")
    )]
    pub policy: Option<String>,
    /// Justification for bypassing Binary Authorization (break-glass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub breakglass_justification: Option<String>,
}

/// Egress: exactly one of `directVpc`, `connectorRef` or `connector`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.directVpc) ? 1 : 0) + (has(self.connectorRef) ? 1 : 0) + (has(self.connector) ? 1 : 0) == 1").message("spec.egress: set exactly one of directVpc, connectorRef or connector"))]
pub struct Egress {
    /// Direct VPC egress through a network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_vpc: Option<DirectVpc>,
    /// A `VpcAccessConnector` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_ref: Option<LocalObjectReference>,
    /// Full name of a Serverless VPC Access connector not managed here,
    /// `projects/{project}/locations/{region}/connectors/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 256),
        regex(
            pattern = r"^projects/[^/]+/locations/[^/]+/connectors/[a-z][-a-z0-9]{0,23}[a-z0-9]$"
        )
    )]
    pub connector: Option<String>,
    /// Which outbound traffic goes through the VPC.
    #[serde(default)]
    pub routing: EgressRouting,
}

/// Direct VPC egress settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.network) || has(self.subnetwork)").message("spec.egress.directVpc: set network, subnetwork or both"))]
pub struct DirectVpc {
    /// VPC network: a name or `projects/{project}/global/networks/{network}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub network: Option<String>,
    /// Subnetwork: a name or `projects/{project}/regions/{region}/subnetworks/{subnetwork}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub subnetwork: Option<String>,
    /// Network tags applied to the instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub tags: Vec<String>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LocalObjectReference {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Which outbound traffic is routed through the VPC.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum EgressRouting {
    /// All outbound traffic.
    #[default]
    AllTraffic,
    /// Only traffic to private IP ranges.
    PrivateRangesOnly,
}

/// Customer-managed encryption key settings.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.shutdownHours) || self.revocationAction == 'Shutdown'").message("spec.encryption.shutdownHours is only allowed with revocationAction: Shutdown"))]
pub struct Encryption {
    /// Cloud KMS key, `projects/{project}/locations/{region}/keyRings/{ring}/cryptoKeys/{key}`.
    /// Its location must equal `spec.region`.
    #[schemars(
        length(max = 512),
        regex(pattern = r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
    )]
    pub kms_key: String,
    /// What Cloud Run does when the key is revoked.
    #[serde(default)]
    pub revocation_action: RevocationAction,
    /// With `Shutdown`: hours after revocation before instances are shut down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 720))]
    pub shutdown_hours: Option<i32>,
    /// Grant `roles/cloudkms.cryptoKeyEncrypterDecrypter` on the key to the project's Cloud Run
    /// service agent. Set false when your security admins manage the key's IAM themselves.
    #[serde(default = "default_true")]
    pub grant_service_agent: bool,
}

fn default_true() -> bool {
    true
}

/// Behaviour of the service when its encryption key is revoked.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RevocationAction {
    /// Prevent new instances from starting; running ones keep going.
    #[default]
    PreventNew,
    /// Shut instances down after `shutdownHours`.
    Shutdown,
}

/// A container of the revision.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name (DNS label). Optional with one container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// Image URL, preferably pinned by digest (`...@sha256:...`).
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// The port requests are sent to (Cloud Run allows one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1))]
    pub ports: Vec<ContainerPort>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub env: Vec<EnvVar>,
    /// CPU and memory limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// A container port.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// `http1` (default) or `h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), regex(pattern = r"^(http1|h2c)$"))]
    pub name: Option<String>,
    /// Port number the container listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
}

/// An environment variable: exactly one of `value` or `secretRef`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.value) && has(self.secretRef))").message("env: set value or secretRef, not both"))]
pub struct EnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[^=\s]+$"))]
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,
    /// A Secret Manager secret version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A Secret Manager secret version.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Secret name, or `projects/{project}/secrets/{secret}`.
    #[schemars(length(min = 1, max = 512))]
    pub secret: String,
    /// Version number or `latest`.
    #[serde(default = "latest")]
    #[schemars(length(min = 1, max = 32))]
    pub version: String,
}

fn latest() -> String {
    "latest".to_owned()
}

/// CPU and memory limits, Kubernetes quantity style (`1`, `1000m`, `512Mi`, `2Gi`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Resources {
    /// CPU limit, e.g. `1` or `1000m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory limit, e.g. `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(Ki|Mi|Gi|k|M|G)?$"))]
    pub memory: Option<String>,
}

/// Instance autoscaling bounds.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minInstances) || !has(self.maxInstances) || self.minInstances <= self.maxInstances").message("spec.scaling: minInstances must not exceed maxInstances"))]
pub struct Scaling {
    /// Minimum number of instances kept warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_instances: Option<i32>,
    /// Maximum number of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_instances: Option<i32>,
}

/// Observed state of a CloudRunService.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudRunServiceStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ServiceReady`, `NetworkReady`, `EncryptionReady`, `AccessReady`, `PolicyCompliant`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// The service's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Full Google resource name, `projects/{p}/locations/{l}/services/{s}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// The newest revision that became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision: Option<String>,
    /// The project's Cloud Run service agent (with CMEK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_agent: Option<String>,
    /// Name of a long-running Google operation in flight; cleared when it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The managed field paths where Google differed from the spec at the last pass (e.g.
    /// `ingress`, `template.containers[0].image`, `access.invokers`): corrected in `Manage`, left
    /// as they are (until fixed in Google or in the spec) in `Observe`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub drift: Vec<String>,
}

impl CloudRunService {
    /// The Cloud Run service id: `spec.serviceName`, else `metadata.name`.
    pub fn service_id(&self) -> String {
        self.spec
            .service_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

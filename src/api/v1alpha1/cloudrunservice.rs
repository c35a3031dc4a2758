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
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.latestReadyRevision"
    ),
    printcolumn(name = "Ingress", type_ = "string", json_path = ".spec.ingress"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.serviceName) == has(oldSelf.serviceName)").message("spec.serviceName is immutable: it can be neither added nor removed after creation"))]
#[x_kube(validation = Rule::new("!has(oldSelf.projectId) || has(self.projectId)").message("spec.projectId is immutable: it cannot be removed once set"))]
#[x_kube(validation = Rule::new("!has(self.encryption) || self.encryption.kmsKey.contains('/locations/' + self.region + '/')").message("spec.encryption.kmsKey must be in the same location as spec.region"))]
#[x_kube(validation = Rule::new("!has(self.traffic) || size(self.traffic) == 0 || self.traffic.map(t, t.percent).sum() == 100").message("spec.traffic: the percents must sum to 100"))]
#[x_kube(validation = Rule::new("!has(self.traffic) || self.traffic.all(a, !has(a.tag) || self.traffic.filter(b, has(b.tag) && b.tag == a.tag).size() == 1)").message("spec.traffic: a tag may appear at most once"))]
#[x_kube(validation = Rule::new("self.executionEnvironment == 'Gen2' || !has(self.volumes) || self.volumes.all(v, !has(v.gcs) && !has(v.nfs))").message("spec.volumes: gcs and nfs volumes need executionEnvironment Gen2"))]
#[x_kube(validation = Rule::new("!has(self.gpu) || self.executionEnvironment == 'Gen2'").message("spec.gpu needs executionEnvironment Gen2"))]
#[x_kube(validation = Rule::new("!has(self.gpu) || self.containers.all(c, !(size(self.containers) == 1 || (has(c.ports) && size(c.ports) > 0)) || (has(c.resources) && has(c.resources.cpuIdle) && c.resources.cpuIdle == false && has(c.resources.cpu) && (c.resources.cpu.matches('^([4-9]|[1-9][0-9]+)([.][0-9]+)?$') || c.resources.cpu.matches('^([4-9][0-9]{3}|[1-9][0-9]{4,})([.][0-9]+)?m$'))))").message("spec.gpu: the serving container needs resources.cpu of at least 4 and resources.cpuIdle: false"))]
#[x_kube(validation = Rule::new("!has(self.gpu) || self.containers.all(c, !(size(self.containers) == 1 || (has(c.ports) && size(c.ports) > 0)) || (has(c.resources) && has(c.resources.memory) && (c.resources.memory.matches('^(1[6-9]|[2-9][0-9]|[1-9][0-9]{2,})Gi$') || c.resources.memory.matches('^(1638[4-9]|1639[0-9]|16[4-9][0-9]{2}|1[7-9][0-9]{3}|[2-9][0-9]{4}|[1-9][0-9]{5,})Mi$') || c.resources.memory.matches('^(1[8-9]|[2-9][0-9]|[1-9][0-9]{2,})G$'))))").message("spec.gpu: the serving container needs resources.memory of at least 16Gi"))]
#[x_kube(validation = Rule::new("size(self.containers) == 1 || self.containers.filter(c, has(c.ports) && size(c.ports) > 0).size() == 1").message("spec.containers: with several containers exactly one serves (has ports)"))]
#[x_kube(validation = Rule::new("self.containers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name)))").message("spec.containers[].volumeMounts: each name must be one of spec.volumes"))]
#[x_kube(validation = Rule::new("self.containers.all(c, !has(c.dependsOn) || c.dependsOn.all(d, self.containers.exists(o, has(o.name) && o.name == d)))").message("spec.containers[].dependsOn: each entry must name another container"))]
pub struct CloudRunServiceSpec {
    /// Google Cloud project id. Defaults to the namespace annotation `runwarden.dev/project-id`,
    /// then to the controller's `--default-project`. Immutable once set: the service stays in
    /// the project it was created in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 6, max = 30),
        regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.projectId is immutable: create a new CloudRunService instead"))]
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
    pub binary_authorization: Option<Box<BinaryAuthorization>>,

    /// Outbound network path: Direct VPC or a Serverless VPC Access connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Box<Egress>>,

    /// Customer-managed encryption key (CMEK) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Box<Encryption>>,

    /// The containers of each revision. The first one serving a port receives requests.
    /// With `build`, the first container runs the image built from source: its `image` is
    /// ignored (write the function's name, for instance) and replaced by the built digest.
    #[schemars(length(min = 1, max = 10))]
    pub containers: Vec<Container>,

    /// Build the first container's image from source with Cloud Run's `builds:submit`
    /// (Google's buildpacks, as Cloud Run functions are built), then deploy it by digest. A new
    /// `source.generation` or build setting builds again; an unchanged one never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Box<Build>>,

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

    /// How requests are split between revisions. Absent: 100% to the latest ready revision.
    /// The percents sum to 100 and a tag appears at most once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub traffic: Vec<TrafficTarget>,

    /// Put Identity-Aware Proxy in front of the service (`iapEnabled`).
    #[serde(default)]
    pub iap_enabled: bool,

    /// Extra audiences accepted in the ID tokens that invoke the service (`customAudiences`),
    /// e.g. the URL of a load balancer in front of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 512)))]
    pub custom_audiences: Vec<String>,

    /// Route a client's requests to the same instance when possible (`template.sessionAffinity`).
    #[serde(default)]
    pub session_affinity: bool,

    /// A GPU per instance. Needs `Gen2`, a serving container with at least 4 CPU, 16Gi memory
    /// and `resources.cpuIdle: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,

    /// Volumes the containers may mount (`template.volumes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub volumes: Vec<Volume>,

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

/// A build from source (`Builds.SubmitBuild`, buildpacks).
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// The source archive (a `.tar.gz`) in Cloud Storage.
    pub source: BuildSource,
    /// The function to run, for a function (`buildpackBuild.functionTarget`), e.g. `helloHttp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub function_target: Option<String>,
    /// The base image to build on (Google's runtime of the language by default), e.g.
    /// `us-central1-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub base_image: Option<String>,
    /// Enrol the built container in automatic base image (security) updates (default `true`):
    /// Cloud Run rebases it on a patched base image without a redeploy.
    #[serde(default = "default_true")]
    pub automatic_updates: bool,
    /// Email of the service account the build runs as. Use a dedicated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub service_account: Option<String>,
    /// A Cloud Build private worker pool,
    /// `projects/{project}/locations/{region}/workerPools/{pool}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 512),
        regex(pattern = r"^projects/[^/]+/locations/[^/]+/workerPools/[^/]+$")
    )]
    pub worker_pool: Option<String>,
    /// Environment variables of the build (not of the running service).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() <= 256 && self[k].size() <= 4096)").message("spec.build.environmentVariables: names at most 256 characters, values at most 4096"))]
    pub environment_variables: BTreeMap<String, String>,
    /// The Artifact Registry repository the image is pushed to, e.g.
    /// `europe-west1-docker.pkg.dev/my-project/functions`; the image is
    /// `{imageRepository}/{service id}`. Default:
    /// `{region}-docker.pkg.dev/{project}/cloud-run-source-deploy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^[a-z0-9][^\s@:]*[a-z0-9]$")
    )]
    pub image_repository: Option<String>,
}

/// A source archive in Cloud Storage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BuildSource {
    /// Bucket name.
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    /// Object name, e.g. `functions/hello.tar.gz`.
    #[schemars(length(min = 1, max = 1024))]
    pub object: String,
    /// The object's generation: a new upload is a new generation, and builds again.
    #[schemars(range(min = 1))]
    pub generation: i64,
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
    /// `principal://` or `principalSet://`. With `mode: Authoritative` runwarden keeps the
    /// role's members equal to this list; with `Additive` it grants them and leaves the others.
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
    /// Let every request through without checking `roles/run.invoker` (`invokerIamDisabled`):
    /// as public as `allowUnauthenticated`, so `forbidUnauthenticated` policies refuse it too.
    #[serde(default)]
    pub invoker_iam_disabled: bool,
    /// Who owns the role's member list: `Authoritative` (default), or `Additive`.
    #[serde(default, skip_serializing_if = "AccessMode::is_authoritative")]
    pub mode: AccessMode,
}

/// How runwarden holds `roles/run.invoker` (on a service, or a job's executors).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum AccessMode {
    /// The role holds exactly the listed members: anyone else's grant of it is removed.
    #[default]
    Authoritative,
    /// runwarden grants the listed members and removes only members it granted for this
    /// object (`status.access.granted`) once they leave the spec; members granted by anyone
    /// else (Eventarc, Pub/Sub push, Cloud Scheduler, Workflows...) are never removed.
    Additive,
}

impl AccessMode {
    /// Whether this is the default, `Authoritative`.
    pub fn is_authoritative(&self) -> bool {
        *self == AccessMode::Authoritative
    }
}

/// What runwarden granted of `roles/run.invoker` in `Additive` mode.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessStatus {
    /// The members runwarden granted for this object (recorded before the grant is written),
    /// the only ones it ever removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 600)))]
    pub granted: Vec<String>,
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
    pub resources: Option<Box<Resources>>,
    /// Where volumes of `spec.volumes` are mounted in this container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub volume_mounts: Vec<VolumeMount>,
    /// Names of containers that must be started (and healthy) before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 10),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub depends_on: Vec<String>,
    /// Working directory of the entrypoint (the image's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub working_dir: Option<String>,
    /// Whether the container has started. Cloud Run probes the serving container over TCP
    /// on its port when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Box<Probe>>,
    /// Whether the container is still alive; failing restarts the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Box<Probe>>,
    /// Whether the container may receive requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Box<Probe>>,
    /// The base image the container's image was built on (`baseImageUri`), e.g.
    /// `us-central1-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22`: with it,
    /// Cloud Run applies automatic base image (security) updates to the running revision without
    /// a redeploy. With `spec.build`, runwarden sets it on the built container from Google's
    /// answer. Google's `buildInfo` is output only and never counts as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub base_image_uri: Option<Box<String>>,
}

/// Where a volume is mounted.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Name of a volume in `spec.volumes`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Absolute path in the container, e.g. `/secrets`.
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/"))]
    pub mount_path: String,
}

/// A health check of a container: exactly one of `httpGet`, `tcpSocket` or `grpc`. Unset
/// timings take Cloud Run's defaults (period 10s, timeout 1s, failure threshold 3, no delay).
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.httpGet) ? 1 : 0) + (has(self.tcpSocket) ? 1 : 0) + (has(self.grpc) ? 1 : 0) == 1").message("probe: set exactly one of httpGet, tcpSocket or grpc"))]
pub struct Probe {
    /// An HTTP GET answered with a 2xx or 3xx status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// A TCP connection that opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// A gRPC health check answered `SERVING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    /// Seconds before the first check (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between checks (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: Option<i32>,
    /// Seconds a check may take (default 1); at most `periodSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<i32>,
    /// Consecutive failures before the container counts as failed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: Option<i32>,
}

/// An HTTP GET probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    /// Path to request (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Port to request (default: the container's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Headers sent with the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub http_headers: Vec<HttpHeader>,
}

/// An HTTP header of a probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Header value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A TCP probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct TcpSocketAction {
    /// Port to connect to (default: the container's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// A gRPC health-check probe.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct GrpcAction {
    /// Port to call (default: the container's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Service name sent in the health check request (default: the server's overall health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub service: Option<String>,
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

/// CPU and memory limits, Kubernetes quantity style (`1`, `1000m`, `512Mi`, `2Gi`), and how
/// CPU is allocated.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU limit, e.g. `1` or `1000m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory limit, e.g. `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(Ki|Mi|Gi|k|M|G)?$"))]
    pub memory: Option<String>,
    /// CPU only allocated while a request is handled (Cloud Run's default, `true`); `false`
    /// keeps it allocated for the instance's whole life (needed for a GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_idle: Option<bool>,
    /// More CPU while the container starts (default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_cpu_boost: Option<bool>,
}

/// Instance autoscaling bounds.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minInstances) || !has(self.maxInstances) || self.minInstances <= self.maxInstances").message("spec.scaling: minInstances must not exceed maxInstances"))]
#[x_kube(validation = Rule::new("!has(self.manualInstances) || self.mode == 'Manual'").message("spec.scaling.manualInstances is only allowed with mode: Manual"))]
pub struct Scaling {
    /// Minimum number of instances kept warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_instances: Option<i32>,
    /// Maximum number of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_instances: Option<i32>,
    /// `Automatic` (default): Cloud Run scales between the bounds. `Manual`: exactly
    /// `manualInstances` instances run, whatever the load (`scaling.scalingMode`).
    #[serde(default)]
    pub mode: ScalingMode,
    /// With `Manual`: how many instances run (`scaling.manualInstanceCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub manual_instances: Option<i32>,
}

/// How the service's instances are scaled.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ScalingMode {
    /// By Cloud Run, with the load.
    #[default]
    Automatic,
    /// A fixed number of instances.
    Manual,
}

/// Where a share of the requests goes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'Revision' ? has(self.revision) : !has(self.revision)").message("spec.traffic: a Revision target names a revision, a Latest target does not"))]
pub struct TrafficTarget {
    /// `Latest`: the latest ready revision, whichever it is. `Revision`: the named one.
    #[serde(default, rename = "type")]
    pub type_: TrafficType,
    /// With `Revision`: the revision's name, short (`payments-00042-xyz`) or full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub revision: Option<String>,
    /// Share of the requests, 0 to 100 (0 with a tag: reachable only at the tag's URL).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
    /// A tag: the target also gets its own URL, `https://{tag}---{service URL host}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 46),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub tag: Option<String>,
}

/// What a traffic target points at.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum TrafficType {
    /// The latest ready revision.
    #[default]
    Latest,
    /// A named revision.
    Revision,
}

/// A GPU attached to each instance.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// Accelerator type (`template.nodeSelector.accelerator`), e.g. `nvidia-l4`.
    #[serde(rename = "type")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub type_: String,
    /// GPUs per instance, on the serving container (`resources.limits["nvidia.com/gpu"]`).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 8))]
    pub count: i32,
    /// Reserve capacity in other zones for failover (default `true`); `false` sets
    /// `template.gpuZonalRedundancyDisabled` (cheaper, with a quota of its own).
    #[serde(default = "default_true")]
    pub zonal_redundancy: bool,
}

fn one() -> i32 {
    1
}

/// A volume: a `name` and exactly one of `secret`, `cloudSqlInstances`, `emptyDir`, `gcs` or
/// `nfs`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.secret) ? 1 : 0) + (has(self.cloudSqlInstances) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) + (has(self.gcs) ? 1 : 0) + (has(self.nfs) ? 1 : 0) == 1").message("spec.volumes: set exactly one of secret, cloudSqlInstances, emptyDir, gcs or nfs"))]
pub struct Volume {
    /// Name the containers' `volumeMounts` use.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Secret Manager secret versions as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolume>,
    /// Cloud SQL instances, `project:region:instance`, reachable as Unix sockets under the
    /// mount path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 10),
        inner(
            length(min = 5, max = 256),
            regex(pattern = r"^[^:\s]+:[^:\s]+:[^:\s]+$")
        )
    )]
    pub cloud_sql_instances: Option<Vec<String>>,
    /// An in-memory scratch directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
    /// A Cloud Storage bucket (Cloud Storage FUSE; needs `Gen2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsVolume>,
    /// An NFS share, e.g. Filestore (needs `Gen2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsVolume>,
}

/// Secret Manager versions as files.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolume {
    /// Secret name, or `projects/{project}/secrets/{secret}`.
    #[schemars(length(min = 1, max = 512))]
    pub secret: String,
    /// Files to create; without items, one file named after the secret holds its latest
    /// version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub items: Vec<SecretItem>,
    /// Mode bits of the files (decimal, e.g. 256 for 0400); Cloud Run's default is 0444.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 511))]
    pub default_mode: Option<i32>,
}

/// One file of a secret volume.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretItem {
    /// File path relative to the mount path.
    #[schemars(length(min = 1, max = 256))]
    pub path: String,
    /// Version number or `latest`.
    #[serde(default = "latest")]
    #[schemars(length(min = 1, max = 32))]
    pub version: String,
    /// Mode bits of this file (decimal); the volume's `defaultMode` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 511))]
    pub mode: Option<i32>,
}

/// An in-memory scratch directory.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    /// Where the data lives. Cloud Run only offers `Memory` (tmpfs, counted against the
    /// containers' memory limits).
    #[serde(default)]
    pub medium: EmptyDirMedium,
    /// Most the directory may hold, e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(Ki|Mi|Gi|k|M|G)?$"))]
    pub size_limit: Option<String>,
}

/// Storage medium of an `emptyDir` volume.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum EmptyDirMedium {
    /// tmpfs.
    #[default]
    Memory,
}

/// A Cloud Storage bucket mounted with Cloud Storage FUSE.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GcsVolume {
    /// Bucket name.
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Cloud Storage FUSE flags, e.g. `implicit-dirs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 256)))]
    pub mount_options: Vec<String>,
}

/// An NFS share.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NfsVolume {
    /// Server host name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub server: String,
    /// Exported path, e.g. `/share`.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
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
    /// How requests are split, as Cloud Run reports it (`trafficStatuses`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub traffic: Vec<TrafficStatus>,
    /// The build from source (`spec.build`): the one in flight or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildStatus>,
    /// The managed field paths where Google differed from the spec at the last pass (e.g.
    /// `ingress`, `template.containers[0].image`, `access.invokers`): corrected in `Manage`, left
    /// as they are (until fixed in Google or in the spec) in `Observe`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub drift: Vec<String>,
    /// `access.mode: Additive`: what runwarden granted (absent in `Authoritative` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStatus>,
}

/// A build from source, as runwarden follows it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BuildStatus {
    /// The Cloud Build operation, `projects/{p}/locations/{l}/operations/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub operation: Option<String>,
    /// The image built, by digest (`...@sha256:...`), once the build succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    /// The base image Google enrolled the build in (automatic updates), put on the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub base_image_uri: Option<String>,
    /// The `spec.build.source.generation` the build came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_generation: Option<i64>,
    /// A hash of the source and every build setting: a build runs again only when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub settings: Option<String>,
    /// `Building`, `Succeeded` or `Failed`.
    pub state: BuildState,
    /// Google's message and the build's log URL, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
}

/// Where a build from source is.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum BuildState {
    /// Submitted; Cloud Build is running it.
    #[default]
    Building,
    /// Built; the image is deployed.
    Succeeded,
    /// Failed; the running revision keeps serving until the spec changes.
    Failed,
}

/// A share of the requests as Cloud Run routes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// `Latest` or `Revision`.
    #[serde(rename = "type")]
    #[schemars(length(max = 16))]
    pub type_: String,
    /// The revision (short name) for a `Revision` target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub revision: Option<String>,
    /// Share of the requests.
    pub percent: i32,
    /// The target's tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tag: Option<String>,
    /// The tag's own URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub uri: Option<String>,
}

impl CloudRunServiceSpec {
    /// Index of the container that receives requests: the one with a port, else the first
    /// (as Cloud Run picks it).
    pub fn serving_container(&self) -> usize {
        self.containers
            .iter()
            .position(|c| !c.ports.is_empty())
            .unwrap_or(0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every watched service is cached whole: the parts most services leave unset (probes,
    /// resources, egress, Binary Authorization, CMEK) are boxed, so that an absent one costs a
    /// pointer, not its full size.
    #[test]
    fn absent_optional_parts_cost_a_pointer_in_the_cache() {
        use std::mem::size_of;
        assert_eq!(size_of::<Option<Box<Probe>>>(), size_of::<usize>());
        assert!(size_of::<Container>() <= 256, "{}", size_of::<Container>());
        assert!(
            size_of::<CloudRunServiceSpec>() <= 400,
            "{}",
            size_of::<CloudRunServiceSpec>()
        );
    }
}

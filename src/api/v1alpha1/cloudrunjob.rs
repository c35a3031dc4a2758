// kube-derive takes one `printcolumn(...)` per column; clippy reads the repeats as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AccessMode, AccessStatus, AdoptionPolicy, BinaryAuthorization, Condition, Container,
    DeletionPolicy, DriftAspect, Egress, ExecutionEnvironment, Gpu, ManagementPolicy, Volume,
};

/// A secure Google Cloud Run job (Cloud Run Admin API v2), with who may execute it, the
/// executions its tokens start and the Cloud Scheduler job that triggers it: the same
/// containers, volumes, identity, egress, CMEK and Binary Authorization model as a
/// CloudRunService.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "runwarden.dev",
    version = "v1alpha1",
    kind = "CloudRunJob",
    plural = "cloudrunjobs",
    shortname = "crjob",
    category = "runwarden",
    namespaced,
    status = "CloudRunJobStatus",
    derive = "PartialEq",
    doc = "A secure Google Cloud Run job managed by runwarden.",
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
    printcolumn(
        name = "Last execution",
        type_ = "string",
        json_path = ".status.latestExecution.state"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.jobName) == has(oldSelf.jobName)").message("spec.jobName is immutable: it can be neither added nor removed after creation"))]
#[x_kube(validation = Rule::new("!has(oldSelf.projectId) || has(self.projectId)").message("spec.projectId is immutable: it cannot be removed once set"))]
#[x_kube(validation = Rule::new("!has(self.encryption) || self.encryption.kmsKey.contains('/locations/' + self.region + '/')").message("spec.encryption.kmsKey must be in the same location as spec.region"))]
#[x_kube(validation = Rule::new("self.executionEnvironment == 'Gen2'").message("spec.executionEnvironment: Cloud Run jobs run only on Gen2"))]
#[x_kube(validation = Rule::new("self.containers.all(c, !has(c.ports) && !has(c.startupProbe) && !has(c.livenessProbe) && !has(c.readinessProbe))").message("spec.containers: a job's containers serve no port and take no probes"))]
#[x_kube(validation = Rule::new("self.containers.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name)))").message("spec.containers[].volumeMounts: each name must be one of spec.volumes"))]
#[x_kube(validation = Rule::new("self.containers.all(c, !has(c.dependsOn) || c.dependsOn.all(d, self.containers.exists(o, has(o.name) && o.name == d)))").message("spec.containers[].dependsOn: each entry must name another container"))]
#[x_kube(validation = Rule::new("!has(self.execution) || !has(self.jobName) || size(self.jobName) + (has(self.execution.runToken) ? size(self.execution.runToken) : has(self.execution.startToken) ? size(self.execution.startToken) : 0) <= 62").message("spec.execution: spec.jobName and the token together must be at most 62 characters (the execution is named {jobName}-{token})"))]
pub struct CloudRunJobSpec {
    /// Google Cloud project id. Defaults to the namespace annotation `runwarden.dev/project-id`,
    /// then to the controller's `--default-project`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 6, max = 30),
        regex(pattern = r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.projectId is immutable: create a new CloudRunJob instead"))]
    pub project_id: Option<String>,

    /// Cloud Run region, e.g. `europe-west1`. Immutable.
    #[schemars(
        length(min = 2, max = 40),
        regex(pattern = r"^[a-z]+(-[a-z]+)+[0-9]+$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.region is immutable: create a new CloudRunJob instead"))]
    pub region: String,

    /// Cloud Run job id. Defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 49),
        regex(pattern = r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.jobName is immutable: create a new CloudRunJob instead"))]
    pub job_name: Option<String>,

    /// What happens to the Cloud Run job (and its Scheduler job) when this object is deleted.
    /// Running executions are Google's business: they finish or are stopped by Cloud Run.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// What to do when a Cloud Run job (or Scheduler job) of this name exists but was not
    /// created by this object.
    #[serde(default)]
    pub adoption_policy: AdoptionPolicy,

    /// `Manage` (default) or `Observe` (never write to Google; report what differs).
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Aspects set on create and then left to whoever changes them in Google. Jobs know
    /// `Image` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1))]
    #[x_kube(validation = Rule::new("self.all(a, a == 'Image')").message("spec.ignoreDrift: a job knows only Image"))]
    pub ignore_drift: Vec<DriftAspect>,

    /// Labels put on the Cloud Run job, besides runwarden's own `managed-by` and
    /// `runwarden-owner`. Keys under Google-reserved prefixes are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 60))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() <= 63 && !k.startsWith('run.googleapis.com') && !k.startsWith('cloud.googleapis.com') && !k.startsWith('serving.knative.dev') && !k.startsWith('autoscaling.knative.dev') && !k.startsWith('goog') && k != 'managed-by' && k != 'runwarden-owner')").message("spec.labels: keys must be at most 63 characters and must not use Google-reserved prefixes (run.googleapis.com, cloud.googleapis.com, serving.knative.dev, autoscaling.knative.dev, goog) or runwarden's own keys (managed-by, runwarden-owner)"))]
    #[x_kube(validation = Rule::new("self.all(k, self[k].size() <= 63)").message("spec.labels: values must be at most 63 characters"))]
    pub labels: BTreeMap<String, String>,

    /// Who may execute the job (`roles/run.invoker` on the job, which holds `run.jobs.run`).
    #[serde(default)]
    pub access: JobAccess,

    /// Email of the service identity the tasks run as. Use a dedicated account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub service_account: Option<String>,

    /// Execution environment of the tasks: Cloud Run jobs run on `Gen2` only.
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
    pub encryption: Option<Box<JobEncryption>>,

    /// The containers of each task (no ports, no probes).
    #[schemars(length(min = 1, max = 10))]
    pub containers: Vec<Container>,

    /// Volumes the containers may mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub volumes: Vec<Volume>,

    /// A GPU per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Gpu>,

    /// How many tasks an execution runs, how many at once, their retries and timeout.
    #[serde(default)]
    pub tasks: Tasks,

    /// A Cloud Scheduler job that executes this job on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Box<Schedule>>,

    /// Start one execution per new token value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionTrigger>,
}

/// Who may execute the job.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobAccess {
    /// IAM members granted `roles/run.invoker` on the job (`run.jobs.run`): `user:`, `group:`,
    /// `serviceAccount:`, `domain:`, `principal://` or `principalSet://`. With `mode:
    /// Authoritative` runwarden keeps the role's members equal to this list plus the schedule's
    /// service account; with `Additive` it grants them and leaves the others. Other roles are
    /// kept.
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
    pub executors: Vec<String>,
    /// Who owns the role's member list: `Authoritative` (default), or `Additive`.
    #[serde(default, skip_serializing_if = "AccessMode::is_authoritative")]
    pub mode: AccessMode,
}

/// A job's customer-managed encryption key (jobs have no revocation action).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobEncryption {
    /// Cloud KMS key, `projects/{project}/locations/{region}/keyRings/{ring}/cryptoKeys/{key}`.
    /// Its location must equal `spec.region`.
    #[schemars(
        length(max = 512),
        regex(pattern = r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
    )]
    pub kms_key: String,
    /// Grant `roles/cloudkms.cryptoKeyEncrypterDecrypter` on the key to the project's Cloud Run
    /// service agent.
    #[serde(default = "default_true")]
    pub grant_service_agent: bool,
}

fn default_true() -> bool {
    true
}

/// The tasks of an execution. Unset values are Google's defaults.
#[derive(Clone, Debug, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.parallelism <= self.count").message("spec.tasks.parallelism must not exceed spec.tasks.count"))]
#[x_kube(validation = Rule::new("duration(self.timeout) <= duration('168h')").message("spec.tasks.timeout must be at most 168h"))]
pub struct Tasks {
    /// Tasks per execution (`template.taskCount`), 1 to 10,000.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub count: i32,
    /// Tasks that may run at once (`template.parallelism`); 0: as many as Cloud Run allows.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub parallelism: i32,
    /// Retries of a failed task before it fails (`template.template.maxRetries`), 0 to 10.
    #[serde(default = "three")]
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: i32,
    /// Longest a task attempt may run (`template.template.timeout`), e.g. `10m`, `1h30m`; at
    /// most `168h`.
    #[serde(default = "ten_minutes")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: String,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            count: one(),
            parallelism: 0,
            max_retries: three(),
            timeout: ten_minutes(),
        }
    }
}

fn one() -> i32 {
    1
}

fn three() -> i32 {
    3
}

fn ten_minutes() -> String {
    "10m".to_owned()
}

/// The Cloud Scheduler job that executes this job.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// unix-cron, five fields: minute hour day-of-month month day-of-week (`0 3 * * *`).
    #[schemars(
        length(min = 9, max = 256),
        regex(pattern = r"^\S+\s+\S+\s+\S+\s+\S+\s+\S+$")
    )]
    pub cron: String,
    /// IANA time zone of the cron, e.g. `Europe/Berlin`.
    #[serde(default = "utc")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+/-]*$")
    )]
    pub time_zone: String,
    /// The account Cloud Scheduler calls the job's `:run` as (an OAuth token). runwarden adds
    /// it to the job's executors.
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub service_account: String,
    /// Pause the Scheduler job (`:pause`); `false` resumes it.
    #[serde(default)]
    pub paused: bool,
}

fn utc() -> String {
    "Etc/UTC".to_owned()
}

/// A token whose every new value starts one execution named `{jobName}-{token}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.runToken) && has(self.startToken))").message("spec.execution: set runToken or startToken, not both"))]
pub struct ExecutionTrigger {
    /// `JobReady` waits for this token's execution to complete (and is False if it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 61),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub run_token: Option<String>,
    /// `JobReady` waits only for this token's execution to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 61),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub start_token: Option<String>,
}

impl ExecutionTrigger {
    /// The token, and whether the job waits for its execution to complete.
    pub fn token(&self) -> Option<(&str, bool)> {
        self.run_token
            .as_deref()
            .map(|t| (t, true))
            .or_else(|| self.start_token.as_deref().map(|t| (t, false)))
    }
}

/// Observed state of a CloudRunJob.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudRunJobStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `PolicyCompliant`, `NetworkReady`, `EncryptionReady`, `JobReady`,
    /// `AccessReady`, `ScheduleReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// Full Google resource name, `projects/{p}/locations/{l}/jobs/{j}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Executions Google has created for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i32>,
    /// The project's Cloud Run service agent (with CMEK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_agent: Option<String>,
    /// Name of a long-running Google operation in flight; cleared when it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The managed field paths where Google differed from the spec at the last pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub drift: Vec<String>,
    /// The newest execution Google created (`latestCreatedExecution`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_execution: Option<LatestExecution>,
    /// The Cloud Scheduler job of `spec.schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleStatus>,
    /// `access.mode: Additive`: what runwarden granted (absent in `Authoritative` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStatus>,
}

/// An execution of the job, as Google reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LatestExecution {
    /// Short name, e.g. `nightly-export-2026-12-01`.
    #[schemars(length(max = 128))]
    pub name: String,
    /// The `spec.execution` token that started it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub token: Option<String>,
    /// `Running`, `Succeeded`, `Failed` or `Cancelled`.
    #[schemars(length(max = 16))]
    pub state: String,
    /// Tasks that succeeded.
    #[serde(default)]
    pub succeeded_tasks: i32,
    /// Tasks that failed (after their retries).
    #[serde(default)]
    pub failed_tasks: i32,
    /// Tasks running.
    #[serde(default)]
    pub running_tasks: i32,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    pub start_time: Option<String>,
    /// When it completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    pub completion_time: Option<String>,
}

/// The Cloud Scheduler job, as Google reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// `projects/{p}/locations/{l}/jobs/{jobName}`, recorded before the create call.
    #[schemars(length(max = 256))]
    pub resource_name: String,
    /// `Enabled`, `Paused` or `UpdateFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub state: Option<String>,
    /// When Cloud Scheduler last ran it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    pub last_attempt_time: Option<String>,
    /// The gRPC code of the last attempt (0: it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_code: Option<i32>,
}

impl CloudRunJob {
    /// The Cloud Run job id: `spec.jobName`, else `metadata.name`.
    pub fn job_id(&self) -> String {
        self.spec
            .job_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

//! In-memory state of every emulated API: projects and their IAM policies, Cloud Run services,
//! Cloud Run jobs, executions and their simulated tasks, Cloud Scheduler jobs, operations, VPC
//! connectors, KMS keys, service-account IAM policies and issued access tokens. Plain data; what the APIs do with it lives in their modules, and
//! operation behaviour in `operations` and `completion`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::error::{GError, GResult};
use crate::iam::Policy;
use crate::util;

/// A resolved project: the id and its stable number.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project id (or, for a number never seen as an id, the number itself).
    pub id: String,
    /// The 12-digit project number.
    pub number: u64,
}

impl Project {
    /// Whether calls in this project are refused with PERMISSION_DENIED (ids starting `denied-`).
    pub fn denied(&self) -> bool {
        self.id.starts_with("denied-")
    }
}

/// The project number the emulator assigns to a project id: 12 digits, never starting with 0.
pub fn project_number(id: &str) -> u64 {
    100_000_000_000 + util::fnv1a(id) % 900_000_000_000
}

/// Whether `id` is a syntactically valid project id.
pub fn valid_project_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Which API an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Cloud Run Admin v2.
    Run,
    /// Serverless VPC Access v1.
    VpcAccess,
    /// Cloud Build v1 (the operations of Cloud Run's `builds:submit`).
    CloudBuild,
}

/// What happens when an operation completes.
#[derive(Clone, Debug)]
pub enum OpKind {
    /// A service create or update: roll out `generation` (with a new revision, if any).
    RunDeploy {
        /// Service name.
        service: String,
        /// The generation this operation rolls out.
        generation: i64,
        /// The revision id created by this generation, if the template changed.
        revision: Option<String>,
    },
    /// A service delete.
    RunDelete {
        /// Service name.
        service: String,
    },
    /// A job create or update: `generation` becomes ready, once the execution its token started
    /// has started (`startExecutionToken`) or completed (`runExecutionToken`).
    JobDeploy {
        /// Job name.
        job: String,
        /// The generation this operation rolls out.
        generation: i64,
        /// The execution a token started, and whether the job waits for it to complete.
        execution: Option<(String, bool)>,
    },
    /// A job delete (its executions go with it).
    JobDelete {
        /// Job name.
        job: String,
    },
    /// A job run: done when the execution completes.
    ExecutionRun {
        /// Execution name.
        execution: String,
    },
    /// An execution cancel.
    ExecutionCancel {
        /// Execution name.
        execution: String,
    },
    /// An execution delete.
    ExecutionDelete {
        /// Execution name.
        execution: String,
    },
    /// A connector create.
    ConnectorCreate {
        /// Connector name.
        connector: String,
    },
    /// A connector delete.
    ConnectorDelete {
        /// Connector name.
        connector: String,
    },
    /// A build submitted with Cloud Run's `builds:submit`: pushes `image@digest`, or fails.
    Build {
        /// The image pushed, without tag.
        image: String,
        /// `sha256:...`.
        digest: String,
        /// Whether the build fails (the `buildFailures` control).
        fails: bool,
    },
    /// Result fixed at creation (validate-only requests).
    Fixed,
}

/// A `google.longrunning.Operation`.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `projects/{p}/locations/{l}/operations/{uuid}`.
    pub name: String,
    /// Owning API.
    pub api: Api,
    /// Creation order.
    pub seq: u64,
    /// When it started.
    pub started: Instant,
    /// How long until it completes.
    pub delay: Duration,
    /// What completion does.
    pub kind: OpKind,
    /// The metadata (with `@type`).
    pub metadata: Value,
    /// Whether it is done.
    pub done: bool,
    /// `response` (with `@type`) or `error`.
    pub result: Option<Result<Value, GError>>,
}

/// A Cloud Run service and what the emulator keeps next to it.
#[derive(Clone, Debug)]
pub struct ServiceRec {
    /// The resource as returned (enum names, not numbers).
    pub svc: Value,
    /// How many revisions were created (numbers the next one).
    pub revisions: u32,
    /// The ids of the revisions rolled out so far (`{service}-00001-abc`), oldest first: what a
    /// REVISION traffic target may name.
    pub revision_ids: Vec<String>,
    /// The service's IAM policy.
    pub policy: Policy,
    /// A delete is in progress.
    pub deleting: bool,
    /// The last rollout failed (a retry with an identical spec rolls out again).
    pub last_failed: bool,
}

/// A Cloud Run job and what the emulator keeps next to it.
#[derive(Clone, Debug)]
pub struct JobRec {
    /// The resource as returned (enum names, not numbers); `executionCount` and
    /// `latestCreatedExecution` are kept current as its executions run.
    pub job: Value,
    /// The job's IAM policy.
    pub policy: Policy,
    /// A delete is in progress.
    pub deleting: bool,
    /// The ids of every execution created so far (`{job}-{token}` or `{job}-{5 random}`): a token
    /// naming one of them is refused.
    pub execution_ids: Vec<String>,
}

/// Where a task of an execution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a slot (`parallelism`) or for its retry.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt succeeded.
    Succeeded,
    /// Its last allowed attempt failed.
    Failed,
    /// The execution was cancelled before it finished.
    Cancelled,
}

/// One task of an execution, as the simulation runs it.
#[derive(Clone, Debug)]
pub struct TaskSim {
    /// Where it is.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Whether the running attempt fails when it ends (decided when it starts).
    pub failing: bool,
    /// When the running attempt ends.
    pub ends: Option<SystemTime>,
    /// When its first attempt started.
    pub start: Option<SystemTime>,
    /// When it finished (succeeded, failed or was cancelled).
    pub completion: Option<SystemTime>,
    /// Whether its last finished attempt failed (`None` before any finished).
    pub last_failed: Option<bool>,
}

/// Where an execution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecState {
    /// Tasks are pending or running.
    Running,
    /// Every task succeeded.
    Succeeded,
    /// Some task failed past its retries.
    Failed,
    /// Cancelled (or deleted) before it finished.
    Cancelled,
}

/// A Cloud Run execution and its tasks.
#[derive(Clone, Debug)]
pub struct ExecutionRec {
    /// The resource as returned; counts, times and conditions are kept current by the simulation.
    pub exec: Value,
    /// The job's name.
    pub job: String,
    /// Creation order (lists are newest first).
    pub seq: u64,
    /// The tasks, by index.
    pub tasks: Vec<TaskSim>,
    /// How long every attempt takes (the `taskDuration` control when the execution started).
    pub task_duration: Duration,
    /// Retries each task gets.
    pub max_retries: u32,
    /// Attempts running at once.
    pub parallelism: usize,
    /// The emulator time the simulation has reached.
    pub clock: SystemTime,
    /// Where it is.
    pub state: ExecState,
    /// When its first task started and when it finished.
    pub start: Option<SystemTime>,
    /// When it finished.
    pub completion: Option<SystemTime>,
    /// A delete is in progress.
    pub deleting: bool,
}

/// A Cloud Scheduler job and what the emulator keeps next to it.
#[derive(Clone, Debug)]
pub struct SchedulerRec {
    /// The resource as returned (enum names).
    pub job: Value,
    /// When it is next due (ENABLED jobs only), emulator clock.
    pub next: Option<SystemTime>,
}

/// A KMS crypto key with its versions and IAM policy.
#[derive(Clone, Debug)]
pub struct KeyRec {
    /// The key without `primary` (computed on read).
    pub key: Value,
    /// Versions by number.
    pub versions: BTreeMap<u64, Value>,
    /// Primary version number.
    pub primary: Option<u64>,
    /// The key's IAM policy.
    pub policy: Policy,
}

/// An access token issued by `generateAccessToken`.
#[derive(Clone, Debug)]
pub struct Token {
    /// The service account the token stands for.
    pub email: String,
    /// When it stops being accepted (emulator clock).
    pub expires: SystemTime,
}

/// Everything the emulator stores.
#[derive(Debug, Default)]
pub struct State {
    /// Project numbers seen, to map them back to ids.
    pub projects: BTreeMap<u64, String>,
    /// Cloud Run services by name.
    pub services: BTreeMap<String, ServiceRec>,
    /// Operations by name.
    pub operations: BTreeMap<String, Operation>,
    /// Cloud Run jobs by name.
    pub jobs: BTreeMap<String, JobRec>,
    /// Cloud Run executions by name (`{job}/executions/{id}`).
    pub executions: BTreeMap<String, ExecutionRec>,
    /// Task attempts still to fail, by job name (the `taskFailures` control).
    pub task_failures: BTreeMap<String, u64>,
    /// Cloud Scheduler jobs by name.
    pub scheduler_jobs: BTreeMap<String, SchedulerRec>,
    /// VPC Access connectors by name.
    pub connectors: BTreeMap<String, Value>,
    /// KMS key rings by name.
    pub key_rings: BTreeMap<String, Value>,
    /// KMS crypto keys by name.
    pub crypto_keys: BTreeMap<String, KeyRec>,
    /// Project IAM policies by project id.
    pub project_policies: BTreeMap<String, Policy>,
    /// Service-account IAM policies by e-mail.
    pub sa_policies: BTreeMap<String, Policy>,
    /// Access tokens issued by `generateAccessToken`.
    pub tokens: BTreeMap<String, Token>,
    /// Organization policies by project id (see the `config` control).
    pub org_policies: crate::orgpolicy::OrgPolicies,
    /// How much longer than the operation delay a build takes (the `buildDuration` control).
    pub build_duration: std::time::Duration,
    /// Builds still to fail, by parent `projects/P/locations/R` (the `buildFailures` control).
    pub build_failures: BTreeMap<String, u64>,
    /// Sequence for etags.
    pub etag_seq: u64,
    /// Sequence for operations.
    pub op_seq: u64,
    /// Sequence for executions.
    pub exec_seq: u64,
}

impl State {
    /// Resolves a project id or number. Any valid id exists.
    pub fn project(&mut self, seg: &str) -> GResult<Project> {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            let number: u64 = seg.parse().map_err(|_| invalid_project(seg))?;
            let id = self
                .projects
                .get(&number)
                .cloned()
                .unwrap_or_else(|| seg.to_string());
            return Ok(Project { id, number });
        }
        if !valid_project_id(seg) {
            return Err(invalid_project(seg));
        }
        let number = project_number(seg);
        self.projects.insert(number, seg.to_string());
        Ok(Project {
            id: seg.to_string(),
            number,
        })
    }

    /// A new service/policy etag sequence value.
    pub fn next_etag(&mut self) -> u64 {
        self.etag_seq += 1;
        self.etag_seq
    }
}

fn invalid_project(seg: &str) -> GError {
    GError::new(
        crate::error::Code::PermissionDenied,
        format!("Permission denied on resource project {seg}."),
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "CONSUMER_INVALID",
        "domain": "googleapis.com",
        "metadata": {"consumer": format!("projects/{seg}")}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_numbers_are_stable_12_digits() {
        let n = project_number("my-project");
        assert_eq!(n, project_number("my-project"));
        assert_eq!(n.to_string().len(), 12);
        assert!(valid_project_id("my-project"));
        assert!(!valid_project_id("My-Project"));
        assert!(!valid_project_id("abc"));
        let mut s = State::default();
        let p = s.project("my-project").unwrap();
        assert_eq!(s.project(&p.number.to_string()).unwrap().id, "my-project");
    }
}

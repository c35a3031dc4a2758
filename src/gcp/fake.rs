//! An in-memory fake Google behind the [`Gcp`] traits, for tests that state the exact calls a
//! reconcile makes (controller-rs's `fixtures.rs` idea, brupop's mock-behind-a-feature).
//!
//! It mimics, in small, what the emulator (`crates/runwarden-emulator`) models after real traffic:
//! server-side defaults, generations and revisions, `reconciling` while an operation runs, the
//! terminal condition, the CMEK check at rollout, the VPC connector check at deploy, IAM etags
//! (`ABORTED` on a stale one) and long-running operations. Calls return what the real clients in
//! [`super::google`] return: `Ok(None)` for a missing service, job, execution, key or connector
//! on reads and deletes (`false` for a Scheduler job's delete), [`GcpError`] with the same `api`
//! and `method` otherwise.
//!
//! **Cloud Run jobs** roll out as services do (generations, `reconciling`, the terminal
//! condition, the CMEK check, operations by [`OpMode`]). A `start_execution_token` or
//! `run_execution_token` on a create or update starts the execution
//! `{job}/executions/{job_id}-{token}` when that rollout completes (the job's
//! `latest_created_execution` and `execution_count` then say so); the token is input only, the
//! stored job has none. A token makes one execution, once: one whose execution exists, or is
//! about to (its rollout pending), is refused with `ALREADY_EXISTS` and the job is left as it
//! was; a job id and token of 63 characters or more together, with `INVALID_ARGUMENT`. The fake
//! makes no difference between the two tokens (Google's operation of a run token waits for the
//! execution to finish); executions change only by the test hooks
//! [`FakeGcp::set_execution_counts`] and [`FakeGcp::finish_execution`]. Deleting a job deletes
//! its executions and IAM policy.
//!
//! **Cloud Scheduler** jobs are stored as created (`ENABLED`); an update applies the top-level
//! fields its mask names (`INVALID_ARGUMENT` for an empty mask or another path), pause and
//! resume set the state.
//!
//! ```ignore
//! # async fn demo() {
//! use runwarden::gcp::{Code, fake::FakeGcp};
//! let fake = FakeGcp::new();
//! fake.fail("run.services.get", Code::Unavailable, 1);
//! let gcp = fake.gcp();
//! assert!(gcp.run.get_service("projects/p/locations/l/services/s").await.is_err());
//! assert_eq!(gcp.run.get_service("projects/p/locations/l/services/s").await, Ok(None));
//! assert_eq!(fake.calls(), ["run.services.get", "run.services.get"]);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use google_cloud_iam_v1::model::Policy;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, crypto_key::CryptoKeyPurpose};
use google_cloud_longrunning::model::{Operation, operation};
use google_cloud_run_v2::model::{
    self as run, Execution, Job, Service, condition, execution_reference::CompletionStatus,
};
use google_cloud_scheduler_v1::model::{Job as SchedulerJob, job::State as SchedulerState};
use google_cloud_vpcaccess_v1::model::{Connector, OperationMetadata, connector};
use google_cloud_wkt as wkt;

use super::{
    CloudRunApi, CloudRunJobsApi, Code, Gcp, GcpError, GcpResult, IamPolicyApi, KmsApi,
    ProjectsApi, SchedulerApi, VpcAccessApi, run_service_agent,
};

/// The etag Google gives a policy that was never set (`"ACAB"` in JSON).
const EMPTY_ETAG: &[u8] = b"\x00\x20\x01";
/// Every method the fake answers, as `{api}.{method}` exactly as [`GcpError`] names them in
/// [`super::google`]: the names [`FakeGcp::fail`] accepts and [`FakeGcp::calls`] logs. Cloud Run
/// has one `run.operations.get`, for the operations of services and jobs alike.
pub const METHODS: [&str; 28] = [
    "run.services.get",
    "run.services.create",
    "run.services.patch",
    "run.services.delete",
    "run.operations.get",
    "run.services.getIamPolicy",
    "run.services.setIamPolicy",
    "run.jobs.get",
    "run.jobs.create",
    "run.jobs.patch",
    "run.jobs.delete",
    "run.executions.get",
    "run.jobs.getIamPolicy",
    "run.jobs.setIamPolicy",
    "cloudscheduler.jobs.get",
    "cloudscheduler.jobs.create",
    "cloudscheduler.jobs.patch",
    "cloudscheduler.jobs.pause",
    "cloudscheduler.jobs.resume",
    "cloudscheduler.jobs.delete",
    "kms.cryptoKeys.get",
    "kms.cryptoKeys.getIamPolicy",
    "kms.cryptoKeys.setIamPolicy",
    "vpcaccess.connectors.get",
    "vpcaccess.connectors.create",
    "vpcaccess.connectors.delete",
    "vpcaccess.operations.get",
    "resourcemanager.projects.get",
];
/// The role that lets the Cloud Run service agent use a key.
const KMS_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// How the operations of mutating calls finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpMode {
    /// The effect is applied before the call returns; the operation reads as done from the first
    /// `get_operation` (the call's own answer, as Google's, is not done yet).
    #[default]
    Immediate,
    /// Operations stay pending (services and jobs `reconciling`, connectors
    /// `CREATING`/`DELETING`) until
    /// [`FakeGcp::complete`] or [`FakeGcp::complete_all`].
    Manual,
}

/// A cheaply cloneable handle on one fake Google; [`FakeGcp::gcp`] gives the trait objects.
#[derive(Clone, Default)]
pub struct FakeGcp(Arc<Mutex<State>>);

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Run,
    VpcAccess,
}

#[derive(Clone)]
enum Effect {
    Deploy {
        service: String,
        generation: i64,
        revision: Option<String>,
    },
    DeleteService(String),
    /// Rolls out `generation` of `job`, then starts `execution` (its full name), if any.
    DeployJob {
        job: String,
        generation: i64,
        execution: Option<String>,
    },
    DeleteJob(String),
    CreateConnector(String),
    DeleteConnector(String),
}

struct Op {
    name: String,
    api: Api,
    effect: Effect,
    metadata: wkt::Any,
    fail: Option<(Code, String)>,
    /// `None` while pending.
    result: Option<operation::Result>,
}

#[derive(Default)]
struct State {
    mode: OpMode,
    services: BTreeMap<String, Service>,
    revisions: HashMap<String, u32>,
    policies: HashMap<String, Policy>,
    keys: BTreeMap<String, CryptoKey>,
    connectors: BTreeMap<String, Connector>,
    jobs: BTreeMap<String, Job>,
    executions: BTreeMap<String, Execution>,
    scheduler: BTreeMap<String, SchedulerJob>,
    project_numbers: HashMap<String, String>,
    ops: Vec<Op>,
    op_seq: u64,
    seq: u64,
    faults: HashMap<String, (Code, usize)>,
    fail_next_op: Option<(Code, String)>,
    /// Cloud Build operations of submitted builds, by name (done at once).
    builds: BTreeMap<String, Operation>,
    /// The next build submitted fails with this message.
    fail_next_build: Option<String>,
    calls: Vec<String>,
}

/// One call in progress: the locked state plus who to blame in errors.
struct Call<'a> {
    st: MutexGuard<'a, State>,
    api: &'static str,
    method: &'static str,
}

impl Deref for Call<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.st
    }
}

impl DerefMut for Call<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.st
    }
}

impl Call<'_> {
    fn err(&self, code: Code, message: impl Into<String>) -> GcpError {
        GcpError::new(self.api, self.method, code, message)
    }
}

impl FakeGcp {
    /// An empty fake Google in [`OpMode::Immediate`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The API clients, all over this fake's state.
    pub fn gcp(&self) -> Gcp {
        Gcp {
            run: Arc::new(Run(self.clone())),
            jobs: Arc::new(RunJobs(self.clone())),
            builds: Arc::new(FakeBuilds(self.clone())),
            scheduler: Arc::new(Scheduler(self.clone())),
            kms: Arc::new(Kms(self.clone())),
            vpcaccess: Arc::new(Vpc(self.clone())),
            projects: Arc::new(Projects(self.clone())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs the call and answers an injected fault, if one is armed for it.
    fn enter(&self, api: &'static str, method: &'static str) -> GcpResult<Call<'_>> {
        let mut c = Call {
            st: self.lock(),
            api,
            method,
        };
        let key = format!("{api}.{method}");
        c.calls.push(key.clone());
        if let Some((code, left)) = c.faults.get_mut(&key) {
            let code = *code;
            *left -= 1;
            if *left == 0 {
                c.faults.remove(&key);
            }
            return Err(c.err(code, format!("fake: injected {} on {key}", code.name())));
        }
        Ok(c)
    }

    // --- operations --------------------------------------------------------------------------

    /// Sets how operations started from now on finish.
    pub fn set_mode(&self, mode: OpMode) {
        self.lock().mode = mode;
    }

    /// The next operation started fails with this status when it completes: a deploy leaves the
    /// service or job with a failed terminal condition (and a job's token starts no execution),
    /// a connector create leaves it in `ERROR`.
    pub fn fail_next_operation(&self, code: Code, message: impl Into<String>) {
        self.lock().fail_next_op = Some((code, message.into()));
    }

    /// Completes a pending operation and applies its effect. Panics if it is unknown or done.
    pub fn complete(&self, op_name: &str) {
        let mut st = self.lock();
        let i = st
            .ops
            .iter()
            .position(|o| o.name == op_name && o.result.is_none());
        st.finish(i.unwrap_or_else(|| panic!("no pending operation {op_name}")));
    }

    /// Completes every pending operation, oldest first; returns how many there were.
    pub fn complete_all(&self) -> usize {
        let mut st = self.lock();
        let pending: Vec<usize> = (0..st.ops.len())
            .filter(|&i| st.ops[i].result.is_none())
            .collect();
        pending.iter().for_each(|&i| st.finish(i));
        pending.len()
    }

    /// Names of the operations still pending, oldest first.
    pub fn pending_operations(&self) -> Vec<String> {
        let st = self.lock();
        let pending = st.ops.iter().filter(|o| o.result.is_none());
        pending.map(|o| o.name.clone()).collect()
    }

    // --- faults and the call log ---------------------------------------------------------------

    /// The next `times` calls of `method` (`{api}.{method}` as in [`GcpError`], e.g.
    /// `run.services.get`, see [`METHODS`]) fail with `code` (and are still logged); `times == 0`
    /// disarms it. Panics on a name no call has, so that a typo cannot make a test vacuous.
    pub fn fail(&self, method: &str, code: Code, times: usize) {
        assert!(METHODS.contains(&method), "fail: no method {method:?}");
        let mut st = self.lock();
        match times {
            0 => st.faults.remove(method),
            n => st.faults.insert(method.to_owned(), (code, n)),
        };
    }

    /// Every call so far as `{api}.{method}`, in order, failed ones included.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The call log, emptied.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().calls)
    }

    /// How many calls of `method` (`{api}.{method}`) the log holds.
    pub fn count(&self, method: &str) -> usize {
        self.lock().calls.iter().filter(|c| *c == method).count()
    }

    // --- seeding and inspection --------------------------------------------------------------

    /// Stores `service` as is, under `service.name` (no defaults, no operation).
    pub fn put_service(&self, service: Service) {
        self.lock().services.insert(service.name.clone(), service);
    }

    /// The stored service.
    pub fn service(&self, name: &str) -> Option<Service> {
        self.lock().services.get(name).cloned()
    }

    /// Stores `job` as is, under `job.name` (no defaults, no operation, no execution).
    pub fn put_job(&self, job: Job) {
        self.lock().jobs.insert(job.name.clone(), job);
    }

    /// The stored Cloud Run job.
    pub fn job(&self, name: &str) -> Option<Job> {
        self.lock().jobs.get(name).cloned()
    }

    /// Stores `execution` as is, under `execution.name` (its job's `latest_created_execution`
    /// and `execution_count` are left as they are).
    pub fn put_execution(&self, execution: Execution) {
        let mut st = self.lock();
        st.executions.insert(execution.name.clone(), execution);
    }

    /// The stored execution.
    pub fn execution(&self, name: &str) -> Option<Execution> {
        self.lock().executions.get(name).cloned()
    }

    /// Sets the task counts of a running execution (nothing else changes: it is not complete).
    /// Panics if there is no such execution.
    pub fn set_execution_counts(&self, name: &str, running: i32, succeeded: i32, failed: i32) {
        let mut st = self.lock();
        let x = st.executions.get_mut(name);
        let x = x.unwrap_or_else(|| panic!("set_execution_counts: no execution {name}"));
        (x.running_count, x.succeeded_count, x.failed_count) = (running, succeeded, failed);
    }

    /// Completes an execution now: no task running; succeeded, every task succeeded (none
    /// failed); failed, the tasks not succeeded failed (at least one). Sets `completion_time`,
    /// ends `reconciling`, sets the `Completed` condition (succeeded, or failed with a message
    /// and the reason `NON_ZERO_EXIT_CODE`), and updates the job's `latest_created_execution`
    /// if it is this one. Panics if there is no such execution.
    pub fn finish_execution(&self, name: &str, succeeded: bool) {
        use condition::ExecutionReason::NonZeroExitCode;
        let mut st = self.lock();
        let x = st.executions.get_mut(name);
        let x = x.unwrap_or_else(|| panic!("finish_execution: no execution {name}"));
        let tasks = x.task_count.max(1);
        let now = now();
        x.running_count = 0;
        let (done, status) = if succeeded {
            (x.succeeded_count, x.failed_count) = (tasks, 0);
            let done = completed(condition::State::ConditionSucceeded);
            (done, CompletionStatus::ExecutionSucceeded)
        } else {
            x.failed_count = (tasks - x.succeeded_count).max(1);
            let message = format!("Task failed: {} of {tasks} tasks failed.", x.failed_count);
            let done = completed(condition::State::ConditionFailed)
                .set_message(message)
                .set_execution_reason(NonZeroExitCode);
            (done, CompletionStatus::ExecutionFailed)
        };
        x.completion_time = Some(now);
        x.reconciling = false;
        x.conditions.retain(|c| c.r#type != "Completed");
        x.conditions.push(done.set_last_transition_time(now));
        let job = name.split("/executions/").next().unwrap_or_default();
        let latest = st
            .jobs
            .get_mut(job)
            .and_then(|j| j.latest_created_execution.as_mut());
        if let Some(r) = latest.filter(|r| r.name == name) {
            r.completion_time = Some(now);
            r.completion_status = status;
        }
    }

    /// Stores a Scheduler job as is, under `job.name`.
    pub fn put_scheduler_job(&self, job: SchedulerJob) {
        self.lock().scheduler.insert(job.name.clone(), job);
    }

    /// The stored Scheduler job.
    pub fn scheduler_job(&self, name: &str) -> Option<SchedulerJob> {
        self.lock().scheduler.get(name).cloned()
    }

    /// Stores an encrypt/decrypt key whose primary version (`…/cryptoKeyVersions/1`) is `state`.
    pub fn put_key(&self, name: &str, state: CryptoKeyVersionState) {
        let primary = CryptoKeyVersion::new()
            .set_name(format!("{name}/cryptoKeyVersions/1"))
            .set_state(state);
        let key = CryptoKey::new()
            .set_name(name)
            .set_purpose(CryptoKeyPurpose::EncryptDecrypt)
            .set_primary(primary);
        self.lock().keys.insert(name.to_owned(), key);
    }

    /// Changes the state of a stored key's primary version. Panics if there is no such key.
    pub fn set_key_state(&self, name: &str, state: CryptoKeyVersionState) {
        let mut st = self.lock();
        let key = st.keys.get_mut(name).expect("set_key_state: no such key");
        key.primary.get_or_insert_default().state = state;
    }

    /// Stores a connector named `projects/p/locations/l/connectors/c` (its region is in the name).
    pub fn put_connector(&self, name: &str, state: connector::State) {
        let c = Connector::new().set_name(name).set_state(state);
        self.lock().connectors.insert(name.to_owned(), c);
    }

    /// The stored connector.
    pub fn connector(&self, name: &str) -> Option<Connector> {
        self.lock().connectors.get(name).cloned()
    }

    /// Stores the IAM policy of `resource` as a write would: with a new etag and the version
    /// Google reports.
    pub fn put_policy(&self, resource: &str, policy: Policy) {
        self.lock().store_policy(resource, policy);
    }

    /// The stored IAM policy of `resource` (`None` if never set).
    pub fn policy(&self, resource: &str) -> Option<Policy> {
        self.lock().policies.get(resource).cloned()
    }

    /// Overrides the project number of `project_id`.
    pub fn set_project_number(&self, project_id: &str, number: &str) {
        let mut st = self.lock();
        st.project_numbers
            .insert(project_id.to_owned(), number.to_owned());
    }

    /// The project number of `project_id`: the one set, or a stable 12-digit hash of the id
    /// (the emulator's, so both fakes agree).
    pub fn project_number(&self, project_id: &str) -> String {
        self.lock().number(project_id)
    }
}

impl State {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn number(&self, project_id: &str) -> String {
        if let Some(n) = self.project_numbers.get(project_id) {
            return n.clone();
        }
        let hash = project_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (100_000_000_000 + hash % 900_000_000_000).to_string()
    }

    /// The project number of the project a resource name `projects/{p}/...` is in.
    fn number_of(&self, resource: &str) -> String {
        self.number(resource.split('/').nth(1).unwrap_or_default())
    }

    fn store_policy(&mut self, resource: &str, mut policy: Policy) -> Policy {
        let conditional = policy.bindings.iter().any(|b| b.condition.is_some());
        policy.version = if conditional { 3 } else { 1 };
        policy.etag = self.next().to_be_bytes().to_vec().into();
        self.policies.insert(resource.to_owned(), policy.clone());
        policy
    }

    /// Starts an operation under `parent` (of the resource `name`), finishing it now in
    /// [`OpMode::Immediate`]; returns the call's answer (not done, like Google's).
    fn start(&mut self, api: Api, resource: &str, effect: Effect, metadata: wkt::Any) -> Operation {
        let parent = resource
            .splitn(5, '/')
            .take(4)
            .collect::<Vec<_>>()
            .join("/");
        self.op_seq += 1;
        let name = format!("{parent}/operations/op-{}", self.op_seq);
        let answer = Operation::new()
            .set_name(&name)
            .set_metadata(metadata.clone());
        let fail = self.fail_next_op.take();
        self.ops.push(Op {
            name,
            api,
            effect,
            metadata,
            fail,
            result: None,
        });
        if self.mode == OpMode::Immediate {
            self.finish(self.ops.len() - 1);
        }
        answer
    }

    /// Starts deleting `name` from the store `pick` selects (a new generation, pending until
    /// `effect` completes); `None` when there is no such resource.
    fn start_delete<R: Rollout>(
        &mut self,
        pick: fn(&mut State) -> &mut BTreeMap<String, R>,
        name: &str,
        effect: Effect,
    ) -> Option<Operation> {
        let n = self.next();
        let r = pick(self).get_mut(name)?;
        r.status().begin(n, condition::State::ConditionPending);
        let metadata = any(r);
        Some(self.start(Api::Run, name, effect, metadata))
    }

    /// Applies the effect of operation `i` and records its result.
    fn finish(&mut self, i: usize) {
        let fail = self.ops[i].fail.take();
        let result = match self.ops[i].effect.clone() {
            Effect::Deploy {
                service,
                generation,
                revision,
            } => self
                .complete_deploy(&service, generation, revision, fail)
                .map(|s| any(&s)),
            Effect::DeleteService(name) => {
                finish_delete(&mut self.services, &name, fail).map(|svc| {
                    self.policies.remove(&name);
                    self.revisions.remove(&name);
                    any(&svc)
                })
            }
            Effect::DeployJob {
                job,
                generation,
                execution,
            } => self
                .complete_job_deploy(&job, generation, execution, fail)
                .map(|j| any(&j)),
            Effect::DeleteJob(name) => finish_delete(&mut self.jobs, &name, fail).map(|job| {
                self.policies.remove(&name);
                let prefix = format!("{name}/executions/");
                self.executions.retain(|x, _| !x.starts_with(&prefix));
                any(&job)
            }),
            Effect::CreateConnector(name) => match (fail, self.connectors.get_mut(&name)) {
                (Some(f), c) => {
                    c.into_iter()
                        .for_each(|c| c.state = connector::State::Error);
                    Err(f)
                }
                (None, Some(c)) => {
                    c.state = connector::State::Ready;
                    Ok(any(c))
                }
                (None, None) => Err((Code::Aborted, "The connector was deleted first.".into())),
            },
            Effect::DeleteConnector(name) => match fail {
                Some(f) => {
                    let c = self.connectors.get_mut(&name);
                    c.into_iter()
                        .for_each(|c| c.state = connector::State::Ready);
                    Err(f)
                }
                None => {
                    self.connectors.remove(&name);
                    Ok(any(&wkt::Empty::default()))
                }
            },
        };
        let op = &mut self.ops[i];
        op.result = Some(match result {
            Ok(response) => operation::Result::Response(Box::new(response)),
            Err((code, message)) => {
                let mut error = operation::Result::Error(Default::default());
                if let operation::Result::Error(status) = &mut error {
                    status.code = code as i32;
                    status.message = message;
                }
                error
            }
        });
    }

    /// Finishes a rollout: Cloud Run's CMEK check, then the revision serves (or the terminal
    /// condition says why not). A rollout superseded by a newer generation changes nothing.
    fn complete_deploy(
        &mut self,
        name: &str,
        generation: i64,
        revision: Option<String>,
        fail: Option<(Code, String)>,
    ) -> Result<Service, (Code, String)> {
        let Some(mut svc) = self.services.get(name).cloned() else {
            return Err((
                Code::Aborted,
                format!("Service '{name}' was deleted first."),
            ));
        };
        if svc.generation != generation {
            // Superseded by a newer update or a delete: nothing to roll out.
            return Ok(svc);
        }
        let revision = revision.map(|r| format!("{name}/revisions/{r}"));
        let key = svc.template.as_ref().map_or("", |t| &t.encryption_key);
        let failure = self.rollout_failure(name, key, fail);
        let id = name.rsplit('/').next().unwrap_or_default();
        svc.uri = format!("https://{id}-xyz.a.run.app");
        if let Some(r) = &revision {
            svc.latest_created_revision = r.clone();
        }
        let result = match failure {
            None => {
                if let Some(r) = revision {
                    svc.latest_ready_revision = r;
                }
                let ok = ready(condition::State::ConditionSucceeded);
                svc.status().settle(generation, ok);
                Ok(svc.clone())
            }
            Some((status, failed)) => {
                svc.status().settle(generation, failed);
                Err(status)
            }
        };
        self.services.insert(name.to_owned(), svc);
        result
    }

    /// Finishes a job's rollout as a service's (the CMEK check, the terminal condition), then
    /// starts the execution its token asked for. A superseded rollout changes nothing (and its
    /// execution never starts).
    fn complete_job_deploy(
        &mut self,
        name: &str,
        generation: i64,
        execution: Option<String>,
        fail: Option<(Code, String)>,
    ) -> Result<Job, (Code, String)> {
        let Some(mut job) = self.jobs.get(name).cloned() else {
            return Err((Code::Aborted, format!("Job '{name}' was deleted first.")));
        };
        if job.generation != generation {
            return Ok(job);
        }
        let task = job.template.as_ref().and_then(|e| e.template.as_ref());
        let key = task.map_or("", |t| &t.encryption_key).to_owned();
        let result = match self.rollout_failure(name, &key, fail) {
            None => {
                let ok = ready(condition::State::ConditionSucceeded);
                job.status().settle(generation, ok);
                if let Some(x) = execution {
                    self.start_execution(&mut job, &x);
                }
                Ok(job.clone())
            }
            Some((status, failed)) => {
                job.status().settle(generation, failed);
                Err(status)
            }
        };
        self.jobs.insert(name.to_owned(), job);
        result
    }

    /// Creates the execution `name` of `job`, pending (no task counted, the `Completed`
    /// condition pending) until a test drives it.
    fn start_execution(&mut self, job: &mut Job, name: &str) {
        let n = self.next();
        let e = job.template.clone().unwrap_or_default();
        let now = now();
        let id = job.name.rsplit('/').next().unwrap_or_default();
        let mut x = Execution::new()
            .set_name(name)
            .set_uid(format!("uid-{n}"))
            .set_job(id)
            .set_generation(1)
            .set_labels(e.labels)
            .set_annotations(e.annotations)
            .set_parallelism(e.parallelism)
            .set_task_count(e.task_count)
            .set_or_clear_template(e.template)
            .set_create_time(now)
            .set_start_time(now)
            .set_reconciling(true)
            .set_conditions([completed(condition::State::ConditionPending)])
            .set_etag(format!("\"etag-{n}\""));
        x.launch_stage = job.launch_stage.clone();
        job.execution_count += 1;
        job.latest_created_execution = Some(
            run::ExecutionReference::new()
                .set_name(name)
                .set_create_time(now)
                .set_completion_status(CompletionStatus::ExecutionRunning),
        );
        self.executions.insert(name.to_owned(), x);
    }

    /// Why a rollout of `name` (with the CMEK `key`, if not empty) fails, if it does: the
    /// injected failure, else Cloud Run's CMEK check; as the operation's status and the terminal
    /// condition.
    fn rollout_failure(
        &self,
        name: &str,
        key: &str,
        fail: Option<(Code, String)>,
    ) -> Option<((Code, String), run::Condition)> {
        let (status, reason) = match fail {
            Some(f) => (f, None),
            None => match self.cmek_check(name, key) {
                Ok(()) => return None,
                Err((reason, message)) => ((Code::FailedPrecondition, message), Some(reason)),
            },
        };
        let mut failed = ready(condition::State::ConditionFailed).set_message(&status.1);
        if let Some(reason) = reason {
            failed = failed.set_reason(reason);
        }
        Some((status, failed))
    }

    /// What Cloud Run checks before a CMEK revision of `name` serves (or a job runs).
    fn cmek_check(&self, name: &str, key: &str) -> Result<(), (condition::CommonReason, String)> {
        use condition::CommonReason::{EncryptionKeyCheckFailed, EncryptionKeyPermissionDenied};
        if key.is_empty() {
            return Ok(());
        }
        let Some(k) = self.keys.get(key) else {
            let message = format!("The encryption key {key} does not exist.");
            return Err((EncryptionKeyCheckFailed, message));
        };
        let member = format!(
            "serviceAccount:{}",
            run_service_agent(&self.number_of(name))
        );
        let granted = self.policies.get(key).is_some_and(|p| {
            p.bindings
                .iter()
                .any(|b| b.role == KMS_ROLE && b.condition.is_none() && b.members.contains(&member))
        });
        if !granted {
            let message = format!("{member} lacks {KMS_ROLE} on the encryption key {key}.");
            return Err((EncryptionKeyPermissionDenied, message));
        }
        let state = k.primary.as_ref().map(|v| v.state.clone());
        if state != Some(CryptoKeyVersionState::Enabled) {
            let message = format!("The primary version of {key} is not enabled ({state:?}).");
            return Err((EncryptionKeyCheckFailed, message));
        }
        Ok(())
    }
}

fn any<T: wkt::message::Message>(message: &T) -> wkt::Any {
    wkt::Any::from_msg(message).expect("model types serialize")
}

fn ready(state: condition::State) -> run::Condition {
    run::Condition::new().set_type("Ready").set_state(state)
}

/// The condition `Completed` of an execution.
fn completed(state: condition::State) -> run::Condition {
    run::Condition::new().set_type("Completed").set_state(state)
}

/// The time now, to the second.
fn now() -> wkt::Timestamp {
    wkt::Timestamp::clamp(jiff::Timestamp::now().as_second(), 0)
}

/// Whether the last rollout failed (so that the same spec again is a new generation).
fn failed(terminal: &Option<run::Condition>) -> bool {
    terminal
        .as_ref()
        .is_some_and(|t| t.state == condition::State::ConditionFailed)
}

/// What services and jobs share: a name, output-only fields, and the fields a rollout or a
/// delete moves.
trait Rollout: Clone + Default + PartialEq + wkt::message::Message {
    fn name(&self) -> &str;
    fn etag(&self) -> &str;
    fn name_mut(&mut self) -> &mut String;
    /// Copies the output-only fields of `from` onto `self`.
    fn copy_outputs(&mut self, from: &Self);
    fn status(&mut self) -> Status<'_>;
}

/// The fields of a [`Rollout`] that operations move.
struct Status<'a> {
    generation: &'a mut i64,
    observed_generation: &'a mut i64,
    etag: &'a mut String,
    reconciling: &'a mut bool,
    terminal_condition: &'a mut Option<run::Condition>,
}

impl Status<'_> {
    /// A new generation (sequence number `n` in its etag) in progress, the terminal condition
    /// `state` (reconciling, or pending for a delete).
    fn begin(self, n: u64, state: condition::State) {
        *self.generation += 1;
        *self.etag = format!("\"etag-{n}\"");
        *self.reconciling = true;
        *self.terminal_condition = Some(ready(state));
    }

    /// `generation` rolled out, as `terminal` says.
    fn settle(self, generation: i64, terminal: run::Condition) {
        *self.reconciling = false;
        *self.observed_generation = generation;
        *self.terminal_condition = Some(terminal);
    }
}

macro_rules! rollout {
    ($t:ty, $copy:ident) => {
        impl Rollout for $t {
            fn name(&self) -> &str {
                &self.name
            }

            fn etag(&self) -> &str {
                &self.etag
            }

            fn name_mut(&mut self) -> &mut String {
                &mut self.name
            }

            fn copy_outputs(&mut self, from: &Self) {
                $copy(self, from)
            }

            fn status(&mut self) -> Status<'_> {
                Status {
                    generation: &mut self.generation,
                    observed_generation: &mut self.observed_generation,
                    etag: &mut self.etag,
                    reconciling: &mut self.reconciling,
                    terminal_condition: &mut self.terminal_condition,
                }
            }
        }
    };
}

rollout!(Service, with_outputs);
rollout!(Job, with_job_outputs);

/// The user-settable part of a service or job: output-only fields cleared.
fn spec_of<R: Rollout>(r: &R) -> R {
    let mut s = r.clone();
    s.copy_outputs(&R::default());
    s.name_mut().clear();
    s
}

/// The stored resource an update `sent` replaces (`kind`: `service` or `job`): `NOT_FOUND` if
/// there is none, `ABORTED` if `sent` carries another etag.
fn replaced<R: Rollout>(
    c: &Call<'_>,
    store: &BTreeMap<String, R>,
    kind: &str,
    sent: &R,
) -> GcpResult<R> {
    let name = sent.name();
    let Some(old) = store.get(name) else {
        let msg = format!(
            "Resource '{name}' of kind '{}' does not exist.",
            kind.to_uppercase()
        );
        return Err(c.err(Code::NotFound, msg));
    };
    if !sent.etag().is_empty() && sent.etag() != old.etag() {
        let msg = format!("The etag of {kind} '{name}' does not match: read it again.");
        return Err(c.err(Code::Aborted, msg));
    }
    Ok(old.clone())
}

/// Ends the delete of `name`: removed from `store` (answered as it was, or by its name alone if
/// it was gone already), or with the injected failure `fail` still there, failed.
fn finish_delete<R: Rollout>(
    store: &mut BTreeMap<String, R>,
    name: &str,
    fail: Option<(Code, String)>,
) -> Result<R, (Code, String)> {
    match (fail, store.get_mut(name)) {
        (Some(f), Some(r)) => {
            let st = r.status();
            *st.reconciling = false;
            *st.terminal_condition = Some(ready(condition::State::ConditionFailed));
            Err(f)
        }
        _ => Ok(store.remove(name).unwrap_or_else(|| {
            let mut r = R::default();
            *r.name_mut() = name.to_owned();
            r
        })),
    }
}

/// Copies the output-only fields of `from` onto `to`; `create_execution` is input only (the
/// fake consumes it), so it is cleared too.
fn with_job_outputs(to: &mut Job, from: &Job) {
    let f = from.clone();
    (to.uid, to.generation, to.observed_generation) = (f.uid, f.generation, f.observed_generation);
    (to.create_time, to.update_time) = (f.create_time, f.update_time);
    (to.delete_time, to.expire_time) = (f.delete_time, f.expire_time);
    (to.creator, to.last_modifier, to.etag) = (f.creator, f.last_modifier, f.etag);
    (to.terminal_condition, to.conditions) = (f.terminal_condition, f.conditions);
    (to.execution_count, to.latest_created_execution) =
        (f.execution_count, f.latest_created_execution);
    (to.reconciling, to.satisfies_pzs) = (f.reconciling, f.satisfies_pzs);
    to.create_execution = None;
}

/// Copies the output-only fields of `from` onto `to`.
fn with_outputs(to: &mut Service, from: &Service) {
    let f = from.clone();
    (to.uid, to.generation, to.observed_generation) = (f.uid, f.generation, f.observed_generation);
    (to.create_time, to.update_time) = (f.create_time, f.update_time);
    (to.delete_time, to.expire_time) = (f.delete_time, f.expire_time);
    (to.creator, to.last_modifier, to.etag) = (f.creator, f.last_modifier, f.etag);
    (to.terminal_condition, to.conditions) = (f.terminal_condition, f.conditions);
    (to.latest_ready_revision, to.latest_created_revision) =
        (f.latest_ready_revision, f.latest_created_revision);
    (to.traffic_statuses, to.uri, to.urls) = (f.traffic_statuses, f.uri, f.urls);
    (to.reconciling, to.satisfies_pzs) = (f.reconciling, f.satisfies_pzs);
}

/// What Cloud Run fills in server-side (as the emulator records it).
fn apply_defaults(svc: &mut Service, project_number: &str) {
    if svc.ingress == run::IngressTraffic::Unspecified {
        svc.ingress = run::IngressTraffic::All;
    }
    if svc.launch_stage == Default::default() {
        svc.launch_stage = "GA".into();
    }
    if svc.traffic.is_empty() {
        svc.traffic = vec![
            run::TrafficTarget::new()
                .set_type(run::TrafficTargetAllocationType::Latest)
                .set_percent(100),
        ];
    }
    let t = svc.template.get_or_insert_default();
    t.timeout.get_or_insert(wkt::Duration::clamp(300, 0));
    default_service_account(&mut t.service_account, project_number);
    if t.max_instance_request_concurrency == 0 {
        t.max_instance_request_concurrency = 80;
    }
    let serving = t.containers.iter().position(|c| !c.ports.is_empty());
    for (i, c) in t.containers.iter_mut().enumerate() {
        let r = c
            .resources
            .get_or_insert_with(|| run::ResourceRequirements::new().set_cpu_idle(true));
        default_limits(r);
        if i == serving.unwrap_or(0) {
            if c.ports.is_empty() {
                c.ports.push(run::ContainerPort::new());
            }
            let p = &mut c.ports[0];
            if p.name.is_empty() {
                p.name = "http1".into();
            }
            if p.container_port == 0 {
                p.container_port = 8080;
            }
            let tcp = run::TCPSocketAction::new().set_port(p.container_port);
            c.startup_probe.get_or_insert_with(|| {
                run::Probe::new()
                    .set_timeout_seconds(240)
                    .set_period_seconds(240)
                    .set_failure_threshold(1)
                    .set_tcp_socket(tcp)
            });
        }
    }
}

/// What Cloud Run fills in server-side for a job (as the emulator records it).
fn apply_job_defaults(job: &mut Job, project_number: &str) {
    if job.launch_stage == Default::default() {
        job.launch_stage = "GA".into();
    }
    let e = job.template.get_or_insert_default();
    if e.task_count == 0 {
        e.task_count = 1;
    }
    let t = e.template.get_or_insert_default();
    t.timeout.get_or_insert(wkt::Duration::clamp(600, 0));
    t.retries
        .get_or_insert(run::task_template::Retries::MaxRetries(3));
    default_service_account(&mut t.service_account, project_number);
    for c in &mut t.containers {
        default_limits(c.resources.get_or_insert_default());
    }
}

/// The project's default compute service account, when none is set.
fn default_service_account(account: &mut String, project_number: &str) {
    if account.is_empty() {
        *account = format!("{project_number}-compute@developer.gserviceaccount.com");
    }
}

/// One CPU and 512 MiB, where the limits do not say.
fn default_limits(r: &mut run::ResourceRequirements) {
    r.limits
        .entry("cpu".into())
        .or_insert_with(|| "1000m".into());
    r.limits
        .entry("memory".into())
        .or_insert_with(|| "512Mi".into());
}

/// Cloud Run's synchronous checks of a service about to be deployed.
fn validate(c: &Call<'_>, svc: &Service) -> GcpResult<()> {
    let t = svc.template.clone().unwrap_or_default();
    if t.containers.is_empty() {
        let msg =
            "Violation in service.template.containers: at least one container must be specified.";
        return Err(c.err(Code::InvalidArgument, msg));
    }
    check_connector(c, t.vpc_access)
}

/// Cloud Run's synchronous checks of a job about to be deployed as `name`; the full name of the
/// execution its token asks for, if any. A token makes one execution, once: a token whose
/// execution exists or is about to (its operation pending) is refused with `ALREADY_EXISTS`.
fn validate_job(c: &Call<'_>, name: &str, job: &Job) -> GcpResult<Option<String>> {
    let e = job.template.clone().unwrap_or_default();
    let t = e.template.unwrap_or_default();
    if t.containers.is_empty() {
        let msg = "Violation in job.template.template.containers: at least one container must be specified.";
        return Err(c.err(Code::InvalidArgument, msg));
    }
    check_connector(c, t.vpc_access)?;
    let token = job.start_execution_token().or(job.run_execution_token());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let id = name.rsplit('/').next().unwrap_or_default();
    if id.len() + token.len() >= 63 {
        let msg = format!(
            "The sum of the job name '{id}' and the execution token '{token}' lengths must be fewer than 63 characters."
        );
        return Err(c.err(Code::InvalidArgument, msg));
    }
    let execution = format!("{name}/executions/{id}-{token}");
    let starting = c.ops.iter().any(|o| {
        o.result.is_none()
            && matches!(&o.effect, Effect::DeployJob { execution: Some(x), .. } if *x == execution)
    });
    if starting || c.executions.contains_key(&execution) {
        let msg = format!(
            "Execution '{execution}' already exists: an execution token starts one execution, once."
        );
        return Err(c.err(Code::AlreadyExists, msg));
    }
    Ok(Some(execution))
}

/// The VPC connector of a template, if any, exists and is ready.
fn check_connector(c: &Call<'_>, vpc_access: Option<run::VpcAccess>) -> GcpResult<()> {
    let connector = vpc_access.map(|v| v.connector).unwrap_or_default();
    match c.connectors.get(&connector) {
        _ if connector.is_empty() => Ok(()),
        None => Err(c.err(
            Code::InvalidArgument,
            format!("VPC connector {connector} does not exist, or Cloud Run does not have permission to use it."),
        )),
        Some(x) if x.state != connector::State::Ready => Err(c.err(
            Code::FailedPrecondition,
            format!("VPC connector {connector} is not ready (state: {:?}).", x.state),
        )),
        Some(_) => Ok(()),
    }
}

fn iam_get(c: Call<'_>, resource: &str, exists: bool) -> GcpResult<Policy> {
    match c.policies.get(resource) {
        Some(p) => Ok(p.clone()),
        None if exists => Ok(Policy::new().set_etag(EMPTY_ETAG.to_vec())),
        None => Err(c.err(
            Code::NotFound,
            format!("Resource '{resource}' was not found."),
        )),
    }
}

fn iam_set(mut c: Call<'_>, resource: &str, exists: bool, policy: Policy) -> GcpResult<Policy> {
    let current = match c.policies.get(resource) {
        Some(p) => p.etag.to_vec(),
        None if exists => EMPTY_ETAG.to_vec(),
        None => {
            return Err(c.err(
                Code::NotFound,
                format!("Resource '{resource}' was not found."),
            ));
        }
    };
    if !policy.etag.is_empty() && policy.etag.as_ref() != current.as_slice() {
        let msg = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.";
        return Err(c.err(Code::Aborted, msg));
    }
    Ok(c.store_policy(resource, policy))
}

struct Run(FakeGcp);
struct Kms(FakeGcp);
struct Vpc(FakeGcp);
struct Projects(FakeGcp);

struct RunJobs(FakeGcp);
struct Scheduler(FakeGcp);
struct FakeBuilds(FakeGcp);

/// The base image the fake returns for a build with automatic updates.
pub const FAKE_BASE_IMAGE: &str =
    "us-docker.pkg.dev/serverless-runtimes/google-22/runtimes/nodejs22";

impl FakeGcp {
    /// The next build submitted fails (its Cloud Build operation ends with `UNKNOWN` and
    /// `message`, the build's log URL in the metadata).
    pub fn fail_next_build(&self, message: impl Into<String>) {
        self.lock().fail_next_build = Some(message.into());
    }
}

/// Builds finish at once: `{image_uri}@sha256:{n}` (n counting builds), or a failure.
#[async_trait]
impl super::BuildsApi for FakeBuilds {
    async fn submit_build(
        &self,
        request: google_cloud_run_v2::model::SubmitBuildRequest,
    ) -> GcpResult<google_cloud_run_v2::model::SubmitBuildResponse> {
        use google_cloud_build_v1::model::{Build, BuildOperationMetadata, BuiltImage, Results};
        let mut c = self.0.enter("run", "builds.submit")?;
        if request.image_uri.is_empty() {
            return Err(c.err(Code::InvalidArgument, "image_uri is required"));
        }
        c.seq += 1;
        let n = c.seq;
        let name = format!("{}/operations/build-{n}", request.parent);
        let digest = format!("sha256:{n:064x}");
        let failure = c.fail_next_build.take();
        let mut build = Build::new().set_id(n.to_string()).set_log_url(format!(
            "https://console.cloud.google.com/cloud-build/builds/{n}"
        ));
        let mut op = Operation::new().set_name(&name);
        op.done = true;
        match &failure {
            Some(message) => {
                build = build.set_status(google_cloud_build_v1::model::build::Status::Failure);
                let mut error = operation::Result::Error(Default::default());
                if let operation::Result::Error(status) = &mut error {
                    status.code = Code::Unknown as i32;
                    status.message = message.clone();
                }
                op.result = Some(error);
            }
            None => {
                build = build
                    .set_status(google_cloud_build_v1::model::build::Status::Success)
                    .set_results(
                        Results::new().set_images([BuiltImage::new()
                            .set_name(&request.image_uri)
                            .set_digest(&digest)]),
                    );
                op.result = Some(operation::Result::Response(Box::new(
                    wkt::Any::from_msg(&build).map_err(|e| c.err(Code::Internal, e.to_string()))?,
                )));
            }
        }
        op.metadata = Some(
            wkt::Any::from_msg(&BuildOperationMetadata::new().set_build(build))
                .map_err(|e| c.err(Code::Internal, e.to_string()))?,
        );
        c.builds.insert(name, op.clone());
        let automatic = matches!(
            &request.build_type,
            Some(google_cloud_run_v2::model::submit_build_request::BuildType::BuildpackBuild(b))
                if b.enable_automatic_updates
        );
        Ok(google_cloud_run_v2::model::SubmitBuildResponse::new()
            .set_build_operation(op)
            .set_base_image_uri(if automatic { FAKE_BASE_IMAGE } else { "" }))
    }

    async fn get_build_operation(&self, name: &str) -> GcpResult<Operation> {
        let c = self.0.enter("cloudbuild", "operations.get")?;
        c.builds
            .get(name)
            .cloned()
            .ok_or_else(|| c.err(Code::NotFound, format!("Operation '{name}' not found.")))
    }
}

/// `IamPolicyApi` on the resources of `$store` (the policies of every API in one map).
macro_rules! iam_policy_api {
    ($client:ty, $api:literal, $collection:literal, $store:ident) => {
        #[async_trait]
        impl IamPolicyApi for $client {
            async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy> {
                let c = self.0.enter($api, concat!($collection, ".getIamPolicy"))?;
                let exists = c.$store.contains_key(resource);
                iam_get(c, resource, exists)
            }

            async fn set_iam_policy(&self, resource: &str, policy: Policy) -> GcpResult<Policy> {
                let c = self.0.enter($api, concat!($collection, ".setIamPolicy"))?;
                let exists = c.$store.contains_key(resource);
                iam_set(c, resource, exists, policy)
            }
        }
    };
}

iam_policy_api!(Run, "run", "services", services);
iam_policy_api!(RunJobs, "run", "jobs", jobs);
iam_policy_api!(Kms, "kms", "cryptoKeys", keys);

#[async_trait]
impl CloudRunApi for Run {
    async fn get_service(&self, name: &str) -> GcpResult<Option<Service>> {
        let c = self.0.enter("run", "services.get")?;
        Ok(c.services.get(name).cloned())
    }

    async fn create_service(
        &self,
        parent: &str,
        service_id: &str,
        mut service: Service,
    ) -> GcpResult<Operation> {
        let mut c = self.0.enter("run", "services.create")?;
        let name = format!("{parent}/services/{service_id}");
        if c.services.contains_key(&name) {
            let msg = format!("Resource '{service_id}' already exists.");
            return Err(c.err(Code::AlreadyExists, msg));
        }
        validate(&c, &service)?;
        service.copy_outputs(&Service::new());
        apply_defaults(&mut service, &c.number_of(&name));
        let n = c.next();
        service.name = name.clone();
        service.uid = format!("uid-{n}");
        service
            .status()
            .begin(n, condition::State::ConditionReconciling);
        let metadata = any(&service);
        c.services.insert(name.clone(), service);
        c.revisions.insert(name.clone(), 1);
        let revision = Some(format!("{service_id}-00001-abc"));
        let (generation, service) = (1, name.clone());
        let effect = Effect::Deploy {
            service,
            generation,
            revision,
        };
        Ok(c.start(Api::Run, &name, effect, metadata))
    }

    async fn update_service(&self, service: Service) -> GcpResult<Operation> {
        let mut c = self.0.enter("run", "services.patch")?;
        let name = service.name.clone();
        let old = replaced(&c, &c.services, "service", &service)?;
        validate(&c, &service)?;
        let mut new = spec_of(&service);
        apply_defaults(&mut new, &c.number_of(&name));
        let last_failed = failed(&old.terminal_condition);
        let changed = spec_of(&new) != spec_of(&old) || last_failed;
        let template_changed = new.template != old.template || last_failed;
        new.copy_outputs(&old);
        new.name = name.clone();
        let mut revision = None;
        if changed {
            let n = c.next();
            new.status()
                .begin(n, condition::State::ConditionReconciling);
            if template_changed {
                // Seeded services count on from their latest revision, `{id}-0000N-xyz`.
                let seeded = old.latest_created_revision.rsplit('-').nth(1);
                let seeded = seeded.and_then(|n| n.parse().ok()).unwrap_or(0);
                let r = c.revisions.entry(name.clone()).or_insert(seeded);
                *r += 1;
                let id = name.rsplit('/').next().unwrap_or_default();
                revision = Some(format!("{id}-{r:05}-abc"));
            }
        }
        let metadata = any(&new);
        let generation = new.generation;
        c.services.insert(name.clone(), new);
        let effect = Effect::Deploy {
            service: name.clone(),
            generation,
            revision,
        };
        Ok(c.start(Api::Run, &name, effect, metadata))
    }

    async fn delete_service(&self, name: &str) -> GcpResult<Option<Operation>> {
        let mut c = self.0.enter("run", "services.delete")?;
        let effect = Effect::DeleteService(name.to_owned());
        Ok(c.start_delete(|st| &mut st.services, name, effect))
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        let c = self.0.enter("run", "operations.get")?;
        render_op(&c, Api::Run, name)
    }
}

fn render_op(c: &Call<'_>, api: Api, name: &str) -> GcpResult<Operation> {
    let Some(op) = c.ops.iter().find(|o| o.name == name && o.api == api) else {
        return Err(c.err(Code::NotFound, format!("Operation '{name}' not found.")));
    };
    let mut out = Operation::new()
        .set_name(name)
        .set_metadata(op.metadata.clone());
    out.done = op.result.is_some();
    out.result = op.result.clone();
    Ok(out)
}

#[async_trait]
impl CloudRunJobsApi for RunJobs {
    async fn get_job(&self, name: &str) -> GcpResult<Option<Job>> {
        let c = self.0.enter("run", "jobs.get")?;
        Ok(c.jobs.get(name).cloned())
    }

    async fn create_job(&self, parent: &str, job_id: &str, mut job: Job) -> GcpResult<Operation> {
        let mut c = self.0.enter("run", "jobs.create")?;
        let name = format!("{parent}/jobs/{job_id}");
        if c.jobs.contains_key(&name) {
            let msg = format!("Resource '{job_id}' already exists.");
            return Err(c.err(Code::AlreadyExists, msg));
        }
        let execution = validate_job(&c, &name, &job)?;
        job.copy_outputs(&Job::new());
        apply_job_defaults(&mut job, &c.number_of(&name));
        let n = c.next();
        job.name = name.clone();
        job.uid = format!("uid-{n}");
        job.status()
            .begin(n, condition::State::ConditionReconciling);
        let metadata = any(&job);
        c.jobs.insert(name.clone(), job);
        let effect = Effect::DeployJob {
            job: name.clone(),
            generation: 1,
            execution,
        };
        Ok(c.start(Api::Run, &name, effect, metadata))
    }

    async fn update_job(&self, job: Job) -> GcpResult<Operation> {
        let mut c = self.0.enter("run", "jobs.patch")?;
        let name = job.name.clone();
        let old = replaced(&c, &c.jobs, "job", &job)?;
        let execution = validate_job(&c, &name, &job)?;
        let mut new = spec_of(&job);
        apply_job_defaults(&mut new, &c.number_of(&name));
        let changed = spec_of(&new) != spec_of(&old)
            || execution.is_some()
            || failed(&old.terminal_condition);
        new.copy_outputs(&old);
        new.name = name.clone();
        if changed {
            let n = c.next();
            new.status()
                .begin(n, condition::State::ConditionReconciling);
        }
        let metadata = any(&new);
        let generation = new.generation;
        c.jobs.insert(name.clone(), new);
        let effect = Effect::DeployJob {
            job: name.clone(),
            generation,
            execution,
        };
        Ok(c.start(Api::Run, &name, effect, metadata))
    }

    async fn delete_job(&self, name: &str) -> GcpResult<Option<Operation>> {
        let mut c = self.0.enter("run", "jobs.delete")?;
        let effect = Effect::DeleteJob(name.to_owned());
        Ok(c.start_delete(|st| &mut st.jobs, name, effect))
    }

    async fn get_execution(&self, name: &str) -> GcpResult<Option<Execution>> {
        let c = self.0.enter("run", "executions.get")?;
        Ok(c.executions.get(name).cloned())
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        let c = self.0.enter("run", "operations.get")?;
        render_op(&c, Api::Run, name)
    }
}

/// The fields of a Scheduler job an update mask may name.
const SCHEDULER_FIELDS: [&str; 8] = [
    "description",
    "schedule",
    "time_zone",
    "http_target",
    "pubsub_target",
    "app_engine_http_target",
    "retry_config",
    "attempt_deadline",
];

impl Scheduler {
    /// Sets the state of the stored job `name` (`NOT_FOUND` if there is none) and answers it.
    fn set_state(
        &self,
        method: &'static str,
        name: &str,
        state: SchedulerState,
    ) -> GcpResult<SchedulerJob> {
        let mut c = self.0.enter("cloudscheduler", method)?;
        let Some(job) = c.scheduler.get_mut(name) else {
            return Err(c.err(Code::NotFound, format!("Job not found: {name}.")));
        };
        job.state = state;
        job.user_update_time = Some(now());
        Ok(job.clone())
    }
}

#[async_trait]
impl SchedulerApi for Scheduler {
    async fn get_job(&self, name: &str) -> GcpResult<Option<SchedulerJob>> {
        let c = self.0.enter("cloudscheduler", "jobs.get")?;
        Ok(c.scheduler.get(name).cloned())
    }

    async fn create_job(&self, parent: &str, mut job: SchedulerJob) -> GcpResult<SchedulerJob> {
        let mut c = self.0.enter("cloudscheduler", "jobs.create")?;
        let id = job.name.strip_prefix(&format!("{parent}/jobs/"));
        if id.is_none_or(|id| id.is_empty() || id.contains('/')) {
            let msg = format!("Job name '{}' must be {parent}/jobs/JOB_ID.", job.name);
            return Err(c.err(Code::InvalidArgument, msg));
        }
        if job.schedule.is_empty() || job.target.is_none() {
            let msg = "A job needs a schedule and a target.";
            return Err(c.err(Code::InvalidArgument, msg));
        }
        if c.scheduler.contains_key(&job.name) {
            let msg = format!("Job {} already exists.", job.name);
            return Err(c.err(Code::AlreadyExists, msg));
        }
        job.state = SchedulerState::Enabled;
        job.user_update_time = Some(now());
        (job.status, job.schedule_time, job.last_attempt_time) = (None, None, None);
        c.scheduler.insert(job.name.clone(), job.clone());
        Ok(job)
    }

    async fn update_job(
        &self,
        job: SchedulerJob,
        update_mask: Vec<String>,
    ) -> GcpResult<SchedulerJob> {
        let mut c = self.0.enter("cloudscheduler", "jobs.patch")?;
        let unknown = update_mask
            .iter()
            .find(|p| !SCHEDULER_FIELDS.contains(&p.as_str()));
        if let Some(path) = unknown.or(update_mask.is_empty().then_some(&String::new())) {
            let msg =
                format!("Invalid update mask path '{path}': name fields of {SCHEDULER_FIELDS:?}.");
            return Err(c.err(Code::InvalidArgument, msg));
        }
        let Some(stored) = c.scheduler.get_mut(&job.name) else {
            return Err(c.err(Code::NotFound, format!("Job not found: {}.", job.name)));
        };
        for path in &update_mask {
            let j = job.clone();
            match path.as_str() {
                "description" => stored.description = j.description,
                "schedule" => stored.schedule = j.schedule,
                "time_zone" => stored.time_zone = j.time_zone,
                "retry_config" => stored.retry_config = j.retry_config,
                "attempt_deadline" => stored.attempt_deadline = j.attempt_deadline,
                // One of the targets: the job's target is replaced (or cleared) whole.
                _ => stored.target = j.target,
            }
        }
        stored.user_update_time = Some(now());
        Ok(stored.clone())
    }

    async fn pause_job(&self, name: &str) -> GcpResult<SchedulerJob> {
        self.set_state("jobs.pause", name, SchedulerState::Paused)
    }

    async fn resume_job(&self, name: &str) -> GcpResult<SchedulerJob> {
        self.set_state("jobs.resume", name, SchedulerState::Enabled)
    }

    async fn delete_job(&self, name: &str) -> GcpResult<bool> {
        let mut c = self.0.enter("cloudscheduler", "jobs.delete")?;
        Ok(c.scheduler.remove(name).is_some())
    }
}

#[async_trait]
impl KmsApi for Kms {
    async fn get_crypto_key(&self, name: &str) -> GcpResult<Option<CryptoKey>> {
        let c = self.0.enter("kms", "cryptoKeys.get")?;
        Ok(c.keys.get(name).cloned())
    }
}

#[async_trait]
impl VpcAccessApi for Vpc {
    async fn get_connector(&self, name: &str) -> GcpResult<Option<Connector>> {
        let c = self.0.enter("vpcaccess", "connectors.get")?;
        Ok(c.connectors.get(name).cloned())
    }

    async fn create_connector(
        &self,
        parent: &str,
        connector_id: &str,
        mut connector: Connector,
    ) -> GcpResult<Operation> {
        let mut c = self.0.enter("vpcaccess", "connectors.create")?;
        let name = format!("{parent}/connectors/{connector_id}");
        if c.connectors.contains_key(&name) {
            return Err(c.err(Code::AlreadyExists, "Requested entity already exists"));
        }
        connector.name = name.clone();
        connector.state = connector::State::Creating;
        if connector.machine_type.is_empty() {
            connector.machine_type = "e2-micro".into();
        }
        if connector.min_instances == 0 {
            connector.min_instances = 2;
        }
        if connector.max_instances == 0 {
            connector.max_instances = 10;
        }
        c.connectors.insert(name.clone(), connector);
        let metadata = vpc_metadata("CreateConnector", &name);
        let effect = Effect::CreateConnector(name.clone());
        Ok(c.start(Api::VpcAccess, &name, effect, metadata))
    }

    async fn delete_connector(&self, name: &str) -> GcpResult<Option<Operation>> {
        let mut c = self.0.enter("vpcaccess", "connectors.delete")?;
        let Some(connector) = c.connectors.get_mut(name) else {
            return Ok(None);
        };
        connector.state = connector::State::Deleting;
        let metadata = vpc_metadata("DeleteConnector", name);
        let effect = Effect::DeleteConnector(name.to_owned());
        Ok(Some(c.start(Api::VpcAccess, name, effect, metadata)))
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        let c = self.0.enter("vpcaccess", "operations.get")?;
        render_op(&c, Api::VpcAccess, name)
    }
}

fn vpc_metadata(method: &str, target: &str) -> wkt::Any {
    any(&OperationMetadata::new()
        .set_method(format!(
            "google.cloud.vpcaccess.v1.VpcAccessService.{method}"
        ))
        .set_target(target))
}

#[async_trait]
impl ProjectsApi for Projects {
    async fn project_number(&self, project_id: &str) -> GcpResult<String> {
        Ok(self
            .0
            .enter("resourcemanager", "projects.get")?
            .number(project_id))
    }
}

#[cfg(test)]
mod tests {
    use google_cloud_iam_v1::model::Binding;
    use google_cloud_type::model::Expr;

    use super::*;

    const PARENT: &str = "projects/p/locations/europe-west1";
    const NAME: &str = "projects/p/locations/europe-west1/services/web";
    const KEY: &str = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k";
    const CONNECTOR: &str = "projects/p/locations/europe-west1/connectors/c";
    const JOB: &str = "projects/p/locations/europe-west1/jobs/batch";
    const CRON: &str = "projects/p/locations/europe-west1/jobs/batch-schedule";

    fn service() -> Service {
        let container = run::Container::new().set_image("img");
        Service::new().set_template(run::RevisionTemplate::new().set_containers([container]))
    }

    fn terminal(s: &Service) -> run::Condition {
        s.terminal_condition.clone().unwrap_or_default()
    }

    fn job() -> Job {
        let container = run::Container::new().set_image("img");
        let task = run::TaskTemplate::new().set_containers([container]);
        Job::new().set_template(run::ExecutionTemplate::new().set_template(task))
    }

    fn cron() -> SchedulerJob {
        use google_cloud_scheduler_v1::model::HttpTarget;
        let target = HttpTarget::new().set_uri(format!("https://run.googleapis.com/v2/{JOB}:run"));
        SchedulerJob::new()
            .set_name(CRON)
            .set_schedule("0 3 * * *")
            .set_http_target(target)
    }

    fn job_terminal(j: &Job) -> run::Condition {
        j.terminal_condition.clone().unwrap_or_default()
    }

    fn completed_state(x: &Execution) -> condition::State {
        let c = x.conditions.iter().find(|c| c.r#type == "Completed");
        c.expect("a Completed condition").state.clone()
    }

    #[tokio::test]
    async fn a_job_created_with_a_token_rolls_out_then_starts_that_execution_once() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        let op = gcp
            .jobs
            .create_job(PARENT, "batch", job().set_run_execution_token("t1"))
            .await
            .unwrap();
        assert!(!op.done);
        assert!(gcp.jobs.get_operation(&op.name).await.unwrap().done);
        let j = gcp.jobs.get_job(JOB).await.unwrap().unwrap();
        assert_eq!((j.generation, j.observed_generation), (1, 1));
        assert!(!j.reconciling && !j.etag.is_empty());
        assert_eq!(job_terminal(&j).state, condition::State::ConditionSucceeded);
        assert_eq!(j.create_execution, None, "the token is consumed");
        let t = j.template.clone().unwrap();
        assert_eq!(t.task_count, 1);
        let task = t.template.unwrap();
        assert_eq!(task.max_retries(), Some(&3));
        let number = fake.project_number("p");
        assert_eq!(
            task.service_account,
            format!("{number}-compute@developer.gserviceaccount.com")
        );
        let x_name = format!("{JOB}/executions/batch-t1");
        assert_eq!(j.execution_count, 1);
        let latest = j.latest_created_execution.clone().unwrap();
        assert_eq!(latest.name, x_name);
        assert_eq!(latest.completion_status, CompletionStatus::ExecutionRunning);

        let x = gcp.jobs.get_execution(&x_name).await.unwrap().unwrap();
        assert_eq!((x.job.as_str(), x.task_count), ("batch", 1));
        assert!(x.reconciling && x.completion_time.is_none());
        assert_eq!(completed_state(&x), condition::State::ConditionPending);
        fake.set_execution_counts(&x_name, 1, 0, 0);
        assert_eq!(fake.execution(&x_name).unwrap().running_count, 1);
        fake.finish_execution(&x_name, true);
        let x = fake.execution(&x_name).unwrap();
        assert_eq!(
            (x.running_count, x.succeeded_count, x.failed_count),
            (0, 1, 0)
        );
        assert!(!x.reconciling && x.completion_time.is_some());
        assert_eq!(completed_state(&x), condition::State::ConditionSucceeded);
        let latest = fake.job(JOB).unwrap().latest_created_execution.unwrap();
        assert_eq!(
            latest.completion_status,
            CompletionStatus::ExecutionSucceeded
        );
        assert_eq!(latest.completion_time, x.completion_time);

        // The same token again is refused; a new one starts a new execution.
        let again = j.clone().set_start_execution_token("t1");
        let err = gcp.jobs.update_job(again).await.unwrap_err();
        assert_eq!((err.method, err.code), ("jobs.patch", Code::AlreadyExists));
        let j = fake.job(JOB).unwrap();
        assert_eq!(j.generation, 1, "a refused update changes nothing");
        gcp.jobs
            .update_job(j.set_start_execution_token("t2"))
            .await
            .unwrap();
        let j = fake.job(JOB).unwrap();
        assert_eq!((j.generation, j.execution_count), (2, 2));
        let latest = j.latest_created_execution.unwrap().name;
        assert_eq!(latest, format!("{JOB}/executions/batch-t2"));
        assert_eq!(
            gcp.jobs
                .get_execution(&format!("{JOB}/executions/nope"))
                .await,
            Ok(None)
        );
        let long = "x".repeat(60);
        let err = gcp
            .jobs
            .update_job(fake.job(JOB).unwrap().set_run_execution_token(long));
        assert_eq!(err.await.unwrap_err().code, Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_pending_job_rollout_holds_its_execution_and_its_token() {
        let fake = FakeGcp::new();
        fake.set_mode(OpMode::Manual);
        let gcp = fake.gcp();
        let create = gcp.jobs.create_job(PARENT, "batch", job()).await.unwrap();
        let j = fake.job(JOB).unwrap();
        assert!(j.reconciling);
        assert_eq!((j.generation, j.observed_generation), (1, 0));
        assert_eq!(
            job_terminal(&j).state,
            condition::State::ConditionReconciling
        );
        fake.complete(&create.name);

        let labelled = fake.job(JOB).unwrap().set_labels([("team", "a")]);
        let run = labelled.clone().set_run_execution_token("t1");
        let update = gcp.jobs.update_job(run.clone()).await.unwrap();
        let j = fake.job(JOB).unwrap();
        assert_eq!((j.generation, j.observed_generation), (2, 1));
        assert_eq!(j.labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(j.execution_count, 0, "no execution before the rollout");
        let err = gcp.jobs.update_job(run.set_etag(j.etag.clone())).await;
        assert_eq!(err.unwrap_err().code, Code::AlreadyExists, "token pending");
        let err = gcp.jobs.update_job(labelled).await.unwrap_err();
        assert_eq!(err.code, Code::Aborted, "stale etag");
        assert_eq!(fake.pending_operations(), [update.name.as_str()]);
        fake.complete(&update.name);
        let j = fake.job(JOB).unwrap();
        assert_eq!((j.observed_generation, j.execution_count), (2, 1));
        assert!(
            fake.execution(&format!("{JOB}/executions/batch-t1"))
                .is_some()
        );

        // The same spec again: no new generation.
        gcp.jobs.update_job(j).await.unwrap();
        fake.complete_all();
        assert_eq!(fake.job(JOB).unwrap().generation, 2);
    }

    #[tokio::test]
    async fn a_failed_job_rollout_starts_no_execution_and_keeps_the_token_free() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        fake.fail_next_operation(Code::FailedPrecondition, "image not found");
        let with_token = job().set_run_execution_token("t1");
        let op = gcp
            .jobs
            .create_job(PARENT, "batch", with_token.clone())
            .await
            .unwrap();
        let op = gcp.jobs.get_operation(&op.name).await.unwrap();
        assert_eq!(op_error(&op).0, Code::FailedPrecondition);
        let j = fake.job(JOB).unwrap();
        assert_eq!(job_terminal(&j).state, condition::State::ConditionFailed);
        assert_eq!(job_terminal(&j).message, "image not found");
        assert_eq!(j.execution_count, 0);
        let retry = with_token.set_name(JOB);
        gcp.jobs.update_job(retry).await.unwrap();
        let j = fake.job(JOB).unwrap();
        assert_eq!(job_terminal(&j).state, condition::State::ConditionSucceeded);
        assert_eq!(j.execution_count, 1);
        let x = format!("{JOB}/executions/batch-t1");
        fake.set_execution_counts(&x, 0, 2, 0);
        fake.finish_execution(&x, false);
        let x = fake.execution(&x).unwrap();
        assert_eq!((x.succeeded_count, x.failed_count), (2, 1));
        assert_eq!(completed_state(&x), condition::State::ConditionFailed);
        let latest = fake.job(JOB).unwrap().latest_created_execution.unwrap();
        assert_eq!(latest.completion_status, CompletionStatus::ExecutionFailed);
    }

    #[tokio::test]
    async fn a_deleted_job_takes_its_executions_and_policy_with_it() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        let err = gcp.jobs.get_iam_policy(JOB).await.unwrap_err();
        assert_eq!(
            (err.method, err.code),
            ("jobs.getIamPolicy", Code::NotFound)
        );
        gcp.jobs
            .create_job(PARENT, "batch", job().set_start_execution_token("a"))
            .await
            .unwrap();
        let err = gcp.jobs.create_job(PARENT, "batch", job()).await;
        assert_eq!(err.unwrap_err().code, Code::AlreadyExists);
        let policy = gcp.jobs.get_iam_policy(JOB).await.unwrap();
        let set = gcp.jobs.set_iam_policy(JOB, policy).await.unwrap();
        assert_eq!(fake.policy(JOB), Some(set));
        fake.set_mode(OpMode::Manual);
        let op = gcp.jobs.delete_job(JOB).await.unwrap().unwrap();
        let j = gcp.jobs.get_job(JOB).await.unwrap().unwrap();
        assert!(j.reconciling);
        assert_eq!(job_terminal(&j).state, condition::State::ConditionPending);
        fake.complete(&op.name);
        assert_eq!(gcp.jobs.get_job(JOB).await, Ok(None));
        assert_eq!(gcp.jobs.delete_job(JOB).await, Ok(None));
        assert_eq!(fake.execution(&format!("{JOB}/executions/batch-a")), None);
        assert_eq!(fake.policy(JOB), None);
        let err = gcp.jobs.update_job(j).await.unwrap_err();
        assert_eq!(err.code, Code::NotFound);
        assert!(gcp.jobs.get_operation(&op.name).await.unwrap().done);
    }

    #[tokio::test]
    async fn scheduler_jobs_are_created_updated_by_mask_paused_resumed_and_deleted() {
        use google_cloud_scheduler_v1::model::job::State;
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        let s = &gcp.scheduler;
        assert_eq!(s.get_job(CRON).await, Ok(None));
        let created = s.create_job(PARENT, cron()).await.unwrap();
        assert_eq!(created.state, State::Enabled);
        assert!(created.user_update_time.is_some());
        assert_eq!(fake.scheduler_job(CRON), Some(created.clone()));
        let err = s.create_job(PARENT, cron()).await.unwrap_err();
        assert_eq!((err.api, err.code), ("cloudscheduler", Code::AlreadyExists));
        let elsewhere = "projects/p/locations/us-central1";
        let err = s.create_job(elsewhere, cron()).await.unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);

        let change = cron()
            .set_schedule("*/5 * * * *")
            .set_time_zone("Europe/Paris")
            .set_description("not in the mask");
        let mask = vec!["schedule".to_owned(), "time_zone".to_owned()];
        let updated = s.update_job(change.clone(), mask).await.unwrap();
        assert_eq!(
            (updated.schedule.as_str(), updated.time_zone.as_str()),
            ("*/5 * * * *", "Europe/Paris")
        );
        assert_eq!(updated.description, "");
        for mask in [vec![], vec!["name".to_owned()]] {
            let err = s.update_job(change.clone(), mask).await.unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument);
        }

        assert_eq!(s.pause_job(CRON).await.unwrap().state, State::Paused);
        let still = s.update_job(change, vec!["description".into()]).await;
        assert_eq!(
            still.unwrap().state,
            State::Paused,
            "an update keeps it paused"
        );
        assert_eq!(s.resume_job(CRON).await.unwrap().state, State::Enabled);
        assert_eq!(s.delete_job(CRON).await, Ok(true));
        assert_eq!(s.delete_job(CRON).await, Ok(false));
        let err = s.pause_job(CRON).await.unwrap_err();
        assert_eq!((err.method, err.code), ("jobs.pause", Code::NotFound));
        let err = s.update_job(cron(), vec!["schedule".into()]).await;
        assert_eq!(err.unwrap_err().code, Code::NotFound);
        fake.put_scheduler_job(cron());
        assert_eq!(s.get_job(CRON).await.unwrap(), Some(cron()));
        let calls = fake.calls();
        assert_eq!(
            calls[..2],
            ["cloudscheduler.jobs.get", "cloudscheduler.jobs.create"]
        );
    }

    fn op_error(op: &Operation) -> (Code, String) {
        match &op.result {
            Some(operation::Result::Error(s)) => (Code::from(s.code), s.message.clone()),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[tokio::test]
    async fn create_fills_server_side_defaults_and_is_done_on_first_poll() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        let op = gcp
            .run
            .create_service(PARENT, "web", service())
            .await
            .unwrap();
        assert_eq!(op.name, format!("{PARENT}/operations/op-1"));
        assert!(!op.done, "the call's own answer is never done");
        let op = gcp.run.get_operation(&op.name).await.unwrap();
        assert!(op.done);
        assert!(matches!(op.result, Some(operation::Result::Response(_))));

        let s = gcp.run.get_service(NAME).await.unwrap().unwrap();
        assert_eq!((s.generation, s.observed_generation), (1, 1));
        assert!(!s.reconciling);
        assert_eq!(terminal(&s).state, condition::State::ConditionSucceeded);
        assert_eq!(s.uri, "https://web-xyz.a.run.app");
        assert_eq!(
            s.latest_ready_revision,
            format!("{NAME}/revisions/web-00001-abc")
        );
        assert_eq!(s.ingress, run::IngressTraffic::All);
        let t = s.template.unwrap();
        assert_eq!(t.max_instance_request_concurrency, 80);
        let number = fake.project_number("p");
        assert_eq!(
            t.service_account,
            format!("{number}-compute@developer.gserviceaccount.com")
        );
        assert_eq!(t.containers[0].ports[0].container_port, 8080);
        assert_eq!(
            fake.calls(),
            [
                "run.services.create",
                "run.operations.get",
                "run.services.get"
            ]
        );

        let err = gcp.run.create_service(PARENT, "web", service()).await;
        assert_eq!(err.unwrap_err().code, Code::AlreadyExists);
    }

    #[tokio::test]
    async fn manual_operations_keep_the_service_reconciling_until_completed() {
        let fake = FakeGcp::new();
        fake.set_mode(OpMode::Manual);
        let gcp = fake.gcp();
        let create = gcp
            .run
            .create_service(PARENT, "web", service())
            .await
            .unwrap();
        let s = fake.service(NAME).unwrap();
        assert!(s.reconciling);
        assert_eq!(terminal(&s).state, condition::State::ConditionReconciling);
        assert!(s.latest_ready_revision.is_empty() && s.uri.is_empty());
        assert!(!gcp.run.get_operation(&create.name).await.unwrap().done);
        fake.complete(&create.name);
        assert!(gcp.run.get_operation(&create.name).await.unwrap().done);

        let mut changed = fake.service(NAME).unwrap();
        changed.template.as_mut().unwrap().containers[0].image = "img:2".into();
        let update = gcp.run.update_service(changed).await.unwrap();
        let s = fake.service(NAME).unwrap();
        assert_eq!(
            (s.generation, s.observed_generation, s.reconciling),
            (2, 1, true)
        );
        assert_eq!(fake.pending_operations(), [update.name]);
        assert_eq!(fake.complete_all(), 1);
        let s = fake.service(NAME).unwrap();
        assert_eq!(
            (s.generation, s.observed_generation, s.reconciling),
            (2, 2, false)
        );
        assert_eq!(
            s.latest_ready_revision,
            format!("{NAME}/revisions/web-00002-abc")
        );

        // Labels only: a new generation, no new revision. The same spec again: nothing new.
        let labelled = s.clone().set_labels([("team", "a")]);
        gcp.run.update_service(labelled.clone()).await.unwrap();
        gcp.run.update_service(labelled).await.unwrap_err(); // stale etag
        fake.complete_all();
        let s = fake.service(NAME).unwrap();
        assert_eq!(s.generation, 3);
        assert_eq!(
            s.latest_ready_revision,
            format!("{NAME}/revisions/web-00002-abc")
        );
        gcp.run.update_service(s).await.unwrap();
        fake.complete_all();
        assert_eq!(fake.service(NAME).unwrap().generation, 3);
    }

    #[tokio::test]
    async fn delete_shows_the_service_until_the_operation_completes() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        gcp.run
            .create_service(PARENT, "web", service())
            .await
            .unwrap();
        fake.set_mode(OpMode::Manual);
        let op = gcp.run.delete_service(NAME).await.unwrap().unwrap();
        let s = gcp.run.get_service(NAME).await.unwrap().unwrap();
        assert!(s.reconciling);
        assert_eq!(terminal(&s).state, condition::State::ConditionPending);
        fake.complete(&op.name);
        assert_eq!(gcp.run.get_service(NAME).await, Ok(None));
        assert_eq!(gcp.run.delete_service(NAME).await, Ok(None));
        let err = gcp.vpcaccess.get_operation(&op.name).await.unwrap_err();
        assert_eq!(
            err.code,
            Code::NotFound,
            "a Cloud Run operation is not Serverless VPC Access's"
        );
        let err = gcp.run.update_service(s).await.unwrap_err();
        assert_eq!(err.code, Code::NotFound);
    }

    #[tokio::test]
    async fn a_failed_operation_carries_its_status_and_fails_the_service() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        fake.fail_next_operation(Code::FailedPrecondition, "image not found");
        let op = gcp
            .run
            .create_service(PARENT, "web", service())
            .await
            .unwrap();
        let op = gcp.run.get_operation(&op.name).await.unwrap();
        assert!(op.done);
        assert_eq!(
            op_error(&op),
            (Code::FailedPrecondition, "image not found".into())
        );
        let s = fake.service(NAME).unwrap();
        assert!(!s.reconciling);
        assert_eq!(terminal(&s).state, condition::State::ConditionFailed);
        assert_eq!(terminal(&s).message, "image not found");

        // Only the next one: the same spec again is a new generation that rolls out.
        gcp.run.update_service(s).await.unwrap();
        let s = fake.service(NAME).unwrap();
        assert_eq!((s.generation, s.observed_generation), (2, 2));
        assert_eq!(terminal(&s).state, condition::State::ConditionSucceeded);
    }

    #[tokio::test]
    async fn cmek_rollout_needs_the_service_agent_grant_and_an_enabled_key() {
        use condition::CommonReason::{EncryptionKeyCheckFailed, EncryptionKeyPermissionDenied};
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        fake.put_key(KEY, CryptoKeyVersionState::Enabled);
        let mut svc = service();
        svc.template.as_mut().unwrap().encryption_key = KEY.into();
        let op = gcp.run.create_service(PARENT, "web", svc).await.unwrap();
        let op = gcp.run.get_operation(&op.name).await.unwrap();
        assert_eq!(op_error(&op).0, Code::FailedPrecondition);
        let s = fake.service(NAME).unwrap();
        let reason = |s: &Service| terminal(s).reasons;
        assert_eq!(
            reason(&s),
            Some(condition::Reasons::Reason(EncryptionKeyPermissionDenied))
        );
        assert!(s.latest_ready_revision.is_empty());

        let agent = run_service_agent(&fake.project_number("p"));
        let grant = Binding::new()
            .set_role(KMS_ROLE)
            .set_members([format!("serviceAccount:{agent}")]);
        fake.put_policy(KEY, Policy::new().set_bindings([grant]));
        fake.set_key_state(KEY, CryptoKeyVersionState::Disabled);
        gcp.run.update_service(s).await.unwrap();
        let s = fake.service(NAME).unwrap();
        assert_eq!(
            reason(&s),
            Some(condition::Reasons::Reason(EncryptionKeyCheckFailed))
        );

        fake.set_key_state(KEY, CryptoKeyVersionState::Enabled);
        gcp.run.update_service(s).await.unwrap();
        let s = fake.service(NAME).unwrap();
        assert_eq!(s.generation, 3);
        assert_eq!(terminal(&s).state, condition::State::ConditionSucceeded);
        assert_eq!(
            s.latest_ready_revision,
            format!("{NAME}/revisions/web-00003-abc")
        );
    }

    #[tokio::test]
    async fn iam_etags_change_on_every_write_and_a_stale_one_is_aborted() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        gcp.run
            .create_service(PARENT, "web", service())
            .await
            .unwrap();
        let never_set = gcp.run.get_iam_policy(NAME).await.unwrap();
        assert!(never_set.bindings.is_empty() && !never_set.etag.is_empty());

        let invoker = Binding::new()
            .set_role("roles/run.invoker")
            .set_members(["allUsers"]);
        let first = never_set.clone().set_bindings([invoker.clone()]);
        let set = gcp.run.set_iam_policy(NAME, first).await.unwrap();
        assert_ne!(set.etag, never_set.etag);
        assert_eq!(set.version, 1);
        assert_eq!(gcp.run.get_iam_policy(NAME).await.unwrap(), set);
        assert_eq!(fake.policy(NAME), Some(set.clone()));

        let err = gcp.run.set_iam_policy(NAME, never_set).await.unwrap_err();
        assert_eq!(
            (err.api, err.method, err.code),
            ("run", "services.setIamPolicy", Code::Aborted)
        );
        let conditional = invoker.set_condition(Expr::new().set_expression("true"));
        let v3 = set.clone().set_bindings([conditional]);
        let v3 = gcp.run.set_iam_policy(NAME, v3).await.unwrap();
        assert_eq!(v3.version, 3);
        assert_ne!(v3.etag, set.etag);

        let err = gcp.kms.get_iam_policy(KEY).await.unwrap_err();
        assert_eq!(
            (err.api, err.method, err.code),
            ("kms", "cryptoKeys.getIamPolicy", Code::NotFound)
        );
        fake.put_key(KEY, CryptoKeyVersionState::Enabled);
        assert!(
            gcp.kms
                .get_iam_policy(KEY)
                .await
                .unwrap()
                .bindings
                .is_empty()
        );
    }

    #[tokio::test]
    async fn connectors_are_creating_until_done_and_services_need_them_ready() {
        let fake = FakeGcp::new();
        fake.set_mode(OpMode::Manual);
        let gcp = fake.gcp();
        let op = gcp
            .vpcaccess
            .create_connector(PARENT, "c", Connector::new())
            .await
            .unwrap();
        assert_eq!(
            fake.connector(CONNECTOR).unwrap().state,
            connector::State::Creating
        );
        let mut svc = service();
        let vpc = run::VpcAccess::new().set_connector(CONNECTOR);
        svc.template.as_mut().unwrap().vpc_access = Some(vpc);
        let err = gcp.run.create_service(PARENT, "web", svc.clone()).await;
        assert_eq!(err.unwrap_err().code, Code::FailedPrecondition);

        fake.complete(&op.name);
        assert!(gcp.vpcaccess.get_operation(&op.name).await.unwrap().done);
        let c = gcp
            .vpcaccess
            .get_connector(CONNECTOR)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.state, connector::State::Ready);
        gcp.run.create_service(PARENT, "web", svc).await.unwrap();

        let delete = gcp.vpcaccess.delete_connector(CONNECTOR).await.unwrap();
        assert_eq!(
            fake.connector(CONNECTOR).unwrap().state,
            connector::State::Deleting
        );
        assert_eq!(fake.complete_all(), 2);
        assert!(delete.is_some());
        assert_eq!(gcp.vpcaccess.get_connector(CONNECTOR).await, Ok(None));
        assert_eq!(gcp.vpcaccess.delete_connector(CONNECTOR).await, Ok(None));
    }

    #[tokio::test]
    async fn faults_fail_the_next_calls_of_a_method_and_every_call_is_logged() {
        let fake = FakeGcp::new();
        let gcp = fake.gcp();
        fake.fail("run.services.get", Code::Unavailable, 2);
        fake.fail("resourcemanager.projects.get", Code::PermissionDenied, 1);
        for _ in 0..2 {
            let err = gcp.run.get_service(NAME).await.unwrap_err();
            assert_eq!((err.api, err.method), ("run", "services.get"));
            assert!(err.is_transient());
        }
        assert_eq!(gcp.run.get_service(NAME).await, Ok(None));
        let err = gcp.projects.project_number("p").await.unwrap_err();
        assert_eq!(err.code, Code::PermissionDenied);
        let number = gcp.projects.project_number("p").await.unwrap();
        assert_eq!(number.len(), 12);
        assert_eq!(number, FakeGcp::new().project_number("p"), "stable per id");
        assert_ne!(number, fake.project_number("q"));

        assert_eq!(fake.count("run.services.get"), 3);
        let get = "run.services.get";
        let projects = "resourcemanager.projects.get";
        assert_eq!(fake.take_calls(), [get, get, get, projects, projects]);
        assert!(fake.calls().is_empty());
        fake.set_project_number("p", "42");
        assert_eq!(gcp.projects.project_number("p").await, Ok("42".into()));
    }

    #[test]
    #[should_panic(expected = "no method")]
    fn a_fault_on_a_misspelt_method_panics() {
        FakeGcp::new().fail("run.service.get", Code::Unavailable, 1);
    }

    #[tokio::test]
    async fn a_seeded_service_updates_from_its_latest_revision() {
        let fake = FakeGcp::new();
        let mut seeded = service().set_name(NAME).set_generation(4);
        seeded.latest_created_revision = format!("{NAME}/revisions/web-00007-q2x");
        fake.put_service(seeded.clone());
        seeded.template.as_mut().unwrap().containers[0].image = "img:2".into();
        fake.gcp().run.update_service(seeded).await.unwrap();
        let s = fake.service(NAME).unwrap();
        assert_eq!((s.generation, s.observed_generation), (5, 5));
        assert_eq!(
            s.latest_ready_revision,
            format!("{NAME}/revisions/web-00008-abc")
        );
    }

    /// Each method fails under its own name from [`METHODS`], the `{api}.{method}` of
    /// `google.rs`, and is logged under it.
    #[tokio::test]
    async fn every_method_has_the_name_the_real_client_reports() {
        let methods = METHODS;
        let fake = FakeGcp::new();
        methods.iter().for_each(|m| fake.fail(m, Code::Internal, 1));
        let gcp = fake.gcp();
        let (run, kms, vpc) = (&gcp.run, &gcp.kms, &gcp.vpcaccess);
        let (jobs, sched) = (&gcp.jobs, &gcp.scheduler);
        let errors = [
            run.get_service(NAME).await.err(),
            run.create_service(PARENT, "web", service()).await.err(),
            run.update_service(service()).await.err(),
            run.delete_service(NAME).await.err(),
            run.get_operation("op").await.err(),
            run.get_iam_policy(NAME).await.err(),
            run.set_iam_policy(NAME, Policy::new()).await.err(),
            jobs.get_job(JOB).await.err(),
            jobs.create_job(PARENT, "batch", job()).await.err(),
            jobs.update_job(job()).await.err(),
            jobs.delete_job(JOB).await.err(),
            jobs.get_execution(JOB).await.err(),
            jobs.get_iam_policy(JOB).await.err(),
            jobs.set_iam_policy(JOB, Policy::new()).await.err(),
            sched.get_job(CRON).await.err(),
            sched.create_job(PARENT, cron()).await.err(),
            sched.update_job(cron(), vec![]).await.err(),
            sched.pause_job(CRON).await.err(),
            sched.resume_job(CRON).await.err(),
            sched.delete_job(CRON).await.err(),
            kms.get_crypto_key(KEY).await.err(),
            kms.get_iam_policy(KEY).await.err(),
            kms.set_iam_policy(KEY, Policy::new()).await.err(),
            vpc.get_connector(CONNECTOR).await.err(),
            vpc.create_connector(PARENT, "c", Connector::new())
                .await
                .err(),
            vpc.delete_connector(CONNECTOR).await.err(),
            vpc.get_operation("op").await.err(),
            gcp.projects.project_number("p").await.err(),
        ];
        for (err, method) in errors.into_iter().zip(methods) {
            let err = err.unwrap_or_else(|| panic!("{method} did not fail"));
            assert_eq!(format!("{}.{}", err.api, err.method), method);
            assert_eq!(err.code, Code::Internal);
        }
        assert_eq!(fake.calls(), methods);
    }
}

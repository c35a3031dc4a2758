//! An in-memory fake Google behind the [`Gcp`] traits, for tests that state the exact calls a
//! reconcile makes (controller-rs's `fixtures.rs` idea, brupop's mock-behind-a-feature).
//!
//! It mimics, in small, what the emulator (`crates/runwarden-emulator`) models after real traffic:
//! server-side defaults, generations and revisions, `reconciling` while an operation runs, the
//! terminal condition, the CMEK check at rollout, the VPC connector check at deploy, IAM etags
//! (`ABORTED` on a stale one) and long-running operations. Calls return what the real clients in
//! [`super::google`] return: `Ok(None)` for a missing service, key or connector on reads and
//! deletes, [`GcpError`] with the same `api` and `method` otherwise.
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
use google_cloud_run_v2::model::{self as run, Service, condition};
use google_cloud_vpcaccess_v1::model::{Connector, OperationMetadata, connector};
use google_cloud_wkt as wkt;

use super::{
    CloudRunApi, Code, Gcp, GcpError, GcpResult, IamPolicyApi, KmsApi, ProjectsApi, VpcAccessApi,
    run_service_agent,
};

/// The etag Google gives a policy that was never set (`"ACAB"` in JSON).
const EMPTY_ETAG: &[u8] = b"\x00\x20\x01";
/// Every method the fake answers, as `{api}.{method}` exactly as [`GcpError`] names them in
/// [`super::google`]: the names [`FakeGcp::fail`] accepts and [`FakeGcp::calls`] logs.
pub const METHODS: [&str; 15] = [
    "run.services.get",
    "run.services.create",
    "run.services.patch",
    "run.services.delete",
    "run.operations.get",
    "run.services.getIamPolicy",
    "run.services.setIamPolicy",
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
    /// Operations stay pending (services `reconciling`, connectors `CREATING`/`DELETING`) until
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
    project_numbers: HashMap<String, String>,
    ops: Vec<Op>,
    op_seq: u64,
    seq: u64,
    faults: HashMap<String, (Code, usize)>,
    fail_next_op: Option<(Code, String)>,
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
    /// service with a failed terminal condition, a connector create leaves it in `ERROR`.
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
            Effect::DeleteService(name) => match (fail, self.services.remove(&name)) {
                (Some(f), Some(mut svc)) => {
                    svc.reconciling = false;
                    svc.terminal_condition = Some(ready(condition::State::ConditionFailed));
                    self.services.insert(name, svc);
                    Err(f)
                }
                (_, svc) => {
                    self.policies.remove(&name);
                    self.revisions.remove(&name);
                    Ok(any(&svc.unwrap_or_else(|| Service::new().set_name(name))))
                }
            },
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
        let check = match fail {
            Some(f) => Err((f, None)),
            None => self
                .cmek_check(&svc)
                .map_err(|(reason, message)| ((Code::FailedPrecondition, message), Some(reason))),
        };
        let id = name.rsplit('/').next().unwrap_or_default();
        svc.reconciling = false;
        svc.observed_generation = generation;
        svc.uri = format!("https://{id}-xyz.a.run.app");
        if let Some(r) = &revision {
            svc.latest_created_revision = r.clone();
        }
        let result = match check {
            Ok(()) => {
                if let Some(r) = revision {
                    svc.latest_ready_revision = r;
                }
                svc.terminal_condition = Some(ready(condition::State::ConditionSucceeded));
                Ok(svc.clone())
            }
            Err(((code, message), reason)) => {
                let mut failed = ready(condition::State::ConditionFailed).set_message(&message);
                if let Some(reason) = reason {
                    failed = failed.set_reason(reason);
                }
                svc.terminal_condition = Some(failed);
                Err((code, message))
            }
        };
        self.services.insert(name.to_owned(), svc);
        result
    }

    /// What Cloud Run checks before a CMEK revision serves.
    fn cmek_check(&self, svc: &Service) -> Result<(), (condition::CommonReason, String)> {
        use condition::CommonReason::{EncryptionKeyCheckFailed, EncryptionKeyPermissionDenied};
        let key = svc.template.as_ref().map_or("", |t| &t.encryption_key);
        if key.is_empty() {
            return Ok(());
        }
        let Some(k) = self.keys.get(key) else {
            let message = format!("The encryption key {key} does not exist.");
            return Err((EncryptionKeyCheckFailed, message));
        };
        let project = svc.name.split('/').nth(1).unwrap_or_default();
        let member = format!(
            "serviceAccount:{}",
            run_service_agent(&self.number(project))
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

/// The user-settable part of a service: output-only fields cleared.
fn spec_of(svc: &Service) -> Service {
    let mut s = svc.clone();
    with_outputs(&mut s, &Service::new());
    s.name.clear();
    s
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
    if t.service_account.is_empty() {
        t.service_account = format!("{project_number}-compute@developer.gserviceaccount.com");
    }
    if t.max_instance_request_concurrency == 0 {
        t.max_instance_request_concurrency = 80;
    }
    let serving = t.containers.iter().position(|c| !c.ports.is_empty());
    for (i, c) in t.containers.iter_mut().enumerate() {
        let r = c
            .resources
            .get_or_insert_with(|| run::ResourceRequirements::new().set_cpu_idle(true));
        r.limits
            .entry("cpu".into())
            .or_insert_with(|| "1000m".into());
        r.limits
            .entry("memory".into())
            .or_insert_with(|| "512Mi".into());
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

/// Cloud Run's synchronous checks of a service about to be deployed.
fn validate(c: &Call<'_>, svc: &Service) -> GcpResult<()> {
    let t = svc.template.clone().unwrap_or_default();
    if t.containers.is_empty() {
        let msg =
            "Violation in service.template.containers: at least one container must be specified.";
        return Err(c.err(Code::InvalidArgument, msg));
    }
    let connector = t.vpc_access.map(|v| v.connector).unwrap_or_default();
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

#[async_trait]
impl IamPolicyApi for Run {
    async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy> {
        let c = self.0.enter("run", "services.getIamPolicy")?;
        let exists = c.services.contains_key(resource);
        iam_get(c, resource, exists)
    }

    async fn set_iam_policy(&self, resource: &str, policy: Policy) -> GcpResult<Policy> {
        let c = self.0.enter("run", "services.setIamPolicy")?;
        let exists = c.services.contains_key(resource);
        iam_set(c, resource, exists, policy)
    }
}

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
        with_outputs(&mut service, &Service::new());
        let number = c.number(name.split('/').nth(1).unwrap_or_default());
        apply_defaults(&mut service, &number);
        let n = c.next();
        service.name = name.clone();
        service.uid = format!("uid-{n}");
        service.generation = 1;
        service.etag = format!("\"etag-{n}\"");
        service.reconciling = true;
        service.terminal_condition = Some(ready(condition::State::ConditionReconciling));
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
        let Some(old) = c.services.get(&name).cloned() else {
            let msg = format!("Resource '{name}' of kind 'SERVICE' does not exist.");
            return Err(c.err(Code::NotFound, msg));
        };
        if !service.etag.is_empty() && service.etag != old.etag {
            let msg = format!("The etag of service '{name}' does not match: read it again.");
            return Err(c.err(Code::Aborted, msg));
        }
        validate(&c, &service)?;
        let mut new = spec_of(&service);
        let number = c.number(name.split('/').nth(1).unwrap_or_default());
        apply_defaults(&mut new, &number);
        let last_failed = old
            .terminal_condition
            .as_ref()
            .is_some_and(|t| t.state == condition::State::ConditionFailed);
        let changed = spec_of(&new) != spec_of(&old) || last_failed;
        let template_changed = new.template != old.template || last_failed;
        with_outputs(&mut new, &old);
        new.name = name.clone();
        let mut revision = None;
        if changed {
            let n = c.next();
            new.generation += 1;
            new.etag = format!("\"etag-{n}\"");
            new.reconciling = true;
            new.terminal_condition = Some(ready(condition::State::ConditionReconciling));
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
        let n = c.next();
        let Some(svc) = c.services.get_mut(name) else {
            return Ok(None);
        };
        svc.generation += 1;
        svc.etag = format!("\"etag-{n}\"");
        svc.reconciling = true;
        svc.terminal_condition = Some(ready(condition::State::ConditionPending));
        let metadata = any(svc);
        let effect = Effect::DeleteService(name.to_owned());
        Ok(Some(c.start(Api::Run, name, effect, metadata)))
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
impl IamPolicyApi for Kms {
    async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy> {
        let c = self.0.enter("kms", "cryptoKeys.getIamPolicy")?;
        let exists = c.keys.contains_key(resource);
        iam_get(c, resource, exists)
    }

    async fn set_iam_policy(&self, resource: &str, policy: Policy) -> GcpResult<Policy> {
        let c = self.0.enter("kms", "cryptoKeys.setIamPolicy")?;
        let exists = c.keys.contains_key(resource);
        iam_set(c, resource, exists, policy)
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

    fn service() -> Service {
        let container = run::Container::new().set_image("img");
        Service::new().set_template(run::RevisionTemplate::new().set_containers([container]))
    }

    fn terminal(s: &Service) -> run::Condition {
        s.terminal_condition.clone().unwrap_or_default()
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
        let errors = [
            run.get_service(NAME).await.err(),
            run.create_service(PARENT, "web", service()).await.err(),
            run.update_service(service()).await.err(),
            run.delete_service(NAME).await.err(),
            run.get_operation("op").await.err(),
            run.get_iam_policy(NAME).await.err(),
            run.set_iam_policy(NAME, Policy::new()).await.err(),
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

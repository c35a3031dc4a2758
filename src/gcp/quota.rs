//! Client-side budgets for the Cloud Run Admin API's per-minute quotas.
//!
//! Google counts Cloud Run Admin API reads and writes per minute, per project and region, and
//! answers `429 RESOURCE_EXHAUSTED` beyond. [`Budgets`] keeps runwarden under those quotas for
//! every worker and every identity of the process at once, and [`budgeted`] applies them around
//! any [`CloudRunApi`] (the official client or a fake), [`budgeted_jobs`] around any
//! [`CloudRunJobsApi`]: services and jobs of a project and region share its budgets, as they
//! share Google's quotas.
//!
//! **Sliding-window log, not a token bucket.** A bucket of `N` tokens refilled continuously at
//! `N` per minute lets `2N` calls through in some 60 s window (a full bucket spent at once, then
//! its refill), which Google's per-minute counters refuse. Instead each budget remembers when
//! its last `N` calls were let through, and call `N + 1` may only start [`WINDOW`] after call
//! 1: at most `N` calls in *any* window of that length, so in any minute however Google
//! aligns its windows, while a burst of `N` still starts at once. [`WINDOW`] is a second longer
//! than a minute, for the network latency and clock skew between this process and Google's
//! counters (it costs under 2% of the throughput).
//!
//! **Wait briefly, else give the worker back.** A call whose turn comes within
//! [`Budgets::max_wait`] sleeps until then (the slot is reserved, first come first served, and
//! the wait is recorded in `runwarden_gcp_quota_wait_seconds`). A later turn fails at once with
//! a local `RESOURCE_EXHAUSTED` [`GcpError`] whose `retry_after` is when a slot frees, so the
//! object is requeued for then without holding a worker. Refused calls are handed successive
//! free slots (the first refused gets the first slot, the next one the second, ...), so that
//! when a window frees, about as many objects come back as it has room for, not all of them. A
//! resource refused again before its time gets the same time: its condition message stays the
//! same, so its status is not rewritten (which would wake it again).
//!
//! **Google's 429.** A `RESOURCE_EXHAUSTED` from Google with `RetryInfo` pauses the whole budget
//! (the project-region's reads, or its writes) until the delay Google asked for has passed; every
//! caller then waits or is refused as above. Without `RetryInfo` nothing is paused: Cloud Run
//! also answers 429 for its limit of 1,000 services per project and region, which time does not
//! heal, and that object backs off on its own. Reads and writes are separate quotas at Google
//! and separate budgets here.
//!
//! Only Cloud Run is budgeted: Cloud KMS and Serverless VPC Access calls are few (one key read
//! per CMEK pass, connectors are created once), Cloud Scheduler's quotas are its own and far
//! above one call per job and pass, and all of them are out of scope.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use google_cloud_iam_v1::model::Policy;
use google_cloud_longrunning::model::Operation;
use google_cloud_run_v2::model::{Execution, Job, Service};

use super::{BuildsApi, CloudRunApi, CloudRunJobsApi, Code, GcpError, GcpResult, IamPolicyApi};
use crate::metrics::Metrics;

/// The window a budget of `N` per minute counts over: a minute plus a second of margin.
pub const WINDOW: Duration = Duration::from_secs(61);

/// How long a call waits for its budget by default before it is refused instead.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

/// Which Cloud Run quota a method counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `services.get`, `services.getIamPolicy`, `jobs.get`, `jobs.getIamPolicy`,
    /// `executions.get`, `operations.get` (and list).
    Read,
    /// `services.create`, `services.patch`, `services.delete`, `services.setIamPolicy`, and the
    /// same of `jobs`.
    Write,
}

impl Kind {
    /// The metric label: `read` or `write`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
        }
    }
}

/// The project and region a Cloud Run resource name belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The project id (or number) of the name.
    pub project: String,
    /// The location of the name.
    pub region: String,
}

impl Scope {
    /// Of `projects/{p}/locations/{l}[/...]`; a name of another shape is budgeted as project
    /// and region `unknown` (Google refuses it anyway).
    pub fn of(name: &str) -> Scope {
        let mut parts = name.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("projects"), Some(p), Some("locations"), Some(l))
                if !p.is_empty() && !l.is_empty() =>
            {
                Scope {
                    project: p.to_owned(),
                    region: l.to_owned(),
                }
            }
            _ => Scope {
                project: "unknown".into(),
                region: "unknown".into(),
            },
        }
    }
}

/// One budget: the reads, or the writes, of one project and region.
#[derive(Debug, Default)]
struct Budget {
    /// When the last calls (at most the limit) were let through, oldest first. Some may lie in
    /// the future: callers sleeping until their reserved turn.
    grants: VecDeque<Instant>,
    /// Retry times handed to refused calls that are not due yet, by resource: a resource
    /// refused again before its time is given the same time (so its condition message, and
    /// with it its status, stays the same).
    promised: HashMap<String, Instant>,
    /// Google asked to make no call before this (`RetryInfo`).
    paused_until: Option<Instant>,
}

/// The earliest turn at or after `floor` that keeps at most `limit` grants in any [`WINDOW`],
/// given the grants so far (in order). Turns are handed out in order, so a new turn is never
/// before the last one.
fn next_turn(grants: &VecDeque<Instant>, limit: usize, floor: Instant) -> Instant {
    let mut turn = floor;
    if limit > 0 && grants.len() >= limit {
        turn = turn.max(grants[grants.len() - limit] + WINDOW);
    }
    if let Some(&last) = grants.back() {
        turn = turn.max(last);
    }
    turn
}

/// Records a grant at `turn`, keeping only the last `limit`.
fn grant(grants: &mut VecDeque<Instant>, limit: usize, turn: Instant) {
    grants.push_back(turn);
    while grants.len() > limit {
        grants.pop_front();
    }
}

/// What a caller does.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Call after this wait (zero: at once); the turn is reserved.
    Go(Duration),
    /// Do not call; come back at `at`.
    Refuse {
        at: Instant,
        /// Google's pause, rather than the budget, is why.
        paused_until: Option<Instant>,
    },
}

/// Per (project, region) budgets of Cloud Run reads and writes, shared by every worker and every
/// identity of the process (share one `Arc<Budgets>`).
pub struct Budgets {
    reads_per_minute: u32,
    writes_per_minute: u32,
    max_wait: Duration,
    budgets: Mutex<HashMap<(Scope, Kind), Budget>>,
    metrics: Arc<Metrics>,
    /// One reading of the monotonic and the wall clock, to write instants as times.
    epoch: (Instant, jiff::Timestamp),
}

impl Budgets {
    /// Budgets of `reads_per_minute` and `writes_per_minute` per project and region (0: no
    /// client-side limit; Google's 429 with `RetryInfo` still pauses), with
    /// [`DEFAULT_MAX_WAIT`].
    pub fn new(reads_per_minute: u32, writes_per_minute: u32, metrics: Arc<Metrics>) -> Self {
        Self {
            reads_per_minute,
            writes_per_minute,
            max_wait: DEFAULT_MAX_WAIT,
            budgets: Mutex::default(),
            metrics,
            epoch: (Instant::now(), jiff::Timestamp::now()),
        }
    }

    /// The longest a call waits for its turn; a later turn is refused at once.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The longest a call waits for its turn.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    fn limit(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Read => self.reads_per_minute,
            Kind::Write => self.writes_per_minute,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Scope, Kind), Budget>> {
        // The map stays consistent even if a holder panicked: each update is a single step.
        self.budgets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The decision for a call of `kind` on `resource` in `scope` at `now` (the clock is a
    /// parameter so that tests can drive it).
    fn decide(&self, scope: &Scope, kind: Kind, resource: &str, now: Instant) -> Decision {
        let limit = self.limit(kind) as usize;
        let mut budgets = self.lock();
        let budget = budgets.entry((scope.clone(), kind)).or_default();
        let paused_until = budget.paused_until.filter(|&p| p > now);
        let floor = paused_until.unwrap_or(now);
        let turn = next_turn(&budget.grants, limit, floor);
        let wait = turn - now;
        if wait <= self.max_wait {
            grant(&mut budget.grants, limit, turn);
            return Decision::Go(wait);
        }
        // Hand this caller its earlier promise, else the first turn not promised to another.
        budget.promised.retain(|_, &mut at| at > now);
        if let Some(&at) = budget.promised.get(resource) {
            return Decision::Refuse { at, paused_until };
        }
        let mut grants = budget.grants.clone();
        let mut at = turn;
        for _ in 0..budget.promised.len() {
            grant(&mut grants, limit, at);
            at = next_turn(&grants, limit, floor);
        }
        budget.promised.insert(resource.to_owned(), at);
        Decision::Refuse { at, paused_until }
    }

    /// Pauses the budget until `now + delay`: Google answered `RESOURCE_EXHAUSTED` with
    /// `RetryInfo`.
    fn pause(&self, scope: &Scope, kind: Kind, now: Instant, delay: Duration) {
        let mut budgets = self.lock();
        let budget = budgets.entry((scope.clone(), kind)).or_default();
        let until = now + delay;
        budget.paused_until = Some(budget.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Waits for the turn of a `method` call of `kind` on `resource` in `scope`, or refuses it
    /// at once with a local `RESOURCE_EXHAUSTED` that says when to retry.
    pub async fn acquire(
        &self,
        scope: &Scope,
        kind: Kind,
        method: &'static str,
        resource: &str,
    ) -> GcpResult<()> {
        let now = Instant::now();
        match self.decide(scope, kind, resource, now) {
            Decision::Go(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                self.metrics
                    .quota_waited(&scope.project, &scope.region, kind.label(), wait);
                Ok(())
            }
            Decision::Refuse { at, paused_until } => {
                self.metrics
                    .quota_refused(&scope.project, &scope.region, kind.label());
                Err(self.refusal(scope, kind, method, now, at, paused_until))
            }
        }
    }

    /// Notes Google's `RESOURCE_EXHAUSTED` answer to a call of `kind` in `scope`: counted, and
    /// with `retry_after` (Google's `RetryInfo`) the budget pauses until then.
    pub fn exhausted(&self, scope: &Scope, kind: Kind, retry_after: Option<Duration>) {
        self.metrics.quota_exceeded(&scope.project, &scope.region);
        if let Some(delay) = retry_after {
            self.pause(scope, kind, Instant::now(), delay);
        }
    }

    /// The wall-clock time of `at`, as RFC 3339 rounded up to the second. Derived from one
    /// reading of both clocks, so that one instant always reads the same.
    fn wall(&self, at: Instant) -> String {
        let since = at.saturating_duration_since(self.epoch.0);
        rfc3339(self.epoch.1, since)
    }

    /// The error of a call refused at `now`, to be retried `at`.
    fn refusal(
        &self,
        scope: &Scope,
        kind: Kind,
        method: &'static str,
        now: Instant,
        at: Instant,
        paused_until: Option<Instant>,
    ) -> GcpError {
        let Scope { project, region } = scope;
        let limit = self.limit(kind);
        let kind = kind.label();
        let next = self.wall(at);
        let message = match paused_until {
            Some(paused) => format!(
                "Cloud Run {kind}s for project {project} in {region} are paused until {}: Google answered RESOURCE_EXHAUSTED and asked to retry then; next call at {next}",
                self.wall(paused)
            ),
            None => format!(
                "client-side budget of {} Cloud Run {kind}s per minute for project {project} in {region} is spent; next call at {next}",
                limit
            ),
        };
        GcpError {
            retry_after: Some(at - now),
            ..GcpError::new("run", method, Code::ResourceExhausted, message)
        }
    }
}

/// `after` from now as RFC 3339 (UTC, rounded up to the second), for messages users read.
pub fn retry_time(after: Duration) -> String {
    rfc3339(jiff::Timestamp::now(), after)
}

/// `from + after` as RFC 3339, rounded up to the second.
fn rfc3339(from: jiff::Timestamp, after: Duration) -> String {
    use jiff::{RoundMode, SignedDuration, TimestampRound, Unit};
    let at = SignedDuration::try_from(after)
        .ok()
        .and_then(|d| from.checked_add(d).ok())
        .unwrap_or(from);
    at.round(
        TimestampRound::new()
            .smallest(Unit::Second)
            .mode(RoundMode::Ceil),
    )
    .unwrap_or(at)
    .to_string()
}

/// `inner` with every call counted against `budgets` (see the module documentation).
pub fn budgeted(inner: Arc<dyn CloudRunApi>, budgets: Arc<Budgets>) -> Arc<dyn CloudRunApi> {
    Arc::new(Budgeted {
        inner,
        budgets,
        iam: ("services.getIamPolicy", "services.setIamPolicy"),
    })
}

/// Cloud Run jobs with every call counted against `budgets`: the same per project and region
/// reads and writes as services (Google counts them together).
pub fn budgeted_jobs(
    inner: Arc<dyn CloudRunJobsApi>,
    budgets: Arc<Budgets>,
) -> Arc<dyn CloudRunJobsApi> {
    Arc::new(Budgeted {
        inner,
        budgets,
        iam: ("jobs.getIamPolicy", "jobs.setIamPolicy"),
    })
}

/// Cloud Run builds with every call counted against `budgets`: a submit is a Cloud Run write
/// of the build's project and region; polling its Cloud Build operation is a read there.
pub fn budgeted_builds(inner: Arc<dyn BuildsApi>, budgets: Arc<Budgets>) -> Arc<dyn BuildsApi> {
    Arc::new(Budgeted {
        inner,
        budgets,
        iam: ("", ""),
    })
}

#[async_trait]
impl BuildsApi for Budgeted<dyn BuildsApi> {
    async fn submit_build(
        &self,
        request: google_cloud_run_v2::model::SubmitBuildRequest,
    ) -> GcpResult<google_cloud_run_v2::model::SubmitBuildResponse> {
        let parent = request.parent.clone();
        let call = self.inner.submit_build(request);
        self.call("builds.submit", Kind::Write, &parent, call).await
    }

    async fn get_build_operation(&self, name: &str) -> GcpResult<Operation> {
        let call = self.inner.get_build_operation(name);
        self.call("cloudbuild.operations.get", Kind::Read, name, call)
            .await
    }
}

struct Budgeted<T: ?Sized> {
    inner: Arc<T>,
    budgets: Arc<Budgets>,
    /// The methods of `getIamPolicy` and `setIamPolicy` on `inner`'s resources.
    iam: (&'static str, &'static str),
}

impl<T: ?Sized> Budgeted<T> {
    /// Runs `call` (a `method` of `kind` on the resource `name`) within its budget. The call's
    /// own timeout starts when it is polled, after the wait.
    async fn call<R>(
        &self,
        method: &'static str,
        kind: Kind,
        name: &str,
        call: impl Future<Output = GcpResult<R>>,
    ) -> GcpResult<R> {
        let scope = Scope::of(name);
        self.budgets.acquire(&scope, kind, method, name).await?;
        let result = call.await;
        if let Err(e) = &result
            && e.code == Code::ResourceExhausted
        {
            self.budgets.exhausted(&scope, kind, e.retry_after);
        }
        result
    }
}

#[async_trait]
impl<T: IamPolicyApi + ?Sized> IamPolicyApi for Budgeted<T> {
    async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy> {
        let call = self.inner.get_iam_policy(resource);
        self.call(self.iam.0, Kind::Read, resource, call).await
    }

    async fn set_iam_policy(&self, resource: &str, policy: Policy) -> GcpResult<Policy> {
        let call = self.inner.set_iam_policy(resource, policy);
        self.call(self.iam.1, Kind::Write, resource, call).await
    }
}

#[async_trait]
impl CloudRunApi for Budgeted<dyn CloudRunApi> {
    async fn get_service(&self, name: &str) -> GcpResult<Option<Service>> {
        let call = self.inner.get_service(name);
        self.call("services.get", Kind::Read, name, call).await
    }

    async fn create_service(
        &self,
        parent: &str,
        service_id: &str,
        service: Service,
    ) -> GcpResult<Operation> {
        let name = format!("{parent}/services/{service_id}");
        let call = self.inner.create_service(parent, service_id, service);
        self.call("services.create", Kind::Write, &name, call).await
    }

    async fn update_service(&self, service: Service) -> GcpResult<Operation> {
        let name = service.name.clone();
        let call = self.inner.update_service(service);
        self.call("services.patch", Kind::Write, &name, call).await
    }

    async fn delete_service(&self, name: &str) -> GcpResult<Option<Operation>> {
        let call = self.inner.delete_service(name);
        self.call("services.delete", Kind::Write, name, call).await
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        let call = self.inner.get_operation(name);
        self.call("operations.get", Kind::Read, name, call).await
    }
}

#[async_trait]
impl CloudRunJobsApi for Budgeted<dyn CloudRunJobsApi> {
    async fn get_job(&self, name: &str) -> GcpResult<Option<Job>> {
        let call = self.inner.get_job(name);
        self.call("jobs.get", Kind::Read, name, call).await
    }

    async fn create_job(&self, parent: &str, job_id: &str, job: Job) -> GcpResult<Operation> {
        let name = format!("{parent}/jobs/{job_id}");
        let call = self.inner.create_job(parent, job_id, job);
        self.call("jobs.create", Kind::Write, &name, call).await
    }

    async fn update_job(&self, job: Job) -> GcpResult<Operation> {
        let name = job.name.clone();
        let call = self.inner.update_job(job);
        self.call("jobs.patch", Kind::Write, &name, call).await
    }

    async fn delete_job(&self, name: &str) -> GcpResult<Option<Operation>> {
        let call = self.inner.delete_job(name);
        self.call("jobs.delete", Kind::Write, name, call).await
    }

    async fn get_execution(&self, name: &str) -> GcpResult<Option<Execution>> {
        let call = self.inner.get_execution(name);
        self.call("executions.get", Kind::Read, name, call).await
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        let call = self.inner.get_operation(name);
        self.call("operations.get", Kind::Read, name, call).await
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;

//! The Google API traits over the official google-cloud-rust clients.
//!
//! The clients never retry on their own (`NeverRetry`): the controllers own retries, with
//! backoff per object, so that a call count seen in metrics or the emulator is the real one.
//! Every call is bounded by [`ClientOptions::timeout`] (`DEADLINE_EXCEEDED` beyond), and Cloud
//! Run calls are counted against [`ClientOptions::budgets`] (see [`super::quota`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use google_cloud_auth::credentials::Credentials;
use google_cloud_build_v1::client::CloudBuild;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::{Status, StatusDetails};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy};
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::CryptoKey;
use google_cloud_longrunning::model::Operation;
use google_cloud_resourcemanager_v3::client::Projects;
use google_cloud_run_v2::client::{Builds, Executions, Jobs, Services};
use google_cloud_run_v2::model::{Execution, Job, Service};
use google_cloud_scheduler_v1::client::CloudScheduler;
use google_cloud_scheduler_v1::model::Job as SchedulerJob;
use google_cloud_vpcaccess_v1::client::VpcAccessService;
use google_cloud_vpcaccess_v1::model::Connector;

use super::quota::{self, Budgets};
use super::{
    BuildsApi, CloudRunApi, CloudRunJobsApi, Code, Gcp, GcpError, GcpResult, IamPolicyApi, KmsApi,
    PreconditionViolation, ProjectsApi, SchedulerApi, VpcAccessApi,
};
use crate::metrics::Metrics;

/// IAM policy version requested on reads: 3, so that conditional bindings are returned whole.
const POLICY_VERSION: i32 = 3;

/// Failure to build a client.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the {api} client: {source}")]
pub struct BuildError {
    api: &'static str,
    #[source]
    source: google_cloud_gax::client_builder::Error,
}

/// How the clients call Google.
#[derive(Clone)]
pub struct ClientOptions {
    /// Longest a single call may take (`DEADLINE_EXCEEDED` beyond; zero: no limit). Time spent
    /// waiting on a budget does not count.
    pub timeout: Duration,
    /// The Cloud Run budgets, shared by every client set of the process (none: unbudgeted).
    pub budgets: Option<Arc<Budgets>>,
    /// The service account the clients act as (a namespace's identity), named in refusals.
    pub principal: Option<String>,
}

impl ClientOptions {
    /// A `timeout` per call and Cloud Run budgets of `reads_per_minute` and
    /// `writes_per_minute` per project and region (the controller's `--gcp-call-timeout`,
    /// `--quota-run-reads-per-minute` and `--quota-run-writes-per-minute`).
    pub fn budgeted(
        timeout: Duration,
        reads_per_minute: u32,
        writes_per_minute: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            timeout,
            budgets: Some(Arc::new(Budgets::new(
                reads_per_minute,
                writes_per_minute,
                metrics,
            ))),
            principal: None,
        }
    }
}

/// Builds every client against `endpoint` (Google's own endpoints when `None`).
pub async fn connect(
    endpoint: Option<&str>,
    credentials: Credentials,
    metrics: Arc<Metrics>,
    options: &ClientOptions,
) -> Result<Gcp, BuildError> {
    macro_rules! build {
        ($client:ty, $api:literal) => {{
            let mut builder = <$client>::builder()
                .with_credentials(credentials.clone())
                .with_retry_policy(NeverRetry);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder
                .build()
                .await
                .map_err(|source| BuildError { api: $api, source })?
        }};
    }
    let meter = Meter {
        metrics,
        timeout: options.timeout,
        principal: options.principal.clone().map(Arc::from),
    };
    let run: Arc<dyn CloudRunApi> = Arc::new(RunClient {
        client: build!(Services, "run"),
        meter: meter.clone(),
    });
    let jobs: Arc<dyn CloudRunJobsApi> = Arc::new(JobsClient {
        client: build!(Jobs, "run"),
        executions: build!(Executions, "run"),
        meter: meter.clone(),
    });
    let builds: Arc<dyn BuildsApi> = Arc::new(BuildsClient {
        client: build!(Builds, "run"),
        operations: build!(CloudBuild, "cloudbuild"),
        meter: meter.clone(),
    });
    let (run, jobs, builds) = match &options.budgets {
        Some(budgets) => (
            quota::budgeted(run, budgets.clone()),
            quota::budgeted_jobs(jobs, budgets.clone()),
            quota::budgeted_builds(builds, budgets.clone()),
        ),
        None => (run, jobs, builds),
    };
    Ok(Gcp {
        run,
        jobs,
        builds,
        scheduler: Arc::new(SchedulerClient {
            client: build!(CloudScheduler, "cloudscheduler"),
            meter: meter.clone(),
        }),
        kms: Arc::new(KmsClient {
            client: build!(KeyManagementService, "kms"),
            meter: meter.clone(),
        }),
        vpcaccess: Arc::new(VpcAccessClient {
            client: build!(VpcAccessService, "vpcaccess"),
            meter: meter.clone(),
        }),
        projects: Arc::new(ProjectsClient {
            client: build!(Projects, "resourcemanager"),
            meter,
        }),
    })
}

/// Bounds, times and counts each call and turns client errors into [`GcpError`].
#[derive(Clone)]
struct Meter {
    metrics: Arc<Metrics>,
    timeout: Duration,
    principal: Option<Arc<str>>,
}

impl Meter {
    async fn call<T>(
        &self,
        api: &'static str,
        method: &'static str,
        call: impl Future<Output = google_cloud_gax::Result<T>>,
    ) -> GcpResult<T> {
        let start = Instant::now();
        let result = if self.timeout.is_zero() {
            call.await.map_err(|e| to_gcp_error(api, method, &e))
        } else {
            match tokio::time::timeout(self.timeout, call).await {
                Ok(result) => result.map_err(|e| to_gcp_error(api, method, &e)),
                Err(_) => Err(GcpError::new(
                    api,
                    method,
                    Code::DeadlineExceeded,
                    format!(
                        "no answer within {:?} (--gcp-call-timeout); the call may still take effect",
                        self.timeout
                    ),
                )),
            }
        };
        let code = match &result {
            Ok(_) => Code::Ok.name(),
            Err(e) => e.code.name(),
        };
        self.metrics.gcp_request(api, method, code, start.elapsed());
        result.map_err(|e| match &self.principal {
            Some(who) => as_principal(e, who),
            None => e,
        })
    }
}

/// A refusal names whom Google refused: the namespace's identity, not the controller's.
fn as_principal(mut e: GcpError, principal: &str) -> GcpError {
    if matches!(e.code, Code::PermissionDenied | Code::Unauthenticated) {
        e.message = format!("{} (as {principal})", e.message);
    }
    e
}

fn to_gcp_error(api: &'static str, method: &'static str, e: &GaxError) -> GcpError {
    let (code, message) = match e.status() {
        Some(status) => (status.code, status.message.clone()),
        None if e.is_timeout() => (Code::DeadlineExceeded, e.to_string()),
        None if e.is_authentication() => (Code::Unauthenticated, e.to_string()),
        None => match e.http_status_code() {
            Some(http) => (code_of_http(http), e.to_string()),
            // Connection refused, reset, TLS: nothing reached the service.
            None => (Code::Unavailable, e.to_string()),
        },
    };
    let retry_after = e.status().and_then(retry_delay);
    let preconditions = e.status().map(precondition_failures).unwrap_or_default();
    let message = with_preconditions(message, &preconditions);
    let message = match retry_after {
        Some(after) => format!("{message} (retry at {})", quota::retry_time(after)),
        None => message,
    };
    GcpError {
        retry_after,
        preconditions,
        ..GcpError::new(api, method, code, message)
    }
}

/// The violations of Google's `google.rpc.PreconditionFailure` details, if the status has any.
fn precondition_failures(status: &Status) -> Vec<PreconditionViolation> {
    status
        .details
        .iter()
        .filter_map(|detail| match detail {
            StatusDetails::PreconditionFailure(f) => Some(&f.violations),
            _ => None,
        })
        .flatten()
        .map(|v| PreconditionViolation {
            kind: v.r#type.clone(),
            subject: v.subject.clone(),
            description: v.description.clone(),
        })
        .collect()
}

/// Google's message with what each failed precondition says, when the message does not say it
/// already: Google often answers only `Precondition check failed.` and names the violated
/// constraint in the detail alone.
fn with_preconditions(message: String, preconditions: &[PreconditionViolation]) -> String {
    let missing: Vec<String> = preconditions
        .iter()
        .filter(|v| !v.kind.is_empty() || !v.description.is_empty())
        .filter(|v| {
            let said = if v.description.is_empty() {
                &v.kind
            } else {
                &v.description
            };
            !message.contains(said.as_str())
        })
        .map(|v| match (v.kind.is_empty(), v.description.is_empty()) {
            (false, false) => format!("violates {}: {}", v.kind, v.description),
            (false, true) => format!("violates {}", v.kind),
            _ => v.description.clone(),
        })
        .collect();
    if missing.is_empty() {
        message
    } else {
        format!("{message} ({})", missing.join("; "))
    }
}

/// The delay of Google's `google.rpc.RetryInfo` detail, if the status has one.
fn retry_delay(status: &Status) -> Option<Duration> {
    status.details.iter().find_map(|detail| match detail {
        StatusDetails::RetryInfo(info) => info.retry_delay.and_then(|d| Duration::try_from(d).ok()),
        _ => None,
    })
}

/// The gRPC code Google uses for an HTTP status without a JSON error body.
fn code_of_http(http: u16) -> Code {
    match http {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// `Ok(None)` for NOT_FOUND.
fn found<T>(result: GcpResult<T>) -> GcpResult<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code == Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `IamPolicyApi` for a client whose builders have the standard IAM mixin methods.
macro_rules! iam_policy_api {
    ($client:ty, $api:literal, $collection:literal) => {
        #[async_trait]
        impl IamPolicyApi for $client {
            async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy> {
                let options = GetPolicyOptions::new().set_requested_policy_version(POLICY_VERSION);
                let call = self
                    .client
                    .get_iam_policy()
                    .set_resource(resource)
                    .set_options(options)
                    .send();
                self.meter
                    .call($api, concat!($collection, ".getIamPolicy"), call)
                    .await
            }

            async fn set_iam_policy(&self, resource: &str, policy: Policy) -> GcpResult<Policy> {
                let call = self
                    .client
                    .set_iam_policy()
                    .set_resource(resource)
                    .set_policy(policy)
                    .send();
                self.meter
                    .call($api, concat!($collection, ".setIamPolicy"), call)
                    .await
            }
        }
    };
}

struct RunClient {
    client: Services,
    meter: Meter,
}

iam_policy_api!(RunClient, "run", "services");

#[async_trait]
impl CloudRunApi for RunClient {
    async fn get_service(&self, name: &str) -> GcpResult<Option<Service>> {
        found(
            self.meter
                .call(
                    "run",
                    "services.get",
                    self.client.get_service().set_name(name).send(),
                )
                .await,
        )
    }

    async fn create_service(
        &self,
        parent: &str,
        service_id: &str,
        service: Service,
    ) -> GcpResult<Operation> {
        let call = self
            .client
            .create_service()
            .set_parent(parent)
            .set_service_id(service_id)
            .set_service(service)
            .send();
        self.meter.call("run", "services.create", call).await
    }

    async fn update_service(&self, service: Service) -> GcpResult<Operation> {
        self.meter
            .call(
                "run",
                "services.patch",
                self.client.update_service().set_service(service).send(),
            )
            .await
    }

    async fn delete_service(&self, name: &str) -> GcpResult<Option<Operation>> {
        found(
            self.meter
                .call(
                    "run",
                    "services.delete",
                    self.client.delete_service().set_name(name).send(),
                )
                .await,
        )
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        self.meter
            .call(
                "run",
                "operations.get",
                self.client.get_operation().set_name(name).send(),
            )
            .await
    }
}

/// Cloud Run jobs, and their executions from the Executions client.
struct JobsClient {
    client: Jobs,
    executions: Executions,
    meter: Meter,
}

iam_policy_api!(JobsClient, "run", "jobs");

#[async_trait]
impl CloudRunJobsApi for JobsClient {
    async fn get_job(&self, name: &str) -> GcpResult<Option<Job>> {
        let call = self.client.get_job().set_name(name).send();
        found(self.meter.call("run", "jobs.get", call).await)
    }

    async fn create_job(&self, parent: &str, job_id: &str, job: Job) -> GcpResult<Operation> {
        let call = self
            .client
            .create_job()
            .set_parent(parent)
            .set_job_id(job_id)
            .set_job(job)
            .send();
        self.meter.call("run", "jobs.create", call).await
    }

    async fn update_job(&self, job: Job) -> GcpResult<Operation> {
        let call = self.client.update_job().set_job(job).send();
        self.meter.call("run", "jobs.patch", call).await
    }

    async fn delete_job(&self, name: &str) -> GcpResult<Option<Operation>> {
        let call = self.client.delete_job().set_name(name).send();
        found(self.meter.call("run", "jobs.delete", call).await)
    }

    async fn get_execution(&self, name: &str) -> GcpResult<Option<Execution>> {
        let call = self.executions.get_execution().set_name(name).send();
        found(self.meter.call("run", "executions.get", call).await)
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        let call = self.client.get_operation().set_name(name).send();
        self.meter.call("run", "operations.get", call).await
    }
}

/// Cloud Run builds, and the Cloud Build operations they start from the Cloud Build client
/// (Cloud Build's host in Google; the emulator's one base URL otherwise).
struct BuildsClient {
    client: Builds,
    operations: CloudBuild,
    meter: Meter,
}

#[async_trait]
impl BuildsApi for BuildsClient {
    async fn submit_build(
        &self,
        request: google_cloud_run_v2::model::SubmitBuildRequest,
    ) -> GcpResult<google_cloud_run_v2::model::SubmitBuildResponse> {
        let call = self.client.submit_build().with_request(request).send();
        self.meter.call("run", "builds.submit", call).await
    }

    async fn get_build_operation(&self, name: &str) -> GcpResult<Operation> {
        let call = self.operations.get_operation().set_name(name).send();
        self.meter.call("cloudbuild", "operations.get", call).await
    }
}

struct SchedulerClient {
    client: CloudScheduler,
    meter: Meter,
}

#[async_trait]
impl SchedulerApi for SchedulerClient {
    async fn get_job(&self, name: &str) -> GcpResult<Option<SchedulerJob>> {
        let call = self.client.get_job().set_name(name).send();
        found(self.meter.call("cloudscheduler", "jobs.get", call).await)
    }

    async fn create_job(&self, parent: &str, job: SchedulerJob) -> GcpResult<SchedulerJob> {
        let call = self
            .client
            .create_job()
            .set_parent(parent)
            .set_job(job)
            .send();
        self.meter.call("cloudscheduler", "jobs.create", call).await
    }

    async fn update_job(
        &self,
        job: SchedulerJob,
        update_mask: Vec<String>,
    ) -> GcpResult<SchedulerJob> {
        let mask = google_cloud_wkt::FieldMask::default().set_paths(update_mask);
        let call = self
            .client
            .update_job()
            .set_job(job)
            .set_update_mask(mask)
            .send();
        self.meter.call("cloudscheduler", "jobs.patch", call).await
    }

    async fn pause_job(&self, name: &str) -> GcpResult<SchedulerJob> {
        let call = self.client.pause_job().set_name(name).send();
        self.meter.call("cloudscheduler", "jobs.pause", call).await
    }

    async fn resume_job(&self, name: &str) -> GcpResult<SchedulerJob> {
        let call = self.client.resume_job().set_name(name).send();
        self.meter.call("cloudscheduler", "jobs.resume", call).await
    }

    async fn delete_job(&self, name: &str) -> GcpResult<bool> {
        let call = self.client.delete_job().set_name(name).send();
        let deleted = found(self.meter.call("cloudscheduler", "jobs.delete", call).await)?;
        Ok(deleted.is_some())
    }
}

struct KmsClient {
    client: KeyManagementService,
    meter: Meter,
}

iam_policy_api!(KmsClient, "kms", "cryptoKeys");

#[async_trait]
impl KmsApi for KmsClient {
    async fn get_crypto_key(&self, name: &str) -> GcpResult<Option<CryptoKey>> {
        found(
            self.meter
                .call(
                    "kms",
                    "cryptoKeys.get",
                    self.client.get_crypto_key().set_name(name).send(),
                )
                .await,
        )
    }
}

struct VpcAccessClient {
    client: VpcAccessService,
    meter: Meter,
}

#[async_trait]
impl VpcAccessApi for VpcAccessClient {
    async fn get_connector(&self, name: &str) -> GcpResult<Option<Connector>> {
        found(
            self.meter
                .call(
                    "vpcaccess",
                    "connectors.get",
                    self.client.get_connector().set_name(name).send(),
                )
                .await,
        )
    }

    async fn create_connector(
        &self,
        parent: &str,
        connector_id: &str,
        connector: Connector,
    ) -> GcpResult<Operation> {
        let call = self
            .client
            .create_connector()
            .set_parent(parent)
            .set_connector_id(connector_id)
            .set_connector(connector)
            .send();
        self.meter
            .call("vpcaccess", "connectors.create", call)
            .await
    }

    async fn delete_connector(&self, name: &str) -> GcpResult<Option<Operation>> {
        found(
            self.meter
                .call(
                    "vpcaccess",
                    "connectors.delete",
                    self.client.delete_connector().set_name(name).send(),
                )
                .await,
        )
    }

    async fn get_operation(&self, name: &str) -> GcpResult<Operation> {
        self.meter
            .call(
                "vpcaccess",
                "operations.get",
                self.client.get_operation().set_name(name).send(),
            )
            .await
    }
}

struct ProjectsClient {
    client: Projects,
    meter: Meter,
}

#[async_trait]
impl ProjectsApi for ProjectsClient {
    async fn project_number(&self, project_id: &str) -> GcpResult<String> {
        let name = format!("projects/{project_id}");
        let project = self
            .meter
            .call(
                "resourcemanager",
                "projects.get",
                self.client.get_project().set_name(name).send(),
            )
            .await?;
        project
            .name
            .strip_prefix("projects/")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned)
            .ok_or_else(|| {
                GcpError::new(
                    "resourcemanager",
                    "projects.get",
                    Code::Internal,
                    format!(
                        "project {project_id} has no project number in its name {:?}",
                        project.name
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_codes_without_a_body_map_to_grpc_codes() {
        assert_eq!(code_of_http(403), Code::PermissionDenied);
        assert_eq!(code_of_http(429), Code::ResourceExhausted);
        assert_eq!(code_of_http(503), Code::Unavailable);
        assert_eq!(code_of_http(418), Code::Unknown);
    }

    fn status(details: serde_json::Value) -> GaxError {
        let status: Status = serde_json::from_value(serde_json::json!({
            "code": 8,
            "message": "Quota exceeded for quota metric 'Write requests'",
            "details": details,
        }))
        .expect("a google.rpc.Status");
        GaxError::service(status)
    }

    #[test]
    fn googles_retry_info_becomes_retry_after_and_the_message_says_when() {
        let e = to_gcp_error(
            "run",
            "services.patch",
            &status(serde_json::json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "42.5s"},
            ])),
        );
        assert_eq!(e.code, Code::ResourceExhausted);
        assert_eq!(e.retry_after, Some(Duration::from_millis(42_500)));
        let at = e
            .message
            .strip_prefix("Quota exceeded for quota metric 'Write requests' (retry at ")
            .and_then(|m| m.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{}", e.message));
        let at: jiff::Timestamp = at.parse().expect("RFC 3339");
        let wait = at.duration_since(jiff::Timestamp::now());
        assert!(
            wait > jiff::SignedDuration::from_secs(40)
                && wait <= jiff::SignedDuration::from_secs(44),
            "{wait:?}"
        );
    }

    /// An error body as Cloud Run answers an organization policy refusal: the constraint is
    /// named only in the `PreconditionFailure` detail.
    fn org_policy_refusal(message: &str, violations: serde_json::Value) -> GaxError {
        let status: Status = serde_json::from_value(serde_json::json!({
            "code": 9,
            "message": message,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.PreconditionFailure", "violations": violations},
            ],
        }))
        .expect("a google.rpc.Status");
        GaxError::service(status)
    }

    const INGRESS_REFUSED: &str = "Ingress 'all' is not allowed by the organization policy constraint constraints/run.allowedIngress on projects/p; allowed: internal.";

    #[test]
    fn googles_precondition_failure_names_the_violated_constraints_in_the_message() {
        let e = to_gcp_error(
            "run",
            "services.create",
            &org_policy_refusal(
                "Precondition check failed.",
                serde_json::json!([
                    {"type": "constraints/run.allowedIngress", "subject": "orgpolicy:projects/p", "description": INGRESS_REFUSED},
                    {"type": "constraints/run.allowedVPCEgress", "subject": "orgpolicy:projects/p", "description": "Egress 'all-traffic' is not allowed."},
                ]),
            ),
        );
        assert_eq!(e.code, Code::FailedPrecondition);
        assert_eq!(
            e.message,
            format!(
                "Precondition check failed. (violates constraints/run.allowedIngress: {INGRESS_REFUSED}; violates constraints/run.allowedVPCEgress: Egress 'all-traffic' is not allowed.)"
            )
        );
        assert_eq!(
            e.preconditions,
            [
                PreconditionViolation {
                    kind: "constraints/run.allowedIngress".into(),
                    subject: "orgpolicy:projects/p".into(),
                    description: INGRESS_REFUSED.into(),
                },
                PreconditionViolation {
                    kind: "constraints/run.allowedVPCEgress".into(),
                    subject: "orgpolicy:projects/p".into(),
                    description: "Egress 'all-traffic' is not allowed.".into(),
                },
            ]
        );
        assert!(crate::error::org_policy_violation(&e));
    }

    #[test]
    fn a_message_that_already_says_the_violation_is_left_as_it_is() {
        let message = format!("Violation: {INGRESS_REFUSED}");
        let e = to_gcp_error(
            "run",
            "services.create",
            &org_policy_refusal(
                &message,
                serde_json::json!([
                    {"type": "constraints/run.allowedIngress", "subject": "orgpolicy:projects/p", "description": INGRESS_REFUSED},
                    {"type": "constraints/run.allowedIngress", "subject": "orgpolicy:projects/p"},
                ]),
            ),
        );
        assert_eq!(e.message, message);
        assert_eq!(e.preconditions.len(), 2);
    }

    #[test]
    fn a_status_without_retry_info_has_no_retry_after() {
        let e = to_gcp_error(
            "run",
            "services.create",
            &status(serde_json::json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"subject": "project", "description": "services"}]},
            ])),
        );
        assert_eq!(
            e,
            GcpError::new(
                "run",
                "services.create",
                Code::ResourceExhausted,
                "Quota exceeded for quota metric 'Write requests'"
            )
        );
    }

    /// A Google that answers `NOT_FOUND` for names ending in `missing` and `PERMISSION_DENIED`
    /// otherwise, and records each request as `METHOD path?query`.
    async fn refusing_google() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{StatusCode, Uri};
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |method: axum::http::Method, uri: Uri| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(format!("{method} {uri}"));
                let (code, status, http) = match uri.path().ends_with("missing") {
                    true => (404, "NOT_FOUND", StatusCode::NOT_FOUND),
                    false => (403, "PERMISSION_DENIED", StatusCode::FORBIDDEN),
                };
                let body = serde_json::json!({"error": {"code": code, "message": "refused", "status": status}});
                (http, axum::Json(body))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (endpoint, seen)
    }

    #[tokio::test]
    async fn jobs_and_scheduler_calls_reach_their_rest_methods_and_map_errors() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (endpoint, seen) = refusing_google().await;
        let options = ClientOptions {
            timeout: Duration::from_secs(10),
            budgets: None,
            principal: Some("team@p.iam.gserviceaccount.com".into()),
        };
        let anonymous = google_cloud_auth::credentials::anonymous::Builder::new().build();
        let metrics = Arc::new(Metrics::default());
        let gcp = connect(Some(&endpoint), anonymous, metrics, &options)
            .await
            .unwrap();
        let l = "projects/p/locations/l";
        let (jobs, scheduler) = (&gcp.jobs, &gcp.scheduler);
        assert_eq!(jobs.get_job(&format!("{l}/jobs/missing")).await, Ok(None));
        assert_eq!(
            jobs.delete_job(&format!("{l}/jobs/missing")).await,
            Ok(None)
        );
        let execution = format!("{l}/jobs/j/executions/missing");
        assert_eq!(jobs.get_execution(&execution).await, Ok(None));
        let job = Job::new().set_name(format!("{l}/jobs/j"));
        let e = jobs.update_job(job).await.unwrap_err();
        assert_eq!(
            (e.api, e.method, e.code),
            ("run", "jobs.patch", Code::PermissionDenied)
        );
        assert_eq!(e.message, "refused (as team@p.iam.gserviceaccount.com)");
        let e = jobs
            .get_iam_policy(&format!("{l}/jobs/j"))
            .await
            .unwrap_err();
        assert_eq!((e.api, e.method), ("run", "jobs.getIamPolicy"));

        let cron = format!("{l}/jobs/c");
        assert_eq!(
            scheduler.get_job(&format!("{l}/jobs/missing")).await,
            Ok(None)
        );
        assert_eq!(
            scheduler.delete_job(&format!("{l}/jobs/missing")).await,
            Ok(false)
        );
        let e = scheduler.pause_job(&cron).await.unwrap_err();
        assert_eq!(
            (e.api, e.method, e.code),
            ("cloudscheduler", "jobs.pause", Code::PermissionDenied)
        );
        let job = SchedulerJob::new()
            .set_name(&cron)
            .set_schedule("* * * * *");
        let mask = vec!["schedule".to_owned(), "time_zone".to_owned()];
        let e = scheduler.update_job(job, mask).await.unwrap_err();
        assert_eq!((e.api, e.method), ("cloudscheduler", "jobs.patch"));

        let seen = seen.lock().unwrap().clone();
        let paths: Vec<&str> = seen.iter().map(|r| r.split('?').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                format!("GET /v2/{l}/jobs/missing"),
                format!("DELETE /v2/{l}/jobs/missing"),
                format!("GET /v2/{execution}"),
                format!("PATCH /v2/{l}/jobs/j"),
                format!("GET /v2/{l}/jobs/j:getIamPolicy"),
                format!("GET /v1/{l}/jobs/missing"),
                format!("DELETE /v1/{l}/jobs/missing"),
                format!("POST /v1/{cron}:pause"),
                format!("PATCH /v1/{cron}"),
            ]
        );
        let patch = seen.last().unwrap();
        assert!(
            patch.contains("updateMask=schedule%2CtimeZone")
                || patch.contains("updateMask=schedule,timeZone")
                || patch.contains("updateMask=schedule%2Ctime_zone")
                || patch.contains("updateMask=schedule,time_zone"),
            "{patch}"
        );
    }

    #[test]
    fn not_found_is_absence_and_other_errors_stay_errors() {
        let err = |code| GcpError::new("run", "services.get", code, "");
        assert_eq!(found::<()>(Err(err(Code::NotFound))), Ok(None));
        assert_eq!(
            found::<()>(Err(err(Code::PermissionDenied))),
            Err(err(Code::PermissionDenied))
        );
        assert_eq!(found(Ok(1)), Ok(Some(1)));
    }
}

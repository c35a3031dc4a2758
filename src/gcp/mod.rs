//! The Google Cloud APIs runwarden calls, each behind a small trait the controller owns.
//!
//! [`google`] implements them over the official google-cloud-rust clients; the same code path
//! talks to Google or to the emulator, only the endpoint and credentials differ. `fake` (tests
//! and the `fake-gcp` feature) is an in-memory Google with a call log and injectable faults.

#[cfg(any(test, feature = "fake-gcp"))]
pub mod fake;
pub mod google;
pub mod identity;
pub mod quota;

use std::sync::Arc;

use async_trait::async_trait;
pub use google_cloud_gax::error::rpc::Code;
use google_cloud_iam_v1::model::Policy;
use google_cloud_kms_v1::model::CryptoKey;
use google_cloud_longrunning::model::Operation;
use google_cloud_run_v2::model::{Execution, Job, Service};
use google_cloud_scheduler_v1::model::Job as SchedulerJob;
use google_cloud_vpcaccess_v1::model::Connector;

/// A failed Google API call: the gRPC status Google answered with and its message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{api}.{method}: {} ({message})", code.name())]
pub struct GcpError {
    /// API short name, e.g. `run`.
    pub api: &'static str,
    /// Method, e.g. `services.patch`.
    pub method: &'static str,
    /// Google's status code (`UNAVAILABLE` for transport failures).
    pub code: Code,
    /// Google's message, shown to users in conditions and events.
    pub message: String,
    /// How long Google asked the caller to wait before retrying (`google.rpc.RetryInfo`).
    pub retry_after: Option<std::time::Duration>,
    /// The preconditions Google said failed (`google.rpc.PreconditionFailure`), e.g. the
    /// organization policy constraints a request violates.
    pub preconditions: Vec<PreconditionViolation>,
}

/// One failed precondition of a `google.rpc.PreconditionFailure` detail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreconditionViolation {
    /// What kind of precondition, e.g. the constraint `constraints/run.allowedIngress`.
    pub kind: String,
    /// What it applies to, e.g. `orgpolicy:projects/my-project`.
    pub subject: String,
    /// Google's explanation.
    pub description: String,
}

impl PreconditionViolation {
    /// Whether this is an organization policy constraint (`constraints/...`).
    pub fn is_constraint(&self) -> bool {
        self.kind.starts_with("constraints/")
    }
}

impl GcpError {
    /// An error without retry advice.
    pub fn new(
        api: &'static str,
        method: &'static str,
        code: Code,
        message: impl Into<String>,
    ) -> Self {
        Self {
            api,
            method,
            code,
            message: message.into(),
            retry_after: None,
            preconditions: Vec::new(),
        }
    }

    /// Whether retrying the same call later can succeed without any change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code,
            Code::Unavailable
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::Unknown
                | Code::Cancelled
        )
    }
}

/// Result of a Google call.
pub type GcpResult<T> = std::result::Result<T, GcpError>;

/// A resource with an IAM policy.
#[async_trait]
pub trait IamPolicyApi: Send + Sync {
    /// The IAM policy of `resource` (policy version 3).
    async fn get_iam_policy(&self, resource: &str) -> GcpResult<Policy>;
    /// Replaces the IAM policy of `resource` (fails with `ABORTED` when the etag is stale).
    async fn set_iam_policy(&self, resource: &str, policy: Policy) -> GcpResult<Policy>;
}

/// Cloud Run Admin API v2: services, their IAM policy and operations.
#[async_trait]
pub trait CloudRunApi: IamPolicyApi {
    /// The service, or `None` when it does not exist.
    async fn get_service(&self, name: &str) -> GcpResult<Option<Service>>;
    /// Starts creating `service` as `parent/services/{service_id}`.
    async fn create_service(
        &self,
        parent: &str,
        service_id: &str,
        service: Service,
    ) -> GcpResult<Operation>;
    /// Starts replacing the service named `service.name` with `service`.
    async fn update_service(&self, service: Service) -> GcpResult<Operation>;
    /// Starts deleting the service; `None` when it does not exist.
    async fn delete_service(&self, name: &str) -> GcpResult<Option<Operation>>;
    /// A long-running operation of Cloud Run.
    async fn get_operation(&self, name: &str) -> GcpResult<Operation>;
}

/// Cloud Run Admin API v2: jobs, their IAM policy, their executions and operations.
#[async_trait]
pub trait CloudRunJobsApi: IamPolicyApi {
    /// The job, or `None` when it does not exist.
    async fn get_job(&self, name: &str) -> GcpResult<Option<Job>>;
    /// Starts creating `job` as `parent/jobs/{job_id}`.
    async fn create_job(&self, parent: &str, job_id: &str, job: Job) -> GcpResult<Operation>;
    /// Starts replacing the job named `job.name` with `job` (UpdateJob has no update mask: the
    /// whole job is sent).
    async fn update_job(&self, job: Job) -> GcpResult<Operation>;
    /// Starts deleting the job; `None` when it does not exist.
    async fn delete_job(&self, name: &str) -> GcpResult<Option<Operation>>;
    /// An execution, by full name; `None` when it does not exist.
    async fn get_execution(&self, name: &str) -> GcpResult<Option<Execution>>;
    /// A long-running operation of Cloud Run.
    async fn get_operation(&self, name: &str) -> GcpResult<Operation>;
}

/// Cloud Run builds from source (`Builds.SubmitBuild`) and the Cloud Build operations they
/// start.
#[async_trait]
pub trait BuildsApi: Send + Sync {
    /// Submits a build (not a long-running operation: the answer holds the Cloud Build
    /// operation to follow and the base image to enrol in automatic updates).
    async fn submit_build(
        &self,
        request: google_cloud_run_v2::model::SubmitBuildRequest,
    ) -> GcpResult<google_cloud_run_v2::model::SubmitBuildResponse>;
    /// A Cloud Build operation, `projects/{p}/locations/{l}/operations/{id}`.
    async fn get_build_operation(&self, name: &str) -> GcpResult<Operation>;
}

/// Cloud Scheduler v1 jobs.
#[async_trait]
pub trait SchedulerApi: Send + Sync {
    /// The Scheduler job, or `None` when it does not exist.
    async fn get_job(&self, name: &str) -> GcpResult<Option<SchedulerJob>>;
    /// Creates `job` (its `name` set) under `parent` (`projects/{p}/locations/{l}`).
    async fn create_job(&self, parent: &str, job: SchedulerJob) -> GcpResult<SchedulerJob>;
    /// Updates the fields of `update_mask` (e.g. `schedule`, `time_zone`, `http_target`,
    /// `description`).
    async fn update_job(
        &self,
        job: SchedulerJob,
        update_mask: Vec<String>,
    ) -> GcpResult<SchedulerJob>;
    /// Pauses the job.
    async fn pause_job(&self, name: &str) -> GcpResult<SchedulerJob>;
    /// Resumes the job.
    async fn resume_job(&self, name: &str) -> GcpResult<SchedulerJob>;
    /// Deletes the job; `false` when it did not exist.
    async fn delete_job(&self, name: &str) -> GcpResult<bool>;
}

/// Cloud KMS v1: keys and their IAM policy.
#[async_trait]
pub trait KmsApi: IamPolicyApi {
    /// The key with its primary version, or `None` when it does not exist.
    async fn get_crypto_key(&self, name: &str) -> GcpResult<Option<CryptoKey>>;
}

/// Serverless VPC Access v1 connectors.
#[async_trait]
pub trait VpcAccessApi: Send + Sync {
    /// The connector, or `None` when it does not exist.
    async fn get_connector(&self, name: &str) -> GcpResult<Option<Connector>>;
    /// Starts creating `connector` as `parent/connectors/{connector_id}`.
    async fn create_connector(
        &self,
        parent: &str,
        connector_id: &str,
        connector: Connector,
    ) -> GcpResult<Operation>;
    /// Starts deleting the connector; `None` when it does not exist.
    async fn delete_connector(&self, name: &str) -> GcpResult<Option<Operation>>;
    /// A long-running operation of Serverless VPC Access.
    async fn get_operation(&self, name: &str) -> GcpResult<Operation>;
}

/// Resource Manager v3 projects.
#[async_trait]
pub trait ProjectsApi: Send + Sync {
    /// The project number of a project id.
    async fn project_number(&self, project_id: &str) -> GcpResult<String>;
}

/// Every Google API client the controllers use, shared through the controller context.
#[derive(Clone)]
pub struct Gcp {
    /// Cloud Run Admin API v2.
    pub run: Arc<dyn CloudRunApi>,
    /// Cloud Run Admin API v2 jobs and executions (under the same budgets as `run`).
    pub jobs: Arc<dyn CloudRunJobsApi>,
    /// Cloud Run builds and their Cloud Build operations (under the same budgets as `run`).
    pub builds: Arc<dyn BuildsApi>,
    /// Cloud Scheduler v1.
    pub scheduler: Arc<dyn SchedulerApi>,
    /// Cloud KMS v1.
    pub kms: Arc<dyn KmsApi>,
    /// Serverless VPC Access v1.
    pub vpcaccess: Arc<dyn VpcAccessApi>,
    /// Resource Manager v3.
    pub projects: Arc<dyn ProjectsApi>,
}

/// The Cloud Run service agent of a project, which needs the KMS role for CMEK.
pub fn run_service_agent(project_number: &str) -> String {
    format!("service-{project_number}@serverless-robot-prod.iam.gserviceaccount.com")
}

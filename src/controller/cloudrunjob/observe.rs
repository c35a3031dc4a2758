//! Observe (IO only): the facts about Google a job's pass needs, read lazily as
//! [`super::plan`] asks for them, each at most once per pass. The egress and key facts are the
//! service's own ([`Shared`](Read::Shared)): the job's plan runs the same stages over them.

use futures::future::BoxFuture;
use google_cloud_iam_v1::model::Policy;
use google_cloud_longrunning::model::Operation;
use google_cloud_run_v2::model::{Execution, Job};
use google_cloud_scheduler_v1::model::Job as SchedulerJob;

use crate::controller::Observation;
use crate::controller::cloudrunservice::observe as shared;
use crate::controller::context::ProjectNumbers;
use crate::gcp::{Gcp, GcpResult};

/// A fact about Google a job's plan can ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A fact every workload's pass may need (a connector, the project number, the key).
    Shared(shared::Read),
    /// The Cloud Run job, by full name.
    Job(String),
    /// The job `status.resourceName` names, when the project now resolves elsewhere.
    Pinned(String),
    /// The job's IAM policy.
    Policy(String),
    /// A Cloud Run operation, by full name.
    Operation(String),
    /// An execution of the job, by full name.
    Execution(String),
    /// The Cloud Scheduler job, by full name.
    Schedule(String),
}

impl From<shared::Read> for Read {
    fn from(r: shared::Read) -> Self {
        Read::Shared(r)
    }
}

/// What a job's pass has read from Google; `None` = not read (yet).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The facts every workload's pass may need.
    pub shared: shared::Observed,
    /// The Cloud Run job.
    pub job: Option<GcpResult<Option<Job>>>,
    /// The job of `status.resourceName`, when it is not the one the spec now names.
    pub pinned: Option<GcpResult<Option<Job>>>,
    /// The job's IAM policy.
    pub policy: Option<GcpResult<Policy>>,
    /// `status.operation`.
    pub operation: Option<GcpResult<Operation>>,
    /// The execution of the spec's token.
    pub execution: Option<GcpResult<Option<Execution>>>,
    /// The Cloud Scheduler job.
    pub schedule: Option<GcpResult<Option<SchedulerJob>>>,
}

impl Observation for Observed {
    type Read = Read;

    fn read<'a>(
        &'a mut self,
        read: Read,
        gcp: &'a Gcp,
        numbers: &'a ProjectNumbers,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match read {
                Read::Shared(r) => self.shared.read(r, gcp, numbers).await,
                Read::Job(name) => self.job = Some(gcp.jobs.get_job(&name).await),
                Read::Pinned(name) => self.pinned = Some(gcp.jobs.get_job(&name).await),
                Read::Policy(name) => self.policy = Some(gcp.jobs.get_iam_policy(&name).await),
                Read::Operation(name) => {
                    self.operation = Some(gcp.jobs.get_operation(&name).await);
                }
                Read::Execution(name) => {
                    self.execution = Some(gcp.jobs.get_execution(&name).await);
                }
                Read::Schedule(name) => {
                    self.schedule = Some(gcp.scheduler.get_job(&name).await);
                }
            }
        })
    }
}

/// The job a finished create or update left, from the operation's response.
pub fn finished_job(read: Option<&GcpResult<Operation>>) -> Option<Job> {
    shared::finished(read)
}

pub use shared::need;

//! Observe (IO only): the facts about Google a pass needs, read lazily as [`super::plan`] asks
//! for them, each at most once per pass.
//!
//! The plan is a pure function of the object and what has been observed so far; when it needs a
//! fact not yet observed it answers with the [`Read`] to make, the driver makes it and asks
//! again. A pass therefore reads only what its decisions depend on: nothing from Google for an
//! invalid spec, not the service while the connector it needs is missing, nothing but the
//! operation while one is in flight.

use google_cloud_iam_v1::model::Policy;
use google_cloud_kms_v1::model::CryptoKey;
use google_cloud_longrunning::model::Operation;
use google_cloud_run_v2::model::Service;
use google_cloud_vpcaccess_v1::model::Connector;

use futures::future::BoxFuture;

use crate::controller::Observation;
use crate::controller::context::ProjectNumbers;
use crate::gcp::{Gcp, GcpResult};

/// A fact about Google a plan can ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A connector not managed here (`egress.connector`), by full name.
    Connector(String),
    /// The number of a project (for its Cloud Run service agent).
    ProjectNumber(String),
    /// A Cloud KMS key, by full name.
    Key(String),
    /// The IAM policy of a Cloud KMS key.
    KeyPolicy(String),
    /// A Cloud Run operation, by full name.
    Operation(String),
    /// The Cloud Run service, by full name.
    Service(String),
    /// The service `status.resourceName` names, when the project now resolves elsewhere.
    Pinned(String),
    /// The IAM policy of the Cloud Run service.
    InvokerPolicy(String),
    /// A Cloud Build operation of a build from source (`status.build.operation`).
    BuildOperation(String),
}

/// What a pass has read from Google; `None` = not read (yet).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// `egress.connector`.
    pub connector: Option<GcpResult<Option<Connector>>>,
    /// The project's number.
    pub project_number: Option<GcpResult<String>>,
    /// `encryption.kmsKey`.
    pub key: Option<GcpResult<Option<CryptoKey>>>,
    /// The key's IAM policy.
    pub key_policy: Option<GcpResult<Policy>>,
    /// `status.operation`.
    pub operation: Option<GcpResult<Operation>>,
    /// The Cloud Run service.
    pub service: Option<GcpResult<Option<Service>>>,
    /// The service of `status.resourceName`, when it is not the one the spec now names.
    pub pinned: Option<GcpResult<Option<Service>>>,
    /// The service's IAM policy.
    pub invoker_policy: Option<GcpResult<Policy>>,
    /// `status.build.operation`.
    pub build_operation: Option<GcpResult<Operation>>,
}

impl Observation for Observed {
    type Read = Read;

    fn read<'a>(
        &'a mut self,
        read: Read,
        gcp: &'a Gcp,
        numbers: &'a ProjectNumbers,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.read_one(read, gcp, numbers))
    }
}

impl Observed {
    async fn read_one(&mut self, read: Read, gcp: &Gcp, numbers: &ProjectNumbers) {
        match &read {
            Read::Connector(name) => {
                self.connector = Some(gcp.vpcaccess.get_connector(name).await);
            }
            Read::ProjectNumber(project) => {
                self.project_number = Some(numbers.get(gcp.projects.as_ref(), project).await);
            }
            Read::Key(name) => self.key = Some(gcp.kms.get_crypto_key(name).await),
            Read::KeyPolicy(name) => self.key_policy = Some(gcp.kms.get_iam_policy(name).await),
            Read::Operation(name) => self.operation = Some(gcp.run.get_operation(name).await),
            Read::Service(name) => self.service = Some(gcp.run.get_service(name).await),
            Read::Pinned(name) => self.pinned = Some(gcp.run.get_service(name).await),
            Read::BuildOperation(name) => {
                self.build_operation = Some(gcp.builds.get_build_operation(name).await);
            }
            Read::InvokerPolicy(name) => {
                self.invoker_policy = Some(gcp.run.get_iam_policy(name).await);
            }
        }
    }
}

/// The service a finished create or update left, from the operation's response: Cloud Run
/// returns the whole service there, so the pass that sees the operation done need not read the
/// service again. (Not for a delete: its response is the service as it was.)
pub fn finished_service(read: Option<&GcpResult<Operation>>) -> Option<Service> {
    finished(read)
}

/// The resource a finished operation left (its response), for any kind.
pub fn finished<M: google_cloud_wkt::message::Message + serde::de::DeserializeOwned>(
    read: Option<&GcpResult<Operation>>,
) -> Option<M> {
    use google_cloud_longrunning::model::operation::Result as OpResult;
    match read? {
        Ok(op) if op.done => match &op.result {
            Some(OpResult::Response(any)) => any.to_msg::<M>().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Answers `slot` when it has been read, else asks for `read` (for `?` in the plan), whatever
/// kind of read a plan asks for.
pub fn need<T, R>(
    slot: &Option<GcpResult<T>>,
    read: impl FnOnce() -> R,
) -> Result<&GcpResult<T>, R> {
    slot.as_ref().ok_or_else(read)
}

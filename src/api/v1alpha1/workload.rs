//! What a CloudRunService and a CloudRunJob declare alike: the containers and their volumes,
//! the identity they run as, egress, CMEK and Binary Authorization. One view of both specs, so
//! that validation, the guardrails, the egress and key stages of a pass and the render aspects
//! of a Cloud Run template are written once for both kinds.

use std::collections::BTreeMap;

use super::{
    BinaryAuthorization, CloudRunJobSpec, CloudRunServiceSpec, Container, Egress,
    ExecutionEnvironment, Gpu, ManagementPolicy, Volume,
};

/// The parts of a spec every Cloud Run workload has.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    /// `spec.region`.
    pub region: &'a str,
    /// `spec.containers`.
    pub containers: &'a [Container],
    /// `spec.volumes`.
    pub volumes: &'a [Volume],
    /// `spec.egress`.
    pub egress: Option<&'a Egress>,
    /// `spec.encryption.kmsKey`.
    pub kms_key: Option<&'a str>,
    /// `spec.encryption.grantServiceAgent` (true without a key).
    pub grant_service_agent: bool,
    /// `spec.binaryAuthorization`.
    pub binary_authorization: Option<&'a BinaryAuthorization>,
    /// `spec.serviceAccount`.
    pub service_account: Option<&'a str>,
    /// `spec.executionEnvironment`.
    pub execution_environment: ExecutionEnvironment,
    /// `spec.gpu`.
    pub gpu: Option<&'a Gpu>,
    /// The container that gets the GPU: a service's serving container, a job's first.
    pub gpu_container: usize,
    /// `spec.labels`.
    pub labels: &'a BTreeMap<String, String>,
    /// `spec.managementPolicy`.
    pub management_policy: ManagementPolicy,
}

impl CloudRunServiceSpec {
    /// The workload parts of the service's spec.
    pub fn workload(&self) -> Workload<'_> {
        Workload {
            region: &self.region,
            containers: &self.containers,
            volumes: &self.volumes,
            egress: self.egress.as_deref(),
            kms_key: self.encryption.as_ref().map(|e| e.kms_key.as_str()),
            grant_service_agent: self
                .encryption
                .as_ref()
                .is_none_or(|e| e.grant_service_agent),
            binary_authorization: self.binary_authorization.as_deref(),
            service_account: self.service_account.as_deref(),
            execution_environment: self.execution_environment,
            gpu: self.gpu.as_ref(),
            gpu_container: self.serving_container(),
            labels: &self.labels,
            management_policy: self.management_policy,
        }
    }
}

impl CloudRunJobSpec {
    /// The workload parts of the job's spec.
    pub fn workload(&self) -> Workload<'_> {
        Workload {
            region: &self.region,
            containers: &self.containers,
            volumes: &self.volumes,
            egress: self.egress.as_deref(),
            kms_key: self.encryption.as_ref().map(|e| e.kms_key.as_str()),
            grant_service_agent: self
                .encryption
                .as_ref()
                .is_none_or(|e| e.grant_service_agent),
            binary_authorization: self.binary_authorization.as_deref(),
            service_account: self.service_account.as_deref(),
            execution_environment: self.execution_environment,
            gpu: self.gpu.as_ref(),
            gpu_container: 0,
            labels: &self.labels,
            management_policy: self.management_policy,
        }
    }
}

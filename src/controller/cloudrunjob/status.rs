//! Status (pure): the status a job's pass leaves, for the object's current generation, by the
//! same rules as a service's: `Ready` first (never True or Unknown after a pass that failed),
//! every sub-condition, transition times kept, so a pass that finds nothing new computes the
//! status already stored and writes nothing.

use super::SUB_CONDITIONS;
use super::plan::Fields;
use crate::api::v1alpha1::{CloudRunJob, CloudRunJobStatus};
use crate::controller::conditions::{self, Cond};

/// The status to store.
pub fn compute(
    obj: &CloudRunJob,
    decided: &[Cond],
    fields: Fields,
    failure: Option<&crate::Error>,
    now: &str,
) -> CloudRunJobStatus {
    let old = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = obj.metadata.generation;
    CloudRunJobStatus {
        observed_generation: generation,
        conditions: conditions::after_pass(old, decided, &SUB_CONDITIONS, failure, generation, now),
        resource_name: fields.resource_name,
        execution_count: fields.execution_count,
        service_agent: fields.service_agent,
        operation: fields.operation,
        drift: fields.drift,
        latest_execution: fields.latest_execution,
        schedule: fields.schedule,
        access: fields.access,
    }
}

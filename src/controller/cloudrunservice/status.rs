//! Status (pure): the status a pass leaves, for the object's current generation.

use super::SUB_CONDITIONS;
use super::plan::Fields;
use crate::api::v1alpha1::{CloudRunService, CloudRunServiceStatus};
use crate::controller::conditions::{self, Cond};

/// The status to store: `Ready` first, then every sub-condition (those the pass did not reach
/// keep their previous value), with transition times kept for unchanged statuses, so a pass
/// that finds nothing new computes the status already stored and writes nothing.
pub fn compute(
    obj: &CloudRunService,
    decided: &[Cond],
    fields: Fields,
    now: &str,
) -> CloudRunServiceStatus {
    let old = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let subs = conditions::carry_over(decided, old, &SUB_CONDITIONS);
    let mut all = vec![conditions::ready(&subs)];
    all.extend(subs);
    let generation = obj.metadata.generation;
    CloudRunServiceStatus {
        observed_generation: generation,
        conditions: conditions::merge(old, &all, generation, now),
        uri: fields.uri,
        resource_name: fields.resource_name,
        latest_ready_revision: fields.latest_ready_revision,
        service_agent: fields.service_agent,
        operation: fields.operation,
        traffic: fields.traffic,
        drift: fields.drift,
    }
}

//! Status (pure): the status a pass leaves, for the object's current generation.

use super::SUB_CONDITIONS;
use super::plan::Fields;
use crate::api::v1alpha1::{CloudRunService, CloudRunServiceStatus};
use crate::controller::conditions::{self, Cond};

/// The status to store: `Ready` first (True only when the pass checked every sub-condition,
/// and never after a pass that stopped with a `failure`: see
/// [`conditions::ready_unless_failed`]), then every sub-condition (those the pass did not reach keep their previous value), with transition times kept for unchanged statuses, so a pass
/// that finds nothing new computes the status already stored and writes nothing.
pub fn compute(
    obj: &CloudRunService,
    decided: &[Cond],
    fields: Fields,
    failure: Option<&crate::Error>,
    now: &str,
) -> CloudRunServiceStatus {
    let old = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = obj.metadata.generation;
    CloudRunServiceStatus {
        observed_generation: generation,
        conditions: conditions::after_pass(old, decided, &SUB_CONDITIONS, failure, generation, now),
        uri: fields.uri,
        resource_name: fields.resource_name,
        latest_ready_revision: fields.latest_ready_revision,
        service_agent: fields.service_agent,
        operation: fields.operation,
        traffic: fields.traffic,
        drift: fields.drift,
        access: fields.access,
        build: fields.build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::status;

    #[test]
    fn a_new_generation_is_not_ready_on_conditions_of_the_previous_one() {
        let spec = serde_json::from_value(serde_json::json!({
            "region": "europe-west1",
            "containers": [{"image": "europe-docker.pkg.dev/p1/apps/api:1"}],
        }))
        .unwrap();
        let mut obj = CloudRunService::new("api", spec);
        obj.metadata.generation = Some(1);
        let all_true: Vec<Cond> = SUB_CONDITIONS
            .iter()
            .map(|t| Cond::ok(t, "Ready", "fine"))
            .collect();
        let first = compute(&obj, &all_true, Fields::default(), None, "t1");
        assert_eq!(first.conditions[0].status, status::TRUE);
        obj.status = Some(first);
        obj.metadata.generation = Some(2);
        // The pass of generation 2 stopped after its first step.
        let second = compute(&obj, &all_true[..1], Fields::default(), None, "t2");
        assert_eq!(second.observed_generation, Some(2));
        assert_eq!(second.conditions[0].status, status::UNKNOWN);
        assert_eq!(
            crate::controller::conditions::is_ready(
                &second.conditions,
                second.observed_generation,
                obj.metadata.generation
            ),
            None
        );
    }
}

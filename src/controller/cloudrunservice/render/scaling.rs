//! Service-level scaling: automatic (between the template's bounds) or a manual instance count.

use google_cloud_run_v2::model::{Service, ServiceScaling, service_scaling::ScalingMode};

use super::{Aspect, Resolved, Shape, UNMANAGED};
use crate::api::v1alpha1::{self as api, CloudRunService};

pub(super) const ASPECT: Aspect = Aspect {
    name: "scaling",
    render,
    shape,
    update,
};

fn render(obj: &CloudRunService, _: &Resolved, svc: &mut Service) {
    svc.scaling = obj.spec.scaling.as_ref().map(|s| {
        let mode = match s.mode {
            api::ScalingMode::Automatic => ScalingMode::Automatic,
            api::ScalingMode::Manual => ScalingMode::Manual,
        };
        ServiceScaling::new()
            .set_scaling_mode(mode)
            .set_or_clear_manual_instance_count(s.manual_instances)
    });
}

fn shape(svc: &Service, s: &mut Shape) {
    let scaling = svc.scaling.clone().unwrap_or_default();
    let mode = match scaling.scaling_mode {
        ScalingMode::Unspecified => ScalingMode::Automatic,
        other => other,
    };
    if mode == ScalingMode::Manual {
        s.insert(
            "scaling.manualInstanceCount".into(),
            scaling
                .manual_instance_count
                .map_or(UNMANAGED.to_owned(), |n| n.to_string()),
        );
    }
    s.insert("scaling.scalingMode".into(), format!("{mode:?}"));
}

/// The mode and count replaced; Google's service-level bounds (unmanaged) kept.
fn update(out: &mut Service, desired: &Service) {
    let want = desired.scaling.clone().unwrap_or_default();
    match (&mut out.scaling, desired.scaling.is_some()) {
        (Some(have), _) => {
            have.scaling_mode = want.scaling_mode;
            have.manual_instance_count = want.manual_instance_count;
        }
        (None, true) => out.scaling = Some(want),
        (None, false) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(svc: &Service) -> Shape {
        let mut s = Shape::new();
        shape(svc, &mut s);
        s
    }

    #[test]
    fn unset_and_automatic_are_the_same_and_manual_compares_its_count() {
        let auto = Service::new()
            .set_scaling(ServiceScaling::new().set_scaling_mode(ScalingMode::Automatic));
        assert_eq!(shaped(&Service::new()), shaped(&auto));
        let manual = |n: i32| {
            Service::new().set_scaling(
                ServiceScaling::new()
                    .set_scaling_mode(ScalingMode::Manual)
                    .set_manual_instance_count(n),
            )
        };
        assert_eq!(shaped(&manual(3))["scaling.manualInstanceCount"], "3");
        assert_ne!(shaped(&manual(3)), shaped(&manual(4)));
    }

    #[test]
    fn an_update_keeps_googles_service_level_bounds() {
        let mut out = Service::new().set_scaling(ServiceScaling::new().set_min_instance_count(2));
        let desired = Service::new().set_scaling(
            ServiceScaling::new()
                .set_scaling_mode(ScalingMode::Manual)
                .set_manual_instance_count(5),
        );
        update(&mut out, &desired);
        let s = out.scaling.unwrap();
        assert_eq!(
            (
                s.min_instance_count,
                s.scaling_mode,
                s.manual_instance_count
            ),
            (2, ScalingMode::Manual, Some(5))
        );
    }
}

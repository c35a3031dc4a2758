//! GPU: the accelerator type, the count on the serving container, zonal redundancy.
//!
//! Runs after the containers aspect: the count is a limit of the serving container, which that
//! aspect shapes (`resources.gpu`) and carries into updates with the other limits.

use google_cloud_run_v2::model::{NodeSelector, Service};

use super::{Resolved, Shape, TemplateAspect, template, template_mut};
use crate::api::v1alpha1::Workload;

/// The limit key of a container's GPU count.
pub const GPU_LIMIT: &str = "nvidia.com/gpu";

pub(super) const ASPECT: TemplateAspect = TemplateAspect {
    name: "gpu",
    render,
    shape,
    update,
};

fn render(w: &Workload, _: &Resolved, svc: &mut Service) {
    let Some(gpu) = w.gpu else { return };
    let serving = w.gpu_container;
    let t = template_mut(svc);
    t.node_selector = Some(NodeSelector::new().set_accelerator(&gpu.type_));
    t.gpu_zonal_redundancy_disabled = Some(!gpu.zonal_redundancy);
    if let Some(c) = t.containers.get_mut(serving) {
        c.resources
            .get_or_insert_with(Default::default)
            .limits
            .insert(GPU_LIMIT.to_owned(), gpu.count.to_string());
    }
}

fn shape(svc: &Service, s: &mut Shape) {
    let t = template(svc);
    let accelerator = t
        .node_selector
        .as_ref()
        .map(|n| n.accelerator.clone())
        .unwrap_or_default();
    if !accelerator.is_empty() {
        s.insert(
            "template.gpuZonalRedundancyDisabled".into(),
            t.gpu_zonal_redundancy_disabled.unwrap_or(false).to_string(),
        );
    }
    s.insert("template.nodeSelector.accelerator".into(), accelerator);
}

fn update(out: &mut Service, desired: &Service) {
    let want = template(desired).into_owned();
    let t = template_mut(out);
    t.node_selector = want.node_selector;
    t.gpu_zonal_redundancy_disabled = want.gpu_zonal_redundancy_disabled;
}

#[cfg(test)]
mod tests {
    use google_cloud_run_v2::model::RevisionTemplate;

    use super::*;

    #[test]
    fn zonal_redundancy_is_compared_only_with_a_gpu_and_defaults_to_on() {
        let mut none = Shape::new();
        shape(&Service::new(), &mut none);
        assert_eq!(none.len(), 1);
        let gpu = |disabled: Option<bool>| {
            let mut s = Shape::new();
            let mut t = RevisionTemplate::new()
                .set_node_selector(NodeSelector::new().set_accelerator("nvidia-l4"));
            t.gpu_zonal_redundancy_disabled = disabled;
            shape(&Service::new().set_template(t), &mut s);
            s
        };
        assert_eq!(gpu(None), gpu(Some(false)));
        assert_ne!(gpu(None), gpu(Some(true)));
    }
}

//! Egress: Direct VPC network interfaces or a Serverless VPC Access connector, and the routing.

use google_cloud_run_v2::model::{
    Service, VpcAccess, vpc_access::NetworkInterface, vpc_access::VpcEgress,
};

use super::{
    Resolved, Shape, TemplateAspect, network_path, or_unmanaged, project_and_region,
    subnetwork_path, template, template_mut,
};
use crate::api::v1alpha1::{EgressRouting, Workload};

pub(super) const ASPECT: TemplateAspect = TemplateAspect {
    name: "egress",
    render,
    shape,
    update,
};

fn render(w: &Workload, resolved: &Resolved, svc: &mut Service) {
    template_mut(svc).vpc_access = vpc_access(w, resolved);
}

fn vpc_access(w: &Workload, resolved: &Resolved) -> Option<VpcAccess> {
    let egress = w.egress?;
    let routing = match egress.routing {
        EgressRouting::AllTraffic => VpcEgress::AllTraffic,
        EgressRouting::PrivateRangesOnly => VpcEgress::PrivateRangesOnly,
    };
    let vpc = VpcAccess::new().set_egress(routing);
    if let Some(direct) = &egress.direct_vpc {
        let project = &resolved.project;
        let nic = NetworkInterface::new()
            .set_network(
                direct
                    .network
                    .as_deref()
                    .map(|n| network_path(n, project))
                    .unwrap_or_default(),
            )
            .set_subnetwork(
                direct
                    .subnetwork
                    .as_deref()
                    .map(|n| subnetwork_path(n, project, w.region))
                    .unwrap_or_default(),
            )
            .set_tags(direct.tags.clone());
        return Some(vpc.set_network_interfaces([nic]));
    }
    let connector = egress
        .connector
        .clone()
        .or_else(|| resolved.connector.clone())?;
    Some(vpc.set_connector(connector))
}

fn shape(svc: &Service, s: &mut Shape) {
    let vpc = template(svc).vpc_access.clone().unwrap_or_default();
    s.insert("template.vpcAccess.connector".into(), vpc.connector.clone());
    let routing = if vpc.connector.is_empty() && vpc.network_interfaces.is_empty() {
        String::new()
    } else {
        match vpc.egress {
            VpcEgress::Unspecified => format!("{:?}", VpcEgress::PrivateRangesOnly),
            ref other => format!("{other:?}"),
        }
    };
    s.insert("template.vpcAccess.egress".into(), routing);
    // Direct VPC: names as full paths in the service's project and region, whichever form was
    // sent or returned; a network or subnetwork the spec leaves out is Cloud Run's to infer.
    let (project, region) = project_and_region(&svc.name);
    s.insert(
        "template.vpcAccess.networkInterfaces".into(),
        vpc.network_interfaces.len().to_string(),
    );
    for (i, n) in vpc.network_interfaces.iter().enumerate() {
        let key = |f: &str| format!("template.vpcAccess.networkInterfaces[{i}].{f}");
        s.insert(
            key("network"),
            or_unmanaged(network_path(&n.network, project)),
        );
        s.insert(
            key("subnetwork"),
            or_unmanaged(subnetwork_path(&n.subnetwork, project, region)),
        );
        s.insert(key("tags"), format!("{:?}", n.tags));
    }
}

fn update(out: &mut Service, desired: &Service) {
    template_mut(out).vpc_access = template(desired).vpc_access.clone();
}

//! Pure functions: the Cloud Run service a `CloudRunService` asks for, and how it differs from
//! the one Google has.
//!
//! Differences are computed on a *shape*: every field runwarden manages, as a canonical string,
//! with the defaults Cloud Run fills in (ingress ALL, concurrency 80, timeout 300s, 1000m CPU,
//! 512Mi, port 8080, the Compute Engine default account...) folded in, so that a service Google
//! returns after deploying exactly our spec has the same shape as the spec. An unchanged spec
//! then causes no write, while a change made behind runwarden's back shows up as a difference.
//!
//! The fields are grouped by aspect, one module each, and every aspect does three things for
//! its fields: **render** them from the spec, **shape** them for comparison, and **update**
//! Google's service with them (keeping what runwarden does not manage). A new group of Cloud
//! Run fields is a new aspect, with its own table tests: in [`TEMPLATE_ASPECTS`] when it belongs
//! to what every Cloud Run template has (containers, volumes, egress, the key, the identity, the
//! GPU: rendered from a [`Workload`], so a CloudRunJob's task template uses the very same
//! aspects), else in [`SERVICE_ASPECTS`].

mod access;
mod containers;
mod egress;
mod encryption;
mod gpu;
mod probes;
mod revision;
mod scaling;
pub mod service;
mod traffic;
mod volumes;

use std::collections::BTreeMap;

use google_cloud_run_v2::model::{RevisionTemplate, Service};

pub use self::containers::{DEFAULT_CPU, DEFAULT_CPU_IDLE, DEFAULT_MEMORY, DEFAULT_PORT};
pub use self::gpu::GPU_LIMIT;
pub use self::revision::{DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_SECONDS};
pub use self::service::RESERVED_LABEL_PREFIXES;
pub use self::traffic::traffic_status;
use crate::api::v1alpha1::{CloudRunService, Workload};

/// A shape value meaning "the spec leaves this to Cloud Run": never compared.
const UNMANAGED: &str = "<unmanaged>";

/// The managed fields of a service as canonical strings, by field path.
pub type Shape = BTreeMap<String, String>;

/// What the reconciler resolved outside the object, needed to render it.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// The Google Cloud project.
    pub project: String,
    /// Full name of the connector of `egress.connectorRef`, once resolved.
    pub connector: Option<String>,
    /// The image built from source (`spec.build`), deployed on the first container.
    pub built: Option<Built>,
}

/// An image built from source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Built {
    /// `...@sha256:...`.
    pub image: String,
    /// The base image Google enrolled it in (empty without automatic updates).
    pub base_image_uri: String,
}

/// One group of managed fields of a service only.
pub struct Aspect {
    /// What the group is, e.g. `traffic`.
    pub name: &'static str,
    /// Sets the group's fields of the desired service from the spec.
    pub render: fn(&CloudRunService, &Resolved, &mut Service),
    /// Adds the group's fields of a service (desired or Google's) to its shape.
    pub shape: fn(&Service, &mut Shape),
    /// Replaces the group's fields of Google's service with the desired ones.
    pub update: fn(&mut Service, &Service),
}

/// One group of the fields every Cloud Run template has (a revision's and a job's task's
/// alike), rendered from the [`Workload`] parts of a spec. A job's task template is shaped and
/// updated through the same functions, as a revision template holding its fields.
pub struct TemplateAspect {
    /// What the group is, e.g. `containers`.
    pub name: &'static str,
    /// Sets the group's fields of the desired template from the spec.
    pub render: fn(&Workload<'_>, &Resolved, &mut Service),
    /// Adds the group's fields of a template (desired or Google's) to its shape.
    pub shape: fn(&Service, &mut Shape),
    /// Replaces the group's fields of Google's template with the desired ones.
    pub update: fn(&mut Service, &Service),
}

/// The aspects only a service has.
pub const SERVICE_ASPECTS: [Aspect; 6] = [
    service::ASPECT,
    access::ASPECT,
    traffic::ASPECT,
    scaling::ASPECT,
    revision::ASPECT,
    encryption::ASPECT,
];

/// The aspects of every Cloud Run template, in render order.
pub const TEMPLATE_ASPECTS: [TemplateAspect; 6] = [
    revision::IDENTITY,
    encryption::KEY,
    egress::ASPECT,
    volumes::ASPECT,
    containers::ASPECT,
    // After containers: it puts the GPU count on the serving container.
    gpu::ASPECT,
];

pub use crate::controller::parent;

/// The full Google name of the service.
pub fn service_name(obj: &CloudRunService, project: &str) -> String {
    format!(
        "{}/services/{}",
        parent(project, &obj.spec.region),
        obj.service_id()
    )
}

/// The Cloud Run service this object asks for (with `name` set; clear it to create).
pub fn desired_service(obj: &CloudRunService, resolved: &Resolved) -> Service {
    let mut service = Service::new()
        .set_name(service_name(obj, &resolved.project))
        .set_template(RevisionTemplate::new());
    for aspect in &SERVICE_ASPECTS {
        (aspect.render)(obj, resolved, &mut service);
    }
    render_template(&obj.spec.workload(), resolved, &mut service);
    service
}

/// The managed fields of a service as canonical strings (see the module docs).
pub fn shape(svc: &Service) -> Shape {
    let mut s = Shape::new();
    for aspect in &SERVICE_ASPECTS {
        (aspect.shape)(svc, &mut s);
    }
    shape_template(svc, &mut s);
    s
}

/// The managed fields where `actual` differs from `desired`, e.g. `template.containers[0].image`.
pub fn changes(desired: &Service, actual: &Service) -> Vec<String> {
    differing(&shape(desired), &shape(actual))
}

/// The paths where shape `have` differs from `want` (a path `want` leaves [`UNMANAGED`] never).
pub fn differing(want: &Shape, have: &Shape) -> Vec<String> {
    let mut keys: Vec<&String> = want.keys().chain(have.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let (w, h) = (want.get(*k), have.get(*k));
            w.map(String::as_str) != Some(UNMANAGED) && w != h
        })
        .cloned()
        .collect()
}

/// The update to send: `actual` with every managed field replaced by `desired`'s, so fields
/// runwarden does not manage (annotations, Cloud Run's own startup probe...) are kept as they are.
pub fn update_from(actual: &Service, desired: &Service) -> Service {
    let mut out = actual.clone();
    let template = out.template.get_or_insert_with(RevisionTemplate::default);
    // A revision name pinned by the old template would make Cloud Run refuse the new one.
    template.revision = String::new();
    for aspect in &SERVICE_ASPECTS {
        (aspect.update)(&mut out, desired);
    }
    update_template(&mut out, desired);
    out
}

/// The template aspects of a workload, rendered into `svc`'s template.
pub fn render_template(workload: &Workload, resolved: &Resolved, svc: &mut Service) {
    for aspect in &TEMPLATE_ASPECTS {
        (aspect.render)(workload, resolved, svc);
    }
}

/// The template aspects' shape of `svc`'s template.
pub fn shape_template(svc: &Service, s: &mut Shape) {
    for aspect in &TEMPLATE_ASPECTS {
        (aspect.shape)(svc, s);
    }
}

/// `out`'s template with every template aspect's fields replaced by `desired`'s.
pub fn update_template(out: &mut Service, desired: &Service) {
    for aspect in &TEMPLATE_ASPECTS {
        (aspect.update)(out, desired);
    }
}

/// The template of a service, or an empty one.
fn template(svc: &Service) -> std::borrow::Cow<'_, RevisionTemplate> {
    match &svc.template {
        Some(t) => std::borrow::Cow::Borrowed(t),
        None => std::borrow::Cow::Owned(RevisionTemplate::new()),
    }
}

/// The template of a service being built or updated.
fn template_mut(svc: &mut Service) -> &mut RevisionTemplate {
    svc.template.get_or_insert_with(RevisionTemplate::default)
}

/// `v`, or [`UNMANAGED`] when empty (the spec leaves it to Cloud Run).
fn or_unmanaged(v: String) -> String {
    if v.is_empty() {
        UNMANAGED.to_owned()
    } else {
        v
    }
}

/// The last path segment of a network or subnetwork reference: Cloud Run accepts a short name
/// or a full path and may answer with either.
pub fn short_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A network reference as a path, `projects/{p}/global/networks/{n}`: a short name is in
/// `project`; a URL (`https://www.googleapis.com/compute/v1/projects/...`) loses its prefix; any
/// other path is kept as written. Empty stays empty.
pub fn network_path(reference: &str, project: &str) -> String {
    resource_path(reference, || {
        format!("projects/{project}/global/networks/{reference}")
    })
}

/// A subnetwork reference as a path, `projects/{p}/regions/{r}/subnetworks/{s}`: a short name
/// is in `project` and `region` (Cloud Run only uses subnetworks of the service's region).
pub fn subnetwork_path(reference: &str, project: &str, region: &str) -> String {
    resource_path(reference, || {
        format!("projects/{project}/regions/{region}/subnetworks/{reference}")
    })
}

fn resource_path(reference: &str, from_short: impl FnOnce() -> String) -> String {
    if reference.is_empty() {
        String::new()
    } else if !reference.contains('/') {
        from_short()
    } else if let Some(i) = reference.find("projects/") {
        reference[i..].to_owned()
    } else {
        reference.to_owned()
    }
}

/// `(project, region)` of `projects/{p}/locations/{r}/services/{s}`; empty when malformed.
fn project_and_region(service_name: &str) -> (&str, &str) {
    let mut parts = service_name.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("projects"), Some(p), Some("locations"), Some(r)) => (p, r),
        _ => ("", ""),
    }
}

#[cfg(test)]
mod tests;

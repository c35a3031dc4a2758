//! Traffic: how requests are split between the latest ready revision and named revisions.
//!
//! Absent from the spec means what Cloud Run does by default, 100% to the latest ready
//! revision, and is sent as such. A revision may be named short or full: targets are compared
//! by the revision's last path segment, in any order; an untagged target at 0% routes nothing
//! and is not compared.

use google_cloud_run_v2::model::{Service, TrafficTarget, TrafficTargetAllocationType};

use super::{Aspect, Resolved, Shape, short_name};
use crate::api::v1alpha1::{self as api, CloudRunService, TrafficType};

pub(super) const ASPECT: Aspect = Aspect {
    name: "traffic",
    render,
    shape,
    update,
};

/// The shape key; `ignoreDrift: [Traffic]` leaves every path starting with it to others.
const KEY: &str = "traffic";

fn render(obj: &CloudRunService, _: &Resolved, svc: &mut Service) {
    svc.traffic = if obj.spec.traffic.is_empty() {
        vec![latest(100)]
    } else {
        obj.spec.traffic.iter().map(target).collect()
    };
}

fn latest(percent: i32) -> TrafficTarget {
    TrafficTarget::new()
        .set_type(TrafficTargetAllocationType::Latest)
        .set_percent(percent)
}

fn target(t: &api::TrafficTarget) -> TrafficTarget {
    let out = match t.type_ {
        TrafficType::Latest => latest(t.percent),
        TrafficType::Revision => TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(short_name(t.revision.as_deref().unwrap_or_default()))
            .set_percent(t.percent),
    };
    out.set_tag(t.tag.clone().unwrap_or_default())
}

fn shape(svc: &Service, s: &mut Shape) {
    let mut targets: Vec<String> = svc
        .traffic
        .iter()
        .filter(|t| t.percent != 0 || !t.tag.is_empty())
        .map(|t| target_shape(&t.r#type, &t.revision, t.percent, &t.tag))
        .collect();
    if targets.is_empty() {
        targets.push(target_shape(
            &TrafficTargetAllocationType::Latest,
            "",
            100,
            "",
        ));
    }
    targets.sort();
    s.insert(KEY.into(), targets.join(", "));
}

/// `latest 100%`, `revision payments-00001-abc 90% tag stable`.
fn target_shape(
    kind: &TrafficTargetAllocationType,
    revision: &str,
    percent: i32,
    tag: &str,
) -> String {
    let to = match kind {
        TrafficTargetAllocationType::Revision => format!("revision {}", short_name(revision)),
        // Unspecified with a revision named: Cloud Run routes to that revision.
        TrafficTargetAllocationType::Unspecified if !revision.is_empty() => {
            format!("revision {}", short_name(revision))
        }
        _ => "latest".to_owned(),
    };
    let tag = if tag.is_empty() {
        String::new()
    } else {
        format!(" tag {tag}")
    };
    format!("{to} {percent}%{tag}")
}

fn update(out: &mut Service, desired: &Service) {
    out.traffic = desired.traffic.clone();
}

/// `status.traffic`: Cloud Run's `trafficStatuses`, revisions by short name.
pub fn traffic_status(svc: &Service) -> Vec<api::TrafficStatus> {
    let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    svc.traffic_statuses
        .iter()
        .map(|t| api::TrafficStatus {
            type_: match t.r#type {
                TrafficTargetAllocationType::Revision => "Revision".to_owned(),
                TrafficTargetAllocationType::Unspecified if !t.revision.is_empty() => {
                    "Revision".to_owned()
                }
                _ => "Latest".to_owned(),
            },
            revision: some(short_name(&t.revision)),
            percent: t.percent,
            tag: some(&t.tag),
            uri: some(&t.uri),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use google_cloud_run_v2::model::TrafficTargetStatus;

    use super::*;

    fn shaped(traffic: Vec<TrafficTarget>) -> String {
        let mut s = Shape::new();
        shape(&Service::new().set_traffic(traffic), &mut s);
        s.remove(KEY).unwrap()
    }

    fn revision(name: &str, percent: i32) -> TrafficTarget {
        TrafficTarget::new()
            .set_type(TrafficTargetAllocationType::Revision)
            .set_revision(name)
            .set_percent(percent)
    }

    #[test]
    fn no_traffic_is_all_to_the_latest_revision() {
        assert_eq!(shaped(vec![]), "latest 100%");
        assert_eq!(shaped(vec![latest(100)]), "latest 100%");
        assert_ne!(shaped(vec![revision("s-1", 100)]), "latest 100%");
    }

    #[test]
    fn a_revision_is_compared_by_its_short_name_in_any_order() {
        let short = shaped(vec![
            revision("s-00001-abc", 90),
            latest(10).set_tag("canary"),
        ]);
        let full = shaped(vec![
            latest(10).set_tag("canary"),
            revision(
                "projects/p/locations/l/services/s/revisions/s-00001-abc",
                90,
            ),
        ]);
        assert_eq!(short, full);
        assert_eq!(short, "latest 10% tag canary, revision s-00001-abc 90%");
        assert_ne!(
            short,
            shaped(vec![
                revision("s-00002-xyz", 90),
                latest(10).set_tag("canary")
            ])
        );
        assert_ne!(short, shaped(vec![revision("s-00001-abc", 90), latest(10)]));
    }

    #[test]
    fn an_untagged_target_at_zero_percent_routes_nothing() {
        assert_eq!(
            shaped(vec![latest(100), revision("old", 0)]),
            shaped(vec![latest(100)])
        );
        assert_ne!(
            shaped(vec![latest(100), revision("old", 0).set_tag("old")]),
            shaped(vec![latest(100)])
        );
    }

    #[test]
    fn status_lists_google_traffic_statuses_with_short_revision_names() {
        let svc = Service::new().set_traffic_statuses([
            TrafficTargetStatus::new()
                .set_type(TrafficTargetAllocationType::Revision)
                .set_revision("projects/p/locations/l/services/s/revisions/s-1")
                .set_percent(90),
            TrafficTargetStatus::new()
                .set_type(TrafficTargetAllocationType::Latest)
                .set_percent(10)
                .set_tag("canary")
                .set_uri("https://canary---s-xyz.a.run.app"),
        ]);
        let status = traffic_status(&svc);
        assert_eq!(
            status,
            [
                api::TrafficStatus {
                    type_: "Revision".into(),
                    revision: Some("s-1".into()),
                    percent: 90,
                    tag: None,
                    uri: None,
                },
                api::TrafficStatus {
                    type_: "Latest".into(),
                    revision: None,
                    percent: 10,
                    tag: Some("canary".into()),
                    uri: Some("https://canary---s-xyz.a.run.app".into()),
                },
            ]
        );
    }
}

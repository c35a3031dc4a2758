//! Events: Normal ones are created and forgotten; Warning ones go through kube's recorder.
//!
//! kube's `Recorder` keeps every event it published for six minutes, to turn repeats into a
//! series. A controller that creates 10,000 services publishes three Normal events for each
//! (`Creating`, `Created`, `InvokersUpdated`), which never repeat; kept, they were 8 KiB of
//! memory per object (measured with `cargo bench --bench scale`). So Normal events are created
//! directly, as the recorder would create a first event, and only Warnings (which do repeat, a
//! failing object every backoff step) are aggregated into series.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};

/// The controller's event publisher.
pub struct Events {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl Events {
    /// Publishes as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    /// Publishes `ev` about `reference`.
    pub async fn publish(&self, ev: &Event, reference: &ObjectReference) -> kube::Result<()> {
        if ev.type_ == EventType::Warning {
            return self.warnings.publish(ev, reference).await;
        }
        let event = normal(ev, reference, &self.reporter, jiff::Timestamp::now());
        let api: Api<K8sEvent> = Api::namespaced(
            self.client.clone(),
            reference.namespace.as_deref().unwrap_or("default"),
        );
        api.create(&PostParams::default(), &event).await.map(|_| ())
    }
}

/// The Event object of a Normal event, as kube's recorder makes a first one.
fn normal(
    ev: &Event,
    reference: &ObjectReference,
    reporter: &Reporter,
    now: jiff::Timestamp,
) -> K8sEvent {
    K8sEvent {
        action: Some(ev.action.clone()),
        reason: Some(ev.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        note: ev.note.clone(),
        metadata: ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(format!(
                "{}.{:x}",
                reference.name.as_deref().unwrap_or(&reporter.controller),
                now.as_nanosecond()
            )),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some("Normal".into()),
        related: ev.secondary.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_event_names_its_object_reporter_and_time() {
        let reference = ObjectReference {
            name: Some("api".into()),
            namespace: Some("team".into()),
            kind: Some("CloudRunService".into()),
            ..Default::default()
        };
        let reporter = Reporter {
            controller: "runwarden".into(),
            instance: Some("pod-1".into()),
        };
        let ev = Event {
            type_: EventType::Normal,
            reason: "Created".into(),
            note: Some("Created Cloud Run service x".into()),
            action: "Create".into(),
            secondary: None,
        };
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let e = normal(&ev, &reference, &reporter, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("team"));
        assert!(e.metadata.name.unwrap().starts_with("api."));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reason.as_deref(), Some("Created"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
        assert_eq!(e.event_time, Some(MicroTime(now)));
        assert!(e.series.is_none());
    }
}

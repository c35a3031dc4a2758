//! VpcAccessConnector objects and CloudRunService egress (connectorRef, connector, Direct VPC)
//! against the emulator and a real API server.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, PROJECT, REGION, spec};
use google_cloud_vpcaccess_v1::client::VpcAccessService;
use google_cloud_vpcaccess_v1::model::Connector;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use runwarden::api::v1alpha1::{CloudRunService, Condition, VpcAccessConnector};
use runwarden::controller::vpcaccessconnector;

const IMAGE: &str = "europe-docker.pkg.dev/runwarden-test/apps/payments@sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn connector_path(region: &str, id: &str) -> String {
    format!("projects/{PROJECT}/locations/{region}/connectors/{id}")
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:#?}"))
}

fn service_condition<'a>(obj: &'a CloudRunService, type_: &str) -> &'a Condition {
    condition(&obj.status.as_ref().expect("status").conditions, type_)
}

fn connectors(h: &Harness) -> Api<VpcAccessConnector> {
    Api::namespaced(h.client.clone(), &h.ns)
}

async fn apply_connector(h: &Harness, name: &str, spec: serde_json::Value) {
    let obj = serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "VpcAccessConnector",
        "metadata": {"name": name},
        "spec": spec,
    });
    connectors(h)
        .patch(
            name,
            &PatchParams::apply("test-user").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply connector");
}

fn connector_spec(region: &str, cidr: &str) -> serde_json::Value {
    serde_json::json!({"region": region, "network": "default", "ipCidrRange": cidr})
}

async fn wait_connector(
    h: &Harness,
    name: &str,
    what: &str,
    pred: impl Fn(Option<&VpcAccessConnector>) -> bool,
) -> Option<VpcAccessConnector> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let obj = connectors(h).get_opt(name).await.expect("get connector");
        if pred(obj.as_ref()) {
            return obj;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for connector {what}; last seen: {:#?}",
                obj.map(|o| o.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_connector_reason(h: &Harness, name: &str, reason: &str) -> VpcAccessConnector {
    wait_connector(h, name, &format!("Ready reason {reason}"), |o| {
        o.and_then(|o| o.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == reason)
    })
    .await
    .expect("connector")
}

fn service_with_connector_ref(name: &str) -> serde_json::Value {
    let mut s = spec(IMAGE);
    s["egress"] = serde_json::json!({"connectorRef": {"name": name}});
    s
}

/// The official VPC Access client on the emulator, to make connectors behind runwarden's back.
async fn vpcaccess(h: &Harness) -> VpcAccessService {
    VpcAccessService::builder()
        .with_endpoint(h.emu.endpoint())
        .with_credentials(common::anonymous())
        .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
        .build()
        .await
        .expect("vpcaccess client")
}

async fn google_connector(h: &Harness, name: &str) -> Option<Connector> {
    match vpcaccess(h)
        .await
        .get_connector()
        .set_name(name)
        .send()
        .await
    {
        Ok(c) => Some(c),
        Err(e)
            if e.status()
                .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound) =>
        {
            None
        }
        Err(e) => panic!("get connector {name}: {e}"),
    }
}

async fn make_connector_in_google(h: &Harness, region: &str, id: &str) {
    vpcaccess(h)
        .await
        .create_connector()
        .set_parent(format!("projects/{PROJECT}/locations/{region}"))
        .set_connector_id(id)
        .set_connector(
            Connector::new()
                .set_network("default")
                .set_ip_cidr_range("10.99.0.0/28"),
        )
        .send()
        .await
        .expect("create connector in Google");
}

fn template_connector(svc: &google_cloud_run_v2::model::Service) -> String {
    svc.template
        .as_ref()
        .and_then(|t| t.vpc_access.as_ref())
        .map(|v| v.connector.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_service_waits_for_its_connector_then_deploys_with_it() {
    let Some(mut h) = Harness::new("connector-then-service").await else {
        return;
    };
    h.emu.set_operation_delay(Duration::from_secs(2));
    // Retries after a failure come late: only the connector's changes can wake the service.
    h.config.min_backoff = Duration::from_secs(20);
    h.config.max_backoff = Duration::from_secs(20);
    h.start_controller().await;

    // The service first: its connector does not exist yet.
    h.apply("payments", service_with_connector_ref("egress"))
        .await;
    let obj = h
        .wait_reason("payments", "NetworkReady", "ConnectorNotFound")
        .await;
    assert_eq!(service_condition(&obj, "NetworkReady").status, "False");
    let ready = service_condition(&obj, "Ready");
    assert_eq!(
        (ready.status.as_ref(), ready.reason.as_ref()),
        ("False", "ConnectorNotFound")
    );
    assert!(
        ready.message.contains("VpcAccessConnector egress"),
        "{ready:?}"
    );
    assert_eq!(
        h.emu.count("run.services.create"),
        0,
        "nothing deployed without its connector"
    );

    // Then the connector, with its own id: created with an operation, Creating, then Ready.
    let mut s = connector_spec(REGION, "10.8.0.0/28");
    s["connectorName"] = "egress-conn".into();
    apply_connector(&h, "egress", s).await;
    let creating = wait_connector_reason(&h, "egress", "Creating").await;
    let status = creating.status.clone().unwrap();
    assert_eq!(status.state.as_deref(), Some("Creating"));
    assert!(status.operation.is_some(), "operation recorded: {status:?}");
    let obj = h
        .wait_reason("payments", "NetworkReady", "ConnectorNotReady")
        .await;
    assert_eq!(service_condition(&obj, "Ready").reason, "ConnectorNotReady");
    assert_eq!(h.emu.count("run.services.create"), 0);

    let connector = wait_connector(&h, "egress", "Ready", |o| {
        o.is_some_and(|o| vpcaccessconnector::is_ready(o) == Some(true))
    })
    .await
    .unwrap();
    let connector_ready = Instant::now();
    let status = connector.status.clone().unwrap();
    let full_name = connector_path(REGION, "egress-conn");
    assert_eq!(status.state.as_deref(), Some("Ready"));
    assert_eq!(status.resource_name.as_deref(), Some(full_name.as_str()));
    assert_eq!(status.operation, None, "operation cleared once done");
    assert_eq!(status.observed_generation, connector.metadata.generation);
    assert_eq!(
        google_connector(&h, &full_name)
            .await
            .map(|c| c.ip_cidr_range),
        Some("10.8.0.0/28".to_owned())
    );
    assert_eq!(h.emu.count("vpcaccess.connectors.create"), 1);
    assert!(
        h.events("egress")
            .await
            .iter()
            .any(|e| e.starts_with("Created:")),
        "{:?}",
        h.events("egress").await
    );

    // The service's next pass comes from the connector's change, not from its backoff.
    h.wait_reason("payments", "NetworkReady", "Connector").await;
    let to_network = connector_ready.elapsed();
    let obj = h.wait_ready("payments").await;
    eprintln!(
        "connector Ready → service NetworkReady in {:.2}s, Ready in {:.2}s (operation delay 2s)",
        to_network.as_secs_f64(),
        connector_ready.elapsed().as_secs_f64()
    );
    assert!(
        to_network < Duration::from_secs(2),
        "the service must react to its connector within seconds, took {to_network:?}"
    );
    assert!(
        service_condition(&obj, "NetworkReady")
            .message
            .contains(&full_name)
    );
    let svc = h.gcp_service("payments").await.expect("service");
    assert_eq!(template_connector(&svc), full_name);
    assert_eq!(h.emu.count("run.services.create"), 1);
    assert_eq!(
        google_connector(&h, &full_name)
            .await
            .unwrap()
            .connected_projects,
        [PROJECT]
    );
    // Connected projects show up in the connector's status at its next read.
    assert_eq!(
        h.emu.count("vpcaccess.connectors.create"),
        1,
        "no second create"
    );

    // The gauge counts connectors like services.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let exposition = h.metrics.encode();
    assert!(
        exposition
            .contains("runwarden_managed_objects{kind=\"VpcAccessConnector\",ready=\"true\"} 1"),
        "{exposition}"
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn a_connector_in_another_region_is_a_region_mismatch() {
    let Some(mut h) = Harness::new("connector-region").await else {
        return;
    };
    h.start_controller().await;
    apply_connector(&h, "far", connector_spec("us-central1", "10.8.0.0/28")).await;
    wait_connector(&h, "far", "Ready", |o| {
        o.is_some_and(|o| vpcaccessconnector::is_ready(o) == Some(true))
    })
    .await;
    h.apply("payments", service_with_connector_ref("far")).await;
    let obj = h
        .wait_reason("payments", "NetworkReady", "RegionMismatch")
        .await;
    let ready = service_condition(&obj, "Ready");
    assert_eq!(
        (ready.status.as_ref(), ready.reason.as_ref()),
        ("False", "RegionMismatch")
    );
    assert!(
        ready.message.contains("us-central1") && ready.message.contains(REGION),
        "{ready:?}"
    );
    // Needs a spec change: no retries, nothing deployed.
    let failures = h.metrics.encode();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.emu.count("run.services.create"), 0);
    let count = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("runwarden_reconcile_failures_total")
                    && l.contains("CloudRunService")
                    && l.contains("RegionMismatch")
            })
            .map(str::to_owned)
    };
    assert_eq!(
        count(&failures),
        count(&h.metrics.encode()),
        "retried a spec error"
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn an_external_connector_is_checked_in_google() {
    let Some(mut h) = Harness::new("external-connector").await else {
        return;
    };
    h.start_controller().await;
    let elsewhere = connector_path("us-central1", "shared");
    let mut s = spec(IMAGE);
    s["egress"] = serde_json::json!({"connector": elsewhere});
    h.apply("far", s).await;
    h.wait_reason("far", "NetworkReady", "RegionMismatch").await;

    let here = connector_path(REGION, "shared");
    let mut s = spec(IMAGE);
    s["egress"] = serde_json::json!({"connector": here, "routing": "PrivateRangesOnly"});
    h.apply("payments", s).await;
    let obj = h
        .wait_reason("payments", "NetworkReady", "ConnectorNotFound")
        .await;
    assert_eq!(service_condition(&obj, "Ready").reason, "ConnectorNotFound");
    assert!(
        h.emu.count("vpcaccess.connectors.get") >= 1,
        "checked with a GET"
    );

    // Made by someone else, it shows up; the service retries by itself and deploys with it.
    make_connector_in_google(&h, REGION, "shared").await;
    let obj = h.wait_ready("payments").await;
    assert_eq!(service_condition(&obj, "NetworkReady").reason, "Connector");
    let svc = h.gcp_service("payments").await.unwrap();
    assert_eq!(template_connector(&svc), here);
    assert!(h.gcp_service("far").await.is_none());
    h.stop_controller().await;
}

#[tokio::test]
async fn direct_vpc_short_and_full_names_cause_no_write_on_resync() {
    let Some(mut h) = Harness::new("direct-vpc").await else {
        return;
    };
    h.start_controller().await;
    let mut s = spec(IMAGE);
    s["egress"] = serde_json::json!({"directVpc": {"network": "default", "subnetwork": "run-egress", "tags": ["payments"]}});
    h.apply("payments", s).await;
    let obj = h.wait_ready("payments").await;
    assert_eq!(service_condition(&obj, "NetworkReady").reason, "DirectVpc");
    let svc = h.gcp_service("payments").await.unwrap();
    let vpc = svc.template.as_ref().unwrap().vpc_access.clone().unwrap();
    assert_eq!(vpc.connector, "");
    let nic = &vpc.network_interfaces[0];
    assert_eq!(
        nic.network,
        format!("projects/{PROJECT}/global/networks/default")
    );
    assert_eq!(
        nic.subnetwork,
        format!("projects/{PROJECT}/regions/{REGION}/subnetworks/run-egress")
    );
    assert_eq!(nic.tags, ["payments"]);

    // A pass with nothing changed (poke) and the same names as full paths (a new generation).
    h.emu.reset_counters();
    h.api()
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .unwrap();
    let mut s = spec(IMAGE);
    s["egress"] = serde_json::json!({"directVpc": {
        "network": format!("projects/{PROJECT}/global/networks/default"),
        "subnetwork": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/subnetworks/run-egress"),
        "tags": ["payments"]}});
    h.apply("payments", s).await;
    let generation = h.api().get("payments").await.unwrap().metadata.generation;
    h.wait_for("payments", "the new generation observed", |o| {
        o.and_then(|o| o.status.as_ref())
            .is_some_and(|s| s.observed_generation == generation)
    })
    .await;
    h.wait_ready("payments").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.emu.count("run.services.get") < 2 {
        assert!(Instant::now() < deadline, "no reconcile seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.emu.count("run.services.patch"),
        0,
        "{:?}",
        h.emu.counters()
    );
    assert_eq!(h.writes(), 0, "{:?}", h.emu.counters());

    // A subnetwork changed behind runwarden's back is put back.
    let mut drifted = h.gcp_service("payments").await.unwrap();
    drifted
        .template
        .as_mut()
        .unwrap()
        .vpc_access
        .as_mut()
        .unwrap()
        .network_interfaces[0]
        .subnetwork = "other".into();
    h.run
        .update_service()
        .set_service(drifted)
        .send()
        .await
        .expect("drift");
    h.emu.reset_counters();
    h.api()
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"poke": "2"}}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let svc = h.gcp_service("payments").await.unwrap();
        let subnet = svc.template.unwrap().vpc_access.unwrap().network_interfaces[0]
            .subnetwork
            .clone();
        if subnet.ends_with("/run-egress") {
            break;
        }
        assert!(Instant::now() < deadline, "drift not undone: {subnet}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.emu.count("run.services.patch"), 1);
    h.stop_controller().await;
}

#[tokio::test]
async fn an_existing_connector_is_refused_unless_adopted_and_never_deleted_unless_owned() {
    let Some(mut h) = Harness::new("connector-adopt").await else {
        return;
    };
    h.start_controller().await;
    make_connector_in_google(&h, REGION, "theirs").await;
    let full_name = connector_path(REGION, "theirs");

    apply_connector(&h, "theirs", connector_spec(REGION, "10.99.0.0/28")).await;
    let obj = wait_connector_reason(&h, "theirs", "AlreadyExists").await;
    let status = obj.status.clone().unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("adoptionPolicy: Adopt"), "{ready:?}");
    assert_eq!(status.resource_name, None, "not ours: no ownership record");
    assert_eq!(
        h.emu.count("vpcaccess.connectors.create"),
        1,
        "only the outside create"
    );

    // Deleting the refused object leaves their connector alone.
    connectors(&h)
        .delete("theirs", &DeleteParams::default())
        .await
        .unwrap();
    wait_connector(&h, "theirs", "gone", |o| o.is_none()).await;
    assert!(google_connector(&h, &full_name).await.is_some());
    assert_eq!(h.emu.count("vpcaccess.connectors.delete"), 0);

    // Adopt: Ready, with the ownership record; then deleting the object deletes it.
    let mut s = connector_spec(REGION, "10.99.0.0/28");
    s["adoptionPolicy"] = "Adopt".into();
    apply_connector(&h, "theirs", s).await;
    let obj = wait_connector(&h, "theirs", "Ready", |o| {
        o.is_some_and(|o| vpcaccessconnector::is_ready(o) == Some(true))
    })
    .await
    .unwrap();
    assert_eq!(
        obj.status.unwrap().resource_name.as_deref(),
        Some(full_name.as_str())
    );
    assert!(
        h.events("theirs")
            .await
            .iter()
            .any(|e| e.starts_with("Adopted:"))
    );
    connectors(&h)
        .delete("theirs", &DeleteParams::default())
        .await
        .unwrap();
    wait_connector(&h, "theirs", "gone", |o| o.is_none()).await;
    assert!(google_connector(&h, &full_name).await.is_none());

    // Abandon leaves even our own connector in Google.
    let mut s = connector_spec(REGION, "10.8.0.0/28");
    s["deletionPolicy"] = "Abandon".into();
    apply_connector(&h, "kept", s).await;
    wait_connector(&h, "kept", "Ready", |o| {
        o.is_some_and(|o| vpcaccessconnector::is_ready(o) == Some(true))
    })
    .await;
    connectors(&h)
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    wait_connector(&h, "kept", "gone", |o| o.is_none()).await;
    assert!(
        google_connector(&h, &connector_path(REGION, "kept"))
            .await
            .is_some()
    );
    h.stop_controller().await;
}

#[tokio::test]
async fn deletion_waits_while_services_use_the_connector() {
    let Some(mut h) = Harness::new("connector-in-use").await else {
        return;
    };
    h.start_controller().await;
    apply_connector(&h, "egress", connector_spec(REGION, "10.8.0.0/28")).await;
    h.apply("payments", service_with_connector_ref("egress"))
        .await;
    h.apply("orders", service_with_connector_ref("egress"))
        .await;
    h.wait_ready("payments").await;
    h.wait_ready("orders").await;
    let full_name = connector_path(REGION, "egress");

    connectors(&h)
        .delete("egress", &DeleteParams::default())
        .await
        .unwrap();
    let obj = wait_connector_reason(&h, "egress", "InUse").await;
    let ready = condition(&obj.status.as_ref().unwrap().conditions, "Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("orders, payments"),
        "names both services: {ready:?}"
    );
    let events = h.events("egress").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("InUse:") && e.contains("orders, payments")),
        "{events:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(google_connector(&h, &full_name).await.is_some());
    assert_eq!(h.emu.count("vpcaccess.connectors.delete"), 0);
    // The services it still serves stay Ready meanwhile.
    for name in ["payments", "orders"] {
        let obj = h.api().get(name).await.unwrap();
        assert_eq!(
            runwarden::controller::cloudrunservice::is_ready(&obj),
            Some(true),
            "{name}: {:?}",
            obj.status
        );
    }

    // One service goes: still waiting, for the other one.
    h.delete("payments").await;
    h.wait_for("payments", "gone", |o| o.is_none()).await;
    wait_connector(&h, "egress", "only orders named", |o| {
        o.and_then(|o| o.status.as_ref())
            .map(|s| condition(&s.conditions, "Ready").message.to_string())
            .is_some_and(|m| m.contains("orders") && !m.contains("payments"))
    })
    .await;
    assert!(google_connector(&h, &full_name).await.is_some());

    // The last one goes: the connector is deleted, soon after (not at a resync).
    h.delete("orders").await;
    h.wait_for("orders", "gone", |o| o.is_none()).await;
    let gone_at = Instant::now();
    wait_connector(&h, "egress", "gone", |o| o.is_none()).await;
    assert!(
        gone_at.elapsed() < Duration::from_secs(10),
        "took {:?}",
        gone_at.elapsed()
    );
    assert!(google_connector(&h, &full_name).await.is_none());
    assert_eq!(h.emu.count("vpcaccess.connectors.delete"), 1);
    h.stop_controller().await;
}

/// The API server itself refuses changes to a connector's spec, telling the user what to do.
#[tokio::test]
async fn the_api_server_keeps_a_connector_spec_immutable() {
    let Some(h) = Harness::new("connector-cel").await else {
        return;
    };
    // No controller: only admission is under test.
    let manifest = |spec: serde_json::Value| {
        serde_json::json!({"apiVersion": "runwarden.dev/v1alpha1", "kind": "VpcAccessConnector",
            "metadata": {"name": "egress", "namespace": h.ns}, "spec": spec})
        .to_string()
    };
    let base = connector_spec(REGION, "10.8.0.0/28");
    h.plane
        .kubectl_stdin(&["apply", "-f", "-"], Some(&manifest(base.clone())));
    let cases = [
        (
            "region",
            serde_json::json!("us-central1"),
            "spec.region is immutable",
        ),
        (
            "ipCidrRange",
            serde_json::json!("10.9.0.0/28"),
            "spec.ipCidrRange is immutable",
        ),
        (
            "network",
            serde_json::json!("other"),
            "spec.network is immutable",
        ),
        (
            "connectorName",
            serde_json::json!("other"),
            "fields can be neither added nor removed",
        ),
        (
            "machineType",
            serde_json::json!("f1-micro"),
            "fields can be neither added nor removed",
        ),
    ];
    for (field, value, expected) in cases {
        let mut s = base.clone();
        s[field] = value;
        let err = h
            .plane
            .try_kubectl(&["apply", "-f", "-"], Some(&manifest(s)))
            .expect_err(&format!("changing {field} must be refused"));
        assert!(err.contains(expected), "{field}: {err}");
        assert!(
            err.contains("create a new"),
            "{field}: the message says what to do instead: {err}"
        );
    }
    // Runwarden's own policies stay editable (Adopt is how AlreadyExists is resolved).
    let mut s = base.clone();
    s["adoptionPolicy"] = "Adopt".into();
    s["deletionPolicy"] = "Abandon".into();
    h.plane
        .kubectl_stdin(&["apply", "-f", "-"], Some(&manifest(s)));
    // Invalid combinations are refused at creation.
    for (spec, expected) in [
        (
            serde_json::json!({"region": REGION, "network": "default"}),
            "spec.network and spec.ipCidrRange go together",
        ),
        (
            serde_json::json!({"region": REGION, "network": "default", "ipCidrRange": "10.8.0.0/28", "subnet": {"name": "s"}}),
            "set either subnet, or network and ipCidrRange",
        ),
        (
            serde_json::json!({"region": REGION, "subnet": {"name": "s"}, "minInstances": 5, "maxInstances": 4}),
            "spec.minInstances must be lower",
        ),
    ] {
        let obj = serde_json::json!({"apiVersion": "runwarden.dev/v1alpha1", "kind": "VpcAccessConnector",
            "metadata": {"name": "bad", "namespace": h.ns}, "spec": spec});
        let err = h
            .plane
            .try_kubectl(
                &["apply", "--dry-run=server", "-f", "-"],
                Some(&obj.to_string()),
            )
            .expect_err(&format!("{spec} must be refused"));
        assert!(err.contains(expected), "{spec}: {err}");
    }
}

/// Issue 11's ownership record: the connector's name is in the status before the create call,
/// and that write says nothing else (`Creating` is for when Google has an operation). Every
/// status the API server stores is watched, so the write between the two is seen.
#[tokio::test]
async fn the_claim_before_a_create_records_only_the_name() {
    use futures::StreamExt;
    use kube::runtime::watcher;

    let Some(mut h) = Harness::new("connector-claim").await else {
        return;
    };
    h.emu.set_operation_delay(Duration::from_secs(1));
    // The first create fails: the claim is written, then withdrawn; the retry creates.
    h.emu.inject_fault(runwarden_emulator::Fault {
        api: "vpcaccess".into(),
        method: Some("connectors.create".into()),
        code: "UNAVAILABLE".into(),
        message: None,
        count: Some(1),
        rate: None,
    });
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watch = {
        let seen = seen.clone();
        let api = connectors(&h);
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(c) = event {
                    seen.lock().unwrap().push(c.status.unwrap_or_default());
                }
            }
        })
    };
    h.start_controller().await;
    apply_connector(&h, "egress", connector_spec(REGION, "10.8.0.0/28")).await;
    wait_connector(&h, "egress", "Ready", |o| {
        o.is_some_and(|o| vpcaccessconnector::is_ready(o) == Some(true))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    let name = connector_path(REGION, "egress");
    assert!(
        seen.iter()
            .any(|s| s.resource_name.as_deref() == Some(name.as_str())
                && s.state.is_none()
                && s.conditions.is_empty()),
        "a status with the name and nothing else (the claim): {seen:#?}"
    );
    for s in &seen {
        let creating = s.state.as_deref() == Some("Creating")
            || s.conditions.iter().any(|c| c.reason == "Creating");
        assert!(
            !creating || s.operation.is_some(),
            "Creating without Google's operation: {s:#?}"
        );
    }
    assert_eq!(h.emu.count("vpcaccess.connectors.create"), 2);
    h.stop_controller().await;
}

//! End to end: a VpcAccessConnector and a CloudRunService that uses it, applied together with
//! one `kubectl apply`, reach Ready in order; deleted together, the connector goes last. The
//! `runwarden` binary runs as controller and emulator processes against a real kube-apiserver.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::envtest;
use common::process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");

/// `(status, reason)` of a condition of an object as `kubectl get -o json` prints it.
fn condition_of(obj: &serde_json::Value, type_: &str) -> (String, String) {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_default()
}

#[test]
fn connector_and_service_in_one_apply_become_ready_in_order() {
    let Some(plane) = envtest::shared() else {
        envtest::skip("connector_and_service_in_one_apply_become_ready_in_order");
        return;
    };
    // Connectors take a while to create in Google; 3s here lets the service be seen waiting.
    let (_emu, emulator) = start_emulator(BIN, "3s");

    let ns = format!("e2e-egress-{}", fastrand::u32(..) % 100_000);
    plane.kubectl(&["create", "namespace", &ns]);
    plane.kubectl(&[
        "annotate",
        "namespace",
        &ns,
        "runwarden.dev/project-id=e2e-project",
    ]);
    let (_controller, metrics_addr) = spawn_listening(
        Command::new(BIN)
            .args([
                "controller",
                "--gcp-endpoint",
                &emulator,
                "--metrics-addr",
                "127.0.0.1:0",
                "--watch-namespace",
                &ns,
                "--log-format",
                "json",
            ])
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdout(Stdio::null()),
        "the controller",
        Logs::Stderr,
    );
    wait_until("/readyz", Duration::from_secs(30), || {
        http_get(&format!("http://{metrics_addr}/readyz")).is_some_and(|(code, _)| code == 200)
    });

    // The service comes first in the file: order of objects must not matter.
    let manifest = format!(
        r#"apiVersion: runwarden.dev/v1alpha1
kind: CloudRunService
metadata: {{name: payments, namespace: {ns}}}
spec:
  region: europe-west1
  containers:
  - image: europe-docker.pkg.dev/e2e-project/apps/payments:v1
  egress:
    connectorRef: {{name: egress}}
    routing: PrivateRangesOnly
---
apiVersion: runwarden.dev/v1alpha1
kind: VpcAccessConnector
metadata: {{name: egress, namespace: {ns}}}
spec:
  region: europe-west1
  network: default
  ipCidrRange: 10.8.0.0/28
"#
    );
    let applied = Instant::now();
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest));

    let (mut connector_ready, mut service_ready, mut network_ready) = (None, None, None);
    let mut service_reasons: Vec<String> = vec![];
    let deadline = applied + Duration::from_secs(90);
    while connector_ready.is_none() || service_ready.is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out: connector Ready at {connector_ready:?}, service Ready at {service_ready:?}; service reasons seen {service_reasons:?}"
        );
        let out = plane.kubectl(&["get", "vpcconn,crsvc", "-n", &ns, "-o", "json"]);
        let now = Instant::now();
        let list: serde_json::Value = serde_json::from_str(&out).expect("kubectl json");
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let (status, reason) = condition_of(&item, "Ready");
            match item["kind"].as_str() {
                Some("VpcAccessConnector") if status == "True" && connector_ready.is_none() => {
                    connector_ready = Some(now)
                }
                Some("CloudRunService") => {
                    if service_reasons.last() != Some(&reason) && !reason.is_empty() {
                        service_reasons.push(reason.clone());
                    }
                    if condition_of(&item, "NetworkReady").0 == "True" && network_ready.is_none() {
                        network_ready = Some(now);
                    }
                    if status == "True" && service_ready.is_none() {
                        service_ready = Some(now);
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (connector_ready, service_ready) = (connector_ready.unwrap(), service_ready.unwrap());
    assert!(
        connector_ready <= service_ready,
        "the service cannot be Ready before its connector"
    );
    assert!(
        service_reasons
            .iter()
            .any(|r| r == "ConnectorNotReady" || r == "ConnectorNotFound"),
        "the service says what it waits for: {service_reasons:?}"
    );
    let gap = service_ready.duration_since(connector_ready);
    let network_ready = network_ready.expect("NetworkReady before Ready");
    eprintln!(
        "e2e egress: kubectl apply → connector Ready in {:.2}s; after it, service NetworkReady in {:.2}s and Ready in {:.2}s (Google operation delay 3s, poll 1s, kubectl polled every ~0.1s); service Ready reasons seen: {service_reasons:?}",
        connector_ready.duration_since(applied).as_secs_f64(),
        network_ready
            .saturating_duration_since(connector_ready)
            .as_secs_f64(),
        gap.as_secs_f64()
    );
    assert!(
        gap < Duration::from_secs(15),
        "the service must follow its connector within seconds, took {gap:?}"
    );
    let (_, svc) = http_get(&format!(
        "{emulator}/v2/projects/e2e-project/locations/europe-west1/services/payments"
    ))
    .expect("service");
    let svc: serde_json::Value = serde_json::from_str(&svc).unwrap();
    assert_eq!(
        svc["template"]["vpcAccess"]["connector"],
        "projects/e2e-project/locations/europe-west1/connectors/egress"
    );
    let described = plane.kubectl(&["describe", "vpcconn", "egress", "-n", &ns]);
    assert!(described.contains("Resource Name"), "{described}");
    let printed = plane.kubectl(&["get", "vpcconn", "-n", &ns]);
    assert!(
        printed.contains("READY") && printed.contains("Ready") && printed.contains("europe-west1"),
        "print columns: {printed}"
    );

    // One delete for both: the connector waits for the service, then goes too.
    plane.kubectl_stdin(&["delete", "--timeout=90s", "-f", "-"], Some(&manifest));
    for path in [
        "v2/projects/e2e-project/locations/europe-west1/services/payments",
        "v1/projects/e2e-project/locations/europe-west1/connectors/egress",
    ] {
        let (code, _) = http_get(&format!("{emulator}/{path}")).expect("get");
        assert_eq!(code, 404, "{path} must be deleted");
    }
}

//! End to end, CMEK: the `runwarden` binary (controller and emulator as separate processes)
//! against a real kube-apiserver + etcd. A key disabled behind the controller's back shows in
//! `kubectl get` within a resync, and re-enabling it heals the service.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::envtest::{self, ControlPlane};
use common::process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");
const PROJECT: &str = "e2e-cmek-project";
const REGION: &str = "europe-west1";

/// A call that must succeed.
fn call(method: &str, url: &str, body: serde_json::Value) {
    let (code, text) = http(method, url, Some(body)).expect("emulator reachable");
    assert!((200..300).contains(&code), "{method} {url}: {code} {text}");
}

fn jsonpath(plane: &ControlPlane, ns: &str, path: &str) -> String {
    plane
        .try_kubectl(
            &[
                "get",
                "crsvc",
                "vault",
                "-n",
                ns,
                "-o",
                &format!("jsonpath={path}"),
            ],
            None,
        )
        .unwrap_or_default()
}

#[test]
fn a_disabled_key_shows_in_kubectl_and_re_enabling_heals() {
    let Some(plane) = envtest::shared() else {
        envtest::skip("a_disabled_key_shows_in_kubectl_and_re_enabling_heals");
        return;
    };
    let (_emu, emulator) = start_emulator(BIN, "0s");

    // A key, through the KMS REST API.
    let location = format!("{emulator}/v1/projects/{PROJECT}/locations/{REGION}");
    call(
        "POST",
        &format!("{location}/keyRings?keyRingId=apps"),
        serde_json::json!({}),
    );
    call(
        "POST",
        &format!("{location}/keyRings/apps/cryptoKeys?cryptoKeyId=vault"),
        serde_json::json!({"purpose": "ENCRYPT_DECRYPT"}),
    );
    let key = format!("projects/{PROJECT}/locations/{REGION}/keyRings/apps/cryptoKeys/vault");
    let version = format!("{emulator}/v1/{key}/cryptoKeyVersions/1?updateMask=state");

    let ns = format!("e2e-cmek-{}", fastrand::u32(..) % 100_000);
    plane.kubectl(&["create", "namespace", &ns]);
    let (_controller, metrics_addr) = spawn_listening(
        Command::new(BIN)
            .args([
                "controller",
                "--gcp-endpoint",
                &emulator,
                "--default-project",
                PROJECT,
                "--metrics-addr",
                "127.0.0.1:0",
                "--watch-namespace",
                &ns,
                "--resync",
                "3s",
                "--log-format",
                "json",
            ])
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdout(Stdio::null()),
        "the controller",
        Logs::Stderr,
    );
    wait_until("/readyz", Duration::from_secs(30), || {
        http("GET", &format!("http://{metrics_addr}/readyz"), None)
            .is_some_and(|(code, _)| code == 200)
    });

    let manifest = format!(
        "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: vault, namespace: {ns}}}\nspec:\n  region: {REGION}\n  containers:\n  - image: europe-docker.pkg.dev/{PROJECT}/apps/vault:v1\n  encryption:\n    kmsKey: {key}\n"
    );
    let condition = |type_: &str, field: &str| {
        jsonpath(
            plane,
            &ns,
            &format!("{{.status.conditions[?(@.type==\"{type_}\")].{field}}}"),
        )
    };
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest));
    wait_until("Ready after apply", Duration::from_secs(60), || {
        condition("Ready", "status") == "True"
    });
    assert_eq!(condition("EncryptionReady", "reason"), "KeyUsable");
    let agent = jsonpath(plane, &ns, "{.status.serviceAgent}");
    assert!(
        agent.ends_with("@serverless-robot-prod.iam.gserviceaccount.com"),
        "status.serviceAgent = {agent:?}"
    );

    // Someone disables the key's primary version.
    call("PATCH", &version, serde_json::json!({"state": "DISABLED"}));
    let took = wait_until("Ready=False", Duration::from_secs(20), || {
        condition("Ready", "status") == "False"
    });
    eprintln!("e2e-cmek: key disabled → kubectl shows Ready False after {took:?} (resync 3s)");
    let printed = plane.kubectl(&["get", "crsvc", "vault", "-n", &ns, "-o", "wide"]);
    let mut lines = printed
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    let (header, row) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| row.get(i).copied())
    };
    assert_eq!(
        (column("READY"), column("REASON")),
        (Some("False"), Some("KeyDisabled")),
        "kubectl get crsvc -o wide:\n{printed}"
    );
    assert_eq!(condition("EncryptionReady", "status"), "False");
    assert_eq!(condition("EncryptionReady", "reason"), "KeyDisabled");
    assert_eq!(condition("Ready", "reason"), "KeyDisabled");
    let events = plane.kubectl(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "reason=KeyDisabled,type=Warning",
    ]);
    assert!(events.contains("KeyDisabled"), "a Warning event: {events}");

    // Re-enabled: Ready again, without touching the spec.
    call("PATCH", &version, serde_json::json!({"state": "ENABLED"}));
    wait_until("Ready after re-enable", Duration::from_secs(30), || {
        condition("Ready", "status") == "True"
    });
    assert_eq!(condition("EncryptionReady", "reason"), "KeyUsable");

    plane.kubectl(&["delete", "crsvc", "vault", "-n", &ns, "--timeout=60s"]);
}

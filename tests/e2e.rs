//! End to end: the `runwarden` binary (controller and emulator as separate processes, as users
//! run them) against a real kube-apiserver + etcd, driven with kubectl.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::envtest::{self, ControlPlane};
use common::process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");

fn total(c: &serde_json::Map<String, serde_json::Value>) -> u64 {
    c.values().filter_map(|v| v.as_u64()).sum()
}

fn jsonpath(plane: &ControlPlane, ns: &str, path: &str) -> String {
    plane
        .try_kubectl(
            &[
                "get",
                "crsvc",
                "payments",
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
fn apply_edit_delete_through_kubectl() {
    let Some(plane) = envtest::shared() else {
        envtest::skip("apply_edit_delete_through_kubectl");
        return;
    };
    let (_emu, emulator) = start_emulator(BIN, "0s");

    let ns = format!("e2e-{}", fastrand::u32(..) % 100_000);
    plane.kubectl(&["create", "namespace", &ns]);
    plane.kubectl(&[
        "annotate",
        "namespace",
        &ns,
        "runwarden.dev/project-id=e2e-project",
    ]);
    let (mut controller, metrics_addr) = spawn_listening(
        Command::new(BIN)
            .args([
                "controller",
                "--gcp-endpoint",
                &emulator,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args([
                "--watch-namespace",
                &ns,
                "--resync",
                "4s",
                "--log-format",
                "json",
            ])
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdout(Stdio::null()),
        "the controller",
        Logs::Stderr,
    );
    let metrics = format!("http://{metrics_addr}");
    wait_until("/readyz", Duration::from_secs(30), || {
        http_get(&format!("{metrics}/readyz")).is_some_and(|(code, _)| code == 200)
    });

    let manifest = |image: &str| {
        format!(
            "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: payments, namespace: {ns}}}\nspec:\n  region: europe-west1\n  containers:\n  - image: {image}\n  access:\n    invokers: [\"group:frontend@example.com\"]\n"
        )
    };
    let ready = || {
        jsonpath(
            plane,
            &ns,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    };

    // apply → Ready with a URL.
    let started = Instant::now();
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&manifest(
            "europe-docker.pkg.dev/e2e-project/apps/payments:v1",
        )),
    );
    wait_until("Ready after apply", Duration::from_secs(60), ready);
    let to_ready = started.elapsed();
    let uri = jsonpath(plane, &ns, "{.status.uri}");
    assert!(uri.starts_with("https://"), "status.uri = {uri:?}");
    let create_calls = counters(&emulator);
    eprintln!(
        "e2e: kubectl apply → Ready in {:.2}s (operation delay 0, poll 1s); Google calls for one create: {} {create_calls:?}",
        to_ready.as_secs_f64(),
        total(&create_calls)
    );
    let printed = plane.kubectl(&["get", "crsvc", "-n", &ns]);
    assert!(
        printed.contains("READY") && printed.contains("URL") && printed.contains("Internal"),
        "print columns: {printed}"
    );

    // edit → a new revision, Ready again.
    let first_revision = jsonpath(plane, &ns, "{.status.latestReadyRevision}");
    reset_counters(&emulator);
    let started = Instant::now();
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&manifest(
            "europe-docker.pkg.dev/e2e-project/apps/payments:v2",
        )),
    );
    wait_until("a new revision", Duration::from_secs(60), || {
        let revision = jsonpath(plane, &ns, "{.status.latestReadyRevision}");
        !revision.is_empty() && revision != first_revision && ready()
    });
    let update_calls = counters(&emulator);
    eprintln!(
        "e2e: image edit → Ready on a new revision in {:.2}s; Google calls: {} {update_calls:?}",
        started.elapsed().as_secs_f64(),
        total(&update_calls)
    );
    assert_eq!(
        update_calls
            .get("run.services.patch")
            .and_then(|v| v.as_u64()),
        Some(1)
    );

    // A resync with nothing changed reads, and writes nothing.
    reset_counters(&emulator);
    wait_until("a resync", Duration::from_secs(20), || {
        counters(&emulator).get("run.services.get").is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    let resync_calls = counters(&emulator);
    eprintln!(
        "e2e: Google calls for one no-op resync: {} {resync_calls:?}",
        total(&resync_calls)
    );
    for write in [
        "run.services.create",
        "run.services.patch",
        "run.services.setIamPolicy",
    ] {
        assert!(
            !resync_calls.contains_key(write),
            "a no-op resync wrote: {resync_calls:?}"
        );
    }

    let (_, exposition) = http_get(&format!("{metrics}/metrics")).expect("metrics");
    assert!(
        exposition.contains("runwarden_reconciles_total{kind=\"CloudRunService\"}"),
        "{exposition}"
    );
    assert!(exposition.contains(
        "runwarden_gcp_requests_total{api=\"run\",method=\"services.create\",code=\"OK\"} 1"
    ));

    // delete → gone from Google.
    plane.kubectl(&["delete", "crsvc", "payments", "-n", &ns, "--timeout=60s"]);
    let (code, _) = http_get(&format!(
        "{emulator}/v2/projects/e2e-project/locations/europe-west1/services/payments"
    ))
    .expect("get");
    assert_eq!(code, 404, "the Cloud Run service must be deleted");

    // SIGTERM: a clean exit.
    let pid = controller.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = controller.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the controller did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

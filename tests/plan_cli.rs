//! `runwarden plan` as a user runs it: the binary, manifests from files, directories and stdin,
//! against the emulator (as a URL, so its counters can prove that plan never writes).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use runwarden_emulator::Emulator;

const NS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team
  annotations: {runwarden.dev/project-id: acme-team-prod}
---
";

fn service(extra: &str) -> String {
    format!(
        "{NS}apiVersion: runwarden.dev/v1alpha1
kind: CloudRunService
metadata: {{name: api, namespace: team}}
spec:
  region: europe-west1
  access: {{invokers: [\"group:fe@example.com\"]}}
  containers:
  - image: europe-docker.pkg.dev/acme-team-prod/apps/api@sha256:1111111111111111111111111111111111111111111111111111111111111111
{extra}"
    )
}

/// Runs `runwarden plan` with `args`, feeding `stdin`.
fn plan(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runwarden"))
        .arg("plan")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runwarden runs");
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("runwarden ends")
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn writes(emu: &Emulator) -> Vec<String> {
    emu.counters()
        .into_iter()
        .filter(|(k, _)| {
            k.ends_with(".create")
                || k.ends_with(".patch")
                || k.ends_with(".delete")
                || k.ends_with("setIamPolicy")
        })
        .map(|(k, _)| k)
        .collect()
}

async fn emulator() -> Emulator {
    Emulator::start("127.0.0.1:0", runwarden_emulator::Config::default())
        .await
        .expect("emulator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_plan_creates_and_waits_and_writes_nothing() {
    let emu = emulator().await;
    let (code, out, err) = text(&plan(
        &["-f", "examples/", "--gcp-endpoint", &emu.endpoint()],
        b"",
    ));
    assert_eq!(code, 2, "changes to make: {out}{err}");
    assert!(out.contains("+ vpcaccess.connectors.create"), "{out}");
    assert!(out.contains("! waits: KeyNotFound"), "{out}");
    assert!(
        out.contains("# audit: RunSecurityPolicy staging-baseline-audit"),
        "{out}"
    );
    assert!(
        out.ends_with("Plan: 5 to create, 1 to update, 0 in sync, 0 drifted, 4 waiting, 0 invalid, 0 violating, 0 failed.\n"),
        "{out}"
    );
    // The function from source: a build to submit, to the repository it is pushed to.
    assert!(
        out.contains("~ run.builds.submit\n      + image: europe-west1-docker.pkg.dev/acme-media-prod/functions/thumbnail"),
        "{out}"
    );
    assert_eq!(emu.count("run.builds.submit"), 0, "plan submits nothing");
    // The job waits for its key too, and shows what follows: the job with its token, its
    // executors (the schedule's account among them) and its Scheduler job.
    assert!(
        out.contains("CloudRunJob payments/settlement-export"),
        "{out}"
    );
    for call in [
        "+ run.jobs.create",
        "+ executionToken: runToken:backfill-2026-12-01",
        "+ serviceAccount:settlement-scheduler@acme-payments-prod.iam.gserviceaccount.com",
        "+ cloudscheduler.jobs.create",
    ] {
        assert!(out.contains(call), "{call} in {out}");
    }
    assert!(writes(&emu).is_empty(), "{:?}", emu.counters());
    assert!(emu.count("run.services.get") >= 3, "it did read Google");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_in_sync_drift_and_json() {
    common::crypto();
    let emu = emulator().await;
    // Deploy the service as the controller would, with the cluster's uid in its owner label.
    let metrics = Arc::new(runwarden::metrics::Metrics::default());
    let gcp = runwarden::gcp::google::connect(
        Some(&emu.endpoint()),
        common::anonymous(),
        metrics.clone(),
        &runwarden::gcp::google::ClientOptions::budgeted(Duration::from_secs(30), 600, 60, metrics),
    )
    .await
    .unwrap();
    let manifests =
        runwarden::manifest::load_reader("api.yaml", service("").as_bytes(), "default").unwrap();
    let mut obj = manifests.services[0].clone();
    obj.metadata.uid = Some("0b0e5ad0-cluster-uid".into());
    let numbers = runwarden::controller::context::ProjectNumbers::default();
    for _ in 0..3 {
        let input = runwarden::controller::cloudrunservice::plan::Input {
            obj: &obj,
            project: Some("acme-team-prod".into()),
            connector: None,
            policy: runwarden::controller::conditions::Cond::ok("PolicyCompliant", "NoPolicy", ""),
            identity: Ok(runwarden::gcp::identity::Identity::Controller),
            owners: &runwarden::controller::cloudrunservice::plan::NoOwners,
        };
        let (status, _) =
            runwarden::controller::cloudrunservice::pass(&input, &gcp, &numbers).await;
        obj.status = Some(status);
    }
    emu.reset_counters();

    let (code, out, err) = text(&plan(
        &["-f", "-", "--gcp-endpoint", &emu.endpoint()],
        service("").as_bytes(),
    ));
    assert_eq!(code, 0, "in sync: {out}{err}");
    assert!(out.contains("= in sync"), "{out}");
    assert!(out.contains("(<stdin>#2)"), "{out}");

    let drifted = service("  ingress: All\n");
    let (code, out, _) = text(&plan(
        &["-f", "-", "--gcp-endpoint", &emu.endpoint()],
        drifted.as_bytes(),
    ));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("~ run.services.patch"), "{out}");
    assert!(out.contains("~ ingress: InternalOnly → All"), "{out}");

    let (code, out, _) = text(&plan(
        &["-f", "-", "--gcp-endpoint", &emu.endpoint(), "-o", "json"],
        drifted.as_bytes(),
    ));
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["objects"][0]["action"], "update");
    assert_eq!(
        json["objects"][0]["calls"][0]["method"],
        "run.services.patch"
    );
    assert_eq!(
        json["objects"][0]["calls"][0]["fields"][0]["path"],
        "ingress"
    );
    assert!(writes(&emu).is_empty(), "{:?}", emu.counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_and_violations_exit_1() {
    let emu = emulator().await;
    let endpoint = emu.endpoint();
    let run = |stdin: &[u8]| text(&plan(&["-f", "-", "--gcp-endpoint", &endpoint], stdin));

    let (code, _, err) = run(service("  replicas: 3\n").as_bytes());
    assert_eq!(code, 1);
    assert!(err.contains("<stdin>#2: spec.replicas"), "{err}");

    let (code, out, _) = run(service("  scaling: {minInstances: 5, maxInstances: 2}\n").as_bytes());
    assert_eq!(code, 1);
    assert!(out.contains("! invalid: InvalidSpec"), "{out}");

    let policy = "---
apiVersion: runwarden.dev/v1alpha1
kind: RunSecurityPolicy
metadata: {name: cmek-everywhere}
spec: {enforcement: Enforce, requireCmek: true}
";
    let (code, out, _) = run(format!("{}{policy}", service("")).as_bytes());
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "! policy violation: Violation: RunSecurityPolicy cmek-everywhere: requireCmek"
        ),
        "{out}"
    );

    // Garbage never panics (Rust's panic exit code is 101).
    let mut seed = 7u64;
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..256)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect();
        let (code, _, err) = run(&bytes);
        assert_eq!(code, 1, "{err}");
    }
    let (code, out, _) = run(b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n");
    assert_eq!(code, 0, "an unknown kind is skipped: {out}");
    assert!(
        out.contains("skipped") || out.contains("Deployment"),
        "{out}"
    );
    assert!(writes(&emu).is_empty());
}

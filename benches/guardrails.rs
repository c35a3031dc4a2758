//! Guardrails benchmark: seconds from a RunSecurityPolicy change to the `PolicyCompliant`
//! condition of every affected CloudRunService flipping, with 1,000 services in 10 namespaces.
//! Run it with `cargo bench --bench guardrails`; it is not a test.
//!
//! Like `scale.rs`: the envtest control plane, the `runwarden emulator` process (operation delay
//! 0) and the `runwarden controller` process built with the `bench` profile. Once every service
//! is Ready, it times (1) an `Enforce` policy selecting the namespaces (→ `Violation`), (2) the
//! policy switched to `Audit` (→ `AuditViolation`), (3) the policy deleted (→ `NoPolicy`), each
//! until all services show the new reason. `RUNWARDEN_BENCH_OBJECTS` changes the count (default
//! 1000), always over 10 namespaces.

#[path = "../tests/common/envtest.rs"]
mod envtest;
#[path = "../tests/common/process.rs"]
mod process;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");
const NAMESPACES: usize = 10;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "benches/guardrails.rs: a benchmark; run it with `cargo bench --bench guardrails`"
        );
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let objects: usize = std::env::var("RUNWARDEN_BENCH_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let Some(plane) = envtest::shared() else {
        envtest::skip("guardrails benchmark");
        return;
    };
    let (_emu, emulator) = start_emulator(BIN, "0s");
    let run = std::process::id();
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("gr-{run}-{i}")).collect();
    for ns in &namespaces {
        plane.kubectl(&["create", "namespace", ns]);
        plane.kubectl(&[
            "annotate",
            "namespace",
            ns,
            "runwarden.dev/project-id=bench-project",
        ]);
        plane.kubectl(&["label", "namespace", ns, &format!("guardrails-bench={run}")]);
    }
    let (_controller, metrics_addr) = spawn_listening(
        Command::new(BIN)
            .args(["controller", "--gcp-endpoint", &emulator])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log-level", "warn,runwarden::listen=info"])
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdout(Stdio::null()),
        "the controller",
        Logs::Stderr,
    );
    let metrics = format!("http://{metrics_addr}");
    wait_until("/readyz", Duration::from_secs(30), || {
        http_get(&format!("{metrics}/readyz")).is_some_and(|(c, _)| c == 200)
    });

    let started = Instant::now();
    for (n, ns) in namespaces.iter().enumerate() {
        let docs: Vec<String> = (0..objects / NAMESPACES)
            .map(|i| {
                format!(
                    "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: svc-{n}-{i:03}, namespace: {ns}}}\nspec:\n  region: europe-west1\n  containers:\n  - image: europe-docker.pkg.dev/bench-project/apps/svc@sha256:1111111111111111111111111111111111111111111111111111111111111111\n"
                )
            })
            .collect();
        plane.kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            Some(&docs.join("---\n")),
        );
    }
    // Reasons of one condition type across every namespace of the run.
    let reasons = |type_: &str| -> Vec<String> {
        plane
            .try_kubectl(
                &[
                    "get",
                    "crsvc",
                    "-A",
                    "-o",
                    &format!(
                        "jsonpath={{range .items[*]}}{{.metadata.namespace}} {{.status.conditions[?(@.type==\"{type_}\")].reason}}{{\"\\n\"}}{{end}}"
                    ),
                ],
                None,
            )
            .map(|out| {
                out.lines()
                    .filter(|l| l.starts_with(&format!("gr-{run}-")))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = |type_: &str, reason: &str| {
        let r = reasons(type_);
        r.len() == objects && r.iter().all(|x| x == reason)
    };
    wait_until("every service Ready", Duration::from_secs(1800), || {
        all("Ready", "Ready")
    });
    eprintln!(
        "guardrails: {objects} services Ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let policy = format!("bench-{run}");
    let manifest = |enforcement: &str| {
        format!(
            "apiVersion: runwarden.dev/v1alpha1\nkind: RunSecurityPolicy\nmetadata: {{name: {policy}}}\nspec:\n  enforcement: {enforcement}\n  namespaceSelector: {{matchLabels: {{guardrails-bench: \"{run}\"}}}}\n  requireCmek: true\n"
        )
    };
    let mut rows = vec![];
    let mut step = |what: &str, action: &dyn Fn(), reason: &str| {
        let t = Instant::now();
        action();
        wait_until(what, Duration::from_secs(600), || {
            all("PolicyCompliant", reason)
        });
        rows.push((what.to_owned(), reason.to_owned(), t.elapsed()));
    };
    step(
        "Enforce policy created",
        &|| {
            plane.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest("Enforce")));
        },
        "Violation",
    );
    step(
        "policy switched to Audit",
        &|| {
            plane.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest("Audit")));
        },
        "AuditViolation",
    );
    step(
        "policy deleted",
        &|| {
            plane.kubectl(&["delete", "runsecuritypolicy", &policy]);
        },
        "NoPolicy",
    );
    println!();
    println!(
        "runwarden guardrails benchmark: {objects} CloudRunServices in {NAMESPACES} namespaces (controller built with the bench profile)"
    );
    println!();
    println!("| change | every service's PolicyCompliant | after |");
    println!("|---|---|---|");
    for (what, reason, took) in rows {
        println!("| {what} | {reason} | {:.1}s |", took.as_secs_f64());
    }
}

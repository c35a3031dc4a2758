//! Tenancy benchmark: what per-namespace Google identities cost. Run it with
//! `cargo bench --bench tenancy`; it is not a test (it only runs when Cargo passes `--bench`).
//!
//! On one envtest API server and one `runwarden emulator` (operation delay 0), it reconciles the
//! same `RUNWARDEN_BENCH_SERVICES` CloudRunServices (default 100) spread over
//! `RUNWARDEN_BENCH_IDENTITIES` namespaces (default 50) twice, each time with a fresh controller
//! process that selects only that run's objects (`--watch-selector`):
//! 1. `shared`: the namespaces name no identity; every call is made as the controller;
//! 2. `tenants`: each namespace is annotated with its own service account (granted
//!    `roles/run.admin` and `roles/iam.serviceAccountUser` on the project in the emulator), and
//!    the controller runs with `--require-namespace-identity`: every call of a namespace is made
//!    with a token the controller obtained for that account through `generateAccessToken`.
//!
//! It prints, per run, the time until all are Ready, Google calls per create (the emulator's
//! counters), token calls, and the controller's RSS once all are Ready; the difference of the
//! two RSS figures is the memory of the identities' client sets.

#[path = "../tests/common/envtest.rs"]
mod envtest;
#[path = "../tests/common/process.rs"]
mod process;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");
const PROJECT: &str = "tenancy-bench";

fn account(i: usize) -> String {
    format!("team-{i:03}@{PROJECT}.iam.gserviceaccount.com")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    name: &'static str,
    ready_after: Duration,
    calls_per_create: f64,
    token_calls: f64,
    rss: f64,
}

/// Namespaces `{run}-{i}` (annotated with account `i` when `identities`), `services` objects
/// spread over them, a controller selecting `run={run}`; measured until all are Ready.
fn run(
    plane: &envtest::ControlPlane,
    emulator: &str,
    name: &'static str,
    namespaces: usize,
    services: usize,
    identities: bool,
) -> Run {
    let mut docs = vec![];
    for i in 0..namespaces {
        let mut annotations = format!("    runwarden.dev/project-id: {PROJECT}\n");
        if identities {
            annotations += &format!("    runwarden.dev/google-service-account: {}\n", account(i));
        }
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}-{i}\n  annotations:\n{annotations}"
        ));
    }
    plane.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&docs.join("---\n")),
    );
    let mut controller = Command::new(BIN);
    controller
        .args(["controller", "--gcp-endpoint", emulator])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--watch-selector",
            &format!("run={name}"),
        ])
        .args([
            "--log-level",
            "warn,runwarden::listen=info",
            "--log-format",
            "json",
        ])
        .args([
            "--quota-run-reads-per-minute",
            "0",
            "--quota-run-writes-per-minute",
            "0",
        ])
        .env("KUBECONFIG", &plane.kubeconfig)
        .stdout(Stdio::null());
    if identities {
        controller.arg("--require-namespace-identity");
    }
    let (_controller, addr) = spawn_listening(&mut controller, "the controller", Logs::Stderr);
    let metrics = format!("http://{addr}");
    wait_until("/readyz", Duration::from_secs(60), || {
        http_get(&format!("{metrics}/readyz")).is_some_and(|(c, _)| c == 200)
    });
    reset_counters(emulator);
    let start = Instant::now();
    let objects: Vec<String> = (0..services)
        .map(|i| {
            format!(
                "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata:\n  name: {name}-{i}\n  namespace: {name}-{}\n  labels:\n    run: {name}\nspec:\n  region: europe-west1\n  containers:\n  - image: europe-docker.pkg.dev/p/apps/api:1\n",
                i % namespaces
            )
        })
        .collect();
    plane.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&objects.join("---\n")),
    );
    let selector = format!("run={name}");
    let ready = || {
        plane
            .kubectl(&[
                "get",
                "crsvc",
                "-A",
                "-l",
                &selector,
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ])
            .lines()
            .filter(|l| *l == "True")
            .count()
    };
    wait_until(
        &format!("{services} services Ready ({name})"),
        Duration::from_secs(600),
        || ready() >= services,
    );
    let ready_after = start.elapsed();
    // Let in-flight work settle before counting and measuring.
    std::thread::sleep(Duration::from_secs(3));
    let calls: u64 = counters(emulator)
        .iter()
        .filter(|(k, _)| k.starts_with("run."))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    Run {
        name,
        ready_after,
        calls_per_create: calls as f64 / services as f64,
        token_calls: metric_sum(
            &metrics,
            "runwarden_gcp_requests_total",
            &["api=\"iamcredentials\""],
        )
        .unwrap_or(0.0),
        rss: metric_sum(&metrics, "process_resident_memory_bytes", &[]).unwrap_or(0.0),
    }
}

/// Grants every team account what it needs on the project, as an (anonymous) admin.
fn grant(emulator: &str, identities: usize) {
    let members: Vec<String> = (0..identities)
        .map(|i| format!("serviceAccount:{}", account(i)))
        .collect();
    let policy = serde_json::json!({"policy": {"bindings": [
        {"role": "roles/run.admin", "members": members},
        {"role": "roles/iam.serviceAccountUser", "members": members},
    ]}});
    let (code, body) = http(
        "POST",
        &format!("{emulator}/v3/projects/{PROJECT}:setIamPolicy"),
        Some(policy),
    )
    .expect("setIamPolicy");
    assert_eq!(code, 200, "setIamPolicy: {body}");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/tenancy.rs: a benchmark; run it with `cargo bench --bench tenancy`");
        return;
    }
    let identities = env_usize("RUNWARDEN_BENCH_IDENTITIES", 50);
    let services = env_usize("RUNWARDEN_BENCH_SERVICES", 100);
    let Some(plane) = envtest::own() else {
        envtest::skip("benches/tenancy.rs");
        return;
    };
    let (_emu, emulator) = start_emulator(BIN, "0s");
    grant(&emulator, identities);
    let runs = [
        run(&plane, &emulator, "shared", identities, services, false),
        run(&plane, &emulator, "tenants", identities, services, true),
    ];
    println!(
        "\n{services} CloudRunServices over {identities} namespaces\n\n| run | all Ready after | Cloud Run calls per create | token calls | RSS at Ready |\n|---|---|---|---|---|"
    );
    for r in &runs {
        println!(
            "| {} | {:.1}s | {:.2} | {} | {:.1} MiB |",
            r.name,
            r.ready_after.as_secs_f64(),
            r.calls_per_create,
            r.token_calls as u64,
            r.rss / (1024.0 * 1024.0)
        );
    }
    let delta = runs[1].rss - runs[0].rss;
    println!(
        "\n{identities} identities: {:+.1} MiB RSS ({:+.0} KiB each), {:.2} token calls per service",
        delta / (1024.0 * 1024.0),
        delta / 1024.0 / identities as f64,
        runs[1].token_calls / services as f64
    );
}

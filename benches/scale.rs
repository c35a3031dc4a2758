//! Scale benchmark: memory of the controller idle and with 1,000 CloudRunServices, time until
//! all are Ready, and Google calls made. Run it with `cargo bench --bench scale`; it is not a
//! test (it only runs when Cargo passes `--bench`).
//!
//! It starts the envtest control plane (`tests/common/envtest.rs`), the `runwarden emulator`
//! process with operation delay 0, and the `runwarden controller` process built by `cargo bench`,
//! that is with the `bench` profile (optimized, like `--release`). RSS is read from the
//! controller's own `/metrics` (`process_resident_memory_bytes`) and its peak from
//! `/proc/PID/status` (`VmHWM`). Objects are applied with `kubectl apply --server-side` in batches
//! of `BATCH`. Set `RUNWARDEN_BENCH_OBJECTS` to change the count (default 1000).

#[path = "../tests/common/envtest.rs"]
mod envtest;
#[path = "../tests/common/process.rs"]
mod process;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");
const BATCH: usize = 100;

/// `process_resident_memory_bytes` from the controller's /metrics.
fn rss(metrics: &str) -> u64 {
    let (_, text) = http_get(&format!("{metrics}/metrics")).expect("/metrics");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("process_resident_memory_bytes ")?
                .parse()
                .ok()
        })
        .expect("process_resident_memory_bytes")
}

/// A `Vm*` line of /proc/PID/status, in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .strip_suffix(" kB")?
                    .parse::<u64>()
                    .ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/scale.rs: a benchmark; run it with `cargo bench --bench scale`");
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let objects: usize = std::env::var("RUNWARDEN_BENCH_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let Some(plane) = envtest::shared() else {
        envtest::skip("scale benchmark");
        return;
    };

    let emu_port = free_port();
    let emulator = format!("http://127.0.0.1:{emu_port}");
    let _emu = Proc(
        Command::new(BIN)
            .args(["emulator", "--listen", &format!("127.0.0.1:{emu_port}")])
            .args(["--operation-delay", "0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator"),
    );
    wait_until("the emulator", Duration::from_secs(20), || {
        http_get(&format!("{emulator}/emulator/v1/healthz")).is_some()
    });

    let ns = format!("scale-{}", std::process::id());
    plane.kubectl(&["create", "namespace", &ns]);
    plane.kubectl(&[
        "annotate",
        "namespace",
        &ns,
        "runwarden.dev/project-id=scale-project",
    ]);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("http://{metrics_addr}");
    let controller = Proc(
        Command::new(BIN)
            .args(["controller", "--gcp-endpoint", &emulator])
            .args(["--metrics-addr", &metrics_addr, "--watch-namespace", &ns])
            .args(["--log-level", "warn"])
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("controller"),
    );
    let pid = controller.0.id();
    wait_until("/readyz", Duration::from_secs(30), || {
        http_get(&format!("{metrics}/readyz")).is_some_and(|(c, _)| c == 200)
    });
    std::thread::sleep(Duration::from_secs(5));
    let rss_idle = rss(&metrics);

    let started = Instant::now();
    let manifest = |i: usize| {
        format!(
            "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: svc-{i:04}, namespace: {ns}}}\nspec:\n  region: europe-west1\n  containers:\n  - image: europe-docker.pkg.dev/scale-project/apps/svc-{i:04}:v1\n  access:\n    invokers: [\"group:frontend@example.com\"]\n"
        )
    };
    for first in (0..objects).step_by(BATCH) {
        let docs: Vec<String> = (first..(first + BATCH).min(objects))
            .map(manifest)
            .collect();
        plane.kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            Some(&docs.join("---\n")),
        );
    }
    let applied = started.elapsed();
    let mut last_print = Instant::now();
    let ready_count = || {
        plane
            .try_kubectl(
                &[
                    "get",
                    "crsvc",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ],
                None,
            )
            .map(|out| out.lines().filter(|l| *l == "True").count())
            .unwrap_or(0)
    };
    wait_until(
        &format!("{objects} CloudRunServices Ready"),
        Duration::from_secs(1800),
        || {
            let n = ready_count();
            if last_print.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "scale: {n}/{objects} Ready after {:.0}s",
                    started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            n == objects
        },
    );
    let to_ready = started.elapsed();
    let rss_busy_end = rss(&metrics);
    let peak = proc_status(pid, "VmHWM");
    // Settled: every object Ready, no operation in flight, the work queue drained.
    std::thread::sleep(Duration::from_secs(10));
    let rss_settled = rss(&metrics);
    let calls = counters(&emulator);
    let total: u64 = calls.values().filter_map(|v| v.as_u64()).sum();
    let get = |k: &str| calls.get(k).and_then(|v| v.as_u64()).unwrap_or(0);

    println!();
    println!(
        "runwarden scale benchmark (controller built with the `bench` profile, i.e. optimized;"
    );
    println!("emulator operation delay 0, --operation-poll 1s, --concurrency 16, one namespace)");
    println!();
    println!(
        "| objects | applied in | all Ready after | RSS idle | RSS at all Ready | RSS settled (+10s) | peak RSS (VmHWM) | Google calls |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {objects} | {:.1}s | {:.1}s | {} | {} | {} | {} | {total} |",
        applied.as_secs_f64(),
        to_ready.as_secs_f64(),
        mib(rss_idle),
        mib(rss_busy_end),
        mib(rss_settled),
        mib(peak),
    );
    println!();
    println!(
        "Google calls: {:.2} per object; services.create {}, services.patch {}, services.get {}, operations.get {}, getIamPolicy {}, setIamPolicy {}",
        total as f64 / objects as f64,
        get("run.services.create"),
        get("run.services.patch"),
        get("run.services.get"),
        get("run.operations.get"),
        get("run.services.getIamPolicy"),
        get("run.services.setIamPolicy"),
    );
    println!("all calls: {calls:?}");
    drop(controller);
}

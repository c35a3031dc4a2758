//! Scale benchmark (issue 14): one table for several sizes of CloudRunServices — time from
//! `kubectl apply` to all Ready, create→Ready p50/p99, RSS, Google calls per create, reads per
//! no-op resync, calls per restart, and 429s. Run it with `cargo bench --bench scale`; it is not
//! a test (it only runs when Cargo passes `--bench`).
//!
//! Each size gets a fresh envtest control plane, a `runwarden emulator` process (operation delay
//! 0) and `runwarden controller` processes built with the `bench` profile (optimized), started
//! with their real flags. Services are spread over projects of at most 1,000 (`spec.projectId`
//! `scale-p00`, `scale-p01`, ...: Cloud Run allows 1,000 services per project and region), all
//! in europe-west1, one namespace, applied with `kubectl apply --server-side` in batches of 100.
//!
//! Per size:
//! 1. controller #1 (`--resync 10m`): apply all; **create→Ready** is measured per object by a
//!    watch in this process (first seen → first seen Ready); **RSS** from the controller's
//!    `/metrics` (`process_resident_memory_bytes`) when all are Ready and after the calls stop,
//!    **peak** from `/proc/PID/status` `VmHWM`; **calls per create** = the emulator's counters / N.
//! 2. SIGKILL it, reset the counters, start controller #2 with a short `--resync`: **calls per
//!    restart** = the calls until the counters stay still for 5 s, / N.
//! 3. Reset the counters, wait for N more reconciles (`runwarden_reconciles_total`): **reads
//!    per no-op resync** = reads / reconciles (every one of them is a resync that changes nothing).
//!
//! `429s` are the `RESOURCE_EXHAUSTED` answers the controllers counted
//! (`runwarden_gcp_requests_total`), plus the emulator's own count when it keeps one.
//!
//! Environment:
//! - `RUNWARDEN_BENCH_SIZES` (default `1000,5000,10000`; `RUNWARDEN_BENCH_OBJECTS=N` alone means
//!   one size N);
//! - `RUNWARDEN_BENCH_QUOTA=reads,writes` (e.g. `600,60`): the quota mode. The controller gets
//!   `--quota-run-reads-per-minute reads --quota-run-writes-per-minute writes` (otherwise
//!   1000000 each, i.e. unthrottled), the emulator the same per-minute quotas through
//!   `/emulator/v1/config` (`runReadsPerMinute`, `runWritesPerMinute`), and the table reports the time to converge against the
//!   quota-bound minimum: for each project and region, the whole minutes the successful reads
//!   and writes need at their per-minute quotas after the first minute's burst
//!   (`ceil(calls / quota) - 1`), the larger of the two (steps 2 and 3 are skipped).

#[path = "../tests/common/envtest.rs"]
mod envtest;
#[path = "../tests/common/process.rs"]
mod process;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use process::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");
const BATCH: usize = 100;
const PER_PROJECT: usize = 1000;
const REGION: &str = "europe-west1";
const UNTHROTTLED: u32 = 1_000_000;

/// `runwarden_gcp_requests_total` by method for one status code.
fn calls_by_code(metrics: &str, code: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Some((_, text)) = http_get(&format!("{metrics}/metrics")) else {
        return out;
    };
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("runwarden_gcp_requests_total{") else {
            continue;
        };
        let Some((lbls, value)) = rest.split_once("} ") else {
            continue;
        };
        if !lbls.contains(&format!("code=\"{code}\"")) {
            continue;
        }
        let label = |k: &str| {
            lbls.split(',')
                .find_map(|p| p.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        *out.entry(format!("{}.{}", label("api"), label("method")))
            .or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    }
    out
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

fn total(c: &serde_json::Map<String, Value>) -> u64 {
    c.values().filter_map(Value::as_u64).sum()
}

fn is_write(method: &str) -> bool {
    [".create", ".patch", ".delete", "setIamPolicy"]
        .iter()
        .any(|w| method.ends_with(w))
}

/// Read calls (every method that is not a write) among counters.
fn reads(c: &serde_json::Map<String, Value>) -> u64 {
    c.iter()
        .filter(|(k, _)| !is_write(k))
        .filter_map(|(_, v)| v.as_u64())
        .sum()
}

/// Polls the emulator's counters every second until they stay still for `still`; the total.
fn until_quiet(emulator: &str, still: Duration, limit: Duration) -> u64 {
    let start = Instant::now();
    let mut last = total(&counters(emulator));
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = total(&counters(emulator));
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= still && (now > 0 || start.elapsed() > still * 4) {
            return now;
        }
        if start.elapsed() > limit {
            eprintln!("scale: calls still going after {limit:?}");
            return now;
        }
    }
}

/// Sets the emulator's Cloud Run quotas (`runReadsPerMinute`, `runWritesPerMinute` of
/// `/emulator/v1/config`); whether its config shows them afterwards.
fn set_emulator_quota(emulator: &str, reads: u32, writes: u32) -> bool {
    let body = json!({"runReadsPerMinute": reads, "runWritesPerMinute": writes});
    let ok = http(
        "PUT",
        &format!("{emulator}/emulator/v1/config"),
        Some(body.clone()),
    )
    .is_some_and(|(c, _)| c == 200);
    let (_, after) = http_get(&format!("{emulator}/emulator/v1/config")).unwrap_or_default();
    let after: Value = serde_json::from_str(&after).unwrap_or_default();
    let set = ok
        && after["runReadsPerMinute"].as_u64() == Some(u64::from(reads))
        && after["runWritesPerMinute"].as_u64() == Some(u64::from(writes));
    eprintln!("scale: emulator quotas {body} set: {set}");
    set
}

/// The emulator's own count of 429s, when one of its counters says so.
fn emulator_429s(c: &serde_json::Map<String, Value>) -> Option<u64> {
    let keys: Vec<&String> = c
        .keys()
        .filter(|k| {
            let k = k.to_lowercase();
            k.contains("429") || k.contains("exhausted") || k.contains("quota")
        })
        .collect();
    (!keys.is_empty()).then(|| keys.iter().filter_map(|k| c[*k].as_u64()).sum())
}

/// When each CloudRunService was first seen and first seen Ready, by a watch of the namespace.
type Seen = Arc<Mutex<HashMap<String, (Instant, Option<Instant>)>>>;

fn watch(plane: &'static envtest::ControlPlane, ns: String, seen: Seen) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use futures::StreamExt;
            use kube::runtime::watcher;
            use runwarden::api::v1alpha1::CloudRunService;
            let client = plane.client().await;
            let api: kube::Api<CloudRunService> = kube::Api::namespaced(client, &ns);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let objs = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                    _ => continue,
                };
                let now = Instant::now();
                let mut seen = seen.lock().unwrap();
                for o in objs {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let ready = runwarden::controller::cloudrunservice::is_ready(&o) == Some(true);
                    let e = seen.entry(name).or_insert((now, None));
                    if ready && e.1.is_none() {
                        e.1 = Some(now);
                    }
                }
            }
        });
    });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

struct Controller {
    proc: Proc,
    metrics: String,
}

fn start_controller(
    plane: &envtest::ControlPlane,
    emulator: &str,
    ns: &str,
    resync: &str,
    quota: (u32, u32),
) -> Controller {
    let (proc, addr) = spawn_listening(
        Command::new(BIN)
            .args(["controller", "--gcp-endpoint", emulator])
            .args(["--metrics-addr", "127.0.0.1:0", "--watch-namespace", ns])
            .args(["--resync", resync, "--operation-poll", "1s"])
            .args(["--concurrency", "16", "--log-format", "json"])
            .args(["--log-level", "warn,runwarden::listen=info"])
            .args(["--quota-run-reads-per-minute", &quota.0.to_string()])
            .args(["--quota-run-writes-per-minute", &quota.1.to_string()])
            .env("KUBECONFIG", &plane.kubeconfig)
            .stdout(Stdio::null()),
        "the controller",
        Logs::Stderr,
    );
    let metrics = format!("http://{addr}");
    wait_until("/readyz", Duration::from_secs(60), || {
        http_get(&format!("{metrics}/readyz")).is_some_and(|(c, _)| c == 200)
    });
    Controller { proc, metrics }
}

/// One row of the table.
#[derive(Default)]
struct Row {
    n: usize,
    applied: f64,
    all_ready: f64,
    p50: f64,
    p99: f64,
    rss_idle: u64,
    rss_ready: u64,
    rss_settled: u64,
    peak: u64,
    per_create: f64,
    reads_per_resync: Option<f64>,
    per_restart: Option<f64>,
    resync: String,
    e429: u64,
    quota_min: Option<f64>,
    emulator_quota: Option<bool>,
    breakdown: String,
}

fn run_size(n: usize, quota: Option<(u32, u32)>) -> Option<Row> {
    let plane: &'static envtest::ControlPlane = Box::leak(Box::new(envtest::own()?));
    let (_emu, emulator) = start_emulator(BIN, "0s");
    let limits = quota.unwrap_or((UNTHROTTLED, UNTHROTTLED));
    let mut row = Row {
        n,
        ..Row::default()
    };
    if let Some((r, w)) = quota {
        row.emulator_quota = Some(set_emulator_quota(&emulator, r, w));
    }
    let ns = "scale".to_string();
    plane.kubectl(&["create", "namespace", &ns]);
    let seen: Seen = Arc::default();
    watch(plane, ns.clone(), seen.clone());

    let c1 = start_controller(plane, &emulator, &ns, "10m", limits);
    let pid = c1.proc.0.id();
    std::thread::sleep(Duration::from_secs(3));
    row.rss_idle =
        metric_sum(&c1.metrics, "process_resident_memory_bytes", &[]).unwrap_or(0.0) as u64;

    let started = Instant::now();
    let manifest = |i: usize| {
        format!(
            "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: svc-{i:05}, namespace: {ns}}}\nspec:\n  projectId: scale-p{:02}\n  region: {REGION}\n  containers:\n  - image: europe-docker.pkg.dev/scale-project/apps/svc-{i:05}:v1\n  access:\n    invokers: [\"group:frontend@example.com\"]\n",
            i / PER_PROJECT
        )
    };
    for first in (0..n).step_by(BATCH) {
        let docs: Vec<String> = (first..(first + BATCH).min(n)).map(manifest).collect();
        plane.kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            Some(&docs.join("---\n")),
        );
    }
    row.applied = started.elapsed().as_secs_f64();
    let ready_count = || {
        seen.lock()
            .unwrap()
            .values()
            .filter(|(_, r)| r.is_some())
            .count()
    };
    let mut last_print = Instant::now();
    let timeout = Duration::from_secs(1800 + n as u64 / 2)
        + quota.map_or(Duration::ZERO, |(_, w)| {
            // Two writes per create at the write quota, three times over.
            Duration::from_secs(6 * 60 * n as u64 / u64::from(w.max(1)))
        });
    wait_until(&format!("{n} CloudRunServices Ready"), timeout, || {
        let r = ready_count();
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "scale: {n}: {r}/{n} Ready after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        r >= n
    });
    row.all_ready = started.elapsed().as_secs_f64();
    row.rss_ready =
        metric_sum(&c1.metrics, "process_resident_memory_bytes", &[]).unwrap_or(0.0) as u64;
    let mut latencies: Vec<f64> = seen
        .lock()
        .unwrap()
        .values()
        .filter_map(|(s, r)| Some(r.as_ref()?.duration_since(*s).as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    row.p50 = percentile(&latencies, 50.0);
    row.p99 = percentile(&latencies, 99.0);
    until_quiet(&emulator, Duration::from_secs(5), Duration::from_secs(300));
    row.rss_settled =
        metric_sum(&c1.metrics, "process_resident_memory_bytes", &[]).unwrap_or(0.0) as u64;
    row.peak = proc_status(pid, "VmHWM");
    let calls = counters(&emulator);
    row.per_create = total(&calls) as f64 / n as f64;
    row.e429 = metric_sum(
        &c1.metrics,
        "runwarden_gcp_requests_total",
        &["code=\"RESOURCE_EXHAUSTED\""],
    )
    .unwrap_or(0.0) as u64;
    let per_method = |c: &serde_json::Map<String, Value>| {
        c.iter()
            .map(|(k, v)| format!("{} {}", k.trim_start_matches("run."), v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row.breakdown = format!("create: {}", per_method(&calls));
    if let Some((r, w)) = quota {
        // The calls the convergence needed: the successful ones, per project and region.
        let ok = calls_by_code(&c1.metrics, "OK");
        let ok_reads: u64 = ok
            .iter()
            .filter(|(k, _)| !is_write(k))
            .map(|(_, v)| v)
            .sum();
        let ok_writes: u64 = ok.iter().filter(|(k, _)| is_write(k)).map(|(_, v)| v).sum();
        let buckets = n.div_ceil(PER_PROJECT) as f64;
        // A quota of N per minute lets N calls through at once, then N more each minute: C calls
        // need at least ceil(C / N) - 1 whole minutes after the first.
        let windows = |calls: u64, quota: u32| {
            ((calls as f64 / buckets / f64::from(quota)).ceil() - 1.0).max(0.0)
        };
        let minutes = windows(ok_reads, r).max(windows(ok_writes, w));
        row.quota_min = Some(minutes * 60.0);
        row.breakdown +=
            &format!("; successful reads {ok_reads}, writes {ok_writes} over {buckets} project(s)");
        if let Some(e) = emulator_429s(&calls) {
            row.e429 = row.e429.max(e);
        }
        drop(c1);
        return Some(row);
    }
    drop(c1); // SIGKILL

    // Restart: calls until quiet. The resync is long enough not to start within it.
    let resync_secs = 30 + 30 * (n as u64).div_ceil(1000);
    row.resync = format!("{resync_secs}s");
    reset_counters(&emulator);
    let c2 = start_controller(plane, &emulator, &ns, &row.resync, limits);
    let restart_calls = until_quiet(&emulator, Duration::from_secs(5), Duration::from_secs(600));
    row.per_restart = Some(restart_calls as f64 / n as f64);
    row.breakdown += &format!("; restart: {}", per_method(&counters(&emulator)));

    // No-op resyncs: reads per reconcile over one round of N.
    reset_counters(&emulator);
    let reconciles = |m: &str| {
        metric_sum(
            m,
            "runwarden_reconciles_total",
            &["kind=\"CloudRunService\""],
        )
        .unwrap_or(0.0)
    };
    let before = reconciles(&c2.metrics);
    let window = Instant::now();
    while reconciles(&c2.metrics) - before < n as f64
        && window.elapsed() < Duration::from_secs(resync_secs * 3)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    let resyncs = reconciles(&c2.metrics) - before;
    let c = counters(&emulator);
    row.reads_per_resync = (resyncs > 0.0).then(|| reads(&c) as f64 / resyncs);
    row.breakdown += &format!(
        "; resync window {:.0}s, {resyncs} reconciles: {}",
        window.elapsed().as_secs_f64(),
        per_method(&c)
    );
    row.e429 += metric_sum(
        &c2.metrics,
        "runwarden_gcp_requests_total",
        &["code=\"RESOURCE_EXHAUSTED\""],
    )
    .unwrap_or(0.0) as u64;
    if let Some(e) = emulator_429s(&counters(&emulator)) {
        row.e429 = row.e429.max(e);
    }
    Some(row)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/scale.rs: a benchmark; run it with `cargo bench --bench scale`");
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sizes: Vec<usize> = std::env::var("RUNWARDEN_BENCH_SIZES")
        .ok()
        .or_else(|| std::env::var("RUNWARDEN_BENCH_OBJECTS").ok())
        .unwrap_or_else(|| "1000,5000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let quota: Option<(u32, u32)> = std::env::var("RUNWARDEN_BENCH_QUOTA").ok().and_then(|q| {
        let (r, w) = q.split_once(',')?;
        Some((r.trim().parse().ok()?, w.trim().parse().ok()?))
    });
    let mut rows = Vec::new();
    for &n in &sizes {
        eprintln!("scale: {n} services: fresh control plane, emulator and controller");
        let Some(row) = run_size(n, quota) else {
            envtest::skip("scale benchmark");
            return;
        };
        rows.push(row);
    }

    println!();
    println!(
        "runwarden scale benchmark (controller built with the `bench` profile; emulator operation delay 0;"
    );
    println!(
        "--operation-poll 1s, --concurrency 16; one namespace; at most 1,000 services per project; {})",
        match quota {
            Some((r, w)) => format!(
                "quota mode: --quota-run-reads-per-minute {r} --quota-run-writes-per-minute {w}"
            ),
            None => format!("quotas {UNTHROTTLED}/min, i.e. unthrottled"),
        }
    );
    println!();
    if quota.is_some() {
        println!(
            "| services | applied in | all Ready after | quota-bound minimum | ratio | create→Ready p50 | p99 | RSS at Ready | peak RSS | calls/create | 429s | emulator quotas |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            let min = r.quota_min.unwrap_or(f64::NAN);
            println!(
                "| {} | {:.1}s | {:.1}s | {:.1}s | {:.2} | {:.2}s | {:.2}s | {} | {} | {:.2} | {} | {} |",
                r.n,
                r.applied,
                r.all_ready,
                min,
                r.all_ready / min,
                r.p50,
                r.p99,
                mib(r.rss_ready),
                mib(r.peak),
                r.per_create,
                r.e429,
                if r.emulator_quota == Some(true) {
                    "on"
                } else {
                    "NOT SET (the emulator refused the config)"
                }
            );
        }
        if rows
            .iter()
            .any(|r| r.all_ready < r.quota_min.unwrap_or(0.0))
        {
            println!();
            println!(
                "ratio < 1: converged faster than the quotas allow, so neither the controller's budget nor the emulator enforced them"
            );
        }
    } else {
        println!(
            "| services | applied in | all Ready after | create→Ready p50 | p99 | RSS idle | RSS at Ready | RSS settled | peak RSS | calls/create | reads/no-op resync | calls/restart | 429s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {:.1}s | {:.1}s | {:.2}s | {:.2}s | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                r.n,
                r.applied,
                r.all_ready,
                r.p50,
                r.p99,
                mib(r.rss_idle),
                mib(r.rss_ready),
                mib(r.rss_settled),
                mib(r.peak),
                r.per_create,
                r.reads_per_resync
                    .map_or("-".into(), |v| format!("{v:.2} (--resync {})", r.resync)),
                r.per_restart.map_or("-".into(), |v| format!("{v:.2}")),
                r.e429,
            );
        }
    }
    println!();
    for r in &rows {
        println!("{}: {}", r.n, r.breakdown);
    }
}

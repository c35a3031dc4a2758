//! Scale benchmark (issues 14 and 19): one table for several sizes of CloudRunServices and
//! CloudRunJobs with schedules, a row per kind — time from `kubectl apply` to all Ready,
//! create→Ready p50/p99, RSS, Google calls per create, reads per no-op resync, calls per restart,
//! and 429s — and a row for the whole run. Run it with `cargo bench --bench scale`; it is not a
//! test (it only runs when Cargo passes `--bench`).
//!
//! Each size gets a fresh envtest control plane, a `runwarden emulator` process (operation delay
//! 0) and `runwarden controller` processes built with the `bench` profile (optimized), started
//! with their real flags. Each size applies N objects of each kind (`RUNWARDEN_BENCH_KINDS`,
//! default `services,jobs`) into one namespace, spread over projects of at most 1,000 per kind
//! (`spec.projectId` `scale-p00`, `scale-p01`, ...: Cloud Run allows 1,000 services and 1,000
//! jobs per project and region), all in europe-west1, with `kubectl apply --server-side` in
//! batches of 100. A CloudRunService has one container and an invoker; a CloudRunJob one
//! container, an executor and a schedule (`0 3 * * *`, its own scheduler service account), so a
//! job's create is the job, its IAM policy and its Cloud Scheduler job.
//!
//! Per size:
//! 1. controller #1 (`--resync 10m`): for each kind in turn, reset the emulator's counters, apply
//!    N, and wait for all of them Ready (the `Ready` condition True for the object's generation:
//!    `is_ready` of the kind's controller); **create→Ready** is measured per object by a watch in
//!    this process (first seen → first seen Ready); **RSS** from the controller's `/metrics`
//!    (`process_resident_memory_bytes`) when all are Ready and after the calls stop, **peak** from
//!    `/proc/PID/status` `VmHWM`; **calls per create** = the emulator's counters / N, less the
//!    calls only another kind makes (`run.services.*` for jobs; `run.jobs.*`, `run.executions.*`,
//!    `run.tasks.*`, `cloudscheduler.*` for services). The kinds go one after the other so that
//!    the calls both make (`run.operations.get`, ...) are the phase's kind's; a later kind's RSS
//!    is with the earlier kinds' objects Ready too.
//! 2. SIGKILL it, reset the counters, start controller #2 with a short `--resync`: **calls per
//!    restart** = the calls until the counters stay still for 5 s, / N (per kind: the calls only
//!    that kind makes; the `all` row: every call / all objects); **restart peak** = its `VmHWM`
//!    then (the re-list of every object and a pass over each, with the objects present).
//! 3. Reset the counters, wait for N more reconciles of each kind
//!    (`runwarden_reconciles_total{kind}`): **reads per no-op resync** = reads / reconciles (every
//!    one of them is a resync that changes nothing; per kind as in 2); **RSS after resync** its
//!    RSS then, with its `VmHWM` (over the restart and the resync) in brackets.
//!
//! While a kind is not all Ready, a progress line every 15 s shows the most common `Ready`
//! conditions of the others and the calls so far; no object becoming Ready for 5 minutes
//! (10 in quota mode) ends the run with them.
//!
//! `429s` are the `RESOURCE_EXHAUSTED` answers the controllers counted
//! (`runwarden_gcp_requests_total`), plus the emulator's own count when it keeps one.
//!
//! Environment:
//! - `RUNWARDEN_BENCH_SIZES` (default `1000,5000,10000`; `RUNWARDEN_BENCH_OBJECTS=N` alone means
//!   one size N), the objects of each kind;
//! - `RUNWARDEN_BENCH_KINDS` (default `services,jobs`; `services` alone is issue 14's bench);
//! - `RUNWARDEN_BENCH_QUOTA=reads,writes` (e.g. `600,60`): the quota mode. The controller gets
//!   `--quota-run-reads-per-minute reads --quota-run-writes-per-minute writes` (otherwise
//!   1000000 each, i.e. unthrottled), the emulator the same per-minute quotas through
//!   `/emulator/v1/config` (`runReadsPerMinute`, `runWritesPerMinute`), and the table reports
//!   the time to converge against the quota-bound minimum: for each project and region, the
//!   whole minutes the kind's successful Cloud Run reads and writes need at their per-minute
//!   quotas after the first minute's burst (`ceil(calls / quota) - 1`), the larger of the two
//!   (steps 2 and 3 are skipped).

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

/// Per object of one kind: when it was first seen, when first seen Ready, and the `Ready`
/// condition it showed last (for the progress lines while some are not Ready).
type Seen = Arc<Mutex<HashMap<String, (Instant, Option<Instant>, String)>>>;

/// The kinds a run applies, in order (`RUNWARDEN_BENCH_KINDS`, default `services,jobs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Services,
    Jobs,
}

const KINDS: [Kind; 2] = [Kind::Services, Kind::Jobs];

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_lowercase().as_str() {
            "services" | "service" | "cloudrunservice" | "cloudrunservices" => Some(Kind::Services),
            "jobs" | "job" | "cloudrunjob" | "cloudrunjobs" => Some(Kind::Jobs),
            _ => None,
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Services => "services",
            Kind::Jobs => "jobs",
        }
    }

    /// The kind as `runwarden_reconciles_total{kind}` names it.
    fn crd(self) -> &'static str {
        match self {
            Kind::Services => "CloudRunService",
            Kind::Jobs => "CloudRunJob",
        }
    }

    /// Object `i` of this kind: projects of at most 1,000 per kind (Cloud Run's limit per project
    /// and region, for services and for jobs alike), all in one region.
    fn manifest(self, ns: &str, i: usize) -> String {
        let p = i / PER_PROJECT;
        match self {
            Kind::Services => format!(
                "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: svc-{i:05}, namespace: {ns}}}\nspec:\n  projectId: scale-p{p:02}\n  region: {REGION}\n  containers:\n  - image: europe-docker.pkg.dev/scale-project/apps/svc-{i:05}:v1\n  access:\n    invokers: [\"group:frontend@example.com\"]\n"
            ),
            Kind::Jobs => format!(
                "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunJob\nmetadata: {{name: job-{i:05}, namespace: {ns}}}\nspec:\n  projectId: scale-p{p:02}\n  region: {REGION}\n  containers:\n  - image: europe-docker.pkg.dev/scale-project/apps/job-{i:05}:v1\n  access:\n    executors: [\"group:batch@example.com\"]\n  schedule:\n    cron: \"0 3 * * *\"\n    serviceAccount: scheduler@scale-p{p:02}.iam.gserviceaccount.com\n"
            ),
        }
    }

    /// Whether an emulator counter (`{api}.{method}`) is a call only this kind makes. Calls
    /// neither kind owns (`run.operations.*`, project numbers, ...) are [`shared`].
    fn owns(self, method: &str) -> bool {
        let prefixes: &[&str] = match self {
            Kind::Services => &["run.services."],
            Kind::Jobs => &[
                "run.jobs.",
                "run.executions.",
                "run.tasks.",
                "cloudscheduler.",
            ],
        };
        prefixes.iter().any(|p| method.starts_with(p))
    }

    /// Starts a watch of this kind in `ns` that fills `seen`.
    fn watch(self, plane: &'static envtest::ControlPlane, ns: String, seen: Seen) {
        use runwarden::api::v1alpha1::{CloudRunJob, CloudRunService};
        use runwarden::controller::{cloudrunjob, cloudrunservice};
        match self {
            Kind::Services => watch::<CloudRunService>(plane, ns, seen, |o| {
                cloudrunservice::is_ready(o) == Some(true)
            }),
            Kind::Jobs => {
                watch::<CloudRunJob>(plane, ns, seen, |o| cloudrunjob::is_ready(o) == Some(true))
            }
        }
    }
}

/// A call neither kind owns.
fn shared(method: &str) -> bool {
    !KINDS.iter().any(|k| k.owns(method))
}

/// The counters `keep` selects.
fn only(
    c: &serde_json::Map<String, Value>,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, Value> {
    c.iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The `Ready` condition of an object as `status/reason (observedGeneration/generation)`.
fn ready_condition(o: &Value) -> String {
    let ready = o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) => format!(
            "{}/{} (observed {} of {})",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or("?"),
            o["status"]["observedGeneration"],
            o["metadata"]["generation"]
        ),
        None => "no Ready condition".into(),
    }
}

fn watch<K>(plane: &'static envtest::ControlPlane, ns: String, seen: Seen, ready: fn(&K) -> bool)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use futures::StreamExt;
            use kube::runtime::watcher;
            let client = plane.client().await;
            let api: kube::Api<K> = kube::Api::namespaced(client, &ns);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let o = match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    _ => continue,
                };
                let now = Instant::now();
                let name = o.meta().name.clone().unwrap_or_default();
                let is_ready = ready(&o);
                let mut seen = seen.lock().unwrap();
                let e = seen.entry(name).or_insert((now, None, String::new()));
                if is_ready && e.1.is_none() {
                    e.1 = Some(now);
                }
                if e.1.is_none() {
                    e.2 = ready_condition(&serde_json::to_value(&o).unwrap_or_default());
                }
            }
        });
    });
}

/// How many of `seen` are Ready, and the most common `Ready` conditions of the others.
fn progress(seen: &Seen) -> (usize, String) {
    let seen = seen.lock().unwrap();
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ready = 0;
    for (_, r, cond) in seen.values() {
        match r {
            Some(_) => ready += 1,
            None => *waiting.entry(cond.as_str()).or_default() += 1,
        }
    }
    let mut waiting: Vec<_> = waiting.into_iter().collect();
    waiting.sort_by_key(|w| std::cmp::Reverse(w.1));
    let text = waiting
        .iter()
        .take(4)
        .map(|(c, n)| format!("{n}× {c}"))
        .collect::<Vec<_>>()
        .join("; ");
    (ready, text)
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

/// One kind's figures at one size.
struct KindRow {
    kind: Kind,
    applied: f64,
    all_ready: f64,
    p50: f64,
    p99: f64,
    rss_ready: u64,
    rss_settled: u64,
    peak: u64,
    /// The emulator's calls of the create phase that are this kind's or shared.
    creates: u64,
    per_create: f64,
    reads_per_resync: Option<f64>,
    per_restart: Option<f64>,
    e429: u64,
    quota_min: Option<f64>,
}

/// One size: a row per kind, and the run's figures over all of them.
#[derive(Default)]
struct Row {
    n: usize,
    kinds: Vec<KindRow>,
    rss_idle: u64,
    peak: u64,
    per_create: f64,
    reads_per_resync: Option<f64>,
    per_restart: Option<f64>,
    /// Controller #2's `VmHWM` once the restart's calls stopped: the re-list of every object
    /// and a pass over each.
    restart_peak: u64,
    /// Controller #2's RSS at the end of the no-op resync round, and its `VmHWM` then.
    resync_rss: u64,
    resync_peak: u64,
    resync: String,
    e429: u64,
    emulator_quota: Option<bool>,
    breakdown: String,
}

fn e429s(metrics: &str) -> u64 {
    metric_sum(
        metrics,
        "runwarden_gcp_requests_total",
        &["code=\"RESOURCE_EXHAUSTED\""],
    )
    .unwrap_or(0.0) as u64
}

fn rss(metrics: &str) -> u64 {
    metric_sum(metrics, "process_resident_memory_bytes", &[]).unwrap_or(0.0) as u64
}

fn per_method(c: &serde_json::Map<String, Value>) -> String {
    c.iter()
        .map(|(k, v)| format!("{} {}", k.trim_start_matches("run."), v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the create phases of one size share.
struct Setup<'a> {
    plane: &'a envtest::ControlPlane,
    emulator: &'a str,
    c: &'a Controller,
    ns: &'a str,
    n: usize,
    quota: Option<(u32, u32)>,
}

/// Applies N objects of `kind` with controller `c` running and measures them until Ready and
/// the calls stop. The counters are reset first, so the phase's calls are this kind's (and
/// whatever the kinds applied before it still do: those are left out and named).
fn create_phase(setup: &Setup, kind: Kind, seen: &Seen, breakdown: &mut String) -> KindRow {
    let Setup {
        plane,
        emulator,
        c,
        ns,
        n,
        quota,
    } = *setup;
    reset_counters(emulator);
    let e429_before = e429s(&c.metrics);
    let ok_before = calls_by_code(&c.metrics, "OK");
    let pid = c.proc.0.id();
    let started = Instant::now();
    for first in (0..n).step_by(BATCH) {
        let docs: Vec<String> = (first..(first + BATCH).min(n))
            .map(|i| kind.manifest(ns, i))
            .collect();
        plane.kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            Some(&docs.join("---\n")),
        );
    }
    let applied = started.elapsed().as_secs_f64();
    let what = kind.crd();
    let mut last_print = Instant::now();
    let timeout = Duration::from_secs(1800 + n as u64 / 2)
        + quota.map_or(Duration::ZERO, |(_, w)| {
            // Two Cloud Run writes per create at the write quota, three times over.
            Duration::from_secs(6 * 60 * n as u64 / u64::from(w.max(1)))
        });
    // No object becoming Ready for this long ends the wait (with what they show).
    let stall =
        Duration::from_secs(300) + quota.map_or(Duration::ZERO, |_| Duration::from_secs(300));
    let (mut last_ready, mut since) = (0, Instant::now());
    wait_until(&format!("{n} {what}s Ready"), timeout, || {
        let (r, waiting) = progress(seen);
        if r != last_ready {
            (last_ready, since) = (r, Instant::now());
        }
        if last_print.elapsed() > Duration::from_secs(15) || since.elapsed() > stall {
            eprintln!(
                "scale: {n} {}: {r}/{n} Ready after {:.0}s; not Ready: {waiting}; calls: {}",
                kind.plural(),
                started.elapsed().as_secs_f64(),
                per_method(&counters(emulator))
            );
            last_print = Instant::now();
        }
        assert!(
            since.elapsed() <= stall,
            "{n} {what}s: no more Ready for {stall:?} ({r}/{n} Ready; not Ready: {waiting})"
        );
        r >= n
    });
    let all_ready = started.elapsed().as_secs_f64();
    let rss_ready = rss(&c.metrics);
    let mut latencies: Vec<f64> = seen
        .lock()
        .unwrap()
        .values()
        .filter_map(|(s, r, _)| Some(r.as_ref()?.duration_since(*s).as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    until_quiet(emulator, Duration::from_secs(5), Duration::from_secs(300));
    let rss_settled = rss(&c.metrics);
    let peak = proc_status(pid, "VmHWM");
    let calls = counters(emulator);
    let mine = only(&calls, |m| kind.owns(m) || shared(m));
    let others = only(&calls, |m| !(kind.owns(m) || shared(m)));
    *breakdown += &format!("{} create: {}", kind.plural(), per_method(&mine));
    if !others.is_empty() {
        *breakdown += &format!(" (not counted, other kinds': {})", per_method(&others));
    }
    *breakdown += "; ";
    let mut quota_min = None;
    if let Some((r, w)) = quota {
        // The Cloud Run calls the convergence needed: the successful ones of this phase and
        // kind, per project and region.
        let ok: BTreeMap<String, u64> = calls_by_code(&c.metrics, "OK")
            .into_iter()
            .filter(|(k, _)| k.starts_with("run.") && (kind.owns(k) || shared(k)))
            .map(|(k, v)| {
                let before = ok_before.get(&k).copied().unwrap_or(0);
                (k, v.saturating_sub(before))
            })
            .collect();
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
        quota_min = Some(minutes * 60.0);
        *breakdown += &format!(
            "{} successful Cloud Run reads {ok_reads}, writes {ok_writes} over {buckets} project(s); ",
            kind.plural()
        );
    }
    let mut e429 = e429s(&c.metrics).saturating_sub(e429_before);
    if let Some(e) = emulator_429s(&calls) {
        e429 = e429.max(e);
    }
    KindRow {
        kind,
        applied,
        all_ready,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        rss_ready,
        rss_settled,
        peak,
        creates: total(&mine),
        per_create: total(&mine) as f64 / n as f64,
        reads_per_resync: None,
        per_restart: None,
        e429,
        quota_min,
    }
}

fn run_size(n: usize, kinds: &[Kind], quota: Option<(u32, u32)>) -> Option<Row> {
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
    let seen: Vec<Seen> = kinds
        .iter()
        .map(|k| {
            let seen = Seen::default();
            k.watch(plane, ns.clone(), seen.clone());
            seen
        })
        .collect();

    let c1 = start_controller(plane, &emulator, &ns, "10m", limits);
    let pid = c1.proc.0.id();
    std::thread::sleep(Duration::from_secs(3));
    row.rss_idle = rss(&c1.metrics);

    // One kind after the other, so that every call of a phase (`operations.get` included, which
    // services and jobs share) is the kind's; the later kinds are Ready beside the earlier ones.
    let mut creates = 0;
    for (&kind, seen) in kinds.iter().zip(&seen) {
        eprintln!("scale: {n}: applying {n} {}", kind.plural());
        let setup = Setup {
            plane,
            emulator: &emulator,
            c: &c1,
            ns: &ns,
            n,
            quota,
        };
        let k = create_phase(&setup, kind, seen, &mut row.breakdown);
        creates += k.creates;
        row.kinds.push(k);
    }
    let objects = (n * kinds.len()) as f64;
    row.per_create = creates as f64 / objects;
    row.peak = proc_status(pid, "VmHWM");
    row.e429 = row.kinds.iter().map(|k| k.e429).sum();
    if quota.is_some() {
        drop(c1);
        return Some(row);
    }
    drop(c1); // SIGKILL

    // Restart: calls until quiet. The resync is long enough not to start within it.
    let resync_secs = 30 + 30 * ((n * kinds.len()) as u64).div_ceil(1000);
    row.resync = format!("{resync_secs}s");
    reset_counters(&emulator);
    let c2 = start_controller(plane, &emulator, &ns, &row.resync, limits);
    let restart_calls = until_quiet(&emulator, Duration::from_secs(5), Duration::from_secs(600));
    row.per_restart = Some(restart_calls as f64 / objects);
    row.restart_peak = proc_status(c2.proc.0.id(), "VmHWM");
    let c = counters(&emulator);
    // With one kind, the shared calls are its own; with several, they are only in the totals.
    let attributed = |kind: Kind, m: &str| kind.owns(m) || (kinds.len() == 1 && shared(m));
    for k in &mut row.kinds {
        k.per_restart = Some(total(&only(&c, |m| attributed(k.kind, m))) as f64 / n as f64);
    }
    row.breakdown += &format!("restart: {}", per_method(&c));

    // No-op resyncs: reads per reconcile over one round of N of each kind.
    reset_counters(&emulator);
    let reconciles = |kind: Kind| {
        metric_sum(
            &c2.metrics,
            "runwarden_reconciles_total",
            &[&format!("kind=\"{}\"", kind.crd())],
        )
        .unwrap_or(0.0)
    };
    let before: Vec<f64> = kinds.iter().map(|&k| reconciles(k)).collect();
    let done = |before: &[f64]| -> Vec<f64> {
        kinds
            .iter()
            .zip(before)
            .map(|(&k, b)| reconciles(k) - b)
            .collect()
    };
    let window = Instant::now();
    while done(&before).iter().any(|&d| d < n as f64)
        && window.elapsed() < Duration::from_secs(resync_secs * 3)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    let resyncs = done(&before);
    let c = counters(&emulator);
    for (k, &r) in row.kinds.iter_mut().zip(&resyncs) {
        let mine = only(&c, |m| attributed(k.kind, m));
        k.reads_per_resync = (r > 0.0).then(|| reads(&mine) as f64 / r);
    }
    row.resync_rss = rss(&c2.metrics);
    row.resync_peak = proc_status(c2.proc.0.id(), "VmHWM");
    let all: f64 = resyncs.iter().sum();
    row.reads_per_resync = (all > 0.0).then(|| reads(&c) as f64 / all);
    row.breakdown += &format!(
        "; resync window {:.0}s, {} reconciles: {}",
        window.elapsed().as_secs_f64(),
        kinds
            .iter()
            .zip(&resyncs)
            .map(|(k, r)| format!("{r} {}", k.crd()))
            .collect::<Vec<_>>()
            .join(" + "),
        per_method(&c)
    );
    row.e429 += e429s(&c2.metrics);
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
    let kinds_env =
        std::env::var("RUNWARDEN_BENCH_KINDS").unwrap_or_else(|_| "services,jobs".into());
    let mut kinds: Vec<Kind> = Vec::new();
    for s in kinds_env.split(',').filter(|s| !s.trim().is_empty()) {
        let k = Kind::parse(s)
            .unwrap_or_else(|| panic!("RUNWARDEN_BENCH_KINDS: {s:?} is not `services` or `jobs`"));
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    assert!(!kinds.is_empty(), "RUNWARDEN_BENCH_KINDS names no kind");
    let names = kinds
        .iter()
        .map(|k| k.plural())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut rows = Vec::new();
    for &n in &sizes {
        eprintln!("scale: {n} × {names}: fresh control plane, emulator and controller");
        let Some(row) = run_size(n, &kinds, quota) else {
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
        "--operation-poll 1s, --concurrency 16; one namespace; N of each of {names}, applied one kind after the other;"
    );
    println!(
        "at most 1,000 per kind per project; {})",
        match quota {
            Some((r, w)) => format!(
                "quota mode: --quota-run-reads-per-minute {r} --quota-run-writes-per-minute {w}"
            ),
            None => format!("quotas {UNTHROTTLED}/min, i.e. unthrottled"),
        }
    );
    println!();
    let several = kinds.len() > 1;
    if quota.is_some() {
        println!(
            "| N | kind | applied in | all Ready after | quota-bound minimum | ratio | create→Ready p50 | p99 | RSS at Ready | peak RSS | calls/create | 429s | emulator quotas |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            for k in &r.kinds {
                let min = k.quota_min.unwrap_or(f64::NAN);
                println!(
                    "| {} | {} | {:.1}s | {:.1}s | {:.1}s | {:.2} | {:.2}s | {:.2}s | {} | {} | {:.2} | {} | {} |",
                    r.n,
                    k.kind.plural(),
                    k.applied,
                    k.all_ready,
                    min,
                    k.all_ready / min,
                    k.p50,
                    k.p99,
                    mib(k.rss_ready),
                    mib(k.peak),
                    k.per_create,
                    k.e429,
                    if r.emulator_quota == Some(true) {
                        "on"
                    } else {
                        "NOT SET (the emulator refused the config)"
                    }
                );
            }
        }
        if rows
            .iter()
            .flat_map(|r| &r.kinds)
            .any(|k| k.all_ready < k.quota_min.unwrap_or(0.0))
        {
            println!();
            println!(
                "ratio < 1: converged faster than the quotas allow, so neither the controller's budget nor the emulator enforced them"
            );
        }
    } else {
        println!(
            "| N | kind | applied in | all Ready after | create→Ready p50 | p99 | RSS idle | RSS at Ready | RSS settled | peak RSS | restart peak | RSS after resync (peak) | calls/create | reads/no-op resync | calls/restart | 429s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        // Restart and resync are the whole run's (one controller holds every kind).
        let restart = |r: &Row| {
            (
                mib(r.restart_peak),
                format!("{} ({})", mib(r.resync_rss), mib(r.resync_peak)),
            )
        };
        let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        for r in &rows {
            let mut idle = r.rss_idle;
            for k in &r.kinds {
                let (restart_peak, resync) = if several {
                    ("-".to_string(), "-".to_string())
                } else {
                    restart(r)
                };
                println!(
                    "| {} | {} | {:.1}s | {:.1}s | {:.2}s | {:.2}s | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                    r.n,
                    k.kind.plural(),
                    k.applied,
                    k.all_ready,
                    k.p50,
                    k.p99,
                    mib(idle),
                    mib(k.rss_ready),
                    mib(k.rss_settled),
                    mib(k.peak),
                    restart_peak,
                    resync,
                    k.per_create,
                    k.reads_per_resync
                        .map_or("-".into(), |v| format!("{v:.2} (--resync {})", r.resync)),
                    opt(k.per_restart),
                    k.e429,
                );
                // The next kind starts from this one's settled RSS.
                idle = k.rss_settled;
            }
            if several {
                let last = r.kinds.last();
                let (restart_peak, resync) = restart(r);
                println!(
                    "| {} | all {} | {:.1}s | {:.1}s | - | - | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                    r.n * r.kinds.len(),
                    names,
                    r.kinds.iter().map(|k| k.applied).sum::<f64>(),
                    r.kinds.iter().map(|k| k.all_ready).sum::<f64>(),
                    mib(r.rss_idle),
                    mib(last.map_or(0, |k| k.rss_ready)),
                    mib(last.map_or(0, |k| k.rss_settled)),
                    mib(r.peak),
                    restart_peak,
                    resync,
                    r.per_create,
                    r.reads_per_resync
                        .map_or("-".into(), |v| format!("{v:.2} (--resync {})", r.resync)),
                    opt(r.per_restart),
                    r.e429,
                );
            }
        }
        if several {
            println!();
            println!(
                "A later kind's RSS idle is the earlier kind's settled RSS: its RSS at Ready is with every kind before it Ready too. \
                 The `all` row: times summed over the kinds, RSS of the whole run, calls over all objects (shared calls included, \
                 which the kinds' restart and resync figures leave out)."
            );
        }
    }
    println!();
    for r in &rows {
        println!("{}: {}", r.n, r.breakdown);
    }
}

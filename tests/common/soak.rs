//! The soak: CloudRunServices created, updated and deleted while Google fails 20% of the Cloud
//! Run calls the controller makes and the leader is SIGKILLed every ~25 s; then, faults off and
//! converged, every invariant is checked. Shared by `benches/soak.rs` (1,000 services) and
//! `tests/soak.rs` (30 services, two kills), which include this file with `#[path]` next to
//! `envtest.rs` and `process.rs` (reached here as `crate::envtest` and `crate::process`).
//!
//! The world: a real kube-apiserver (envtest), one `runwarden emulator` process, and two
//! `runwarden controller --leader-election` processes (the binary, so SIGKILL is real) watching
//! one namespace whose `runwarden.dev/project-id` is [`PROJECT`]. The controllers'
//! `--default-project` is [`DECOY_PROJECT`], and a second, unwatched namespace annotated with
//! the decoy project holds CloudRunServices too: nothing may ever appear in the decoy project.
//!
//! 1. Calm: two thirds of the services are applied and become Ready; on every fifth a binding
//!    the controller does not own (`roles/run.viewer` for `user:auditor@example.com`) is added
//!    directly in the emulator.
//! 2. Chaos: faults at `fault_rate` (UNAVAILABLE, RESOURCE_EXHAUSTED and ABORTED in equal parts)
//!    on every Cloud Run method the controller calls; every `kill_every` the Lease's holder is
//!    SIGKILLed and a new replica started, so two always run; meanwhile the driver creates the
//!    remaining third, changes images (of services whose previous image reached Google, so each
//!    change must be one write) and invokers, and deletes a tenth.
//! 3. Faults off, wait for convergence, check the invariants.
//!
//! The driver reads Google with `run.services.list`, which is never faulted (the controller does
//! not use it), and writes to the cluster with `kubectl apply --server-side` / `kubectl delete`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::envtest::ControlPlane;
use crate::process::*;

/// The project of the soak's namespace.
pub const PROJECT: &str = "soak-project";
/// The controllers' `--default-project` and the unwatched namespace's project: must stay empty.
pub const DECOY_PROJECT: &str = "soak-decoy-project";
/// The regions services alternate between (at most 1,000 services per project and region).
pub const REGIONS: [&str; 2] = ["europe-west1", "europe-west4"];
const LEASE: &str = "runwarden-soak";
const FOREIGN_ROLE: &str = "roles/run.viewer";
const FOREIGN_MEMBER: &str = "user:auditor@example.com";
const BATCH: usize = 100;
/// The Cloud Run methods the controller calls; each gets the faults.
const FAULTED_METHODS: [&str; 7] = [
    "services.create",
    "services.get",
    "services.patch",
    "services.delete",
    "services.getIamPolicy",
    "services.setIamPolicy",
    "operations.get",
];
const FAULT_CODES: [&str; 3] = ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"];

/// What to run.
#[derive(Clone, Debug)]
pub struct Params {
    /// CloudRunServices in all (two thirds before the chaos, a third during it).
    pub services: usize,
    /// Leader SIGKILLs during the chaos.
    pub kills: usize,
    /// Time between kills (the chaos lasts `kills * kill_every` plus a few seconds).
    pub kill_every: Duration,
    /// Probability that a Cloud Run call of the controller fails during the chaos.
    pub fault_rate: f64,
    /// The emulator's operation delay (e.g. `"1s"`), so kills land on operations in flight.
    pub operation_delay: String,
    /// `--lease-duration` and `--lease-renew-period` of the replicas.
    pub lease_duration: Duration,
    pub lease_renew: Duration,
    /// How long the calm phase and the final convergence may take.
    pub ready_timeout: Duration,
    /// Prefix of progress lines on stderr.
    pub label: &'static str,
}

impl Params {
    /// 30 services, two kills 25 s apart: the size of `tests/soak.rs`.
    pub fn small() -> Params {
        Params {
            services: 30,
            kills: 2,
            kill_every: Duration::from_secs(25),
            fault_rate: 0.2,
            operation_delay: "1s".into(),
            lease_duration: Duration::from_secs(6),
            lease_renew: Duration::from_secs(2),
            ready_timeout: Duration::from_secs(90),
            label: "soak",
        }
    }
}

/// One checked invariant.
#[derive(Clone, Debug)]
pub struct Invariant {
    pub name: &'static str,
    pub pass: bool,
    /// e.g. `27/27 services`.
    pub checked: String,
    /// The first offenders, when it failed.
    pub detail: String,
}

/// What the soak did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub services: usize,
    pub creates: usize,
    pub image_changes: usize,
    pub invoker_changes: usize,
    pub deletes: usize,
    pub foreign: usize,
    pub kills: usize,
    /// Seconds from each SIGKILL until a new replica held the lease.
    pub takeovers: Vec<f64>,
    /// Replicas that exited without being killed (e.g. a lost lease), restarted.
    pub unexpected_exits: usize,
    /// Google errors the controllers saw during the chaos, by code (scraped from each replica's
    /// /metrics before it was killed and at the end).
    pub errors_seen: BTreeMap<String, u64>,
    pub calm_seconds: f64,
    pub chaos_seconds: f64,
    pub converge_seconds: f64,
    pub total_seconds: f64,
    /// Emulator counters over the whole run.
    pub calls: BTreeMap<String, u64>,
    pub invariants: Vec<Invariant>,
    /// Where the replicas' stderr is.
    pub logs: PathBuf,
}

impl Report {
    /// The invariants that failed.
    pub fn failed(&self) -> Vec<&Invariant> {
        self.invariants.iter().filter(|i| !i.pass).collect()
    }

    /// The run's figures and a table of invariants (markdown).
    pub fn print(&self) {
        let takeovers: Vec<String> = self.takeovers.iter().map(|t| format!("{t:.1}s")).collect();
        println!();
        println!(
            "runwarden soak: {} services; {} created during the chaos, {} image changes, {} invoker changes, {} deleted; {} with a foreign IAM binding",
            self.services,
            self.creates,
            self.image_changes,
            self.invoker_changes,
            self.deletes,
            self.foreign
        );
        println!(
            "leader SIGKILLs: {} (new leader after {}); unexpected replica exits: {}; Google errors seen by the controllers: {:?}",
            self.kills,
            takeovers.join(", "),
            self.unexpected_exits,
            self.errors_seen
        );
        println!(
            "calm phase {:.1}s, chaos {:.1}s, convergence after faults off {:.1}s, total {:.1}s; logs in {}",
            self.calm_seconds,
            self.chaos_seconds,
            self.converge_seconds,
            self.total_seconds,
            self.logs.display()
        );
        println!();
        println!("| invariant | result | checked | detail |");
        println!("|---|---|---|---|");
        for i in &self.invariants {
            println!(
                "| {} | {} | {} | {} |",
                i.name,
                if i.pass { "PASS" } else { "FAIL" },
                i.checked,
                if i.detail.is_empty() { "-" } else { &i.detail }
            );
        }
        println!();
        println!("emulator calls: {:?}", self.calls);
    }
}

/// What the driver asked for, per service.
#[derive(Clone, Debug)]
struct Svc {
    name: String,
    region: &'static str,
    image_version: u32,
    image_changes: u32,
    invokers: Vec<String>,
    applied: bool,
    deleted: bool,
    foreign: bool,
}

impl Svc {
    fn image(&self) -> String {
        format!(
            "europe-docker.pkg.dev/{PROJECT}/apps/{}:v{}",
            self.name, self.image_version
        )
    }

    fn manifest(&self, ns: &str) -> String {
        let invokers: Vec<String> = self.invokers.iter().map(|m| format!("\"{m}\"")).collect();
        format!(
            "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: {}, namespace: {ns}}}\nspec:\n  region: {}\n  containers:\n  - image: {}\n  access:\n    invokers: [{}]\n",
            self.name,
            self.region,
            self.image(),
            invokers.join(", ")
        )
    }

    fn google_name(&self) -> String {
        format!(
            "projects/{PROJECT}/locations/{}/services/{}",
            self.region, self.name
        )
    }
}

/// One `runwarden controller --leader-election` process.
struct Replica {
    name: String,
    metrics: String,
    proc: Proc,
}

struct World<'a> {
    plane: &'a ControlPlane,
    bin: &'a str,
    emulator: String,
    ns: String,
    logs: PathBuf,
    params: Params,
    started: usize,
}

impl World<'_> {
    fn start_replica(&mut self) -> Replica {
        let name = format!("soak-replica-{}", self.started);
        self.started += 1;
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).expect("log file");
        let mut cmd = Command::new(self.bin);
        cmd.args(["controller", "--gcp-endpoint", &self.emulator])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--watch-namespace",
                &self.ns,
            ])
            .args(["--default-project", DECOY_PROJECT])
            .args(["--operation-poll", "1s", "--resync", "10m"])
            .args([
                "--log-level",
                "warn,runwarden::listen=info",
                "--log-format",
                "json",
            ])
            .args(["--leader-election", "--lease-name", LEASE])
            .args(["--lease-namespace", &self.ns])
            .args(["--lease-duration", &secs(self.params.lease_duration)])
            .args(["--lease-renew-period", &secs(self.params.lease_renew)])
            .args(["--quota-run-reads-per-minute", "1000000"])
            .args(["--quota-run-writes-per-minute", "1000000"])
            .env("KUBECONFIG", &self.plane.kubeconfig)
            .env("POD_NAME", &name)
            .stdout(Stdio::null());
        let (proc, metrics) = spawn_listening(&mut cmd, &name, Logs::File(log));
        Replica {
            name,
            metrics: metrics.to_string(),
            proc,
        }
    }

    fn holder(&self) -> String {
        self.plane
            .try_kubectl(
                &[
                    "get",
                    "lease",
                    LEASE,
                    "-n",
                    &self.ns,
                    "-o",
                    "jsonpath={.spec.holderIdentity}",
                ],
                None,
            )
            .unwrap_or_default()
    }

    fn apply(&self, svcs: &[&Svc]) {
        for chunk in svcs.chunks(BATCH) {
            let docs: Vec<String> = chunk.iter().map(|s| s.manifest(&self.ns)).collect();
            // The API server may be slow under load; a failed batch is retried.
            let mut tries = 0;
            while let Err(e) = self.plane.try_kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--field-manager",
                    "soak-driver",
                    "-f",
                    "-",
                ],
                Some(&docs.join("---\n")),
            ) {
                tries += 1;
                assert!(tries < 5, "kubectl apply failed 5 times: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    fn delete(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut args = vec!["delete", "crsvc", "-n", &self.ns, "--wait=false"];
        args.extend(names.iter().map(String::as_str));
        self.plane.kubectl(&args);
    }

    /// Every CloudRunService of the namespace: name → (Ready for its generation).
    fn cluster(&self) -> Option<BTreeMap<String, bool>> {
        let out = self
            .plane
            .try_kubectl(
                &[
                    "get",
                    "crsvc",
                    "-n",
                    &self.ns,
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name} {.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ],
                None,
            )
            .ok()?;
        Some(
            out.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    let name = (*f.first()?).to_string();
                    let ready = f.len() >= 4 && f[1] == f[2] && f[3] == "True";
                    Some((name, ready))
                })
                .collect(),
        )
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Every service of a project in Google (all regions, deleting ones too), by full name.
/// `None` when the emulator does not answer.
pub fn google_services(emulator: &str, project: &str) -> Option<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let mut token = String::new();
    loop {
        let url = format!(
            "{emulator}/v2/projects/{project}/locations/-/services?pageSize=1000&showDeleted=true&pageToken={token}"
        );
        let (code, body) = http_get(&url)?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        for s in v["services"].as_array().into_iter().flatten() {
            if let Some(name) = s["name"].as_str() {
                out.insert(name.to_string(), s.clone());
            }
        }
        match v["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return Some(out),
        }
    }
}

fn image_of(s: &Value) -> &str {
    s["template"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
}

fn generation_of(s: &Value) -> u64 {
    match &s["generation"] {
        Value::String(g) => g.parse().unwrap_or(0),
        v => v.as_u64().unwrap_or(0),
    }
}

/// The IAM policy of a service (retried: faults may be on).
fn iam_policy(emulator: &str, google_name: &str) -> Option<Value> {
    for _ in 0..20 {
        if let Some((200, body)) = http_get(&format!("{emulator}/v2/{google_name}:getIamPolicy")) {
            return serde_json::from_str(&body).ok();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn members(policy: &Value, role: &str) -> Vec<String> {
    let mut m: Vec<String> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b.get("condition").is_none())
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    m.sort();
    m.dedup();
    m
}

/// Adds `role: member` to a service's policy directly in the emulator (read-modify-write with
/// the etag, retried on a conflict).
fn add_foreign_binding(emulator: &str, google_name: &str) -> bool {
    for _ in 0..20 {
        let Some(mut policy) = iam_policy(emulator, google_name) else {
            continue;
        };
        let bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
        let mut bindings: Vec<Value> = bindings;
        bindings.push(json!({"role": FOREIGN_ROLE, "members": [FOREIGN_MEMBER]}));
        policy["bindings"] = Value::Array(bindings);
        if let Some((200, _)) = http(
            "POST",
            &format!("{emulator}/v2/{google_name}:setIamPolicy"),
            Some(json!({"policy": policy})),
        ) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Google errors by code from a replica's /metrics (`runwarden_gcp_requests_total`, not OK).
fn errors_by_code(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Some((_, text)) = http_get(&format!("http://{metrics}/metrics")) else {
        return out;
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("runwarden_gcp_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let code = labels
            .split(',')
            .find_map(|l| l.strip_prefix("code=\""))
            .map(|c| c.trim_end_matches('"').to_string())
            .unwrap_or_default();
        if code != "OK" {
            *out.entry(code).or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        }
    }
    out
}

fn merge(into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

fn fault_on(emulator: &str, rate: f64) {
    // The chance that one of the three faults hits is `rate`.
    let each = 1.0 - (1.0 - rate).powf(1.0 / FAULT_CODES.len() as f64);
    for method in FAULTED_METHODS {
        for code in FAULT_CODES {
            let (status, body) = http(
                "POST",
                &format!("{emulator}/emulator/v1/faults"),
                Some(json!({"api": "run", "method": method, "code": code, "rate": each})),
            )
            .expect("emulator faults");
            assert_eq!(status, 200, "POST /emulator/v1/faults: {body}");
        }
    }
}

fn faults_off(emulator: &str) {
    http("DELETE", &format!("{emulator}/emulator/v1/faults"), None).expect("clear faults");
}

fn first<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(5).map(|i| i.to_string()).collect();
    let more = if items.len() > 5 {
        format!(" (+{} more)", items.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join("; "))
}

fn invariant(name: &'static str, total: usize, what: &str, bad: Vec<String>) -> Invariant {
    Invariant {
        name,
        pass: bad.is_empty(),
        checked: format!("{}/{total} {what}", total - bad.len().min(total)),
        detail: first(&bad),
    }
}

/// Runs the soak on `plane` with the `runwarden` binary `bin`.
/// Whether `holder` is a new leader after `old` was killed: one of the replicas then running.
fn took_over(holder: &str, old: &str, survivors: &[String]) -> bool {
    !holder.is_empty() && holder != old && survivors.iter().any(|s| s == holder)
}

pub fn run(plane: &ControlPlane, bin: &str, params: &Params) -> Report {
    let t0 = Instant::now();
    let label = params.label;
    let (_emu, emulator) = start_emulator(bin, &params.operation_delay);
    let run_id = format!("{}-{}", std::process::id(), fastrand::u32(..) % 100_000);
    let ns = format!("soak-{run_id}");
    let decoy_ns = format!("soak-decoy-{run_id}");
    let logs = std::env::temp_dir().join(format!("runwarden-soak-{run_id}"));
    std::fs::create_dir_all(&logs).expect("log dir");
    for (n, project) in [(&ns, PROJECT), (&decoy_ns, DECOY_PROJECT)] {
        plane.kubectl(&["create", "namespace", n]);
        plane.kubectl(&[
            "annotate",
            "namespace",
            n,
            &format!("runwarden.dev/project-id={project}"),
        ]);
    }
    let mut world = World {
        plane,
        bin,
        emulator: emulator.clone(),
        ns: ns.clone(),
        logs: logs.clone(),
        params: params.clone(),
        started: 0,
    };
    // Objects in a namespace the controllers do not watch, whose project is the decoy.
    let decoys: Vec<Svc> = (0..2)
        .map(|i| Svc {
            name: format!("decoy-{i}"),
            region: REGIONS[0],
            image_version: 1,
            image_changes: 0,
            invokers: vec!["group:frontend@example.com".into()],
            applied: true,
            deleted: false,
            foreign: false,
        })
        .collect();
    let decoy_docs: Vec<String> = decoys.iter().map(|s| s.manifest(&decoy_ns)).collect();
    plane.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&decoy_docs.join("---\n")),
    );

    let mut replicas = vec![world.start_replica(), world.start_replica()];
    let mut report = Report {
        services: params.services,
        logs: logs.clone(),
        ..Report::default()
    };

    let mut svcs: Vec<Svc> = (0..params.services)
        .map(|i| Svc {
            name: format!("soak-{i:04}"),
            region: REGIONS[i % REGIONS.len()],
            image_version: 1,
            image_changes: 0,
            invokers: vec!["group:frontend@example.com".into()],
            applied: false,
            deleted: false,
            foreign: false,
        })
        .collect();

    // 1. Calm: two thirds, Ready; foreign bindings on every fifth.
    let calm = params.services * 2 / 3;
    {
        let batch: Vec<&Svc> = svcs[..calm].iter().collect();
        world.apply(&batch);
    }
    for s in &mut svcs[..calm] {
        s.applied = true;
    }
    let mut last = Instant::now();
    wait_until(
        &format!("{calm} services Ready before the chaos"),
        params.ready_timeout,
        || {
            let n = world
                .cluster()
                .map_or(0, |c| c.values().filter(|r| **r).count());
            if last.elapsed() > Duration::from_secs(10) {
                eprintln!("{label}: {n}/{calm} Ready (calm phase)");
                last = Instant::now();
            }
            n == calm
        },
    );
    for s in svcs[..calm].iter_mut().step_by(5) {
        assert!(
            add_foreign_binding(&emulator, &s.google_name()),
            "could not add the foreign binding to {}",
            s.name
        );
        s.foreign = true;
    }
    report.foreign = svcs.iter().filter(|s| s.foreign).count();
    report.calm_seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "{label}: {calm} services Ready after {:.1}s; {} foreign bindings added; chaos starts",
        report.calm_seconds, report.foreign
    );

    // 2. Chaos.
    let chaos_start = Instant::now();
    fault_on(&emulator, params.fault_rate);
    let step = Duration::from_millis(1500);
    // After the last kill: long enough for the standby to take the lease and act under faults.
    let chaos = params.kill_every * params.kills as u32
        + params.lease_duration
        + params.lease_renew * 2
        + Duration::from_secs(3);
    let steps = (chaos.as_millis() / step.as_millis()).max(1) as usize;
    let to_create: Vec<usize> = (calm..params.services).collect();
    let creates_per_step = to_create.len().div_ceil(steps);
    let deletes_total = params.services / 10;
    let deletes_per_step = deletes_total.div_ceil(steps).max(1);
    let changes_per_step = (params.services / 20).max(1);
    let mut next_create = 0;
    let mut next_kill = chaos_start + params.kill_every;
    let mut kills = 0;
    let mut invoker_round = 0u32;
    let mut pending_takeover: Option<(usize, Instant, String, Vec<String>)> = None;
    while chaos_start.elapsed() < chaos || kills < params.kills {
        let step_start = Instant::now();
        // Keep two replicas running: one that exited on its own is counted and replaced.
        for r in replicas.iter_mut() {
            if r.proc.0.try_wait().ok().flatten().is_some() {
                eprintln!("{label}: replica {} exited on its own; restarting", r.name);
                report.unexpected_exits += 1;
                *r = world.start_replica();
            }
        }
        if kills < params.kills && Instant::now() >= next_kill {
            let holder = world.holder();
            if let Some(i) = replicas.iter().position(|r| r.name == holder) {
                merge(
                    &mut report.errors_seen,
                    errors_by_code(&replicas[i].metrics),
                );
                let killed_at = Instant::now();
                let _ = replicas[i].proc.0.kill();
                let _ = replicas[i].proc.0.wait();
                kills += 1;
                eprintln!(
                    "{label}: SIGKILL {holder} (leader) at {:.1}s",
                    chaos_start.elapsed().as_secs_f64()
                );
                replicas[i] = world.start_replica();
                // The driver keeps going while the standby waits for the lease to expire.
                let survivors: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
                report.takeovers.push(f64::NAN);
                let idx = report.takeovers.len() - 1;
                pending_takeover = Some((idx, killed_at, holder, survivors));
                next_kill = Instant::now() + params.kill_every;
            } else {
                // No leader right now (a takeover in progress): try again shortly.
                next_kill = Instant::now() + Duration::from_secs(1);
            }
        }
        if let Some((idx, at, old, names)) = pending_takeover.take() {
            if took_over(&world.holder(), &old, &names) {
                report.takeovers[idx] = at.elapsed().as_secs_f64();
            } else {
                pending_takeover = Some((idx, at, old, names));
            }
        }

        let google = google_services(&emulator, PROJECT).unwrap_or_default();
        let mut changed: Vec<usize> = Vec::new();
        // Creates.
        for &i in to_create.iter().skip(next_create).take(creates_per_step) {
            svcs[i].applied = true;
            changed.push(i);
            report.creates += 1;
        }
        next_create = (next_create + creates_per_step).min(to_create.len());
        // Image changes: only of services whose current image reached Google, so that each
        // change is exactly one write (a change made before the previous one was rolled out
        // would be folded into it).
        let live: Vec<usize> = (0..svcs.len())
            .filter(|&i| svcs[i].applied && !svcs[i].deleted)
            .collect();
        let mut ready_for_image: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| {
                google
                    .get(&svcs[i].google_name())
                    .is_some_and(|g| image_of(g) == svcs[i].image())
                    && !changed.contains(&i)
            })
            .collect();
        fastrand::shuffle(&mut ready_for_image);
        for &i in ready_for_image.iter().take(changes_per_step) {
            svcs[i].image_version += 1;
            svcs[i].image_changes += 1;
            report.image_changes += 1;
            changed.push(i);
        }
        // Invoker changes: any live service.
        let mut candidates = live.clone();
        fastrand::shuffle(&mut candidates);
        for &i in candidates.iter().take(changes_per_step) {
            invoker_round += 1;
            svcs[i].invokers = match invoker_round % 3 {
                0 => vec!["group:frontend@example.com".into()],
                1 => vec![
                    "group:frontend@example.com".into(),
                    format!("user:ops-{invoker_round}@example.com"),
                ],
                _ => vec![format!(
                    "serviceAccount:caller-{invoker_round}@{PROJECT}.iam.gserviceaccount.com"
                )],
            };
            report.invoker_changes += 1;
            if !changed.contains(&i) {
                changed.push(i);
            }
        }
        let batch: Vec<&Svc> = changed.iter().map(|&i| &svcs[i]).collect();
        world.apply(&batch);
        // Deletes: live services without a foreign binding that this step did not touch.
        if report.deletes < deletes_total {
            let mut deletable: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| !svcs[i].foreign && !changed.contains(&i))
                .collect();
            fastrand::shuffle(&mut deletable);
            let take = deletes_per_step.min(deletes_total - report.deletes);
            let names: Vec<String> = deletable
                .iter()
                .take(take)
                .map(|&i| {
                    svcs[i].deleted = true;
                    svcs[i].name.clone()
                })
                .collect();
            report.deletes += names.len();
            world.delete(&names);
        }
        if let Some(rest) = step.checked_sub(step_start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    // The last kill's takeover, before the creates below (applying many can outlast the wait,
    // which then looked at the holder not once): the holder is read at least once.
    if let Some((idx, at, old, names)) = pending_takeover.take() {
        let limit = params.lease_duration * 3;
        loop {
            if took_over(&world.holder(), &old, &names) {
                report.takeovers[idx] = at.elapsed().as_secs_f64();
                break;
            }
            if at.elapsed() >= limit {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Any creates not made yet (a slow step loop) are made now.
    let rest: Vec<usize> = to_create.iter().copied().skip(next_create).collect();
    for &i in &rest {
        svcs[i].applied = true;
        report.creates += 1;
    }
    world.apply(&rest.iter().map(|&i| &svcs[i]).collect::<Vec<_>>());
    for r in &replicas {
        merge(&mut report.errors_seen, errors_by_code(&r.metrics));
    }
    faults_off(&emulator);
    report.kills = kills;
    report.chaos_seconds = chaos_start.elapsed().as_secs_f64();
    eprintln!(
        "{label}: chaos over after {:.1}s ({kills} kills); faults off, waiting for convergence",
        report.chaos_seconds
    );

    // 3. Convergence: every live service Ready for its generation with its image in Google,
    // every deleted one gone from the cluster and from Google.
    let converge_start = Instant::now();
    let live: Vec<&Svc> = svcs.iter().filter(|s| !s.deleted).collect();
    let deleted: Vec<&Svc> = svcs.iter().filter(|s| s.deleted).collect();
    let mut last = Instant::now();
    let converged = loop {
        let cluster = world.cluster().unwrap_or_default();
        let google = google_services(&emulator, PROJECT).unwrap_or_default();
        let ready = live
            .iter()
            .filter(|s| cluster.get(&s.name) == Some(&true))
            .filter(|s| {
                google
                    .get(&s.google_name())
                    .is_some_and(|g| image_of(g) == s.image())
            })
            .count();
        let gone = deleted
            .iter()
            .filter(|s| !cluster.contains_key(&s.name) && !google.contains_key(&s.google_name()))
            .count();
        if ready == live.len() && gone == deleted.len() {
            break true;
        }
        if last.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "{label}: {ready}/{} Ready with their image, {gone}/{} deleted gone, after {:.0}s",
                live.len(),
                deleted.len(),
                converge_start.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
        if converge_start.elapsed() > params.ready_timeout {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    report.converge_seconds = converge_start.elapsed().as_secs_f64();
    // Give a late (wrong) write the chance to show before checking.
    std::thread::sleep(Duration::from_secs(2));

    // 4. Invariants.
    let cluster = world.cluster().unwrap_or_default();
    let google = google_services(&emulator, PROJECT).unwrap_or_default();
    let mut inv = Vec::new();
    inv.push(invariant(
        "converged: every live service Ready for its generation",
        live.len(),
        "services",
        live.iter()
            .filter(|s| cluster.get(&s.name) != Some(&true))
            .map(|s| format!("{} not Ready", s.name))
            .chain((!converged).then(|| {
                format!(
                    "not converged within {:.0}s of faults off",
                    params.ready_timeout.as_secs_f64()
                )
            }))
            .collect(),
    ));
    inv.push(invariant(
        "image in Google equals spec",
        live.len(),
        "services",
        live.iter()
            .filter_map(|s| match google.get(&s.google_name()) {
                None => Some(format!("{} missing", s.name)),
                Some(g) if image_of(g) != s.image() => {
                    Some(format!("{}: {} != {}", s.name, image_of(g), s.image()))
                }
                _ => None,
            })
            .collect(),
    ));
    let policies: BTreeMap<String, Value> = live
        .iter()
        .filter_map(|s| Some((s.name.clone(), iam_policy(&emulator, &s.google_name())?)))
        .collect();
    inv.push(invariant(
        "invokers (roles/run.invoker) equal spec",
        live.len(),
        "services",
        live.iter()
            .filter_map(|s| {
                let mut want = s.invokers.clone();
                want.sort();
                let got = policies
                    .get(&s.name)
                    .map(|p| members(p, "roles/run.invoker"));
                (got.as_ref() != Some(&want)).then(|| format!("{}: {got:?} != {want:?}", s.name))
            })
            .collect(),
    ));
    inv.push(invariant(
        "generation = 1 + image changes (one write per spec change)",
        live.len(),
        "services",
        live.iter()
            .filter_map(|s| {
                let g = generation_of(google.get(&s.google_name())?);
                let want = 1 + u64::from(s.image_changes);
                (g != want).then(|| format!("{}: generation {g}, expected {want}", s.name))
            })
            .collect(),
    ));
    let foreign: Vec<&&Svc> = live.iter().filter(|s| s.foreign).collect();
    inv.push(invariant(
        "foreign IAM binding kept (roles/run.viewer)",
        foreign.len(),
        "services",
        foreign
            .iter()
            .filter(|s| {
                !policies
                    .get(&s.name)
                    .is_some_and(|p| members(p, FOREIGN_ROLE).contains(&FOREIGN_MEMBER.to_string()))
            })
            .map(|s| format!("{} lost it", s.name))
            .collect(),
    ));
    inv.push(invariant(
        "deleted services gone (cluster and Google)",
        deleted.len(),
        "services",
        deleted
            .iter()
            .filter_map(|s| {
                let k = cluster.contains_key(&s.name);
                let g = google.contains_key(&s.google_name());
                (k || g).then(|| format!("{}: in cluster {k}, in Google {g}", s.name))
            })
            .collect(),
    ));
    let known: BTreeSet<String> = svcs.iter().map(Svc::google_name).collect();
    let decoy = google_services(&emulator, DECOY_PROJECT);
    let in_decoy: Vec<String> = match &decoy {
        Some(d) => d.keys().map(|k| format!("{k} exists")).collect(),
        None => vec![format!("cannot list {DECOY_PROJECT}")],
    };
    let unknown: Vec<String> = google
        .keys()
        .filter(|k| !known.contains(*k))
        .map(|k| format!("{k} not asked for"))
        .collect();
    inv.push(Invariant {
        name: "nothing created in a wrong project",
        pass: in_decoy.is_empty() && unknown.is_empty(),
        checked: format!(
            "{} services in {DECOY_PROJECT}, {} unknown in {PROJECT} (want 0 and 0)",
            decoy.as_ref().map_or(0, BTreeMap::len),
            unknown.len()
        ),
        detail: first(&[in_decoy, unknown].concat()),
    });
    let mut panics = Vec::new();
    for entry in std::fs::read_dir(&logs).expect("logs").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("panicked")) {
            panics.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
        }
    }
    inv.push(invariant(
        "no panic in any controller's stderr",
        world.started,
        "replicas",
        panics,
    ));
    inv.push(invariant(
        "a new leader after every SIGKILL",
        params.kills,
        "kills",
        report
            .takeovers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_nan())
            .map(|(i, _)| format!("kill {} not taken over", i + 1))
            .chain((kills < params.kills).then(|| format!("only {kills} kills made")))
            .collect(),
    ));
    report.invariants = inv;
    report.calls = counters(&emulator)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_u64()?)))
        .collect();
    report.total_seconds = t0.elapsed().as_secs_f64();
    drop(replicas);
    let _ = plane.try_kubectl(&["delete", "namespace", &decoy_ns, "--wait=false"], None);
    report
}

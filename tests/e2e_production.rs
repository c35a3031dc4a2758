//! Production readiness end to end, against a real kube-apiserver + etcd:
//! - the shipped manifests (`kubectl kustomize deploy/`, and the Helm chart when a renderer is
//!   available) pass a server-side dry run;
//! - two `runwarden controller --leader-election` processes share the work: after the leader is
//!   killed (SIGKILL) the standby takes the lease once it expires and reconciles the next change,
//!   with no Google write made twice; a leader stopped with SIGTERM releases the lease and a
//!   standby takes over within a couple of seconds.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::envtest::{self, ControlPlane};
use common::process::*;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");
const LEASE: &str = "runwarden-controller";
/// The controller's default lease duration and renew period (`--lease-duration`,
/// `--lease-renew-period`); the failover test runs with the defaults.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW: Duration = Duration::from_secs(2);

fn count(c: &serde_json::Map<String, serde_json::Value>, key: &str) -> u64 {
    c.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// A sample without labels from a /metrics endpoint.
fn metric(addr: &str, name: &str) -> Option<f64> {
    let (_, text) = http_get(&format!("http://{addr}/metrics"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Runs kubectl; `(success, stdout, stderr)`.
fn kubectl_full(
    plane: &ControlPlane,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates the manifests' namespace for real (a dry-run namespace does not exist for the
/// namespaced objects), then server-side applies `manifests` with `--dry-run=server`, as the
/// documented `kubectl apply --server-side` install would, and checks what the server says.
fn server_dry_run(plane: &ControlPlane, what: &str, manifests: &str) -> String {
    let namespace = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/namespace.yaml"),
    )
    .expect("deploy/base/namespace.yaml");
    plane.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&namespace));
    let (ok, stdout, stderr) = kubectl_full(
        plane,
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(manifests),
    );
    assert!(
        ok,
        "{what}: server-side dry run failed:\n{stderr}\n{stdout}"
    );
    eprintln!("e2e-production: {what}: server dry run:\n{stdout}{stderr}");
    // The namespace enforces the restricted Pod Security Standard; the API server warns about
    // workloads whose pods it would refuse.
    assert!(
        !stderr.contains("PodSecurity"),
        "{what}: the pods would violate the namespace's Pod Security Standard:\n{stderr}"
    );
    for kind in [
        "deployment.apps/runwarden",
        "serviceaccount/runwarden",
        "clusterrole.rbac.authorization.k8s.io/runwarden",
        "role.rbac.authorization.k8s.io/runwarden-leader-election",
        "poddisruptionbudget.policy/runwarden",
        "networkpolicy.networking.k8s.io/runwarden",
    ] {
        assert!(
            stdout.contains(&format!("{kind} serverside-applied (server dry run)")),
            "{what}: {kind} not in the dry run:\n{stdout}"
        );
    }
    stdout
}

#[test]
fn shipped_manifests_pass_a_server_side_dry_run() {
    let Some(plane) = envtest::shared() else {
        envtest::skip_check(
            "chart",
            "server-side dry run of deploy/ and the chart",
            &envtest::no_plane(),
        );
        return;
    };
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    let (ok, kustomized, stderr) = kubectl_full(plane, &["kustomize", deploy], None);
    assert!(ok, "kubectl kustomize deploy/: {stderr}");
    let applied = server_dry_run(plane, "kubectl kustomize deploy/", &kustomized);
    assert!(
        applied.contains("customresourcedefinition.apiextensions.k8s.io/cloudrunservices.runwarden.dev serverside-applied"),
        "{applied}"
    );

    // The Helm chart, rendered by Helm's Go SDK (helm-python-sdk, see
    // crates/deploy-checks/helm_sdk.py), CRDs included: they are templates of the chart.
    let Some(rendered) = render_chart() else {
        envtest::skip_check(
            "chart",
            "helm chart server-side dry run",
            "no helm-python-sdk (set RUNWARDEN_HELM_PYTHON; .ci/run installs it from PyPI); the kustomize manifests were checked",
        );
        return;
    };
    let applied = server_dry_run(plane, "helm chart", &rendered);
    assert!(
        applied.contains("customresourcedefinition.apiextensions.k8s.io/cloudrunservices.runwarden.dev serverside-applied"),
        "the chart's CRDs: {applied}"
    );
}

/// The Python that has helm-python-sdk: `$RUNWARDEN_HELM_PYTHON`, default
/// `/tmp/helmpk/venv/bin/python` (where `.ci/run` installs it).
fn helm_python() -> String {
    std::env::var("RUNWARDEN_HELM_PYTHON").unwrap_or_else(|_| "/tmp/helmpk/venv/bin/python".into())
}

/// The chart rendered as `helm template runwarden -n runwarden-system` would; `None` without
/// helm-python-sdk.
fn render_chart() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(helm_python())
        .arg(format!("{root}/crates/deploy-checks/helm_sdk.py"))
        .args([
            "render",
            &format!("{root}/helm/runwarden"),
            "runwarden",
            "runwarden-system",
            "{}",
        ])
        .output()
        .ok()?;
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(
        out.status.success(),
        "rendering the chart with helm-python-sdk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `runwarden controller --leader-election` process.
struct Replica {
    name: &'static str,
    metrics: String,
    proc: Proc,
}

fn start_replica(
    plane: &ControlPlane,
    name: &'static str,
    emulator: &str,
    ns: &str,
    lease_ns: &str,
) -> Replica {
    let (proc, metrics) = spawn_listening(
        Command::new(BIN)
            .args([
                "controller",
                "--gcp-endpoint",
                emulator,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args([
                "--watch-namespace",
                ns,
                "--resync",
                "10m",
                "--log-format",
                "json",
            ])
            .args([
                "--leader-election",
                "--lease-namespace",
                lease_ns,
                "--lease-name",
                LEASE,
            ])
            .env("KUBECONFIG", &plane.kubeconfig)
            .env("POD_NAME", name)
            .stdout(Stdio::null()),
        name,
        Logs::Stderr,
    );
    Replica {
        name,
        metrics: metrics.to_string(),
        proc,
    }
}

fn holder(plane: &ControlPlane, lease_ns: &str) -> String {
    plane
        .try_kubectl(
            &[
                "get",
                "lease",
                LEASE,
                "-n",
                lease_ns,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        )
        .unwrap_or_else(|_| "<no lease>".into())
}

fn lease_field(plane: &ControlPlane, lease_ns: &str, field: &str) -> String {
    plane
        .try_kubectl(
            &[
                "get",
                "lease",
                LEASE,
                "-n",
                lease_ns,
                "-o",
                &format!("jsonpath={{.spec.{field}}}"),
            ],
            None,
        )
        .unwrap_or_default()
}

fn crsvc(plane: &ControlPlane, ns: &str, path: &str) -> String {
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
fn a_standby_takes_over_after_sigkill_and_sigterm_without_duplicate_writes() {
    let Some(plane) = envtest::shared() else {
        envtest::skip("a_standby_takes_over_after_sigkill_and_sigterm_without_duplicate_writes");
        return;
    };
    let (_emu, emulator) = start_emulator(BIN, "0s");
    let n = fastrand::u32(..) % 100_000;
    let ns = format!("e2e-failover-{n}");
    let lease_ns = format!("runwarden-system-{n}");
    plane.kubectl(&["create", "namespace", &ns]);
    plane.kubectl(&[
        "annotate",
        "namespace",
        &ns,
        "runwarden.dev/project-id=e2e-project",
    ]);
    plane.kubectl(&["create", "namespace", &lease_ns]);

    let a = start_replica(plane, "runwarden-a", &emulator, &ns, &lease_ns);
    let b = start_replica(plane, "runwarden-b", &emulator, &ns, &lease_ns);
    for r in [&a, &b] {
        // A standby is ready too (it serves /metrics and waits for the lease).
        wait_until(
            &format!("{} /readyz", r.name),
            Duration::from_secs(30),
            || http_get(&format!("http://{}/readyz", r.metrics)).is_some_and(|(c, _)| c == 200),
        );
    }
    wait_until("a leader", Duration::from_secs(30), || {
        ["runwarden-a", "runwarden-b"].contains(&holder(plane, &lease_ns).as_str())
    });
    let leader_name = holder(plane, &lease_ns);
    let (leader, standby) = if leader_name == a.name {
        (a, b)
    } else {
        (b, a)
    };
    wait_until(
        "runwarden_leader 1 on the leader",
        Duration::from_secs(10),
        || metric(&leader.metrics, "runwarden_leader") == Some(1.0),
    );
    assert_eq!(
        metric(&standby.metrics, "runwarden_leader"),
        Some(0.0),
        "the standby must not lead"
    );
    assert_eq!(lease_field(plane, &lease_ns, "leaseDurationSeconds"), "15");

    let manifest = |image: &str| {
        format!(
            "apiVersion: runwarden.dev/v1alpha1\nkind: CloudRunService\nmetadata: {{name: payments, namespace: {ns}}}\nspec:\n  region: europe-west1\n  containers:\n  - image: {image}\n  access:\n    invokers: [\"group:frontend@example.com\"]\n"
        )
    };
    let ready = || {
        crsvc(
            plane,
            &ns,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    };
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&manifest(
            "europe-docker.pkg.dev/e2e-project/apps/payments:v1",
        )),
    );
    wait_until(
        "Ready under the first leader",
        Duration::from_secs(60),
        ready,
    );
    let first_revision = crsvc(plane, &ns, "{.status.latestReadyRevision}");
    assert_eq!(count(&counters(&emulator), "run.services.create"), 1);
    let (_, standby_metrics) =
        http_get(&format!("http://{}/metrics", standby.metrics)).expect("standby /metrics");
    assert!(
        !standby_metrics.contains("runwarden_reconciles_total{")
            && !standby_metrics.contains("runwarden_gcp_requests_total{"),
        "the standby reconciled or called Google:\n{standby_metrics}"
    );

    // SIGKILL the leader: no release, the standby waits for the lease to expire.
    let transitions = lease_field(plane, &lease_ns, "leaseTransitions");
    let mut leader = leader;
    leader.proc.0.kill().expect("SIGKILL");
    let _ = leader.proc.0.wait();
    let killed = Instant::now();
    let takeover = wait_until(
        "the standby to hold the lease after SIGKILL",
        LEASE_DURATION + RENEW * 5,
        || holder(plane, &lease_ns) == standby.name,
    );
    wait_until(
        "runwarden_leader 1 on the standby",
        Duration::from_secs(5),
        || metric(&standby.metrics, "runwarden_leader") == Some(1.0),
    );
    eprintln!(
        "e2e-production: failover after SIGKILL of {}: {} holds the lease after {:.2}s (lease {}s, renew every {}s)",
        leader_name,
        standby.name,
        takeover.as_secs_f64(),
        LEASE_DURATION.as_secs(),
        RENEW.as_secs()
    );
    // Not before the killed leader's last renewal (at most one renew period before the kill)
    // could have expired.
    assert!(
        takeover >= LEASE_DURATION - RENEW - Duration::from_millis(500),
        "the standby took an unexpired lease after {takeover:?}"
    );
    assert_ne!(
        lease_field(plane, &lease_ns, "leaseTransitions"),
        transitions,
        "leaseTransitions counts the new holder"
    );

    // The new leader reconciles the next change, and nothing was written twice.
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&manifest(
            "europe-docker.pkg.dev/e2e-project/apps/payments:v2",
        )),
    );
    let edited = Instant::now();
    wait_until(
        "the image change reconciled by the new leader",
        Duration::from_secs(60),
        || {
            let revision = crsvc(plane, &ns, "{.status.latestReadyRevision}");
            !revision.is_empty() && revision != first_revision && ready()
        },
    );
    eprintln!(
        "e2e-production: image change Ready under the new leader {:.2}s after kubectl apply ({:.2}s after the SIGKILL)",
        edited.elapsed().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(500));
    let calls = counters(&emulator);
    eprintln!("e2e-production: Google calls over both leaders: {calls:?}");
    assert_eq!(count(&calls, "run.services.create"), 1, "{calls:?}");
    assert_eq!(count(&calls, "run.services.patch"), 1, "{calls:?}");
    assert_eq!(count(&calls, "run.services.setIamPolicy"), 1, "{calls:?}");

    // SIGTERM: the leader releases the lease and a fresh standby takes over at once.
    let c = start_replica(plane, "runwarden-c", &emulator, &ns, &lease_ns);
    wait_until("runwarden-c /readyz", Duration::from_secs(30), || {
        http_get(&format!("http://{}/readyz", c.metrics)).is_some_and(|(code, _)| code == 200)
    });
    let mut leader = standby;
    let pid = leader.proc.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let termed = Instant::now();
    let mut cleared = None;
    let mut exited = None;
    let mut holders = Vec::new();
    let handed_over = loop {
        let h = holder(plane, &lease_ns);
        if h != leader.name && cleared.is_none() {
            cleared = Some(termed.elapsed());
        }
        if exited.is_none()
            && let Some(status) = leader.proc.0.try_wait().unwrap()
        {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            exited = Some(termed.elapsed());
        }
        if holders.last() != Some(&h) {
            holders.push(h.clone());
        }
        if h == c.name {
            break termed.elapsed();
        }
        assert!(
            termed.elapsed() < LEASE_DURATION,
            "runwarden-c did not take the released lease; holders seen: {holders:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let exited = exited.unwrap_or_else(|| {
        wait_until("the old leader to exit", Duration::from_secs(30), || {
            leader.proc.0.try_wait().unwrap().is_some()
        });
        termed.elapsed()
    });
    eprintln!(
        "e2e-production: SIGTERM of {}: lease released after {:.2}s, process exited after {:.2}s, {} holds the lease after {:.2}s (holders seen: {holders:?})",
        leader.name,
        cleared.unwrap_or(handed_over).as_secs_f64(),
        exited.as_secs_f64(),
        c.name,
        handed_over.as_secs_f64()
    );
    assert!(
        handed_over < RENEW + Duration::from_secs(2),
        "a released lease is taken within about one renew period, not after it expires: {handed_over:?}"
    );
    wait_until(
        "runwarden_leader 1 on runwarden-c",
        Duration::from_secs(5),
        || metric(&c.metrics, "runwarden_leader") == Some(1.0),
    );

    // The third leader works too.
    let second_revision = crsvc(plane, &ns, "{.status.latestReadyRevision}");
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&manifest(
            "europe-docker.pkg.dev/e2e-project/apps/payments:v3",
        )),
    );
    wait_until(
        "the image change reconciled by runwarden-c",
        Duration::from_secs(60),
        || {
            let revision = crsvc(plane, &ns, "{.status.latestReadyRevision}");
            !revision.is_empty() && revision != second_revision && ready()
        },
    );
    let calls = counters(&emulator);
    assert_eq!(count(&calls, "run.services.create"), 1, "{calls:?}");
    assert_eq!(count(&calls, "run.services.patch"), 2, "{calls:?}");
}

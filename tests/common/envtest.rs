//! A real etcd + kube-apiserver for tests, found the envtest way: `$KUBEBUILDER_ASSETS`
//! (default `/usr/local/kubebuilder/bin`), with etcd also looked up on `PATH` (Debian's
//! `etcd-server` installs `/usr/bin/etcd`). Without them, tests say loudly that they skipped.
//!
//! One control plane serves a whole test binary. Each process runs under a small shell
//! watchdog that stops it when the test binary exits or its plane is dropped, so nothing
//! outlives the tests.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running control plane.
pub struct ControlPlane {
    /// Kubeconfig file with an admin token.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// Seconds from start to `/readyz`.
    pub startup_seconds: f64,
    _dir: tempfile::TempDir,
    _children: Vec<Child>,
}

fn assets_dir() -> PathBuf {
    std::env::var_os("KUBEBUILDER_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/kubebuilder/bin"))
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let in_assets = assets_dir().join(name);
    if in_assets.is_file() {
        return Some(in_assets);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `program` under a watchdog that stops it when this test process exits or the
/// watchdog gets SIGTERM (the control plane is dropped): SIGTERM, then SIGKILL after 5 s (a
/// kube-apiserver whose etcd is already gone may never finish its graceful shutdown, and each
/// one left behind holds a few hundred MiB for the rest of the CI run).
///
/// Once it has stopped, the watchdog deletes `cleanup` (etcd's data, a few hundred MiB: the
/// shared plane lives in a static, whose temporary directory is never dropped).
fn spawn_watched(program: &Path, args: &[String], log: &Path, cleanup: Option<&Path>) -> Child {
    let script = r#"prog="$1"; shift; "$prog" "$@" & child=$!
stop=0; trap 'stop=1' TERM
while [ "$stop" = 0 ] && kill -0 "$WATCH_PID" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill "$child" 2>/dev/null
i=0; while [ "$i" -lt 10 ] && kill -0 "$child" 2>/dev/null; do sleep 0.5; i=$((i+1)); done
kill -9 "$child" 2>/dev/null; wait "$child" 2>/dev/null
if [ -n "$CLEANUP" ]; then rm -rf "$CLEANUP"; fi"#;
    let log = std::fs::File::create(log).expect("log file");
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(program)
        .args(args)
        .env("WATCH_PID", std::process::id().to_string())
        .env("CLEANUP", cleanup.unwrap_or(Path::new("")))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn control plane process")
}

/// The shared control plane, or `None` (after a loud message) when the binaries are missing.
pub fn shared() -> Option<&'static ControlPlane> {
    static PLANE: OnceLock<Option<ControlPlane>> = OnceLock::new();
    PLANE.get_or_init(start).as_ref()
}

/// Prints the loud skip message used by every test that needs a control plane.
pub fn skip(test: &str) {
    skip_check("end-to-end", test, &no_plane());
}

/// Why there is no control plane.
pub fn no_plane() -> String {
    format!(
        "no kube-apiserver/etcd in {} or on PATH (set KUBEBUILDER_ASSETS)",
        assets_dir().display()
    )
}

/// Says loudly that a check did not run: on the real stderr, past the test harness's capture,
/// and, when `$RUNWARDEN_SKIP_LOG` names a file, as a line `area<TAB>check<TAB>reason` appended
/// to it, which `.ci/run` prints in its summary. `area` is `end-to-end`, `chart` or `image`.
pub fn skip_check(area: &str, check: &str, reason: &str) {
    use std::io::Write;
    let _ = std::io::stderr()
        .write_all(format!("\n*** SKIPPED {area} check {check}: {reason} ***\n\n").as_bytes());
    if let Some(path) = std::env::var_os("RUNWARDEN_SKIP_LOG").filter(|p| !p.is_empty())
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // One write of the whole line: parallel tests append to the same file.
        let _ = f.write_all(format!("{area}\t{check}\t{reason}\n").as_bytes());
    }
}

/// A control plane of its own, without runwarden's CRDs (e.g. to install an older chart), or
/// `None` when the binaries are missing. Stopped when dropped.
pub fn bare() -> Option<ControlPlane> {
    start_plane(false)
}

fn start() -> Option<ControlPlane> {
    start_plane(true)
}

fn start_plane(install_crds: bool) -> Option<ControlPlane> {
    let apiserver = find_binary("kube-apiserver")?;
    let etcd = find_binary("etcd")?;
    // Ports are picked here and bound by etcd and the API server a moment later; another
    // process can take one in between (a parallel test's child, any outgoing connection's local
    // port). Such a start ends with a process that exits at once: try again with new ports.
    let mut failures = vec![];
    for _ in 0..3 {
        match try_start(&apiserver, &etcd) {
            Ok(plane) => {
                if install_crds {
                    plane.install_crds();
                }
                return Some(plane);
            }
            Err(why) => {
                eprintln!("envtest: start failed, trying again with other ports: {why}");
                failures.push(why);
            }
        }
    }
    panic!(
        "the test control plane did not start in 3 tries:\n{}",
        failures.join("\n---\n")
    );
}

/// The last `n` bytes of a log file (on a character boundary).
fn log_tail(path: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let mut from = log.len().saturating_sub(n);
    while !log.is_char_boundary(from) {
        from += 1;
    }
    log[from..].to_string()
}

/// One start of etcd and the API server on fresh ports, until `/readyz`; `Err` with the log of
/// a process that exited first.
fn try_start(apiserver: &Path, etcd: &Path) -> Result<ControlPlane, String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    // A token of this plane's own: a request that reaches another test's API server on a port
    // taken from under us is refused instead of answered.
    let token = format!("runwarden-envtest-{:016x}", fastrand::u64(..));
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let etcd_child = spawn_watched(
        etcd,
        &[
            "--data-dir".into(),
            d.join("etcd").display().to_string(),
            "--listen-client-urls".into(),
            etcd_url.clone(),
            "--advertise-client-urls".into(),
            etcd_url.clone(),
            "--listen-peer-urls".into(),
            format!("http://127.0.0.1:{peer_port}"),
        ],
        &d.join("etcd.log"),
        Some(&d.join("etcd")),
    );
    let key = d.join("sa.key");
    let public = d.join("sa.pub");
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args(["rsa", "-in"])
            .arg(&key)
            .args(["-pubout", "-out"])
            .arg(&public)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "openssl is needed to make the service account key of the test API server"
    );
    std::fs::write(
        d.join("tokens.csv"),
        format!("{token},admin,admin,system:masters\n"),
    )
    .expect("token file");
    let server = format!("https://127.0.0.1:{api_port}");
    let api_child = spawn_watched(
        apiserver,
        &[
            "--etcd-servers".into(),
            etcd_url,
            "--bind-address".into(),
            "127.0.0.1".into(),
            "--advertise-address".into(),
            "127.0.0.1".into(),
            "--secure-port".into(),
            api_port.to_string(),
            "--cert-dir".into(),
            d.join("certs").display().to_string(),
            "--token-auth-file".into(),
            d.join("tokens.csv").display().to_string(),
            "--service-account-issuer".into(),
            format!("{server}/"),
            "--service-account-key-file".into(),
            public.display().to_string(),
            "--service-account-signing-key-file".into(),
            key.display().to_string(),
            "--service-cluster-ip-range".into(),
            "10.0.0.0/24".into(),
            "--authorization-mode".into(),
            "RBAC".into(),
            "--disable-admission-plugins".into(),
            "ServiceAccount".into(),
        ],
        &d.join("apiserver.log"),
        None,
    );
    let kubeconfig = d.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\nusers:\n- name: admin\n  user: {{token: {token}}}\ncontexts:\n- name: envtest\n  context: {{cluster: envtest, user: admin}}\ncurrent-context: envtest\n"
        ),
    )
    .expect("kubeconfig");
    let mut plane = ControlPlane {
        kubeconfig,
        server,
        startup_seconds: 0.0,
        _dir: dir,
        _children: vec![etcd_child, api_child],
    };
    // Wait for /readyz, with this plane's token (see above).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&plane.kubeconfig)
            .args(["get", "--raw", "/readyz"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        for (i, name) in ["etcd", "apiserver"].into_iter().enumerate() {
            if plane._children[i].try_wait().ok().flatten().is_some() {
                let log = log_tail(&plane._dir.path().join(format!("{name}.log")), 1500);
                return Err(format!(
                    "{name} exited before the API server was ready:\n{log}"
                ));
            }
        }
        if Instant::now() > deadline {
            let log = log_tail(&plane._dir.path().join("apiserver.log"), 3000);
            panic!("kube-apiserver not ready after 90s; its log ends with:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    plane.startup_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "envtest: kube-apiserver {} ready in {:.2}s",
        plane.server, plane.startup_seconds
    );
    Ok(plane)
}

impl Drop for ControlPlane {
    /// Asks each watchdog to stop its process (SIGTERM, then SIGKILL after 5 s), without waiting.
    fn drop(&mut self) {
        for child in &mut self._children {
            if child.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill")
                    .arg(child.id().to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// A control plane of its own with runwarden's CRDs, or `None` when the binaries are missing.
/// Stopped when dropped.
pub fn own() -> Option<ControlPlane> {
    start_plane(true)
}

impl ControlPlane {
    /// Applies the committed CRDs and waits until the API server serves them.
    pub fn install_crds(&self) {
        self.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/crds/runwarden.dev.yaml"),
        ]);
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/cloudrunservices.runwarden.dev",
            "crd/cloudrunjobs.runwarden.dev",
        ]);
    }

    /// Runs kubectl against this control plane; panics with its output when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.try_kubectl(args, stdin);
        match out {
            Ok(stdout) => stdout,
            Err(stderr) => panic!("kubectl {} failed: {stderr}", args.join(" ")),
        }
    }

    /// Runs kubectl; `Err(stderr)` when it fails.
    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let (ok, stdout, stderr) = self.run_kubectl(args, stdin);
        if ok { Ok(stdout) } else { Err(stderr) }
    }

    /// Runs kubectl: whether it succeeded, its stdout and its stderr (where kubectl prints the
    /// API server's warnings even on success).
    pub fn run_kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
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

    /// A kube client for this control plane (bound to the calling test's runtime).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("client config");
        kube::Client::try_from(config).expect("client")
    }
}

//! Helpers for tests and benchmarks that run the `runwarden` binary as separate processes:
//! child processes stopped on drop, the addresses they listen on, polling, and plain HTTP to
//! the emulator and the metrics endpoint.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where a child's log lines go once its address has been read from them.
pub enum Logs {
    /// Nowhere.
    Discard,
    /// This process's standard error.
    Stderr,
    /// A file.
    File(std::fs::File),
}

/// Spawns a runwarden process told to listen on port 0 and logging JSON, and returns it with the
/// address it bound, read from its first `runwarden::listen` log line. Port 0 because a port
/// picked here and bound later by the child can be taken in between: by another test's child,
/// or as the local port of any outgoing connection (CI once had a replica fail to listen while
/// the test polled another test's controller on that port).
pub fn spawn_listening(cmd: &mut Command, what: &str, logs: Logs) -> (Proc, SocketAddr) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut logs = logs;
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.is_some()
                && let Some(addr) = announced(&line)
            {
                let _ = tx.take().map(|tx| tx.send(addr));
            }
            match &mut logs {
                Logs::Discard => {}
                Logs::Stderr => eprintln!("{line}"),
                Logs::File(f) => {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (proc, addr),
        Err(_) => panic!("{what} did not say where it listens within 30 s (see its log above)"),
    }
}

/// The address of a `runwarden::listen` JSON log line.
fn announced(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["target"] == "runwarden::listen").then_some(())?;
    v["addr"].as_str()?.parse().ok()
}

/// Polls `check` every 100 ms; panics naming `what` after `timeout`. Returns the time it took.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// One HTTP call: status and body, `None` when nothing answers.
pub fn http(method: &str, url: &str, body: Option<serde_json::Value>) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().expect("HTTP method"), url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.ok()?;
        Some((resp.status().as_u16(), resp.text().await.ok()?))
    })
}

/// `GET url`.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    http("GET", url, None)
}

/// An emulator's request counters by method key (`GET /emulator/v1/counters`).
pub fn counters(emulator: &str) -> serde_json::Map<String, serde_json::Value> {
    let (_, body) =
        http_get(&format!("{emulator}/emulator/v1/counters")).expect("emulator counters");
    serde_json::from_str::<serde_json::Value>(&body).expect("counters JSON")["counters"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Resets an emulator's request counters.
pub fn reset_counters(emulator: &str) {
    http("DELETE", &format!("{emulator}/emulator/v1/counters"), None).expect("reset counters");
}

/// Starts `runwarden emulator` (binary `bin`) on a port of its choosing with this operation
/// delay, and returns it with its base URL once it answers.
pub fn start_emulator(bin: &str, operation_delay: &str) -> (Proc, String) {
    let (emu, addr) = spawn_listening(
        Command::new(bin)
            .args([
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(["--operation-delay", operation_delay])
            .stdout(Stdio::null()),
        "the emulator",
        Logs::Discard,
    );
    let url = format!("http://{addr}");
    wait_until("the emulator", Duration::from_secs(20), || {
        http_get(&format!("{url}/emulator/v1/healthz")).is_some()
    });
    (emu, url)
}

/// A sample from a controller's /metrics: the sum of the lines of `name` whose labels contain
/// every one of `labels` (e.g. `code="OK"`).
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let (_, text) = http_get(&format!("{metrics}/metrics"))?;
    Some(
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (lbls, value) = match rest.strip_prefix('{') {
                    Some(r) => r.split_once("} ")?,
                    None => ("", rest.strip_prefix(' ')?),
                };
                labels
                    .iter()
                    .all(|want| lbls.contains(want))
                    .then(|| value.trim().parse::<f64>().ok())?
            })
            .sum(),
    )
}

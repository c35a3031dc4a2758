//! Helpers for tests and benchmarks that run the `runwarden` binary as separate processes:
//! child processes stopped on drop, free ports, polling, and plain HTTP to the emulator and
//! the metrics endpoint.

#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

/// A child process that is stopped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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

/// Starts `runwarden emulator` (binary `bin`) on a free port with this operation delay, and
/// returns it with its base URL once it answers.
pub fn start_emulator(bin: &str, operation_delay: &str) -> (Proc, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let emu = Proc(
        std::process::Command::new(bin)
            .args([
                "emulator",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--operation-delay",
                operation_delay,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the emulator"),
    );
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

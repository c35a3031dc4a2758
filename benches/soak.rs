//! Soak benchmark: `RUNWARDEN_SOAK_SERVICES` CloudRunServices (default 1000) created, updated
//! and deleted while 20% of the controller's Cloud Run calls fail and the leader is SIGKILLed
//! every ~25 s; then the invariants, as a table of PASS/FAIL with counts. Run it with
//! `cargo bench --bench soak`; it is not a test. The code is `tests/common/soak.rs`, the same
//! that `tests/soak.rs` runs at 30 services in the suite.
//!
//! Environment: `RUNWARDEN_SOAK_SERVICES` (default 1000), `RUNWARDEN_SOAK_KILLS` (leader
//! SIGKILLs, default 4), `RUNWARDEN_SOAK_KILL_EVERY` (seconds between kills, default 25),
//! `RUNWARDEN_SOAK_FAULT_RATE` (default 0.2), `RUNWARDEN_SOAK_OPERATION_DELAY` (the emulator's,
//! default `1s`), `RUNWARDEN_SOAK_TIMEOUT` (seconds allowed for the calm phase and for the final
//! convergence, default 900). Exits non-zero when an invariant fails.

#[path = "../tests/common/envtest.rs"]
mod envtest;
#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/soak.rs"]
mod soak;

use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/soak.rs: a benchmark; run it with `cargo bench --bench soak`");
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let Some(plane) = envtest::shared() else {
        envtest::skip("soak benchmark");
        return;
    };
    let params = soak::Params {
        services: env("RUNWARDEN_SOAK_SERVICES", 1000),
        kills: env("RUNWARDEN_SOAK_KILLS", 4),
        kill_every: Duration::from_secs(env("RUNWARDEN_SOAK_KILL_EVERY", 25)),
        fault_rate: env("RUNWARDEN_SOAK_FAULT_RATE", 0.2),
        operation_delay: env("RUNWARDEN_SOAK_OPERATION_DELAY", "1s".to_string()),
        ready_timeout: Duration::from_secs(env("RUNWARDEN_SOAK_TIMEOUT", 900)),
        label: "soak-bench",
        ..soak::Params::small()
    };
    eprintln!("soak-bench: {params:?}");
    let report = soak::run(plane, BIN, &params);
    report.print();
    if !report.failed().is_empty() {
        std::process::exit(1);
    }
}

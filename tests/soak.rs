//! The soak at small size, in the suite: 30 CloudRunServices created, updated (images,
//! invokers) and deleted while 20% of the controller's Cloud Run calls fail (UNAVAILABLE,
//! RESOURCE_EXHAUSTED, ABORTED) and the leader of two `runwarden controller --leader-election`
//! processes is SIGKILLed twice, 25 s apart; then every invariant must hold. The same code as
//! `cargo bench --bench soak` (`tests/common/soak.rs`), on a real kube-apiserver; skips loudly
//! without one.

#[path = "common/envtest.rs"]
mod envtest;
#[path = "common/process.rs"]
mod process;
#[path = "common/soak.rs"]
mod soak;

const BIN: &str = env!("CARGO_BIN_EXE_runwarden");

#[test]
fn thirty_services_survive_faults_and_two_leader_kills() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let Some(plane) = envtest::shared() else {
        envtest::skip("thirty_services_survive_faults_and_two_leader_kills");
        return;
    };
    let report = soak::run(plane, BIN, &soak::Params::small());
    report.print();
    assert_eq!(report.kills, 2, "two leader kills");
    assert!(report.image_changes > 0 && report.invoker_changes > 0 && report.deletes > 0);
    assert!(report.creates > 0, "services created during the chaos");
    let failed = report.failed();
    assert!(
        failed.is_empty(),
        "soak invariants failed (replica logs in {}):\n{}",
        report.logs.display(),
        failed
            .iter()
            .map(|i| format!("- {}: {} — {}", i.name, i.checked, i.detail))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! The chart and the plain manifests ship byte-identical copies of the committed CRDs.

mod common;

const CRDS: &str = "crds/runwarden.dev.yaml";

#[test]
fn crd_copies_are_byte_identical_to_the_committed_crds() {
    let committed = common::repo_path(CRDS);
    assert!(
        committed.is_file(),
        "{} is missing: commit the output of `runwarden crd` there",
        committed.display()
    );
    for copy in ["helm/runwarden/files/crds.yaml", "deploy/base/crds.yaml"] {
        common::assert_same_bytes(CRDS, copy);
    }
}

/// The guardrails' admission policies ship next to the CRDs, in the same three places.
#[test]
fn admission_policy_copies_are_byte_identical() {
    const ADMISSION: &str = "crds/admission.yaml";
    assert!(
        common::repo_path(ADMISSION).is_file(),
        "{ADMISSION} is missing: commit the output of `runwarden crd --only admission` there"
    );
    for copy in [
        "helm/runwarden/files/admission.yaml",
        "deploy/admission/admission.yaml",
    ] {
        common::assert_same_bytes(ADMISSION, copy);
    }
}

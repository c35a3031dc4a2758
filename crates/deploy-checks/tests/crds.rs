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

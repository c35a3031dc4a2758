//! `helm upgrade` from the previous chart (0.1.0, whose CRDs sat in `crds/`, which Helm never
//! upgrades) to this one (CRDs as templates) on a real kube-apiserver: after the documented
//! one-time adoption step, the upgrade brings the new CRDs, an existing CloudRunService keeps
//! its fields, and `helm uninstall` leaves the CRDs and the object in place.
//!
//! Helm runs through helm-python-sdk (Helm's Go SDK, `crates/deploy-checks/helm_sdk.py`); the
//! previous chart is taken from git (`git archive`) at test time.

mod common;

use std::process::Command;

use common::envtest::{self, ControlPlane};

/// The last commit whose chart shipped its CRDs in `crds/` (chart 0.1.0).
const PREVIOUS_CHART_COMMIT: &str = "df54adfb01e1edfa802b142cb203a4d44af020f0";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RELEASE: &str = "runwarden";
const NAMESPACE: &str = "runwarden-system";
const CRDS: [&str; 3] = [
    "cloudrunservices.runwarden.dev",
    "vpcaccessconnectors.runwarden.dev",
    "runsecuritypolicies.runwarden.dev",
];

fn helm_python() -> String {
    std::env::var("RUNWARDEN_HELM_PYTHON").unwrap_or_else(|_| "/tmp/helmpk/venv/bin/python".into())
}

/// `helm_sdk.py` with `args`; `None` without helm-python-sdk, panics when Helm fails.
fn helm(args: &[&str]) -> Option<String> {
    let out = Command::new(helm_python())
        .arg(format!("{ROOT}/crates/deploy-checks/helm_sdk.py"))
        .args(args)
        .output()
        .ok()?;
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `after` still has every field of `before` with its value (objects may gain fields,
/// e.g. ones a newer CRD defaults; anything else must be equal).
fn keeps(after: &serde_json::Value, before: &serde_json::Value) -> bool {
    match (after, before) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => b
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| keeps(av, v))),
        _ => after == before,
    }
}

/// The chart as it was at `PREVIOUS_CHART_COMMIT`, extracted under `dir`.
fn previous_chart(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let archive = Command::new("git")
        .args([
            "-C",
            ROOT,
            "archive",
            "--format=tar",
            PREVIOUS_CHART_COMMIT,
            "helm/runwarden",
        ])
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !archive.status.success() {
        return Err(format!(
            "git archive {PREVIOUS_CHART_COMMIT}: {}",
            String::from_utf8_lossy(&archive.stderr).trim()
        ));
    }
    let tar = dir.join("previous.tar");
    std::fs::write(&tar, &archive.stdout).map_err(|e| e.to_string())?;
    let ok = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err("tar -xf of the previous chart failed".into());
    }
    Ok(dir.join("helm/runwarden"))
}

fn crd(plane: &ControlPlane, name: &str) -> serde_json::Value {
    serde_json::from_str(&plane.kubectl(&["get", "crd", name, "-o", "json"])).expect("CRD JSON")
}

fn reason_column_priority(crd: &serde_json::Value) -> Option<i64> {
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "Reason")
        .map(|c| c["priority"].as_i64().unwrap_or(0))
}

#[test]
fn helm_upgrade_from_the_previous_chart_updates_the_crds_and_keeps_objects() {
    let Some(plane) = envtest::bare() else {
        envtest::skip_check(
            "chart",
            "helm upgrade from chart 0.1.0",
            &envtest::no_plane(),
        );
        return;
    };
    let plane = &plane;
    let dir = tempfile::tempdir().expect("temp dir");
    let old_chart = match previous_chart(dir.path()) {
        Ok(c) => c,
        Err(why) => {
            envtest::skip_check("chart", "helm upgrade from chart 0.1.0", &why);
            return;
        }
    };
    let kubeconfig = plane.kubeconfig.display().to_string();
    plane.kubectl(&["create", "namespace", NAMESPACE]);

    // 1. The previous chart, as users installed it: Helm creates crds/ on install.
    let installed = helm(&[
        "install",
        &kubeconfig,
        &old_chart.display().to_string(),
        RELEASE,
        NAMESPACE,
        "{}",
    ]);
    if installed.is_none() {
        envtest::skip_check(
            "chart",
            "helm upgrade from chart 0.1.0",
            "no helm-python-sdk (set RUNWARDEN_HELM_PYTHON; .ci/run installs it from PyPI)",
        );
        return;
    }
    plane.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/cloudrunservices.runwarden.dev",
    ]);
    let before = crd(plane, CRDS[0]);
    assert_eq!(
        reason_column_priority(&before),
        Some(1),
        "the previous chart's CRD should hide Reason behind -o wide; is PREVIOUS_CHART_COMMIT right?"
    );

    // 2. A user's object, with the old CRD.
    let obj = serde_json::json!({
        "apiVersion": "runwarden.dev/v1alpha1",
        "kind": "CloudRunService",
        "metadata": {"name": "payments", "namespace": "default"},
        "spec": {
            "region": "europe-west1",
            "ingress": "InternalAndCloudLoadBalancing",
            "containers": [{"image": "europe-docker.pkg.dev/p/apps/payments@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
            "access": {"invokers": ["group:frontend@example.com"]},
            "labels": {"team": "payments"}
        }
    });
    plane.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&obj.to_string()),
    );
    let get = || -> serde_json::Value {
        serde_json::from_str(&plane.kubectl(&[
            "get",
            "cloudrunservice",
            "payments",
            "-n",
            "default",
            "-o",
            "json",
        ]))
        .unwrap()
    };
    let spec_before = get()["spec"].clone();

    // 3. The documented one-time step (README, "Upgrading the chart"): let the release adopt
    //    the CRDs that the previous chart created outside its manifest.
    for name in CRDS {
        plane.kubectl(&[
            "label",
            "crd",
            name,
            "app.kubernetes.io/managed-by=Helm",
            "--overwrite",
        ]);
        plane.kubectl(&[
            "annotate",
            "crd",
            name,
            &format!("meta.helm.sh/release-name={RELEASE}"),
            &format!("meta.helm.sh/release-namespace={NAMESPACE}"),
            "--overwrite",
        ]);
    }

    // 4. helm upgrade to this chart.
    helm(&[
        "upgrade",
        &kubeconfig,
        &format!("{ROOT}/helm/runwarden"),
        RELEASE,
        NAMESPACE,
        "{}",
    ])
    .expect("helm-python-sdk was there a moment ago");
    let after = crd(plane, CRDS[0]);
    assert_eq!(
        reason_column_priority(&after),
        Some(0),
        "helm upgrade left the old CRD: {}",
        after["spec"]["versions"][0]["additionalPrinterColumns"]
    );
    assert_eq!(
        after["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["conditions"]["x-kubernetes-list-type"],
        "map"
    );
    for name in CRDS {
        assert_eq!(
            crd(plane, name)["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep",
            "{name}"
        );
    }
    // Every field the object had survives, with its value; fields the new CRD defaults
    // (e.g. a new `managementPolicy: Manage`) may appear.
    let spec_after = get()["spec"].clone();
    assert!(
        keeps(&spec_after, &spec_before),
        "a field changed or vanished across the upgrade:\nbefore {spec_before}\nafter  {spec_after}"
    );

    // 5. helm uninstall keeps the CRDs, hence every object.
    helm(&["uninstall", &kubeconfig, RELEASE, NAMESPACE]).expect("helm");
    for name in CRDS {
        crd(plane, name);
    }
    assert_eq!(
        get()["spec"],
        spec_after,
        "the object is gone or changed after uninstall"
    );
}

//! Helpers shared by the deploy-checks tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of a file relative to the repository root.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// Reads a file relative to the repository root, panicking with its path if it is missing.
pub fn read(rel: &str) -> String {
    let path = repo_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn read_bytes(rel: &str) -> Vec<u8> {
    let path = repo_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

/// All non-empty documents of a multi-document YAML stream.
pub fn yaml_docs(text: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Follows a path of mapping keys, e.g. `get(&v, &["spec", "template"])`.
pub fn get<'a>(v: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a serde_yaml::Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

pub fn get_str<'a>(v: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(|v| v.as_str())
}

/// Asserts two files are byte-identical, naming the first differing line.
pub fn assert_same_bytes(a_rel: &str, b_rel: &str) {
    let a = read_bytes(a_rel);
    let b = read_bytes(b_rel);
    if a != b {
        let a = String::from_utf8_lossy(&a);
        let b = String::from_utf8_lossy(&b);
        let line = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .map(|i| i + 1)
            .unwrap_or_else(|| a.lines().count().min(b.lines().count()) + 1);
        panic!(
            "{a_rel} and {b_rel} differ (first difference at line {line}); they must be byte-identical copies"
        );
    }
}

/// Says loudly that a check did not run: on the real stderr (past the test harness's output
/// capture) and, when `$RUNWARDEN_SKIP_LOG` names a file, as a line `area<TAB>check<TAB>reason`
/// appended to it, which `.ci/run` prints in its summary. `area` is `end-to-end`, `chart` or
/// `image`.
pub fn skip(area: &str, check: &str, reason: &str) {
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

/// The Python that has helm-python-sdk: `$RUNWARDEN_HELM_PYTHON`, default
/// `/tmp/helmpk/venv/bin/python` (where `.ci/run` installs it).
pub fn helm_python() -> String {
    std::env::var("RUNWARDEN_HELM_PYTHON").unwrap_or_else(|_| "/tmp/helmpk/venv/bin/python".into())
}

/// Runs `helm_sdk.py` with `args`: `None` when helm-python-sdk is not installed, else
/// `(success, stdout, stderr)`.
pub fn helm(args: &[&str]) -> Option<(bool, String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm_sdk.py");
    let out = std::process::Command::new(helm_python())
        .arg(script)
        .args(args)
        .output()
        .ok()?;
    if out.status.code() == Some(3) {
        return None;
    }
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Why Helm checks skip when [`helm`] answers `None`.
pub const NO_HELM: &str = "no helm-python-sdk (set RUNWARDEN_HELM_PYTHON to a Python that has it; .ci/run installs it from PyPI)";

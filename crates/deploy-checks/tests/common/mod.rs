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

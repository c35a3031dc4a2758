//! Reading manifests without a cluster: the input side of `runwarden plan -f PATH...`.
//!
//! [`load`] reads files, directories (recursively: `*.yaml`, `*.yml`, `*.json`, sorted by name,
//! hidden entries skipped) and `-` (stdin); a file named explicitly is read whatever its
//! extension. Each file may hold several YAML documents (`---`) or, for `*.json`, several JSON
//! values; `kind: List` (and `kind: <Kind>List`, as `kubectl get -o yaml` writes) contributes its
//! `items`. Empty documents are skipped silently.
//!
//! # What is checked here, and what is not
//!
//! | check | where |
//! |---|---|
//! | syntax: YAML/JSON, UTF-8, nesting (at most 64 levels), size (16 MiB per file) | here |
//! | `apiVersion` is `runwarden.dev/v1alpha1` for runwarden's kinds, `v1` for `Namespace` | here |
//! | `metadata.name` present and a DNS subdomain (a DNS label for `Namespace`); `metadata.namespace` a DNS label; `metadata` has only `ObjectMeta` fields; labels and annotations are strings | here |
//! | one object per kind, namespace and name across all inputs (a `Namespace` may repeat if identical) | here |
//! | the CRD's structural schema on everything but `status`: types, `enum`, `required`, `minLength`/`maxLength`, `minItems`/`maxItems`, `minimum`/`maximum`, `minProperties`/`maxProperties`, `pattern`, `additionalProperties`, unknown fields | here (`schema.rs`) |
//! | the CRD's CEL rules (`x-kubernetes-validations`), e.g. "exactly one of `useDefault` or `policy`" | **not here**: the controller's `controller::cloudrunservice::validate` repeats them and the plan engine calls it |
//! | `RunSecurityPolicy` evaluation, Google state | not here: the plan engine |
//!
//! The schema is the one runwarden generates ([`crate::crd::all`]), so it cannot drift from the
//! CRDs in `crds/`. As the API server does, a `null` in a non-nullable field counts as absent and
//! `3.0` is an integer. Unknown fields are errors: the API server would refuse them (strict field
//! validation) or silently drop them, and either way the object would not be what the file says.
//!
//! Kinds other than runwarden's and `Namespace` are skipped with a [`Note`]. An unknown kind in
//! the `runwarden.dev` group is a [`Problem`] instead (most likely a typo of one of ours).
//!
//! # What the loaded objects look like
//!
//! Like the API server would, the loader fills in:
//! - `metadata.namespace` = `default_namespace` for namespaced kinds that have none (and drops it
//!   from the cluster-scoped `RunSecurityPolicy`);
//! - `metadata.uid`, when absent, = [`plan_uid`]: `plan-<namespace>-<name>` (`plan-<name>` for
//!   cluster-scoped kinds), or `plan-<16 hex digits>` (a hash of namespace and name) when that
//!   would not be a valid Google label value (longer than 63 characters, or with a `.`). It is
//!   stable across runs, so owner labels computed from it are too — but it is *not* the uid the
//!   object has in a cluster;
//! - `metadata.generation` = 1 when absent;
//! - serde defaults of the Rust types (the same values as the CRD's `default`s).
//!
//! `status` is ignored (dropped) whatever it holds.
//!
//! # Locations
//!
//! A [`Problem`] names the file (`<stdin>` for `-`), the **1-based** index of the document in it
//! (0 when the problem concerns the whole file, e.g. it cannot be read) and a field path such as
//! `spec.containers[0].image` (prefixed with `items[3].` inside a List; map keys in brackets:
//! `spec.labels[team]`). No input makes [`load`] panic; every failure is a `Problem`.
//! [`Manifests::sources`] keeps the same location for every object read, so later steps (the
//! controller's validation, policy evaluation) can point at the file too ([`Source::problem`]).
//!
//! Problems are collected across all inputs (at most 50 per document), so one run shows them all.
//! A YAML syntax error ends the reading of its file: later documents cannot be found reliably.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod parse;
mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::GROUP;
use crate::api::v1alpha1::{CloudRunJob, CloudRunService, RunSecurityPolicy, VpcAccessConnector};
use schema::{Validator, describe, quote, truncate, unknown_field_message};

/// The API version of runwarden's kinds.
pub const API_VERSION: &str = "runwarden.dev/v1alpha1";
/// The CRD version the schemas are taken from.
const VERSION: &str = "v1alpha1";
/// The file name problems and notes use for `-`.
pub const STDIN_NAME: &str = "<stdin>";
/// Largest file read; larger ones are a problem.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most problems reported for one document; the rest are summed up in one more.
const MAX_PROBLEMS_PER_DOCUMENT: usize = 50;
/// Deepest directory recursion.
const MAX_DIR_DEPTH: usize = 32;
/// The fields of `metadata` (Kubernetes `ObjectMeta`); others are unknown fields.
const OBJECT_META_FIELDS: [&str; 15] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// Everything read from the manifests, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifests {
    /// `CloudRunService`s, with namespace, uid and generation filled in.
    pub services: Vec<CloudRunService>,
    /// `CloudRunJob`s, with namespace, uid and generation filled in.
    pub jobs: Vec<CloudRunJob>,
    /// `VpcAccessConnector`s, with namespace, uid and generation filled in.
    pub connectors: Vec<VpcAccessConnector>,
    /// `RunSecurityPolicy`s (cluster-scoped), with uid and generation filled in.
    pub policies: Vec<RunSecurityPolicy>,
    /// Labels and annotations of the `Namespace` objects read, by name.
    pub namespaces: BTreeMap<String, NamespaceMeta>,
    /// Documents of kinds runwarden plan does not read.
    pub skipped: Vec<Note>,
    /// Where each object (and Namespace) was read, for messages about it (policy violations,
    /// the controller's validation): see [`Manifests::source`].
    pub sources: BTreeMap<ObjectKey, Source>,
}

impl Manifests {
    /// Where the object `kind` `namespace`/`name` was read (`namespace` is `None` for
    /// cluster-scoped kinds and Namespaces).
    pub fn source(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&Source> {
        self.sources.get(&ObjectKey {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

/// Identifies an object read: kind, namespace (`None` when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// Where an object was read: file, 1-based document index, and `items[3]` inside a List.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub document: usize,
    /// Empty, or `items[3]` inside a List.
    pub path: String,
}

impl Source {
    /// A problem about the field `path` (e.g. `spec.encryption.kmsKey`) of the object read here.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        let path = match (self.path.is_empty(), path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{path}", self.path),
        };
        Problem::new(&self.file, self.document, &path, message)
    }
}

impl fmt::Display for Source {
    /// `examples/x.yaml#2`, or `list.yaml#1 items[3]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file, self.document)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        Ok(())
    }
}

/// What a `Namespace` object contributes: its labels (for policy namespace selectors) and
/// annotations (`runwarden.dev/project-id`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A document that was skipped because runwarden plan does not read its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// File name as given (or found in a directory); `<stdin>` for `-`.
    pub file: String,
    /// 1-based document index in the file.
    pub document: usize,
    /// Where in the document: empty, or `items[3]` inside a List.
    pub path: String,
    pub api_version: String,
    pub kind: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}: ", self.file, self.document)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(
            f,
            "skipped {} {} (runwarden plan reads CloudRunService, CloudRunJob, VpcAccessConnector, RunSecurityPolicy and Namespace)",
            self.api_version, self.kind
        )
    }
}

/// Why the input cannot be planned: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// File name as given (or found in a directory); `<stdin>` for `-`.
    pub file: String,
    /// 1-based document index in the file; 0 when the problem concerns the whole file.
    pub document: usize,
    /// Field path such as `spec.containers[0].image`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl Problem {
    fn new(file: &str, document: usize, path: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            document,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    /// `examples/x.yaml#2: spec.containers[0].image: must not be empty`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.document > 0 {
            write!(f, "#{}", self.document)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Problem {}

/// Read every manifest under `paths` (`-` = stdin). `Err` holds every problem found, in input
/// order; `Ok` means every runwarden object passed the schema checks.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Result<Manifests, Vec<Problem>> {
    let mut loader = Loader::new(default_namespace);
    for path in paths {
        if path.as_os_str() == "-" {
            loader.reader(STDIN_NAME, std::io::stdin().lock());
        } else {
            loader.path(path);
        }
    }
    loader.finish()
}

/// Read the manifests in `reader`, named `name` in problems and notes (a name ending in `.json`
/// is read as JSON, anything else as YAML).
pub fn load_reader(
    name: &str,
    reader: impl Read,
    default_namespace: &str,
) -> Result<Manifests, Vec<Problem>> {
    let mut loader = Loader::new(default_namespace);
    loader.reader(name, reader);
    loader.finish()
}

/// The `metadata.uid` given to an object that has none (see the module docs): deterministic,
/// and a valid Google label value.
pub fn plan_uid(namespace: Option<&str>, name: &str) -> String {
    let readable = match namespace {
        Some(ns) => format!("plan-{ns}-{name}"),
        None => format!("plan-{name}"),
    };
    let label_safe = readable.len() <= 63
        && readable
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if label_safe {
        return readable;
    }
    // FNV-1a, 64 bits: stable across Rust versions and platforms (unlike `DefaultHasher`).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace
        .unwrap_or_default()
        .bytes()
        .chain(*b"/")
        .chain(name.bytes())
    {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("plan-{hash:016x}")
}

/// Which kind a runwarden object is, for messages and duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    CloudRunService,
    CloudRunJob,
    VpcAccessConnector,
    RunSecurityPolicy,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::CloudRunService,
        Kind::CloudRunJob,
        Kind::VpcAccessConnector,
        Kind::RunSecurityPolicy,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::CloudRunService => "CloudRunService",
            Kind::CloudRunJob => "CloudRunJob",
            Kind::VpcAccessConnector => "VpcAccessConnector",
            Kind::RunSecurityPolicy => "RunSecurityPolicy",
        }
    }

    fn namespaced(self) -> bool {
        self != Kind::RunSecurityPolicy
    }
}

/// Where a document came from, threaded through the per-object checks.
#[derive(Clone, Copy)]
struct At<'a> {
    file: &'a str,
    document: usize,
    /// `""`, or `items[3].` inside a List.
    prefix: &'a str,
}

impl At<'_> {
    fn source(&self) -> Source {
        Source {
            file: self.file.to_owned(),
            document: self.document,
            path: self.prefix.trim_end_matches('.').to_owned(),
        }
    }

    fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem::new(
            self.file,
            self.document,
            &format!("{}{path}", self.prefix),
            message,
        )
        .trim_path()
    }
}

impl Problem {
    /// `items[3].` + `` → `items[3]`.
    fn trim_path(mut self) -> Self {
        if self.path.ends_with('.') {
            self.path.pop();
        }
        self
    }
}

struct Loader<'a> {
    validator: &'static Validator,
    default_namespace: &'a str,
    out: Manifests,
    problems: Vec<Problem>,
}

impl<'a> Loader<'a> {
    fn new(default_namespace: &'a str) -> Self {
        Self {
            validator: Validator::shared(),
            default_namespace,
            out: Manifests::default(),
            problems: vec![],
        }
    }

    fn finish(self) -> Result<Manifests, Vec<Problem>> {
        if self.problems.is_empty() {
            Ok(self.out)
        } else {
            Err(self.problems)
        }
    }

    fn path(&mut self, path: &Path) {
        let name = path.display().to_string();
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut files = vec![];
                self.collect(path, &mut vec![], &mut files);
                for file in files {
                    self.file(&file);
                }
            }
            Ok(_) => self.file(path),
            Err(e) => self
                .problems
                .push(Problem::new(&name, 0, "", e.to_string())),
        }
    }

    /// Manifest files under `dir`, in name order, descending into subdirectories where they sort.
    /// `ancestors` are the canonical paths of the directories above, to stop at symlink loops.
    fn collect(&mut self, dir: &Path, ancestors: &mut Vec<PathBuf>, files: &mut Vec<PathBuf>) {
        let name = dir.display().to_string();
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if ancestors.contains(&canonical) {
            // A symlink back to a directory being read: its files are read already.
            return;
        }
        if ancestors.len() > MAX_DIR_DEPTH {
            self.problems.push(Problem::new(
                &name,
                0,
                "",
                format!("directories nested deeper than {MAX_DIR_DEPTH} levels"),
            ));
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems
                    .push(Problem::new(&name, 0, "", e.to_string()));
                return;
            }
        };
        let mut paths = vec![];
        for entry in entries {
            match entry {
                Ok(entry) => {
                    if !entry.file_name().to_string_lossy().starts_with('.') {
                        paths.push(entry.path());
                    }
                }
                Err(e) => self
                    .problems
                    .push(Problem::new(&name, 0, "", e.to_string())),
            }
        }
        paths.sort();
        ancestors.push(canonical);
        for path in paths {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => self.collect(&path, ancestors, files),
                Ok(m) if m.is_file() && is_manifest_name(&path) => files.push(path),
                Ok(_) => {}
                Err(e) => {
                    let name = path.display().to_string();
                    self.problems
                        .push(Problem::new(&name, 0, "", e.to_string()));
                }
            }
        }
        ancestors.pop();
    }

    fn file(&mut self, path: &Path) {
        let name = path.display().to_string();
        match std::fs::File::open(path) {
            Ok(f) => self.reader(&name, f),
            Err(e) => self
                .problems
                .push(Problem::new(&name, 0, "", e.to_string())),
        }
    }

    fn reader(&mut self, name: &str, reader: impl Read) {
        let mut bytes = vec![];
        if let Err(e) = reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
            self.problems
                .push(Problem::new(name, 0, "", format!("cannot be read: {e}")));
            return;
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            self.problems.push(Problem::new(
                name,
                0,
                "",
                format!("larger than {MAX_FILE_BYTES} bytes"),
            ));
            return;
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(Problem::new(
                    name,
                    0,
                    "",
                    format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                ));
                return;
            }
        };
        let (documents, problems) = parse::documents(name, text);
        for (index, value) in documents {
            let at = At {
                file: name,
                document: index,
                prefix: "",
            };
            let before = self.problems.len();
            self.document(at, value, false);
            self.cap_problems(before, at);
        }
        self.problems.extend(problems);
    }

    /// Keep at most [`MAX_PROBLEMS_PER_DOCUMENT`] of the problems added since `before`.
    fn cap_problems(&mut self, before: usize, at: At<'_>) {
        let added = self.problems.len().saturating_sub(before);
        if added > MAX_PROBLEMS_PER_DOCUMENT {
            self.problems.truncate(before + MAX_PROBLEMS_PER_DOCUMENT);
            self.problems.push(at.problem(
                "",
                format!(
                    "{} more problems in this document not shown",
                    added - MAX_PROBLEMS_PER_DOCUMENT
                ),
            ));
        }
    }

    fn document(&mut self, at: At<'_>, value: Value, in_list: bool) {
        let mut map = match value {
            Value::Null => return,
            Value::Object(map) => map,
            other => {
                self.problems.push(at.problem(
                    "",
                    format!(
                        "expected a Kubernetes object (a mapping with apiVersion and kind), got {}",
                        describe(&other)
                    ),
                ));
                return;
            }
        };
        let api_version = self.string_field(at, &map, "apiVersion");
        let kind = self.string_field(at, &map, "kind");
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            return;
        };

        if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
            if in_list {
                self.problems
                    .push(at.problem("", "a List inside a List is not supported"));
                return;
            }
            match map.remove("items") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let prefix = format!("{}items[{i}].", at.prefix);
                        let item_at = At {
                            prefix: &prefix,
                            ..at
                        };
                        self.document(item_at, item, true);
                    }
                }
                Some(other) => self
                    .problems
                    .push(at.problem("items", format!("must be a list, got {}", describe(&other)))),
            }
            return;
        }

        if kind == "Namespace" && api_version == "v1" {
            self.namespace(at, &map);
            return;
        }
        if let Some(k) = Kind::ALL.into_iter().find(|k| k.name() == kind) {
            if api_version != API_VERSION {
                self.problems.push(at.problem(
                    "apiVersion",
                    format!(
                        "{} is not served for {kind}; use {API_VERSION}",
                        quote(&api_version)
                    ),
                ));
                return;
            }
            match k {
                Kind::CloudRunService => {
                    if let Some(o) = self.object(at, k, &mut map) {
                        self.out.services.push(o);
                    }
                }
                Kind::CloudRunJob => {
                    if let Some(o) = self.object(at, k, &mut map) {
                        self.out.jobs.push(o);
                    }
                }
                Kind::VpcAccessConnector => {
                    if let Some(o) = self.object(at, k, &mut map) {
                        self.out.connectors.push(o);
                    }
                }
                Kind::RunSecurityPolicy => {
                    if let Some(o) = self.object(at, k, &mut map) {
                        self.out.policies.push(o);
                    }
                }
            }
            return;
        }
        if api_version.split('/').next() == Some(GROUP) {
            let served: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            self.problems.push(at.problem(
                "kind",
                format!(
                    "{} is not a kind of {GROUP}; it serves {}",
                    quote(&kind),
                    served.join(", ")
                ),
            ));
            return;
        }
        self.out.skipped.push(Note {
            file: at.file.to_owned(),
            document: at.document,
            path: at.prefix.trim_end_matches('.').to_owned(),
            api_version: truncate(&api_version, 253),
            kind: truncate(&kind, 253),
        });
    }

    /// A required, non-empty string field of the document root.
    fn string_field(&mut self, at: At<'_>, map: &Map<String, Value>, key: &str) -> Option<String> {
        match map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            None | Some(Value::Null) => {
                self.problems
                    .push(at.problem(key, "required field is missing"));
                None
            }
            Some(Value::String(_)) => {
                self.problems.push(at.problem(key, "must not be empty"));
                None
            }
            Some(other) => {
                self.problems
                    .push(at.problem(key, format!("must be a string, got {}", describe(other))));
                None
            }
        }
    }

    fn namespace(&mut self, at: At<'_>, map: &Map<String, Value>) {
        let mut problems = vec![];
        let metadata = match map.get("metadata") {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(other) => {
                problems.push(at.problem(
                    "metadata",
                    format!("must be an object, got {}", describe(other)),
                ));
                None
            }
        };
        let empty = Map::new();
        let metadata = metadata.unwrap_or(&empty);
        check_metadata_fields(at, metadata, &mut problems);
        let name = check_name(at, metadata, true, &mut problems);
        let labels = string_map(at, metadata, "labels", &mut problems);
        let annotations = string_map(at, metadata, "annotations", &mut problems);
        if !problems.is_empty() {
            self.problems.extend(problems);
            return;
        }
        let Some(name) = name else { return };
        let meta = NamespaceMeta {
            labels,
            annotations,
        };
        let key = ObjectKey {
            kind: "Namespace".into(),
            namespace: None,
            name: name.clone(),
        };
        match self.out.namespaces.get(&name) {
            Some(existing) if *existing != meta => {
                let first = self
                    .out
                    .sources
                    .get(&key)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.problems.push(at.problem(
                    "metadata.name",
                    format!(
                        "Namespace {name} is also defined in {first}, with different labels or annotations"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                self.out.sources.insert(key, at.source());
                self.out.namespaces.insert(name, meta);
            }
        }
    }

    /// Check a runwarden object, fill in what the API server would, and read it as `T`.
    fn object<T: DeserializeOwned>(
        &mut self,
        at: At<'_>,
        kind: Kind,
        map: &mut Map<String, Value>,
    ) -> Option<T> {
        let mut problems = vec![];
        let mut metadata = match map.remove("metadata") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => Map::new(),
            Some(other) => {
                problems.push(at.problem(
                    "metadata",
                    format!("must be an object, got {}", describe(&other)),
                ));
                Map::new()
            }
        };
        check_metadata_fields(at, &metadata, &mut problems);
        let name = check_name(at, &metadata, false, &mut problems);
        let namespace = if kind.namespaced() {
            match metadata.get("namespace") {
                None | Some(Value::Null) => Some(self.default_namespace.to_owned()),
                Some(Value::String(ns)) if is_dns_label(ns) => Some(ns.clone()),
                Some(other) => {
                    problems.push(at.problem(
                        "metadata.namespace",
                        format!(
                            "must be a lowercase RFC 1123 label (at most 63 of a-z, 0-9 and -), got {}",
                            describe(other)
                        ),
                    ));
                    None
                }
            }
        } else {
            metadata.remove("namespace");
            None
        };
        string_map(at, &metadata, "labels", &mut problems);
        string_map(at, &metadata, "annotations", &mut problems);

        map.remove("status");
        for v in self.validator.validate(kind.name(), map) {
            problems.push(at.problem(&v.path, v.message));
        }
        if !problems.is_empty() {
            self.problems.extend(problems);
            return None;
        }
        let name = name?;
        if let Some(ns) = &namespace {
            metadata.insert("namespace".into(), Value::String(ns.clone()));
        }
        if !matches!(metadata.get("uid"), Some(Value::String(u)) if !u.is_empty()) {
            let uid = plan_uid(namespace.as_deref(), &name);
            metadata.insert("uid".into(), Value::String(uid));
        }
        if !matches!(metadata.get("generation"), Some(Value::Number(_))) {
            metadata.insert("generation".into(), Value::from(1));
        }
        map.insert("metadata".into(), Value::Object(metadata));

        let key = ObjectKey {
            kind: kind.name().to_owned(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        if let Some(first) = self.out.sources.get(&key) {
            let what = match &namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            };
            self.problems.push(at.problem(
                "metadata.name",
                format!("{} {what} is also defined in {first}", kind.name()),
            ));
            return None;
        }
        let value = Value::Object(std::mem::take(map));
        match serde_json::from_value::<T>(value) {
            Ok(obj) => {
                self.out.sources.insert(key, at.source());
                Some(obj)
            }
            Err(e) => {
                // The schema checks should have caught anything serde refuses; say so if not.
                self.problems
                    .push(at.problem("", format!("cannot be read as a {}: {e}", kind.name())));
                None
            }
        }
    }
}

/// `metadata` holds only `ObjectMeta` fields (`lables` would otherwise be dropped unnoticed).
fn check_metadata_fields(at: At<'_>, metadata: &Map<String, Value>, problems: &mut Vec<Problem>) {
    for key in metadata.keys() {
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            problems.push(at.problem(
                &format!("metadata.{}", truncate(key, 80)),
                unknown_field_message(key, OBJECT_META_FIELDS.into_iter()),
            ));
        }
    }
}

/// `metadata.name`: present, a DNS label (`label`, for Namespaces) or subdomain.
fn check_name(
    at: At<'_>,
    metadata: &Map<String, Value>,
    label: bool,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match metadata.get("name") {
        None | Some(Value::Null) => {
            problems.push(at.problem("metadata.name", "required field is missing"));
            None
        }
        Some(Value::String(n)) if label && is_dns_label(n) => Some(n.clone()),
        Some(Value::String(n)) if !label && is_dns_subdomain(n) => Some(n.clone()),
        Some(Value::String(n)) => {
            let rule = if label {
                "a lowercase RFC 1123 label (at most 63 of a-z, 0-9 and -, starting and ending with a letter or digit)"
            } else {
                "a lowercase RFC 1123 subdomain (at most 253 of a-z, 0-9, - and ., starting and ending with a letter or digit)"
            };
            problems.push(at.problem("metadata.name", format!("{} must be {rule}", quote(n))));
            None
        }
        Some(other) => {
            problems.push(at.problem(
                "metadata.name",
                format!("must be a string, got {}", describe(other)),
            ));
            None
        }
    }
}

/// `metadata.labels` / `metadata.annotations`: absent, or strings to strings.
fn string_map(
    at: At<'_>,
    metadata: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match metadata.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => problems.push(at.problem(
                        &format!("metadata.{key}[{}]", truncate(k, 80)),
                        format!(
                            "must be a string, got {} (quote it: \"{}\")",
                            describe(other),
                            truncate(&other.to_string(), 40)
                        ),
                    )),
                }
            }
        }
        Some(other) => problems.push(at.problem(
            &format!("metadata.{key}"),
            format!("must be an object, got {}", describe(other)),
        )),
    }
    out
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_manifest_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

#[cfg(test)]
mod tests;

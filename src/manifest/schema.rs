//! Structural validation of one object against the `openAPIV3Schema` of runwarden's CRDs, the
//! checks the API server makes before storing a custom resource (minus CEL, see the parent module).
//!
//! Like the API server, `null` in a field whose schema is not `nullable` is pruned (treated as
//! absent) before `required` is checked, and a whole number written as a float (`3.0`) is accepted
//! for an `integer`; both are rewritten in place so the typed deserialization that follows sees
//! what the API server would have stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::{Map, Number, Value};

/// Deepest nesting of values the walker descends into; deeper values are reported, not walked.
pub(super) const MAX_DEPTH: usize = 64;

/// Root fields every object has, checked by the caller rather than by the CRD schema.
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// One schema finding: the field path (`spec.containers[0].image`) and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Violation {
    pub path: String,
    pub message: String,
}

/// The schemas of every runwarden kind, with their `pattern`s compiled once.
pub(super) struct Validator {
    roots: BTreeMap<String, JSONSchemaProps>,
    /// Pattern → compiled regex, or why it does not compile (reported, never a panic).
    patterns: HashMap<String, Result<Regex, String>>,
}

impl Validator {
    /// The schemas of the `v1alpha1` version of each CRD in [`crate::crd::all`].
    pub fn new() -> Self {
        let mut roots = BTreeMap::new();
        for crd in crate::crd::all() {
            let version = crd
                .spec
                .versions
                .into_iter()
                .find(|v| v.name == super::VERSION);
            if let Some(schema) = version
                .and_then(|v| v.schema)
                .and_then(|s| s.open_api_v3_schema)
            {
                roots.insert(crd.spec.names.kind, schema);
            }
        }
        Self::from_roots(roots)
    }

    /// A validator over the given schemas by kind (tests use hand-written schemas).
    pub fn from_roots(roots: BTreeMap<String, JSONSchemaProps>) -> Self {
        let mut patterns = HashMap::new();
        for root in roots.values() {
            collect_patterns(root, &mut patterns, 0);
        }
        Self { roots, patterns }
    }

    /// The validator of runwarden's CRDs, built once per process.
    pub fn shared() -> &'static Validator {
        static SHARED: OnceLock<Validator> = OnceLock::new();
        SHARED.get_or_init(Validator::new)
    }

    /// Check `obj` (a whole object) against the schema of `kind`. `apiVersion`, `kind` and
    /// `metadata` are left to the caller, `status` is not checked. Returns every violation found.
    pub fn validate(&self, kind: &str, obj: &mut Map<String, Value>) -> Vec<Violation> {
        let mut out = vec![];
        let Some(root) = self.roots.get(kind) else {
            out.push(Violation {
                path: String::new(),
                message: format!("no schema for kind {kind}"),
            });
            return out;
        };
        let props = root.properties.as_ref();
        prune_nulls(obj, props);
        for name in root.required.iter().flatten() {
            if !ROOT_FIELDS.contains(&name.as_str()) && !obj.contains_key(name) {
                out.push(Violation {
                    path: name.clone(),
                    message: "required field is missing".into(),
                });
            }
        }
        for (key, value) in obj.iter_mut() {
            if ROOT_FIELDS.contains(&key.as_str()) || key == "status" {
                continue;
            }
            match props.and_then(|p| p.get(key)) {
                Some(schema) => self.walk(schema, value, key.clone(), 1, &mut out),
                None => out.push(unknown_field(key.clone(), key, props)),
            }
        }
        out
    }

    fn walk(
        &self,
        schema: &JSONSchemaProps,
        value: &mut Value,
        path: String,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        if depth > MAX_DEPTH {
            out.push(Violation {
                path,
                message: format!("nested deeper than {MAX_DEPTH} levels"),
            });
            return;
        }
        if value.is_null() && schema.nullable == Some(true) {
            return;
        }
        let before = out.len();
        if schema.x_kubernetes_int_or_string == Some(true) {
            match value {
                Value::String(s) => self.string(schema, s, &path, out),
                Value::Number(_) => integer(schema, value, &path, out),
                _ => out.push(type_error(path.clone(), "an integer or a string", value)),
            }
        } else {
            match schema.type_.as_deref() {
                Some("object") => self.object(schema, value, &path, depth, out),
                Some("array") => self.array(schema, value, &path, depth, out),
                Some("string") => match value {
                    Value::String(s) => self.string(schema, s, &path, out),
                    _ => out.push(type_error(path.clone(), "a string", value)),
                },
                Some("integer") => integer(schema, value, &path, out),
                Some("number") => match value {
                    Value::Number(n) => range(schema, n.as_f64().unwrap_or(f64::NAN), &path, out),
                    _ => out.push(type_error(path.clone(), "a number", value)),
                },
                Some("boolean") if !value.is_boolean() => {
                    out.push(type_error(path.clone(), "a boolean (true or false)", value));
                }
                // No type: only `x-kubernetes-preserve-unknown-fields` (or int-or-string, above)
                // may leave it out in a structural schema; anything goes.
                _ => {}
            }
        }
        if out.len() == before
            && let Some(allowed) = &schema.enum_
            && !allowed.iter().any(|a| a.0 == *value)
        {
            out.push(enum_error(path, allowed, value));
        }
    }

    fn object(
        &self,
        schema: &JSONSchemaProps,
        value: &mut Value,
        path: &str,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let Value::Object(map) = value else {
            out.push(type_error(path.to_owned(), "an object", value));
            return;
        };
        let props = schema.properties.as_ref();
        prune_nulls(map, props);
        if let Some(max) = schema.max_properties
            && map.len() as i64 > max
        {
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must have at most {max} entries, has {}", map.len()),
            });
        }
        if let Some(min) = schema.min_properties
            && (map.len() as i64) < min
        {
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must have at least {min} entries, has {}", map.len()),
            });
        }
        for name in schema.required.iter().flatten() {
            if !map.contains_key(name) {
                out.push(Violation {
                    path: field_path(path, name),
                    message: "required field is missing".into(),
                });
            }
        }
        let preserve = schema.x_kubernetes_preserve_unknown_fields == Some(true);
        for (key, child) in map.iter_mut() {
            if let Some(prop) = props.and_then(|p| p.get(key)) {
                self.walk(prop, child, field_path(path, key), depth + 1, out);
                continue;
            }
            match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => {
                    self.walk(s, child, key_path(path, key), depth + 1, out);
                }
                Some(JSONSchemaPropsOrBool::Bool(true)) => {}
                _ if preserve => {}
                _ => out.push(unknown_field(field_path(path, key), key, props)),
            }
        }
    }

    fn array(
        &self,
        schema: &JSONSchemaProps,
        value: &mut Value,
        path: &str,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        let Value::Array(items) = value else {
            out.push(type_error(path.to_owned(), "a list", value));
            return;
        };
        let len = items.len();
        if let Some(max) = schema.max_items
            && len as i64 > max
        {
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must have at most {max} items, has {len}"),
            });
        }
        if let Some(min) = schema.min_items
            && (len as i64) < min
        {
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must have at least {min} item(s), has {len}"),
            });
        }
        for (i, item) in items.iter_mut().enumerate() {
            let item_schema = match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(s)) => Some(&**s),
                Some(JSONSchemaPropsOrArray::Schemas(list)) => list.get(i),
                None => None,
            };
            if let Some(s) = item_schema {
                self.walk(s, item, format!("{path}[{i}]"), depth + 1, out);
            }
        }
    }

    fn string(&self, schema: &JSONSchemaProps, s: &str, path: &str, out: &mut Vec<Violation>) {
        // The API server counts characters (runes), not bytes.
        let len = s.chars().count();
        if let Some(min) = schema.min_length
            && (len as i64) < min
        {
            out.push(Violation {
                path: path.to_owned(),
                message: if len == 0 {
                    "must not be empty".into()
                } else {
                    format!("must be at least {min} characters long, is {len}")
                },
            });
        }
        if let Some(max) = schema.max_length
            && len as i64 > max
        {
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must be at most {max} characters long, is {len}"),
            });
        }
        if let Some(pattern) = &schema.pattern {
            match self.patterns.get(pattern) {
                Some(Ok(re)) if !re.is_match(s) => {
                    out.push(Violation {
                        path: path.to_owned(),
                        message: format!("{} does not match {pattern}", quote(s)),
                    });
                }
                Some(Err(e)) => out.push(Violation {
                    path: path.to_owned(),
                    message: format!("the schema's pattern {pattern} cannot be checked: {e}"),
                }),
                Some(Ok(_)) | None => {}
            }
        }
    }
}

/// Drop `null` values of fields whose schema is not nullable, as the API server's pruning does.
fn prune_nulls(map: &mut Map<String, Value>, props: Option<&BTreeMap<String, JSONSchemaProps>>) {
    let Some(props) = props else { return };
    map.retain(|key, value| {
        !(value.is_null() && props.get(key).is_some_and(|p| p.nullable != Some(true)))
    });
}

fn integer(schema: &JSONSchemaProps, value: &mut Value, path: &str, out: &mut Vec<Violation>) {
    let n = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_f64().unwrap_or(f64::NAN),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // A whole number written as a float: the API server accepts it as an integer.
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                *value = Value::Number(Number::from(f as i64));
                f
            } else {
                out.push(Violation {
                    path: path.to_owned(),
                    message: format!("must be a whole number, got {n}"),
                });
                return;
            }
        }
        _ => {
            out.push(type_error(path.to_owned(), "an integer", value));
            return;
        }
    };
    if schema.format.as_deref() == Some("int32")
        && !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&n)
    {
        out.push(Violation {
            path: path.to_owned(),
            message: format!("{n} does not fit in a 32-bit integer"),
        });
        return;
    }
    range(schema, n, path, out);
}

fn range(schema: &JSONSchemaProps, n: f64, path: &str, out: &mut Vec<Violation>) {
    if let Some(min) = schema.minimum {
        let exclusive = schema.exclusive_minimum == Some(true);
        if n < min || (exclusive && n == min) {
            let bound = if exclusive {
                "greater than"
            } else {
                "at least"
            };
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must be {bound} {min}, got {n}"),
            });
        }
    }
    if let Some(max) = schema.maximum {
        let exclusive = schema.exclusive_maximum == Some(true);
        if n > max || (exclusive && n == max) {
            let bound = if exclusive { "less than" } else { "at most" };
            out.push(Violation {
                path: path.to_owned(),
                message: format!("must be {bound} {max}, got {n}"),
            });
        }
    }
    if let Some(m) = schema.multiple_of
        && m > 0.0
        && (n / m).fract() != 0.0
    {
        out.push(Violation {
            path: path.to_owned(),
            message: format!("must be a multiple of {m}, got {n}"),
        });
    }
}

fn collect_patterns(
    schema: &JSONSchemaProps,
    out: &mut HashMap<String, Result<Regex, String>>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(p) = &schema.pattern {
        out.entry(p.clone())
            .or_insert_with(|| Regex::new(p).map_err(|e| e.to_string()));
    }
    for s in schema.properties.iter().flat_map(|p| p.values()) {
        collect_patterns(s, out, depth + 1);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = &schema.additional_properties {
        collect_patterns(s, out, depth + 1);
    }
    match &schema.items {
        Some(JSONSchemaPropsOrArray::Schema(s)) => collect_patterns(s, out, depth + 1),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => {
            for s in list {
                collect_patterns(s, out, depth + 1);
            }
        }
        None => {}
    }
}

/// `spec` + `region` → `spec.region`.
pub(super) fn field_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// A map entry, Kubernetes style: `spec.labels[app.kubernetes.io/name]`.
fn key_path(parent: &str, key: &str) -> String {
    format!("{parent}[{}]", truncate(key, 80))
}

fn unknown_field(
    path: String,
    key: &str,
    known: Option<&BTreeMap<String, JSONSchemaProps>>,
) -> Violation {
    let known = known.into_iter().flat_map(|k| k.keys().map(String::as_str));
    Violation {
        path,
        message: unknown_field_message(key, known),
    }
}

/// The message for an unknown field `key`, with the closest of the `known` ones if one is close.
pub(super) fn unknown_field_message<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> String {
    let hint = suggest(key, known)
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    format!("unknown field (the API server would refuse or drop it){hint}")
}

fn type_error(path: String, expected: &str, got: &Value) -> Violation {
    Violation {
        path,
        message: format!("must be {expected}, got {}", describe(got)),
    }
}

fn enum_error(
    path: String,
    allowed: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON],
    got: &Value,
) -> Violation {
    let names: Vec<String> = allowed.iter().map(|a| a.0.to_string()).collect();
    let hint = got
        .as_str()
        .and_then(|g| suggest(g, allowed.iter().filter_map(|a| a.0.as_str())))
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    Violation {
        path,
        message: format!(
            "unsupported value {}: must be one of {}{hint}",
            describe(got),
            names.join(", ")
        ),
    }
}

/// A short description of a value for messages: its type, and the value itself if small.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(a) => format!("a list of {} item(s)", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// `"value"`, cut to a readable length.
pub(super) fn quote(s: &str) -> String {
    format!("{:?}", truncate(s, 80))
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The candidate `word` was probably meant as: same letters ignoring case, `-` and `_`, or at most
/// two edits away (only for words of 4+ characters, so `a` is not "corrected" to `b`).
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > 64 {
        return None;
    }
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = norm(word);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if norm(c) == w {
            0
        } else {
            edit_distance(&w, &norm(c))
        };
        let limit = if w.chars().count() >= 4 { 2 } else { 0 };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(usize::MAX / 2) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX / 2) + 1;
            let ins = cur.get(j).copied().unwrap_or(usize::MAX / 2) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(v: serde_json::Value) -> JSONSchemaProps {
        serde_json::from_value(v).unwrap()
    }

    fn check(root: serde_json::Value, obj: serde_json::Value) -> Vec<String> {
        let v = Validator::from_roots(BTreeMap::from([("K".to_owned(), schema(root))]));
        let serde_json::Value::Object(mut obj) = obj else {
            panic!("not an object")
        };
        v.validate("K", &mut obj)
            .into_iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect()
    }

    /// Every keyword the CRDs use is one the walker checks: a new keyword (anyOf, uniqueItems,
    /// a list-type, ...) fails here until the validator learns it.
    #[test]
    fn the_crds_use_only_keywords_the_validator_checks() {
        fn visit(s: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
            let unsupported = [
                ("allOf", s.all_of.is_some()),
                ("anyOf", s.any_of.is_some()),
                ("oneOf", s.one_of.is_some()),
                ("not", s.not.is_some()),
                ("patternProperties", s.pattern_properties.is_some()),
                ("dependencies", s.dependencies.is_some()),
                ("additionalItems", s.additional_items.is_some()),
                ("uniqueItems", s.unique_items == Some(true)),
                (
                    "x-kubernetes-list-type",
                    s.x_kubernetes_list_type
                        .as_deref()
                        .is_some_and(|t| t != "atomic"),
                ),
                (
                    "x-kubernetes-embedded-resource",
                    s.x_kubernetes_embedded_resource == Some(true),
                ),
                (
                    "format other than int32/int64",
                    s.format
                        .as_deref()
                        .is_some_and(|f| f != "int32" && f != "int64"),
                ),
            ];
            for (name, used) in unsupported {
                if used {
                    out.push(format!("{path}: {name}"));
                }
            }
            for (k, p) in s.properties.iter().flatten() {
                visit(p, &field_path(path, k), out);
            }
            if let Some(JSONSchemaPropsOrBool::Schema(a)) = &s.additional_properties {
                visit(a, &format!("{path}[*]"), out);
            }
            if let Some(JSONSchemaPropsOrArray::Schema(i)) = &s.items {
                visit(i, &format!("{path}[]"), out);
            }
        }
        let v = Validator::new();
        assert_eq!(v.roots.len(), 4, "{:?}", v.roots.keys());
        let mut out = vec![];
        for (kind, root) in &v.roots {
            visit(root, kind, &mut out);
        }
        // `status` is never validated here (the loader drops it).
        out.retain(|p| !p.contains(".status."));
        assert!(out.is_empty(), "unchecked schema keywords: {out:#?}");
    }

    #[test]
    fn every_crd_pattern_compiles() {
        let v = Validator::new();
        assert!(v.patterns.len() >= 15, "{}", v.patterns.len());
        for (p, re) in &v.patterns {
            assert!(re.is_ok(), "{p}: {re:?}");
        }
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_reported_not_a_panic() {
        let p = check(
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}}),
            serde_json::json!({"a": "x"}),
        );
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("a: the schema's pattern (unclosed cannot be checked"),
            "{p:?}"
        );
    }

    #[test]
    fn preserve_unknown_fields_and_additional_properties_true_allow_anything() {
        let root = serde_json::json!({"type": "object", "properties": {
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "properties": {"n": {"type": "integer"}}},
            "open": {"type": "object", "additionalProperties": true},
            "closed": {"type": "object", "additionalProperties": false},
            "strict": {"type": "object", "properties": {"n": {"type": "integer"}}}
        }});
        let p = check(
            root,
            serde_json::json!({
                "free": {"n": "x", "anything": {"deep": [1]}},
                "open": {"whatever": 1},
                "closed": {"x": 1},
                "strict": {"m": 1}
            }),
        );
        assert_eq!(
            p,
            [
                "closed.x: unknown field (the API server would refuse or drop it)",
                "free.n: must be an integer, got string \"x\"",
                "strict.m: unknown field (the API server would refuse or drop it)",
            ]
        );
    }

    #[test]
    fn exclusive_bounds_min_properties_and_int_or_string() {
        let root = serde_json::json!({"type": "object", "properties": {
            "x": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
            "m": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
            "q": {"x-kubernetes-int-or-string": true, "maxLength": 3},
            "e": {"type": "string", "enum": ["A", "B"]}
        }});
        let p = check(
            root.clone(),
            serde_json::json!({"x": 0, "m": {}, "q": "long", "e": "C"}),
        );
        assert_eq!(
            p,
            [
                "e: unsupported value string \"C\": must be one of \"A\", \"B\"",
                "m: must have at least 1 entries, has 0",
                "q: must be at most 3 characters long, is 4",
                "x: must be greater than 0, got 0",
            ]
        );
        let p = check(root.clone(), serde_json::json!({"x": 1, "q": 8080}));
        assert_eq!(p, ["x: must be less than 1, got 1"]);
        let p = check(root, serde_json::json!({"q": true}));
        assert_eq!(p, ["q: must be an integer or a string, got boolean true"]);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut root =
            serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let mut value = serde_json::json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            root = serde_json::json!({"type": "object", "properties": {"a": root}});
            value = serde_json::json!({"a": value});
        }
        let p = check(root, value);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].ends_with(&format!("nested deeper than {MAX_DEPTH} levels")));
    }

    #[test]
    fn suggestions() {
        let known = [
            "image",
            "imagePullPolicy",
            "serviceAccount",
            "env",
            "region",
        ];
        assert_eq!(suggest("imagee", known.into_iter()), Some("image"));
        assert_eq!(
            suggest("service_account", known.into_iter()),
            Some("serviceAccount")
        );
        assert_eq!(suggest("Region", known.into_iter()), Some("region"));
        assert_eq!(suggest("ENV", known.into_iter()), Some("env"));
        assert_eq!(suggest("eng", known.into_iter()), None);
        assert_eq!(suggest("traffic", known.into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
